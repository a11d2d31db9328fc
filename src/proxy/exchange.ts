import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FailureReason, ServiceBreaker } from '../breaker/index.js';
import { formatDuration } from '../config/duration.js';
import { isFailureStatus, type ServiceConfig } from '../config/types.js';
import { retryAfterMs } from '../policy/retry-after.js';
import { classifyUpstreamError } from './failure.js';
import type { ForwardSink } from './forwarder.js';
import { responseHeaders } from './headers.js';
import { sendProblem } from './problem.js';

/** How a proxied request ended: `rejected` by the breaker (or its fallback), `shed` by the bulkhead. */
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

/**
 * Where a forwarded request is (docs/architecture.md, "The exchange"):
 * - `sending`: the client is still sending its body; the proxy waits on the client
 *   (`clientTimeouts.bodyIdle` between chunks, 408 and no outcome when it passes);
 * - `awaiting-headers`: the whole request is in; the proxy waits on the upstream (`timeout`, 504);
 * - `streaming`: the response body flows to the client (`bodyIdleTimeout` between chunks, not
 *   counted while the client is the one not reading);
 * - `done`: nothing more happens but the `completed` record when the client response closes.
 */
export type Phase = 'sending' | 'awaiting-headers' | 'streaming' | 'done';

/** Whether the breaker has been told, and what. */
type Verdict = 'pending' | 'success' | 'failure' | 'abandoned';

export interface ExchangeOwner {
  /** Responses carry `Connection: close` while draining. */
  readonly draining: boolean;
  /** `clientTimeouts.bodyIdle`: the longest a client may pause while sending its body. */
  readonly clientBodyIdleMs: number;
  completed(record: Completed): void;
}

/**
 * One forwarded request, from admission to the client response's `close`: its phase, its one
 * timer, the verdict it reports to the breaker (exactly once), the response it writes.
 * The forwarder reports upstream events to it; each method says what the event does in each phase.
 */
export class Exchange implements ForwardSink {
  private phase: Phase = 'awaiting-headers';
  private verdict: Verdict = 'pending';
  /**
   * The one timer, and the wait it guards: the current phase's limit counted from `since` (the
   * phase's start or its last progress). The timer may be due later than the wait's end only
   * never: it is re-armed when a wait would end sooner; when it fires early (the wait moved on),
   * it is re-armed for the rest. So a request that completes in time creates one timer, and
   * progress costs a clock read, not a timer update (paired bench: two timers a request were ~3%
   * of the closed path's CPU).
   */
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  private since: number;
  private limitMs = 0;
  /** When a request still waiting for headers becomes a slow call (`slowCalls.duration`), if it can. */
  private slowAt = Infinity;
  /** Reported to the breaker as a slow call (it then counts once). */
  private slow = false;
  private proxyReq: ClientRequest | undefined;
  private proxyRes: IncomingMessage | undefined;
  private trailers = false;
  /** The streaming timer fired: the upstream response's `close` that follows is a stall, not a reset. */
  private bodyStalled = false;

  constructor(
    private readonly owner: ExchangeOwner,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly breaker: ServiceBreaker,
    private readonly ticket: number,
    private readonly requestId: string,
    private readonly started: number,
    hasBody: boolean,
  ) {
    this.since = started;
    breaker.load.n += 1; // given back in onClientClose, however the exchange ends
    res.on('close', () => this.onClientClose());
    if (hasBody && !req.complete) {
      this.phase = 'sending';
      this.wait(this.owner.clientBodyIdleMs);
    } else {
      this.awaitHeaders();
    }
  }

  private get svc(): ServiceConfig {
    return this.breaker.config;
  }

  onUpstreamRequest(proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq;
    if (this.phase === 'done') {
      proxyReq.destroy();
      return;
    }
    if (this.phase === 'sending') {
      // Attached in the same tick as the forwarder's pipe of the body, so no chunk flows past
      // either (a 'data' listener alone would start the body flowing).
      const progress = (): void => {
        if (this.phase === 'sending') this.since = performance.now();
      };
      this.req.on('data', progress);
      this.req.on('end', () => this.onClientBodyEnd());
      // The upstream taking body bytes again is progress too.
      proxyReq.on('drain', progress);
    }
  }

  /** sending → awaiting-headers: from here the wait is the upstream's (its `timeout`). */
  private onClientBodyEnd(): void {
    if (this.phase !== 'sending') return;
    this.awaitHeaders();
  }

