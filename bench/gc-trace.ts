/**
 * What V8's collector does while large bodies stream through one proxy process
 * (docs/performance-notes.md, "Streaming"): a fresh upstream and a fresh proxy (`proxy`:
 * circuit-proxy, `baseline`: the bare http-proxy of bench/baseline.ts), the proxy with
 * `--trace-gc --trace-incremental-marking`, then GC_TRACE_DOWNLOADS (default 3) downloads of
 * GC_TRACE_MB (default 256) MiB, one after the other. Prints and writes
 * bench/results/gc-trace-<time>.json: seconds per download, full and young collections during the
 * downloads, the young ones' total milliseconds, why incremental marking started, and the heap
 * after the last full collection.
 *
 * Usage: npm run build && node dist/bench/gc-trace.js proxy|baseline [node flags for the proxy...]
 * Every process gets NODE_FLAGS and PROCESS_ENV (src/runtime.ts), as in every bench; flags given
 * here come after NODE_FLAGS (so they win), e.g. `--initial-old-space-size=16`. An environment
 * variable set for this script reaches the proxy too, e.g. `MALLOC_TRIM_THRESHOLD_=131072`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { firstLine, listeningPorts } from './child.js';
import { PROCESS_ENV } from '../src/runtime.js';
import { client } from './streaming.js';
import { cleanUp, NODE_VERSION, ROOT, start, tempFile } from './tools.js';

const DOWNLOADS = Number(process.env.GC_TRACE_DOWNLOADS ?? 3);
const MB = Number(process.env.GC_TRACE_MB ?? 256);
const [kind, ...extra] = process.argv.slice(2);

async function main(): Promise<void> {
  if (kind !== 'proxy' && kind !== 'baseline') {
    process.stderr.write('usage: node dist/bench/gc-trace.js proxy|baseline [node flags...]\n');
    process.exit(2);
  }
  const up = start(1, [`${ROOT}dist/bench/big-upstream.js`, '0']);
  const upUrl = `http://127.0.0.1:${await firstLine(up, (l) => l.port as number | undefined)}`;
  const trace = ['--trace-gc', '--trace-incremental-marking', ...extra];
  let url: string;
  let out = '';
  let child;
  if (kind === 'proxy') {
    const cfg = tempFile(
      'gc-trace',
      `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  big:\n    url: ${upUrl}\n`,
    );
    child = start(0, [...trace, `${ROOT}bin/circuit-proxy.js`, 'serve', '--config', cfg]);
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    url = `http://127.0.0.1:${(await listeningPorts(child)).port}/svc/big`;
  } else {
    child = start(0, [...trace, `${ROOT}dist/bench/baseline.js`, '0', upUrl]);
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    url = `http://127.0.0.1:${await firstLine(child, (l) => l.port as number | undefined)}`;
  }
  const bytes = MB * 2 ** 20;
  const from = out.length;
  const seconds: number[] = [];
  try {
    for (let i = 0; i < DOWNLOADS; i++) seconds.push(Math.round((await client('get', `${url}/big?bytes=${bytes}`, bytes)) * 1000) / 1000);
  } finally {
    await new Promise<void>((resolve) => child.once('exit', () => resolve()).kill('SIGTERM'));
    up.kill('SIGTERM');
  }
  const during = out.slice(from).split('\n');
  const young = during.filter((l) => / Scavenge /.test(l));
  const full = during.filter((l) => / Mark-Compact /.test(l));
  const youngMs = young.reduce((a, l) => a + Number(/MB, ([\d.]+) \//.exec(l)?.[1] ?? 0), 0);
  const starts: Record<string, number> = {};
  for (const l of during) {
    const m = /\[IncrementalMarking\] Start \(([^)]+)\)/.exec(l);
    if (m) starts[m[1]!] = (starts[m[1]!] ?? 0) + 1;
  }
  const lastFull = full.at(-1);
  const result = {
    date: new Date().toISOString(),
    node: NODE_VERSION,
    command: `node dist/bench/gc-trace.js ${kind}${extra.length ? ` ${extra.join(' ')}` : ''}`,
    env: Object.fromEntries(Object.keys(PROCESS_ENV).map((k) => [k, process.env[k] ?? PROCESS_ENV[k]])),
    megabytes: MB,
    seconds,
    fullCollections: full.length,
    youngCollections: young.length,
    youngCollectionMs: Math.round(youngMs * 10) / 10,
    incrementalMarkingStarts: starts,
    heapAfterLastFullCollectionMB: lastFull === undefined ? null : Number(/-> ([\d.]+) \(/.exec(lastFull)?.[1]),
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  mkdirSync(`${ROOT}bench/results`, { recursive: true });
  const file = `bench/results/gc-trace-${result.date.replace(/[:.]/g, '-')}.json`;
  writeFileSync(`${ROOT}${file}`, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`written: ${file}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`gc-trace failed: ${(err as Error).stack}\n`);
    process.exitCode = 1;
  })
  .finally(cleanUp);
