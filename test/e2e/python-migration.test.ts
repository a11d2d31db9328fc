/**
 * The Python make-order behind the sidecar (docs/migrating-from-pybreaker.md): the seed's three
 * scenarios through its POST /ordering with Python `requests` as the client, and the docs' table of
 * differences re-measured. Needs Debian's python3-fastapi, python3-uvicorn and python3-requests
 * (installed by .ci/run); skipped, saying so, where they cannot be imported.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { DemoService, SERVICE_NAMES } from '../../examples/demo/services.js';
import { ROOT, startProxy, type RunningProxy } from '../helpers.js';

const PYTHON = process.env.CIRCUIT_PROXY_PYTHON ?? '/usr/bin/python3';
const APP_DIR = `${ROOT}examples/make-order-python`;
const probe = spawnSync(PYTHON, ['-c', 'import fastapi, uvicorn, requests'], { encoding: 'utf8' });
const skip =
  probe.status !== 0 &&
  `${PYTHON} cannot import fastapi, uvicorn, requests (apt-get install python3-fastapi python3-uvicorn python3-requests)`;

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(PYTHON, args, { cwd: APP_DIR, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => resolve({ code, out }));
  });
}

describe('the Python make-order behind circuit-proxy', { skip, timeout: 120_000 }, () => {
  const services = SERVICE_NAMES.map((name) => new DemoService(name));
  let p: RunningProxy;
  let app: ReturnType<typeof spawn>;
  let appUrl = '';
  const control = createServer((req, res) => {
    const m = /^\/services\/(\w+)\/(down|up)$/.exec(req.url ?? '');
    const svc = services.find((s) => s.name === m?.[1]);
    if (!m || !svc) return void res.writeHead(404).end();
    void (m[2] === 'down' ? svc.stop() : svc.start()).then(() => res.end('ok'));
  });

  before(async () => {
    for (const s of services) await s.start();
    // Product's routes as config/proxy.yaml ships them (the stock check tried once more).
    const shipped = readFileSync(`${ROOT}config/proxy.yaml`, 'utf8');
    const productRetries = /^ {4}routes:.*\n(?: {6,}.*\n)+/m.exec(shipped.slice(shipped.indexOf('  product:')))![0].trimEnd();
    const yaml = services
      .map((s) => `  ${s.name}:\n    url: http://127.0.0.1:${s.port}\n${s.name === 'product' ? `${productRetries}\n` : ''}`)
      .join('');
    p = await startProxy(`defaults: { threshold: 3, cooldown: 1s }\nservices:\n${yaml}`);
    await new Promise<void>((r) => control.listen(0, '127.0.0.1', r));
    app = spawn(PYTHON, ['-m', 'uvicorn', 'app:app', '--host', '127.0.0.1', '--port', '0'], {
      cwd: APP_DIR,
      env: { ...process.env, PROXY_URL: `http://127.0.0.1:${p.port}` },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    appUrl = await new Promise<string>((resolve, reject) => {
      let err = '';
      const timer = setTimeout(() => reject(new Error(`uvicorn did not start: ${err}`)), 20_000);
      app.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /Uvicorn running on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
  });

  after(async () => {
    app?.kill('SIGTERM');
    control.close();
    await p?.close();
    for (const s of services) await s.stop();
  });

  test("the seed's three scenarios through POST /ordering, Python requests as the client", async () => {
    const controlUrl = `http://127.0.0.1:${(control.address() as AddressInfo).port}`;
    const r = await run(['scenarios.py', appUrl, controlUrl]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /ok +failure 3\/3: product unreachable +-> 502 product unreachable: connect ECONNREFUSED/);
    assert.match(r.out, /ok +circuit open: rejected at once +-> 503 retry-after=1 Circuit open for product$/m);
    assert.match(r.out, /all scenarios passed/);
    assert.ok(p.logs.find((l) => l.msg === 'Circuit open for product').length === 1);
  });

  test('a transient 503 on the stock check (a GET) is retried by the proxy: the order goes through, the decrement (a POST) is sent once', async () => {
    const product = services.find((s) => s.name === 'product')!;
    const seen: string[] = [];
    const onRequest = (r: { service: string; method: string; status: number; attempts: number }): void => {
      if (r.service === 'product') seen.push(`${r.method} ${r.status} x${r.attempts}`);
    };
    p.proxy.handler.on('completed', onRequest);
    product.failNext = 1;
    const r = await fetch(`${appUrl}/ordering`, {
      method: 'POST',
      headers: { authorization: 'Bearer demo-token', 'content-type': 'application/json' },
      body: JSON.stringify({ items: [{ productId: '1', quantity: 1 }] }),
    });
    assert.equal(r.status, 201, await r.text());
    p.proxy.handler.off('completed', onRequest);
    assert.deepEqual(seen, ['GET 200 x2', 'POST 200 x1']);
    assert.equal(p.proxy.registry.get('product')!.state, 'closed');
  });

  test('the table of differences in docs/migrating-from-pybreaker.md holds what measure_differences.py measures', async () => {
    const r = await run(['measure_differences.py']);
    assert.equal(r.code, 0, r.out);
    const measured = r.out
      .split('\n')
      .filter((l) => l.startsWith('| ') && !l.startsWith('| case') && !l.startsWith('| ---'))
      .map((l) => l.split(' | ').map((c) => c.replace(/^\| |\s*\|$/g, '')));
    const doc = readFileSync(`${ROOT}docs/migrating-from-pybreaker.md`, 'utf8');
    const table = doc.slice(doc.indexOf('<!-- measured: begin -->'), doc.indexOf('<!-- measured: end -->'));
    const documented = table
      .split('\n')
      .filter((l) => l.startsWith('| ') && !l.startsWith('| case') && !l.startsWith('| ---'))
      .map((l) => l.split(' | ').map((c) => c.replace(/^\| |\s*\|$/g, '')))
      .map((cells) => [cells[0], cells[2]]);
    assert.deepEqual(documented, measured);
  });
});

describe('Python clients that honour Retry-After stay fail-fast (docs/migrating-from-pybreaker.md)', { skip, timeout: 120_000 }, () => {
  // The open circuit says 60 s; a client that slept it inside the call would take a minute. Both
  // verdicts below allow 20 s for work that takes well under one, so a busy machine cannot fail them.
  const FAST_S = 20;
  let p: RunningProxy;
  before(async () => {
    const gone = createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`;
    await new Promise<void>((r) => gone.close(() => r()));
    p = await startProxy(
      `defaults: { threshold: 1, cooldown: 60s }\nservices:\n  product: { url: "${url}" }\n  quiet: { url: "${url}", rejectRetryAfter: none }\n`,
    );
    // Open both circuits: one refused connection each.
    for (const name of ['product', 'quiet']) await fetch(`http://127.0.0.1:${p.port}/svc/${name}/x`).then((r) => r.text());
  });
  after(async () => {
    await p?.close();
  });

  test("the example's own client returns the open circuit's 503 at once, though the proxy says Retry-After 60", async () => {
    const code = [
      'import time',
      'from fastapi import HTTPException',
      'from common import http_client',
      't = time.monotonic()',
      'try:',
      '    http_client.request_via_proxy("product", "GET", "/products/1")',
      '    print("no exception")',
      'except HTTPException as e:',
      '    print(e.status_code, (e.headers or {}).get("Retry-After"), e.detail, round(time.monotonic() - t, 3))',
    ].join('\n');
    const r = await run(['-c', code], { PROXY_URL: `http://127.0.0.1:${p.port}` });
    assert.equal(r.code, 0, r.out);
    const m = /^503 (\d+) Circuit open for product ([\d.]+)$/m.exec(r.out);
    assert.ok(m, r.out);
    // The proxy's own count-down (60 s less the time since the opening, which a busy machine stretches), not a 1.
    assert.ok(Number(m[1]) >= 60 - FAST_S, `the Retry-After is passed on to make-order’s caller (${m[1]})`);
    assert.ok(Number(m[2]) < FAST_S, `took ${m[2]} s`);
  });

  test('the common urllib3 recipe (status_forcelist=[503], respect_retry_after_header) with rejectRetryAfter: none', async () => {
    const code = [
      'import time, requests',
      'from requests.adapters import HTTPAdapter',
      'from urllib3.util.retry import Retry',
      's = requests.Session()',
      's.mount("http://", HTTPAdapter(max_retries=Retry(total=3, status_forcelist=[503], respect_retry_after_header=True, raise_on_status=False)))',
      't = time.monotonic()',
      `r = s.get("http://127.0.0.1:${p.port}/svc/quiet/x", timeout=5)`,
      'print(r.status_code, r.headers.get("x-circuit-open"), r.headers.get("retry-after"), round(time.monotonic() - t, 3))',
    ].join('\n');
    const r = await run(['-c', code]);
    assert.equal(r.code, 0, r.out);
    const m = /^503 quiet None ([\d.]+)$/m.exec(r.out);
    assert.ok(m, r.out);
    assert.ok(Number(m[1]) < FAST_S, `took ${m[1]} s`);
  });
});
