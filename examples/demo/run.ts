/**
 * `npm run demo`: the whole reference system as local processes, no Docker.
 * - six demo upstreams on 127.0.0.1:8001-8006, product with two more replicas on :8007 and :8008,
 * - circuit-proxy (the real CLI) on :8080, admin on :9901, with config/proxy.yaml as shipped except
 *   that product is its three replicas (`endpoints`, with outlier ejection: docs/endpoints.md),
 * - make-order on :8000, calling its dependencies through the proxy,
 * - a control endpoint on :8099 to take a service down and bring it back, or make one replica fail.
 * `npm run demo -- --fleet` (docs/fleet.md): a second sidecar on :8081 (admin :9902) and both in one
 * fleet through a local redis-server on :6390 (Debian's `redis-server`, when it is installed).
 * WebSocket (docs/websocket.md): notification has a live feed; watch it through the proxy, then queue one:
  node dist/examples/demo/watch.js ws://localhost:8080/svc/notification/ws
  curl -s -X POST localhost:8080/svc/notification/notifications -H 'content-type: application/json' -d '{"to":"ana"}'
  curl -s localhost:9901/metrics | grep '^proxy_tunnels'

Ctrl-C stops everything.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import { NODE_FLAGS, PROCESS_ENV } from '../../src/runtime.js';
import { createMakeOrder } from '../make-order/app.js';
import { DemoService, SERVICE_NAMES, type ServiceName } from './services.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BASE = Number(process.env.DEMO_BASE_PORT ?? 8001);
const CONTROL = Number(process.env.DEMO_CONTROL_PORT ?? 8099);
const ORDER_PORT = Number(process.env.DEMO_MAKE_ORDER_PORT ?? 8000);
const cooldown = process.env.CB_COOLDOWN_SECONDS ?? '10';
const REDIS_PORT = Number(process.env.DEMO_REDIS_PORT ?? 6390);
const fleet = process.argv.includes('--fleet');
const proxyArgs = process.argv.slice(2).filter((a) => a !== '--fleet');
const redisServer = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p));

const services = new Map<ServiceName, DemoService>(SERVICE_NAMES.map((name, i) => [name, new DemoService(name, BASE + i)]));
// Product as three replicas sharing one catalogue, as a Deployment with replicas: 3 would be.
const product = services.get('product')!;
const replicas = [
  product,
  new DemoService('product', BASE + 6, '127.0.0.1', product),
  new DemoService('product', BASE + 7, '127.0.0.1', product),
];
for (const s of [...services.values(), ...replicas.slice(1)]) await s.start();

const env: NodeJS.ProcessEnv = { ...process.env, CB_COOLDOWN_SECONDS: cooldown };
for (const [name, s] of services) env[`${name.toUpperCase()}_URL`] = `http://127.0.0.1:${s.port}`;

// config/proxy.yaml as shipped (comments kept), product's url replaced by its three replicas.
const configDir = mkdtempSync(join(tmpdir(), 'circuit-proxy-demo-'));
const config = parseDocument(readFileSync(`${ROOT}config/proxy.yaml`, 'utf8'));
config.deleteIn(['services', 'product', 'url']);
config.setIn(
  ['services', 'product', 'endpoints'],
  replicas.map((r) => `http://127.0.0.1:${r.port}`),
);
config.setIn(['services', 'product', 'outlier'], { consecutiveFailures: 3, ejectionTime: '10s' });
let redis: ChildProcess | undefined;
if (fleet) {
  // Each sidecar's id comes from its environment (SIDECAR_ID), as a pod's name would.
  config.set('fleet', { redis: `redis://127.0.0.1:${REDIS_PORT}/0`, key: 'make-order', sidecar: '${SIDECAR_ID}' });
  if (redisServer !== undefined) {
    redis = spawn(redisServer, ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
      detached: true,
    });
  } else {
    process.stdout.write('\n>>> demo: redis-server is not installed (apt-get install redis-server): each sidecar works alone\n\n');
  }
}
writeFileSync(join(configDir, 'proxy.yaml'), config.toString());
const sidecar = (id: string, extra: string[]): ChildProcess =>
  spawn(process.execPath, [...NODE_FLAGS, `${ROOT}bin/circuit-proxy.js`, 'serve', '--config', join(configDir, 'proxy.yaml'), ...extra], {
    env: { ...env, ...PROCESS_ENV, SIDECAR_ID: id },
    stdio: 'inherit',
    detached: true,
  }); // own process group: Ctrl-C reaches only us, we forward one SIGTERM
const proxy = sidecar('sidecar-a', proxyArgs);
const second = fleet ? sidecar('sidecar-b', [...proxyArgs, '--port', '8081', '--admin-port', '9902']) : undefined;

const makeOrder = createMakeOrder('http://127.0.0.1:8080');
makeOrder.listen(ORDER_PORT, '127.0.0.1');

const control = createServer((req, res) => {
  const r = /^\/services\/product\/replicas\/([123])\/(fail|ok)$/.exec(req.url ?? '');
  if (req.method === 'POST' && r) {
    const replica = replicas[Number(r[1]) - 1]!;
    replica.failing = r[2] === 'fail';
    process.stdout.write(`\n>>> demo: product replica ${r[1]} (:${replica.port}) now answers ${replica.failing ? '503' : 'normally'}\n\n`);
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ replica: Number(r[1]), port: replica.port, failing: replica.failing }) + '\n');
    return;
  }
  const m = /^\/services\/([a-z]+)\/(down|up|slow|fast)$/.exec(req.url ?? '');
  const svc = m ? services.get(m[1] as ServiceName) : undefined;
  if (req.method === 'POST' && m && svc) {
    // Product's switches act on all three replicas: "product is down" means the service.
    const all = svc === product ? replicas : [svc];
    if (m[2] === 'slow' || m[2] === 'fast') for (const s of all) s.delayMs = m[2] === 'slow' ? 3000 : 0;
    const change = Promise.all(all.map((s) => (m[2] === 'down' ? s.stop() : m[2] === 'up' ? s.start() : Promise.resolve(0))));
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
  upstreams   ${[...services.values()].map((s) => (s === product ? `product:${replicas.map((p) => p.port).join(',')}` : `${s.name}:${s.port}`)).join('  ')}
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

Product is three replicas (docs/endpoints.md): make replica 2 answer 503 and it is ejected after
3 failures in a row on it, for 10 s (20 s the next time); every other request keeps succeeding and
the circuit stays closed:
  curl -s -X POST localhost:${CONTROL}/services/product/replicas/2/fail
  for i in $(seq 12); do curl -s -o /dev/null -w '%{http_code} ' localhost:8080/svc/product/products/1; done; echo
  curl -s localhost:9901/breakers/product    # "state":"closed", one endpoint "ejected" with its reason
  npx circuit-proxy status                   # ENDPOINTS 2/3; the status page shows the countdown
  curl -s -X POST localhost:${CONTROL}/services/product/replicas/2/ok

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

${
  fleet
    ? `Fleet (docs/fleet.md): a second sidecar on :8081 (admin :9902), both in the fleet make-order
through redis on :${REDIS_PORT}. Take product down and trip it through the first sidecar only;
the second opens too ("stateFrom":"sidecar-a"), and after the cooldown one trial decides for both:
  curl -s -X POST localhost:${CONTROL}/services/product/down
  for i in 1 2 3; do curl -s -o /dev/null -w '%{http_code} ' localhost:8080/svc/product/products/1; done; echo
  curl -s localhost:9902/breakers/product        # "state":"open", lastTrip "fleet: sidecar-a ..."
  curl -s localhost:9902/metrics | grep '^circuit_fleet'
  open http://localhost:9902/                    # the card says "via fleet sidecar sidecar-a"

`
    : ''
}Ctrl-C stops everything.

`);

let stopping = false;
const stop = (): void => {
  if (stopping) process.exit(1);
  stopping = true;
  proxy.kill('SIGTERM');
  second?.kill('SIGTERM');
  redis?.kill('SIGTERM');
  control.close();
  makeOrder.close();
  makeOrder.closeAllConnections();
  rmSync(configDir, { recursive: true, force: true });
  void Promise.all([...services.values(), ...replicas].map((s) => s.stop())).then(() => undefined);
};
proxy.on('exit', (code) => {
  if (!stopping) process.stderr.write(`circuit-proxy exited with ${code}\n`);
  stop();
  setTimeout(() => process.exit(code ?? 0), 100).unref();
});
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
