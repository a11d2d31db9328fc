/** The trip and recovery policies (docs/policies.md) over real sockets: real upstreams, the real proxy. */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import type { ServerResponse } from 'node:http';
import { describe, test } from 'node:test';
import { json, metricValue, request, until, upstreamAndProxy, type RunningProxy } from '../helpers.js';

const setUp = upstreamAndProxy();
const metric = (p: RunningProxy, name: string): Promise<number | undefined> => metricValue(p, `${name}{service="product"}`);

describe('policies over real sockets', () => {
  test('slow calls: a hanging upstream trips the slow-call rule while the requests still hang', async () => {
    const hanging: ServerResponse[] = [];
    const { p } = await setUp(
      (req, res) => {
        req.resume();
        hanging.push(res);
      },
      (url) =>
        `defaults: { timeout: 5s, threshold: 100 }\nservices:\n  product:\n    url: ${url}\n    slowCalls: { duration: 100ms, threshold: 100%, minRequests: 3 }\n`,
    );
    const opened = p.nextState('product', 'open');
    const t0 = performance.now();
    const pending = [1, 2, 3].map(() => request(p.port, '/svc/product/hang'));
    await opened;
    assert.ok(performance.now() - t0 < 2000, 'opened long before the 5 s timeout');
    const rejected = await request(p.port, '/svc/product/x');
    assert.equal(rejected.status, 503);
    const b = json(await request(p.adminPort, '/breakers/product'));
    assert.equal(b.lastTrip.reason, 'slow calls 100% (3 of 3) over 100ms in 30s >= 100%');
    assert.deepEqual(b.window, { requests: 0, failureRate: null, slowCallRate: 0 }, 'the window restarted at the opening');
    for (const res of hanging) res.end('late');
    const late = await Promise.all(pending);
    assert.deepEqual(
      late.map((r) => r.status),
      [200, 200, 200],
      'the hanging requests still get their answer',
    );
    assert.equal(p.proxy.registry.get('product')!.state, 'open', 'their late success changes nothing');
  });

  test('failure rate: a partial outage that never makes 3 in a row trips the ratio rule; the metrics show the window', async () => {
    let n = 0;
    const { p } = await setUp(
      (req, res) => {
        req.resume();
        res.writeHead(n++ % 2 === 0 ? 500 : 200).end();
      },
      (url) => `services:\n  product:\n    url: ${url}\n    failureRate: { threshold: 50%, minRequests: 6, window: 10s }\n`,
    );
    for (let i = 0; i < 5; i++) await request(p.port, '/svc/product/x');
    assert.equal(await metric(p, 'circuit_breaker_window_requests'), 5);
    assert.equal(await metric(p, 'circuit_breaker_failure_rate'), 0.6);
    assert.equal(await metric(p, 'circuit_breaker_slow_call_rate'), undefined, 'present only where its rule is set');
    await request(p.port, '/svc/product/x');
    assert.equal(p.proxy.registry.get('product')!.state, 'open');
    assert.equal(json(await request(p.adminPort, '/breakers/product')).lastTrip.reason, 'failure rate 50% (3 of 6) in 10s >= 50%');
  });

  test('half-open queue: 10 callers at half-open with a healthy upstream all get 200 (the trial, then the queue)', async () => {
    let healthy = false;
    const { p } = await setUp(
      (req, res) => {
        req.resume();
        if (!healthy) return void res.writeHead(503).end();
        setTimeout(() => res.end('ok'), 100);
      },
      (url) =>
        `defaults: { threshold: 1, cooldown: 1s }\nservices:\n  product:\n    url: ${url}\n    halfOpen: { queue: 9, maxWait: 3s }\n`,
    );
    assert.equal((await request(p.port, '/svc/product/x')).status, 503);
    assert.equal(p.proxy.registry.get('product')!.state, 'open');
    healthy = true;
    await p.nextState('product', 'half_open');
    const replies = await Promise.all(Array.from({ length: 10 }, () => request(p.port, '/svc/product/x')));
    assert.deepEqual(
      replies.map((r) => r.status),
      Array(10).fill(200),
    );
    assert.equal(p.proxy.registry.get('product')!.state, 'closed');
    assert.equal(await metric(p, 'circuit_breaker_half_open_queue'), 0);
  });

  test('half-open queue: with a failing trial the queued callers get the 503 at once, with Retry-After', async () => {
    const { p } = await setUp(
      (req, res) => {
        req.resume();
        setTimeout(() => res.writeHead(503).end(), 100);
      },
      (url) =>
        `defaults: { threshold: 1, cooldown: 200ms }\nservices:\n  product:\n    url: ${url}\n    halfOpen: { queue: 4, maxWait: 5s }\n`,
    );
    await request(p.port, '/svc/product/x');
    await p.nextState('product', 'half_open');
    const t0 = performance.now();
    const replies = await Promise.all(Array.from({ length: 5 }, () => request(p.port, '/svc/product/x')));
    assert.ok(performance.now() - t0 < 2000, 'nobody waited for maxWait');
    assert.deepEqual(replies.map((r) => r.status).sort(), [503, 503, 503, 503, 503]);
    const rejected = replies.filter((r) => r.headers['content-type'] === 'application/problem+json');
    assert.equal(rejected.length, 4, "four 503s are the proxy's own, one is the trial's upstream answer");
    for (const r of rejected) assert.equal(r.headers['retry-after'], '1');
  });

  test("retryAfter: the upstream's Retry-After on the tripping failure sets the cooldown, clamped to max", async () => {
    const { p } = await setUp(
      (req, res) => {
        req.resume();
        res.writeHead(503, { 'retry-after': '120' }).end();
      },
      (url) =>
        `defaults: { threshold: 1, cooldown: 1s }\nservices:\n  product:\n    url: ${url}\n    retryAfter: { honor: true, max: 5s }\n`,
    );
    await request(p.port, '/svc/product/x');
    const b = json(await request(p.adminPort, '/breakers/product'));
    assert.equal(b.cooldownMs, 5000);
    assert.equal(b.lastTrip.reason, '1 consecutive failure: status 503; upstream Retry-After 5s');
    const r = await request(p.port, '/svc/product/x');
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '5');
    assert.equal(await metric(p, 'circuit_breaker_cooldown_seconds'), 5);
  });

  test('backoff: a failed trial re-opens for the next step, visible in /breakers and the metrics', async () => {
    const { p } = await setUp(
      (req, res) => {
        req.resume();
        res.writeHead(502).end();
      },
      (url) =>
        `defaults: { threshold: 1, cooldown: 100ms }\nservices:\n  product:\n    url: ${url}\n    backoff: { multiplier: 3, max: 1s }\n`,
    );
    await request(p.port, '/svc/product/x');
    await p.nextState('product', 'half_open');
    await request(p.port, '/svc/product/x');
    await until(() => p.proxy.registry.get('product')!.state === 'open', 'the re-opening');
    const b = json(await request(p.adminPort, '/breakers/product'));
    assert.equal(b.cooldownMs, 300);
    assert.match(b.lastTrip.reason, /^trial request failed: status 502; cooldown 300ms \(backoff 2 of 1s\)$/);
    assert.equal(await metric(p, 'circuit_breaker_cooldown_seconds'), 0.3);
  });
});
