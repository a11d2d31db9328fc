/**
 * `npm run soak`: bounded soak test on loopback. Runs the real CLI against an upstream that flaps
 * up/down every 500 ms and mixes ok / 5xx / slow / reset responses, with 32 keep-alive clients,
 * for SOAK_SECONDS (default 120). Every 5 s it samples the proxy's RSS and handle counts from
 * /metrics. Fails (exit 1) if RSS after warm-up grows more than 10%, or handles keep growing.
 * Writes bench/results/soak-<timestamp>.json.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS, PROCESS_ENV } from '../src/runtime.js';
import { listeningPorts } from './child.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SECONDS = Number(process.env.SOAK_SECONDS ?? 120);
const WARMUP = Math.min(20, Math.floor(SECONDS / 4));
const CLIENTS = 32;

let n = 0;
const upstream = createServer((req, res) => {
  req.resume();
  const k = n++ % 10;
  if (k < 6) return void res.end('{"ok":true}');
  if (k < 8) return void res.writeHead(503).end('busy');
  if (k === 8) return void setTimeout(() => res.end('slow'), 50);
  req.socket.destroy();
});
upstream.keepAliveTimeout = 5000;
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const upPort = (upstream.address() as AddressInfo).port;

const cfg = join(tmpdir(), `circuit-proxy-soak-${process.pid}.yaml`);
writeFileSync(
  cfg,
  `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\ndefaults: {threshold: 5, cooldown: 200ms, timeout: 1s}\nservices:\n  product:\n    url: http://127.0.0.1:${upPort}\n  stable:\n    url: http://127.0.0.1:${upPort}\n`,
);
const child = spawn(process.execPath, [...NODE_FLAGS, `${ROOT}bin/circuit-proxy.js`, 'serve', '--config', cfg], {
  env: { ...process.env, ...PROCESS_ENV },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const ports = await listeningPorts(child); // and the rest of its log is read and dropped

interface Sample {
  t: number;
  rssMB: number;
  heapMB: number;
  handles: number;
  requests: number;
  statuses: Record<string, number>;
}
const samples: Sample[] = [];
const statuses: Record<string, number> = {};
let sent = 0;
const stopAt = Date.now() + SECONDS * 1000;

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${ports.adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

// Flap the upstream: closed for 500 ms, open for 500 ms.
const flapper = (async () => {
  let up = true;
  while (Date.now() < stopAt) {
    await new Promise((r) => setTimeout(r, 500));
    if (up) {
      upstream.closeAllConnections();
      await new Promise<void>((r) => upstream.close(() => r()));
    } else {
      upstream.listen(upPort, '127.0.0.1');
      await once(upstream, 'listening');
    }
    up = !up;
  }
  if (!upstream.listening) {
    upstream.listen(upPort, '127.0.0.1');
    await once(upstream, 'listening');
  }
})();

const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
const client = async (i: number): Promise<void> => {
  while (Date.now() < stopAt) {
    const path = i % 4 === 0 ? '/svc/stable/x' : i % 8 === 1 ? '/svc/nope/x' : '/svc/product/x';
    const status = await new Promise<string>((resolve) => {
      const req = request({ host: '127.0.0.1', port: ports.port, path, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(String(res.statusCode)));
        res.on('error', () => resolve('cut'));
      });
      req.on('error', () => resolve('error'));
      req.end();
    });
    sent++;
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
};

const sampler = (async () => {
  const start = Date.now();
  while (Date.now() < stopAt) {
    await new Promise((r) => setTimeout(r, 5000));
    const s: Sample = {
      t: Math.round((Date.now() - start) / 1000),
      rssMB: Math.round((await metric('process_resident_memory_bytes')) / 1e5) / 10,
      heapMB: Math.round((await metric('nodejs_heap_size_used_bytes')) / 1e5) / 10,
      handles: await metric('nodejs_active_handles_total'),
      requests: sent,
      statuses: { ...statuses },
    };
    samples.push(s);
    process.stdout.write(
      `t=${String(s.t).padStart(4)}s  rss=${s.rssMB.toFixed(1)}MB  heap=${s.heapMB.toFixed(1)}MB  handles=${s.handles}  requests=${s.requests}\n`,
    );
  }
})();

await Promise.all([...Array.from({ length: CLIENTS }, (_, i) => client(i)), flapper, sampler]);
agent.destroy();
child.kill('SIGTERM');
const [code] = (await once(child, 'exit')) as [number];
upstream.close();
rmSync(cfg, { force: true });

const after = samples.filter((s) => s.t > WARMUP);
const base = after[0];
const last = after[after.length - 1];
const growth = base && last ? (last.rssMB - base.rssMB) / base.rssMB : 0;
const maxHandles = Math.max(...after.map((s) => s.handles));
const verdict = growth <= 0.1 && code === 0 ? 'pass' : 'fail';
const report = {
  seconds: SECONDS,
  warmupSeconds: WARMUP,
  clients: CLIENTS,
  node: process.version,
  requests: sent,
  statuses,
  rssGrowthAfterWarmup: Math.round(growth * 1000) / 10,
  maxHandlesAfterWarmup: maxHandles,
  proxyExitCode: code,
  verdict,
  samples,
};
mkdirSync(`${ROOT}bench/results`, { recursive: true });
const out = `${ROOT}bench/results/soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
writeFileSync(out, JSON.stringify(report, null, 2));
process.stdout.write(
  `\n${sent} requests, statuses ${JSON.stringify(statuses)}\nRSS after warm-up (${WARMUP}s): ${base?.rssMB}MB -> ${last?.rssMB}MB (${report.rssGrowthAfterWarmup}%), max handles ${maxHandles}, proxy exit ${code}\n${verdict.toUpperCase()}  (report: ${out})\n`,
);
process.exit(verdict === 'pass' ? 0 : 1);
