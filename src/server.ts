import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { ServiceRegistry, type ReconcileResult } from './upstream/registry.js';
import type { Config } from './config/types.js';
import { ConfigError } from './errors.js';
import { LiveState } from './admin/live.js';
import { createAdminServer } from './admin/server.js';
import { attachLogs, createLogger, type Logger } from './log.js';
import { ProxyMetrics } from './metrics/metrics.js';
import { Forwarder } from './proxy/forwarder.js';
import { ProxyHandler } from './proxy/handler.js';
import { problemBody } from './proxy/problem.js';
import { MAX_HEADERS } from './proxy/headers.js';
import { Fleet, fleetChannel } from './fleet/fleet.js';
import { RedisTransport } from './fleet/redis.js';

/** Request head size limit: larger heads get 431. */
const MAX_HEADER_BYTES = 16 * 1024;

export interface ProxyOptions {
  readonly log?: Logger;
  /** Bearer token for admin actions; without it, admin actions are loopback-only. */
  readonly adminToken?: string;
  /** One log line per request (off by default: the hot path pays nothing). */
  readonly accessLog?: boolean;
  /** Include prom-client's process metrics (default true). */
  readonly defaultMetrics?: boolean;
  /** Re-reads the config for SIGHUP and `POST /reload`; throws ConfigError when invalid. */
  readonly loadConfig?: () => Config;
}

export interface Addresses {
  readonly port: number;
  readonly adminPort: number;
}

/**
 * The composed sidecar: proxy listener, admin listener, breakers, metrics and logs.
 * `cli`/`main` own the process (signals, exit codes); this owns sockets.
 */
export class CircuitProxy {
  readonly registry: ServiceRegistry;
  readonly handler: ProxyHandler;
  readonly metrics: ProxyMetrics;
  readonly forwarder: Forwarder;
  readonly server: Server;
  readonly admin: Server;
  readonly live: LiveState;
  readonly log: Logger;
  /** Shared circuit state with other sidecars (docs/fleet.md); undefined without `fleet`. */
  readonly fleet: Fleet | undefined;
  private config: Config;
  private ready = false;
  private closing: Promise<void> | undefined;
  private readonly options: ProxyOptions;

