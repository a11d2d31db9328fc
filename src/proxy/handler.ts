import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Admission, WouldRejectReason } from '../admission/chain.js';
import type { CallPolicy, ServiceConfig } from '../config/types.js';
import type { Service } from '../upstream/service.js';
import type { ServiceRegistry } from '../upstream/registry.js';
import { Call, CLIENT_CLOSED, type CallOwner, type Completed, type Outcome, type RetryEvent } from './call.js';
import type { Forwarder } from './forwarder.js';
import { clientRequestId, MAX_HEADERS } from './headers.js';
import {
  FallbackAnswer,
  OpenCircuitResponse,
  type CannedProblem,
  sendProblem,
  ShedResponse,
  type CannedResponse,
  type Problem,
} from './problem.js';
import { newRequestId } from './request-id.js';
import { route } from './router.js';
import { Tunnel, writeCanned, writeProblem, type TunnelOwner } from './tunnel.js';

export type { WouldRejectReason };

export interface ProxyEvents {
  completed: [Completed];
  /** Observe mode forwarded a request enforce mode would have rejected (service, reason). */
  wouldReject: [string, WouldRejectReason];
  /** A request that matched no service (400/404/414/431): no per-service series. */
  unrouted: [number, IncomingMessage];
  /** A failed attempt is retried (docs/retries.md). */
  retry: [RetryEvent];
  /** A WebSocket tunnel closed, both sides (docs/websocket.md): service, seconds it was open. */
  tunnelClosed: [string, number];
  /** A connection in a protocol the proxy does not speak was refused (docs/behaviour.md, "Protocols"). */
  protocolRefused: ['h2'];
}

/** Open WebSocket tunnels of one service, and all it has opened (docs/websocket.md). */
export interface TunnelCounts {
  open: number;
  total: number;
}

/** Built-in `clientTimeouts.bodyIdle`. */
const DEFAULT_CLIENT_BODY_IDLE_MS = 30_000;

/**
 * The proxy's request handler: route, admit through the service's admission chain, hand the
 * admitted request to a {@link Call}. Emits `completed` for metrics and access logs; never
 * imports them (docs/architecture.md).
 */
export class ProxyHandler extends EventEmitter<ProxyEvents> implements CallOwner, TunnelOwner {
  /** Each call policy's canned rejection: the 503 problem, or its fallback. By policy: a reload or a route may change it. */
  private readonly rejections = new WeakMap<CallPolicy, CannedResponse>();
  /** Each service's last bulkhead 503 (its detail names the count, which is maxConcurrent but after a reload). */
  private readonly sheds = new WeakMap<ServiceConfig, ShedResponse>();
  /** Set while draining: responses carry `Connection: close`. */
  draining = false;
  clientBodyIdleMs = DEFAULT_CLIENT_BODY_IDLE_MS;
  /** `clientTimeouts.tunnelIdle`; undefined: off. */
  tunnelIdleMs: number | undefined;
  /** Open tunnels: a drain closes those left when its grace period ends. */
  readonly tunnels = new Set<Tunnel>();
  /** By service name (kept across reloads, as the tunnels themselves are). */
  readonly tunnelCounts = new Map<string, TunnelCounts>();
  private onTunnelsClosed: (() => void) | undefined;

  constructor(
    private readonly registry: ServiceRegistry,
    readonly forwarder: Forwarder,
  ) {
    super();
  }

  completed(record: Completed): void {
    this.emit('completed', record);
  }

  retrying(e: RetryEvent): void {
    this.emit('retry', e);
  }

  wouldReject(service: string, reason: WouldRejectReason): void {
    this.emit('wouldReject', service, reason);
  }

