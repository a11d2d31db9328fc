import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseExposition, sampleValue, type Exposition } from '../prom-text.js';
import { json, request, startProxy, startUpstream, type RunningProxy, type Upstream } from '../helpers.js';

async function scrape(p: RunningProxy): Promise<Exposition> {
  const r = await request(p.adminPort, '/metrics');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parseExposition(r.body);
}

function value(m: Exposition, name: string, labels: Record<string, string>): number | undefined {
  return sampleValue(m, m.types.get(name) === 'histogram' ? `${name}_count` : name, labels);
}

describe('admin listener', () => {
  let up: Upstream;
  let p: RunningProxy;
  let fail = false;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(fail ? 503 : 200).end('x');
    });
    p = await startProxy(
      `defaults: { threshold: 2, cooldown: 1s }\nservices:\n  product:\n    url: ${up.url}\n  cart:\n    url: ${up.url}\n`,
    );
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  test('/healthz and /readyz', async () => {
    assert.deepEqual(json(await request(p.adminPort, '/healthz')), { status: 'ok' });
    const ready = await request(p.adminPort, '/readyz');
    assert.equal(ready.status, 200);
  });

  test('every per-service series exists from startup at zero', async () => {
    const m = await scrape(p);
    for (const service of ['product', 'cart']) {
      assert.equal(value(m, 'circuit_breaker_state', { service }), 0);
      assert.equal(value(m, 'circuit_breaker_open_total', { service }), 0);
      assert.equal(value(m, 'circuit_breaker_rejected_total', { service }), 0);
      assert.equal(value(m, 'circuit_breaker_consecutive_failures', { service }), 0);
      for (const reason of ['connect', 'timeout', 'reset', 'status'])
        assert.equal(value(m, 'circuit_breaker_failures_total', { service, reason }), 0);
      assert.equal(value(m, 'proxy_requests_total', { service, code: '200' }), 0);
      assert.equal(value(m, 'proxy_request_duration_seconds', { service }), 0);
    }
  });

  test('metrics follow a full closed -> open -> half-open -> closed cycle', async () => {
    fail = true;
    await request(p.port, '/svc/product/x');
    let m = await scrape(p);
    assert.equal(value(m, 'circuit_breaker_consecutive_failures', { service: 'product' }), 1);
    await request(p.port, '/svc/product/x');
    m = await scrape(p);
    assert.equal(value(m, 'circuit_breaker_state', { service: 'product' }), 1);
    assert.equal(value(m, 'circuit_breaker_open_total', { service: 'product' }), 1);
    assert.equal(value(m, 'circuit_breaker_failures_total', { service: 'product', reason: 'status' }), 2);
    assert.equal(value(m, 'proxy_requests_total', { service: 'product', code: '503' }), 2);
    const probeAt = value(m, 'circuit_breaker_next_probe_timestamp_seconds', { service: 'product' })!;
    assert.ok(probeAt > Date.now() / 1000 - 1 && probeAt < Date.now() / 1000 + 1, String(probeAt));
    const rejected = await request(p.port, '/svc/product/x');
    assert.equal(rejected.status, 503);
    m = await scrape(p);
    assert.equal(value(m, 'circuit_breaker_rejected_total', { service: 'product' }), 1);
    await p.nextState('product', 'half_open');
    m = await scrape(p);
    assert.equal(value(m, 'circuit_breaker_state', { service: 'product' }), 2);
    assert.equal(value(m, 'circuit_breaker_next_probe_timestamp_seconds', { service: 'product' }), 0);
    fail = false;
    assert.equal((await request(p.port, '/svc/product/x')).status, 200);
    m = await scrape(p);
    assert.equal(value(m, 'circuit_breaker_state', { service: 'product' }), 0);
    assert.equal(value(m, 'circuit_breaker_transitions_total', { service: 'product', from: 'closed', to: 'open' }), 1);
    assert.equal(value(m, 'circuit_breaker_transitions_total', { service: 'product', from: 'open', to: 'half_open' }), 1);
    assert.equal(value(m, 'circuit_breaker_transitions_total', { service: 'product', from: 'half_open', to: 'closed' }), 1);
    assert.equal(value(m, 'proxy_request_duration_seconds', { service: 'product' }), 4);
    // cart untouched
    assert.equal(value(m, 'circuit_breaker_open_total', { service: 'cart' }), 0);
  });

  test('unknown /svc/<name> never creates a series', async () => {
    for (let i = 0; i < 1000; i++) await request(p.port, `/svc/r${Math.random().toString(36).slice(2)}/x`);
    const m = await scrape(p);
    const services = new Set<string>();
    for (const s of m.samples) if (s.labels.service) services.add(s.labels.service);
    assert.deepEqual([...services].sort(), ['cart', 'product']);
    assert.equal(value(m, 'proxy_unrouted_requests_total', { code: '404' }), 1000);
  });

  test('/breakers and /breakers/<name> as docs/observability.md defines them; unknown name 404', async () => {
    const all = json<{ breakers: Array<Record<string, unknown>> }>(await request(p.adminPort, '/breakers'));
    assert.deepEqual(
      all.breakers.map((b) => b.name),
      ['product', 'cart'],
    );
    const one = json(await request(p.adminPort, '/breakers/product'));
    assert.deepEqual(
      Object.keys(one).sort(),
      [
        'consecutiveFailures',
        'cooldownMs',
        'forced',
        'lastTransitionAt',
        'lastTrip',
        'name',
        'retryAfterSeconds',
        'state',
        'threshold',
        'timeoutMs',
        'url',
      ].sort(),
    );
    assert.equal(one.state, 'closed');
    assert.equal(one.retryAfterSeconds, null);
    assert.equal(one.cooldownMs, 1000);
    assert.match(one.lastTrip.reason, /^2 consecutive failures: status 503/);
    assert.ok(!Number.isNaN(Date.parse(one.lastTransitionAt)));
    assert.equal((await request(p.adminPort, '/breakers/nope')).status, 404);
  });

  test('POST /breakers/<name>/open|close from loopback without a token; forced open stays open', async () => {
    const r = await request(p.adminPort, '/breakers/cart/open', {
      method: 'POST',
      body: '{"reason":"maintenance"}',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(r.status, 200);
    assert.equal(json(r).state, 'open');
    assert.equal(json(r).forced, true);
    assert.equal((await request(p.port, '/svc/cart/x')).status, 503);
    const forced = p.logs.find((l) => l.service === 'cart' && l.action === 'open');
    assert.equal(forced[0]!.who, '127.0.0.1');
    assert.equal(forced[0]!.reason, 'maintenance');
    const close = await request(p.adminPort, '/breakers/cart/close', { method: 'POST' });
    assert.equal(json(close).state, 'closed');
    assert.equal((await request(p.port, '/svc/cart/x')).status, 200);
    assert.equal((await request(p.adminPort, '/breakers/nope/open', { method: 'POST' })).status, 404);
    assert.equal((await request(p.adminPort, '/breakers/cart/open')).status, 405);
  });
});

