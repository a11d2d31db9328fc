/** Load shedding and degradation (docs/load-shedding.md) over real sockets: bulkhead, observe mode, fallback. */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { request as httpRequest } from 'node:http';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { json, metricValue, request, until, upstreamAndProxy } from '../helpers.js';

const setUp = upstreamAndProxy();
const metric = metricValue;

describe('bulkhead', () => {
  test('the request beyond maxConcurrent gets 503 at once, the upstream is not contacted, the breaker is not told', async () => {
    const held: ServerResponse[] = [];
    const { up, p } = await setUp(
      (req, res) => {
        req.resume();
        held.push(res);
      },
      (url) => `defaults: { threshold: 1 }\nservices:\n  product:\n    url: ${url}\n    maxConcurrent: 2\n`,
    );
    const first = [request(p.port, '/svc/product/a'), request(p.port, '/svc/product/b')];
    await until(() => held.length === 2, 'two requests at the upstream');
    const r = await request(p.port, '/svc/product/c');
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '1');
    assert.deepEqual(
      [json(r).title, json(r).detail],
      ['Too many requests in flight', 'product has 2 requests in flight (maxConcurrent 2)'],
    );
    assert.equal(up.requests, 2);
    assert.equal(await metric(p, 'proxy_in_flight{service="product"}'), 2);
    assert.equal(await metric(p, 'proxy_bulkhead_rejected_total{service="product"}'), 1);
    assert.equal(await metric(p, 'circuit_breaker_rejected_total{service="product"}'), 0);
    assert.equal(p.proxy.registry.get('product')!.state, 'closed', 'threshold 1, and still closed');
    assert.deepEqual(
      [json(await request(p.adminPort, '/breakers/product')).inFlight, json(await request(p.adminPort, '/breakers/product')).maxConcurrent],
      [2, 2],
    );
    for (const res of held) res.end('ok');
    assert.deepEqual(
      (await Promise.all(first)).map((x) => x.status),
      [200, 200],
    );
    await until(() => p.proxy.registry.get('product')!.inFlight === 0, 'slots back');
  });

  test('a slot is given back on every way a request ends: success, failure, timeout, client abort, cut body', async () => {
    const { up, p } = await setUp(
      (req, res) => {
        req.resume();
        if (req.url === '/ok') res.end('ok');
        else if (req.url === '/fail') res.writeHead(500).end();
        else if (req.url === '/cut') {
          res.writeHead(200, { 'content-length': '100' });
          res.write('123');
          setTimeout(() => res.socket?.resetAndDestroy(), 10);
        }
        // '/hang' and '/abort': never answered
      },
      (url) => `defaults: { threshold: 100, timeout: 150ms }\nservices:\n  product:\n    url: ${url}\n    maxConcurrent: 1\n`,
    );
    const b = p.proxy.registry.get('product')!;
    const endings: Array<[string, () => Promise<unknown>]> = [
      ['success', () => request(p.port, '/svc/product/ok')],
      ['failure', () => request(p.port, '/svc/product/fail')],
      ['timeout', () => request(p.port, '/svc/product/hang')],
      ['cut body', () => request(p.port, '/svc/product/cut').catch(() => undefined)],
      [
        'client abort',
        () =>
          new Promise<void>((resolve) => {
            const seen = up.requests;
            const c = httpRequest({ host: '127.0.0.1', port: p.port, path: '/svc/product/abort', agent: false });
            c.on('error', () => resolve());
            c.end();
            void until(() => up.requests > seen, 'the upstream has it').then(() => c.destroy());
          }),
      ],
    ];
    for (const [what, end] of endings) {
      await end();
      await until(() => b.inFlight === 0, `the slot back after ${what}`);
      const next = await request(p.port, '/svc/product/ok');
      assert.equal(next.status, 200, `a request after ${what} is admitted`);
    }
  });

  test('a reload that replaces the breaker keeps counting the requests still in flight on the old one', async () => {
    const held: ServerResponse[] = [];
    const yaml = (url: string, threshold: number): string =>
      `defaults: { threshold: ${threshold} }\nservices:\n  product:\n    url: ${url}\n    maxConcurrent: 1\n`;
    const { up, p } = await setUp(
      (req, res) => {
        req.resume();
        held.push(res);
      },
      (url) => yaml(url, 3),
    );
    const first = request(p.port, '/svc/product/a');
    await until(() => held.length === 1, 'the first request at the upstream');
    const old = p.proxy.registry.get('product')!.circuit;
    const result = p.proxy.reload(
      parseConfig(`listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${yaml(up.url, 5)}`, {}),
    );
    assert.deepEqual(result.changed, ['product']);
    const fresh = p.proxy.registry.get('product')!;
    assert.notEqual(fresh.circuit, old, 'a fresh circuit (threshold changed)');
    assert.equal(fresh.inFlight, 1, 'the request on the old breaker counts');
    const r = await request(p.port, '/svc/product/b');
    assert.equal(r.status, 503, 'maxConcurrent 1 holds across the reload');
    assert.equal(json(r).title, 'Too many requests in flight');
    assert.equal(up.requests, 1);
    held[0]!.end('ok');
    assert.equal((await first).status, 200);
    await until(() => fresh.inFlight === 0, 'the slot given back to the new breaker');
    held.length = 0;
    const next = request(p.port, '/svc/product/c');
    await until(() => held.length === 1, 'admitted once the old request ended');
    held[0]!.end('ok');
    assert.equal((await next).status, 200);
  });
});

