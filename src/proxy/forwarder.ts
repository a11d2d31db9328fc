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
 *   `ClientRequest` constructor, before any header is written.
 */
import { Agent as HttpAgent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import httpProxy from 'http-proxy';
import type { ServiceConfig } from '../config/types.js';

declare module 'node:http' {
  interface Agent {
    addRequest(req: ClientRequest, options: unknown): void;
  }
}

/**
 * What the forwarder reports back to; one per proxied request. `onUpstreamRequest` is called
 * synchronously, before anything is written; the sink then listens to the upstream request's
 * `response` and `error` itself (its listeners run before http-proxy's) and writes the response.
 */
export interface ForwardSink {
  onUpstreamRequest(proxyReq: ClientRequest): void;
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
    override addRequest(req: ClientRequest, options: unknown): void {
      const sink = this.pendingSink;
      if (sink !== undefined) {
        req.path = this.pendingPath!;
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

interface Route {
  readonly options: httpProxy.ServerOptions;
  readonly agent: Hooked;
}

export class Forwarder {
  private readonly proxy: httpProxy;
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
    this.proxy = httpProxy.createProxyServer({});
    const passes = (this.proxy as unknown as { webPasses: Array<{ name: string }> }).webPasses;
    (this.proxy as unknown as { webPasses: unknown[] }).webPasses = passes.filter((p) => p.name === 'stream');
    // Always attached: without it an upstream error is an uncaught exception. The exchange has its
    // own `error` listener on the upstream request; this one only answers what nobody else can.
    this.proxy.on('error', (_err, _req, res) => {
      if (res && 'headersSent' in res && !res.headersSent && !res.writableEnded && res.listenerCount('close') === 0)
        (res as ServerResponse).writeHead(502).end();
    });
  }

  /** Forwards `req` to `service` at exactly `path` (base path + rest + query). */
  forward(req: IncomingMessage, res: ServerResponse, service: ServiceConfig, path: string, sink: ForwardSink): void {
    const r = this.route(service);
    r.agent.pendingPath = path;
    r.agent.pendingSink = sink;
    try {
      this.proxy.web(req, res, r.options);
    } finally {
      r.agent.pendingSink = r.agent.pendingPath = undefined;
    }
  }

  /** Closes pooled sockets. */
  destroy(): void {
    this.http.destroy();
    this.https.destroy();
    this.proxy.close();
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
      r = {
        agent,
        options: {
          target: target as unknown as httpProxy.ProxyTargetUrl,
          agent,
          changeOrigin: true,
          toProxy: true,
          prependPath: false,
          selfHandleResponse: true,
          secure: true,
        },
      };
      this.routes.set(service, r);
    }
    return r;
  }
}
