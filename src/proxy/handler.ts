import { EventEmitter } from 'node:events';
import { ServerResponse, type ClientRequest, type IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { REJECTED, type BreakerRegistry, type ServiceBreaker } from '../breaker/index.js';
import { formatDuration } from '../config/duration.js';
import { isFailureStatus, type ServiceConfig } from '../config/types.js';
import { classifyUpstreamError, statusForFailure } from './failure.js';
import type { ForwardSink, Forwarder } from './forwarder.js';
import { clientRequestId, prepareRequestHeaders, responseHeaders } from './headers.js';
import { OpenCircuitResponse, sendProblem } from './problem.js';
import { newRequestId } from './request-id.js';
import { route, upstreamPath } from './router.js';

/** How a proxied request ended. */
export type Outcome = 'success' | 'failure' | 'rejected' | 'abandoned';

/** Emitted once per request that named a configured service. */
export interface Completed {
  readonly service: string;
  /** Status sent to the client; 499 when the client left first. */
  readonly status: number;
  readonly outcome: Outcome;
  readonly durationSeconds: number;
  readonly method: string;
  readonly path: string;
  readonly requestId: string;
}

export interface ProxyEvents {
  completed: [Completed];
  /** A request that matched no service (404/400/414): no per-service series. */
  unrouted: [number, IncomingMessage];
}

/** Client closed before the response completed (nginx's convention). */
export const CLIENT_CLOSED = 499;

/**
 * The proxy's request handler: route, admit through the service's breaker, forward, settle.
 * Emits `completed` for metrics and access logs; never imports them (STYLE.md).
 */
export class ProxyHandler extends EventEmitter<ProxyEvents> {
  private readonly registry: BreakerRegistry;
  private readonly forwarder: Forwarder;
  private readonly openResponses = new Map<string, OpenCircuitResponse>();
  /** Set while draining: responses carry `Connection: close`. */
  draining = false;

  constructor(registry: BreakerRegistry, forwarder: Forwarder) {
    super();
    this.registry = registry;
    this.forwarder = forwarder;
    registry.on('removed', (name) => this.openResponses.delete(name));
  }

  /** The request listener of a server created with `ServerResponse: ProxyResponse`. */
  readonly handle = (req: IncomingMessage, res: ProxyResponse): void => {
    if (this.draining) res.shouldKeepAlive = false;
    const requestId = clientRequestId(req.rawHeaders) ?? newRequestId();
    const r = route(req.url ?? '');
    if (!r.ok) {
      sendProblem(req, res, r.status, r.title, r.detail, undefined, ['x-request-id', requestId]);
      this.emit('unrouted', r.status, req);
      return;
    }
    const breaker = this.registry.get(r.name);
    if (breaker === undefined) {
      sendProblem(req, res, 404, 'Not Found', `unknown service: ${r.name}`, undefined, ['x-request-id', requestId]);
      this.emit('unrouted', 404, req);
      return;
    }
    const started = performance.now();
    const ticket = breaker.admit();
    if (ticket === REJECTED) {
      this.reject(req, res, breaker, requestId, started);
      return;
    }
    const svc = breaker.config;
    prepareRequestHeaders(req.headers, requestId, req.socket.remoteAddress);
    res.begin(this, breaker, ticket, requestId, started);
    try {
      this.forwarder.forward(req, res, svc, upstreamPath(svc.target.pathname, r.rest, r.query));
    } catch (err) {
      // Node refused to build the upstream request (e.g. a header value it will not send):
      // the client's fault, not the upstream's, so the breaker is not told.
      res.refuse(err as NodeJS.ErrnoException);
    }
  };

  private reject(req: IncomingMessage, res: ServerResponse, breaker: ServiceBreaker, requestId: string, started: number): void {
    const name = breaker.name;
    let open = this.openResponses.get(name);
    if (open === undefined) {
      open = new OpenCircuitResponse(name);
      this.openResponses.set(name, open);
    }
    open.send(req, res, breaker.retryAfterSeconds(), requestId);
    this.emit('completed', {
      service: name,
      status: 503,
      outcome: 'rejected',
      durationSeconds: (performance.now() - started) / 1000,
      method: req.method ?? '',
      path: req.url ?? '',
      requestId,
    });
  }
}

/** Listener for the response's `close` (this = the response): the exchange ends. */
function onResponseClose(this: ProxyResponse): void {
  this.onClientClose();
}

/**
 * The client's response, and the exchange of one forwarded request (Node builds it: the proxy
 * server is created with `ServerResponse: ProxyResponse`). It owns the upstream request's timers,
 * decides the outcome exactly once and tells the breaker, writes the response (headers, streamed
 * body, trailers), and is itself the `completed` event. Being the response, it needs no object,
 * map entry or closure of its own per request: the forwarder reports straight to it.
 */
export class ProxyResponse extends ServerResponse implements ForwardSink, Completed {
  private owner: ProxyHandler | undefined = undefined;
  private breaker: ServiceBreaker | undefined = undefined;
  private ticket = 0;
  private started = 0;
  private proxyReq: ClientRequest | undefined = undefined;
  private proxyRes: IncomingMessage | undefined = undefined;
  /** The breaker has been told (success, failure or abandoned). */
  private decided = false;
  private timedOut = false;
  private trailers = false;
  requestId = '';
  outcome: Outcome = 'success';
  status = 0;
  durationSeconds = 0;

  /** Called once by the handler when the request is admitted and about to be forwarded. */
  begin(owner: ProxyHandler, breaker: ServiceBreaker, ticket: number, requestId: string, started: number): void {
    this.owner = owner;
    this.breaker = breaker;
    this.ticket = ticket;
    this.requestId = requestId;
    this.started = started;
    this.on('close', onResponseClose);
  }

  private get svc(): ServiceConfig {
    return this.breaker!.config;
  }

  onUpstreamRequest(proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq;
    // The forwarder set the header timeout as the upstream socket's idle timer: it covers
    // connecting, and every byte written restarts it, so it counts from when the request has been
    // sent in full (SPEC §3).
    proxyReq.on('timeout', () => {
      this.timedOut = true;
      proxyReq.destroy();
    });
  }

  onUpstreamError(err: NodeJS.ErrnoException): void {
    if (this.decided || this.proxyRes !== undefined) return;
    // The client's own request failed (http-proxy reports those here too): the response's
    // `close` settles it as abandoned.
    if (this.req.errored === err) return;
    if (this.destroyed || this.writableEnded) {
      this.abandon();
      return;
    }
    const name = this.svc.name;
    if (this.timedOut) {
      const after = formatDuration(this.svc.timeoutMs);
      this.fail('timeout', `no response headers within ${after}`, 'ETIMEDOUT');
      sendProblem(this.req, this, 504, 'Gateway Timeout', `${name} timed out after ${after}`, name, ['x-request-id', this.requestId]);
      return;
    }
    const c = classifyUpstreamError(err);
    this.fail(c.reason, c.cause, err.code);
    sendProblem(this.req, this, statusForFailure(c.reason), 'Bad Gateway', `${name} unreachable: ${c.cause}`, name, [
      'x-request-id',
      this.requestId,
    ]);
  }

  onUpstreamResponse(proxyRes: IncomingMessage): void {
    this.proxyRes = proxyRes;
    const req = this.req;
    if (this.decided) {
      proxyRes.destroy();
      return;
    }
    const svc = this.svc;
    const status = proxyRes.statusCode ?? 502;
    if (isFailureStatus(svc.failureStatuses, status)) this.fail('status', `status ${status}`, undefined);
    // From here the timer measures body idleness (a stalled body ends the exchange).
    this.timedOut = false;
    if (svc.bodyIdleTimeoutMs !== svc.timeoutMs) this.proxyReq?.setTimeout(svc.bodyIdleTimeoutMs);
    const trailers =
      proxyRes.headers.trailer !== undefined &&
      proxyRes.headers['content-length'] === undefined &&
      req.httpVersion === '1.1' &&
      req.method !== 'HEAD';
    this.trailers = trailers;
    if (this.owner!.draining) this.shouldKeepAlive = false;
    this.writeHead(
      status,
      proxyRes.statusMessage,
      responseHeaders(proxyRes.rawHeaders, proxyRes.headers.connection, this.requestId, trailers),
    );
    proxyRes.on('close', () => this.onUpstreamClose(proxyRes));
    // Not proxyRes.pipe(this): setting up and tearing down a pipe's listeners on both streams is
    // about 5% of a small request's CPU. Back-pressure as pipe keeps it: see awaitDrain.
    proxyRes.on('data', (chunk: Buffer) => {
      if (!this.write(chunk)) this.awaitDrain(proxyRes);
    });
  }

  /**
   * The client is not keeping up: stop reading the upstream until the client's buffer drains.
   * The wait is the client's doing, so the body idle timer is off meanwhile: a slow reader must
   * not count as a stalled upstream against the breaker.
   */
  private awaitDrain(proxyRes: IncomingMessage): void {
    proxyRes.pause();
    this.proxyReq?.setTimeout(0);
    this.once('drain', () => {
      this.proxyReq?.setTimeout(this.svc.bodyIdleTimeoutMs);
      proxyRes.resume();
    });
  }

  onUpstreamEnd(proxyRes: IncomingMessage): void {
    // http-proxy also emits `end` at once when the response was already finished (a 504 sent).
    if (this.writableEnded || !proxyRes.complete) return;
    if (this.trailers && proxyRes.rawTrailers.length > 0) this.addTrailers(pairs(proxyRes.rawTrailers));
    this.end();
    if (!this.decided) {
      this.decided = true;
      this.breaker!.success(this.ticket);
    }
  }

  private onUpstreamClose(proxyRes: IncomingMessage): void {
    if (proxyRes.complete) return;
    // Upstream reset mid-body (or the body stalled): the client must not hang.
    if (!this.decided && !this.destroyed) {
      const cause = this.timedOut
        ? `response body stalled for ${formatDuration(this.svc.bodyIdleTimeoutMs)}`
        : 'connection reset during response body';
      this.fail('reset', cause, this.timedOut ? 'ETIMEDOUT' : 'ECONNRESET');
    }
    this.destroy();
  }

  /** The upstream request could not even be built: answer 400, neither success nor failure. */
  refuse(err: NodeJS.ErrnoException): void {
    this.abandon();
    this.proxyReq?.destroy();
    sendProblem(this.req, this, 400, 'Bad Request', `request cannot be forwarded: ${err.code ?? err.message}`, this.svc.name, [
      'x-request-id',
      this.requestId,
    ]);
  }

  onClientClose(): void {
    if (!this.writableFinished) {
      // The client left (http-proxy #1586): abort upstream so no socket leaks.
      if (!this.decided) this.abandon();
      this.proxyReq?.destroy();
      this.proxyRes?.destroy();
    }
    this.status = this.outcome === 'abandoned' ? CLIENT_CLOSED : this.statusCode;
    this.durationSeconds = (performance.now() - this.started) / 1000;
    this.owner!.emit('completed', this);
  }

  get service(): string {
    return this.svc.name;
  }

  get method(): string {
    return this.req.method ?? '';
  }

  get path(): string {
    return this.req.url ?? '';
  }

  private fail(reason: 'connect' | 'timeout' | 'reset' | 'status', cause: string, code: string | undefined): void {
    this.decided = true;
    this.outcome = 'failure';
    this.breaker!.failure(this.ticket, reason, cause, code, this.requestId);
  }

  private abandon(): void {
    this.decided = true;
    this.outcome = 'abandoned';
    this.breaker!.abandon(this.ticket);
  }
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}