describe('admin token', () => {
  test('with a token configured: no token 401, wrong token 403, right token 200 (even from loopback)', async () => {
    const up = await startUpstream((_q, s) => s.end());
    const p = await startProxy(`services:\n  product:\n    url: ${up.url}\n`, { adminToken: 's3cret' });
    assert.equal((await request(p.adminPort, '/breakers/product/open', { method: 'POST' })).status, 401);
    assert.equal(
      (await request(p.adminPort, '/breakers/product/open', { method: 'POST', headers: { authorization: 'Bearer nope' } })).status,
      403,
    );
    const ok = await request(p.adminPort, '/breakers/product/open', { method: 'POST', headers: { authorization: 'Bearer s3cret' } });
    assert.equal(ok.status, 200);
    assert.equal(json(ok).forced, true);
    assert.equal(JSON.stringify(p.logs.lines).includes('s3cret'), false, 'the token is never logged');
    await p.close();
    await up.close();
  });
});

describe('reload and logs', () => {
  test('a service removed by a reload disappears from /metrics and /breakers; unchanged ones keep state', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(500).end();
    });
    const yaml = (extra: string): string =>
      `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\ndefaults: { threshold: 1, cooldown: 10s }\nservices:\n  product:\n    url: ${up.url}\n${extra}`;
    const p = await startProxy(
      `defaults: { threshold: 1, cooldown: 10s }\nservices:\n  product:\n    url: ${up.url}\n  cart:\n    url: ${up.url}\n`,
    );
    await request(p.port, '/svc/product/x');
    assert.equal(p.proxy.registry.get('product')!.state, 'open');
    const { parseConfig } = await import('../../src/config/load.js');
    const result = p.proxy.reload(parseConfig(yaml(''), {}));
    assert.deepEqual(result, { added: [], changed: [], removed: ['cart'], unchanged: ['product'] });
    assert.equal(p.proxy.registry.get('product')!.state, 'open', 'unchanged service keeps its state');
    const m = await scrape(p);
    assert.equal(
      m.samples.some((s) => s.labels.service === 'cart'),
      false,
    );
    assert.equal(value(m, 'circuit_breaker_open_total', { service: 'product' }), 1, 'and its counters');
    assert.equal((await request(p.adminPort, '/breakers/cart')).status, 404);
    assert.equal((await request(p.port, '/svc/cart/x')).status, 404);
    await p.close();
    await up.close();
  });

  test('a reload that changes only call settings (timeout, failureStatuses) keeps the circuit and its state', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(500).end();
    });
    const yaml = (timeout: string): string =>
      `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\ndefaults: { threshold: 1, cooldown: 10s }\nservices:\n  product:\n    url: ${up.url}\n    timeout: ${timeout}\n`;
    const p = await startProxy(`defaults: { threshold: 1, cooldown: 10s }\nservices:\n  product:\n    url: ${up.url}\n    timeout: 5s\n`);
    await request(p.port, '/svc/product/x');
    const circuit = p.proxy.registry.get('product')!.circuit;
    assert.equal(circuit.state, 'open');
    const { parseConfig } = await import('../../src/config/load.js');
    const result = p.proxy.reload(parseConfig(yaml('2s'), {}));
    assert.deepEqual(result.unchanged, ['product']);
    assert.equal(p.proxy.registry.get('product')!.circuit, circuit, 'the same circuit');
    assert.equal(circuit.state, 'open');
    assert.equal(p.proxy.registry.get('product')!.snapshot().timeoutMs, 2000, 'the new timeout applies');
    const changed = p.proxy.reload(parseConfig(yaml('2s').replace('threshold: 1', 'threshold: 2'), {}));
    assert.deepEqual(changed.changed, ['product'], 'a circuit key changed: a fresh circuit');
    assert.equal(p.proxy.registry.get('product')!.state, 'closed');
    await p.close();
    await up.close();
  });

  test('--access-log lines; authorization and cookie values are never logged', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200).end();
    });
    const p = await startProxy(`services:\n  product:\n    url: ${up.url}\n`, { accessLog: true });
    await request(p.port, '/svc/product/x?q=1', { headers: { authorization: 'Bearer top-secret', cookie: 'session=also-secret' } });
    const line = p.logs.find((l) => l.msg === 'request')[0]!;
    assert.equal(line.service, 'product');
    assert.equal(line.status, 200);
    assert.equal(line.method, 'GET');
    assert.equal(line.path, '/svc/product/x?q=1');
    assert.equal(line.outcome, 'success');
    assert.ok(typeof line.requestId === 'string');
    p.log.info({ req: { headers: { authorization: 'Bearer top-secret', cookie: 'session=also-secret' } } }, 'probe');
    const all = JSON.stringify(p.logs.lines);
    assert.equal(all.includes('top-secret'), false);
    assert.equal(all.includes('also-secret'), false);
    await p.close();
    await up.close();
  });
});
