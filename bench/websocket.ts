/**
 * WebSocket rounds of `npm run bench` (docs/websocket.md): echo messages/s over 50 open tunnels and
 * handshakes/s (open, 101, close; 10 at a time), through the bare http-proxy baseline's `ws` and
 * through circuit-proxy, BENCH_WS_ROUNDS (default 6) alternating rounds of BENCH_WS_SECONDS
 * (default 3) each, every other round in reverse order. The ratio is the median of the per-round
 * ratios; the interval is their lowest and highest.
 * Also runs on its own: `npm run build && node dist/bench/websocket.js` (writes bench/results/websocket-<time>.json).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { NODE_FLAGS } from '../src/runtime.js';
import { firstLine, listeningPorts } from './child.js';
import { median, NODE, NODE_VERSION, ROOT, start, TASKSET, tempFile } from './tools.js';

export const WS_ROUNDS = Number(process.env.BENCH_WS_ROUNDS ?? 6);
const WS_SECONDS = Number(process.env.BENCH_WS_SECONDS ?? 3);

interface Measure {
  readonly baseline: number[];
  readonly proxy: number[];
  /** Per round: circuit-proxy / baseline. */
  readonly ratios: number[];
  ratio: number;
  range: [number, number];
}

export interface WebSocketResult {
  rounds: number;
  seconds: number;
  echo: Measure;
  handshakes: Measure;
  errors: number;
}

function client(mode: 'echo' | 'handshake', url: string, n: number): Promise<{ rate: number; errors: number }> {
  const node = [NODE, ...NODE_FLAGS, `${ROOT}dist/bench/ws-client.js`, mode, url, String(WS_SECONDS), String(n)];
  const cmd = TASKSET ? ['taskset', '-c', '1', ...node] : node;
  return new Promise((resolve, reject) => {
    const c = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`ws-client exited ${code}`))));
  });
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

export async function websocketRounds(log: (line: string) => void = (l) => process.stdout.write(l)): Promise<WebSocketResult> {
  const up = start(1, [`${ROOT}dist/bench/ws-upstream.js`, '0']);
  const upPort = await firstLine(up, (l) => l.port as number | undefined);
  const upUrl = `http://127.0.0.1:${upPort}`;
  const base = start(0, [`${ROOT}dist/bench/baseline.js`, '0', upUrl]);
  const basePort = await firstLine(base, (l) => l.port as number | undefined);
  const cfg = tempFile(
    'bench-ws',
    `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  feed:\n    url: ${upUrl}\n`,
  );
  const cp = start(0, [`${ROOT}bin/circuit-proxy.js`, 'serve', '--config', cfg]);
  const { port } = await listeningPorts(cp);
  const urls = { baseline: `ws://127.0.0.1:${basePort}/feed`, proxy: `ws://127.0.0.1:${port}/svc/feed/feed` };
  const empty = (): Measure => ({ baseline: [], proxy: [], ratios: [], ratio: 0, range: [0, 0] });
  const result: WebSocketResult = { rounds: WS_ROUNDS, seconds: WS_SECONDS, echo: empty(), handshakes: empty(), errors: 0 };
  try {
    for (const url of Object.values(urls)) await client('echo', url, 10); // warm-up, not recorded
    for (let r = 1; r <= WS_ROUNDS; r++) {
      const got: Record<string, { echo: number; handshakes: number }> = {};
      for (const name of r % 2 === 1 ? (['baseline', 'proxy'] as const) : (['proxy', 'baseline'] as const)) {
        const echo = await client('echo', urls[name], 50);
        const hs = await client('handshake', urls[name], 10);
        result.errors += echo.errors + hs.errors;
        got[name] = { echo: echo.rate, handshakes: hs.rate };
        result.echo[name].push(echo.rate);
        result.handshakes[name].push(hs.rate);
        log(`ws round ${r} ${name.padEnd(8)} echo ${echo.rate} msg/s  handshakes ${hs.rate}/s\n`);
      }
      result.echo.ratios.push(round3(got.proxy!.echo / got.baseline!.echo));
      result.handshakes.ratios.push(round3(got.proxy!.handshakes / got.baseline!.handshakes));
    }
  } finally {
    for (const c of [up, base, cp]) c.kill('SIGTERM');
  }
  for (const m of [result.echo, result.handshakes]) {
    m.ratio = round3(median(m.ratios));
    m.range = [Math.min(...m.ratios), Math.max(...m.ratios)];
  }
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  websocketRounds()
    .then((r) => {
      process.stdout.write(
        `\nWebSocket on Node ${NODE_VERSION}: echo ${r.echo.ratio}x the baseline (rounds ${r.echo.range.join('-')}), handshakes ${r.handshakes.ratio}x (rounds ${r.handshakes.range.join('-')}), ${r.errors} errors\n`,
      );
      mkdirSync(`${ROOT}bench/results`, { recursive: true });
      const file = `bench/results/websocket-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
      writeFileSync(`${ROOT}${file}`, JSON.stringify({ date: new Date().toISOString(), node: NODE_VERSION, ...r }, null, 2) + '\n');
      process.stdout.write(`written: ${file}\n`);
      process.exit(0);
    })
    .catch((err: unknown) => {
      process.stderr.write(`websocket bench failed: ${(err as Error).stack}\n`);
      process.exit(1);
    });
}
