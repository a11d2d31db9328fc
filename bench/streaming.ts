/**
 * Streaming rounds of `npm run bench` (docs/performance-notes.md, "Streaming"): large response
 * and request bodies through the bare http-proxy baseline and through circuit-proxy.
 *
 * - BENCH_STREAM_ROUNDS (default 20) rounds of BENCH_STREAM_MB (default 256) MiB each way. In a
 *   round each proxy moves a download and an upload on a kept-alive upstream connection, then a
 *   download and an upload on a fresh one; the order of the two proxies alternates (ABBA).
 * - Every BENCH_STREAM_BLOCK (default 4) rounds all processes (upstream, baseline, circuit-proxy)
 *   are started anew, so the mode one process happens to run in does not decide the result.
 * - Rate: bytes over the client's wall time (bench/stream-client.ts on core 1 with the upstream;
 *   proxies on core 0). CPU: the proxy's own CPU time (/proc/<pid>/schedstat, nanoseconds) per
 *   GiB. RSS growth: the proxy's peak RSS during the transfer (sampled every 20 ms) minus before.
 * - Each round gives one ratio per direction and connection mode (circuit-proxy / baseline); the
 *   result is their median with a bootstrap 95% interval, for the rate and for CPU per GiB.
 * - Both proxies run with bench/counters.ts preloaded: socket reads, writes and flushes, their
 *   mean sizes, writes refused (false) and drain waits, and GC, per transfer, in the result JSON.
 * - Then BENCH_STREAM_CONCURRENT (default 8) transfers at once, each way, twice (ABBA): total rate
 *   and RSS growth against the baseline's.
 *
 * Also runs on its own: `npm run build && node dist/bench/streaming.js` (writes
 * bench/results/streaming-<time>.json). BENCH_PROXY_FLAGS adds Node flags to circuit-proxy's
 * process only (after NODE_FLAGS, so they win), e.g. `BENCH_PROXY_FLAGS=--max-semi-space-size=32`.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { firstLine, listeningPorts } from './child.js';
// Type only: importing the module itself would patch this process's sockets.
import type { Side as SideCounters } from './counters.js';
import { NODE_FLAGS, PROCESS_ENV } from '../src/runtime.js';
import { cleanUp, median, NODE, NODE_VERSION, ROOT, rssMB, start, TASKSET, tempFile } from './tools.js';

export const STREAM_MB = Number(process.env.BENCH_STREAM_MB ?? 256);
export const STREAM_ROUNDS = Number(process.env.BENCH_STREAM_ROUNDS ?? 20);
export const STREAM_BLOCK = Number(process.env.BENCH_STREAM_BLOCK ?? 4);
export const STREAM_CONCURRENT = Number(process.env.BENCH_STREAM_CONCURRENT ?? 8);
const PROXY_FLAGS = (process.env.BENCH_PROXY_FLAGS ?? '').split(/\s+/).filter(Boolean);
const COUNTERS = pathToFileURL(`${ROOT}dist/bench/counters.js`).href;

type Name = 'baseline' | 'proxy';
type Direction = 'download' | 'upload';
type ConnectionMode = 'kept' | 'fresh';

interface Snapshot {
  sides: { client: SideCounters; upstream: SideCounters };
  gc: { minor: number; major: number; incremental: number; weak: number; ms: number };
  heapUsedMB: number;
  externalMB: number;
  arrayBuffersMB: number;
  newSpaceMB: number;
}

/** What one side's sockets did during a transfer: counts, and mean bytes per event. */
interface SideSummary {
  readEvents: number;
  meanReadBytes: number;
  writeCalls: number;
  meanWriteBytes: number;
  writeFalse: number;
  flushes: number;
  meanFlushBytes: number;
  outgoingFalse: number;
  drains: number;
}

export interface Transfer {
  mbPerSecond: number;
  cpuSecondsPerGiB: number;
  rssGrowthMB: number;
  /** Connections the upstream accepted for this transfer: 0 kept-alive, 1 fresh. */
  upstreamConnections: number;
  client: SideSummary;
  upstream: SideSummary;
  gc: { minor: number; major: number; ms: number };
  externalMBAfter: number;
  /** V8's young generation (new space) when the transfer began: the size that decides how often it is collected. */
  newSpaceMB: number;
  /** Minor page faults of the proxy per MiB moved: fresh memory the kernel had to map and zero. */
  pageFaultsPerMiB: number;
  /** The kernel's share of the proxy's CPU time during the transfer. */
  systemShare: number;
}

