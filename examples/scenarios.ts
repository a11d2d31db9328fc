/**
 * `npm run scenarios`: the seed's three scenarios, scripted, through make-order's POST /ordering.
 * Runs the demo topology as local processes (no Docker): six demo upstreams and make-order here,
 * circuit-proxy as a child process (the real CLI with config/proxy.yaml). Prints a transcript and
 * exits 1 at the first deviation. Bounded: every wait has a deadline.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS, PROCESS_ENV } from '../src/runtime.js';
import { createMakeOrder } from './make-order/app.js';
import { DemoService, SERVICE_NAMES } from './demo/services.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COOLDOWN_SECONDS = '3'; // long enough that the "still open" step cannot race the cooldown on a slow machine

const services = SERVICE_NAMES.map((n) => new DemoService(n));
for (const s of services) await s.start();
const product = services.find((s) => s.name === 'product')!;

const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, ...PROCESS_ENV, CB_THRESHOLD: '3', CB_COOLDOWN_SECONDS: COOLDOWN_SECONDS };
for (const s of services) env[`${s.name.toUpperCase()}_URL`] = `http://127.0.0.1:${s.port}`;
const proxy = spawn(
  process.execPath,
  [...NODE_FLAGS, `${ROOT}bin/circuit-proxy.js`, 'serve', '--port', '0', '--admin-port', '0', '--config', `${ROOT}config/proxy.yaml`],
  { env, stdio: ['ignore', 'pipe', 'inherit'] },
);
const logs: Array<Record<string, unknown>> = [];
const ready = new Promise<{ port: number; adminPort: number }>((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('circuit-proxy did not start within 10 s')), 10_000);
  let buf = '';
  proxy.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      logs.push(line);
      if (String(line.msg).startsWith('circuit-proxy listening')) {
        clearTimeout(t);
        resolve({ port: line.port as number, adminPort: line.adminPort as number });
      }
    }
  });
});
const { port, adminPort } = await ready;
const makeOrder = createMakeOrder(`http://127.0.0.1:${port}`);
makeOrder.listen(0, '127.0.0.1');
await once(makeOrder, 'listening');
const orderUrl = `http://127.0.0.1:${(makeOrder.address() as AddressInfo).port}/ordering`;

let failed = false;
async function breakerState(): Promise<string> {
  const b = (await (await fetch(`http://127.0.0.1:${adminPort}/breakers/product`)).json()) as { state: string };
  return b.state;
}
async function order(): Promise<{ status: number; body: any; retryAfter: string | null }> {
  const r = await fetch(orderUrl, {
    method: 'POST',
    headers: { authorization: 'Bearer demo-token', 'content-type': 'application/json' },
    body: JSON.stringify({ items: [{ productId: '1', quantity: 1 }] }),
  });
  return { status: r.status, body: await r.json(), retryAfter: r.headers.get('retry-after') };
}
async function step(label: string, expectStatus: number, expectState: string, check: (body: any) => boolean = () => true): Promise<void> {
  const r = await order();
  const state = await breakerState();
  const ok = r.status === expectStatus && state === expectState && check(r.body);
  failed ||= !ok;
  const extra = r.retryAfter ? ` retry-after=${r.retryAfter}` : '';
  process.stdout.write(
    `${ok ? '  ok ' : 'FAIL '} ${label.padEnd(44)} POST /ordering -> ${r.status}${extra}  product breaker: ${state}  ${JSON.stringify(r.body).slice(0, 110)}\n`,
  );
  if (!ok) process.stdout.write(`      expected ${expectStatus} with breaker ${expectState}\n`);
}

process.stdout.write(
  `circuit-proxy on :${port} (admin :${adminPort}), threshold 3, cooldown ${COOLDOWN_SECONDS}s; make-order at ${orderUrl}\n\n`,
);
process.stdout.write('Scenario 1: normal operation\n');
await step('order placed', 201, 'closed', (b) => b.order?.status === 'created' && b.notification === 'sent');

process.stdout.write('\nScenario 2: product service down\n');
await product.stop();
for (let i = 1; i <= 3; i++)
  await step(`failure ${i}/3: product unreachable`, 502, i === 3 ? 'open' : 'closed', (b) => b.service === 'product');
await step(
  'circuit open: rejected without contacting',
  503,
  'open',
  (b) => b.error === 'product is temporarily unavailable (circuit open)',
);
const opened = logs.some((l) => l.msg === 'Circuit open for product');
process.stdout.write(`${opened ? '  ok ' : 'FAIL '} log line "Circuit open for product"\n`);
failed ||= !opened;

process.stdout.write('\nScenario 3: product service back\n');
await product.start();
await step('still open until the cooldown ends', 503, 'open');
const deadline = Date.now() + 5000;
while ((await breakerState()) !== 'half_open' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
process.stdout.write(`  ..  cooldown elapsed: product breaker ${await breakerState()}\n`);
await step('trial request succeeds: circuit closes', 201, 'closed', (b) => b.order?.status === 'created');
await step('normal operation again', 201, 'closed');

proxy.kill('SIGTERM');
const [code] = (await once(proxy, 'exit')) as [number];
makeOrder.close();
await Promise.all(services.map((s) => s.stop()));
process.stdout.write(`\ncircuit-proxy exited with ${code}\n${failed || code !== 0 ? 'SCENARIOS FAILED' : 'all scenarios passed'}\n`);
process.exit(failed || code !== 0 ? 1 : 0);
