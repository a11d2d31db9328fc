/** The pure trip and recovery rules (docs/policies.md), from tables, with an injected clock. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cooldownStep, drawCooldown } from '../../src/policy/backoff.js';
import { retryAfterMs } from '../../src/policy/retry-after.js';
import { failureRateTrip, slowCallTrip } from '../../src/policy/rules.js';
import { OutcomeWindow } from '../../src/policy/window.js';

describe('OutcomeWindow (1 s buckets)', () => {
  test('an outcome leaves between `window` and `window` + 1 s after it was decided', () => {
    const cases: Array<[number, number]> = [
      // decided at (ms), window (ms)
      [0, 3000],
      [999, 3000],
      [1500, 2000],
      [12_345, 30_000],
    ];
    for (const [at, windowMs] of cases) {
      let now = at;
      const w = new OutcomeWindow(windowMs, () => now);
      w.record(true, false);
      now = at + windowMs - 1;
      assert.equal(w.counts().total, 1, `still there just before ${windowMs} ms (decided at ${at})`);
      now = at + windowMs + 1000;
      assert.equal(w.counts().total, 0, `gone by ${windowMs} + 1000 ms (decided at ${at})`);
    }
  });

  test('counts successes, failures, slow calls; a late failure of a slow call adds a failure, not a request; clear empties it', () => {
    let now = 10_000;
    const w = new OutcomeWindow(30_000, () => now);
    w.record(false, false);
    w.record(true, false);
    now += 2500;
    w.record(false, true);
    w.recordLateFailure();
    assert.deepEqual(w.counts(), { total: 3, failures: 2, slow: 1 });
    w.clear();
    assert.deepEqual(w.counts(), { total: 0, failures: 0, slow: 0 });
  });

  test('a bucket reused after the ring wraps starts from zero', () => {
    let now = 0;
    const w = new OutcomeWindow(2000, () => now);
    for (let i = 0; i < 5; i++) w.record(true, false);
    now = 3000; // the same ring slot (3 slots), a newer second
    w.record(false, false);
    assert.deepEqual(w.counts(), { total: 1, failures: 0, slow: 0 });
  });
});

describe('trip rules', () => {
  const fr = { ratio: 0.5, minRequests: 20, windowMs: 30_000 };
  const sc = { ratio: 0.8, minRequests: 20, windowMs: 30_000, durationMs: 2000 };
  const table: Array<[string, { total: number; failures: number; slow: number }, string | undefined, string | undefined]> = [
    ['below minRequests, all failed', { total: 19, failures: 19, slow: 19 }, undefined, undefined],
    ['at minRequests, just under', { total: 20, failures: 9, slow: 15 }, undefined, undefined],
    [
      'at the thresholds',
      { total: 20, failures: 10, slow: 16 },
      'failure rate 50% (10 of 20) in 30s >= 50%',
      'slow calls 80% (16 of 20) over 2s in 30s >= 80%',
    ],
    [
      'above',
      { total: 20, failures: 11, slow: 17 },
      'failure rate 55% (11 of 20) in 30s >= 50%',
      'slow calls 85% (17 of 20) over 2s in 30s >= 80%',
    ],
    ['empty', { total: 0, failures: 0, slow: 0 }, undefined, undefined],
  ];
  for (const [name, counts, failureReason, slowReason] of table) {
    test(name, () => {
      assert.equal(failureRateTrip(counts, fr), failureReason);
      assert.equal(slowCallTrip(counts, sc), slowReason);
    });
  }
  test('minRequests 1 trips on the first failure at 100%', () => {
    assert.equal(
      failureRateTrip({ total: 1, failures: 1, slow: 0 }, { ...fr, minRequests: 1, ratio: 1 }),
      'failure rate 100% (1 of 1) in 30s >= 100%',
    );
  });
});

describe('backoff', () => {
  const rule = { multiplier: 2, maxMs: 300_000, jitter: 0 };
  test('steps 1x, 2x, 4x, ... capped at max; no rule: the cooldown', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7].map((n) => cooldownStep(n, 30_000, rule)),
      [30_000, 60_000, 120_000, 240_000, 300_000, 300_000, 300_000],
    );
    assert.equal(cooldownStep(5, 30_000, undefined), 30_000);
  });
  test('the drawn cooldown and the note a trip reason carries', () => {
    assert.deepEqual(
      drawCooldown(2, 30_000, rule, () => 0.5),
      { ms: 60_000, note: 'cooldown 1m (backoff 2 of 5m)' },
    );
    assert.deepEqual(
      drawCooldown(1, 30_000, undefined, () => 0.5),
      { ms: 30_000, note: '' },
    );
  });
  test('jitter draws within ± of the step, then max caps', () => {
    const j = { ...rule, jitter: 0.1 };
    assert.equal(drawCooldown(1, 30_000, j, () => 0).ms, 27_000);
    assert.equal(drawCooldown(1, 30_000, j, () => 1).ms, 33_000);
    assert.equal(drawCooldown(5, 30_000, j, () => 1).ms, 300_000, 'jitter above the cap is capped');
    assert.equal(drawCooldown(5, 30_000, j, () => 0).ms, 270_000);
  });
});

describe('upstream Retry-After', () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  const table: Array<[string | undefined, number | undefined]> = [
    ['120', 120_000],
    [' 7 ', 7000],
    ['0', 1000],
    ['86400', 600_000],
    ['Tue, 01 Dec 2026 10:02:00 GMT', 120_000],
    ['Tue, 01 Dec 2026 09:00:00 GMT', 1000],
    ['soon', undefined],
    ['-5', undefined],
    ['1.5', undefined],
    [undefined, undefined],
  ];
  for (const [value, expected] of table) {
    test(`${JSON.stringify(value)} -> ${expected}`, () => assert.equal(retryAfterMs(value, now, 600_000), expected));
  }
});
