/** Test helpers: real upstream servers and the real proxy on loopback, port 0. No mocked http. */
import { performance } from 'node:perf_hooks';
import { spawn, type ChildProcess } from 'node:child_process';
import { once, EventEmitter } from 'node:events';
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after } from 'node:test';
import { delimiter, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/config/load.js';
import { createLogger, type Logger } from '../src/log.js';
import { NODE_FLAGS, PROCESS_ENV } from '../src/runtime.js';
import { CircuitProxy, type ProxyOptions } from '../src/server.js';
import type { BreakerState } from '../src/circuit/circuit.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = `${ROOT}bin/circuit-proxy.js`;

export interface Upstream {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests received so far. */
  requests: number;
  /** Currently open sockets. */
  readonly sockets: Set<Socket>;
  /** Emits `request` (req, res) for each request received, before the handler runs. */
  readonly events: EventEmitter;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A real HTTP upstream on 127.0.0.1:0. */
export async function startUpstream(handler: Handler): Promise<Upstream> {
  const events = new EventEmitter();
  const sockets = new Set<Socket>();
  const up: Upstream = {
    server: createServer((req, res) => {
      up.requests += 1;
      events.emit('request', req, res);
      handler(req, res);
    }),
    port: 0,
    url: '',
    connections: 0,
    requests: 0,
    sockets,
    events,
    async close() {
      for (const s of sockets) s.destroy();
      up.server.closeAllConnections();
      await new Promise<void>((r) => up.server.close(() => r()));
    },
  };
  up.server.keepAliveTimeout = 5000;
  up.server.on('connection', (s: Socket) => {
    up.connections += 1;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  up.server.listen(0, '127.0.0.1');
  await once(up.server, 'listening');
  const port = (up.server.address() as AddressInfo).port;
  Object.assign(up, { port, url: `http://127.0.0.1:${port}` });
  return up;
}

/** Collects pino JSON lines, parsed. */
export class LogSink extends Writable {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly events = new EventEmitter();
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() === '') continue;
      const parsed = JSON.parse(line) as Record<string, unknown>;
      this.lines.push(parsed);
      this.events.emit('line', parsed);
    }
    cb();
  }
  find(pred: (l: Record<string, unknown>) => boolean): Array<Record<string, unknown>> {
    return this.lines.filter(pred);
  }
}

export interface RunningProxy {
  readonly proxy: CircuitProxy;
  readonly port: number;
  readonly adminPort: number;
  readonly logs: LogSink;
  readonly log: Logger;
  close(): Promise<void>;
  /** Resolves at the next transition of `service` into `to`. */
  nextState(service: string, to: BreakerState): Promise<void>;
}

/** Starts the real proxy in-process from YAML text, on loopback port 0. */
export async function startProxy(yaml: string, opts: ProxyOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<RunningProxy> {
  // A test that sets its own `listen:` (e.g. maxConnections) must keep it on 127.0.0.1, port 0.
  const listen = /^listen:/m.test(yaml) ? '' : 'listen: { host: 127.0.0.1, port: 0 }\n';
  const full = `${listen}admin: { host: 127.0.0.1, port: 0 }\n${yaml}`;
  const config = parseConfig(full, opts.env ?? {});
  const logs = new LogSink();
  const log = createLogger({ level: 'debug', stream: logs });
  const proxy = new CircuitProxy(config, { defaultMetrics: false, ...opts, log });
  const { port, adminPort } = await proxy.listen();
  return {
    proxy,
    port,
    adminPort,
    logs,
    log,
    close: () => proxy.close(200),
    nextState: (service, to) =>
      new Promise((resolve) => {
        const on = (t: { service: string; to: string }): void => {
          if (t.service === service && t.to === to) {
            proxy.registry.off('transition', on);
            resolve();
          }
        };
        proxy.registry.on('transition', on);
      }),
  };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  trailers: NodeJS.Dict<string>;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
  /** Raw request target, sent as is. */
  path?: string;
}

/** One HTTP request on a fresh connection (no agent), resolving when the body is complete. */
export function request(port: number, path: string, opts: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // Node's client sends a GET/DELETE body unframed unless Content-Length is set explicitly.
    const headers =
      opts.body !== undefined && !opts.headers?.['transfer-encoding']
        ? { 'content-length': String(Buffer.byteLength(opts.body)), ...opts.headers }
        : opts.headers;
    const req = httpRequest({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString(), trailers: res.trailers }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Sends raw bytes and resolves with everything the server answers before closing (or `ms` of quiet). */
export async function rawRequest(port: number, bytes: string, ms = 2000): Promise<string> {
  const { connect } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    s.setTimeout(ms, () => {
      s.destroy();
      resolve(out);
    });
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('end', () => resolve(out));
    s.on('close', () => resolve(out));
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(out) : reject(e)));
    s.write(bytes, 'latin1');
  });
}

export function json<T = any>(r: Reply): T {
  return JSON.parse(r.body) as T;
}

