import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { formatDuration } from '../config/duration.js';
import { isFailureStatus, type CallPolicy, type ServiceConfig } from '../config/types.js';
import { failed, type OutcomeFields, type UpstreamOutcome } from '../outcome.js';
import { retryAfterMs } from '../policy/retry-after.js';
import { classifyUpstreamError } from './failure.js';
import type { ForwardSink } from './forwarder.js';
import type { Endpoint } from '../upstream/endpoints.js';

/**
 * Where an attempt is (docs/architecture.md, "The attempt"):
 * - `sending`: the client is still sending its body; the proxy waits on the client
 *   (`clientTimeouts.bodyIdle` between chunks, 408 and no outcome when it passes);
 * - `awaiting-headers`: the whole request is in; the proxy waits on the upstream (`timeout`, 504);
 * - `streaming`: the response body flows to the client (`bodyIdleTimeout` between chunks, not
 *   counted while the client is the one not reading);
 * - `done`: nothing more happens.
 */
export type Phase = 'sending' | 'awaiting-headers' | 'streaming' | 'done';

/** Whether the outcome sink has been told, and what. */
export type Verdict = 'pending' | 'success' | 'failure' | 'abandoned';

/** The call an attempt works for: its request, its response and the answers it can give. */
export interface AttemptOwner {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly config: ServiceConfig;
  readonly policy: CallPolicy;
  /** `clientTimeouts.bodyIdle` for this call (its route's, else the proxy's). */
  readonly clientBodyIdleMs: number;
  readonly requestId: string;
  readonly started: number;
  readonly hasBody: boolean;
  readonly endpoints: EndpointOutcomes;
  /** The client response can take nothing more. */
  readonly gone: boolean;
  /** The first attempt is sending the client's body: the call keeps a copy for a retry (docs/retries.md). */
  keepBody(): void;
  /** The upstream answered while the client's body was still coming (docs/behaviour.md, "Early answers"). */
  earlyAnswer(): void;
  /** The client sent `Expect: 100-continue` and waits for a 100 or a final answer. */
  readonly expectsContinue: boolean;
  /** The upstream's `100 Continue` came: relay it (docs/behaviour.md, "Expect: 100-continue"). */
  sendContinue(): void;
  /** The request went out with `Expect: 100-continue`: start waiting for the upstream's 100. */
  awaitContinue(): void;
  /** A failure status arrived (its outcome reported): true when the call retries instead of answering with it. */
  retryInstead(o: UpstreamOutcome, from: Attempt): boolean;
  /** The decision point: response headers of this attempt go to the client (its outcome already reported). */
  respond(proxyRes: IncomingMessage, trailers: boolean): void;
  /** Failed before response headers: the call retries or answers (502/504). */
  failed(o: UpstreamOutcome, from: Attempt): void;
  clientStalled(): void;
  finish(rawTrailers: readonly string[] | undefined): void;
  cut(): void;
}

/** Where an attempt's outcome counts for its endpoint (src/upstream/endpoints.ts). */
export interface EndpointOutcomes {
  outcome(ep: Endpoint, verdict: 'success' | 'failure' | 'abandoned', cause: string): void;
}

/** Where an attempt reports its outcome: the circuit the call was admitted by. */
export interface OutcomeSink {
  success(ticket: number, slow: boolean): void;
  /** In flight past `slowCalls.duration`: a slow call, counted now. */
  slow(ticket: number): void;
  failure(ticket: number, outcome: UpstreamOutcome): void;
  /** The client left, or its own fault: neither success nor failure. */
  abandon(ticket: number): void;
}

/**
 * One upstream leg of a call (src/proxy/call.ts): its phase, its one timer, the verdict it reports to the
 * outcome sink (exactly once). The forwarder reports upstream events to it; each method says what
 * the event does in each phase. The response head goes to the call, which decides what the client
 * gets (the decision point); the chosen attempt then relays its body to the call's response.
 */
