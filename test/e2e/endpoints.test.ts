/** Several endpoints per service (docs/endpoints.md) over real sockets: balancing, outlier ejection, the circuit above them. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import type { EndpointEvent } from '../../src/upstream/endpoints.js';
import { json, metricValue, request, runCli, startProxy, startUpstream, type RunningProxy, type Upstream } from '../helpers.js';

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const x of opened.reverse()) await x.close();
});

/** `n` real upstreams; those in `failing` answer 500, the others 200 with their index. */
async function upstreams(n: number, failing: (i: number) => boolean): Promise<Upstream[]> {
  const ups: Upstream[] = [];
  for (let i = 0; i < n; i++) {
    const up = await startUpstream((req, res) => {
      req.resume();
      if (failing(i)) res.writeHead(500).end('down');
      else res.end(String(i));
    });
    opened.push(up);
    ups.push(up);
  }
  return ups;
}

async function proxyFor(ups: readonly Upstream[], extra: string, top = ''): Promise<RunningProxy> {
  const list = ups.map((u) => `      - ${u.url}\n`).join('');
  const p = await startProxy(`${top}services:\n  catalog:\n    endpoints:\n${list}${extra}`);
  opened.push(p);
  return p;
}

/** Resolves with the next endpoint event of `state` (no time limit of ours: the test runner's own bounds it). */
function nextEndpointEvent(p: RunningProxy, state: EndpointEvent['state']): Promise<EndpointEvent> {
  return new Promise((resolve) => {
    const on = (e: EndpointEvent): void => {
      if (e.state !== state) return;
      p.proxy.registry.off('endpoint', on);
      resolve(e);
    };
    p.proxy.registry.on('endpoint', on);
  });
}

const address = (u: Upstream): string => `127.0.0.1:${u.port}`;

describe('outlier ejection with three endpoints, one failing', () => {
  test('the failing one gets consecutiveFailures requests, then none; every other request succeeds; the circuit stays closed', async () => {
    const ups = await upstreams(3, (i) => i === 1);
    const p = await proxyFor(ups, '    outlier: { consecutiveFailures: 2, ejectionTime: 1h }\n');
    const ejected = nextEndpointEvent(p, 'ejected');
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await request(p.port, `/svc/catalog/r${i}`)).status);
    assert.equal(ups[1]!.requests, 2, 'the failing endpoint saw exactly consecutiveFailures requests');
    assert.equal(statuses.filter((s) => s === 500).length, 2);
    assert.equal(statuses.filter((s) => s === 200).length, 28);
    assert.equal(ups[0]!.requests + ups[2]!.requests, 28);
    assert.equal(p.proxy.registry.get('catalog')!.state, 'closed');

    const e = await ejected;
    assert.deepEqual([e.endpoint, e.ejection, e.reason], [address(ups[1]!), 1, '2 consecutive failures: status 500']);
    assert.equal(e.until! - e.at, 3_600_000);
    const line = p.logs.find(
      (l) => l.msg === `catalog endpoint ${address(ups[1]!)} ejected for 60m (ejection 1): 2 consecutive failures: status 500`,
    );
    assert.equal(line.length, 1);
    assert.equal(line[0]!.level, 40, 'a warning');

    const b = json(await request(p.adminPort, '/breakers/catalog'));
    assert.deepEqual(
      b.endpoints.map((x: { address: string; state: string }) => [x.address, x.state]),
      ups.map((u, i) => [address(u), i === 1 ? 'ejected' : 'active']),
    );
    const out = b.endpoints[1];
    assert.deepEqual([out.ejection, out.reason, out.requests, out.failures], [1, '2 consecutive failures: status 500', 2, 2]);
    assert.ok(Date.parse(out.ejectedUntil) > Date.now() + 3_500_000);
    const stats = json(await request(p.adminPort, '/stats')).services[0];
    assert.equal(stats.endpoints[1].state, 'ejected');

    const labels = (u: Upstream) => `service="catalog",endpoint="${address(u)}"`;
    assert.equal(await metricValue(p, `proxy_endpoint_ejected{${labels(ups[1]!)}}`), 1);
    assert.equal(await metricValue(p, `proxy_endpoint_ejected{${labels(ups[0]!)}}`), 0);
    assert.equal(await metricValue(p, `proxy_endpoint_ejections_total{${labels(ups[1]!)}}`), 1);
    assert.equal(await metricValue(p, `proxy_endpoint_requests_total{outcome="failure",${labels(ups[1]!)}}`), 2);
    assert.equal(await metricValue(p, `proxy_endpoint_requests_total{outcome="success",${labels(ups[0]!)}}`), ups[0]!.requests);
    assert.equal(await metricValue(p, 'proxy_endpoints{state="active",service="catalog"}'), 2);
    assert.equal(await metricValue(p, 'proxy_endpoints{state="ejected",service="catalog"}'), 1);
  });

  test('back after the ejection time without a probe; still failing, ejected again for twice as long', async () => {
    const ups = await upstreams(3, (i) => i === 0);
    const p = await proxyFor(ups, '    outlier: { consecutiveFailures: 1, ejectionTime: 100ms, maxEjectionTime: 1h }\n');
    const first = nextEndpointEvent(p, 'ejected');
    await request(p.port, '/svc/catalog/a');
    const e1 = await first;
    assert.deepEqual([e1.ejection, e1.until! - e1.at], [1, 100]);
    const seen = ups[0]!.requests;
    const back = await nextEndpointEvent(p, 'active');
    assert.equal(back.endpoint, address(ups[0]!));
    assert.equal(ups[0]!.requests, seen, 'no probe request on return');
    assert.ok(p.logs.find((l) => l.msg === `catalog endpoint ${address(ups[0]!)} back in rotation`).length >= 1);
    const second = nextEndpointEvent(p, 'ejected');
    for (let i = 0; i < 3; i++) await request(p.port, `/svc/catalog/b${i}`);
    const e2 = await second;
    assert.deepEqual([e2.endpoint, e2.ejection, e2.until! - e2.at], [address(ups[0]!), 2, 200]);
    assert.equal(e2.reason, 'failed again after ejection 1: status 500');
    assert.equal(ups[0]!.requests, seen + 1, 'its first request after the return ejected it again');
  });
});

