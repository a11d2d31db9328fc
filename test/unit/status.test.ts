/**
 * The `status` command's table (src/status.ts) from a table of breaker snapshots: what each state
 * shows, a fleet's part in it among them (docs/fleet.md, "Seeing it").
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ServiceStats } from '../../src/admin/live.js';
import { render } from '../../src/status.js';

const NOW = Date.parse('2026-12-07T12:00:00.000Z');

function stats(name: string, over: Partial<ServiceStats>): ServiceStats {
  return {
    name,
    url: 'http://127.0.0.1:1',
    timeoutMs: 5000,
    state: 'closed',
    forced: false,
    consecutiveFailures: 0,
    threshold: 3,
    cooldownMs: 30_000,
    lastTransitionAt: '2026-12-07T11:59:00.000Z',
    retryAfterSeconds: null,
    lastTrip: null,
    nextProbeAt: 0,
    queued: 0,
    inFlightNow: 0,
    rps: 0,
    errorsPerSecond: 0,
    requests: 0,
    rejected: 0,
    tunnels: 0,
    ...over,
  };
}

const trip = { at: '2026-12-07T11:59:50.000Z', reason: '3 consecutive failures: status 500' };

// [snapshot, STATE cell, NEXT PROBE IN cell]
const rows: Array<[ServiceStats, string, string]> = [
  [stats('closed', {}), 'closed', '-'],
  [stats('own', { state: 'open', consecutiveFailures: 3, retryAfterSeconds: 20, lastTrip: trip }), 'open', '20s'],
  [
    stats('shared', { state: 'open', retryAfterSeconds: 20, lastTrip: trip, stateFrom: 'make-order-2' }),
    'open (fleet: make-order-2)',
    '20s',
  ],
  [stats('forced', { state: 'open', forced: true, retryAfterSeconds: null }), 'open (forced)', 'forced'],
  [
    stats('waiting', { state: 'half_open', stateFrom: 'make-order-2', trialBy: 'make-order-3' }),
    'half_open (fleet: make-order-2)',
    'trial: make-order-3',
  ],
  [stats('trying', { state: 'half_open' }), 'half_open', '-'],
];

test('status table: each state, where a fleet message made it and who sends the fleet trial', () => {
  const out = render(
    rows.map((r) => r[0]),
    false,
    NOW,
  ).split('\n');
  const head = out[0]!;
  const col = (name: string): number => head.indexOf(name);
  assert.ok(col('STATE') > 0 && col('NEXT PROBE IN') > col('STATE'));
  for (const [s, stateCell, probeCell] of rows) {
    const line = out.find((l) => l.startsWith(`${s.name} `));
    assert.ok(line, `a row for ${s.name}`);
    assert.equal(line.slice(col('STATE'), col('FAILURES')).trim(), stateCell, `${s.name}: STATE`);
    assert.equal(line.slice(col('NEXT PROBE IN'), col('REQUESTS')).trim(), probeCell, `${s.name}: NEXT PROBE IN`);
  }
  assert.match(
    out.find((l) => l.startsWith('own '))!,
    /10s ago: 3 consecutive failures: status 500/,
  );
});

test('status table: a service with routes has a row per route under it, with its requests, rate and 5xx; only service rows are coloured', () => {
  const routes = [
    { route: 'create', requests: 40, errors: 10, rps: 4, errorsPerSecond: 1 },
    { route: '-', requests: 0, errors: 0, rps: 0, errorsPerSecond: 0 },
  ];
  const out = render([stats('order', { routes }), stats('cart', {})], false, NOW).split('\n');
  const head = out[0]!;
  const cell = (line: string, from: string, to?: string): string =>
    line.slice(head.indexOf(from), to === undefined ? undefined : head.indexOf(to)).trim();
  assert.deepEqual(
    out.slice(1, 5).map((l) => cell(l, 'SERVICE', 'STATE')),
    ['order', 'route create', 'route -', 'cart'],
  );
  const create = out[2]!;
  assert.equal(cell(create, 'STATE', 'FAILURES'), '');
  assert.equal(cell(create, 'REQUESTS', 'REJECTED'), '40');
  assert.equal(cell(create, 'REQ/S', 'ENDPOINTS'), '4');
  assert.equal(cell(create, 'LAST TRIP'), '5xx: 10 (25%)');
  assert.equal(cell(out[3]!, 'LAST TRIP'), '5xx: 0');
  const painted = render([stats('order', { routes })], true, NOW).split('\n');
  assert.match(painted[1]!, /\x1b\[32mclosed/);
  assert.doesNotMatch(painted[2]!, /\x1b\[/);
});
