import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { mayEject, OutlierTracker, type OutlierRule } from '../../src/policy/outlier.js';
import { EndpointSet, type EndpointEvent, type EndpointEvents } from '../../src/upstream/endpoints.js';

const RULE: OutlierRule = {
  consecutiveFailures: 3,
  failureRate: undefined,
  ejectionTimeMs: 10_000,
  maxEjectionTimeMs: 25_000,
  maxEjectedPercent: 0.5,
};

describe('outlier tracker (pure, injected clock)', () => {
  test('consecutive failures eject; a success in between starts over', () => {
    let now = 0;
    const t = new OutlierTracker(RULE, () => now);
    const steps: Array<[boolean, string | undefined]> = [
      [true, undefined],
      [true, undefined],
      [false, undefined],
      [true, undefined],
      [true, undefined],
      [true, '3 consecutive failures: status 503'],
    ];
    for (const [failure, expected] of steps) assert.equal(t.observe(failure, 'status 503'), expected);
    now = 1000;
    assert.equal(t.eject('x'), 11_000, 'first ejection: 1 x ejectionTime');
  });

  test('n-th ejection in a row lasts n x ejectionTime, capped; after a return the first failure ejects again; a success resets n', () => {
    let now = 0;
    const t = new OutlierTracker(RULE, () => now);
    const durations: number[] = [];
    for (let i = 0; i < 3; i++) t.observe(true, 'c');
    for (let n = 1; n <= 4; n++) {
      const until = t.eject('r');
      durations.push(until - now);
      now = until;
      t.restore();
      assert.match(t.observe(true, 'connect ECONNREFUSED') ?? '', new RegExp(`^failed again after ejection ${n}: connect ECONNREFUSED$`));
    }
    assert.deepEqual(durations, [10_000, 20_000, 25_000, 25_000]);
    t.restore();
    assert.equal(t.observe(false, ''), undefined);
    assert.equal(t.ejections, 0);
    assert.equal(t.observe(true, 'c'), undefined, 'after a success, consecutiveFailures again');
  });

  test('failure rate per endpoint, from minRequests on', () => {
    let now = 0;
    const t = new OutlierTracker(
      { ...RULE, consecutiveFailures: 100, failureRate: { ratio: 0.5, minRequests: 4, windowMs: 10_000 } },
      () => now,
    );
    const outcomes = [true, false, true, false];
    const answers = outcomes.map((f) => {
      now += 100;
      return t.observe(f, 'status 500');
    });
    assert.deepEqual(answers, [undefined, undefined, undefined, undefined], 'the 4th is a success: no ejection on a success');
    now += 100;
    assert.equal(t.observe(true, 'status 500'), 'failure rate 60% of 5 requests: status 500');
    now += 20_000;
    assert.equal(t.observe(true, 'status 500'), undefined, 'the window has moved on');
  });
});

describe('how many may be ejected at once', () => {
  // [total, ejected, available, maxPercent, may]
  const table: Array<[number, number, number, number, boolean]> = [
    [1, 0, 1, 1, false], // a single endpoint never
    [2, 0, 2, 0.1, true], // with 2 or more, one always may be
    [2, 1, 1, 1, false], // the last available never
    [3, 0, 3, 0.1, true],
    [3, 1, 2, 0.1, false], // 10% of 3 is 0, but one may be: not two
    [3, 1, 2, 0.5, false], // floor(1.5) = 1
    [3, 1, 2, 1, true], // 100%: two ...
    [3, 2, 1, 1, false], // ... but never the third
    [10, 0, 10, 0.1, true],
    [10, 1, 9, 0.1, false],
    [10, 4, 6, 0.5, true],
    [10, 5, 5, 0.5, false],
    [10, 8, 2, 1, true],
    [10, 9, 1, 1, false],
  ];
  for (const [total, ejected, available, pct, may] of table) {
    test(`${ejected} of ${total} out, ${available} available, max ${pct * 100}%: ${may ? 'may' : 'may not'}`, () =>
      assert.equal(mayEject(total, ejected, available, pct), may));
  }
});

