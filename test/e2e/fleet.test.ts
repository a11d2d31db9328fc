/**
 * A fleet of sidecars sharing circuit state through a real Redis (docs/fleet.md): Debian's
 * redis-server on a loopback port, several proxies in one fleet and one outside it, Redis killed
 * and started again mid-test, garbage published on the fleet's channel.
 */
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { json, metricValue, request, runCli, startProxy, startUpstream, until, type RunningProxy, type Upstream } from '../helpers.js';
import { fleetChannel } from '../../src/fleet/fleet.js';
import { REDIS_SERVER, startRedis, type RunningRedis } from '../redis.js';

type Mode = 'ok' | 'fail' | 'hold';
type Trio = [RunningProxy, RunningProxy, RunningProxy];

/** An upstream that answers 200, 500, or holds every request until `releaseAll()`; it counts what reaches it. */
async function upstream(): Promise<Upstream & { mode: Mode; hits: number; held: Array<() => void>; releaseAll(): void }> {
  const state = { mode: 'ok' as Mode, hits: 0, held: [] as Array<() => void> };
  const up = await startUpstream((req, res) => {
    req.resume();
    state.hits += 1;
    if (state.mode === 'hold') {
      state.held.push(() => res.end('{"late":true}'));
      return;
    }
    res.writeHead(state.mode === 'ok' ? 200 : 500, { 'content-type': 'application/json' });
    res.end(state.mode === 'ok' ? '{"ok":true}' : '{"error":true}');
  });
  // Accessors, so the test's switches reach the handler (Object.assign would copy the values).
  Object.defineProperties(up, {
    mode: { get: () => state.mode, set: (m: Mode) => (state.mode = m) },
    hits: { get: () => state.hits },
  });
  return Object.assign(up as Upstream & { mode: Mode; hits: number }, {
    held: state.held,
    releaseAll() {
      for (const r of state.held.splice(0)) r();
    },
  });
}

function fleetYaml(redis: RunningRedis, key: string, sidecar: string, url: string, extra = '', cooldown = '60s'): string {
  return [
    `fleet: { redis: "${redis.url}", key: ${key}, sidecar: ${sidecar}${extra} }`,
    `defaults: { threshold: 3, cooldown: ${cooldown}, timeout: 2s }`,
    'services:',
    `  product:`,
    `    url: ${url}`,
    `  cart:`,
    `    url: ${url}`,
  ].join('\n');
}

async function connected(p: RunningProxy): Promise<void> {
  await until(() => p.proxy.fleet?.connected === true, 'fleet connected', 15_000);
}

/** Three failed requests through `p`: its circuit for product opens on its own. */
async function trip(p: RunningProxy): Promise<void> {
  const opened = p.nextState('product', 'open');
  for (let i = 0; i < 3; i++) assert.equal((await request(p.port, '/svc/product/x')).status, 500);
  await opened;
}

const state = (p: RunningProxy, service = 'product'): string => p.proxy.registry.get(service)!.circuit.state;