  /** The whole request is in: the upstream's `timeout` runs, and the slow-call clock (docs/policies.md). */
  private awaitHeaders(): void {
    this.phase = 'awaiting-headers';
    this.wait(this.svc.timeoutMs);
    const slowMs = this.svc.slowCalls?.durationMs;
    if (slowMs !== undefined && slowMs < this.svc.timeoutMs) {
      this.slowAt = this.since + slowMs;
      this.armBy(this.slowAt);
    }
  }

  /** The timer fired: act if the current wait is over, else re-arm for the rest of it. */
  onTimer(): void {
    this.timer = undefined;
    if (this.phase === 'done') return;
    const now = performance.now();
    if (now >= this.slowAt) {
      // Still no response headers: a slow call from this moment, while it is in flight.
      this.slowAt = Infinity;
      this.slow = true;
      this.breaker.slow(this.ticket);
    }
    if (this.limitMs === Infinity) return;
    const due = this.since + this.limitMs;
    if (now < due) {
      this.armBy(Math.min(due, this.slowAt));
      return;
    }
    switch (this.phase) {
      case 'sending':
        // Nothing moved for bodyIdle. Bytes still queued for the upstream: it is the one not
        // taking them (or not even connected). None: the client stopped sending.
        if ((this.proxyReq?.writableLength ?? 0) === 0) return this.clientStalled();
        return this.upstreamTimedOut(`request body not accepted within ${formatDuration(this.owner.clientBodyIdleMs)}`);
      case 'awaiting-headers':
        return this.upstreamTimedOut(`no response headers within ${formatDuration(this.svc.timeoutMs)}`);
      case 'streaming':
        // The response body stalled: cut it; the upstream response's `close` reports it.
        this.bodyStalled = true;
        this.proxyReq?.destroy();
        return;
    }
  }

  private clientStalled(): void {
    this.abandon();
    this.end();
    this.proxyReq?.destroy();
    this.res.shouldKeepAlive = false;
    this.answer(408, 'Request Timeout', `request body idle for ${formatDuration(this.owner.clientBodyIdleMs)}`);
  }

  private upstreamTimedOut(cause: string): void {
    this.fail('timeout', cause, 'ETIMEDOUT');
    this.end();
    this.proxyReq?.destroy();
    this.answer(504, 'Gateway Timeout', `${this.svc.name} timed out after ${formatDuration(this.svc.timeoutMs)}`);
  }

  onUpstreamError(err: NodeJS.ErrnoException): void {
    if (this.phase !== 'sending' && this.phase !== 'awaiting-headers') return;
    // The client's own request failed (http-proxy reports those here too): the response's
    // `close` settles it as abandoned.
    if (this.req.errored === err) return;
    this.end();
    if (this.res.destroyed || this.res.writableEnded) {
      this.abandon();
      return;
    }
    const c = classifyUpstreamError(err);
    this.fail(c.reason, c.cause, err.code);
    this.answer(502, 'Bad Gateway', `${this.svc.name} unreachable: ${c.cause}`);
  }

  onUpstreamResponse(proxyRes: IncomingMessage): void {
    this.proxyRes = proxyRes;
    if (this.phase !== 'sending' && this.phase !== 'awaiting-headers') {
      proxyRes.destroy();
      return;
    }
    this.phase = 'streaming';
    this.slowAt = Infinity;
    const svc = this.svc;
    const res = this.res;
    const status = proxyRes.statusCode ?? 502;
    if (isFailureStatus(svc.failureStatuses, status)) {
      const honoured = svc.retryAfter && retryAfterMs(proxyRes.headers['retry-after'], Date.now(), svc.retryAfter.maxMs);
      this.fail('status', `status ${status}`, undefined, honoured || undefined);
    }
    this.wait(svc.bodyIdleTimeoutMs);
    const trailers =
      proxyRes.headers.trailer !== undefined &&
      proxyRes.headers['content-length'] === undefined &&
      this.req.httpVersion === '1.1' &&
      this.req.method !== 'HEAD';
    this.trailers = trailers;
    if (this.owner.draining) res.shouldKeepAlive = false;
    res.writeHead(
      status,
      proxyRes.statusMessage,
      responseHeaders(proxyRes.rawHeaders, proxyRes.headers.connection, this.requestId, trailers),
    );
    proxyRes.on('close', () => this.onUpstreamClose(proxyRes));
    // Not proxyRes.pipe(res): a pipe's listener setup and teardown on both streams costs more
    // than this loop for small responses. Back-pressure as pipe keeps it: see awaitDrain.
    proxyRes.on('data', (chunk: Buffer) => {
      this.since = performance.now();
      if (!res.write(chunk)) this.awaitDrain(proxyRes);
    });
  }