describe('every endpoint failing', () => {
  test('the circuit opens as for one URL, then 503 without contacting any of them', async () => {
    const ups = await upstreams(3, () => true);
    const p = await proxyFor(ups, '    outlier: { consecutiveFailures: 1, maxEjectedPercent: 100%, ejectionTime: 1h }\n');
    const open = p.nextState('catalog', 'open');
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await request(p.port, `/svc/catalog/${i}`)).status);
    await open;
    assert.deepEqual(statuses, [500, 500, 500]);
    const before = ups.map((u) => u.requests);
    assert.deepEqual(before, [1, 1, 1], 'two ejected, the last one never');
    const r = await request(p.port, '/svc/catalog/x');
    assert.equal(r.status, 503);
    assert.equal(json(r).title, 'Circuit open');
    assert.deepEqual(
      ups.map((u) => u.requests),
      before,
    );
    const b = json(await request(p.adminPort, '/breakers/catalog'));
    const states = b.endpoints.map((x: { state: string }) => x.state);
    assert.deepEqual([states.filter((x: string) => x === 'ejected').length, states.filter((x: string) => x === 'active').length], [2, 1]);
  });

  test('502 and 504 details name the endpoint', async () => {
    const ups = await upstreams(1, () => false);
    const dead = await startUpstream(() => {});
    const deadPort = dead.port;
    await dead.close();
    const hang = await startUpstream((req) => req.resume());
    opened.push(hang);
    const p = await startProxy(
      `defaults: { threshold: 100, timeout: 300ms }\nservices:\n  catalog:\n    endpoints: [http://127.0.0.1:${deadPort}, ${hang.url}, ${ups[0]!.url}]\n`,
    );
    opened.push(p);
    const rs = [];
    for (let i = 0; i < 3; i++) rs.push(await request(p.port, `/svc/catalog/${i}`));
    assert.deepEqual(
      rs.map((r) => r.status),
      [502, 504, 200],
    );
    assert.equal(json(rs[0]!).detail, `catalog unreachable: connect ECONNREFUSED (endpoint 127.0.0.1:${deadPort})`);
    assert.equal(json(rs[1]!).detail, `catalog timed out after 300ms (endpoint 127.0.0.1:${hang.port})`);
    const warn = p.logs.find((l) => l.msg === 'catalog unreachable: connect ECONNREFUSED');
    assert.equal(warn[0]?.endpoint, `127.0.0.1:${deadPort}`);
  });
});

