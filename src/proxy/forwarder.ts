/**
 * The forwarding engine: the only module that imports http-proxy. It uses http-proxy's documented
 * API (`createProxyServer`, `web(req, res, options)` with a `buffer`, `ws(req, socket, head)`, the
 * `proxyReq`/`proxyReqWs`/`error` events, `selfHandleResponse`, an agent) and reports
 * everything that happens to one forwarded request to that request's {@link ForwardSink} (a
 * WebSocket handshake's to its {@link TunnelSink}). One reach past it, for a defect of `ws`, is
 * described at {@link onProxyReqWs}.
 *
 * How each known defect of http-proxy 1.18.1 is neutralized: docs/http-proxy-defects.md.
 * The request line and the body framing are set in the `proxyReq` event, which http-proxy emits
 * on the upstream request's `socket` event. A client body that arrived with the request head is
 * pushed synchronously, and piped straight away it would make Node render the request line
 * before that event (http-proxy #1287): the body is handed to http-proxy as its documented
 * `buffer`, a {@link DeferredBody} that starts only in the `proxyReq` listener.
 */
import { Agent as HttpAgent, type AgentOptions, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { holdWriteFailuresOf } from '../upstream/early-answer.js';
import type { Socket } from 'node:net';
import type { Stream } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Endpoint } from '../upstream/endpoints.js';

/** What the forwarder reports to; one per forwarded request. */
export interface ForwardSink {
  /** The upstream request exists and has a socket; nothing of it has been written, and the client body is piped to it right after this call, in the same tick. */
  onUpstreamRequest(proxyReq: ClientRequest): void;
  onUpstreamResponse(proxyRes: IncomingMessage): void;
  /** The upstream request failed (also after the attempt gave it up: the sink ignores those). */
  onUpstreamError(err: NodeJS.ErrnoException): void;
}

/** What the forwarder reports to for a WebSocket handshake and its tunnel (src/proxy/tunnel.ts). */
export interface TunnelSink {
  /** The upstream handshake request exists; nothing of it has been written. */
  onTunnelRequest(proxyReq: ClientRequest): void;
  /** The upstream answered 101: http-proxy writes the 101 with `proxyRes.headers` right after this call, then pipes both ways. */
  onTunnelOpen(proxyRes: IncomingMessage, upstream: Socket): void;
  /** The upstream answered anything else: http-proxy writes a head of `proxyRes.headers` right after this call, then pipes the body. */
  onTunnelRefused(proxyRes: IncomingMessage): void;
  /** The upstream request failed (also after the 101: the sink ignores those). */
  onTunnelError(err: NodeJS.ErrnoException): void;
}

/** A WebSocket handshake to forward: the client's request (headers prepared), its socket, the bytes after its head. */
export interface UpstreamTunnel {
  readonly req: IncomingMessage;
  readonly socket: Socket;
  readonly head: Buffer;
  readonly endpoint: Endpoint;
  /** Base path + rest + query, exactly as the upstream must see it. */
  readonly path: string;
}

/** What goes upstream: the client's request (headers already as the upstream must see them), to which service, at what path. */
export interface UpstreamRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The endpoint the balancer picked: its address, its `Host`, its own keep-alive pool. */
  readonly endpoint: Endpoint;
  /** Base path + rest + query, exactly as the upstream must see it. */
  readonly path: string;
  /** The client sent a body (otherwise the upstream request is just ended). */
  readonly hasBody: boolean;
  /** A retry's body: the first attempt's bytes, kept whole (docs/retries.md); undefined: the client's stream. */
  readonly replay: readonly Buffer[] | undefined;
}

/**
 * The request body as http-proxy's `buffer` option ("a stream to send as the request body", of
 * which it only calls `pipe(proxyReq)`, once, synchronously). That call does nothing here: the
 * body starts in the `proxyReq` listener, after the request line and framing are set. It also
 * carries what that listener needs to know about the request. Not a `Stream`: an EventEmitter's
 * setup per request would be work nobody uses, hence the one cast where it is handed over.
 */
class DeferredBody {
  constructor(
    readonly req: IncomingMessage,
    /** Base path + rest + query, exactly as the upstream must see it. */
    readonly path: string,
    /** The client sent a body (otherwise the upstream request is just ended). */
    readonly hasBody: boolean,
    /** The body is chunked (http-proxy's `deleteLength` turns a chunked DELETE into `content-length: 0`). */
    readonly chunked: boolean,
    /** The attempt this upstream request belongs to: its events go there and nowhere else. */
    readonly sink: ForwardSink,
    readonly replay: readonly Buffer[] | undefined,
  ) {}

