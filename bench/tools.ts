/** Process and load-generator helpers shared by the bench scripts. Targets 127.0.0.1 only. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS, PROCESS_ENV } from '../src/runtime.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
export const TASKSET = has('taskset') && cpus().length >= 2;
export const WRK = has('wrk') && process.env.BENCH_LOADGEN !== 'autocannon';
/**
 * The Node binary every measured process (upstream, baseline, floor, proxies) runs on: this one,
 * or BENCH_NODE, e.g. the Node 24 that the Docker image ships (`.ci/other-nodes` caches one).
 */
export const NODE = process.env.BENCH_NODE || process.execPath;
export const NODE_VERSION = spawnSync(NODE, ['--version'], { encoding: 'utf8' }).stdout.trim();
export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
/** Every child started, so a script can kill what is left when it ends. */
export const children: ChildProcess[] = [];

const tempFiles: string[] = [];

/** Writes a file in the system's temporary directory; {@link cleanUp} removes it. */
export function tempFile(name: string, text: string): string {
  const path = join(tmpdir(), `circuit-proxy-${name}-${process.pid}.yaml`);
  writeFileSync(path, text);
  tempFiles.push(path);
  return path;
}

/** Kills the children still running and removes the temporary files; for a script's `finally`. */
export function cleanUp(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const f of tempFiles) rmSync(f, { force: true });
}

/**
 * Starts `node <args>`, pinned to `core` when taskset exists; stdout is piped (JSON log lines).
 * Every Node process of the bench (upstream, baseline, circuit-proxy) runs with the flags and the
 * environment circuit-proxy ships with (NODE_FLAGS and PROCESS_ENV, src/runtime.ts), so no process
 * is measured under V8 or C library settings the others do not have. A variable of PROCESS_ENV set
 * in the bench's own environment wins, for all of them (an experiment's override).
 */
export function start(core: number, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const node = [NODE, ...NODE_FLAGS, ...args];
  const cmd = TASKSET ? ['taskset', '-c', String(core), ...node] : node;
  const child = spawn(cmd[0]!, cmd.slice(1), { env: { ...PROCESS_ENV, ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

/** User + system CPU time of a process, in clock ticks. */
export function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

export function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? 0) / 102.4) / 10;
}

export interface Load {
  requests: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  non2xx: number;
}

function parseWrkLatency(s: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(s);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

/** Drives `url` for `seconds` with wrk (one thread) or autocannon, on core 1 when pinning. */
export async function load(url: string, seconds: number, connections: number): Promise<Load> {
  if (WRK) {
    const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', url];
    const cmd = TASKSET ? ['taskset', '-c', '1', 'wrk', ...args] : ['wrk', ...args];
    const out = await run(cmd);
    const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
    if (!(requests > 0)) throw new Error(`wrk counted no requests for ${url}:\n${out}`);
    return {
      requests,
      rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
      p50ms: parseWrkLatency(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ''),
      p99ms: parseWrkLatency(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ''),
      non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    };
  }
  const ac = `${ROOT}node_modules/autocannon/autocannon.js`;
  const args = [ac, '-c', String(connections), '-d', String(seconds), '--json', url];
  const out = await run(TASKSET ? ['taskset', '-c', '1', process.execPath, ...args] : [process.execPath, ...args]);
  const j = JSON.parse(out.slice(out.indexOf('{')));
  return { requests: j.requests.total, rps: j.requests.average, p50ms: j.latency.p50, p99ms: j.latency.p99, non2xx: j.non2xx };
}

function run(cmd: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd.join(' ')} exited ${code}: ${out}`))));
  });
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Debian's redis-server, for the fleet rounds (docs/fleet.md). */
export const REDIS_SERVER = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p));

/** A redis-server on a free loopback port, pinned to `core`, no persistence; resolves its URL once it accepts connections. */
export async function startRedisServer(core: number): Promise<string> {
  if (REDIS_SERVER === undefined) throw new Error('the fleet rounds need redis-server (apt-get install redis-server)');
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const args = [REDIS_SERVER, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
    const cmd = TASKSET ? ['taskset', '-c', String(core), ...args] : args;
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(child);
    const ready = await new Promise<boolean>((resolve) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) resolve(true);
      });
      child.once('exit', () => resolve(false));
    });
    if (ready) return `redis://127.0.0.1:${port}/0`;
  }
  throw new Error('redis-server would not start');
}