interface Pair {
  block: number;
  round: number;
  baseline: Transfer;
  proxy: Transfer;
  rateRatio: number;
  cpuRatio: number;
}

/** A median with its bootstrap 95% interval. */
export interface Estimate {
  median: number;
  low: number;
  high: number;
}

export interface ModeResult {
  pairs: Pair[];
  rate: Estimate;
  cpuPerGiB: Estimate;
  rssGrowthOverBaselineMB: number;
}

export interface DirectionResult {
  kept: ModeResult;
  fresh: ModeResult;
  /** Both modes' rounds together. */
  rate: Estimate;
  cpuPerGiB: Estimate;
  rssGrowthOverBaselineMB: number;
  /** The same figure as rate.median, kept for the summary line and older readers of the JSON. */
  ratio: number;
}

export interface ConcurrentResult {
  transfers: number;
  baseline: { mbPerSecond: number[]; rssGrowthMB: number[] };
  proxy: { mbPerSecond: number[]; rssGrowthMB: number[] };
  ratio: number;
  rssGrowthOverBaselineMB: number;
}

export interface StreamingResult {
  megabytes: number;
  proxyFlags: string[];
  rounds: number;
  block: number;
  download: DirectionResult;
  upload: DirectionResult;
  concurrent: { download: ConcurrentResult; upload: ConcurrentResult };
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;
const round1 = (x: number): number => Math.round(x * 10) / 10;

/** A deterministic generator (mulberry32), so the interval of one result file can be recomputed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The median of `xs` and the 2.5th and 97.5th percentiles of the medians of 2,000 resamples. */
export function bootstrap(xs: readonly number[], resamples = 2000, seed = 1): Estimate {
  if (xs.length === 0) return { median: NaN, low: NaN, high: NaN };
  const next = random(seed);
  const medians: number[] = [];
  const sample = new Array<number>(xs.length);
  for (let i = 0; i < resamples; i++) {
    for (let j = 0; j < xs.length; j++) sample[j] = xs[Math.floor(next() * xs.length)]!;
    medians.push(median(sample));
  }
  medians.sort((a, b) => a - b);
  return {
    median: round3(median([...xs])),
    low: round3(medians[Math.floor(resamples * 0.025)]!),
    high: round3(medians[Math.ceil(resamples * 0.975) - 1]!),
  };
}

/** CPU time of a process in nanoseconds (the scheduler's own account, not 10 ms ticks). */
function cpuNs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}

/** Minor page faults, and user and system CPU in clock ticks, from /proc/<pid>/stat. */
function faultsAndTicks(pid: number): { minflt: number; utime: number; stime: number } {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return { minflt: Number(fields[7]), utime: Number(fields[11]), stime: Number(fields[12]) };
}

/** A measured proxy process: its counters are asked for with SIGUSR2 and read from its stdout. */
class Measured {
  private buffer = '';
  private readonly waiting: Array<(s: Snapshot) => void> = [];

  constructor(
    readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.stdout!.on('data', (d: Buffer) => {
      this.buffer += d.toString();
      let i: number;
      while ((i = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 1);
        if (!line.startsWith('{"benchCounters"')) continue;
        this.waiting.shift()?.((JSON.parse(line) as { benchCounters: Snapshot }).benchCounters);
      }
    });
  }

  counters(): Promise<Snapshot> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no counters from a proxy in 10 s')), 10_000);
      this.waiting.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
      this.child.kill('SIGUSR2');
    });
  }
}

