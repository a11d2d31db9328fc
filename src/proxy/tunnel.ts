import type { ClientRequest, IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Admittee, WouldRejectReason } from '../admission/chain.js';
import type { Circuit } from '../circuit/circuit.js';
import { formatDuration } from '../config/duration.js';
import { isFailureStatus, type CallPolicy, type RouteConfig, type ServiceConfig } from '../config/types.js';
import { failed, statusForFailure, type OutcomeFields, type UpstreamOutcome } from '../outcome.js';
import type { Endpoint, EndpointSet } from '../upstream/endpoints.js';
import type { Service } from '../upstream/service.js';
import { CLIENT_CLOSED, type Completed, type Outcome } from './call.js';
import { classifyUpstreamError } from './failure.js';
import type { Forwarder, TunnelSink } from './forwarder.js';
import { dropHopByHop, prepareRequestHeaders } from './headers.js';
import { problemBody, type CannedProblem, type Problem } from './problem.js';
import { upstreamPath } from './router.js';

/**
 * After one side of an open tunnel closes, how long the other may take to finish its close
 * (its FIN sent, its last bytes flushed) before it is destroyed: a peer that never closes its
 * half must not keep a socket forever.
 */
const LINGER_MS = 2000;

/** What a tunnel needs from the handler that made it. */
export interface TunnelOwner {
  /** `clientTimeouts.tunnelIdle`: undefined, off. */
  readonly tunnelIdleMs: number | undefined;
  readonly forwarder: Forwarder;
  completed(record: Completed): void;
  wouldReject(service: string, reason: WouldRejectReason): void;
  /** The upstream's 101 went to the client: the tunnel is open. */
  opened(t: Tunnel): void;
  /** Both sides of an open tunnel have closed. */
  closed(t: Tunnel): void;
}

/** Where a tunnel is: admitted and waiting for the upstream's answer, open (bytes flow), or over. */
type Phase = 'admitting' | 'handshake' | 'open' | 'done';

/**
 * A WebSocket handshake and, after its 101, the tunnel (docs/websocket.md): admitted like a
 * request, its handshake one outcome for the circuit (the 101 a success; refused, reset, timed
 * out or a failure status instead of it a failure), then bytes both ways that never count.
 * The client side is the raw socket Node hands to an `upgrade` listener: every answer the proxy
 * gives of its own is an HTTP response written to it, then the socket is ended.
 */
export class Tunnel implements Admittee, TunnelSink {
  ticket = 0;
  counted = false;
  readonly started = performance.now();
  rest = '';
  query = '';
  requestId = '';
  readonly config: ServiceConfig;
  readonly policy: CallPolicy;
  readonly circuit: Circuit;
  readonly chain: Service['admission'];
  readonly endpoints: EndpointSet;
  readonly route: string | undefined;
  private phase: Phase = 'admitting';
  private endpoint: Endpoint | undefined;
  private proxyReq: ClientRequest | undefined;
  private upstream: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The handshake's outcome was told to the circuit (exactly once). */
  private told = false;
  private sidesOpen = 2;
  /** When the 101 went to the client (the tunnel's age is counted from it). */
  openedAt = 0;

  constructor(
    readonly owner: TunnelOwner,
    readonly service: Service,
    readonly req: IncomingMessage,
    readonly socket: Socket,
    private readonly head: Buffer,
    route: RouteConfig | undefined,
  ) {
    this.config = service.config;
    this.policy = route?.call ?? this.config.call;
    this.route = this.config.routes.length === 0 ? undefined : (route?.name ?? '-');
    this.circuit = service.circuit;
    this.chain = service.admission;
    this.endpoints = service.endpoints;
  }

  get name(): string {
    return this.config.name;
  }

  /** The client socket can take nothing more. */
  get gone(): boolean {
    return this.socket.destroyed || !this.socket.writable;
  }

  wouldReject(reason: WouldRejectReason): void {
    this.owner.wouldReject(this.config.name, reason);
  }

