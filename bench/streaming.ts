/**
 * Streaming rounds of `npm run bench`: a BENCH_STREAM_MB (default 1024) response and request body
 * through the bare http-proxy baseline and through circuit-proxy, alternating, BENCH_STREAM_ROUNDS
 * (default 3) rounds each way, every other round in reverse order. Throughput is bytes over the
 * client's wall time (bench/stream-client.ts, on core 1 with the upstream); RSS growth is the
 * proxy's peak RSS during the transfer (sampled every 20 ms) minus its RSS before it.
 * Also runs on its own: `npm run build && node dist/bench/streaming.js` (writes bench/results/streaming-<time>.json).
 * BENCH_PROXY_FLAGS adds Node flags to the proxy's process only (after NODE_FLAGS, so they win),
 * e.g. `BENCH_PROXY_FLAGS=--max-semi-space-size=32`. Each proxy transfer also reports how many full
 * (major) collections the proxy ran meanwhile, read from its own /metrics.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { firstLine, listeningPorts } from './child.js';
import { NODE_FLAGS } from '../src/runtime.js';
import { cleanUp, median, NODE, NODE_VERSION, ROOT, rssMB, start, TASKSET, tempFile } from './tools.js';

export const STREAM_MB = Number(process.env.BENCH_STREAM_MB ?? 1024);
export const STREAM_ROUNDS = Number(process.env.BENCH_STREAM_ROUNDS ?? 3);
const PROXY_FLAGS = (process.env.BENCH_PROXY_FLAGS ?? '').split(/\s+/).filter(Boolean);

interface Transfer {
  mbPerSecond: number;
  rssGrowthMB: number;
  /** The proxy's full collections during the transfer (prom-client's `nodejs_gc_duration_seconds`). */
  majorGCs?: number;
}

export interface StreamingResult {
  megabytes: number;
  proxyFlags: string[];
  rounds: number;
  download: { baseline: Transfer[]; proxy: Transfer[]; ratio: number; rssGrowthOverBaselineMB: number };
  upload: { baseline: Transfer[]; proxy: Transfer[]; ratio: number; rssGrowthOverBaselineMB: number };
}

function client(mode: 'get' | 'put', url: string, bytes: number): Promise<number> {
  const node = [NODE, ...NODE_FLAGS, `${ROOT}dist/bench/stream-client.js`, mode, url, String(bytes)];
  const cmd = TASKSET ? ['taskset', '-c', '1', ...node] : node;
  return new Promise((resolve, reject) => {
    const c = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) =>
      code === 0 ? resolve((JSON.parse(out) as { seconds: number }).seconds) : reject(new Error(`stream-client exited ${code}`)),
    );
  });
}

async function majorGCs(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  return Number(/^nodejs_gc_duration_seconds_count\{kind="major"\} (\d+)/m.exec(text)?.[1] ?? 0);
}

async function transfer(pid: number, mode: 'get' | 'put', url: string, bytes: number, adminPort?: number): Promise<Transfer> {
  const gcBefore = adminPort === undefined ? 0 : await majorGCs(adminPort);
  const before = rssMB(pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMB(pid))), 20);
  try {
    const seconds = await client(mode, url, bytes);
    const t: Transfer = { mbPerSecond: Math.round(bytes / 1024 / 1024 / seconds), rssGrowthMB: Math.round((peak - before) * 10) / 10 };
    if (adminPort !== undefined) t.majorGCs = (await majorGCs(adminPort)) - gcBefore;
    return t;
  } finally {
    clearInterval(sampler);
  }
}