/** Runs bench/stream-client.ts on core 1: seconds for `count` transfers of `bytes` at once. */
export function client(mode: 'get' | 'put', url: string, bytes: number, count = 1): Promise<number> {
  const node = [NODE, ...NODE_FLAGS, `${ROOT}dist/bench/stream-client.js`, mode, url, String(bytes), String(count)];
  const cmd = TASKSET ? ['taskset', '-c', '1', ...node] : node;
  return new Promise((resolve, reject) => {
    const c = spawn(cmd[0]!, cmd.slice(1), { env: { ...PROCESS_ENV, ...process.env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) =>
      code === 0 ? resolve((JSON.parse(out) as { seconds: number }).seconds) : reject(new Error(`stream-client exited ${code}`)),
    );
  });
}

function summarize(after: SideCounters, before: SideCounters): SideSummary {
  const d = (k: keyof SideCounters): number => after[k] - before[k];
  const mean = (bytes: number, n: number): number => (n === 0 ? 0 : Math.round(bytes / n));
  return {
    readEvents: d('readEvents'),
    meanReadBytes: mean(d('readBytes'), d('readEvents')),
    writeCalls: d('writeCalls'),
    meanWriteBytes: mean(d('writeBytes'), d('writeCalls')),
    writeFalse: d('writeFalse'),
    flushes: d('flushes'),
    meanFlushBytes: mean(d('flushBytes'), d('flushes')),
    outgoingFalse: d('outgoingFalse'),
    drains: d('drains'),
  };
}

async function upstreamConnections(upUrl: string): Promise<number> {
  return ((await (await fetch(`${upUrl}/stats`)).json()) as { connections: number }).connections;
}

/** One measured transfer (or `count` at once) through `t`, with everything the JSON keeps. */
async function transfer(
  t: Measured,
  upUrl: string,
  direction: Direction,
  mode: ConnectionMode,
  bytes: number,
  count = 1,
): Promise<Transfer> {
  const close = mode === 'fresh' ? '&close=1' : '';
  // Kept: a small request first leaves a pooled upstream connection for the transfer to reuse.
  // Fresh: a small request that the upstream closes leaves none, so the transfer opens one.
  await client('get', `${t.url}/big?bytes=1${close}`, 1);
  const pid = t.child.pid!;
  const connsBefore = await upstreamConnections(upUrl);
  const before = await t.counters();
  const rssBefore = rssMB(pid);
  let peak = rssBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMB(pid))), 20);
  const cpuBefore = cpuNs(pid);
  const statBefore = faultsAndTicks(pid);
  let seconds: number;
  try {
    seconds =
      direction === 'download'
        ? await client('get', `${t.url}/big?bytes=${bytes}${close}`, bytes, count)
        : await client('put', `${t.url}/sink?x=1${close}`, bytes, count);
  } finally {
    clearInterval(sampler);
  }
  const cpu = (cpuNs(pid) - cpuBefore) / 1e9;
  const statAfter = faultsAndTicks(pid);
  const ticks = statAfter.utime + statAfter.stime - statBefore.utime - statBefore.stime;
  const after = await t.counters();
  const total = bytes * count;
  return {
    mbPerSecond: Math.round(total / 2 ** 20 / seconds),
    cpuSecondsPerGiB: round3(cpu / (total / 2 ** 30)),
    rssGrowthMB: round1(peak - rssBefore),
    upstreamConnections: (await upstreamConnections(upUrl)) - connsBefore,
    client: summarize(after.sides.client, before.sides.client),
    upstream: summarize(after.sides.upstream, before.sides.upstream),
    gc: { minor: after.gc.minor - before.gc.minor, major: after.gc.major - before.gc.major, ms: round1(after.gc.ms - before.gc.ms) },
    externalMBAfter: round1(after.externalMB),
    newSpaceMB: round1(before.newSpaceMB),
    pageFaultsPerMiB: round1((statAfter.minflt - statBefore.minflt) / (total / 2 ** 20)),
    systemShare: ticks === 0 ? 0 : round3((statAfter.stime - statBefore.stime) / ticks),
  };
}

interface Processes {
  up: ChildProcess;
  upUrl: string;
  targets: Record<Name, Measured>;
}

/** A fresh upstream, baseline and circuit-proxy, both proxies with the counters preloaded. */
async function startAll(): Promise<Processes> {
  const up = start(1, [`${ROOT}dist/bench/big-upstream.js`, '0']);
  const upUrl = `http://127.0.0.1:${await firstLine(up, (l) => l.port as number | undefined)}`;
  const base = start(0, ['--import', COUNTERS, `${ROOT}dist/bench/baseline.js`, '0', upUrl]);
  const basePort = await firstLine(base, (l) => l.port as number | undefined);
  const cfg = tempFile(
    'bench-stream',
    `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  big:\n    url: ${upUrl}\n`,
  );
  const cp = start(0, [...PROXY_FLAGS, '--import', COUNTERS, `${ROOT}bin/circuit-proxy.js`, 'serve', '--config', cfg]);
  const { port } = await listeningPorts(cp);
  const targets = {
    baseline: new Measured(base, `http://127.0.0.1:${basePort}`),
    proxy: new Measured(cp, `http://127.0.0.1:${port}/svc/big`),
  };
  // Warm-up, not recorded.
  for (const t of Object.values(targets)) await client('get', `${t.url}/big?bytes=${64 << 20}`, 64 << 20);
  return { up, upUrl, targets };
}

