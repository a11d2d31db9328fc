import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { QUEUED, REJECTED, type BreakerRegistry, type ServiceBreaker } from '../breaker/index.js';
import { CLIENT_CLOSED, Exchange, type Completed, type ExchangeOwner } from './exchange.js';
import type { Forwarder } from './forwarder.js';
import { clientRequestId, hasBody, MAX_HEADERS, prepareRequestHeaders } from './headers.js';
import { OpenCircuitResponse, sendProblem } from './problem.js';
import { newRequestId } from './request-id.js';
import { route, upstreamPath } from './router.js';

export interface ProxyEvents {
  completed: [Completed];
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
  private readonly openResponses = new Map<string, OpenCircuitResponse>();
  /** Set while draining: responses carry `Connection: close`. */
  draining = false;
  clientBodyIdleMs = DEFAULT_CLIENT_BODY_IDLE_MS;

  constructor(registry: BreakerRegistry, forwarder: Forwarder) {
    super();
    this.registry = registry;
    this.forwarder = forwarder;
    registry.on('removed', (name) => this.openResponses.delete(name));
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
    const ticket = breaker.admit();
    if (ticket === REJECTED) {
      this.reject(req, res, breaker, requestId, started);
      return;
    }
    if (ticket === QUEUED) {
      this.queue(req, res, breaker, requestId, started, r.rest, r.query);
      return;
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
      this.emit('completed', {
        service: breaker.name,
        status: CLIENT_CLOSED,
        outcome: 'abandoned',
        durationSeconds: (performance.now() - started) / 1000,
        method: req.method ?? '',
        path: req.url ?? '',
        requestId,
      });
    };
    const withdraw = breaker.enqueue((ticket) => {
      res.off('close', onClose);
      if (res.destroyed) return;
      if (ticket === REJECTED) this.reject(req, res, breaker, requestId, started);
      else this.forward(req, res, breaker, ticket, requestId, started, rest, query);
    });
    res.on('close', onClose);
  }

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