  /** The proxy listener's request handler. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.draining) res.shouldKeepAlive = false;
    const requestId = clientRequestId(req.rawHeaders) ?? newRequestId();
    if (req.rawHeaders.length > MAX_HEADERS * 2) {
      // Past Node's count limit, headers (Content-Length among them) would be dropped unseen.
      res.shouldKeepAlive = false;
      this.unrouted(req, res, requestId, {
        status: 431,
        title: 'Request Header Fields Too Large',
        detail: `more than ${MAX_HEADERS} request headers`,
      });
      return;
    }
    const r = route(req.url ?? '');
    if (!r.ok) {
      this.unrouted(req, res, requestId, r);
      return;
    }
    const service = this.registry.get(r.name);
    if (service === undefined) {
      this.unrouted(req, res, requestId, { status: 404, title: 'Not Found', detail: `unknown service: ${r.name}` });
      return;
    }
    // A service with routes: the first that matches sets the call's settings (docs/routes.md).
    const rt = service.config.routes.length === 0 ? undefined : service.routeFor(req.method ?? '', r.rest);
    const call = new Call(this, service, req, res, rt);
    call.requestId = requestId;
    call.rest = r.rest;
    call.query = r.query;
    this.admitted(call, service, call.chain.admit(call));
  };

  /**
   * The proxy listener's `upgrade` handler for `Upgrade: websocket` (docs/websocket.md): routed
   * and admitted like a request, then tunnelled. Every answer of the proxy's own is an HTTP
   * response written to the socket.
   */
  readonly upgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    // Errors end in `close`, where the tunnel (or nobody) settles what they mean.
    socket.on('error', ignore);
    const requestId = clientRequestId(req.rawHeaders) ?? newRequestId();
    const id = ['x-request-id', requestId];
    if (req.rawHeaders.length > MAX_HEADERS * 2) {
      writeProblem(
        socket,
        { status: 431, title: 'Request Header Fields Too Large', detail: `more than ${MAX_HEADERS} request headers` },
        id,
      );
      this.emit('unrouted', 431, req);
      return;
    }
    const r = route(req.url ?? '');
    if (!r.ok) {
      writeProblem(socket, r, id);
      this.emit('unrouted', r.status, req);
      return;
    }
    const service = this.registry.get(r.name);
    if (service === undefined) {
      writeProblem(socket, { status: 404, title: 'Not Found', detail: `unknown service: ${r.name}` }, id);
      this.emit('unrouted', 404, req);
      return;
    }
    const rt = service.config.routes.length === 0 ? undefined : service.routeFor(req.method ?? '', r.rest);
    const t = new Tunnel(this, service, req, socket, head, rt);
    t.requestId = requestId;
    t.rest = r.rest;
    t.query = r.query;
    if (this.draining) {
      // A tunnel opened now would be cut when the grace period ends: the client reconnects elsewhere.
      t.problem(503, 'Service Unavailable', 'circuit-proxy is shutting down');
      return;
    }
    this.tunnelAdmitted(t, t.chain.admit(t));
  };

  private tunnelAdmitted(t: Tunnel, a: Admission): void {
    switch (a.kind) {
      case 'admitted':
        return t.forward();
      case 'rejected': {
        // The 503 problem, never a fallback: a canned body is no WebSocket (docs/websocket.md).
        const svc = t.config;
        const told = svc.call.rejectRetryAfter;
        const canned: CannedProblem =
          a.by === 'circuit'
            ? new OpenCircuitResponse(svc.name, told)
            : new ShedResponse(svc.name, t.service.inFlight, t.service.bulkhead.max ?? 0, told);
        const retryAfter = a.by === 'circuit' ? t.circuit.retryAfterSeconds() : 1;
        writeCanned(t.socket, canned, retryAfter, t.requestId);
        return t.record(503, a.by === 'circuit' ? 'rejected' : 'shed', 0);
      }
      case 'queued': {
        const onClose = (): void => {
          withdraw();
          t.record(CLIENT_CLOSED, 'abandoned', 0);
        };
        const withdraw = t.chain.wait(t, a.at, (next) => {
          t.socket.off('close', onClose);
          if (t.gone) {
            if (next.kind === 'admitted') t.chain.release(t);
            t.record(CLIENT_CLOSED, 'abandoned', 0);
          } else this.tunnelAdmitted(t, next);
        });
        t.socket.on('close', onClose);
        return;
      }
    }
  }

  opened(t: Tunnel): void {
    this.tunnels.add(t);
    let c = this.tunnelCounts.get(t.name);
    if (c === undefined) this.tunnelCounts.set(t.name, (c = { open: 0, total: 0 }));
    c.open += 1;
    c.total += 1;
  }

  closed(t: Tunnel): void {
    if (!this.tunnels.delete(t)) return;
    const c = this.tunnelCounts.get(t.name);
    if (c !== undefined) c.open -= 1;
    this.emit('tunnelClosed', t.name, (performance.now() - t.openedAt) / 1000);
    if (this.tunnels.size === 0) this.onTunnelsClosed?.();
  }

  /** Resolves when no tunnel is open (a drain waits for this, up to its grace period). */
  tunnelsClosed(): Promise<void> {
    if (this.tunnels.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.onTunnelsClosed = () => {
        this.onTunnelsClosed = undefined;
        resolve();
      };
    });
  }

  /** Closes every open tunnel at once (the end of a drain's grace period). */
  closeTunnels(): void {
    for (const t of [...this.tunnels]) t.close();
  }

  /** What admission decided, acted on: forward, answer for the gate that rejected, or wait in its queue. */
  private admitted(call: Call, service: Service, a: Admission): void {
    switch (a.kind) {
      case 'admitted':
        return call.forward();
      case 'rejected':
        return a.by === 'circuit' ? this.reject(call) : this.shed(call, service);
      case 'queued':
        return this.queue(call, service, a.at);
    }
  }

  /**
   * Half-open with every trial slot taken and room in `halfOpen.queue`: the caller waits for the
   * verdict (docs/policies.md). A client that leaves meanwhile is withdrawn.
   */
  private queue(call: Call, service: Service, at: number): void {
    const res = call.res;
    const onClose = (): void => {
      withdraw();
      this.answered(call, CLIENT_CLOSED, 'abandoned');
    };
    const withdraw = call.chain.wait(call, at, (a) => {
      res.off('close', onClose);
      if (res.destroyed) {
        if (a.kind === 'admitted') call.chain.release(call);
        this.answered(call, CLIENT_CLOSED, 'abandoned');
      } else this.admitted(call, service, a);
    });
    res.on('close', onClose);
  }

  /** The open circuit's answer: the 503 problem with Retry-After, or the service's fallback. */
  private reject(call: Call): void {
    const svc = call.config;
    let canned = this.rejections.get(call.policy);
    if (canned === undefined) {
      const fallback = call.policy.fallback;
      const told = call.policy.rejectRetryAfter;
      canned = fallback ? new FallbackAnswer(svc.name, fallback, told) : new OpenCircuitResponse(svc.name, told);
      this.rejections.set(call.policy, canned);
    }
    canned.send(call.req, call.res, call.circuit.retryAfterSeconds(), call.requestId);
    this.answered(call, canned.status, 'rejected');
  }

  /** The bulkhead is full: 503 at once, never a circuit failure; a fallback does not replace it. */
  private shed(call: Call, service: Service): void {
    const svc = call.config;
    const inFlight = service.inFlight;
    const max = service.bulkhead.max ?? 0;
    let canned = this.sheds.get(svc);
    if (canned === undefined || canned.inFlight !== inFlight || canned.maxConcurrent !== max) {
      canned = new ShedResponse(svc.name, inFlight, max, svc.call.rejectRetryAfter);
      this.sheds.set(svc, canned);
    }
    canned.send(call.req, call.res, 1, call.requestId);
    this.answered(call, 503, 'shed');
  }

  /** The `completed` record of a request that was not forwarded (rejected, shed, or left while queued). */
  private answered(call: Call, status: number, outcome: Outcome): void {
    const req = call.req;
    this.emit('completed', {
      service: call.config.name,
      status,
      outcome,
      durationSeconds: (performance.now() - call.started) / 1000,
      method: req.method ?? '',
      path: req.url ?? '',
      requestId: call.requestId,
      attempts: 0,
      ...(call.route !== undefined ? { route: call.route } : {}),
    });
  }

  /** A request that named no configured service (400/404/414/431): a problem, no per-service series. */
  private unrouted(req: IncomingMessage, res: ServerResponse, requestId: string, p: Problem): void {
    sendProblem(req, res, p, ['x-request-id', requestId]);
    this.emit('unrouted', p.status, req);
  }
}

function ignore(): void {}
