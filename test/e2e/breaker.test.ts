import { performance } from 'node:perf_hooks';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, beforeEach, describe, test } from 'node:test';
import {
  abandonOnceUpstreamHasIt,
  concurrent,
  json,
  request,
  startProxy,
  startUpstream,
  type RunningProxy,
  type Upstream,
} from '../helpers.js';

type Mode = 'ok' | 'fail500' | 'hang' | 'slow' | 'reset-mid-body';

/** An upstream whose behaviour the test switches. `slow` answers 200 after `release()`. */
async function controllable(): Promise<Upstream & { mode: Mode; held: Array<() => void>; releaseAll(): void }> {
  const state = { mode: 'ok' as Mode, held: [] as Array<() => void> };
  const up = await startUpstream((req, res) => {
    req.resume();
    switch (state.mode) {
      case 'ok':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
        return;
      case 'fail500':
        res.writeHead(500, { 'content-type': 'text/plain', 'x-upstream-error': 'yes' });
        res.end('upstream exploded');
        return;
      case 'hang':
        return;
      case 'slow':
        state.held.push(() => {
          if (!res.destroyed) res.end('{"late":true}');
        });
        return;
      case 'reset-mid-body':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
        res.write('partial');
        setImmediate(() => res.socket?.destroy());
        return;
    }
  });
  const ctl = Object.defineProperty(up, 'mode', { get: () => state.mode, set: (m: Mode) => (state.mode = m) }) as Upstream & { mode: Mode };
  return Object.assign(ctl, {
    held: state.held,
    releaseAll() {
      for (const r of state.held.splice(0)) r();
    },
  });
}

