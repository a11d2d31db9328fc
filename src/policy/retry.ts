/**
 * Retries that never send a write twice (docs/retries.md): which failed attempt may be tried
 * again, how long to wait first, and the budget that keeps retries from turning an overload into
 * a storm. Pure: the clock and the random source are injected, so tests drive it from tables.
 */
import type { FailureReason, UpstreamOutcome } from '../outcome.js';
import type { Random } from './backoff.js';
import type { Clock } from './clock.js';

/** What `on` may list: a failure reason, or an upstream status (the attempt got that answer). */
export type RetryOn = Exclude<FailureReason, 'status'> | number;

export interface RetryRule {
  /** Extra attempts after the first (0: off). */
  readonly attempts: number;
  /** Failures that may be retried: `connect`, `reset`, `timeout` and statuses. */
  readonly on: readonly RetryOn[];
  /** Full jitter: before retry n, a wait drawn from [0, min(max, base x 2^(n-1))). */
  readonly baseMs: number;
  readonly maxMs: number;
  /** Retries in flight may be this share of the service's requests in flight... */
  readonly budgetRatio: number;
  /** ...or, past that, this many retries started per second. */
  readonly minPerSecond: number;
  /** A request body up to this size is kept for replay; a larger one is not retried. */
  readonly bufferBytes: number;
}

/**
 * Methods a retry may repeat after the request reached the upstream: idempotent by RFC 9110
 * §9.2.2. POST and PATCH only with an `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header).
 */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function isIdempotent(method: string, hasIdempotencyKey: boolean): boolean {
  return hasIdempotencyKey || IDEMPOTENT.has(method);
}

/** Why a failed attempt was not retried (the access log's `retry` field, docs/retries.md). */
export type NoRetry =
  | 'off'
  | 'attempts' // every allowed attempt was made
  | 'not-listed' // the failure is not in `on`
  | 'not-idempotent' // it reached the upstream and the method may not be repeated
  | 'body' // the body is larger than bufferBytes, or still arriving
  | 'retry-after' // the upstream asked for a longer wait than backoff.max
  | 'client-gone';

/** What the call knows when an attempt has failed before anything went to the client. */
export interface RetryAsk {
  readonly rule: RetryRule | undefined;
  /** Attempts made so far, the failed one included (≥ 1). */
  readonly attempts: number;
  readonly outcome: UpstreamOutcome;
  readonly method: string;
  readonly hasIdempotencyKey: boolean;
  /** The body is complete and kept whole (or there is none). */
  readonly replayable: boolean;
  readonly clientGone: boolean;
}

export type RetryVerdict = { readonly retry: true; readonly reason: string } | { readonly retry: false; readonly why: NoRetry };

/** The failure as `on` names it, and as `proxy_retries_total{reason}` counts it. */
export function retryReason(o: UpstreamOutcome): string {
  return o.reason === 'status' ? String(o.status) : o.reason;
}

/**
 * May this failed attempt be tried again? The budget and the circuit are asked after this, by
 * the call: they are shared state, this is not. Order matters only for the `why` reported.
 */
export function mayRetry(ask: RetryAsk): RetryVerdict {
  const rule = ask.rule;
  if (rule === undefined || rule.attempts === 0) return { retry: false, why: 'off' };
  if (ask.clientGone) return { retry: false, why: 'client-gone' };
  if (ask.attempts > rule.attempts) return { retry: false, why: 'attempts' };
  const o = ask.outcome;
  const listed = o.reason === 'status' ? rule.on.includes(o.status ?? 0) : rule.on.includes(o.reason);
  if (!listed) return { retry: false, why: 'not-listed' };
  // Nothing of a request that never reached the upstream was written: any method may go again.
  if (o.written && !isIdempotent(ask.method, ask.hasIdempotencyKey)) return { retry: false, why: 'not-idempotent' };
  if (!ask.replayable) return { retry: false, why: 'body' };
  if (o.retryAfterMs !== undefined && o.retryAfterMs > rule.maxMs) return { retry: false, why: 'retry-after' };
  return { retry: true, reason: retryReason(o) };
}

/**
 * The wait before retry n (n ≥ 1): full jitter (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"), at least the upstream's own Retry-After when it sent one (never above max: see mayRetry).
 */
export function retryDelay(n: number, rule: RetryRule, retryAfterMs: number | undefined, random: Random): number {
  const cap = Math.min(rule.maxMs, rule.baseMs * 2 ** Math.max(0, n - 1));
  const drawn = Math.floor(random() * cap);
  return Math.max(drawn, retryAfterMs ?? 0);
}

/**
 * A service's retry budget (Envoy's retry budget, Linkerd's retry ratio): retries in flight may
 * be `ratio` of the requests in flight; beyond that, up to `minPerSecond` retries may start in
 * each second, so a service with little traffic can still retry. A retry holds its place from the
 * moment it is granted (its backoff included) until its attempt ends.
 */
export class RetryBudget {
  inFlight = 0;
  /** Retries refused for the budget, ever (`proxy_retry_budget_exhausted_total`). */
  exhausted = 0;
  /** Retries started, ever, by the failure retried (`proxy_retries_total{reason}`). */
  readonly byReason = new Map<string, number>();
  private second = -1;
  private inSecond = 0;

  constructor(private readonly clock: Clock) {}

  /** May a retry start now, with `requestsInFlight` calls to the service in flight? */
  acquire(reason: string, ratio: number, minPerSecond: number, requestsInFlight: number): boolean {
    const now = Math.floor(this.clock() / 1000);
    if (now !== this.second) {
      this.second = now;
      this.inSecond = 0;
    }
    const byRatio = this.inFlight + 1 <= ratio * requestsInFlight;
    const byFloor = this.inSecond < minPerSecond;
    if (!byRatio && !byFloor) {
      this.exhausted += 1;
      return false;
    }
    this.inSecond += 1;
    this.inFlight += 1;
    this.count(reason);
    return true;
  }

  /** A further retry of a call that holds its place already. */
  count(reason: string): void {
    this.byReason.set(reason, (this.byReason.get(reason) ?? 0) + 1);
  }

  release(): void {
    this.inFlight -= 1;
  }

  /** Retries started, ever. */
  get started(): number {
    let n = 0;
    for (const v of this.byReason.values()) n += v;
    return n;
  }
}