export class Attempt implements ForwardSink {
  private phase: Phase = 'awaiting-headers';
  verdict: Verdict = 'pending';
  /**
   * The one timer, and the wait it guards: the current phase's limit counted from `since` (the
   * phase's start or its last progress). It is re-armed only when a wait would end sooner; when
   * it fires early (the wait moved on), it is re-armed for the rest. So a request that completes
   * in time creates one timer, and progress costs a clock read, not a timer update (paired bench:
   * two timers a request were ~3% of the closed path's CPU).
   */
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  private since: number;
  private limitMs = 0;
  /** When a request still waiting for headers becomes a slow call (`slowCalls.duration`), if it can. */
  private slowAt = Infinity;
  /** Reported to the sink as a slow call (it then counts once). */
  private slow = false;
  private proxyReq: ClientRequest | undefined;
  private proxyRes: IncomingMessage | undefined;
  private trailers = false;
  /** The streaming timer fired: the upstream response's `close` that follows is a stall, not a reset. */
  private bodyStalled = false;
  /** The response is an event stream (`streamContentTypes`): a success at its headers, its own idle limit. */
  private stream = false;
  /** The client's `drain`: 0 no listener yet, 1 listened, 2 listened and the upstream paused until it comes. */
  private drain = 0;
  private readonly policy: CallPolicy;

  /**
   * @param endpoint where this attempt goes, and where its outcome counts for outlier ejection
   * @param ticket the circuit's admission of this attempt (each attempt is admitted: docs/retries.md)
   * @param replay a retry, whose body is sent from memory: no client to wait on
   */
  constructor(
    private readonly call: AttemptOwner,
    private readonly sink: OutcomeSink,
    readonly endpoint: Endpoint,
    readonly ticket: number,
    private readonly replay: boolean,
  ) {
    this.policy = call.policy;
    this.since = replay ? performance.now() : call.started;
    if (!replay && call.hasBody && !call.req.complete) {
      this.phase = 'sending';
      this.wait(call.clientBodyIdleMs);
    } else {
      this.awaitHeaders();
    }
  }

  onUpstreamRequest(proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq;
    if (this.phase === 'done') {
      proxyReq.destroy();
      return;
    }
    // Same tick as the pipe, like the listeners below: every chunk is seen.
    if (!this.replay && this.call.hasBody) this.call.keepBody();
    if (!this.replay && this.call.expectsContinue) {
      // Set here, not in the client's headers: Node renders a head with Expect at once, before
      // the request line is final. Only the first attempt asks; a retry sends its kept body.
      proxyReq.setHeader('expect', '100-continue');
      // The head goes now: the client sends nothing until it hears back.
      proxyReq.flushHeaders();
      proxyReq.once('continue', () => this.call.sendContinue());
      this.call.awaitContinue();
    }
    if (this.phase === 'sending') {
      // Attached in the same tick as the forwarder's pipe of the body, so no chunk flows past
      // either (a 'data' listener alone would start the body flowing).
      const progress = (): void => {
        if (this.phase === 'sending') this.since = performance.now();
      };
      const req = this.call.req;
      req.on('data', progress);
      req.on('end', () => {
        if (this.phase === 'sending') this.awaitHeaders();
      });
      // The upstream taking body bytes again is progress too.
      proxyReq.on('drain', progress);
    }
  }

  /** The whole request is in: the upstream's `timeout` runs, and the slow-call clock (docs/policies.md). */
  private awaitHeaders(): void {
    this.phase = 'awaiting-headers';
    this.wait(this.policy.timeoutMs);
    const slowMs = this.policy.slowCallMs;
    if (slowMs !== undefined && slowMs < this.policy.timeoutMs) {
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
      this.sink.slow(this.ticket);
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
        if ((this.proxyReq?.writableLength ?? 0) === 0) {
          this.abandon();
          this.cancel();
          this.call.clientStalled();
          return;
        }
        return this.timedOut(`request body not accepted within ${formatDuration(this.call.clientBodyIdleMs)}`);
      case 'awaiting-headers':
        return this.timedOut(`no response headers within ${formatDuration(this.policy.timeoutMs)}`);
      case 'streaming':
        // The response body stalled: cut it; the upstream response's `close` reports it.
        this.bodyStalled = true;
        this.proxyReq?.destroy();
        return;
    }
  }

  private timedOut(cause: string): void {
    const o = this.fail({ reason: 'timeout', cause, code: 'ETIMEDOUT' });
    this.cancel();
    this.call.failed(o, this);
  }

