/** The trip rules behind one interface (src/policy/trip.ts), from tables with an injected clock. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConsecutiveFailures, WindowRules, type Observation } from '../../src/policy/trip.js';
import { resolveLayers } from '../../src/config/resolve.js';

describe('trip rules', () => {
  const consecutive: Array<[string, Observation[], number, boolean]> = [
    ['three failures in a row trip', ['failure', 'failure', 'failure'], 3, true],
    ['a success in between starts over', ['failure', 'failure', 'success', 'failure'], 1, false],
    ['a slow call is neither', ['failure', 'slow', 'failure'], 2, false],
    ['a slow call that succeeds resets the count', ['failure', 'slow', 'slow-success'], 0, false],
    ['a slow call that fails counts', ['failure', 'failure', 'slow', 'slow-failure'], 3, true],
  ];
  for (const [name, seen, count, trips] of consecutive) {
    test(`consecutive: ${name}`, () => {
      const rule = new ConsecutiveFailures(3);
      const reasons = seen.map((o) => rule.observe(o));
      assert.equal(rule.count, count);
      assert.equal(reasons.at(-1) !== undefined, trips);
    });
  }

  test('windows: the failure rate trips at minRequests, a slow call is one request in a shared window', () => {
    const now = 0;
    const rules = new WindowRules(
      { ratio: 0.5, minRequests: 4, windowMs: 10_000 },
      { ratio: 0.5, minRequests: 4, windowMs: 10_000, durationMs: 100 },
      () => now,
    );
    assert.equal(rules.observe('success'), undefined);
    assert.equal(rules.observe('slow'), undefined);
    assert.equal(rules.observe('slow-failure'), undefined, 'the slow call, now a failure: still two requests');
    assert.equal(rules.snapshot()!.requests, 2);
    assert.equal(rules.observe('success'), undefined);
    assert.match(rules.observe('failure') ?? '', /^failure rate 50% \(2 of 4\)/);
    rules.clear();
    assert.deepEqual(rules.snapshot(), { requests: 0, failureRate: 0, slowCallRate: 0 });
  });

  test('windows: a slow call is not counted where slowCalls is not set', () => {
    const rules = new WindowRules({ ratio: 0.5, minRequests: 1, windowMs: 10_000 }, undefined, () => 0);
    assert.equal(rules.countsSlow, false);
    assert.equal(rules.observe('slow'), undefined);
    assert.equal(rules.snapshot()!.requests, 0);
  });
});

describe('layered config', () => {
  test('the highest layer that sets a key wins, whole; where() names the key in the layer it came from', () => {
    type T = { a?: number; b?: { x: number }; c?: string };
    const r = resolveLayers<T>([
      { path: [], values: { a: 1, b: { x: 1 }, c: 'builtin' } },
      { path: ['defaults'], values: { a: 2, b: { x: 2 } } },
      { path: [], values: { a: undefined } },
      { path: ['services', 'p'], values: { b: { x: 3 } } },
    ]);
    assert.deepEqual(r.values, { a: 2, b: { x: 3 }, c: 'builtin' });
    assert.deepEqual(r.where('a'), ['defaults', 'a']);
    assert.deepEqual(r.where('b'), ['services', 'p', 'b']);
    assert.deepEqual(r.where('c'), ['c']);
  });
});