/** Runs the streaming rounds against its own upstream, baseline and proxy processes. */
export async function streamingRounds(log: (line: string) => void = (l) => process.stdout.write(l)): Promise<StreamingResult> {
  const bytes = STREAM_MB * 1024 * 1024;
  const up = start(1, [`${ROOT}dist/bench/big-upstream.js`, '0']);
  const upPort = await firstLine(up, (l) => l.port as number | undefined);
  const upUrl = `http://127.0.0.1:${upPort}`;
  const base = start(0, [`${ROOT}dist/bench/baseline.js`, '0', upUrl]);
  const basePort = await firstLine(base, (l) => l.port as number | undefined);
  const cfg = tempFile(
    'bench-stream',
    `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  big:\n    url: ${upUrl}\n`,
  );
  const cp = start(0, [...PROXY_FLAGS, `${ROOT}bin/circuit-proxy.js`, 'serve', '--config', cfg]);
  const { port, adminPort } = await listeningPorts(cp);
  const targets: Record<'baseline' | 'proxy', { child: ChildProcess; url: string; adminPort?: number }> = {
    baseline: { child: base, url: `http://127.0.0.1:${basePort}` },
    proxy: { child: cp, url: `http://127.0.0.1:${port}/svc/big`, adminPort },
  };
  const result: StreamingResult = {
    megabytes: STREAM_MB,
    proxyFlags: PROXY_FLAGS,
    rounds: STREAM_ROUNDS,
    download: { baseline: [], proxy: [], ratio: 0, rssGrowthOverBaselineMB: 0 },
    upload: { baseline: [], proxy: [], ratio: 0, rssGrowthOverBaselineMB: 0 },
  };
  try {
    // Warm-up, not recorded.
    for (const t of Object.values(targets)) await client('get', `${t.url}/big?bytes=${64 << 20}`, 64 << 20);
    for (let r = 1; r <= STREAM_ROUNDS; r++) {
      for (const name of r % 2 === 1 ? (['baseline', 'proxy'] as const) : (['proxy', 'baseline'] as const)) {
        const t = targets[name];
        const down = await transfer(t.child.pid!, 'get', `${t.url}/big?bytes=${bytes}`, bytes, t.adminPort);
        const upl = await transfer(t.child.pid!, 'put', `${t.url}/sink`, bytes, t.adminPort);
        result.download[name].push(down);
        result.upload[name].push(upl);
        const gcs = (x: Transfer): string => (x.majorGCs === undefined ? '' : `, ${x.majorGCs} full GCs`);
        log(
          `stream round ${r} ${name.padEnd(8)} download ${down.mbPerSecond} MB/s (RSS +${down.rssGrowthMB} MB${gcs(down)})  upload ${upl.mbPerSecond} MB/s (RSS +${upl.rssGrowthMB} MB${gcs(upl)})\n`,
        );
      }
    }
  } finally {
    for (const c of [up, base, cp]) c.kill('SIGTERM');
  }
  for (const dir of [result.download, result.upload]) {
    dir.ratio = Math.round((median(dir.proxy.map((t) => t.mbPerSecond)) / median(dir.baseline.map((t) => t.mbPerSecond))) * 1000) / 1000;
    dir.rssGrowthOverBaselineMB =
      Math.round((median(dir.proxy.map((t) => t.rssGrowthMB)) - median(dir.baseline.map((t) => t.rssGrowthMB))) * 10) / 10;
  }
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  streamingRounds()
    .then((r) => {
      const line = (name: string, d: StreamingResult['download']): string =>
        `${name}: ${d.ratio}x the baseline's throughput, RSS growth ${d.rssGrowthOverBaselineMB} MB over the baseline's\n`;
      const flags = PROXY_FLAGS.length > 0 ? `, proxy with ${PROXY_FLAGS.join(' ')}` : '';
      process.stdout.write(
        `\n${STREAM_MB} MiB on Node ${NODE_VERSION}${flags}\n${line('download', r.download)}${line('upload', r.upload)}`,
      );
      mkdirSync(`${ROOT}bench/results`, { recursive: true });
      const file = `bench/results/streaming-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
      writeFileSync(`${ROOT}${file}`, JSON.stringify({ date: new Date().toISOString(), node: NODE_VERSION, ...r }, null, 2) + '\n');
      process.stdout.write(`written: ${file}\n`);
    })
    .catch((err: unknown) => {
      process.stderr.write(`streaming bench failed: ${(err as Error).stack}\n`);
      process.exitCode = 1;
    })
    .finally(cleanUp);
}