  /** Admitted: the handshake goes to an endpoint through http-proxy's `ws`. */
  forward(): void {
    const req = this.req;
    const socket = this.socket;
    if (this.gone) return this.end(CLIENT_CLOSED, 'abandoned', 0);
    const upgrade = req.headers.upgrade!;
    prepareRequestHeaders(req.headers, this.requestId, req.socket.remoteAddress);
    // The two headers that make it a handshake are hop-by-hop and ours to restate (RFC 9110 §7.8).
    req.headers.connection = 'Upgrade';
    req.headers.upgrade = upgrade;
    const endpoint = this.endpoints.pick();
    endpoint.inFlight += 1;
    this.endpoint = endpoint;
    this.phase = 'handshake';
    this.timer = setTimeout(() => this.timedOut(), this.policy.timeoutMs);
    socket.once('close', () => this.onClientClose());
    this.owner.forwarder.tunnel(
      { req, socket, head: this.head, endpoint, path: upstreamPath(this.config.target.pathname, this.rest, this.query) },
      this,
    );
  }

  onTunnelRequest(proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq;
    if (this.phase !== 'handshake') proxyReq.destroy();
  }

  /** The upstream switched protocols: a success; from now on nothing on the connection counts. */
  onTunnelOpen(proxyRes: IncomingMessage, upstream: Socket): void {
    if (this.phase !== 'handshake') {
      upstream.destroy();
      return;
    }
    this.upstream = upstream;
    this.phase = 'open';
    this.settle('success', '');
    // What http-proxy writes after this listener: the 101 with these headers (src/proxy/forwarder.ts).
    const h = proxyRes.headers;
    dropHopByHop(h, true);
    h['x-request-id'] = this.requestId;
    this.openedAt = performance.now();
    this.record(101, 'success', 1);
    const idle = this.owner.tunnelIdleMs;
    // A socket's timeout counts reads and writes: the client socket idle is the tunnel idle both ways.
    if (idle !== undefined) this.socket.setTimeout(idle, () => this.close());
    upstream.once('close', () => this.sideClosed(this.socket));
    this.owner.opened(this);
  }

  /**
   * Any answer but a 101: counted by its status and relayed by http-proxy, with the head made
   * here: hop-by-hop headers out, close-delimited (its body arrives decoded, RFC 9112 §6.3).
   */
  onTunnelRefused(proxyRes: IncomingMessage): void {
    if (this.phase !== 'handshake') {
      proxyRes.destroy();
      return;
    }
    this.phase = 'done';
    this.clearTimer();
    const status = proxyRes.statusCode ?? 502;
    const failure = isFailureStatus(this.policy.failureStatuses, status);
    if (failure) this.fail({ reason: 'status', cause: `status ${status}`, status });
    else this.settle('success', '');
    const h = proxyRes.headers;
    dropHopByHop(h, false);
    h['x-request-id'] = this.requestId;
    h.connection = 'close';
    const socket = this.socket;
    // Cut short: the close-delimited body must not pass as complete.
    proxyRes.on('close', () => {
      if (!proxyRes.complete) socket.destroy();
    });
    this.record(status, failure ? 'failure' : 'success', 1);
  }

  /** The upstream request failed: before the answer, a failure (502); after the 101, the tunnel's end. */
  onTunnelError(err: NodeJS.ErrnoException): void {
    if (this.phase !== 'handshake') return;
    if (this.gone) {
      this.phase = 'done';
      this.clearTimer();
      this.settle('abandoned', '');
      return;
    }
    const c = classifyUpstreamError(err);
    const o = this.fail({ reason: c.reason, cause: c.cause, code: err.code });
    this.problem(statusForFailure(o.reason), 'Bad Gateway', `${this.name} unreachable: ${o.cause}${this.at(o)}`);
  }

  private timedOut(): void {
    this.timer = undefined;
    if (this.phase !== 'handshake') return;
    const o = this.fail({
      reason: 'timeout',
      cause: `no handshake answer within ${formatDuration(this.policy.timeoutMs)}`,
      code: 'ETIMEDOUT',
    });
    this.problem(504, 'Gateway Timeout', `${this.name} timed out after ${formatDuration(this.policy.timeoutMs)}${this.at(o)}`);
    this.proxyReq?.destroy();
  }

  /** With several endpoints, which one failed. */
  private at(o: UpstreamOutcome): string {
    return this.endpoints.several ? ` (endpoint ${o.endpoint})` : '';
  }

