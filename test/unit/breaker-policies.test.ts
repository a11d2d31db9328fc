/**
 * The circuit with the trip and recovery policies (docs/policies.md), driven by node:test's mock
 * timers and an injected clock; one test per bug peers shipped, named after it.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import CircuitBreaker from 'opossum';
import { QUEUED, REJECTED, type BreakerEvents, type TransitionEvent } from '../../src/circuit/circuit.js';
import { TestCircuit } from '../circuit-helper.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { type ConfigError } from '../../src/errors.js';

function make(extra: string, random = () => 0.5): { b: TestCircuit; transitions: TransitionEvent[] } {
  const cfg = parseConfig(`services:\n  product:\n    url: http://p:1\n    cooldown: 1s\n${extra}`, {});
  const events = new EventEmitter<BreakerEvents>();
  const transitions: TransitionEvent[] = [];
  events.on('transition', (t) => transitions.push(t));
  const b = new TestCircuit(cfg.services.get('product')!, events, new EventEmitter(), () => Date.now(), random);
  return { b, transitions };
}

const reasons = (t: TransitionEvent[]): string[] => t.map((x) => `${x.from}>${x.to}: ${x.reason}`);

describe('trip and recovery policies (mock timers)', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  test('canary: opossum reads resetTimeout from its options object at every open()', () => {
    const options = { resetTimeout: 10_000, timeout: false as const };
    const cb = new CircuitBreaker(() => Promise.resolve(), options);
    options.resetTimeout = 50;
    cb.open();
    mock.timers.tick(50);
    assert.equal(
      cb.halfOpen,
      true,
      'opossum no longer reads options.resetTimeout at open(): backoff and Retry-After cooldowns need another way (src/circuit/circuit.ts)',
    );
    cb.shutdown();
  });

  test('failure rate: no trip below minRequests; trips at the threshold with the rule and its numbers', () => {
    const { b, transitions } = make('    threshold: 1000\n    failureRate: { threshold: 50%, minRequests: 4, window: 10s }\n');
    b.fail(b.admit(), 'status', 'status 500');
    b.fail(b.admit(), 'status', 'status 500');
    b.success(b.admit());
    assert.equal(b.state, 'closed', '3 outcomes < minRequests 4');
    b.success(b.admit());
    assert.equal(b.state, 'open', '2 of 4 = 50%: a success completing minRequests trips too');
    assert.deepEqual(reasons(transitions), ['closed>open: failure rate 50% (2 of 4) in 10s >= 50%']);
    assert.deepEqual(b.snapshot().window, { requests: 0, failureRate: 0, slowCallRate: null }, 'a state change starts an empty window');
    b.shutdown();
  });

  test('failure rate: outcomes older than the window no longer count', () => {
    const { b } = make('    threshold: 1000\n    failureRate: { threshold: 50%, minRequests: 2, window: 2s }\n');
    b.fail(b.admit(), 'status', 'status 500');
    mock.timers.tick(3000);
    b.success(b.admit());
    b.success(b.admit());
    assert.equal(b.state, 'closed');
    assert.equal(b.snapshot().window!.requests, 2);
    b.shutdown();
  });

  test('slow calls count the moment they become slow, once, as slow and as a failure', () => {
    const { b, transitions } = make('    threshold: 1000\n    slowCalls: { duration: 2s, threshold: 100%, minRequests: 2 }\n');
    const t1 = b.admit();
    const t2 = b.admit();
    b.slow(t1);
    assert.equal(b.state, 'closed');
    b.fail(t1, 'timeout', 'no response headers within 5s', undefined, undefined, true);
    assert.deepEqual(b.snapshot().window, { requests: 1, failureRate: null, slowCallRate: 1 }, 'the late failure is no second request');
    b.slow(t2);
    assert.equal(b.state, 'open', 'tripped while t2 is still in flight');
    assert.deepEqual(reasons(transitions), ['closed>open: slow calls 100% (2 of 2) over 2s in 30s >= 100%']);
    b.success(t2, true);
    assert.equal(b.state, 'open', 'its late end changes nothing');
    b.shutdown();
  });

  test('backoff: each re-opening after a failed trial lengthens the cooldown 1x, 2x, 4x, capped; a close resets it', () => {
    const { b, transitions } = make('    threshold: 1\n    backoff: { multiplier: 2, max: 3s }\n');
    b.fail(b.admit(), 'connect', 'connect ECONNREFUSED');
    assert.equal(b.snapshot().cooldownMs, 1000);
    mock.timers.tick(1000);
    assert.equal(b.state, 'half_open');
    b.fail(b.admit(), 'status', 'status 503');
    assert.equal(b.snapshot().cooldownMs, 2000);
    assert.equal(b.retryAfterSeconds(), 2);
    mock.timers.tick(1999);
    assert.equal(b.state, 'open');
    mock.timers.tick(1);
    b.fail(b.admit(), 'status', 'status 503');
    assert.equal(b.snapshot().cooldownMs, 3000, '4s capped at 3s');
    mock.timers.tick(3000);
    b.success(b.admit());
    assert.equal(b.state, 'closed');
    assert.equal(b.snapshot().cooldownMs, 1000, 'closed: the next opening would get the first step');
    assert.deepEqual(
      reasons(transitions).filter((r) => r.includes('>open')),
      [
        'closed>open: 1 consecutive failure: connect ECONNREFUSED; cooldown 1s (backoff 1 of 3s)',
        'half_open>open: trial request failed: status 503; cooldown 2s (backoff 2 of 3s)',
        'half_open>open: trial request failed: status 503; cooldown 3s (backoff 3 of 3s)',
      ],
    );
    b.shutdown();
  });

  test('opossum #385: the open timer re-arms at every opening (open, half-open, open, half-open, ...)', () => {
    const { b } = make('    threshold: 1\n');
    b.fail(b.admit(), 'connect', 'x');
    for (let i = 0; i < 5; i++) {
      mock.timers.tick(1000);
      assert.equal(b.state, 'half_open', `round ${i}`);
      b.fail(b.admit(), 'connect', 'x');
      assert.equal(b.state, 'open');
    }
    b.shutdown();
  });

  test('opossum #119 / Polly #216: half-open admits exactly `trials` requests, whatever arrives at once', () => {
    const { b, transitions } = make('    threshold: 1\n    halfOpen: { trials: 3 }\n');
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    const tickets = Array.from({ length: 10 }, () => b.admit());
    assert.equal(tickets.filter((t) => t >= 0).length, 3);
    assert.equal(tickets.filter((t) => t === REJECTED).length, 7);
    b.success(tickets[0]!);
    b.success(tickets[1]!);
    assert.equal(b.state, 'half_open', 'closes only when all trials succeeded');
    b.success(tickets[2]!);
    assert.equal(b.state, 'closed');
    assert.equal(transitions.at(-1)!.reason, '3 trial requests succeeded');
    b.shutdown();
  });

  test('half-open re-opens at the first failed trial; the other trials, late, change nothing', () => {
    const { b } = make('    threshold: 1\n    halfOpen: { trials: 2 }\n');
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    const [a, c] = [b.admit(), b.admit()];
    b.fail(a, 'status', 'status 500');
    assert.equal(b.state, 'open');
    b.success(c);
    assert.equal(b.state, 'open');
    b.shutdown();
  });

  test('Polly #217: a late result from before a state change does not change the state', () => {
    const { b } = make('    threshold: 1\n');
    const early = b.admit();
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    b.success(early);
    assert.equal(b.state, 'half_open', 'a success admitted while closed does not close a half-open circuit');
    const trial = b.admit();
    b.fail(early, 'status', 'status 500');
    assert.equal(b.state, 'half_open', 'nor does its failure re-open it');
    b.success(trial);
    assert.equal(b.state, 'closed');
    b.shutdown();
  });

  test('an abandoned trial frees its slot: the next request becomes the trial', () => {
    const { b } = make('    threshold: 1\n');
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    const trial = b.admit();
    assert.equal(b.admit(), REJECTED);
    b.abandon(trial);
    const next = b.admit();
    assert.ok(next >= 0);
    b.success(next);
    assert.equal(b.state, 'closed');
    b.shutdown();
  });

  test('the queue: callers wait for the verdict; on close they go on as closed-circuit requests; beyond it, 503 at once', async () => {
    const { b } = make('    threshold: 1\n    halfOpen: { queue: 2, maxWait: 500ms }\n');
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    const trial = b.admit();
    const got: number[] = [];
    assert.equal(b.admit(), QUEUED);
    b.enqueue((t) => got.push(t));
    assert.equal(b.admit(), QUEUED);
    b.enqueue((t) => got.push(t));
    assert.equal(b.admit(), REJECTED, 'beyond the queue');
    assert.equal(b.queued, 2);
    b.success(trial);
    await Promise.resolve();
    assert.equal(got.length, 2);
    assert.ok(
      got.every((t) => t >= 0 && (t & 1) === 0),
      'closed-circuit tickets',
    );
    b.success(got[0]!);
    assert.equal(b.queued, 0);
    b.shutdown();
  });

  test('the queue: on re-open, and after maxWait, queued callers get the 503; a withdrawn caller gets nothing', async () => {
    const { b } = make('    threshold: 1\n    halfOpen: { queue: 3, maxWait: 500ms }\n');
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    const trial = b.admit();
    const got: string[] = [];
    b.enqueue((t) => got.push(`a:${t}`));
    mock.timers.tick(200);
    const withdraw = b.enqueue((t) => got.push(`b:${t}`));
    b.enqueue((t) => got.push(`c:${t}`));
    withdraw();
    mock.timers.tick(300);
    assert.deepEqual(got, [`a:${REJECTED}`], 'a waited its 500 ms');
    b.fail(trial, 'status', 'status 503');
    await Promise.resolve();
    assert.deepEqual(got, [`a:${REJECTED}`, `c:${REJECTED}`]);
    b.shutdown();
  });

  test("retryAfter: the upstream's Retry-After decides the opening's length, clamped to [1 s, max]; the reason says so", () => {
    const { b, transitions } = make('    threshold: 1\n    retryAfter: { honor: true, max: 1m }\n    backoff: { max: 10m }\n');
    b.fail(b.admit(), 'status', 'status 503', undefined, undefined, false, 120_000);
    assert.equal(b.snapshot().cooldownMs, 60_000);
    assert.equal(b.retryAfterSeconds(), 60);
    assert.equal(transitions.at(-1)!.reason, '1 consecutive failure: status 503; upstream Retry-After 1m');
    mock.timers.tick(60_000);
    assert.equal(b.state, 'half_open');
    b.fail(b.admit(), 'status', 'status 503');
    assert.equal(b.snapshot().cooldownMs, 2000, 'no Retry-After this time: backoff step 2 (the step advanced)');
    b.shutdown();
  });

  test('without honor: true an upstream Retry-After changes nothing', () => {
    const { b } = make('    threshold: 1\n');
    b.fail(b.admit(), 'status', 'status 503', undefined, undefined, false, 120_000);
    assert.equal(b.snapshot().cooldownMs, 1000);
    b.shutdown();
  });

  test('jitter: the cooldown drawn is the one in force', () => {
    const { b } = make('    threshold: 1\n    backoff: { max: 1m, jitter: 10% }\n', () => 1);
    b.fail(b.admit(), 'connect', 'x');
    assert.equal(b.snapshot().cooldownMs, 1100);
    mock.timers.tick(1099);
    assert.equal(b.state, 'open');
    mock.timers.tick(1);
    assert.equal(b.state, 'half_open');
    b.shutdown();
  });
});

describe('policy config', () => {
  const svc = (extra: string): string => `services:\n  product:\n    url: http://p:1\n${extra}`;
  test('defaults and precedence: a rule under a service replaces the one under defaults whole', () => {
    const c = parseConfig(
      `defaults:\n  failureRate: { threshold: 50%, minRequests: 10 }\n  halfOpen: { trials: 2 }\n${svc('    failureRate: { threshold: 0.25 }\n')}  cart:\n    url: http://c:1\n`,
      {},
    );
    assert.deepEqual(c.services.get('product')!.circuit.failureRate, { ratio: 0.25, minRequests: 20, windowMs: 30_000 });
    assert.deepEqual(c.services.get('cart')!.circuit.failureRate, { ratio: 0.5, minRequests: 10, windowMs: 30_000 });
    assert.deepEqual(c.services.get('cart')!.circuit.halfOpen, { trials: 2, queue: 0, maxWaitMs: 1000 });
  });
  test('off unless set', () => {
    const s = parseConfig(svc(''), {}).services.get('product')!;
    assert.deepEqual(
      [s.circuit.failureRate, s.circuit.slowCalls, s.circuit.backoff, s.circuit.retryAfter],
      [undefined, undefined, undefined, undefined],
    );
    assert.deepEqual(s.circuit.halfOpen, { trials: 1, queue: 0, maxWaitMs: 1000 });
  });
  const bad: Array<[string, string, string]> = [
    [
      'failureRate: { threshold: 150% }',
      'services.product.failureRate.threshold',
      'must be a percentage such as 50% or a ratio such as 0.5',
    ],
    ['failureRate: { threshold: 0 }', 'services.product.failureRate.threshold', 'above 0 and at most 100%'],
    ['failureRate: { minRequests: 5 }', 'services.product.failureRate.threshold', 'is required'],
    ['slowCalls: { threshold: 80% }', 'services.product.slowCalls.duration', 'is required'],
    ['backoff: { multiplier: 0.5 }', 'services.product.backoff.multiplier', 'must be a number ≥ 1, got 0.5'],
    ['backoff: { max: 10s }', 'services.product.backoff.max', 'must be at least the cooldown of product (30s), got 10s'],
    ['backoff: { jitter: 2 }', 'services.product.backoff.jitter', 'from 0 to 100%'],
    ['halfOpen: { trials: 0 }', 'services.product.halfOpen.trials', 'must be an integer ≥ 1, got 0'],
    ['halfOpen: { queue: -1 }', 'services.product.halfOpen.queue', 'must be an integer ≥ 0, got -1'],
    ['retryAfter: { honor: yes }', 'services.product.retryAfter.honor', 'must be true or false, got "yes"'],
    ['halfOpen: { trial: 2 }', 'services.product.halfOpen.trial', 'unknown key'],
  ];
  for (const [yaml, path, message] of bad) {
    test(`refused: ${yaml}`, () => {
      assert.throws(
        () => parseConfig(svc(`    ${yaml}\n`), {}),
        (e: ConfigError) =>
          e.problems.some((p) => p.path === path && p.message.includes(message)) || assert.fail(JSON.stringify(e.problems)),
      );
    });
  }
  test('backoff.max is checked against the cooldown in force after env precedence', () => {
    const yaml = `defaults:\n  backoff: { max: 1m }\n${svc('')}`;
    assert.doesNotThrow(() => parseConfig(yaml, {}));
    assert.throws(
      () => parseConfig(yaml, { CB_COOLDOWN_SECONDS: '120' }),
      (e: ConfigError) => e.problems.some((p) => p.path === 'defaults.backoff.max' && /cooldown of product \(2m\), got 1m/.test(p.message)),
    );
  });
});

describe('load-shedding config', () => {
  const svc = (extra: string): string => `services:\n  product:\n    url: http://p:1\n${extra}`;
  test('maxConcurrent, mode and fallback: off unless set, may stand under defaults', () => {
    const plain = parseConfig(svc(''), {}).services.get('product')!;
    assert.deepEqual([plain.admission.maxConcurrent, plain.admission.mode, plain.call.fallback], [undefined, 'enforce', undefined]);
    const c = parseConfig(`defaults:\n  maxConcurrent: 8\n  mode: observe\n  fallback: { body: '[]' }\n${svc('')}`, {}).services.get(
      'product',
    )!;
    assert.deepEqual(
      [c.admission.maxConcurrent, c.admission.mode, c.call.fallback!.status, c.call.fallback!.body.toString()],
      [8, 'observe', 200, '[]'],
    );
  });
  test("bodyFile is read at load, relative to the config file's directory", () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-fallback-'));
    try {
      writeFileSync(join(dir, 'empty.json'), '{"items": []}');
      writeFileSync(join(dir, 'proxy.yaml'), svc('    fallback: { bodyFile: empty.json, headers: { content-type: application/json } }\n'));
      const f = loadConfig(join(dir, 'proxy.yaml'), {}).services.get('product')!.call.fallback!;
      assert.deepEqual([f.body.toString(), f.headers], ['{"items": []}', ['content-type', 'application/json']]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  const bad: Array<[string, string, string]> = [
    ["fallback: { body: 'a', bodyFile: b.json }", 'services.product.fallback.bodyFile', 'body and bodyFile together: set one'],
    ['fallback: { bodyFile: /nonexistent/x.json }', 'services.product.fallback.bodyFile', 'cannot read /nonexistent/x.json: ENOENT'],
    [`fallback: { body: '${'x'.repeat(65 * 1024)}' }`, 'services.product.fallback.body', 'must be at most 64 KiB, got 66560 bytes'],
    ['fallback: { status: 100 }', 'services.product.fallback.status', 'must be an HTTP status from 200 to 599, got 100'],
    ['fallback: { headers: { content-length: 5 } }', 'services.product.fallback.headers.content-length', 'must be a string'],
    ["fallback: { headers: { content-length: '5' } }", 'services.product.fallback.headers.content-length', 'is set by the proxy'],
    ["fallback: { headers: { 'bad name': x } }", 'services.product.fallback.headers.bad name', 'header names must be HTTP tokens'],
    ['mode: shadow', 'services.product.mode', 'must be enforce or observe, got "shadow"'],
    ['maxConcurrent: 0', 'services.product.maxConcurrent', 'must be an integer ≥ 1, got 0'],
  ];
  for (const [yaml, path, message] of bad) {
    test(`refused: ${yaml.slice(0, 60)}`, () => {
      assert.throws(
        () => parseConfig(svc(`    ${yaml}\n`), {}),
        (e: ConfigError) =>
          e.problems.some((p) => p.path === path && p.message.includes(message)) || assert.fail(JSON.stringify(e.problems)),
      );
    });
  }
});
