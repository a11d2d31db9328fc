/** Per-route call settings (docs/routes.md) over real sockets: each route's timeout, failure statuses and retries; one circuit. */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import type { Completed } from '../../src/proxy/call.js';
import { json, metricValue, request, startProxy, startUpstream, until, type Handler, type RunningProxy } from '../helpers.js';

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const x of opened.reverse()) await x.close();
});

async function setup(handler: Handler, service: (url: string) => string): Promise<{ p: RunningProxy; url: string; records: Completed[] }> {
  const up = await startUpstream(handler);
  opened.push(up);
  const p = await startProxy(`services:\n  order:\n    url: ${up.url}\n${service(up.url)}`);
  opened.push(p);
  const records: Completed[] = [];
  p.proxy.handler.on('completed', (c) => records.push(c));
  return { p, url: up.url, records };
}

describe('routes', () => {
  test("a route's timeout applies to its requests and not to the others", async () => {
    const { p } = await setup(
      (req, res) => {
        req.resume();
        setTimeout(() => res.end('late'), 1500);
      },
      () => '    timeout: 10s\n    routes:\n      - match: { path: /orders/*/status }\n        timeout: 100ms\n',
    );
    const [quick, other] = await Promise.all([request(p.port, '/svc/order/orders/7/status'), request(p.port, '/svc/order/orders')]);
    assert.equal(quick.status, 504);
    assert.match(json(quick).detail, /timed out after 100ms/);
    assert.deepEqual([other.status, other.body], [200, 'late']);
  });

  test("a route's failure statuses apply to its requests only, and its outcomes count for the service's one circuit", async () => {
    const { p } = await setup(
      (req, res) => {
        req.resume();
        res.writeHead(500).end();
      },
      () => '    threshold: 2\n    routes:\n      - name: lenient\n        match: { path: /lenient/** }\n        failureStatuses: [503]\n',
    );
    const circuit = p.proxy.registry.get('order')!.circuit;
    for (let i = 0; i < 3; i++) assert.equal((await request(p.port, '/svc/order/lenient/x')).status, 500);
    assert.equal(circuit.snapshot().consecutiveFailures, 0, 'a 500 is no failure on this route');
    await request(p.port, '/svc/order/other');
    assert.equal(circuit.snapshot().consecutiveFailures, 1);
    await request(p.port, '/svc/order/other');
    assert.equal(circuit.state, 'open', 'the service circuit, whichever route');
    assert.equal((await request(p.port, '/svc/order/lenient/x')).status, 503, 'and it rejects every route');
  });

  test('a route with retries: { attempts: 0 } is never retried while the rest of the service is', async () => {
    const seen = new Map<string, number>();
    const { p, records } = await setup(
      (req, res) => {
        req.resume();
        // The first request for each path fails, the next ones succeed.
        const n = (seen.get(req.url!) ?? 0) + 1;
        seen.set(req.url!, n);
        if (n === 1) res.writeHead(503).end('down');
        else res.end('ok');
      },
      () =>
        '    retries: { backoff: { base: 1ms, max: 2ms } }\n    routes:\n      - name: create\n        match: { methods: [PUT], path: /orders/* }\n        retries: { attempts: 0 }\n',
    );
    const put = await request(p.port, '/svc/order/orders/1', { method: 'PUT', body: '{}' });
    assert.deepEqual([put.status, put.headers['x-circuit-attempts']], [503, undefined]);
    const get = await request(p.port, '/svc/order/orders/1/items');
    assert.deepEqual([get.status, get.headers['x-circuit-attempts']], [200, '2']);
    assert.deepEqual([seen.get('/orders/1'), seen.get('/orders/1/items')], [1, 2]);
    await until(() => records.length === 2, 'both calls to end');
    assert.deepEqual(
      records.map((c) => [c.route, c.attempts]),
      [
        ['create', 1],
        ['-', 2],
      ],
    );
    assert.equal(await metricValue(p, 'proxy_requests_total{code="503",route="create",service="order"}'), 1);
    assert.equal(await metricValue(p, 'proxy_requests_total{code="200",route="-",service="order"}'), 1);
    assert.equal(
      await metricValue(p, 'proxy_requests_total{code="200",service="order"}'),
      undefined,
      'every series of the service carries route',
    );
    const stats = json(await request(p.adminPort, '/stats')).services[0];
    assert.deepEqual(stats.routes.map((r: { route: string; requests: number; errors: number }) => [r.route, r.requests, r.errors]).sort(), [
      ['-', 1, 0],
      ['create', 1, 1],
    ]);
  });

  test("a service without routes keeps its series as they were (no route label); a route's fallback answers its requests", async () => {
    const { p } = await setup(
      (req, res) => {
        req.resume();
        res.writeHead(500).end();
      },
      () =>
        '    threshold: 1\n    routes:\n      - match: { methods: [GET], path: /menu }\n        fallback: { status: 200, body: \'{"items": []}\' }\n',
    );
    await request(p.port, '/svc/order/x');
    assert.equal(p.proxy.registry.get('order')!.state, 'open');
    const menu = await request(p.port, '/svc/order/menu');
    assert.deepEqual([menu.status, menu.body, menu.headers['x-circuit-fallback']], [200, '{"items": []}', 'order']);
    const other = await request(p.port, '/svc/order/other');
    assert.equal(other.status, 503);
    assert.equal(json(other).title, 'Circuit open');
  });

  test('a reload that changes only routes keeps the circuit and its state; the new routes apply to the next request', async () => {
    const { p, url } = await setup(
      (req, res) => {
        req.resume();
        setTimeout(() => res.end('late'), 300);
      },
      () => '    threshold: 5\n',
    );
    await request(p.port, '/svc/order/a');
    const circuit = p.proxy.registry.get('order')!.circuit;
    p.proxy.registry.get('order')!.circuit.forceOpen('test');
    p.proxy.handler.removeAllListeners('completed');
    const yaml = `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nservices:\n  order:\n    url: ${url}\n    threshold: 5\n    routes:\n      - match: { path: /quick }\n        timeout: 50ms\n`;
    const result = p.proxy.reload(parseConfig(yaml, {}));
    assert.deepEqual(result.unchanged, ['order']);
    assert.equal(p.proxy.registry.get('order')!.circuit, circuit);
    assert.equal(circuit.state, 'open');
    circuit.forceClose('test');
    const quick = await request(p.port, '/svc/order/quick');
    assert.equal(quick.status, 504);
  });
});
