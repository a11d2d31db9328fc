/**
 * The fleet's decisions (docs/fleet.md) without Redis: messages checked from a table, and the
 * Fleet driven through a transport held in memory, with an injected clock for the quorum's window.
 * test/e2e/fleet.test.ts runs the same through a real redis-server.
 */
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { Fleet, type BoardEntry, type ClaimResult, type FleetTransport, type TransportEvents } from '../../src/fleet/fleet.js';
import { MAX_CLOCK_SKEW_MS, parseMessage } from '../../src/fleet/message.js';
import { reconnectDelay } from '../../src/fleet/redis.js';
import { createLogger } from '../../src/log.js';
import { ServiceRegistry } from '../../src/upstream/registry.js';
import { failed } from '../../src/outcome.js';
import { LogSink } from '../helpers.js';

/** The circuits read the real clock for an opening's end; the fleet's (the quorum window) is injected. */
const NOW = Date.now();
const base = { v: 1, sidecar: 'b', instance: 'i-b', service: 'product', at: NOW, reason: 'r' };
const open = (over: Record<string, unknown> = {}): string =>
  JSON.stringify({ ...base, kind: 'open', until: NOW + 30_000, trial: false, ...over });
/** Sidecar b's close at `at`, told again after a rejoin. */
const replayedClose = (at: number): string =>
  JSON.stringify({ ...base, at, kind: 'close', reason: 'trial request succeeded', replay: true });

describe('fleet messages, checked', () => {
  const table: Array<[string, string, string]> = [
    ['an opening', open(), 'ok'],
    ['a close', JSON.stringify({ ...base, kind: 'close' }), 'ok'],
    ['a close told again', JSON.stringify({ ...base, kind: 'close', replay: true }), 'ok'],
    ['a close told again, marked otherwise', JSON.stringify({ ...base, kind: 'close', replay: 'yes' }), 'malformed'],
    ['a force', JSON.stringify({ ...base, kind: 'force', action: 'close' }), 'ok'],
    ['a sync', JSON.stringify({ ...base, service: '*', kind: 'sync' }), 'ok'],
    ['a sync of one service', JSON.stringify({ ...base, kind: 'sync' }), 'malformed'],
    ['an opening of every service', open({ service: '*' }), 'malformed'],
    ['not JSON', '{"v":1', 'malformed'],
    ['a JSON array', '[1]', 'malformed'],
    ['null', 'null', 'malformed'],
    ['no version', JSON.stringify({ ...base, v: undefined, kind: 'close' }), 'malformed'],
    ['a later version', open({ v: 2 }), 'version'],
    ['an unknown kind', JSON.stringify({ ...base, kind: 'reboot' }), 'malformed'],
    ['a force of nothing', JSON.stringify({ ...base, kind: 'force', action: 'explode' }), 'malformed'],
    ['a service name no config can have', open({ service: '../etc' }), 'malformed'],
    ['no sidecar', open({ sidecar: '' }), 'malformed'],
    ['a time that is not a number', open({ at: '1800000000000' }), 'malformed'],
    ['until before at', open({ until: NOW - 1 }), 'malformed'],
    ['until 30 days on', open({ until: NOW + 30 * 86_400_000 }), 'malformed'],
    ['trial not a boolean', open({ trial: 'yes' }), 'malformed'],
    ['a reason too long', open({ reason: 'x'.repeat(501) }), 'malformed'],
    ['over 4 KiB', open({ reason: 'x'.repeat(400), pad: 'y'.repeat(5000) }), 'malformed'],
    ['from the future, beyond the skew allowed', open({ at: NOW + MAX_CLOCK_SKEW_MS + 1, until: NOW + 60_000 }), 'future'],
    ['from the future, within the skew allowed', open({ at: NOW + MAX_CLOCK_SKEW_MS }), 'ok'],
    ['an opening already over', open({ at: NOW - 60_000, until: NOW - 1 }), 'stale'],
  ];
  for (const [what, text, want] of table) {
    test(`${what}: ${want}`, () => {
      const r = parseMessage(text, NOW);
      assert.equal(r.ok ? 'ok' : r.why, want);
    });
  }
});