  pipe<T>(dest: T): T {
    return dest;
  }

  /** Sends the body (or ends a bodyless request): called once the request line is final. */
  start(proxyReq: ClientRequest): void {
    const replay = this.replay;
    if (replay !== undefined) {
      // A retry: the same bytes; the framing headers are the client's, so Node frames them alike.
      for (const chunk of replay) proxyReq.write(chunk);
      proxyReq.end();
    } else if (this.hasBody) this.req.pipe(proxyReq);
    else proxyReq.end();
  }
}

/** Keep-alive agent tuning. Free sockets close after 4 s, below Node's default 5 s server keepAliveTimeout. */
export interface AgentTuning {
  readonly freeSocketTimeoutMs: number;
  readonly maxFreeSockets: number;
}

const DEFAULT_TUNING: AgentTuning = { freeSocketTimeoutMs: 4000, maxFreeSockets: 256 };

/**
 * Each upstream request's sink (its attempt), kept on the upstream request itself: a call with
 * retries has several, and a late event of an abandoned one (a `socket hang up` after it was
 * destroyed) must reach that attempt, not the next. A property, not a WeakMap: a WeakMap entry
 * per request made every young-generation GC walk its ephemeron table (paired bench: ~0.75x the
 * baseline's CPU per request, against ~0.96x).
 */
const SINK = Symbol('circuit-proxy.sink');
type WithSink = ClientRequest & { [SINK]?: ForwardSink };

/** The upstream request's `response` (Node's documented event; `this` is the request). */
function onUpstreamResponse(this: WithSink, proxyRes: IncomingMessage): void {
  this[SINK]?.onUpstreamResponse(proxyRes);
}

/** The upstream request's `error`: every one, also those after the attempt was given up. */
function onUpstreamError(this: WithSink, err: Error): void {
  this[SINK]?.onUpstreamError(err);
}

function onProxyReq(proxyReq: ClientRequest, _req: IncomingMessage, _res: ServerResponse, options: httpProxy.ServerOptions): void {
  const body = options.buffer as unknown;
  if (!(body instanceof DeferredBody)) return;
  const sink = body.sink;
  (proxyReq as WithSink)[SINK] = sink;
  proxyReq.on('response', onUpstreamResponse);
  proxyReq.on('error', onUpstreamError);
  if (proxyReq.headersSent) {
    // Something wrote to the request before this event: the line and framing can no longer be set.
    proxyReq.destroy(new Error('upstream request head rendered before proxyReq (see src/proxy/forwarder.ts)'));
    return;
  }
  // http-proxy joins paths with `urlJoin`, which collapses `//`; the path must pass as received.
  proxyReq.path = body.path;
  if (body.chunked && proxyReq.getHeader('content-length') !== undefined) {
    // `deleteLength` set `content-length: 0` on a chunked DELETE/OPTIONS: restore the framing
    // (the body would otherwise follow a zero length, a request-smuggling shape).
    proxyReq.removeHeader('content-length');
    proxyReq.setHeader('transfer-encoding', 'chunked');
  }
  sink.onUpstreamRequest(proxyReq);
  body.start(proxyReq);
}

/** A handshake's sink and path, kept on the client's request for the `proxyReqWs` listener. */
const TUNNEL = Symbol('circuit-proxy.tunnel');
type WithTunnel = IncomingMessage & { [TUNNEL]?: { sink: TunnelSink; path: string } };

/**
 * The handshake's upstream request, before anything of it is written (http-proxy emits
 * `proxyReqWs` right after creating it, and attaches its own listeners after this one, so ours
 * run first). For any answer, 101 or not, http-proxy then writes a head made of the response's
 * parsed `headers` object, which the sink rewrites first: for a non-101 it would otherwise send
 * `transfer-encoding: chunked` over the decoded body it pipes (docs/websocket.md). Pinned
 * (http-proxy 1.18.1 exactly) and checked by a canary in test/e2e/websocket.test.ts.
 */
function onProxyReqWs(proxyReq: ClientRequest, req: WithTunnel): void {
  const t = req[TUNNEL];
  if (t === undefined) return;
  req[TUNNEL] = undefined;
  const sink = t.sink;
  proxyReq.path = t.path;
  proxyReq.on('response', (proxyRes: IncomingMessage) => sink.onTunnelRefused(proxyRes));
  proxyReq.on('upgrade', (proxyRes: IncomingMessage, upstream: Socket) => sink.onTunnelOpen(proxyRes, upstream));
  proxyReq.on('error', (err: Error) => sink.onTunnelError(err));
  sink.onTunnelRequest(proxyReq);
}