describe(
  'fleet: shared circuit state through a real redis-server',
  { skip: REDIS_SERVER ? false : 'redis-server not installed (.ci/run installs it)' },
  () => {
    let redis: RunningRedis;
    let up: Awaited<ReturnType<typeof upstream>>;
    const proxies: RunningProxy[] = [];
    const start = async (yaml: string): Promise<RunningProxy> => {
      const p = await startProxy(yaml);
      proxies.push(p);
      return p;
    };
    before(async () => {
      redis = await startRedis();
      up = await upstream();
    });
    after(async () => {
      up.releaseAll();
      await Promise.all(proxies.map((p) => p.close()));
      await redis.close();
      await up.close();
    });

    describe('quorum 1: three sidecars in a fleet, one outside it', () => {
      let a: RunningProxy;
      let b: RunningProxy;
      let c: RunningProxy;
      let outside: RunningProxy;
      before(async () => {
        [a, b, c] = (await Promise.all(['a', 'b', 'c'].map((id) => start(fleetYaml(redis, 'q1', id, up.url))))) as Trio;
        outside = await start(`defaults: { threshold: 3, cooldown: 60s }\nservices:\n  product:\n    url: ${up.url}\n`);
        await Promise.all([a, b, c].map(connected));
        up.mode = 'ok';
      });

      test('a trip in one opens the others within 1 s, with the reason "fleet: <sidecar> <reason>"; the one outside stays closed', async () => {
        up.mode = 'fail';
        const others = [b, c].map((p) => p.nextState('product', 'open').then(() => performance.now()));
        const opened = a.nextState('product', 'open').then(() => performance.now());
        for (let i = 0; i < 3; i++) await request(a.port, '/svc/product/x');
        const t0 = await opened;
        const times = await Promise.all(others);
        for (const t of times) assert.ok(t - t0 < 1000, `opened ${Math.round(t - t0)} ms after the first`);
        for (const p of [b, c]) {
          const snap = json(await request(p.adminPort, '/breakers/product'));
          assert.equal(snap.state, 'open');
          assert.equal(snap.stateFrom, 'a');
          assert.match(snap.lastTrip.reason, /^fleet: a 3 consecutive failures: status 500/);
          // The same instant as a's: every sidecar probes together, and the lock picks one.
          const until = a.proxy.registry.get('product')!.circuit.nextProbeAt;
          assert.ok(Math.abs(p.proxy.registry.get('product')!.circuit.nextProbeAt - until) < 50);
        }
        const hits = up.hits;
        const r = await request(b.port, '/svc/product/x');
        assert.equal(r.status, 503);
        assert.equal(up.hits, hits, 'an open circuit from the fleet sends nothing upstream');
        assert.equal(state(outside), 'closed');
        assert.equal(state(a, 'cart'), 'closed', 'only the service that opened');
        assert.equal(json(await request(a.adminPort, '/breakers/product')).stateFrom, undefined, "a's opening was its own");
        assert.equal(await metricValue(a, 'circuit_fleet_messages_total{kind="open",direction="out"}'), 1);
        assert.equal(await metricValue(b, 'circuit_fleet_messages_total{kind="open",direction="in"}'), 1);
        assert.equal(
          await metricValue(b, 'circuit_fleet_messages_total{kind="open",direction="out"}'),
          0,
          'a fleet opening is not published again',
        );
        assert.equal(await metricValue(b, 'circuit_fleet_connected'), 1);
        // The `status` command says where it came from; a's own opening says nothing of the fleet.
        const table = await runCli(['status', '--admin-url', `http://127.0.0.1:${b.adminPort}`]);
        assert.equal(table.code, 3, table.stdout + table.stderr);
        assert.match(table.stdout, /^product\s+open \(fleet: a\)\s+0\/3\s+\d+s\s/m);
        assert.match((await runCli(['status', '--admin-url', `http://127.0.0.1:${a.adminPort}`])).stdout, /^product\s+open\s+3\/3\s/m);
        // The history and the event stream say where it came from.
        const history = json(await request(b.adminPort, '/breakers/product/history')).transitions;
        assert.equal(history[0].fleet, 'a');
      });

      test('force actions stay local; ?fleet=1 forces every sidecar of the fleet', async () => {
        up.mode = 'ok';
        for (const p of [a, b, c]) p.proxy.registry.get('cart')!.circuit.forceClose('test reset');
        const local = await request(a.adminPort, '/breakers/cart/open', { method: 'POST', body: '{"reason":"local only"}' });
        assert.equal(local.status, 200);
        assert.equal(state(a, 'cart'), 'open');
        const forced = [b, c].map((p) => p.nextState('cart', 'open'));
        const all = await request(b.adminPort, '/breakers/cart/open?fleet=1', { method: 'POST', body: '{"reason":"maintenance"}' });
        assert.equal(all.status, 200);
        assert.deepEqual(json(all).fleet, { published: true });
        await Promise.all(forced);
        const snap = json(await request(c.adminPort, '/breakers/cart'));
        assert.equal(snap.forced, true);
        assert.equal(snap.stateFrom, 'b');
        assert.match(snap.lastTrip.reason, /^fleet: b forced open: maintenance \(by 127\.0\.0\.1\)/);
        const closed = [a, c].map((p) => p.nextState('cart', 'closed'));
        assert.equal((await request(b.adminPort, '/breakers/cart/close?fleet=1', { method: 'POST' })).status, 200);
        await Promise.all(closed);
        assert.equal(state(a, 'cart'), 'closed');
        assert.equal((await request(outside.adminPort, '/breakers/product/open?fleet=1', { method: 'POST' })).status, 400);
        assert.equal(state(outside), 'closed', 'refused, not applied');
        assert.equal((await request(a.adminPort, '/breakers/cart/open?fleet=yes', { method: 'POST' })).status, 400);
      });

      test('garbage on the channel is ignored and counted: malformed, unknown version, unknown service, from the future', async () => {
        const before = await metricValue(a, 'circuit_fleet_ignored_total');
        const channel = fleetChannel('q1');
        const base = { v: 1, sidecar: 'x', instance: 'x1', service: 'cart', at: Date.now(), reason: 'garbage' };
        const garbage = [
          'not json',
          '[]',
          '{"v":1}',
          JSON.stringify({ ...base, v: 2, kind: 'open', until: Date.now() + 60_000, trial: false }),
          JSON.stringify({ ...base, service: 'nosuch', kind: 'open', until: Date.now() + 60_000, trial: false }),
          JSON.stringify({ ...base, at: Date.now() + 3_600_000, kind: 'open', until: Date.now() + 3_700_000, trial: false }),
          JSON.stringify({ ...base, kind: 'force', action: 'explode' }),
          'x'.repeat(10_000),
        ];
        for (const g of garbage) await redis.publish(channel, g);
        await until(() => a.proxy.fleet!.counts.ignored >= (before ?? 0) + garbage.length, 'garbage counted');
        assert.equal(await metricValue(a, 'circuit_fleet_ignored_total'), (before ?? 0) + garbage.length);
        for (const p of [a, b, c]) assert.equal(state(p, 'cart'), 'closed');
        assert.equal((await request(a.port, '/svc/cart/x')).status, 200, 'still serving');
      });
    });

    test('quorum 2: one sidecar opening is not enough; a second, within one cooldown, opens the rest', async () => {
      const [e, f, g] = (await Promise.all(['e', 'f', 'g'].map((id) => start(fleetYaml(redis, 'q2', id, up.url, ', quorum: 2'))))) as Trio;
      await Promise.all([e, f, g].map(connected));
      up.mode = 'fail';
      await trip(e);
      await until(() => g.proxy.fleet!.counts.messages.open.in === 1 && f.proxy.fleet!.counts.messages.open.in === 1, "e's opening heard");
      assert.equal(state(f), 'closed');
      assert.equal(state(g), 'closed');
      const gOpens = g.nextState('product', 'open');
      await trip(f);
      await gOpens;
      const snap = json(await request(g.adminPort, '/breakers/product'));
      assert.equal(snap.stateFrom, 'f');
      assert.match(snap.lastTrip.reason, /^fleet: f 3 consecutive failures/);
      up.mode = 'ok';
    });

    test('half-open: one trial for the whole fleet, counted at the upstream; its success closes every sidecar', async () => {
      const [h, i, j] = (await Promise.all(['h', 'i', 'j'].map((id) => start(fleetYaml(redis, 'trial', id, up.url, '', '300ms'))))) as Trio;
      await Promise.all([h, i, j].map(connected));
      up.mode = 'fail';
      const allOpen = [i, j].map((p) => p.nextState('product', 'open'));
      const halfOpen = [h, i, j].map((p) => p.nextState('product', 'half_open'));
      await trip(h);
      await Promise.all(allOpen);
      up.mode = 'hold';
      await Promise.all(halfOpen);
      const hits = up.hits;
      // Everyone asks until the upstream has one trial in hand; the lock answers within milliseconds.
      const statuses: number[] = [];
      for (let n = 0; n < 2000 && up.held.length === 0; n++) {
        const p = [h, i, j][n % 3]!;
        void request(p.port, '/svc/product/x').then((r) => statuses.push(r.status));
        await new Promise((r) => setImmediate(r));
        await until(() => statuses.length === n + 1 || up.held.length > 0, 'an answer or the trial', 10_000);
      }
      assert.equal(up.held.length, 1, 'the trial reached the upstream');
      // The others (and the trial's own sidecar) keep rejecting while it is out.
      for (const p of [h, i, j]) for (let k = 0; k < 3; k++) assert.equal((await request(p.port, '/svc/product/x')).status, 503);
      assert.equal(up.hits - hits, 1, 'one trial for the fleet');
      const holders = [h, i, j].filter((p) => p.proxy.registry.get('product')!.circuit.snapshot().trialBy === undefined);
      assert.equal(holders.length, 1, 'one sidecar holds the trial');
      const holder = holders[0]!;
      const rest = [h, i, j].filter((p) => p !== holder);
      for (const p of rest) {
        const snap = json(await request(p.adminPort, '/breakers/product'));
        assert.equal(snap.state, 'half_open');
        assert.equal(snap.trialBy, holder.proxy.fleet!.config.sidecar);
      }
      const closed = rest.map((p) => p.nextState('product', 'closed'));
      up.mode = 'ok';
      up.releaseAll();
      await Promise.all(closed);
      assert.equal(up.hits - hits, 1, 'the others closed on its verdict, not on trials of their own');
      for (const p of rest) assert.match(json(await request(p.adminPort, '/breakers/product')).lastTransitionAt, /Z$/);
      const verdict = json(await request(rest[0]!.adminPort, '/breakers/product/history')).transitions[0];
      assert.equal(verdict.to, 'closed');
      assert.match(verdict.reason, new RegExp(`^fleet: ${holder.proxy.fleet!.config.sidecar} trial request succeeded`));
      for (const p of [h, i, j]) assert.equal((await request(p.port, '/svc/product/x')).status, 200);
    });

    test('Redis stopped: requests as fast as before, each sidecar alone; Redis back: rejoined, and what it missed is told', async () => {
      const [k, l] = (await Promise.all(['k', 'l'].map((id) => start(fleetYaml(redis, 'outage', id, up.url))))) as [
        RunningProxy,
        RunningProxy,
      ];
      await Promise.all([k, l].map(connected));
      up.mode = 'ok';
      const median = async (p: RunningProxy): Promise<number> => {
        const t: number[] = [];
        for (let n = 0; n < 150; n++) {
          const s = performance.now();
          assert.equal((await request(p.port, '/svc/cart/x')).status, 200);
          t.push(performance.now() - s);
        }
        t.sort((x, y) => x - y);
        return t[Math.floor(t.length / 2)]!;
      };
      const withRedis = await median(k);
      await redis.stop();
      await until(() => k.proxy.fleet!.connected === false && l.proxy.fleet!.connected === false, 'the loss noticed', 10_000);
      const withoutRedis = await median(k);
      // Same run, same machine: the ratio, with room for a busy machine; a request waiting on Redis would take ≥ 1 s.
      assert.ok(
        withoutRedis < withRedis * 3 + 2,
        `median ${withoutRedis.toFixed(2)} ms without Redis vs ${withRedis.toFixed(2)} ms with it`,
      );
      assert.equal(await metricValue(k, 'circuit_fleet_connected'), 0);
      assert.equal(k.logs.lines.filter((x) => /fleet: Redis lost/.test(String(x.msg))).length, 1, 'logged once');
      up.mode = 'fail';
      await trip(k);
      assert.equal(state(l), 'closed', 'alone: nobody heard it');
      up.mode = 'ok';
      const lOpens = l.nextState('product', 'open');
      await redis.start();
      await Promise.all([k, l].map(connected));
      await lOpens;
      assert.match(json(await request(l.adminPort, '/breakers/product')).lastTrip.reason, /^fleet: k 3 consecutive failures/);
      assert.equal(await metricValue(l, 'circuit_fleet_connected'), 1);
    });

    test('a trial that closed while Redis was away: told on rejoining, it closes the sidecar opened before it; its older opening is not followed back', async () => {
      // m probes soon, n not for a minute: without the close told again, n would stay open that long.
      const m = await start(fleetYaml(redis, 'missed', 'm', up.url, '', '200ms'));
      const n = await start(fleetYaml(redis, 'missed', 'n', up.url, '', '60s'));
      await Promise.all([m, n].map(connected));
      await redis.stop();
      await until(() => m.proxy.fleet!.connected === false && n.proxy.fleet!.connected === false, 'the loss noticed', 10_000);
      up.mode = 'fail';
      await trip(n);
      const nOpenedAt = n.proxy.registry.get('product')!.circuit.openedAt;
      const mHalfOpen = m.nextState('product', 'half_open');
      await trip(m);
      up.mode = 'ok';
      await mHalfOpen;
      assert.equal((await request(m.port, '/svc/product/x')).status, 200, "m's own trial, alone");
      assert.equal(state(m), 'closed');
      assert.equal(state(n), 'open', 'alone: nobody told n');
      await redis.start();
      await Promise.all([m, n].map(connected));
      // Both rejoined at once: what one told before the other subscribed, the other reads from the board.
      await until(() => state(n) === 'closed', "n closed by m's trial, told again", 10_000);
      assert.match(
        json(await request(n.adminPort, '/breakers/product/history')).transitions[0].reason,
        /^fleet: m trial request succeeded/,
      );
      // n's opening, older than m's close, told again (it is, when m rejoins first): m does not
      // follow it. Sent here so the check holds whichever rejoined first; the garbage after it
      // marks when m has read it (one channel keeps its order).
      const ignored = m.proxy.fleet!.counts.ignored;
      const told = { v: 1, kind: 'open', sidecar: 'n', instance: 'n-earlier', service: 'product', trial: false };
      await redis.publish(fleetChannel('missed'), JSON.stringify({ ...told, at: nOpenedAt, reason: 'r', until: Date.now() + 60_000 }));
      await redis.publish(fleetChannel('missed'), 'not json');
      await until(() => m.proxy.fleet!.counts.ignored > ignored, 'the marker read', 10_000);
      assert.equal(state(m), 'closed');
      assert.equal((await request(n.port, '/svc/product/x')).status, 200);
    });

    test('a sidecar that joins after the opener is gone reads the opening from the board: open at once, no request of its own upstream', async () => {
      const p = await start(fleetYaml(redis, 'board', 'p', up.url));
      await connected(p);
      up.mode = 'fail';
      await trip(p);
      const reason = json(await request(p.adminPort, '/breakers/product')).lastTrip.reason as string;
      await p.close(); // nobody is left to answer a sync
      const hits = up.hits;
      const q = await start(fleetYaml(redis, 'board', 'q', up.url));
      await until(() => state(q) === 'open', "q opened from p's board entry", 10_000);
      assert.equal(json(await request(q.adminPort, '/breakers/product')).lastTrip.reason, `fleet: p ${reason}`);
      assert.equal((await request(q.port, '/svc/product/x')).status, 503);
      assert.equal(up.hits, hits, 'q sent nothing upstream');
      assert.equal(state(q, 'cart'), 'closed');
      up.mode = 'ok';
      // A fleet-wide force is on the board too: a sidecar that joins later follows it, open and close.
      const forced = await request(q.adminPort, '/breakers/cart/open?fleet=1', { method: 'POST', body: '{"reason":"maintenance"}' });
      assert.deepEqual(json(forced).fleet, { published: true });
      const r = await start(fleetYaml(redis, 'board', 'r', up.url));
      await until(() => state(r, 'cart') === 'open', "r forced open from q's board entry", 10_000);
      assert.match(json(await request(r.adminPort, '/breakers/cart')).lastTrip.reason, /^fleet: q forced open: maintenance/);
      await r.close();
      assert.equal((await request(q.adminPort, '/breakers/cart/close?fleet=1', { method: 'POST' })).status, 200);
      const t = await start(fleetYaml(redis, 'board', 't', up.url));
      await connected(t);
      await until(() => t.logs.lines.some((l) => l.msg === 'fleet: board read'), 'the board read', 10_000);
      assert.equal(state(t, 'cart'), 'closed', 'the force close replaced it');
    });

    test('a Redis that accepts connections and never answers: requests go on, trips and trials work alone', async () => {
      const sockets: Socket[] = [];
      const silent = createServer((s) => sockets.push(s.on('error', () => undefined)));
      silent.listen(0, '127.0.0.1');
      await once(silent, 'listening');
      const port = (silent.address() as { port: number }).port;
      const m = await start(fleetYaml({ url: `redis://127.0.0.1:${port}` } as RunningRedis, 'silent', 'm', up.url, '', '200ms'));
      try {
        up.mode = 'ok';
        const s0 = performance.now();
        for (let n = 0; n < 20; n++) assert.equal((await request(m.port, '/svc/cart/x')).status, 200);
        assert.ok(performance.now() - s0 < 20 * 500, 'no request waited on Redis');
        up.mode = 'fail';
        await trip(m);
        up.mode = 'ok';
        const closed = m.nextState('product', 'closed');
        await m.nextState('product', 'half_open');
        // Its trial goes within the lock's wait at most (1 s): send until it does.
        for (let n = 0; n < 400 && state(m) !== 'closed'; n++) {
          await request(m.port, '/svc/product/x');
          if (state(m) !== 'closed') await new Promise((r) => setTimeout(r, 10));
        }
        await closed;
        assert.equal(m.proxy.fleet!.connected, false);
      } finally {
        for (const s of sockets) s.destroy();
        silent.close();
      }
    });
  },
);