describe('breaker semantics (docs/behaviour.md), real sockets', () => {
  let up: Awaited<ReturnType<typeof controllable>>;
  /**
   * Two proxies on one upstream: `p` with a cooldown no test outlasts, for every verdict that needs
   * the circuit to stay open; `q` with a short one, for the tests that wait for half-open (by its
   * transition event, never by a sleep). On a busy machine a short cooldown can pass within one
   * test's own requests, so no assertion on `q` depends on the circuit still being open.
   */
  let p: RunningProxy;
  let q: RunningProxy;
  before(async () => {
    up = await controllable();
    p = await startProxy(`defaults: { threshold: 3, cooldown: 60s, timeout: 300ms }\nservices:\n  product:\n    url: ${up.url}\n`);
    q = await startProxy(`defaults: { threshold: 3, cooldown: 150ms, timeout: 300ms }\nservices:\n  product:\n    url: ${up.url}\n`);
  });
  after(async () => {
    up.releaseAll();
    await p.close();
    await q.close();
    await up.close();
  });
  beforeEach(() => {
    up.mode = 'ok';
    p.proxy.registry.get('product')!.circuit.forceClose('test reset');
    q.proxy.registry.get('product')!.circuit.forceClose('test reset');
  });

  const state = (): string => p.proxy.registry.get('product')!.state;
  const qState = (): string => q.proxy.registry.get('product')!.state;
  const failures = (): number => p.proxy.registry.get('product')!.circuit.consecutiveFailures;

  test('3 consecutive failures open the circuit; then 503 at once, with Retry-After, and zero upstream connections', async () => {
    up.mode = 'fail500';
    for (let i = 0; i < 3; i++) {
      const r = await request(p.port, '/svc/product/x');
      assert.equal(r.status, 500, 'upstream 5xx passes through unchanged');
      assert.equal(r.body, 'upstream exploded');
      assert.equal(r.headers['x-upstream-error'], 'yes');
    }
    assert.equal(state(), 'open');
    const connections = up.connections;
    const requests = up.requests;
    for (let i = 0; i < 20; i++) {
      const r = await request(p.port, '/svc/product/x');
      assert.equal(r.status, 503);
      assert.equal(r.headers['content-type'], 'application/problem+json');
      assert.ok(Number(r.headers['retry-after']) >= 59 && Number(r.headers['retry-after']) <= 60, String(r.headers['retry-after']));
      assert.deepEqual(json(r), {
        type: 'tag:circuit-proxy,2026:circuit-open',
        title: 'Circuit open',
        status: 503,
        detail: 'Circuit open for product',
        service: 'product',
      });
      assert.equal(r.headers['x-circuit-open'], 'product', "the proxy's own 503, told apart from an upstream's");
      assert.ok(r.headers['x-request-id']);
    }
    assert.equal(up.connections, connections, 'no new upstream connection while open');
    assert.equal(up.requests, requests, 'no upstream request while open');
    const open = p.logs.find((l) => l.msg === 'Circuit open for product');
    assert.equal(open.length, 1);
    assert.equal(open[0]!.reason, '3 consecutive failures: status 500');
  });

  test('a success resets the count; 4xx is not a failure', async () => {
    up.mode = 'fail500';
    await request(p.port, '/svc/product/x');
    await request(p.port, '/svc/product/x');
    assert.equal(failures(), 2);
    up.mode = 'ok';
    await request(p.port, '/svc/product/x');
    assert.equal(failures(), 0);
    // 404 from the echo-less upstream path is still a response: use a 4xx-producing upstream route
    const up4 = await startUpstream((_req, res) => res.writeHead(404).end());
    const p4 = await startProxy(`defaults: { threshold: 1 }\nservices:\n  product:\n    url: ${up4.url}\n`);
    for (let i = 0; i < 5; i++) assert.equal((await request(p4.port, '/svc/product/x')).status, 404);
    assert.equal(p4.proxy.registry.get('product')!.state, 'closed');
    await p4.close();
    await up4.close();
  });

  test('HALF_OPEN after the cooldown lets exactly one of 50 concurrent requests through; its success closes', async () => {
    up.mode = 'fail500';
    for (let i = 0; i < 3; i++) await request(q.port, '/svc/product/x');
    assert.equal(qState(), 'open');
    await q.nextState('product', 'half_open');
    up.mode = 'slow';
    const before = up.requests;
    const { all, rejected } = concurrent(q.port, '/svc/product/x', 50, 49);
    // The trial reaches the upstream and is held there; the 49 others are answered 503 meanwhile.
    await Promise.all([once(up.events, 'request'), rejected]);
    assert.equal(up.requests - before, 1, 'exactly one trial reached the upstream');
    assert.equal(qState(), 'half_open');
    up.releaseAll();
    const results = await all;
    assert.equal(results.filter((r) => r.status === 200).length, 1);
    assert.equal(qState(), 'closed');
  });

  test('a failed trial re-opens for a new cooldown', async () => {
    const transitions: string[] = [];
    const onTransition = (t: { from: string; to: string; reason: string }): void => void transitions.push(`${t.from}>${t.to}: ${t.reason}`);
    q.proxy.registry.on('transition', onTransition);
    try {
      up.mode = 'fail500';
      for (let i = 0; i < 3; i++) await request(q.port, '/svc/product/x');
      await q.nextState('product', 'half_open');
      // Listening before the trial: however soon the new cooldown ends, its half-open is seen.
      const again = q.nextState('product', 'half_open');
      const r = await request(q.port, '/svc/product/x');
      assert.equal(r.status, 500);
      assert.match(q.proxy.registry.get('product')!.snapshot().lastTrip!.reason, /^trial request failed: status 500/);
      // A new cooldown, then half-open again; the next trial succeeds and closes.
      up.mode = 'ok';
      await again;
      assert.equal((await request(q.port, '/svc/product/x')).status, 200);
      assert.equal(qState(), 'closed');
      assert.deepEqual(
        transitions.map((t) => t.replace(/: .*/, '')),
        ['closed>open', 'open>half_open', 'half_open>open', 'open>half_open', 'half_open>closed'],
      );
      assert.match(transitions[2]!, /trial request failed: status 500/);
    } finally {
      q.proxy.registry.off('transition', onTransition);
    }
  });

  test('no response headers within timeout -> 504 for that request only, counted as timeout', async () => {
    up.mode = 'hang';
    const started = performance.now();
    const r = await request(p.port, '/svc/product/slow');
    const took = performance.now() - started;
    assert.equal(r.status, 504);
    assert.deepEqual(json(r), {
      type: 'about:blank',
      title: 'Gateway Timeout',
      status: 504,
      detail: 'product timed out after 300ms',
      service: 'product',
    });
    assert.ok(took >= 290, `took ${took}ms`);
    assert.equal(failures(), 1);
    up.mode = 'ok';
    assert.equal((await request(p.port, '/svc/product/x')).status, 200);
  });

  test('a client that leaves is neither success nor failure, and its upstream request is aborted', async () => {
    up.mode = 'hang';
    await abandonOnceUpstreamHasIt(up, p.port, '/svc/product/abandon');
    assert.equal(failures(), 0);
    assert.equal(state(), 'closed');
  });

  test('a client abort during the half-open trial frees the slot: the next request is the trial', async () => {
    up.mode = 'fail500';
    for (let i = 0; i < 3; i++) await request(q.port, '/svc/product/x');
    await q.nextState('product', 'half_open');
    up.mode = 'hang';
    await abandonOnceUpstreamHasIt(up, q.port, '/svc/product/trial');
    assert.equal(qState(), 'half_open');
    up.mode = 'ok';
    assert.equal((await request(q.port, '/svc/product/x')).status, 200);
    assert.equal(qState(), 'closed');
  });

  test('an answer to a request sent before the circuit opened does not close it', async () => {
    up.mode = 'slow';
    const early = request(p.port, '/svc/product/early');
    await once(up.events, 'request');
    up.mode = 'fail500';
    for (let i = 0; i < 3; i++) await request(p.port, '/svc/product/x');
    assert.equal(state(), 'open');
    up.releaseAll();
    assert.equal((await early).status, 200);
    assert.equal(state(), 'open');
  });

  test('upstream reset mid-body: the client is cut off (not left hanging) and it counts as reset', async () => {
    up.mode = 'reset-mid-body';
    await assert.rejects(request(p.port, '/svc/product/body'), /aborted|ECONNRESET|socket hang up/);
    assert.equal(failures(), 1);
    const warn = p.logs.find((l) => l.reason === 'reset' && l.service === 'product');
    assert.ok(warn.length >= 1);
  });
});