/**
 * http-proxy's `error` event: with a listener attached it never throws. Upstream errors reach
 * their attempt through the upstream request's own listener (above); the client request's own
 * errors, which http-proxy reports here too, are the call's to see (its response closes).
 */
function onProxyError(): void {}

interface Route {
  readonly proxy: httpProxy;
  readonly agent: HttpAgent | HttpsAgent;
  /** The `tls:` its agent was made with (its fingerprint): another one needs another pool. */
  readonly tls: string | undefined;
}

export class Forwarder {
  private readonly agentOptions: AgentOptions;
  /** One http-proxy server and one keep-alive pool per endpoint (docs/endpoints.md, "Connections"). */
  private readonly routes = new WeakMap<Endpoint, Route>();
  private readonly agents = new Set<HttpAgent | HttpsAgent>();

  constructor(tuning: AgentTuning = DEFAULT_TUNING) {
    this.agentOptions = {
      keepAlive: true,
      scheduling: 'lifo' as const,
      maxFreeSockets: tuning.maxFreeSockets,
      timeout: tuning.freeSocketTimeoutMs,
    };
  }

  /** Forwards `u.req` as `u` says; everything that happens to the upstream exchange is reported to `sink`. */
  forward(u: UpstreamRequest, sink: ForwardSink): void {
    const { req, res } = u;
    const r = this.route(u.endpoint);
    // The configured URL's host, for every endpoint: Node derives the TLS server name from it too.
    req.headers.host = u.endpoint.host;
    const body = new DeferredBody(req, u.path, u.hasBody, req.headers['transfer-encoding'] !== undefined, sink, u.replay);
    r.proxy.web(req, res, { buffer: body as unknown as Stream });
  }

  /** Forwards a WebSocket handshake with http-proxy's `ws`; the handshake and the tunnel report to `sink`. */
  tunnel(u: UpstreamTunnel, sink: TunnelSink): void {
    const req = u.req as WithTunnel;
    const r = this.route(u.endpoint);
    req.headers.host = u.endpoint.host;
    req[TUNNEL] = { sink, path: u.path };
    // The callback replaces http-proxy's `error` event for this socket; the sink has the request's own.
    r.proxy.ws(req, u.socket, u.head, {}, onProxyError);
  }

  /** An endpoint that left (reload or DNS) has no request left: its pooled sockets close. */
  release(endpoint: Endpoint): void {
    const r = this.routes.get(endpoint);
    if (r === undefined) return;
    this.routes.delete(endpoint);
    this.agents.delete(r.agent);
    r.agent.destroy();
  }

  /** Closes pooled sockets. */
  destroy(): void {
    for (const a of this.agents) a.destroy();
    this.agents.clear();
  }

  private route(endpoint: Endpoint): Route {
    let r = this.routes.get(endpoint);
    const tls = endpoint.tls;
    if (r === undefined || r.tls !== tls?.fingerprint) {
      // A reload changed `tls:`: new connections use the new settings. The old pool is left to
      // its requests in flight; its idle sockets close after the agent's timeout.
      const u = endpoint.url;
      const https = u.protocol === 'https:';
      const agent = https
        ? new HttpsAgent({
            ...this.agentOptions,
            // Connection options of the agent (Node merges them into each TLS connection): the
            // private CA, the client certificate, the server name checked (docs/configuration.md).
            ...(tls?.ca ? { ca: tls.ca } : {}),
            ...(tls?.cert ? { cert: tls.cert, key: tls.key } : {}),
            ...(tls?.servername ? { servername: tls.servername } : {}),
            minVersion: tls?.minVersion ?? 'TLSv1.2',
          })
        : new HttpAgent(this.agentOptions);
      // An upstream's early answer survives the failed write of the rest of the body (docs/behaviour.md, "Early answers").
      holdWriteFailuresOf(agent);
      const proxy = httpProxy.createProxyServer({
        target: {
          protocol: u.protocol,
          host: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname,
          port: u.port || (https ? '443' : '80'),
        },
        agent,
        // The request line is set in `proxyReq` (above); the client's own target is not used.
        ignorePath: true,
        selfHandleResponse: true,
        secure: true,
      });
      proxy.on('proxyReq', onProxyReq);
      proxy.on('proxyReqWs', onProxyReqWs);
      proxy.on('error', onProxyError);
      r = { proxy, agent, tls: tls?.fingerprint };
      this.routes.set(endpoint, r);
      this.agents.add(agent);
    }
    return r;
  }
}