async function stopAll(p: Processes): Promise<void> {
  const children = [p.up, p.targets.baseline.child, p.targets.proxy.child];
  await Promise.all(
    children.map((c) =>
      c.exitCode !== null ? Promise.resolve() : new Promise<void>((resolve) => c.once('exit', () => resolve()).kill('SIGTERM')),
    ),
  );
}

function modeResult(pairs: Pair[]): ModeResult {
  return {
    pairs,
    rate: bootstrap(pairs.map((p) => p.rateRatio)),
    cpuPerGiB: bootstrap(pairs.map((p) => p.cpuRatio)),
    rssGrowthOverBaselineMB: round1(median(pairs.map((p) => p.proxy.rssGrowthMB)) - median(pairs.map((p) => p.baseline.rssGrowthMB))),
  };
}

function directionResult(kept: Pair[], fresh: Pair[]): DirectionResult {
  const all = modeResult([...kept, ...fresh]);
  return {
    kept: modeResult(kept),
    fresh: modeResult(fresh),
    rate: all.rate,
    cpuPerGiB: all.cpuPerGiB,
    rssGrowthOverBaselineMB: all.rssGrowthOverBaselineMB,
    ratio: all.rate.median,
  };
}

function concurrentResult(runs: Record<Name, Transfer[]>): ConcurrentResult {
  const side = (ts: Transfer[]): { mbPerSecond: number[]; rssGrowthMB: number[] } => ({
    mbPerSecond: ts.map((t) => t.mbPerSecond),
    rssGrowthMB: ts.map((t) => t.rssGrowthMB),
  });
  return {
    transfers: STREAM_CONCURRENT,
    baseline: side(runs.baseline),
    proxy: side(runs.proxy),
    ratio: round3(median(runs.proxy.map((t) => t.mbPerSecond)) / median(runs.baseline.map((t) => t.mbPerSecond))),
    rssGrowthOverBaselineMB: round1(median(runs.proxy.map((t) => t.rssGrowthMB)) - median(runs.baseline.map((t) => t.rssGrowthMB))),
  };
}

/** Runs the streaming rounds against their own upstream, baseline and proxy processes. */
export async function streamingRounds(log: (line: string) => void = (l) => process.stdout.write(l)): Promise<StreamingResult> {
  const bytes = STREAM_MB * 2 ** 20;
  const pairs: Record<Direction, Record<ConnectionMode, Pair[]>> = {
    download: { kept: [], fresh: [] },
    upload: { kept: [], fresh: [] },
  };
  for (let r = 1, block = 0; r <= STREAM_ROUNDS; block++) {
    const p = await startAll();
    try {
      for (let i = 0; i < STREAM_BLOCK && r <= STREAM_ROUNDS; i++, r++) {
        const order: Name[] = r % 2 === 1 ? ['baseline', 'proxy'] : ['proxy', 'baseline'];
        const got: Record<Name, Record<string, Transfer>> = { baseline: {}, proxy: {} };
        for (const name of order) {
          for (const mode of ['kept', 'fresh'] as const) {
            for (const direction of ['download', 'upload'] as const) {
              got[name][`${direction} ${mode}`] = await transfer(p.targets[name], p.upUrl, direction, mode, bytes);
            }
          }
        }
        const cells: string[] = [];
        for (const mode of ['kept', 'fresh'] as const) {
          for (const direction of ['download', 'upload'] as const) {
            const b = got.baseline[`${direction} ${mode}`]!;
            const c = got.proxy[`${direction} ${mode}`]!;
            const pair: Pair = {
              block,
              round: r,
              baseline: b,
              proxy: c,
              rateRatio: round3(c.mbPerSecond / b.mbPerSecond),
              cpuRatio: round3(c.cpuSecondsPerGiB / b.cpuSecondsPerGiB),
            };
            pairs[direction][mode].push(pair);
            cells.push(`${direction} ${mode} ${b.mbPerSecond}/${c.mbPerSecond} MB/s ${pair.rateRatio}x cpu ${pair.cpuRatio}x`);
          }
        }
        log(`stream round ${String(r).padStart(2)} (block ${block + 1}, ${order[0]} first): ${cells.join(' | ')}\n`);
      }
    } finally {
      await stopAll(p);
    }
  }
  // Many at once: fresh processes, two rounds in ABBA order.
  const concurrent: Record<Direction, Record<Name, Transfer[]>> = {
    download: { baseline: [], proxy: [] },
    upload: { baseline: [], proxy: [] },
  };
  const p = await startAll();
  try {
    for (const order of [
      ['baseline', 'proxy'],
      ['proxy', 'baseline'],
    ] as Name[][]) {
      for (const name of order) {
        for (const direction of ['download', 'upload'] as const) {
          const t = await transfer(p.targets[name], p.upUrl, direction, 'kept', bytes, STREAM_CONCURRENT);
          concurrent[direction][name].push(t);
          log(
            `stream ${STREAM_CONCURRENT} at once ${name.padEnd(8)} ${direction.padEnd(8)} ${t.mbPerSecond} MB/s total, RSS +${t.rssGrowthMB} MB, cpu ${t.cpuSecondsPerGiB} s/GiB\n`,
          );
        }
      }
    }
  } finally {
    await stopAll(p);
  }
  const result: StreamingResult = {
    megabytes: STREAM_MB,
    proxyFlags: PROXY_FLAGS,
    rounds: STREAM_ROUNDS,
    block: STREAM_BLOCK,
    download: directionResult(pairs.download.kept, pairs.download.fresh),
    upload: directionResult(pairs.upload.kept, pairs.upload.fresh),
    concurrent: { download: concurrentResult(concurrent.download), upload: concurrentResult(concurrent.upload) },
  };
  return result;
}

