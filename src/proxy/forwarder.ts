/**
 * The forwarding engine: the only module that imports http-proxy, so it can be swapped.
 *
 * http-proxy 1.18.1 is unmaintained; how each of its known defects is neutralized:
 * - a request `Trailer:` header crashes the process (#1647): `prepareRequestHeaders` drops it before
 *   http-proxy copies the headers;
 * - a client that leaves does not abort the upstream request (#1586): the exchange destroys the
 *   upstream request on the client response's `close`;
 * - an upstream reset mid-body leaves the client hanging: `selfHandleResponse`, and the exchange
 *   destroys the client socket when the upstream response closes incomplete;
 * - `proxyTimeout` is an idle timer reported as ECONNRESET: never set; the exchange runs its own
 *   header timeout on the upstream socket and reports 504;
 * - without an agent it forces `Connection: close`: we always pass a keep-alive agent;
 * - hop-by-hop headers pass through both ways: stripped by `headers.ts`;
 * - `deleteLength` turns a chunked DELETE/OPTIONS body into `content-length: 0` followed by the
 *   body bytes (a request-smuggling shape): the pass is removed;
 * - `urlJoin` collapses `//` and `url.parse` re-escapes the query: the exact path is set on the
 *   outgoing request from the agent's `addRequest`, which Node calls synchronously in the
 *   `ClientRequest` constructor, before any header is written;
 * - an upstream error with no `error` listener throws (its `onError`): every call passes an error
 *   callback, which also spares emitting an event;
 * - it calls `util._extend`, which prints a deprecation warning on Node >= 22: `./util-extend.js`
 *   puts back the same function without the warning, before http-proxy is loaded.
 *
 * Not a defect, a cost: its stream pass pipes every client request into the upstream request,
 * even one without a body (most GETs), and a pipe's setup and teardown of listeners on both
 * streams is about 5% of a small request's CPU. A request without a body is given http-proxy's
 * own `buffer` option instead, set to `NO_BODY`, which just ends the upstream request.
 */