describe('maxEjectedPercent and the last endpoint', () => {
  // [endpoints, maxEjectedPercent, most ejected at once]
  const table: Array<[number, string, number]> = [
    [2, '10%', 1],
    [2, '100%', 1],
    [3, '10%', 1],
    [3, '50%', 1],
    [3, '100%', 2],
    [10, '10%', 1],
    [10, '50%', 5],
    [10, '100%', 9],
  ];
  for (const [n, pct, most] of table) {
    test(`${n} endpoints, all failing, max ${pct}: ${most} ejected, the rest keep serving`, async () => {
      const ups = await upstreams(n, () => true);
      const p = await proxyFor(
        ups,
        `    outlier: { consecutiveFailures: 1, maxEjectedPercent: ${pct}, ejectionTime: 1h }\n`,
        'defaults: { threshold: 1000 }\n',
      );
      for (let i = 0; i < 3 * n; i++) await request(p.port, `/svc/catalog/${i}`);
      const b = json(await request(p.adminPort, '/breakers/catalog'));
      const states = b.endpoints.map((x: { state: string }) => x.state);
      assert.equal(states.filter((s: string) => s === 'ejected').length, most, states.join(' '));
      assert.equal(await metricValue(p, 'proxy_endpoints{state="ejected",service="catalog"}'), most);
      assert.equal(p.proxy.registry.get('catalog')!.state, 'closed');
    });
  }
});

describe('balancing and reload', () => {
  test('least-request sends a new request to an idle endpoint, not the busy one', async () => {
    const held: Array<() => void> = [];
    const busy = await startUpstream((req, res) => {
      req.resume();
      held.push(() => res.end('busy'));
    });
    const idle = await startUpstream((req, res) => {
      req.resume();
      res.end('idle');
    });
    opened.push(busy, idle);
    const p = await startProxy(`services:\n  catalog:\n    endpoints: [${busy.url}, ${idle.url}]\n    balance: least-request\n`);
    opened.push(p);
    // Until the busy one holds a request, then every further request goes to the idle one.
    const pending: Array<Promise<unknown>> = [];
    while (busy.requests === 0) {
      const r = request(p.port, '/svc/catalog/x');
      pending.push(r);
      await Promise.race([r, once(busy.events, 'request')]);
    }
    const before = idle.requests;
    for (let i = 0; i < 10; i++) assert.equal((await request(p.port, '/svc/catalog/y')).body, 'idle');
    assert.equal(idle.requests, before + 10);
    for (const h of held) h();
    await Promise.all(pending);
  });

  test('a reload keeps the state of endpoints that stay; a removed one leaves the metrics', async () => {
    const ups = await upstreams(3, (i) => i === 0);
    const cfg = (list: readonly Upstream[]) =>
      `services:\n  catalog:\n    endpoints: [${list.map((u) => u.url).join(', ')}]\n    outlier: { consecutiveFailures: 1, ejectionTime: 1h }\n`;
    const p = await startProxy(cfg(ups));
    opened.push(p);
    for (let i = 0; i < 3; i++) await request(p.port, `/svc/catalog/${i}`);
    const { parseConfig } = await import('../../src/config/load.js');
    const next = parseConfig(`listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${cfg([ups[0]!, ups[1]!])}`, {});
    p.proxy.reload(next);
    const b = json(await request(p.adminPort, '/breakers/catalog'));
    assert.deepEqual(
      b.endpoints.map((x: { address: string; state: string }) => [x.address, x.state]),
      [
        [address(ups[0]!), 'ejected'],
        [address(ups[1]!), 'active'],
      ],
    );
    assert.equal(await metricValue(p, `proxy_endpoint_ejected{service="catalog",endpoint="${address(ups[2]!)}"}`), undefined);
  });
});

describe('validate and status show endpoints', () => {
  test('validate: the endpoint count, balancing and outlier in the table; a note for outlier on one endpoint', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(`${tmpdir()}/cp-ep-`);
    const file = `${dir}/p.yaml`;
    writeFileSync(
      file,
      'services:\n  catalog:\n    endpoints: [http://a:1, http://b:1]\n    outlier: { consecutiveFailures: 2 }\n' +
        '  search:\n    url: http://search:1\n    discovery: { dns: true, refresh: 5s }\n' +
        '  product:\n    url: http://p:1\n    outlier: {}\n',
    );
    const r = await runCli(['validate', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /catalog +2 endpoints: http:\/\/a:1, http:\/\/b:1 .*round-robin, outlier 2 in a row, eject n x 30s \(max 5m, 10% at once\)/,
    );
    assert.match(r.stdout, /search +http:\/\/search:1 \(dns every 5s\) .*round-robin/);
    assert.match(r.stdout, /note: product: outlier is set but the service has one endpoint/);
  });

  test('status: an ENDPOINTS column with the active count and the ejected ones', async () => {
    const ups = await upstreams(3, (i) => i === 2);
    const p = await proxyFor(ups, '    outlier: { consecutiveFailures: 1, ejectionTime: 1h }\n');
    for (let i = 0; i < 3; i++) await request(p.port, `/svc/catalog/${i}`);
    const r = await runCli(['status', '--admin-url', `http://127.0.0.1:${p.adminPort}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ENDPOINTS/);
    assert.ok(r.stdout.includes(`2/3 active (${address(ups[2]!)} ejected)`), r.stdout);
  });
});
