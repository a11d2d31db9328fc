import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { QUEUED, REJECTED, SHADOW, type BreakerRegistry, type ServiceBreaker } from '../breaker/index.js';
import type { ServiceConfig } from '../config/types.js';
import { CLIENT_CLOSED, Exchange, type Completed, type ExchangeOwner, type Outcome } from './exchange.js';
import type { Forwarder } from './forwarder.js';
import { clientRequestId, hasBody, MAX_HEADERS, prepareRequestHeaders } from './headers.js';
import { FallbackAnswer, OpenCircuitResponse, sendProblem, ShedResponse, type CannedResponse } from './problem.js';
import { newRequestId } from './request-id.js';
import { route, upstreamPath } from './router.js';

/** Why enforce mode would have rejected a request that observe mode forwarded. */
export type WouldRejectReason = 'open' | 'half_open' | 'bulkhead';

export interface ProxyEvents {
  completed: [Completed];
  /** Observe mode forwarded a request enforce mode would have rejected (service, reason). */
  wouldReject: [string, WouldRejectReason];
  /** A request that matched no service (400/404/414/431): no per-service series. */
  unrouted: [number, IncomingMessage];
}

/** Built-in `clientTimeouts.bodyIdle`. */
const DEFAULT_CLIENT_BODY_IDLE_MS = 30_000;

/**
 * The proxy's request handler: route, admit through the service's breaker, forward, settle.
 * Emits `completed` for metrics and access logs; never imports them (docs/architecture.md).
 */
export class ProxyHandler extends EventEmitter<ProxyEvents> implements ExchangeOwner {
  private readonly registry: BreakerRegistry;
  private readonly forwarder: Forwarder;
  /** Each service's canned rejection: the 503 problem, or its fallback. By config: a reload may change it. */
  private readonly rejections = new WeakMap<ServiceConfig, CannedResponse>();
  /** Each service's last bulkhead 503 (its detail names the count, which is maxConcurrent but after a reload). */
  private readonly sheds = new WeakMap<ServiceConfig, ShedResponse>();
  /** Set while draining: responses carry `Connection: close`. */
  draining = false;
  clientBodyIdleMs = DEFAULT_CLIENT_BODY_IDLE_MS;

  constructor(registry: BreakerRegistry, forwarder: Forwarder) {
    super();
    this.registry = registry;
    this.forwarder = forwarder;
  }

  completed(record: Completed): void {
    this.emit('completed', record);
  }

  /** The proxy listener's request handler. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.draining) res.shouldKeepAlive = false;
    const requestId = clientRequestId(req.rawHeaders) ?? newRequestId();
    if (req.rawHeaders.length > MAX_HEADERS * 2) {
      // Past Node's count limit, headers (Content-Length among them) would be dropped unseen.
      res.shouldKeepAlive = false;
      sendProblem(req, res, 431, 'Request Header Fields Too Large', `more than ${MAX_HEADERS} request headers`, undefined, [
        'x-request-id',
        requestId,
      ]);
      this.emit('unrouted', 431, req);
      return;
    }
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
    let ticket = breaker.admit();
    if (ticket === REJECTED || ticket === QUEUED) {
      if (breaker.config.mode === 'enforce') {
        if (ticket === REJECTED) this.reject(req, res, breaker, requestId, started);
        else this.queue(req, res, breaker, requestId, started, r.rest, r.query);
        return;
      }
      // Observe: forwarded all the same, its outcome ignored by the breaker (docs/load-shedding.md).
      this.emit('wouldReject', breaker.name, breaker.state === 'half_open' ? 'half_open' : 'open');
      ticket = SHADOW;
    }
    this.forward(req, res, breaker, ticket, requestId, started, r.rest, r.query);
  };

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    breaker: ServiceBreaker,
    ticket: number,
    requestId: string,
    started: number,
    rest: string,
    query: string,
  ): void {
    const svc = breaker.config;
    const max = svc.maxConcurrent;
    if (max !== undefined && breaker.inFlight >= max) {
      if (svc.mode === 'enforce') {
        breaker.abandon(ticket); // a half-open trial's slot goes back
        this.shed(req, res, breaker, max, requestId, started);
        return;
      }
      this.emit('wouldReject', breaker.name, 'bulkhead');
    }
    prepareRequestHeaders(req.headers, requestId, req.socket.remoteAddress);
    const body = hasBody(req.headers);
    const exchange = new Exchange(this, req, res, breaker, ticket, requestId, started, body);
    try {
      this.forwarder.forward(req, res, svc, upstreamPath(svc.target.pathname, rest, query), body, exchange);
    } catch (err) {
      // Node refused to build the upstream request (e.g. a header value it will not send):
      // the client's fault, not the upstream's, so the breaker is not told.
      exchange.refuse(err as NodeJS.ErrnoException);
    }
  }

  /**
   * Half-open with every trial slot taken and room in `halfOpen.queue`: the caller waits for the
   * verdict (docs/policies.md). A client that leaves meanwhile is withdrawn.
   */
  private queue(
    req: IncomingMessage,
    res: ServerResponse,
    breaker: ServiceBreaker,
    requestId: string,
    started: number,
    rest: string,
    query: string,
  ): void {
    const onClose = (): void => {
      withdraw();
      this.answered(req, breaker.name, CLIENT_CLOSED, 'abandoned', requestId, started);
    };
    const withdraw = breaker.enqueue((ticket) => {
      res.off('close', onClose);
      if (res.destroyed) this.answered(req, breaker.name, CLIENT_CLOSED, 'abandoned', requestId, started);
      else if (ticket === REJECTED) this.reject(req, res, breaker, requestId, started);
      else this.forward(req, res, breaker, ticket, requestId, started, rest, query);
    });
    res.on('close', onClose);
  }

  /** The open circuit's answer: the 503 problem with Retry-After, or the service's fallback. */
  private reject(req: IncomingMessage, res: ServerResponse, breaker: ServiceBreaker, requestId: string, started: number): void {
    const svc = breaker.config;
    let canned = this.rejections.get(svc);
    if (canned === undefined) {
      canned = svc.fallback ? new FallbackAnswer(svc.name, svc.fallback) : new OpenCircuitResponse(svc.name);
      this.rejections.set(svc, canned);
    }
    canned.send(req, res, breaker.retryAfterSeconds(), requestId);
    this.answered(req, svc.name, canned.status, 'rejected', requestId, started);
  }

  /** The bulkhead is full: 503 at once, never a breaker failure; a fallback does not replace it. */
  private shed(req: IncomingMessage, res: ServerResponse, breaker: ServiceBreaker, max: number, requestId: string, started: number): void {
    const name = breaker.name;
    let canned = this.sheds.get(breaker.config);
    if (canned === undefined || canned.inFlight !== breaker.inFlight || canned.maxConcurrent !== max) {
      canned = new ShedResponse(name, breaker.inFlight, max);
      this.sheds.set(breaker.config, canned);
    }
    canned.send(req, res, 1, requestId);
    this.answered(req, name, 503, 'shed', requestId, started);
  }

  /** The `completed` record of a request that was not forwarded (rejected, shed, or left while queued). */
  private answered(req: IncomingMessage, service: string, status: number, outcome: Outcome, requestId: string, started: number): void {
    this.emit('completed', {
      service,
      status,
      outcome,
      durationSeconds: (performance.now() - started) / 1000,
      method: req.method ?? '',
      path: req.url ?? '',
      requestId,
    });
  }
}