/** Resolves once `fn` returns true, checking after each event loop turn (bounded). */
export async function until(fn: () => boolean, what: string, limitMs = 5000): Promise<void> {
  const start = performance.now();
  while (!fn()) {
    if (performance.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface Cli {
  readonly child: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  stderr: string;
  /** Resolves with the first log line matching. */
  waitLine(pred: (l: Record<string, unknown>) => boolean, limitMs?: number): Promise<Record<string, unknown>>;
  exit: Promise<number | null>;
}

/** The proxy's "circuit-proxy listening" log line, for {@link Cli.waitLine}. */
export const listening = (l: Record<string, unknown>): boolean => typeof l.msg === 'string' && l.msg.startsWith('circuit-proxy listening');

/**
 * Runs the real `circuit-proxy` bin as a child process, parsing its JSON log lines: `node
 * <nodeFlags> bin/circuit-proxy.js` with PROCESS_ENV (as the Dockerfile and the demo start it), or
 * with `'shebang'` the bin itself, as `npx circuit-proxy` runs it (this test's node first on PATH;
 * the shebang sets PROCESS_ENV itself).
 */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, nodeFlags: readonly string[] | 'shebang' = NODE_FLAGS): Cli {
  const stdio: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
  const child =
    nodeFlags === 'shebang'
      ? spawn(BIN, args, { cwd: ROOT, env: { PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`, ...env }, stdio })
      : spawn(process.execPath, [...nodeFlags, BIN, ...args], {
          cwd: ROOT,
          env: { PATH: process.env.PATH, ...PROCESS_ENV, ...env },
          stdio,
        });
  const lines: Array<Record<string, unknown>> = [];
  const bus = new EventEmitter();
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        lines.push(parsed);
        bus.emit('line', parsed);
      } catch {
        /* not a log line */
      }
    }
  });
  const cli: Cli = {
    child,
    lines,
    stderr: '',
    exit: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
    waitLine(pred, limitMs = 10_000) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching log line; stderr: ${cli.stderr}`)), limitMs);
        const on = (l: Record<string, unknown>): void => {
          if (pred(l)) {
            clearTimeout(t);
            bus.off('line', on);
            resolve(l);
          }
        };
        bus.on('line', on);
        void cli.exit.then(() => {
          clearTimeout(t);
          reject(new Error(`exited before the line; stderr: ${cli.stderr}`));
        });
      });
    },
  };
  child.stderr.on('data', (d: Buffer) => (cli.stderr += d.toString()));
  return cli;
}

/** Runs the bin to completion. */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...NODE_FLAGS, BIN, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...PROCESS_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/**
 * Sends `count` requests at once. `rejected` resolves when `expected503` of them have been answered
 * 503 (the others may still be held upstream); `all` resolves with every reply.
 */
export function concurrent(
  port: number,
  path: string,
  count: number,
  expected503: number,
): { all: Promise<Reply[]>; rejected: Promise<void> } {
  let seen = 0;
  let done!: () => void;
  const rejected = new Promise<void>((resolve) => (done = resolve));
  const all = Promise.all(
    Array.from({ length: count }, () =>
      request(port, path).then((r) => {
        if (r.status === 503 && ++seen === expected503) done();
        return r;
      }),
    ),
  );
  return { all, rejected };
}

/** Sends a request, and destroys it once `up` has received it; resolves when the upstream's response closed. */
export function abandonOnceUpstreamHasIt(up: Upstream, port: number, path: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false });
    req.on('error', () => undefined);
    up.events.once('request', (_upReq: IncomingMessage, upRes: ServerResponse) => {
      upRes.on('close', () => resolve());
      req.destroy();
    });
    req.end();
  });
}

/** Runs `fn` with the global Error constructor counting every `new Error(...)` made in JS code. */
export async function countErrors<T>(fn: () => Promise<T>): Promise<{ result: T; constructed: number }> {
  const Original = globalThis.Error;
  let constructed = 0;
  class CountingError extends Original {
    constructor(...args: ConstructorParameters<ErrorConstructor>) {
      super(...args);
      constructed++;
    }
  }
  globalThis.Error = CountingError as ErrorConstructor;
  try {
    const result = await fn();
    return { result, constructed };
  } finally {
    globalThis.Error = Original;
  }
}

/**
 * An upstream and a proxy in front of it, both closed after the calling test file's tests:
 * `yaml` gets the upstream's URL.
 */
export function upstreamAndProxy(): (handler: Handler, yaml: (url: string) => string) => Promise<{ up: Upstream; p: RunningProxy }> {
  const started: Array<RunningProxy | Upstream> = [];
  after(async () => {
    for (const x of started.reverse()) await x.close();
  });
  return async (handler, yaml) => {
    const up = await startUpstream(handler);
    const p = await startProxy(yaml(up.url));
    started.push(up, p);
    return { up, p };
  };
}

/** The value of one exposition line of the proxy's `/metrics`, e.g. `proxy_in_flight{service="product"}`; undefined when absent. */
export async function metricValue(p: RunningProxy, series: string): Promise<number | undefined> {
  const text = (await request(p.adminPort, '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The chunk size of {@link writeNumbered}. */
export const NUMBERED_CHUNK = 64 * 1024;

/**
 * Writes `total` bytes to `out` in 64 KiB chunks, chunk i filled with the byte i % 251, waiting
 * for `drain` whenever `write` says to (back-pressure), then ends it. `progress` hears the bytes
 * handed over so far after each chunk. {@link NumberedCheck} verifies them on the other side.
 */
export function writeNumbered(
  out: { write(chunk: Buffer): boolean; once(event: 'drain', listener: () => void): unknown; end(): unknown },
  total: number,
  progress: (sent: number) => void = () => undefined,
): void {
  let sent = 0;
  const more = (): void => {
    while (sent < total) {
      const chunk = Buffer.alloc(NUMBERED_CHUNK, (sent / NUMBERED_CHUNK) % 251);
      sent += NUMBERED_CHUNK;
      progress(sent);
      if (!out.write(chunk)) return void out.once('drain', more);
    }
    out.end();
  };
  more();
}

/** Checks bytes written by {@link writeNumbered} as they arrive, whatever the chunk boundaries on the way. */
export class NumberedCheck {
  received = 0;
  /** Sampled bytes (one every 4 KiB) not holding their chunk's number. */
  wrong = 0;

  add(c: Buffer): void {
    for (let i = 0; i < c.length; i += 4096) if (c[i] !== Math.floor((this.received + i) / NUMBERED_CHUNK) % 251) this.wrong += 1;
    this.received += c.length;
  }
}
