import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { AdmissionChain, Admittee, WouldRejectReason } from '../admission/chain.js';
import type { Circuit } from '../circuit/circuit.js';
import { formatDuration } from '../config/duration.js';
import type { CallPolicy, RouteConfig, ServiceConfig } from '../config/types.js';
import { statusForFailure, type UpstreamOutcome } from '../outcome.js';
import { mayRetry, retryDelay, type NoRetry } from '../policy/retry.js';
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
  /** Upstream attempts made (1 without a retry; 0 when none was). */
  readonly attempts: number;
  /** For a service with routes: the route taken (its name or index), `-` for none (docs/routes.md). */
  readonly route?: string;
  /** Why the last failed attempt was not retried, where retries are set and it failed. */
  readonly noRetry?: NoRetry | 'budget' | 'circuit';
}

/** A retry about to start (logs, docs/retries.md). */
export interface RetryEvent {
  readonly service: string;
  readonly requestId: string;
  /** The attempt about to start (2 for the first retry). */
  readonly attempt: number;
  /** The failure retried, as `on` names it. */
  readonly reason: string;
  /** The endpoint that failed. */
  readonly endpoint: string;
  readonly delayMs: number;
}

/** Client closed before the response completed (nginx's convention). */
export const CLIENT_CLOSED = 499;

/** How long the upstream may take to answer `Expect: 100-continue` before the proxy sends the 100 itself (curl waits 1 s). */
export const CONTINUE_WAIT_MS = 1000;

/** `Expect: 100-continue` (RFC 9110 §10.1.1; the token is case-insensitive). */
function expectsContinue(req: IncomingMessage): boolean {
  const e = req.headers.expect;
  return e !== undefined && e.trim().toLowerCase() === '100-continue';
}

/** What a call needs from the handler that made it. */
export interface CallOwner {
  /** Responses carry `Connection: close` while draining. */
  readonly draining: boolean;
  /** `clientTimeouts.bodyIdle`: the longest a client may pause while sending its body. */
  readonly clientBodyIdleMs: number;
  readonly forwarder: Forwarder;
  completed(record: Completed): void;
  wouldReject(service: string, reason: WouldRejectReason): void;
  retrying(e: RetryEvent): void;
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
  /** The endpoint the current attempt goes to. */
  endpoint!: Endpoint;
  private attempt: Attempt | undefined;
  private attempts = 0;
  /** Endpoints whose attempt failed: a retry goes elsewhere when it can. */
  private failedAt: Set<Endpoint> | undefined;
  /** The client's body as it went to the first attempt, while it fits `retries.bufferBytes`. */
  private kept: Buffer[] | undefined;
  private keptBytes = 0;
  private keptAll = false;
  /** A retry waits out its backoff (or the rest of the client's body). */
  private retryTimer: NodeJS.Timeout | undefined;
  /** A failed attempt whose response is held while its retry waits (docs/retries.md). */
  private parked: Attempt | undefined;
  /** This call holds a place in the service's retry budget. */
  private holdsBudget = false;
  /** Between a failed attempt and the retry's start: no attempt in flight. */
  private waiting = false;
  /** The current attempt's endpoint counts it in flight (`done` not yet called). */
  private onEndpoint = false;
  private noRetry: Completed['noRetry'];
  /** The client sent `Expect: 100-continue` and has not been told to send its body yet. */
  expectsContinue = false;
  private continueTimer: NodeJS.Timeout | undefined;

  /** For a service with routes: the route taken, `-` for none; undefined for a service without. */
  readonly route: string | undefined;
  /** `clientTimeouts.bodyIdle` for this call: its route's, else the proxy's. */
  readonly clientBodyIdleMs: number;