test('reconnect backoff: 50-100% of 100 ms doubling, capped at 5 s', () => {
  assert.equal(
    reconnectDelay(0, () => 0),
    50,
  );
  assert.equal(
    reconnectDelay(0, () => 1),
    100,
  );
  assert.equal(
    reconnectDelay(3, () => 1),
    800,
  );
  assert.equal(
    reconnectDelay(50, () => 1),
    5000,
  );
  assert.equal(
    reconnectDelay(50, () => 0),
    2500,
  );
});

/** A transport held in memory: what was published, and a claim the test answers. */
class MemoryTransport extends EventEmitter<TransportEvents> implements FleetTransport {
  connected = true;
  readonly sent: Array<Record<string, unknown>> = [];
  /** What was published, but the `sync` a (re)join sends. */
  get published(): Array<Record<string, unknown>> {
    return this.sent.filter((m) => m.kind !== 'sync');
  }
  readonly released: string[] = [];
  /** The board, by key. */
  readonly board = new Map<string, { text: string; ttlMs: number | undefined }>();
  claims: Array<{ key: string; value: string; ttlMs: number; answer: (r: ClaimResult) => void; fail: (e: Error) => void }> = [];
  publish(text: string, board?: BoardEntry): Promise<boolean> {
    if (!this.connected) return Promise.resolve(false);
    if (board !== undefined) this.board.set(board.key, { text: board.text, ttlMs: board.ttlMs });
    this.sent.push(JSON.parse(text) as Record<string, unknown>);
    return Promise.resolve(true);
  }
  unpost(key: string): void {
    if (this.connected) this.board.delete(key);
  }
  readBoard(prefix: string): Promise<string[]> {
    return Promise.resolve([...this.board].filter(([k]) => k.startsWith(prefix)).map(([, v]) => v.text));
  }
  /** What this sidecar posted, parsed. */
  posted(key: string): Record<string, unknown> | undefined {
    const e = this.board.get(key);
    return e === undefined ? undefined : (JSON.parse(e.text) as Record<string, unknown>);
  }
  claim(key: string, value: string, ttlMs: number): Promise<ClaimResult> {
    return new Promise((answer, fail) => this.claims.push({ key, value, ttlMs, answer, fail }));
  }
  release(key: string): void {
    this.released.push(key);
  }
  start(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
  up(connected: boolean): void {
    this.connected = connected;
    this.emit('connected', connected);
  }
}

function setup(fleet: string, cooldown = '30s', claimWaitMs = 1000) {
  const config = parseConfig(
    `fleet: { redis: "redis://127.0.0.1:1/0", key: t, sidecar: a${fleet} }\ndefaults: { threshold: 1, cooldown: ${cooldown}, timeout: 2s }\nservices:\n  product:\n    url: http://127.0.0.1:1\n`,
    {},
  );
  const registry = new ServiceRegistry(config);
  const transport = new MemoryTransport();
  const clock = { now: NOW };
  const sink = new LogSink();
  const f = new Fleet(config.fleet!, registry, transport, createLogger({ level: 'debug', stream: sink }), () => clock.now, claimWaitMs);
  f.start();
  transport.up(true);
  const circuit = () => registry.get('product')!.circuit;
  const tripLocally = () => circuit().failure(circuit().admit(), failed({ reason: 'status', cause: 'status 500' }));
  const say = (text: string) => transport.emit('message', text);
  // opossum's cooldown timer does not hold the event loop open; a test awaiting it must.
  const keep = setInterval(() => undefined, 1000);
  const close = () => {
    clearInterval(keep);
    void f.close();
    registry.shutdown();
  };
  return { registry, transport, clock, fleet: f, circuit, tripLocally, say, sink, close };
}

describe('the fleet, driven without Redis', () => {
  test('quorum 2: two distinct sidecars within one cooldown open it; the same sidecar twice, or an opening older than a cooldown, do not', () => {
    const s = setup(', quorum: 2');
    try {
      s.say(open({ sidecar: 'b', at: NOW - 31_000, until: NOW + 1000 }));
      s.say(open({ sidecar: 'c' }));
      assert.equal(s.circuit().state, 'closed', "b's opening is older than the cooldown");
      s.say(open({ sidecar: 'c', instance: 'i-c2' }));
      assert.equal(s.circuit().state, 'closed', 'one sidecar, however many times');
      s.say(open({ sidecar: 'd', reason: 'status 503', until: NOW + 20_000 }));
      assert.equal(s.circuit().state, 'open');
      assert.equal(s.circuit().snapshot().stateFrom, 'd');
      assert.equal(s.circuit().snapshot().lastTrip?.reason, 'fleet: d status 503');
      assert.equal(s.transport.published.length, 0, 'a fleet opening is not published again');
    } finally {
      s.close();
    }
  });

  test('its own messages (by instance) are skipped; an unknown service is ignored and counted', () => {
    const s = setup('');
    try {
      s.say(open({ instance: s.fleet.instance }));
      assert.equal(s.circuit().state, 'closed');
      assert.equal(s.fleet.counts.messages.open.in, 0);
      s.say(open({ service: 'nosuch' }));
      assert.equal(s.fleet.counts.ignored, 1);
      assert.equal(s.circuit().state, 'closed');
    } finally {
      s.close();
    }
  });

  test('a local trip is published with its reason and until; a forced open is not', () => {
    const s = setup('');
    try {
      s.tripLocally();
      assert.equal(s.circuit().state, 'open');
      const m = s.transport.published[0]!;
      assert.equal(m.kind, 'open');
      assert.equal(m.sidecar, 'a');
      assert.equal(m.until, s.circuit().nextProbeAt);
      assert.match(String(m.reason), /status 500/);
      s.circuit().forceClose('reset');
      s.circuit().forceOpen('ops');
      assert.equal(s.transport.published.length, 1, 'a forced open stays local');
    } finally {
      s.close();
    }
  });

  test('half-open: held while Redis is asked; another holder keeps it held; its failed trial re-opens it whatever the quorum', async () => {
    const s = setup(', quorum: 3', '20ms');
    try {
      const half = once(s.registry, 'transition');
      s.tripLocally();
      await half; // the open
      while (s.circuit().state !== 'half_open') await once(s.registry, 'transition');
      assert.equal(s.transport.claims.length, 1);
      assert.equal(s.transport.claims[0]!.ttlMs, 3000, "the service's timeout + 1 s");
      assert.equal(s.circuit().admit(), -1, 'rejected while the lock is asked for');
      s.transport.claims[0]!.answer({ taken: false, holder: 'c i-c 7', ttlMs: 60_000 });
      await new Promise((r) => setImmediate(r));
      assert.equal(s.circuit().snapshot().trialBy, 'c');
      assert.equal(s.circuit().admit(), -1);
      s.say(open({ sidecar: 'c', trial: true, reason: 'trial request failed: status 500' }));
      assert.equal(s.circuit().state, 'open');
      assert.equal(s.circuit().snapshot().lastTrip?.reason, 'fleet: c trial request failed: status 500');
    } finally {
      s.close();
    }
  });

  test('half-open: the lock taken lets the trial through; its success is published as a close and the lock freed', async () => {
    const s = setup('', '20ms');
    try {
      s.tripLocally();
      while (s.circuit().state !== 'half_open') await once(s.registry, 'transition');
      s.transport.claims[0]!.answer({ taken: true });
      await new Promise((r) => setImmediate(r));
      const ticket = s.circuit().admit();
      assert.ok(ticket >= 0, 'the trial goes');
      s.circuit().success(ticket);
      assert.equal(s.circuit().state, 'closed');
      assert.equal(s.transport.published.at(-1)!.kind, 'close');
      assert.deepEqual(s.transport.released, ['circuit-proxy:t:trial:product']);
    } finally {
      s.close();
    }
  });

  test('half-open: Redis silent past the wait, or lost, lets the trial go here', async () => {
    const s = setup('', '20ms', 30);
    try {
      s.tripLocally();
      while (s.circuit().state !== 'half_open') await once(s.registry, 'transition');
      assert.equal(s.circuit().trialHeld, true);
      while (s.circuit().trialHeld) await new Promise((r) => setTimeout(r, 5));
      assert.ok(s.circuit().admit() >= 0);
      assert.ok(s.sink.lines.some((l) => /did not answer the trial lock/.test(String(l.msg))));
    } finally {
      s.close();
    }
    const t = setup('', '20ms', 60_000);
    try {
      t.tripLocally();
      while (t.circuit().state !== 'half_open') await once(t.registry, 'transition');
      assert.equal(t.circuit().trialHeld, true);
      t.transport.up(false);
      assert.equal(t.circuit().trialHeld, false, 'nobody can say whose it is: ours');
      assert.equal(t.sink.lines.filter((l) => /fleet: Redis lost/.test(String(l.msg))).length, 1);
      t.transport.claims[0]!.answer({ taken: true });
    } finally {
      t.close();
    }
  });

  test('disconnected, a cooldown ends in a local trial at once; reconnected, its own opening still in force is told again', () => {
    const s = setup('');
    try {
      s.transport.up(false);
      s.tripLocally();
      assert.equal(s.transport.published.length, 0);
      s.transport.up(true);
      assert.equal(s.transport.published.length, 1);
      assert.equal(s.transport.published[0]!.until, s.circuit().nextProbeAt);
    } finally {
      s.close();
    }
  });

  test('a (re)join asks the others (sync); a sync heard republishes the openings in force here', () => {
    const s = setup('');
    try {
      assert.deepEqual(
        s.transport.sent.map((m) => [m.kind, m.service]),
        [['sync', '*']],
      );
      s.say(JSON.stringify({ ...base, service: '*', kind: 'sync' }));
      assert.equal(s.transport.published.length, 0, 'nothing open here');
      s.tripLocally();
      s.say(JSON.stringify({ ...base, service: '*', kind: 'sync' }));
      assert.deepEqual(
        s.transport.published.map((m) => [m.kind, m.service]),
        [
          ['open', 'product'],
          ['open', 'product'],
        ],
      );
      assert.equal(s.fleet.counts.messages.sync.in, 2);
    } finally {
      s.close();
    }
  });

  test("a trial's close, missed by sidecars apart: told again on rejoining and on a sync, until the circuit opens again", async () => {
    const s = setup('', '20ms');
    try {
      s.transport.up(false);
      s.tripLocally();
      while (s.circuit().state !== 'half_open') await once(s.registry, 'transition');
      s.circuit().success(s.circuit().admit());
      assert.equal(s.circuit().state, 'closed');
      assert.equal(s.transport.sent.length, 1, "only the first join's sync: nothing went while apart");
      s.transport.up(true);
      const told = s.transport.published.filter((m) => m.kind === 'close');
      assert.equal(told.length, 1);
      assert.equal(told[0]!.replay, true);
      assert.equal(told[0]!.reason, 'trial request succeeded');
      assert.ok(typeof told[0]!.at === 'number' && told[0]!.at <= Date.now());
      s.say(JSON.stringify({ ...base, service: '*', kind: 'sync' }));
      assert.equal(s.transport.published.filter((m) => m.kind === 'close').length, 2, 'a sync heard tells it again');
      s.tripLocally();
      s.say(JSON.stringify({ ...base, service: '*', kind: 'sync' }));
      assert.deepEqual(
        s.transport.published.slice(-2).map((m) => m.kind),
        ['open', 'open'],
        'open again: the opening is told, the old close no longer',
      );
    } finally {
      s.close();
    }
  });

  test('a close told again ends only an opening older than it', () => {
    const s = setup('');
    try {
      s.tripLocally();
      const openedAt = s.circuit().openedAt;
      s.say(replayedClose(openedAt - 1));
      assert.equal(s.circuit().state, 'open', 'a close from before this opening');
      s.say(replayedClose(openedAt));
      assert.equal(s.circuit().state, 'open', 'a close at the same instant');
      s.say(replayedClose(openedAt + 1));
      assert.equal(s.circuit().state, 'closed', 'a close after this opening');
      assert.equal(s.circuit().snapshot().stateFrom, 'b');
    } finally {
      s.close();
    }
  });

  test('an opening from before this circuit last closed (told again after a rejoin) is over: not followed', () => {
    const s = setup('');
    try {
      s.tripLocally();
      s.circuit().forceClose('reset');
      const closedAt = Date.now();
      s.clock.now = closedAt;
      s.say(open({ at: closedAt - 1_000, until: closedAt + 30_000 }));
      assert.equal(s.circuit().state, 'closed', 'an opening older than the close');
      s.say(open({ at: closedAt + 1, until: closedAt + 30_000 }));
      assert.equal(s.circuit().state, 'open', 'a newer opening');
    } finally {
      s.close();
    }
  });

  test('quorum 2: a close told again forgets the openings older than it, not the newer ones', () => {
    const s = setup(', quorum: 2');
    try {
      s.say(open({ sidecar: 'c', at: NOW }));
      s.say(replayedClose(NOW + 1));
      s.say(open({ sidecar: 'd', at: NOW + 2 }));
      assert.equal(s.circuit().state, 'closed', "c's opening ended with the close");
      s.say(replayedClose(NOW + 1));
      s.say(open({ sidecar: 'e', at: NOW + 3 }));
      assert.equal(s.circuit().state, 'open', "d's opening is newer than the close: d and e make the quorum");
      assert.equal(s.circuit().snapshot().lastTrip?.reason, 'fleet: e r');
    } finally {
      s.close();
    }
  });

  test('a close from the fleet closes an open circuit, never a forced one', () => {
    const s = setup('');
    try {
      s.say(open({ sidecar: 'b' }));
      assert.equal(s.circuit().state, 'open');
      s.say(JSON.stringify({ ...base, kind: 'close', reason: 'trial request succeeded' }));
      assert.equal(s.circuit().state, 'closed');
      assert.equal(s.circuit().snapshot().stateFrom, 'b');
      s.circuit().forceOpen('ops');
      s.say(JSON.stringify({ ...base, kind: 'close', reason: 'trial request succeeded' }));
      assert.equal(s.circuit().state, 'open', "an operator's force stays");
    } finally {
      s.close();
    }
  });
});

describe("the board: each sidecar's last word on a service, read on joining", () => {
  const KEY = 'circuit-proxy:t:board:product:a';
  /** Another sidecar's entry, put on the board while this one is apart, then read as it (re)joins. */
  const rejoinWith = async (s: ReturnType<typeof setup>, entries: Record<string, string>): Promise<void> => {
    s.transport.up(false);
    for (const [k, text] of Object.entries(entries)) s.transport.board.set(k, { text, ttlMs: 60_000 });
    s.transport.up(true);
    await new Promise((r) => setImmediate(r));
  };

  test('a local opening is posted until it ends; its trial close replaces it, marked as told again, for the longest cooldown; a close of another kind deletes it', async () => {
    const s = setup('', '20ms');
    try {
      s.tripLocally();
      const posted = s.transport.posted(KEY)!;
      assert.equal(posted.kind, 'open');
      assert.equal(posted.until, s.circuit().nextProbeAt);
      const ttl = s.transport.board.get(KEY)!.ttlMs!;
      assert.ok(ttl >= 1000 && ttl <= 1020 + (s.circuit().nextProbeAt - NOW), `until it ends, plus 1 s: ${ttl}`);
      while (s.circuit().state !== 'half_open') await once(s.registry, 'transition');
      s.transport.claims[0]!.answer({ taken: true });
      await new Promise((r) => setImmediate(r));
      s.circuit().success(s.circuit().admit());
      assert.equal(s.transport.published.at(-1)!.replay, undefined, 'the live close is a close');
      assert.deepEqual([s.transport.posted(KEY)!.kind, s.transport.posted(KEY)!.replay], ['close', true]);
      assert.equal(s.transport.board.get(KEY)!.ttlMs, 20 + 1000, 'the cooldown (no backoff here), plus 1 s');
      s.tripLocally();
      assert.equal(s.transport.posted(KEY)!.kind, 'open');
      s.circuit().forceClose('reset');
      assert.equal(s.transport.board.has(KEY), false, "closed by an operator: this sidecar's opening is over");
    } finally {
      s.close();
    }
  });

  test("joining, another sidecar's opening on the board opens here; its own entries, other configs' services and openings already over are skipped, not counted", async () => {
    const s = setup('');
    try {
      await rejoinWith(s, {
        'circuit-proxy:t:board:product:a': open({ sidecar: 'a', instance: s.fleet.instance, reason: 'mine' }),
        'circuit-proxy:t:board:nosuch:b': open({ service: 'nosuch' }),
        'circuit-proxy:t:board:product:c': open({ sidecar: 'c', at: NOW - 60_000, until: NOW - 1 }),
      });
      assert.equal(s.circuit().state, 'closed', 'its own opening is skipped');
      assert.equal(s.fleet.counts.ignored, 0);
      await rejoinWith(s, { 'circuit-proxy:t:board:product:b': open({ sidecar: 'b', reason: 'status 503' }) });
      assert.equal(s.circuit().state, 'open');
      assert.equal(s.circuit().snapshot().lastTrip?.reason, 'fleet: b status 503');
      assert.equal(s.fleet.counts.messages.open.in, 0, 'a board entry is not a message in');
      assert.ok(s.sink.lines.some((l) => l.msg === 'fleet: board read' && l.applied === 1));
    } finally {
      s.close();
    }
  });

  test('joining, garbage on the board is ignored and counted; a sync or a live close there is not ours', async () => {
    const s = setup('');
    try {
      await rejoinWith(s, {
        'circuit-proxy:t:board:product:x': 'not json',
        'circuit-proxy:t:board:product:y': JSON.stringify({ ...base, service: '*', kind: 'sync' }),
        'circuit-proxy:t:board:product:z': JSON.stringify({ ...base, kind: 'close' }),
      });
      assert.equal(s.fleet.counts.ignored, 3);
      assert.equal(s.fleet.counts.messages.sync.in, 0);
    } finally {
      s.close();
    }
  });

  test('a fleet-wide force is posted per service: an open kept until replaced, a close for a day; a joiner follows them, and a close never ends a force of its own', async () => {
    const s = setup('');
    s.clock.now = Date.now() + 10; // the board's times below are read as not from the future
    const FORCE = 'circuit-proxy:t:board:product';
    const force = (action: string, at: number, sidecar = 'b') =>
      JSON.stringify({ ...base, sidecar, at, kind: 'force', action, reason: 'maint (by 10.0.0.5)' });
    try {
      assert.equal(await s.fleet.force('product', 'open', 'maint'), true);
      assert.deepEqual([s.transport.posted(FORCE)!.action, s.transport.board.get(FORCE)!.ttlMs], ['open', undefined]);
      await s.fleet.force('product', 'close', 'done');
      assert.deepEqual([s.transport.posted(FORCE)!.action, s.transport.board.get(FORCE)!.ttlMs], ['close', 86_400_000]);
      s.transport.board.clear();
      await rejoinWith(s, { [FORCE]: force('open', Date.now()), 'circuit-proxy:t:board:product:c': replayedClose(Date.now() + 1) });
      assert.equal(s.circuit().state, 'open');
      assert.equal(s.circuit().snapshot().forced, true);
      assert.equal(s.circuit().snapshot().lastTrip?.reason, 'fleet: b forced open: maint (by 10.0.0.5)', 'a close is no match for a force');
      await rejoinWith(s, { [FORCE]: force('close', Date.now() + 2) });
      assert.equal(s.circuit().state, 'closed', "the fleet's force close ends the fleet's force open");
      s.circuit().forceOpen('here, by hand');
      await rejoinWith(s, { [FORCE]: force('close', Date.now() + 5) });
      assert.equal(s.circuit().state, 'open', "an operator's force on this sidecar stays");
    } finally {
      s.close();
    }
  });

  test("joining, an opening older than the board's newest close of that service is over; the close ends this sidecar's older opening", async () => {
    const s = setup('');
    try {
      s.transport.up(false);
      s.tripLocally();
      const openedAt = s.circuit().openedAt;
      await rejoinWith(s, {
        'circuit-proxy:t:board:product:b': open({ sidecar: 'b', at: openedAt }),
        'circuit-proxy:t:board:product:c': replayedClose(openedAt + 5).replace('"sidecar":"b"', '"sidecar":"c"'),
      });
      assert.equal(s.circuit().state, 'closed', "c's close is newer than both openings");
      assert.equal(s.circuit().snapshot().stateFrom, 'c');
      // This sidecar's clock moves on past the close, and d opens after it.
      s.clock.now = Math.max(Date.now(), openedAt + 5) + 1;
      await rejoinWith(s, { 'circuit-proxy:t:board:product:d': open({ sidecar: 'd', at: s.clock.now, until: s.clock.now + 30_000 }) });
      assert.equal(s.circuit().state, 'open', 'an opening newer than the close is followed');
    } finally {
      s.close();
    }
  });
});