  constructor(config: Config, options: ProxyOptions = {}) {
    this.config = config;
    this.options = options;
    this.log = options.log ?? createLogger();
    this.registry = new ServiceRegistry(config);
    this.forwarder = new Forwarder();
    this.registry.on('drained', (endpoint) => this.forwarder.release(endpoint));
    this.handler = new ProxyHandler(this.registry, this.forwarder);
    this.metrics = new ProxyMetrics(this.registry, this.handler, { defaultMetrics: options.defaultMetrics !== false });
    attachLogs(this.log, this.registry, this.handler, options.accessLog === true);
    const f = config.fleet;
    this.fleet = f && new Fleet(f, this.registry, new RedisTransport(f.redis, fleetChannel(f.key), this.log), this.log);
    if (this.fleet) this.metrics.addFleet(this.fleet);

    this.server = createServer(
      {
        maxHeaderSize: MAX_HEADER_BYTES,
        headersTimeout: config.clientTimeouts.headerMs,
        // No cap on a whole request: a long upload is fine while it moves (clientTimeouts.bodyIdle).
        requestTimeout: 0,
        // How often Node checks headersTimeout (default 30 s, which would let a 10 s limit run to 40 s).
        connectionsCheckingInterval: Math.min(1000, config.clientTimeouts.headerMs),
      },
      this.handler.handle,
    );
    // One more than the limit, so that a request over it is seen (answered 431), never truncated.
    this.server.maxHeadersCount = MAX_HEADERS + 1;
    this.server.maxConnections = config.listen.maxConnections;
    this.handler.clientBodyIdleMs = config.clientTimeouts.bodyIdleMs;
    this.handler.tunnelIdleMs = config.clientTimeouts.tunnelIdleMs;
    // Expect: 100-continue is the upstream's to answer: Node sends no 100 of its own with this listener.
    this.server.on('checkContinue', this.handler.handle);
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (err.code === 'HPE_PAUSED_H2_UPGRADE') {
        // The parser reports again for bytes read after the preface: one refusal per connection.
        if (socket.writableEnded) return;
        refuseHttp2(socket);
        this.handler.emit('protocolRefused', 'h2');
      } else onClientError(err, socket);
    });
    // WebSocket handshakes are tunnelled; any other upgrade is served as the plain request it also is.
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      if (isWebSocket(req)) this.handler.upgrade(req, socket, head);
      else asPlainRequest(this.server, req, socket, head);
    });
    // CONNECT (authority-form target) is never tunnelled: the upstream comes from config only.
    this.server.on('connect', (req, socket: Socket) => {
      const body = problemBody(400, 'Bad Request', 'CONNECT is not supported: request targets must be /svc/<name>/...');
      rawReply(socket, 400, 'Bad Request', body);
      this.handler.emit('unrouted', 400, req);
    });
    this.live = new LiveState(this.registry, this.metrics);
    this.admin = createAdminServer({
      live: this.live,
      registry: this.registry,
      metrics: this.metrics,
      log: this.log,
      token: options.adminToken,
      isReady: () => this.ready,
      fleet: this.fleet,
      ...(options.loadConfig ? { reload: () => this.reloadFromSource() } : {}),
    });
  }

  get currentConfig(): Config {
    return this.config;
  }

  /** Binds both listeners (port 0 picks a free port) and reports the ports. */
  async listen(): Promise<Addresses> {
    await listenOn(this.server, this.config.listen.port, this.config.listen.host);
    await listenOn(this.admin, this.config.admin.port, this.config.admin.host);
    // Connects in the background: the proxy serves at once, alone until Redis answers.
    this.fleet?.start();
    this.ready = true;
    return this.addresses();
  }

  addresses(): Addresses {
    return { port: (this.server.address() as AddressInfo).port, adminPort: (this.admin.address() as AddressInfo).port };
  }

  /** Applies a new config: unchanged services keep their breaker state (docs/operations.md). */
  reload(next: Config): ReconcileResult {
    const result = this.registry.reconcile(next);
    const prev = this.config;
    this.handler.clientBodyIdleMs = next.clientTimeouts.bodyIdleMs;
    this.handler.tunnelIdleMs = next.clientTimeouts.tunnelIdleMs;
    this.server.headersTimeout = next.clientTimeouts.headerMs;
    if (JSON.stringify(prev.fleet) !== JSON.stringify(next.fleet)) {
      this.log.warn({}, 'fleet settings changed in config: restart to apply them');
    }
    if (
      prev.listen.host !== next.listen.host ||
      prev.listen.port !== next.listen.port ||
      prev.listen.maxConnections !== next.listen.maxConnections ||
      prev.admin.host !== next.admin.host ||
      prev.admin.port !== next.admin.port
    ) {
      this.log.warn({ listen: next.listen, admin: next.admin }, 'listener addresses changed in config: restart to apply them');
    }
    // Listeners and the fleet stay as started (a restart applies them).
    this.config = { ...next, listen: prev.listen, admin: prev.admin, fleet: prev.fleet };
    this.log.info({ ...result }, 'config reloaded');
    return result;
  }

  /**
   * Re-reads the config through `options.loadConfig` and applies it (SIGHUP, `POST /reload`).
   * A failure is logged here, once, and rethrown; the running config stays in force.
   */
  reloadFromSource(): ReconcileResult {
    if (!this.options.loadConfig) throw new Error('this proxy was not started from a config file');
    try {
      return this.reload(this.options.loadConfig());
    } catch (err) {
      if (err instanceof ConfigError)
        this.log.error({ problems: err.problems }, `config reload rejected, keeping the running config: ${err.message}`);
      else this.log.error({ err }, 'config reload failed, keeping the running config');
      throw err;
    }
  }

  /**
   * Drains (docs/operations.md): stop accepting, not ready, keep-alive clients get `Connection: close`,
   * in-flight requests get `graceMs` to finish, then remaining connections are cut.
   */
  close(graceMs = this.config.shutdownGraceMs): Promise<void> {
    this.closing ??= this.drain(graceMs);
    return this.closing;
  }

  private async drain(graceMs: number): Promise<void> {
    this.ready = false;
    this.handler.draining = true;
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Open tunnels get the grace period too (docs/websocket.md).
    const closed = Promise.all([serverClosed, this.handler.tunnelsClosed()]);
    this.server.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    });
    const expired = await Promise.race([closed.then(() => false), timedOut]);
    clearTimeout(timer);
    if (expired) {
      this.log.warn({ graceMs }, 'grace period over: closing remaining connections');
      this.handler.closeTunnels();
      this.server.closeAllConnections();
      await closed;
    }
    this.live.close();
    await new Promise<void>((resolve) => {
      this.admin.close(() => resolve());
      this.admin.closeAllConnections();
    });
    this.forwarder.destroy();
    await this.fleet?.close();
    this.registry.shutdown();
  }
}