  onUpstreamError(err: NodeJS.ErrnoException): void {
    if (this.phase !== 'sending' && this.phase !== 'awaiting-headers') return;
    // The client's own request failed (http-proxy reports those here too): the response's
    // `close` settles it as abandoned.
    if (this.call.req.errored === err) return;
    this.end();
    if (this.call.gone) {
      this.abandon();
      return;
    }
    const c = classifyUpstreamError(err);
    this.call.failed(this.fail({ reason: c.reason, cause: c.cause, code: err.code }), this);
  }

  onUpstreamResponse(proxyRes: IncomingMessage): void {
    this.proxyRes = proxyRes;
    if (this.phase !== 'sending' && this.phase !== 'awaiting-headers') {
      proxyRes.destroy();
      return;
    }
    // An early answer (RFC 9112 §9.6): the upstream will not read the rest of the body.
    if (this.phase === 'sending') this.call.earlyAnswer();
    this.phase = 'streaming';
    this.slowAt = Infinity;
    const status = proxyRes.statusCode ?? 502;
    if (isFailureStatus(this.policy.failureStatuses, status)) {
      const after = proxyRes.headers['retry-after'];
      const o = this.fail({
        reason: 'status',
        cause: `status ${status}`,
        status,
        retryAfterMs: after === undefined ? undefined : retryAfterMs(after, Date.now(), Infinity),
      });
      if (this.call.retryInstead(o, this)) {
        // Held, unread, while the retry waits: if it does not happen after all (the circuit
        // opened meanwhile), the client gets this answer, the last real one (docs/retries.md).
        this.end();
        return;
      }
    } else if (isStream(proxyRes.headers['content-type'], this.policy.streamContentTypes)) {
      // The upstream answered: what the stream does later never counts (docs/behaviour.md, "Event streams").
      this.stream = true;
      this.verdict = 'success';
      this.sink.success(this.ticket, this.slow);
      this.call.endpoints.outcome(this.endpoint, 'success', '');
    }
    this.relay(proxyRes);
  }

  /** The held failure response goes to the client after all; false when it is gone meanwhile (the call answers). */
  deliver(): boolean {
    const proxyRes = this.proxyRes;
    if (proxyRes === undefined || proxyRes.destroyed || proxyRes.readableAborted) {
      this.discard();
      return false;
    }
    this.phase = 'streaming';
    this.relay(proxyRes);
    return true;
  }

  /** The held failure response is not wanted: a retry replaces it. Its connection goes (a body may still be coming). */
  discard(): void {
    this.end();
    this.proxyRes?.destroy();
    this.proxyReq?.destroy();
  }