describe('endpoint set', () => {
  const set = (yaml: string, random: () => number = Math.random) => {
    const svc = parseConfig(yaml, {}).services.get('catalog')!;
    const events = new EventEmitter<EndpointEvents>();
    const seen: EndpointEvent[] = [];
    events.on('endpoint', (e) => seen.push(e));
    return { s: new EndpointSet('catalog', svc.upstream, events, () => 0, random), seen, events };
  };
  const THREE = 'services:\n  catalog:\n    endpoints: [http://a:1, http://b:1, http://c:1]\n';

  test('round-robin over the endpoints in rotation', () => {
    const { s } = set(THREE);
    assert.deepEqual(
      Array.from({ length: 6 }, () => s.pick().address),
      ['a:1', 'b:1', 'c:1', 'a:1', 'b:1', 'c:1'],
    );
  });

  test('least-request: the less loaded of two picked at random', () => {
    const draws = [0, 0.1, 0.9, 0.1];
    const { s } = set(`${THREE}    balance: least-request\n`, () => draws.shift() ?? 0);
    const [a, b] = s.all;
    a!.inFlight = 5;
    b!.inFlight = 1;
    assert.equal(s.pick().address, 'b:1', 'a (5) against b (1)');
    assert.equal(s.pick().address, 'c:1', 'c (0) against a (5)');
  });

  test('ejection: out of rotation, an event with its reason, the metrics fields; never the last one', () => {
    const { s, seen } = set(`${THREE}    outlier: { consecutiveFailures: 2, maxEjectedPercent: 100% }\n`);
    const [a, b, c] = s.all;
    for (const ep of [a!, a!, b!, b!, c!, c!]) s.outcome(ep, 'failure', 'status 503');
    assert.deepEqual(
      s.all.map((e) => e.state),
      ['ejected', 'ejected', 'active'],
    );
    assert.deepEqual(
      seen.map((e) => [e.endpoint, e.state, e.reason]),
      [
        ['a:1', 'ejected', '2 consecutive failures: status 503'],
        ['b:1', 'ejected', '2 consecutive failures: status 503'],
      ],
    );
    assert.equal(s.pick().address, 'c:1');
    assert.equal(a!.ejectionsTotal, 1);
    const snap = s.snapshot().find((e) => e.address === 'a:1')!;
    assert.equal(snap.ejection, 1);
    assert.equal(snap.reason, '2 consecutive failures: status 503');
    s.shutdown();
  });

  test('an abandoned request is no outcome; a client fault never ejects', () => {
    const { s } = set(`${THREE}    outlier: { consecutiveFailures: 1 }\n`);
    const a = s.all[0]!;
    for (let i = 0; i < 5; i++) s.outcome(a, 'abandoned', '');
    assert.equal(a.state, 'active');
    assert.equal(a.abandoned, 5);
  });

  test('a single endpoint ignores outlier', () => {
    const { s } = set('services:\n  catalog:\n    url: http://a:1\n    outlier: { consecutiveFailures: 1 }\n');
    for (let i = 0; i < 5; i++) s.outcome(s.all[0]!, 'failure', 'c');
    assert.equal(s.all[0]!.state, 'active');
    assert.equal(s.several, false);
  });

  test('DNS answers: addresses that stay keep their state, new ones join, gone ones drain; an empty answer changes nothing', () => {
    const { s, seen, events } = set(
      'services:\n  catalog:\n    url: http://search.local:8000\n    discovery: { dns: true }\n    outlier: { consecutiveFailures: 1 }\n',
    );
    const drained: string[] = [];
    events.on('drained', (ep) => drained.push(ep.address));
    assert.deepEqual(
      s.all.map((e) => e.address),
      ['search.local:8000'],
      'before the first answer: the host name itself',
    );
    s.resolved(['10.0.0.1', '10.0.0.2', 'fd00::3']);
    assert.deepEqual(drained, ['search.local:8000']);
    const [one] = s.all;
    assert.equal(one!.host, 'search.local:8000', 'Host (and TLS name) stay the URL host');
    s.outcome(one!, 'failure', 'status 503');
    assert.equal(one!.state, 'ejected');
    const two = s.all[1]!;
    two.inFlight = 1;
    s.resolved(['10.0.0.1', 'fd00::3', '10.0.0.4']);
    assert.deepEqual(
      s.all.map((e) => e.address),
      ['10.0.0.1:8000', '[fd00::3]:8000', '10.0.0.4:8000'],
    );
    assert.equal(s.all[0], one, 'same object');
    assert.equal(one!.state, 'ejected', 'an ejected address that stays stays ejected');
    assert.equal(two.state, 'draining');
    assert.deepEqual(
      s.withDraining.map((e) => e.address),
      ['10.0.0.1:8000', '[fd00::3]:8000', '10.0.0.4:8000', '10.0.0.2:8000'],
    );
    s.done(two);
    assert.deepEqual(drained, ['search.local:8000', '10.0.0.2:8000']);
    s.resolved([]);
    assert.equal(s.all.length, 3);
    assert.ok(seen.some((e) => e.state === 'added' && e.endpoint === '10.0.0.4:8000'));
    assert.ok(seen.some((e) => e.state === 'removed' && e.endpoint === '10.0.0.2:8000'));
    s.shutdown();
  });
});