import { Agent as HttpAgent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { Stream, Writable } from 'node:stream';
// Before http-proxy, which reads util._extend when it loads: no DEP0060 warning on Node >= 22.
import './util-extend.js';
import httpProxy from 'http-proxy';
import type { ServiceConfig } from '../config/types.js';
import { hasBody } from './headers.js';

declare module 'node:http' {
  interface Agent {
    addRequest(req: ClientRequest, options: unknown): void;
  }
  interface ClientRequest {
    /** The `timeout` request option: the agent sets it as the socket's idle timeout. */
    timeout?: number;
  }
}

/**
 * What the forwarder reports back to; one per proxied request, and it is the client's response
 * object itself (see `ProxyResponse`), so routing an event to it costs no lookup and no closure.
 * `onUpstreamRequest` is called synchronously, before anything is written; the others come from
 * http-proxy's own listeners (its `proxyRes`, `end` and error callback), not from listeners of ours.
 */
export interface ForwardSink {
  onUpstreamRequest(proxyReq: ClientRequest): void;
  onUpstreamResponse(proxyRes: IncomingMessage): void;
  /** The upstream response body ended (complete). */
  onUpstreamEnd(proxyRes: IncomingMessage): void;
  /** The upstream request failed, or the client request errored while being piped. */
  onUpstreamError(err: NodeJS.ErrnoException): void;
}

/** Keep-alive agent tuning. Free sockets close after 4 s, below Node's default 5 s server keepAliveTimeout. */
export interface AgentTuning {
  readonly freeSocketTimeoutMs: number;
  readonly maxFreeSockets: number;
}

const DEFAULT_TUNING: AgentTuning = { freeSocketTimeoutMs: 4000, maxFreeSockets: 256 };

function hooked<T extends new (...args: any[]) => HttpAgent>(Base: T) {
  return class extends Base {
    pendingPath: string | undefined;
    pendingSink: ForwardSink | undefined;
    pendingTimeout = 0;
    override addRequest(req: ClientRequest, options: unknown): void {
      const sink = this.pendingSink;
      if (sink !== undefined) {
        req.path = this.pendingPath!;
        // As if passed as the `timeout` option: the agent arms the socket with it (new or reused)
        // and Node relays the socket's `timeout` event to the request. No timer of our own.
        req.timeout = this.pendingTimeout;
        this.pendingSink = this.pendingPath = undefined;
        sink.onUpstreamRequest(req);
      }
      super.addRequest(req, options);
    }
  };
}
const HookedHttpAgent = hooked(HttpAgent);
const HookedHttpsAgent = hooked(HttpsAgent as unknown as new (...args: any[]) => HttpAgent);
type Hooked = InstanceType<typeof HookedHttpAgent>;

type Sinked = ServerResponse & ForwardSink;

/**
 * http-proxy's `buffer` option is "a stream to send as the request body" of which it only calls
 * `pipe(proxyReq)`: for a request without a body, ending the upstream request is all there is to do.
 */
const NO_BODY = {
  pipe(dest: Writable): Writable {
    dest.end();
    return dest;
  },
} as unknown as Stream;

/** One per service: http-proxy with the service's fixed options, so a call copies no options object. */
interface Route {
  /** `proxy.web` in its `(req, res, callback)` form (the typings only list it with options). */
  readonly web: (req: IncomingMessage, res: ServerResponse, callback: typeof onProxyError) => void;
  readonly agent: Hooked;
  /** The options object `web` reads on every call (http-proxy keeps a reference, not a copy). */
  readonly options: httpProxy.ServerOptions;
  /** `Host` sent upstream: the base URL's host (port only when not the scheme's default). */
  readonly host: string;
}

/** http-proxy's per-request error callback (used instead of its `error` event: nothing to emit). */
const onProxyError = (err: Error, _req: IncomingMessage, res: ServerResponse | Socket): void => {
  (res as Sinked).onUpstreamError(err);
};

export class Forwarder {
  private readonly http: Hooked;
  private readonly https: Hooked;
  private readonly routes = new WeakMap<ServiceConfig, Route>();

  constructor(tuning: AgentTuning = DEFAULT_TUNING) {
    const agentOptions = {
      keepAlive: true,
      scheduling: 'lifo' as const,
      maxFreeSockets: tuning.maxFreeSockets,
      timeout: tuning.freeSocketTimeoutMs,
    };
    this.http = new HookedHttpAgent(agentOptions);
    this.https = new HookedHttpsAgent(agentOptions);
  }

  /**
   * Forwards `req` to `service` at exactly `path` (base path + rest + query), with the service's
   * header timeout as the upstream socket's idle timeout (the upstream request emits `timeout`).
   * Everything that happens to the upstream exchange is reported to `res`.
   */
  forward(req: IncomingMessage, res: Sinked, service: ServiceConfig, path: string): void {
    const r = this.route(service);
    req.headers.host = r.host;
    r.agent.pendingPath = path;
    r.agent.pendingSink = res;
    r.agent.pendingTimeout = service.timeoutMs;
    r.options.buffer = hasBody(req.headers) ? undefined : NO_BODY;
    try {
      r.web(req, res, onProxyError);
    } finally {
      r.agent.pendingSink = r.agent.pendingPath = undefined;
    }
  }

  /** Closes pooled sockets. */
  destroy(): void {
    this.http.destroy();
    this.https.destroy();
  }

  /** Counts of pooled sockets, for tests and diagnostics. */
  socketCounts(): { active: number; free: number } {
    let active = 0;
    let free = 0;
    for (const a of [this.http, this.https]) {
      for (const list of Object.values(a.sockets)) active += list?.length ?? 0;
      for (const list of Object.values(a.freeSockets)) free += list?.length ?? 0;
    }
    return { active, free };
  }

  private route(service: ServiceConfig): Route {
    let r = this.routes.get(service);
    if (r === undefined) {
      const u = service.target;
      const https = u.protocol === 'https:';
      const agent = https ? this.https : this.http;
      const target = {
        protocol: u.protocol,
        host: u.host,
        hostname: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname,
        port: u.port || (https ? '443' : '80'),
        path: '',
      };
      const proxy = httpProxy.createProxyServer({
        target: target as unknown as httpProxy.ProxyTargetUrl,
        agent,
        toProxy: true,
        prependPath: false,
        selfHandleResponse: true,
        secure: true,
      });
      const passes = (proxy as unknown as { webPasses: Array<{ name: string }> }).webPasses;
      (proxy as unknown as { webPasses: unknown[] }).webPasses = passes.filter((p) => p.name === 'stream');
      proxy.on('proxyRes', (proxyRes, _req, res) => (res as Sinked).onUpstreamResponse(proxyRes));
      proxy.on('end', (_req, res, proxyRes) => (res as Sinked).onUpstreamEnd(proxyRes));
      const options = (proxy as unknown as { options: httpProxy.ServerOptions }).options;
      r = { web: proxy.web.bind(proxy) as Route['web'], agent, options, host: u.host };
      this.routes.set(service, r);
    }
    return r;
  }
}