/** The summary lines of a streaming result, for the bench's output. */
export function streamingSummary(r: StreamingResult): string {
  const est = (e: Estimate): string => `${e.median}x [${e.low}, ${e.high}]`;
  const lines: string[] = [];
  for (const direction of ['download', 'upload'] as const) {
    const d = r[direction];
    for (const mode of ['kept', 'fresh'] as const) {
      const m = d[mode];
      lines.push(
        `${direction} ${mode}-alive`.replace('fresh-alive', 'fresh').padEnd(16) +
          ` rate ${est(m.rate)}  CPU/GiB ${est(m.cpuPerGiB)}  RSS growth ${m.rssGrowthOverBaselineMB} MB over the baseline's`,
      );
    }
    const c = r.concurrent[direction];
    lines.push(
      `${direction} ${c.transfers} at once`.padEnd(16) +
        ` rate ${c.ratio}x  RSS growth ${c.rssGrowthOverBaselineMB} MB over the baseline's`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The streaming targets (docs/performance-notes.md, "Streaming"): every mode of both directions. */
export function streamingTargets(r: StreamingResult): Record<string, boolean> {
  const t: Record<string, boolean> = {};
  for (const direction of ['download', 'upload'] as const) {
    for (const mode of ['kept', 'fresh'] as const) {
      const m = r[direction][mode];
      t[
        `streaming ${direction}, ${mode === 'kept' ? 'kept-alive' : 'fresh'} upstream connection: median rate >= 0.90x, 95% lower bound >= 0.85x`
      ] = m.rate.median >= 0.9 && m.rate.low >= 0.85;
      t[`streaming ${direction}, ${mode === 'kept' ? 'kept-alive' : 'fresh'} upstream connection: CPU per GiB <= 1.10x`] =
        m.cpuPerGiB.median <= 1.1;
    }
    t[`streaming ${direction}: RSS growth <= baseline + 10 MB`] = r[direction].rssGrowthOverBaselineMB <= 10;
    t[`streaming ${direction}, ${r.concurrent[direction].transfers} at once: RSS growth <= baseline + 10 MB`] =
      r.concurrent[direction].rssGrowthOverBaselineMB <= 10;
  }
  return t;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  streamingRounds()
    .then((r) => {
      const flags = PROXY_FLAGS.length > 0 ? `, circuit-proxy with ${PROXY_FLAGS.join(' ')}` : '';
      process.stdout.write(
        `\n${STREAM_MB} MiB x ${STREAM_ROUNDS} rounds on Node ${NODE_VERSION}${flags}; circuit-proxy / baseline, median [95% interval]\n${streamingSummary(r)}`,
      );
      for (const [k, v] of Object.entries(streamingTargets(r))) process.stdout.write(`  ${v ? 'met   ' : 'MISSED'}  ${k}\n`);
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