  /** Response headers to the client, then the body as it comes. */
  private relay(proxyRes: IncomingMessage): void {
    this.wait(this.bodyIdleMs);
    const req = this.call.req;
    this.trailers =
      proxyRes.headers.trailer !== undefined &&
      proxyRes.headers['content-length'] === undefined &&
      req.httpVersion === '1.1' &&
      req.method !== 'HEAD';
    this.call.respond(proxyRes, this.trailers);
    const res = this.call.res;
    proxyRes.on('close', () => this.onUpstreamClose(proxyRes));
    proxyRes.on('end', () => this.onUpstreamEnd(proxyRes));
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
   * not count as a stalled upstream against the circuit.
   */
  private awaitDrain(proxyRes: IncomingMessage): void {
    proxyRes.pause();
    this.limitMs = Infinity;
    if (this.drain === 2) return;
    // One listener for the whole response, as pipe keeps one: a `once` per wait allocated its
    // wrapper and added and deleted the event's key each time, which left the response's event
    // table a dictionary rehashed as it went (docs/performance-notes.md, "Streaming").
    if (this.drain === 0) this.call.res.on('drain', () => this.onClientDrain(proxyRes));
    this.drain = 2;
  }

  /** The client took what was queued for it: the upstream is read again, its idle timer back on. */
  private onClientDrain(proxyRes: IncomingMessage): void {
    if (this.drain !== 2) return;
    this.drain = 1;
    if (this.phase !== 'streaming') return;
    this.wait(this.bodyIdleMs);
    proxyRes.resume();
  }

  private onUpstreamEnd(proxyRes: IncomingMessage): void {
    if (this.phase !== 'streaming' || !proxyRes.complete) return;
    this.end();
    this.call.finish(this.trailers && proxyRes.rawTrailers.length > 0 ? proxyRes.rawTrailers : undefined);
    if (this.verdict === 'pending') {
      this.verdict = 'success';
      this.sink.success(this.ticket, this.slow);
      this.call.endpoints.outcome(this.endpoint, 'success', '');
    }
  }

  /**
   * The upstream response closed. Incomplete (reset, closed before its length, or cut for
   * stalling) in `streaming`: a failure, and the call resets the client connection; an event
   * stream was a success at its headers and stays one.
   */
  private onUpstreamClose(proxyRes: IncomingMessage): void {
    if (proxyRes.complete || this.phase !== 'streaming') return;
    this.end();
    if (this.verdict === 'pending') {
      const stalled = this.bodyStalled;
      const cause = stalled
        ? `response body stalled for ${formatDuration(this.policy.bodyIdleTimeoutMs)}`
        : 'connection reset during response body';
      this.fail({ reason: 'reset', cause, code: stalled ? 'ETIMEDOUT' : 'ECONNRESET' });
    }
    // An event stream closed by streamIdleTimeout ends cleanly: an event stream has no length to
    // fall short of, and its client reconnects (docs/behaviour.md, "Event streams").
    if (this.stream && this.bodyStalled) this.call.finish(undefined);
    else this.call.cut();
  }

  /** Node refused to build the upstream request (a header value it will not send): the client's fault. */
  refuse(): void {
    this.abandon();
    this.cancel();
  }

  /** The client left before the response was complete (http-proxy #1586): abort upstream so no socket leaks. */
  clientLeft(): void {
    this.abandon();
    this.proxyReq?.destroy();
    this.proxyRes?.destroy();
    this.end();
  }

  /** Ends the attempt and its upstream request. */
  private cancel(): void {
    this.end();
    this.proxyReq?.destroy();
  }

  /** The response body's idle limit: `bodyIdleTimeout`, or for an event stream `streamIdleTimeout` (off: none). */
  private get bodyIdleMs(): number {
    return this.stream ? (this.policy.streamIdleTimeoutMs ?? Infinity) : this.policy.bodyIdleTimeoutMs;
  }

  /** Starts a wait of `limitMs` from now (Infinity: no limit, no timer). */
  private wait(limitMs: number): void {
    const now = performance.now();
    this.since = now;
    this.limitMs = limitMs;
    if (limitMs !== Infinity) this.armBy(now + limitMs);
  }

  /** Makes sure the timer fires by `due`: arms it only when none is due by then. */
  private armBy(due: number): void {
    if (this.timer !== undefined && this.timerDue <= due) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(fireTimer, Math.max(1, Math.ceil(due - performance.now())), this);
  }

  /** Nothing more happens: no phase, no timer. */
  end(): void {
    this.phase = 'done';
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The attempt's failure, as one value, told to the sink. */
  private fail(fields: OutcomeFields): UpstreamOutcome {
    const o = failed({
      ...fields,
      endpoint: this.endpoint.address,
      written: this.proxyReq !== undefined && fields.reason !== 'connect',
      slow: this.slow,
      requestId: this.call.requestId,
    });
    this.verdict = 'failure';
    this.sink.failure(this.ticket, o);
    this.call.endpoints.outcome(this.endpoint, 'failure', o.cause);
    return o;
  }

  private abandon(): void {
    if (this.verdict !== 'pending') return;
    this.verdict = 'abandoned';
    this.sink.abandon(this.ticket);
    this.call.endpoints.outcome(this.endpoint, 'abandoned', '');
  }
}

function fireTimer(attempt: Attempt): void {
  attempt.onTimer();
}

/** Whether a response's `Content-Type` (its media type, parameters aside) is one of `types`. */
function isStream(contentType: string | undefined, types: readonly string[]): boolean {
  if (contentType === undefined) return false;
  const semi = contentType.indexOf(';');
  const media = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  return types.includes(media);
}