  constructor(
    readonly owner: CallOwner,
    private readonly service: Service,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    route: RouteConfig | undefined,
  ) {
    this.config = service.config;
    this.policy = route?.call ?? this.config.call;
    this.route = this.config.routes.length === 0 ? undefined : (route?.name ?? '-');
    this.clientBodyIdleMs = this.policy.clientBodyIdleMs ?? owner.clientBodyIdleMs;
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

  /** What a retry sends: the first attempt's body, kept whole; undefined for the first attempt. */
  get replay(): readonly Buffer[] | undefined {
    return this.attempts > 1 && this.hasBody ? this.kept : undefined;
  }

  /** Admitted: the first attempt goes upstream. */
  forward(): void {
    const req = this.req;
    // Read before the hop-by-hop headers go: the expectation is the upstream's to answer.
    this.expectsContinue = expectsContinue(req);
    prepareRequestHeaders(req.headers, this.requestId, req.socket.remoteAddress);
    this.hasBody = hasBody(req.headers);
    this.res.on('close', () => this.onClientClose());
    this.start(this.ticket);
  }

  /** One attempt: an endpoint picked (another than those that failed, when there is one), then upstream. */
  private start(ticket: number): void {
    this.parked?.discard();
    this.parked = undefined;
    const endpoint = this.endpoints.pick(this.failedAt);
    endpoint.inFlight += 1;
    this.onEndpoint = true;
    this.waiting = false;
    this.endpoint = endpoint;
    this.attempts += 1;
    const attempt = new Attempt(this, this.circuit, endpoint, ticket, this.attempts > 1);
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
   * The client is told to send its body: the upstream's 100 relayed, or the proxy's own when the
   * upstream has said nothing for CONTINUE_WAIT_MS (RFC 9110 §10.1.1: a client waits a while, then
   * sends anyway; the upstream may not implement the expectation). At most once.
   */
  sendContinue(): void {
    this.clearContinueTimer();
    if (!this.expectsContinue) return;
    this.expectsContinue = false;
    const res = this.res;
    if (!res.headersSent && !res.destroyed) res.writeContinue();
  }

  /**
   * The upstream answered before it had the whole body. A client told to wait (Expect, no 100)
   * sends none: its connection closes after the answer, so no unsent body is due on it. Any
   * other client is mid-upload: the rest of its body is read and dropped, so it can finish and
   * read the answer; closing on it would reset its connection and lose the answer, as the
   * upstream's own close did one hop in (docs/behaviour.md, "Early answers").
   */
  earlyAnswer(): void {
    if (this.expectsContinue) {
      this.res.shouldKeepAlive = false;
      return;
    }
    this.req.unpipe();
    this.req.resume();
  }

  /** The first attempt's request went out with `Expect: 100-continue`: wait for the upstream's say. */
  awaitContinue(): void {
    if (!this.expectsContinue || this.continueTimer !== undefined) return;
    this.continueTimer = setTimeout(() => {
      this.continueTimer = undefined;
      this.sendContinue();
    }, CONTINUE_WAIT_MS);
  }

  /** A final answer went (or the call ended): no 100 any more. */
  noContinue(): void {
    this.clearContinueTimer();
    this.expectsContinue = false;
  }

  private clearContinueTimer(): void {
    if (this.continueTimer === undefined) return;
    clearTimeout(this.continueTimer);
    this.continueTimer = undefined;
  }

  /** Called in the tick the first attempt's body starts: keep its chunks while they fit. */
  keepBody(): void {
    const rule = this.policy.retries;
    if (rule === undefined) return;
    const max = rule.bufferBytes;
    const kept: Buffer[] = [];
    this.kept = kept;
    const req = this.req;
    const onData = (chunk: Buffer): void => {
      this.keptBytes += chunk.length;
      if (this.keptBytes <= max) kept.push(chunk);
      else {
        // Larger than bufferBytes: it streams, and is not retried (docs/retries.md).
        this.kept = undefined;
        req.off('data', onData);
      }
    };
    req.on('data', onData);
    req.once('end', () => {
      this.keptAll = this.kept !== undefined;
    });
  }

  /**
   * The decision point for a failure status: retried (the response is dropped unseen) or
   * answered as it came.
   */
  retryInstead(o: UpstreamOutcome, from: Attempt): boolean {
    if (from !== this.attempt || this.policy.retries === undefined || !this.retry(o)) return false;
    this.parked = from;
    return true;
  }

  /**
   * The decision point: an attempt has response headers and was not retried (its outcome, for
   * a failure status, is already reported). The client gets them.
   */
  respond(proxyRes: IncomingMessage, trailers: boolean): void {
    const res = this.res;
    this.noContinue();
    if (this.owner.draining) res.shouldKeepAlive = false;
    const headers = responseHeaders(proxyRes.rawHeaders, proxyRes.headers.connection, this.requestId, trailers);
    if (this.attempts > 1) headers.push('x-circuit-attempts', String(this.attempts));
    this.releaseBudget();
    res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, headers);
  }

  /** The attempt failed before response headers: retried, or the problem answer (502, 504) naming the service. */
  failed(o: UpstreamOutcome, from: Attempt): void {
    if (from !== this.attempt) return;
    if (this.policy.retries !== undefined && this.retry(o)) return;
    this.answer(o);
  }

  /**
   * Whether the failed attempt is tried again (docs/retries.md, the decision table): the rule,
   * then the budget; the circuit is asked when the retry starts, after its backoff.
   */
  private retry(o: UpstreamOutcome): boolean {
    const rule = this.policy.retries!;
    const req = this.req;
    const replayable = !this.hasBody || (this.kept !== undefined && (this.keptAll || req.complete));
    const v = mayRetry({
      rule,
      attempts: this.attempts,
      outcome: o,
      method: req.method ?? '',
      hasIdempotencyKey: req.headers['idempotency-key'] !== undefined,
      replayable,
      clientGone: this.gone,
    });
    if (!v.retry) {
      this.noRetry = v.why;
      return false;
    }
    // One place in the budget per call, however many retries it makes (docs/retries.md).
    const budget = this.service.retryBudget;
    if (this.holdsBudget) budget.count(v.reason);
    else if (budget.acquire(v.reason, rule.budgetRatio, rule.minPerSecond, this.service.inFlight)) this.holdsBudget = true;
    else {
      this.noRetry = 'budget';
      return false;
    }
    this.endpointDone();
    (this.failedAt ??= new Set()).add(this.endpoint);
    this.waiting = true;
    const delayMs = retryDelay(this.attempts, rule, o.retryAfterMs, Math.random);
    this.owner.retrying({
      service: this.config.name,
      requestId: this.requestId,
      attempt: this.attempts + 1,
      reason: v.reason,
      endpoint: o.endpoint,
      delayMs,
    });
    this.retryTimer = setTimeout(() => this.afterBackoff(o), delayMs);
    return true;
  }

  /** The backoff is over: the rest of the client's body first, then the circuit's say, then the attempt. */
  private afterBackoff(last: UpstreamOutcome): void {
    this.retryTimer = undefined;
    if (this.gone) return;
    if (this.hasBody && !this.keptAll) {
      // The parser has the whole body (checked before), the stream not yet all of it: let it flow.
      const req = this.req;
      if (this.kept === undefined || req.readableEnded) return this.giveUp(last, 'body');
      req.once('end', () => (this.kept === undefined ? this.giveUp(last, 'body') : this.afterBackoff(last)));
      req.once('close', () => {
        if (!this.keptAll && !this.gone) this.giveUp(last, 'body');
      });
      req.resume();
      return;
    }
    if (!this.chain.readmit(this)) return this.giveUp(last, 'circuit');
    this.start(this.ticket);
  }

  /** No retry after all: the client gets the last real error, not a 503 it did not cause. */
  private giveUp(last: UpstreamOutcome, why: NonNullable<Completed['noRetry']>): void {
    if (this.gone || this.res.headersSent) return;
    this.noRetry = why;
    this.waiting = false;
    const held = this.parked;
    this.parked = undefined;
    if (held !== undefined && held.deliver()) return;
    this.answer(last);
  }

  private endpointDone(): void {
    if (!this.onEndpoint) return;
    this.onEndpoint = false;
    this.endpoints.done(this.endpoint);
  }

  private releaseBudget(): void {
    if (!this.holdsBudget) return;
    this.holdsBudget = false;
    this.service.retryBudget.release();
  }

  /** The problem answer (502, 504) for the last failed attempt. */
  private answer(o: UpstreamOutcome): void {
    this.releaseBudget();
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
    this.problem(408, 'Request Timeout', `request body idle for ${formatDuration(this.clientBodyIdleMs)}`);
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

  /** A problem+json answer of the proxy's own for this service, with the request id (and the attempts, past one). */
  private problem(status: number, title: string, detail: string): void {
    this.noContinue();
    const extra =
      this.attempts > 1 ? ['x-request-id', this.requestId, 'x-circuit-attempts', String(this.attempts)] : ['x-request-id', this.requestId];
    sendProblem(this.req, this.res, { status, title, detail, service: this.config.name }, extra);
  }

  /** The client response closed, finished or not: the call ends here, whatever happened. */
  private onClientClose(): void {
    const res = this.res;
    const attempt = this.attempt!;
    // Left while a retry waited: the call ends abandoned, the failed attempt's outcome stands.
    const waiting = this.waiting;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.clearContinueTimer();
    this.releaseBudget();
    if (!res.writableFinished) attempt.clientLeft();
    else attempt.end();
    this.endpointDone();
    this.chain.release(this);
    const verdict = waiting ? 'abandoned' : attempt.verdict;
    const left = verdict === 'abandoned' && !res.writableFinished;
    this.owner.completed({
      service: this.config.name,
      status: left ? CLIENT_CLOSED : res.statusCode,
      outcome: verdict === 'pending' ? 'abandoned' : verdict,
      durationSeconds: (performance.now() - this.started) / 1000,
      method: this.req.method ?? '',
      path: this.req.url ?? '',
      requestId: this.requestId,
      attempts: this.attempts,
      ...(this.route !== undefined ? { route: this.route } : {}),
      ...(this.noRetry !== undefined && verdict === 'failure' ? { noRetry: this.noRetry } : {}),
    });
  }
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}