  /**
   * The client is not keeping up: stop reading the upstream until the client's buffer drains.
   * The wait is the client's doing, so the body idle timer is off meanwhile: a slow reader must
   * not count as a stalled upstream against the breaker.
   */
  private awaitDrain(proxyRes: IncomingMessage): void {
    proxyRes.pause();
    this.limitMs = Infinity;
    this.res.once('drain', () => {
      if (this.phase !== 'streaming') return;
      this.wait(this.svc.bodyIdleTimeoutMs);
      proxyRes.resume();
    });
  }

  onUpstreamEnd(proxyRes: IncomingMessage): void {
    if (this.phase !== 'streaming' || !proxyRes.complete) return;
    this.end();
    if (this.trailers && proxyRes.rawTrailers.length > 0) this.res.addTrailers(pairs(proxyRes.rawTrailers));
    this.res.end();
    if (this.verdict === 'pending') {
      this.verdict = 'success';
      this.breaker.success(this.ticket, this.slow);
    }
  }

  /**
   * The upstream response closed. Incomplete (reset, closed before its length, or cut for
   * stalling) in `streaming`: a failure, and the client connection is reset, so no client can
   * take the short body for a complete one (a clean close would pass as complete to clients that
   * do not check `Content-Length`).
   */
  private onUpstreamClose(proxyRes: IncomingMessage): void {
    if (proxyRes.complete || this.phase !== 'streaming') return;
    this.end();
    if (this.verdict === 'pending') {
      const stalled = this.bodyStalled;
      const cause = stalled
        ? `response body stalled for ${formatDuration(this.svc.bodyIdleTimeoutMs)}`
        : 'connection reset during response body';
      this.fail('reset', cause, stalled ? 'ETIMEDOUT' : 'ECONNRESET');
    }
    resetClient(this.res);
  }

  /** Node refused to build the upstream request (a header value it will not send): 400, no outcome. */
  refuse(err: NodeJS.ErrnoException): void {
    this.abandon();
    this.end();
    this.proxyReq?.destroy();
    this.answer(400, 'Bad Request', `request cannot be forwarded: ${err.code ?? err.message}`);
  }

  /** The client response closed, finished or not: the exchange ends here, in every phase. */
  private onClientClose(): void {
    const res = this.res;
    if (!res.writableFinished) {
      // The client left (http-proxy #1586): abort upstream so no socket leaks.
      if (this.verdict === 'pending') this.abandon();
      this.proxyReq?.destroy();
      this.proxyRes?.destroy();
    }
    this.end();
    this.breaker.load.n -= 1;
    const left = this.verdict === 'abandoned' && !res.writableFinished;
    this.owner.completed({
      service: this.svc.name,
      status: left ? CLIENT_CLOSED : res.statusCode,
      outcome: this.verdict === 'pending' ? 'abandoned' : this.verdict,
      durationSeconds: (performance.now() - this.started) / 1000,
      method: this.req.method ?? '',
      path: this.req.url ?? '',
      requestId: this.requestId,
    });
  }

  /** Starts a wait of `limitMs` from now. */
  private wait(limitMs: number): void {
    const now = performance.now();
    this.since = now;
    this.limitMs = limitMs;
    this.armBy(now + limitMs);
  }

  /** Makes sure the timer fires by `due`: arms it only when none is due by then. */
  private armBy(due: number): void {
    if (this.timer !== undefined && this.timerDue <= due) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(fireTimer, Math.max(1, Math.ceil(due - performance.now())), this);
  }

  /** Nothing more happens but the client response's `close`: no phase, no timer. */
  private end(): void {
    this.phase = 'done';
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** A problem+json answer of the proxy's own for this service, with the request id. */
  private answer(status: number, title: string, detail: string): void {
    sendProblem(this.req, this.res, status, title, detail, this.svc.name, ['x-request-id', this.requestId]);
  }

  private fail(reason: FailureReason, cause: string, code: string | undefined, retryAfter?: number): void {
    this.verdict = 'failure';
    this.breaker.failure(this.ticket, reason, cause, code, this.requestId, this.slow, retryAfter);
  }

  private abandon(): void {
    if (this.verdict !== 'pending') return;
    this.verdict = 'abandoned';
    this.breaker.abandon(this.ticket);
  }
}

function fireTimer(exchange: Exchange): void {
  exchange.onTimer();
}

/** Resets the client connection (RST), the one signal of a cut body no client can miss. */
function resetClient(res: ServerResponse): void {
  const socket = res.socket;
  if (socket && !socket.destroyed) socket.resetAndDestroy();
  else res.destroy();
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}