  /** A problem+json answer of the proxy's own, written to the socket, which then closes. */
  problem(status: number, title: string, detail: string): void {
    this.phase = 'done';
    this.clearTimer();
    const outcome: Outcome = this.told ? 'failure' : 'abandoned';
    writeProblem(this.socket, { status, title, detail, service: this.name }, ['x-request-id', this.requestId]);
    this.record(status, outcome, this.endpoint === undefined ? 0 : 1);
  }

  /** The client left before the handshake's answer: neither success nor failure; the upstream request goes. */
  private onClientClose(): void {
    if (this.phase === 'open') {
      this.sideClosed(this.upstream);
      return;
    }
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.clearTimer();
    this.settle('abandoned', '');
    this.proxyReq?.destroy();
    this.record(CLIENT_CLOSED, 'abandoned', 1);
  }

  /** One side of an open tunnel closed: the other finishes its close, and is destroyed if it lingers. */
  private sideClosed(other: Socket | undefined): void {
    this.sidesOpen -= 1;
    if (other !== undefined && !other.destroyed) {
      other.end();
      other.setTimeout(LINGER_MS, () => other.destroy());
    }
    if (this.sidesOpen === 0) {
      this.phase = 'done';
      this.owner.closed(this);
    }
  }

  /** Closes an open tunnel at once, both sides (tunnelIdle, or the end of a drain's grace period). */
  close(): void {
    this.socket.destroy();
    this.upstream?.destroy();
    this.proxyReq?.destroy();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The handshake's outcome, told once to the circuit and the endpoint; the admission's places go back. */
  private settle(verdict: 'success' | 'failure' | 'abandoned', cause: string, o?: UpstreamOutcome): void {
    if (this.told) return;
    this.told = true;
    this.clearTimer();
    if (verdict === 'success') this.circuit.success(this.ticket, false);
    else if (verdict === 'failure') this.circuit.failure(this.ticket, o!);
    else this.circuit.abandon(this.ticket);
    const ep = this.endpoint;
    if (ep !== undefined) {
      this.endpoints.outcome(ep, verdict, cause);
      this.endpoints.done(ep);
    }
    // No bulkhead place is held once the handshake is answered (docs/websocket.md).
    this.chain.release(this);
  }

  private fail(fields: OutcomeFields): UpstreamOutcome {
    const o = failed({
      ...fields,
      endpoint: this.endpoint?.address ?? '',
      written: this.proxyReq !== undefined && fields.reason !== 'connect',
      requestId: this.requestId,
    });
    this.settle('failure', o.cause, o);
    return o;
  }

  /** The handshake's `completed` record, once per handshake (also for the handler's answers without an upstream). */
  record(status: number, outcome: Outcome, attempts: number): void {
    this.owner.completed({
      service: this.name,
      status,
      outcome,
      durationSeconds: (performance.now() - this.started) / 1000,
      method: this.req.method ?? '',
      path: this.req.url ?? '',
      requestId: this.requestId,
      attempts,
      ...(this.route !== undefined ? { route: this.route } : {}),
    });
  }

  private end(status: number, outcome: Outcome, attempts: number): void {
    this.phase = 'done';
    this.chain.release(this);
    this.record(status, outcome, attempts);
  }
}

/** An HTTP/1.1 response head from a flat `[name, value, ...]` list. */
function head(status: number, reason: string, headers: readonly string[]): string {
  let s = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return s + '\r\n';
}

/** A complete response on a raw socket (`headers` with its `content-length`), then the socket's end. */
function writeRaw(socket: Socket, status: number, headers: readonly string[], body: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(head(status, STATUS_CODES[status] ?? '', [...headers, 'connection', 'close']) + body);
}

/** A problem+json answer on a raw socket (an upgrade's). */
export function writeProblem(socket: Socket, p: Problem, extra: readonly string[] = []): void {
  const body = problemBody(p.status, p.title, p.detail, p.service).toString();
  const headers = [
    'content-type',
    'application/problem+json',
    'content-length',
    String(Buffer.byteLength(body)),
    'cache-control',
    'no-store',
  ];
  writeRaw(socket, p.status, [...headers, ...extra], body);
}

/** The open circuit's or the bulkhead's 503 on a raw socket. */
export function writeCanned(socket: Socket, canned: CannedProblem, retryAfterSeconds: number, requestId: string): void {
  writeRaw(socket, canned.status, canned.headersFor(retryAfterSeconds, requestId), canned.body);
}