function listenOn(server: NetServer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function rawReply(socket: Socket, status: number, text: string, body: Buffer): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/problem+json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString()}`,
  );
}

/**
 * An HTTP/2 connection preface (prior knowledge, as gRPC and `curl --http2-prior-knowledge` send
 * it): answered in HTTP/2, so the client can read it, with the server's preface (an empty
 * SETTINGS frame) and a GOAWAY of error HTTP_1_1_REQUIRED (RFC 9113 §3.4, §6.8, §7), then closed.
 * An HTTP/1.1 400 here is bytes an h2 client cannot parse (docs/behaviour.md, "Protocols").
 */
const HTTP2_REFUSAL = (() => {
  const debug = Buffer.from('circuit-proxy serves HTTP/1.1 and WebSocket only');
  const settings = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
  const goaway = Buffer.alloc(9 + 8);
  goaway.writeUIntBE(8 + debug.length, 0, 3);
  goaway[3] = 0x7; // GOAWAY
  goaway.writeUInt32BE(0, 9); // last stream id: none processed
  goaway.writeUInt32BE(0xd, 13); // HTTP_1_1_REQUIRED
  return Buffer.concat([settings, goaway, debug]);
})();

function refuseHttp2(socket: Socket): void {
  if (socket.writable) socket.end(HTTP2_REFUSAL);
  else socket.destroy();
}

/** Malformed requests Node's parser rejects: answer problem+json instead of a bare 400. */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    rawReply(
      socket,
      431,
      'Request Header Fields Too Large',
      problemBody(431, 'Request Header Fields Too Large', 'request headers exceed 16 KiB'),
    );
  } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    rawReply(socket, 408, 'Request Timeout', problemBody(408, 'Request Timeout', 'request not received in time'));
  } else {
    rawReply(socket, 400, 'Bad Request', problemBody(400, 'Bad Request', `malformed request (${err.code ?? 'parse error'})`));
  }
}

/** A WebSocket handshake (RFC 6455 §4.1: a GET with `Upgrade: websocket`); anything else is not tunnelled. */
function isWebSocket(req: IncomingMessage): boolean {
  return req.method === 'GET' && /^\s*websocket\s*$/i.test(req.headers.upgrade ?? '');
}

/**
 * An upgrade the proxy does not tunnel (`h2c`, ...): the request is served as a plain request,
 * without the upgrade (RFC 9110 §7.8 lets a server ignore it; docs/websocket.md). Node has
 * already parsed its head and handed over the socket, so the head is written back in front of
 * the bytes after it, without `Upgrade` and the `upgrade` token of `Connection`, and the socket
 * is given to the server again as a new connection (the `connection` event, which Node
 * documents for injecting connections).
 */
function asPlainRequest(server: Server, req: IncomingMessage, socket: Socket, head: Buffer): void {
  let text = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    let value = raw[i + 1]!;
    if (name === 'upgrade') continue;
    if (name === 'connection') {
      value = value
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '' && t.toLowerCase() !== 'upgrade')
        .join(', ');
      if (value === '') continue;
    }
    text += `${raw[i]!}: ${value}\r\n`;
  }
  socket.unshift(Buffer.concat([Buffer.from(text + '\r\n', 'latin1'), head]));
  server.emit('connection', socket);
}
