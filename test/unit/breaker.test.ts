import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { REJECTED, type BreakerEvents, type TransitionEvent } from '../../src/circuit/circuit.js';
import { TestCircuit } from '../circuit-helper.js';
import { parseConfig } from '../../src/config/load.js';

/** The breaker's never-stepping clock, in these tests the mocked `Date` (it ticks with the mocked timers) unless given. */
function make(threshold = 3, cooldown = '1s', clock = () => Date.now()): { b: TestCircuit; transitions: TransitionEvent[] } {
  const cfg = parseConfig(`services:\n  product:\n    url: http://p:1\n    threshold: ${threshold}\n    cooldown: ${cooldown}\n`, {});
  const events = new EventEmitter<BreakerEvents>();
  const transitions: TransitionEvent[] = [];
  events.on('transition', (t) => transitions.push(t));
  return { b: new TestCircuit(cfg.services.get('product')!, events, new EventEmitter(), clock), transitions };
}

describe('Circuit policy (mock timers)', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  test('opens after `threshold` consecutive failures; a success resets the count', () => {
    const { b, transitions } = make(3);
    b.fail(b.admit(), 'connect', 'connect ECONNREFUSED');
    b.fail(b.admit(), 'connect', 'connect ECONNREFUSED');
    b.success(b.admit());
    assert.equal(b.consecutiveFailures, 0);
    b.fail(b.admit(), 'connect', 'connect ECONNREFUSED');
    b.fail(b.admit(), 'status', 'status 500');
    assert.equal(b.state, 'closed');
    b.fail(b.admit(), 'timeout', 'no response headers within 5s');
    assert.equal(b.state, 'open');
    assert.deepEqual(
      transitions.map((t) => [t.from, t.to, t.reason]),
      [['closed', 'open', '3 consecutive failures: no response headers within 5s']],
    );
    b.shutdown();
  });

  test('OPEN rejects; Retry-After counts down in whole seconds, at least 1; HALF_OPEN after the cooldown', () => {
    const { b } = make(1, '2500ms');
    b.fail(b.admit(), 'connect', 'x');
    assert.equal(b.admit(), REJECTED);
    assert.equal(b.retryAfterSeconds(), 3);
    mock.timers.tick(1000);
    assert.equal(b.retryAfterSeconds(), 2);
    mock.timers.tick(1400);
    assert.equal(b.retryAfterSeconds(), 1);
    assert.equal(b.state, 'open');
    mock.timers.tick(100);
    assert.equal(b.state, 'half_open');
    b.shutdown();
  });

  test('Retry-After counts on the never-stepping clock: a wall-clock step back by ten minutes changes nothing', () => {
    let tick = 5_000;
    const { b } = make(1, '30s', () => tick);
    b.fail(b.admit(), 'connect', 'x');
    assert.equal(b.retryAfterSeconds(), 30);
    mock.timers.setTime(Date.now() - 600_000);
    assert.equal(b.retryAfterSeconds(), 30);
    assert.equal(b.snapshot().retryAfterSeconds, 30);
    tick += 10_000;
    assert.equal(b.retryAfterSeconds(), 20);
    b.shutdown();
  });

  test('HALF_OPEN admits exactly one trial; trial success closes', () => {
    const { b, transitions } = make(1);
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    const trial = b.admit();
    assert.notEqual(trial, REJECTED);
    for (let i = 0; i < 50; i++) assert.equal(b.admit(), REJECTED);
    b.success(trial);
    assert.equal(b.state, 'closed');
    assert.deepEqual(
      transitions.map((t) => t.to),
      ['open', 'half_open', 'closed'],
    );
    b.shutdown();
  });

  test('trial failure re-opens for a new cooldown', () => {
    const { b } = make(1);
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    b.fail(b.admit(), 'status', 'status 503');
    assert.equal(b.state, 'open');
    assert.equal(b.snapshot().lastTrip!.reason, 'trial request failed: status 503');
    mock.timers.tick(999);
    assert.equal(b.state, 'open');
    mock.timers.tick(1);
    assert.equal(b.state, 'half_open');
    b.shutdown();
  });

  test('an abandoned trial releases the slot; the circuit stays HALF_OPEN', () => {
    const { b } = make(1);
    b.fail(b.admit(), 'connect', 'x');
    mock.timers.tick(1000);
    const trial = b.admit();
    b.abandon(trial);
    assert.equal(b.state, 'half_open');
    const next = b.admit();
    assert.notEqual(next, REJECTED);
    b.success(next);
    assert.equal(b.state, 'closed');
    b.shutdown();
  });

  test('stale outcomes (admitted before the last transition) change nothing', () => {
    const { b } = make(2);
    const early = b.admit();
    b.fail(b.admit(), 'connect', 'x');
    b.fail(b.admit(), 'connect', 'x');
    assert.equal(b.state, 'open');
    mock.timers.tick(1000);
    assert.equal(b.state, 'half_open');
    b.success(early); // would close a half-open opossum breaker
    assert.equal(b.state, 'half_open');
    const trial = b.admit();
    const staleTrialFailure = trial;
    b.success(trial);
    assert.equal(b.state, 'closed');
    b.fail(staleTrialFailure, 'connect', 'late'); // the trial again, late: ignored
    assert.equal(b.consecutiveFailures, 0);
    b.shutdown();
  });

  test('forced open stays open through cooldowns until closed', () => {
    const { b, transitions } = make(3);
    b.forceOpen('maintenance');
    assert.equal(b.state, 'open');
    assert.equal(b.forced, true);
    mock.timers.tick(5000);
    assert.equal(b.state, 'open');
    assert.equal(b.admit(), REJECTED);
    b.forceClose('done');
    assert.equal(b.state, 'closed');
    assert.equal(b.forced, false);
    assert.deepEqual(
      transitions.map((t) => [t.from, t.to, t.reason]),
      [
        ['closed', 'open', 'forced open: maintenance'],
        ['open', 'closed', 'forced closed: done'],
      ],
    );
    b.shutdown();
  });
});