describe('unreachable upstream', () => {
  test('connect refused -> 502 "<name> unreachable: connect ECONNREFUSED", then 503', async () => {
    const gone = await startUpstream(() => undefined);
    const url = gone.url;
    await gone.close();
    const p = await startProxy(`defaults: { threshold: 3, cooldown: 10s }\nservices:\n  product:\n    url: ${url}\n`);
    for (let i = 0; i < 3; i++) {
      const r = await request(p.port, '/svc/product/products/1/stock?quantity=2');
      assert.equal(r.status, 502);
      assert.deepEqual(json(r), {
        type: 'about:blank',
        title: 'Bad Gateway',
        status: 502,
        detail: 'product unreachable: connect ECONNREFUSED',
        service: 'product',
      });
    }
    const r = await request(p.port, '/svc/product/products/1/stock?quantity=2');
    assert.equal(r.status, 503);
    assert.ok(Number(r.headers['retry-after']) >= 9 && Number(r.headers['retry-after']) <= 10, String(r.headers['retry-after']));
    const warns = p.logs.find((l) => l.msg === 'product unreachable: connect ECONNREFUSED');
    assert.equal(warns.length, 3);
    assert.equal(warns[0]!.level, 40);
    assert.equal(warns[0]!.code, 'ECONNREFUSED');
    await p.close();
  });

  test('DNS failure is a connect failure', async () => {
    const p = await startProxy(`defaults: { threshold: 1 }\nservices:\n  product:\n    url: http://does-not-exist.invalid:8000\n`);
    const r = await request(p.port, '/svc/product/x');
    assert.equal(r.status, 502);
    assert.match(json(r).detail, /^product unreachable: dns (ENOTFOUND|EAI_AGAIN)/);
    assert.equal(p.proxy.registry.get('product')!.state, 'open');
    await p.close();
  });
});

describe('what rejected callers are told: rejectRetryAfter (docs/behaviour.md)', () => {
  test('cooldown (default), none, a cap; the marker and the problem type on every proxy 503', async () => {
    const gone = await startUpstream(() => undefined);
    const url = gone.url;
    await gone.close();
    const p = await startProxy(
      [
        'defaults: { threshold: 1, cooldown: 60s }',
        'services:',
        `  plain: { url: "${url}" }`,
        `  quiet: { url: "${url}", rejectRetryAfter: none }`,
        `  capped: { url: "${url}", rejectRetryAfter: 1500ms }`,
        `  backup: { url: "${url}", rejectRetryAfter: 2s, fallback: { status: 200, body: "cached" } }`,
        '',
      ].join('\n'),
    );
    for (const name of ['plain', 'quiet', 'capped', 'backup']) {
      assert.equal((await request(p.port, `/svc/${name}/x`)).status, 502, `${name} trips on its first refusal`);
    }
    const plain = await request(p.port, '/svc/plain/x');
    assert.equal(plain.status, 503);
    assert.ok(Number(plain.headers['retry-after']) >= 59, String(plain.headers['retry-after']));
    assert.equal(plain.headers['x-circuit-open'], 'plain');

    const quiet = await request(p.port, '/svc/quiet/x');
    assert.equal(quiet.status, 503);
    assert.equal(quiet.headers['retry-after'], undefined, 'none: no Retry-After for a client to sleep on');
    assert.equal(quiet.headers['x-circuit-open'], 'quiet');
    assert.equal(json(quiet).type, 'tag:circuit-proxy,2026:circuit-open');
    assert.ok(quiet.headers['x-request-id']);

    const capped = await request(p.port, '/svc/capped/x');
    assert.equal(capped.headers['retry-after'], '2', 'a cap of 1500ms is told as 2 whole seconds');
    assert.equal(capped.headers['x-circuit-open'], 'capped');
    assert.equal(json(capped).detail, 'Circuit open for capped');

    const backup = await request(p.port, '/svc/backup/x');
    assert.equal(backup.status, 200);
    assert.equal(backup.body, 'cached');
    assert.equal(backup.headers['retry-after'], '2');
    assert.equal(backup.headers['x-circuit-fallback'], 'backup');

    // The state itself is not capped: /breakers still says when the trial comes.
    const quietState = json<{ retryAfterSeconds: number }>(await request(p.adminPort, '/breakers/quiet'));
    assert.ok(quietState.retryAfterSeconds >= 59);
    await p.close();
  });
});