describe('observe mode', () => {
  test('never rejects: 200 concurrent requests at an open circuit are all forwarded, and counted as would-be rejections', async () => {
    const { up, p } = await setUp(
      (req, res) => {
        req.resume();
        res.end('ok');
      },
      (url) => `services:\n  product:\n    url: ${url}\n    mode: observe\n`,
    );
    const opened = await request(p.adminPort, '/breakers/product/open', { method: 'POST' });
    assert.equal(opened.status, 200);
    const before = up.requests;
    const replies = await Promise.all(Array.from({ length: 200 }, () => request(p.port, '/svc/product/x')));
    assert.deepEqual(new Set(replies.map((r) => r.status)), new Set([200]));
    assert.equal(up.requests - before, 200);
    assert.equal(await metric(p, 'circuit_breaker_would_reject_total{reason="open",service="product"}'), 200);
    assert.equal(await metric(p, 'circuit_breaker_rejected_total{service="product"}'), 0);
    assert.equal(p.proxy.registry.get('product')!.state, 'open', 'the forwarded outcomes change nothing');
    assert.ok(p.logs.find((l) => l.msg === 'Circuit open for product (observe)').length > 0, 'log lines say (observe)');
  });

  test('a reload from observe to enforce keeps an open circuit open, and it starts rejecting', async () => {
    const yaml = (url: string, mode: string): string =>
      `defaults: { threshold: 2, cooldown: 30s }\nservices:\n  product:\n    url: ${url}\n    mode: ${mode}\n`;
    const { up, p } = await setUp(
      (req, res) => {
        req.resume();
        res.writeHead(503).end();
      },
      (url) => yaml(url, 'observe'),
    );
    await request(p.port, '/svc/product/x');
    await request(p.port, '/svc/product/x');
    assert.equal(p.proxy.registry.get('product')!.state, 'open');
    assert.equal((await request(p.port, '/svc/product/x')).headers['content-type'], undefined, 'observe: still the upstream answering');
    const breaker = p.proxy.registry.get('product')!;
    const result = p.proxy.reload(
      parseConfig(`listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${yaml(up.url, 'enforce')}`, {}),
    );
    assert.deepEqual(result.unchanged, ['product']);
    assert.equal(p.proxy.registry.get('product')!.circuit, breaker.circuit, 'the same circuit, its state kept');
    assert.equal(breaker.state, 'open');
    const r = await request(p.port, '/svc/product/x');
    assert.equal(r.status, 503);
    assert.equal(json(r).title, 'Circuit open');
  });
});

describe('fallback', () => {
  test('an open circuit answers with the configured fallback, X-Circuit-Fallback and Retry-After; the upstream is not contacted', async () => {
    let healthy = false;
    const { up, p } = await setUp(
      (req, res) => {
        req.resume();
        res.writeHead(healthy ? 200 : 503).end(healthy ? 'real' : '');
      },
      (url) =>
        `defaults: { threshold: 1, cooldown: 1s }\nservices:\n  product:\n    url: ${url}\n    fallback:\n      status: 200\n      headers: { content-type: application/json, x-degraded: 'yes' }\n      body: '{"items": [], "degraded": true}'\n`,
    );
    assert.equal((await request(p.port, '/svc/product/items')).status, 503, 'the tripping request gets the real error');
    const seen = up.requests;
    const r = await request(p.port, '/svc/product/items');
    assert.equal(r.status, 200);
    assert.equal(r.body, '{"items": [], "degraded": true}');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['x-degraded'], 'yes');
    assert.equal(r.headers['x-circuit-fallback'], 'product');
    assert.equal(r.headers['retry-after'], '1');
    assert.ok(r.headers['x-request-id']);
    assert.equal(up.requests, seen);
    assert.equal(await metric(p, 'circuit_breaker_rejected_total{service="product"}'), 1);
    assert.equal(await metric(p, 'proxy_requests_total{code="200",service="product"}'), 1);
    healthy = true;
    await p.nextState('product', 'half_open');
    assert.equal((await request(p.port, '/svc/product/items')).body, 'real', 'recovery as usual');
  });

  test('a forced-open circuit answers with its fallback too; HEAD gets no body', async () => {
    const { p } = await setUp(
      (req, res) => {
        req.resume();
        res.end('real');
      },
      (url) => `services:\n  product:\n    url: ${url}\n    fallback: { status: 202, body: 'later' }\n`,
    );
    await request(p.adminPort, '/breakers/product/open', { method: 'POST' });
    const r = await request(p.port, '/svc/product/x');
    assert.deepEqual([r.status, r.body, r.headers['x-circuit-fallback']], [202, 'later', 'product']);
    const head = await request(p.port, '/svc/product/x', { method: 'HEAD' });
    assert.deepEqual([head.status, head.body, head.headers['content-length']], [202, '', '5']);
  });

  test("the bulkhead's 503 is not replaced by the fallback", async () => {
    const held: ServerResponse[] = [];
    const { p } = await setUp(
      (req, res) => {
        req.resume();
        held.push(res);
      },
      (url) => `services:\n  product:\n    url: ${url}\n    maxConcurrent: 1\n    fallback: { body: 'fallback' }\n`,
    );
    const first = request(p.port, '/svc/product/a');
    await until(() => held.length === 1, 'one in flight');
    const r = await request(p.port, '/svc/product/b');
    assert.equal(r.status, 503);
    assert.equal(json(r).title, 'Too many requests in flight');
    held[0]!.end();
    await first;
  });
});
