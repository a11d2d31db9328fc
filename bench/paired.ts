/**
 * Paired measurement: proxies loaded at the same time, all pinned to core 0, each driven by its
 * own load generator (25 connections) on core 1. Whatever the machine does meanwhile (neighbours,
 * clock changes) hits all of them alike within a round, so the ratio of their CPU time per
 * request is much steadier than a ratio across alternating rounds. bench/run.ts reports it for
 * the baseline and the closed circuit, next to the req/s ratio the targets are defined on.
 *
 * On its own it compares builds, e.g. a commit before an optimization against the working tree:
 *
 *   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci)
 *   npm run build && node dist/bench/paired.js /tmp/before .
 *
 * Each argument is a built circuit-proxy checkout, optionally with Node flags for its process
 * (`.@--max-semi-space-size=4`: after the shipped NODE_FLAGS, so they win; several joined by
 * commas); the first proxy is always this checkout's bare
 * http-proxy baseline. With BENCH_PAIRED_PATH=open the open circuit is compared instead (a
 * service forced open through the admin API), and the reference is the floor (bench/floor.ts, a
 * bare Node server answering the same 503). Rounds: BENCH_PAIRED_ROUNDS (default 8) of
 * BENCH_PAIRED_SECONDS (default 3). Results go to bench/results/paired-<time>.json. Targets
 * 127.0.0.1 only; stops by itself.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { firstLine, forceOpen, listeningPorts } from './child.js';
import { cleanUp, CLK_TCK, cpuTicks, load, median, NODE_VERSION, ROOT, start, tempFile, type Load } from './tools.js';

export interface PairedTarget {
  readonly name: string;
  readonly pid: number;
  readonly url: string;
}

export interface Paired {
  readonly name: string;
  /** CPU µs per request, per round. */
  readonly usPerRequest: number[];
  /** The first target's µs per request divided by this one's, per round (>1: cheaper than the first). */
  readonly ratioToFirst: number[];
  readonly medianRatio: number;
}

const CONNECTIONS_EACH = 25;
const round1 = (x: number): number => Math.round(x * 10) / 10;
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Loads every target at once for `rounds` rounds of `seconds`; the first target is the reference. */
export async function pairedRounds(targets: readonly PairedTarget[], rounds: number, seconds: number): Promise<Paired[]> {
  const us: number[][] = targets.map(() => []);
  for (let r = 0, failed = 0; r < rounds; r++) {
    const before = targets.map((t) => cpuTicks(t.pid));
    let loads: Load[];
    try {
      loads = await Promise.all(targets.map((t) => load(t.url, seconds, CONNECTIONS_EACH)));
    } catch (err) {
      // A load generator that measured nothing spoils the round for all: run it again, twice at most.
      if (++failed > 2) throw err;
      process.stderr.write(`paired: round ${r + 1} discarded and repeated: ${(err as Error).message.split('\n')[0]}\n`);
      r--;
      continue;
    }
    targets.forEach((t, i) => {
      const cpuUs = ((cpuTicks(t.pid) - before[i]!) / CLK_TCK) * 1e6;
      us[i]!.push(round1(cpuUs / loads[i]!.requests));
    });
  }
  return targets.map((t, i) => {
    const ratioToFirst = us[i]!.map((u, r) => round3(us[0]![r]! / u));
    return { name: t.name, usPerRequest: us[i]!, ratioToFirst, medianRatio: round3(median(ratioToFirst)) };
  });
}

async function main(dirs: string[]): Promise<void> {
  const rounds = Number(process.env.BENCH_PAIRED_ROUNDS ?? 8);
  const seconds = Number(process.env.BENCH_PAIRED_SECONDS ?? 3);
  const open = process.env.BENCH_PAIRED_PATH === 'open';
  const up = start(1, [`${ROOT}dist/bench/upstream.js`, '0']);
  const upUrl = `http://127.0.0.1:${await firstLine(up, (l) => l.port as number | undefined)}`;
  const ref = open ? start(0, [`${ROOT}dist/bench/floor.js`, '0']) : start(0, [`${ROOT}dist/bench/baseline.js`, '0', upUrl]);
  const targets: PairedTarget[] = [
    {
      name: open ? 'floor (bare Node 503)' : 'bare http-proxy',
      pid: ref.pid!,
      url: `http://127.0.0.1:${await firstLine(ref, (l) => l.port as number | undefined)}/items/1`,
    },
  ];
  const service = open ? 'held' : 'product';
  const cfg = tempFile(
    'paired',
    `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  ${service}:\n    url: ${upUrl}\n`,
  );
  for (const arg of dirs) {
    // `<checkout>@<flag>,<flag>`: Node flags for that process only, after NODE_FLAGS (so they win).
    const [dir, flags] = arg.includes('@') ? [arg.slice(0, arg.indexOf('@')), arg.slice(arg.indexOf('@') + 1).split(',')] : [arg, []];
    const cp = start(0, [...flags, join(resolve(dir), 'bin/circuit-proxy.js'), 'serve', '--config', cfg, '--log-level', 'info']);
    const { port, adminPort } = await listeningPorts(cp);
    if (open) await forceOpen(adminPort, service);
    targets.push({
      name: `circuit-proxy ${arg} (${open ? 'open' : 'closed'})`,
      pid: cp.pid!,
      url: `http://127.0.0.1:${port}/svc/${service}/items/1`,
    });
  }
  process.stdout.write(`paired: ${targets.length} proxies on core 0 loaded together, ${rounds} rounds x ${seconds}s\n`);
  // Warm-up, not recorded: the proxies share the core, so each JIT needs longer to settle than alone.
  await Promise.all(targets.map((t) => load(t.url, 5, CONNECTIONS_EACH)));
  const results = await pairedRounds(targets, rounds, seconds);
  for (const r of results) {
    process.stdout.write(
      `${r.name.padEnd(40)} µs CPU/req ${median(r.usPerRequest).toFixed(1).padStart(6)}  CPU ratio to ${open ? 'floor' : 'baseline'} ${r.medianRatio.toFixed(3)}  per round [${r.ratioToFirst.join(' ')}]\n`,
    );
  }
  const date = new Date().toISOString();
  const command = `${open ? 'BENCH_PAIRED_PATH=open ' : ''}BENCH_PAIRED_ROUNDS=${rounds} BENCH_PAIRED_SECONDS=${seconds} node dist/bench/paired.js ${dirs.join(' ')}`;
  mkdirSync(`${ROOT}bench/results`, { recursive: true });
  const file = `bench/results/paired-${date.replace(/[:.]/g, '-')}.json`;
  writeFileSync(`${ROOT}${file}`, JSON.stringify({ date, command, node: NODE_VERSION, results }, null, 2) + '\n');
  process.stdout.write(`written: ${file}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const dirs = process.argv.slice(2);
  if (dirs.length === 0) {
    process.stderr.write('usage: node dist/bench/paired.js <built checkout> [<built checkout> ...]\n');
    process.exit(2);
  }
  main(dirs)
    .catch((err: unknown) => {
      process.stderr.write(`paired failed: ${(err as Error).stack}\n`);
      process.exitCode = 1;
    })
    .finally(cleanUp);
}
