/**
 * `npm run demo`: the whole reference system as local processes, no Docker.
 * - six demo upstreams on 127.0.0.1:8001-8006,
 * - circuit-proxy (the real CLI, config/proxy.yaml) on :8080, admin on :9901,
 * - make-order on :8000, calling its dependencies through the proxy,
 * - a control endpoint on :8099 to take a service down and bring it back.
 * Ctrl-C stops everything.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../../src/runtime.js';
import { createMakeOrder } from '../make-order/app.js';
import { DemoService, SERVICE_NAMES, type ServiceName } from './services.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BASE = Number(process.env.DEMO_BASE_PORT ?? 8001);
const CONTROL = Number(process.env.DEMO_CONTROL_PORT ?? 8099);
const ORDER_PORT = Number(process.env.DEMO_MAKE_ORDER_PORT ?? 8000);
const cooldown = process.env.CB_COOLDOWN_SECONDS ?? '10';

const services = new Map<ServiceName, DemoService>(SERVICE_NAMES.map((name, i) => [name, new DemoService(name, BASE + i)]));
for (const s of services.values()) await s.start();

const env: NodeJS.ProcessEnv = { ...process.env, CB_COOLDOWN_SECONDS: cooldown };
for (const [name, s] of services) env[`${name.toUpperCase()}_URL`] = `http://127.0.0.1:${s.port}`;
const proxy = spawn(
  process.execPath,
  [...NODE_FLAGS, `${ROOT}bin/circuit-proxy.js`, 'serve', '--config', `${ROOT}config/proxy.yaml`, ...process.argv.slice(2)],
  { env, stdio: 'inherit', detached: true },
); // own process group: Ctrl-C reaches only us, we forward one SIGTERM

const makeOrder = createMakeOrder('http://127.0.0.1:8080');
makeOrder.listen(ORDER_PORT, '127.0.0.1');

const control = createServer((req, res) => {
  const m = /^\/services\/([a-z]+)\/(down|up|slow|fast)$/.exec(req.url ?? '');
  const svc = m ? services.get(m[1] as ServiceName) : undefined;
  if (req.method === 'POST' && m && svc) {
    if (m[2] === 'slow' || m[2] === 'fast') svc.delayMs = m[2] === 'slow' ? 3000 : 0;
    const change = m[2] === 'down' ? svc.stop() : m[2] === 'up' ? svc.start() : Promise.resolve();
    void change.then(() => {
      const speed = svc.delayMs > 0 ? `, answering after ${svc.delayMs} ms` : '';
      process.stdout.write(`\n>>> demo: ${svc.name}-service is now ${svc.up ? 'UP' : 'DOWN'}${speed}\n\n`);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ service: svc.name, up: svc.up, delayMs: svc.delayMs }) + '\n');
    });
    return;
  }
  res
    .writeHead(200, { 'content-type': 'application/json' })
    .end(JSON.stringify([...services.values()].map((s) => ({ service: s.name, up: s.up, port: s.port }))) + '\n');
});
control.listen(CONTROL, '127.0.0.1');

process.stdout.write(`
circuit-proxy demo
  proxy       http://localhost:8080/svc/<name>/...   (admin http://localhost:9901)
  upstreams   ${[...services.values()].map((s) => `${s.name}:${s.port}`).join('  ')}
  make-order  http://localhost:${ORDER_PORT}/ordering
  breaker     threshold ${process.env.CB_THRESHOLD ?? '3'}, cooldown ${cooldown}s (CB_THRESHOLD / CB_COOLDOWN_SECONDS)

Try, in another terminal:
  curl -s localhost:8080/svc/product/products/1/stock?quantity=2
  curl -s -H 'Authorization: Bearer demo-token' localhost:8080/svc/auth/auth/validate
  curl -s -X POST localhost:${ORDER_PORT}/ordering -H 'Authorization: Bearer demo-token' -H 'content-type: application/json' \\
       -d '{"items":[{"productId":"1","quantity":2}]}'

Take product down and watch the circuit open (3 x 502, then 503 with Retry-After):
  curl -s -X POST localhost:${CONTROL}/services/product/down
  for i in 1 2 3 4 5; do curl -s -i localhost:8080/svc/product/products/1/stock?quantity=2 | grep -iE '^HTTP|retry-after|detail'; done
  npx circuit-proxy status              # breaker table (exit 3 while a circuit is open)
  curl -s localhost:9901/breakers/product
  curl -s localhost:9901/metrics | grep '^circuit_breaker_state'

Bring it back; after the cooldown (${cooldown}s) one trial request closes the circuit:
  curl -s -X POST localhost:${CONTROL}/services/product/up
  sleep ${cooldown}; curl -s -i localhost:8080/svc/product/products/1/stock?quantity=2

Policies (docs/policies.md; config/proxy.yaml gives product slowCalls and a half-open queue).
Make product slow (3 s per answer): five requests in flight trip the slow-call rule after 1 s,
while they still hang (timeout is 5s); the log line says "slow calls 100% (5 of 5) over 1s ...":
  curl -s -X POST localhost:${CONTROL}/services/product/slow
  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code} after %{time_total}s\\n' localhost:8080/svc/product/products & done; sleep 1.5
  curl -s localhost:9901/breakers/product        # "state":"open", lastTrip.reason
Make it fast again; at half-open, ten callers at once all get 200: one trial, nine queued behind it:
  curl -s -X POST localhost:${CONTROL}/services/product/fast
  sleep ${cooldown}; for i in $(seq 10); do curl -s -o /dev/null -w '%{http_code} ' localhost:8080/svc/product/products & done; wait; echo

Load shedding (docs/load-shedding.md). Product's bulkhead lets 64 requests in flight at once; with
product slow, the 65th and later get 503 "Too many requests in flight" at once:
  curl -s -X POST localhost:${CONTROL}/services/product/slow
  for i in $(seq 70); do curl -s -o /dev/null -w '%{http_code} ' localhost:8080/svc/product/products & done; wait; echo
  curl -s -X POST localhost:${CONTROL}/services/product/fast
Notification has a fallback: once its circuit is open it answers 202 {"queued": false, "degraded": true}
with X-Circuit-Fallback, and make-order's orders go through without a special case:
  curl -s -X POST localhost:${CONTROL}/services/notification/down
  for i in 1 2 3 4; do curl -s -i -X POST localhost:8080/svc/notification/notifications -H 'content-type: application/json' -d '{}' | grep -iE '^HTTP|x-circuit-fallback|degraded'; done

Ctrl-C stops everything.

`);

let stopping = false;
const stop = (): void => {
  if (stopping) process.exit(1);
  stopping = true;
  proxy.kill('SIGTERM');
  control.close();
  makeOrder.close();
  makeOrder.closeAllConnections();
  void Promise.all([...services.values()].map((s) => s.stop())).then(() => undefined);
};
proxy.on('exit', (code) => {
  if (!stopping) process.stderr.write(`circuit-proxy exited with ${code}\n`);
  stop();
  setTimeout(() => process.exit(code ?? 0), 100).unref();
});
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
