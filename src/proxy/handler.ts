import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { REJECTED, type BreakerRegistry, type ServiceBreaker } from '../breaker/index.js';
import { formatDuration } from '../config/duration.js';
import { isFailureStatus, type ServiceConfig } from '../config/types.js';
import { classifyUpstreamError, statusForFailure } from './failure.js';
import type { ForwardSink, Forwarder } from './forwarder.js';
import { acceptableRequestId, prepareRequestHeaders, responseHeaders } from './headers.js';
import { problemBody, sendProblem, sendProblemBody } from './problem.js';
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
  private readonly openBodies = new Map<string, Buffer>();
  /** Set while draining: responses carry `Connection: close`. */
  draining = false;

  constructor(registry: BreakerRegistry, forwarder: Forwarder) {
    super();
    this.registry = registry;
    this.forwarder = forwarder;
    registry.on('removed', (name) => this.openBodies.delete(name));
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.draining) res.shouldKeepAlive = false;
    const requestId = acceptableRequestId(req.headers['x-request-id']) ?? randomUUID();
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
    const ex = new Exchange(this, breaker, ticket, req, res, requestId, started);
    try {
      this.forwarder.forward(req, res, svc, upstreamPath(svc.target.pathname, r.rest, r.query), ex);
    } catch (err) {
      // Node refused to build the upstream request (e.g. a header value it will not send):
      // the client's fault, not the upstream's, so the breaker is not told.
      ex.refuse(err as NodeJS.ErrnoException);
    }
  };

  private reject(req: IncomingMessage, res: ServerResponse, breaker: ServiceBreaker, requestId: string, started: number): void {
    const name = breaker.name;
    let body = this.openBodies.get(name);
    if (body === undefined) {
      body = problemBody(503, 'Circuit open', `Circuit open for ${name}`, name);
      this.openBodies.set(name, body);
    }
    sendProblemBody(req, res, 503, body, ['retry-after', String(breaker.retryAfterSeconds()), 'x-request-id', requestId]);
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

/**
 * One forwarded request: owns the upstream request's timers, decides the outcome exactly once and
 * tells the breaker, and writes the response (headers, streamed body, trailers) to the client.
 */
class Exchange implements ForwardSink, Completed {
  private proxyReq: ClientRequest | undefined;
  private proxyRes: IncomingMessage | undefined;
  /** The breaker has been told (success, failure or abandoned). */
  private decided = false;
  private timedOut = false;
  outcome: Outcome = 'success';
  status = 0;
  durationSeconds = 0;

  constructor(
    private readonly owner: ProxyHandler,
    private readonly breaker: ServiceBreaker,
    private readonly ticket: number,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    readonly requestId: string,
    private readonly started: number,
  ) {
    res.on('close', this.onClientClose);
  }

  private get svc(): ServiceConfig {
    return this.breaker.config;
  }

  onUpstreamRequest(proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq;
    // The header timeout is the upstream socket's idle timer: it covers connecting, and every byte
    // written restarts it, so it counts from when the request has been sent in full (SPEC §3).
    proxyReq.setTimeout(this.svc.timeoutMs);
    proxyReq.on('timeout', this.onUpstreamTimeout);
    proxyReq.on('response', this.onUpstreamResponse);
    proxyReq.on('error', this.onUpstreamError);
  }

  private readonly onUpstreamTimeout = (): void => {
    this.timedOut = true;
    this.proxyReq?.destroy();
  };

  private readonly onUpstreamError = (err: NodeJS.ErrnoException): void => {
    if (this.decided || this.proxyRes !== undefined) return;
    if (this.res.destroyed || this.res.writableEnded) {
      this.abandon();
      return;
    }
    const name = this.svc.name;
    if (this.timedOut) {
      const after = formatDuration(this.svc.timeoutMs);
      this.fail('timeout', `no response headers within ${after}`, 'ETIMEDOUT');
      sendProblem(this.req, this.res, 504, 'Gateway Timeout', `${name} timed out after ${after}`, name, ['x-request-id', this.requestId]);
      return;
    }
    const c = classifyUpstreamError(err);
    this.fail(c.reason, c.cause, err.code);
    sendProblem(this.req, this.res, statusForFailure(c.reason), 'Bad Gateway', `${name} unreachable: ${c.cause}`, name, [
      'x-request-id',
      this.requestId,
    ]);
  };

  private readonly onUpstreamResponse = (proxyRes: IncomingMessage): void => {
    this.proxyRes = proxyRes;
    const { req, res } = this;
    if (this.decided) {
      proxyRes.destroy();
      return;
    }
    const status = proxyRes.statusCode ?? 502;
    if (isFailureStatus(this.svc.failureStatuses, status)) this.fail('status', `status ${status}`, undefined);
    // From here the timer measures body idleness (a stalled body ends the exchange).
    this.timedOut = false;
    if (this.svc.bodyIdleTimeoutMs !== this.svc.timeoutMs) this.proxyReq?.setTimeout(this.svc.bodyIdleTimeoutMs);
    const trailers =
      proxyRes.headers.trailer !== undefined &&
      proxyRes.headers['content-length'] === undefined &&
      req.httpVersion === '1.1' &&
      req.method !== 'HEAD';
    if (this.owner.draining) res.shouldKeepAlive = false;
    res.writeHead(
      status,
      proxyRes.statusMessage,
      responseHeaders(proxyRes.rawHeaders, proxyRes.headers.connection, this.requestId, trailers),
    );
    proxyRes.on('end', () => {
      if (trailers && proxyRes.rawTrailers.length > 0) res.addTrailers(pairs(proxyRes.rawTrailers));
      res.end();
      if (!this.decided) {
        this.decided = true;
        this.breaker.success(this.ticket);
      }
    });
    proxyRes.on('close', () => {
      if (proxyRes.complete) return;
      // Upstream reset mid-body (or the body stalled): the client must not hang.
      if (!this.decided && !res.destroyed) {
        const cause = this.timedOut
          ? `response body stalled for ${formatDuration(this.svc.bodyIdleTimeoutMs)}`
          : 'connection reset during response body';
        this.fail('reset', cause, this.timedOut ? 'ETIMEDOUT' : 'ECONNRESET');
      }
      res.destroy();
    });
    proxyRes.pipe(res, { end: false });
  };

  /** The upstream request could not even be built: answer 400, neither success nor failure. */
  refuse(err: NodeJS.ErrnoException): void {
    this.abandon();
    this.proxyReq?.destroy();
    sendProblem(this.req, this.res, 400, 'Bad Request', `request cannot be forwarded: ${err.code ?? err.message}`, this.svc.name, [
      'x-request-id',
      this.requestId,
    ]);
  }

  private readonly onClientClose = (): void => {
    const { res } = this;
    if (!res.writableFinished) {
      // The client left (http-proxy #1586): abort upstream so no socket leaks.
      if (!this.decided) this.abandon();
      this.proxyReq?.destroy();
      this.proxyRes?.destroy();
    }
    // The exchange is itself the `completed` event: no second object per request.
    this.status = this.outcome === 'abandoned' ? CLIENT_CLOSED : res.statusCode;
    this.durationSeconds = (performance.now() - this.started) / 1000;
    this.owner.emit('completed', this);
  };

  get service(): string {
    return this.breaker.config.name;
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
    this.breaker.failure(this.ticket, reason, cause, code, this.requestId);
  }

  private abandon(): void {
    this.decided = true;
    this.outcome = 'abandoned';
    this.breaker.abandon(this.ticket);
  }
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}
