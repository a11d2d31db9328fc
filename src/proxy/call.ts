import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { AdmissionChain, Admittee, WouldRejectReason } from '../admission/chain.js';
import type { Circuit } from '../circuit/circuit.js';
import { formatDuration } from '../config/duration.js';
import type { CallPolicy, ServiceConfig } from '../config/types.js';
import { statusForFailure, type UpstreamOutcome } from '../outcome.js';
import type { Endpoint, EndpointSet } from '../upstream/endpoints.js';
import type { Service } from '../upstream/service.js';
import { Attempt, type AttemptOwner } from './attempt.js';
import type { Forwarder } from './forwarder.js';
import { hasBody, prepareRequestHeaders, responseHeaders } from './headers.js';
import { sendProblem } from './problem.js';
import { upstreamPath } from './router.js';

/** How a proxied request ended: `rejected` by the circuit (or its fallback), `shed` by the bulkhead. */
export type Outcome = 'success' | 'failure' | 'rejected' | 'shed' | 'abandoned';

/** One record per request that named a configured service, for metrics and access logs. */
export interface Completed {
  readonly service: string;
  /** Status sent to the client; 499 when the client left before a response was complete. */
  readonly status: number;
  readonly outcome: Outcome;
  readonly durationSeconds: number;
  readonly method: string;
  readonly path: string;
  readonly requestId: string;
}

/** Client closed before the response completed (nginx's convention). */
export const CLIENT_CLOSED = 499;

/** What a call needs from the handler that made it. */
export interface CallOwner {
  /** Responses carry `Connection: close` while draining. */
  readonly draining: boolean;
  /** `clientTimeouts.bodyIdle`: the longest a client may pause while sending its body. */
  readonly clientBodyIdleMs: number;
  readonly forwarder: Forwarder;
  completed(record: Completed): void;
  wouldReject(service: string, reason: WouldRejectReason): void;
}

/**
 * One client request to a configured service: the request context (no positional lists), the
 * downstream side (the client's request and response), what admission gave it, its attempts, and
 * the one answer the client gets. The `Completed` record is emitted once, when the client
 * response closes, whatever happened (docs/architecture.md, "The call").
 */
export class Call implements Admittee, AttemptOwner {
  ticket = 0;
  counted = false;
  readonly started = performance.now();
  /** Set by the router: the path after `/svc/<name>` and the query, as received. */
  rest = '';
  query = '';
  requestId = '';
  hasBody = false;
  /** Taken at admission: a reload in between changes nothing for this call. */
  readonly config: ServiceConfig;
  readonly policy: CallPolicy;
  readonly circuit: Circuit;
  readonly chain: AdmissionChain;
  readonly endpoints: EndpointSet;
  /** The endpoint the attempt goes to, picked when the call is forwarded. */
  endpoint!: Endpoint;
  private attempt: Attempt | undefined;

  constructor(
    readonly owner: CallOwner,
    service: Service,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {
    this.config = service.config;
    this.policy = this.config.call;
    this.circuit = service.circuit;
    this.chain = service.admission;
    this.endpoints = service.endpoints;
  }

  /** The client's response can take nothing more. */
  get gone(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** The path the upstream sees: base path + rest + query. */
  get path(): string {
    return upstreamPath(this.config.target.pathname, this.rest, this.query);
  }

  wouldReject(reason: WouldRejectReason): void {
    this.owner.wouldReject(this.config.name, reason);
  }

  /** Admitted: the first (today the only) attempt goes upstream. */
  forward(): void {
    const req = this.req;
    prepareRequestHeaders(req.headers, this.requestId, req.socket.remoteAddress);
    this.hasBody = hasBody(req.headers);
    this.res.on('close', () => this.onClientClose());
    const endpoint = this.endpoints.pick();
    endpoint.inFlight += 1;
    this.endpoint = endpoint;
    const attempt = new Attempt(this, this.circuit);
    this.attempt = attempt;
    try {
      this.owner.forwarder.forward(this, attempt);
    } catch (err) {
      // Node refused to build the upstream request (e.g. a header value it will not send):
      // the client's fault, not the upstream's, so the circuit is not told.
      attempt.refuse();
      this.problem(400, 'Bad Request', `request cannot be forwarded: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }

  /**
   * The decision point: an attempt has response headers (its outcome, for a failure status, is
   * already reported). With one attempt per call, the client gets them.
   */
  respond(proxyRes: IncomingMessage, trailers: boolean): void {
    const res = this.res;
    if (this.owner.draining) res.shouldKeepAlive = false;
    res.writeHead(
      proxyRes.statusCode ?? 502,
      proxyRes.statusMessage,
      responseHeaders(proxyRes.rawHeaders, proxyRes.headers.connection, this.requestId, trailers),
    );
  }

  /** The attempt failed before response headers: the problem answer (502, 504) naming the service. */
  failed(o: UpstreamOutcome): void {
    const name = this.config.name;
    // With several endpoints, which one failed (docs/endpoints.md); one URL is the service itself.
    const at = this.endpoints.several ? ` (endpoint ${o.endpoint})` : '';
    if (o.reason === 'timeout') {
      this.problem(statusForFailure('timeout'), 'Gateway Timeout', `${name} timed out after ${formatDuration(this.policy.timeoutMs)}${at}`);
    } else {
      this.problem(statusForFailure(o.reason), 'Bad Gateway', `${name} unreachable: ${o.cause}${at}`);
    }
  }

  /** The client paused its body past `clientTimeouts.bodyIdle`: 408, the connection not kept. */
  clientStalled(): void {
    this.res.shouldKeepAlive = false;
    this.problem(408, 'Request Timeout', `request body idle for ${formatDuration(this.owner.clientBodyIdleMs)}`);
  }

  /** The chosen attempt's body is complete. */
  finish(rawTrailers: readonly string[] | undefined): void {
    if (rawTrailers !== undefined) this.res.addTrailers(pairs(rawTrailers));
    this.res.end();
  }

  /**
   * The chosen attempt's body was cut: the client connection is reset (RST), so no client can
   * take the short body for a complete one (a clean close would pass as complete to clients that
   * do not check `Content-Length`).
   */
  cut(): void {
    const socket = this.res.socket;
    if (socket && !socket.destroyed) socket.resetAndDestroy();
    else this.res.destroy();
  }

  /** A problem+json answer of the proxy's own for this service, with the request id. */
  private problem(status: number, title: string, detail: string): void {
    sendProblem(this.req, this.res, { status, title, detail, service: this.config.name }, ['x-request-id', this.requestId]);
  }

  /** The client response closed, finished or not: the call ends here, whatever happened. */
  private onClientClose(): void {
    const res = this.res;
    const attempt = this.attempt!;
    if (!res.writableFinished) attempt.clientLeft();
    else attempt.end();
    this.endpoints.done(this.endpoint);
    this.chain.release(this);
    const verdict = attempt.verdict;
    const left = verdict === 'abandoned' && !res.writableFinished;
    this.owner.completed({
      service: this.config.name,
      status: left ? CLIENT_CLOSED : res.statusCode,
      outcome: verdict === 'pending' ? 'abandoned' : verdict,
      durationSeconds: (performance.now() - this.started) / 1000,
      method: this.req.method ?? '',
      path: this.req.url ?? '',
      requestId: this.requestId,
    });
  }
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}
