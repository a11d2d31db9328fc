import { type EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { formatDuration } from '../config/duration.js';
import type { ServiceConfig } from '../config/types.js';
import { cooldownStep, drawCooldown, type Random } from '../policy/backoff.js';
import { monotonic, type Clock } from '../policy/clock.js';
import { failureRateTrip, slowCallTrip } from '../policy/rules.js';
import { OutcomeWindow } from '../policy/window.js';

export type { Clock };

/** Breaker states as the admin API and logs spell them. */
export type BreakerState = 'closed' | 'open' | 'half_open';

/** Why an exchange failed (docs/behaviour.md, "What counts as a failure"). */
export type FailureReason = 'connect' | 'timeout' | 'reset' | 'status';

export const FAILURE_REASONS: readonly FailureReason[] = ['connect', 'timeout', 'reset', 'status'];

/** Numeric encoding of the state gauge (docs/observability.md). */
export const STATE_VALUE: Record<BreakerState, number> = { closed: 0, open: 1, half_open: 2 };

export interface TransitionEvent {
  readonly service: string;
  readonly from: BreakerState;
  readonly to: BreakerState;
  readonly reason: string;
  readonly at: number;
  readonly forced: boolean;
}

export interface FailureEvent {
  readonly service: string;
  readonly reason: FailureReason;
  /** Readable cause, e.g. `connect ECONNREFUSED`, `status 503`. */
  readonly detail: string;
  /** Node error code when there was one. */
  readonly code: string | undefined;
  readonly requestId: string | undefined;
  /** True when the outcome belonged to an earlier state and did not count. */
  readonly stale: boolean;
}

export interface BreakerEvents {
  transition: [TransitionEvent];
  failure: [FailureEvent];
}

/** Admin-facing snapshot (`/breakers`, docs/observability.md). */
export interface BreakerSnapshot {
  name: string;
  url: string;
  state: BreakerState;
  forced: boolean;
  consecutiveFailures: number;
  threshold: number;
  cooldownMs: number;
  timeoutMs: number;
  lastTransitionAt: string;
  retryAfterSeconds: number | null;
  lastTrip: { at: string; reason: string } | null;
  /** The window rules' counts (docs/policies.md), where a window rule is set. */
  window?: WindowSnapshot;
  /** Trials of this half-open period and queued callers, where `halfOpen` allows more than one trial or a queue. */
  halfOpen?: { trials: number; admitted: number; succeeded: number; queued: number };
  /** `observe` where set (docs/load-shedding.md); absent in enforce mode. */
  mode?: 'observe';
  /** Requests in flight and the bulkhead's size, where `maxConcurrent` is set. */
  inFlight?: number;
  maxConcurrent?: number;
  /** True where an open circuit answers with a configured fallback. */
  fallback?: boolean;
}

/** Returned by {@link ServiceBreaker.admit} when the request must be rejected. */
export const REJECTED = -1;
/** Returned by {@link ServiceBreaker.admit} when the caller may wait for the half-open verdict ({@link ServiceBreaker.enqueue}). */
export const QUEUED = -2;
/**
 * The ticket of a request forwarded in observe mode that enforce mode would have rejected: never
 * current, so its outcome changes nothing in the breaker (docs/load-shedding.md).
 */
export const SHADOW = -3;

/** opossum's action is never fired: admission and outcomes are ours (see class doc). */
const NEVER_FIRED = (): Promise<void> => Promise.resolve();

/** A caller waiting for the half-open verdict. */
interface Waiter {
  readonly admitted: (ticket: number) => void;
  readonly timer: NodeJS.Timeout;
}

/** What the breaker's window rules read, for `/breakers` and the metrics. */
export interface WindowSnapshot {
  readonly requests: number;
  readonly failureRate: number | null;
  readonly slowCallRate: number | null;
}

/**
 * One service's circuit breaker.
 *
 * opossum holds the state (CLOSED / OPEN / HALF_OPEN), emits the transitions and runs the cooldown
 * timer (`resetTimeout`) that moves OPEN to HALF_OPEN. Admission, outcomes and the trip rules go
 * through this class instead of `fire()`, because the proxy needs what `fire()` cannot give
 * (docs/architecture.md, "How opossum is used"; docs/policies.md for the rules):
 * - consecutive-failure trips, and the window rules (failure rate, slow calls in flight) with a
 *   window that starts empty at every state change and counts an outcome when it is decided;
 * - a third outcome, "abandoned" (client left), that neither closes nor opens and frees a
 *   half-open trial slot;
 * - a state generation, so an outcome of a request admitted before the last transition is ignored
 *   (opossum would let a late success close a half-open circuit);
 * - several trials and a queue of callers waiting for their verdict;
 * - a cooldown per opening (backoff, an upstream's Retry-After): opossum reads `resetTimeout`
 *   from the options object it was given at every `open()` (see {@link ServiceBreaker.cbOptions}).
 * - no Promise, timer or `Error` per request on the hot path (a rejection allocates nothing).
 *
 * A ticket is `generation * 2 + (trial ? 1 : 0)`; a plain number so admission allocates nothing.
 */
export class ServiceBreaker {
  private cfg: ServiceConfig;
  /**
   * Requests forwarded to this upstream and not yet ended: the bulkhead's count
   * (docs/load-shedding.md). An object, so that a breaker replaced at a reload hands it on
   * ({@link ServiceBreaker.inherit}) and requests still in flight on the old one keep counting.
   */
  load: { n: number } = { n: 0 };
  private readonly cb: CircuitBreaker;
  /**
   * The options object handed to opossum, kept: opossum reads `resetTimeout` from it each time the
   * circuit opens (opossum 9.0.0, pinned; test/unit/breaker.test.ts "canary" fails if that changes).
   */
  private readonly cbOptions: { resetTimeout: number } & Record<string, unknown>;
  private readonly events: EventEmitter<BreakerEvents>;
  private readonly clock: Clock;
  private readonly random: Random;
  private generation = 0;
  private failures = 0;
  private forcedOpen = false;
  /** Set while we re-open a forced circuit whose opossum timer fired: no transition to report. */
  private silent = false;
  private nextReason = '';
  /** Epoch ms of the last opening, for display (`lastTrip`, the next-probe gauge). */
  private openedAt = 0;
  /** The same instant on {@link clock}, for `Retry-After`. */
  private openedAtTick = 0;
  /** The cooldown of the current (or last) opening, as drawn. */
  private cooldownInForce: number;
  /** Openings since the last close: the backoff step. */
  private openings = 0;
  private trialsAdmitted = 0;
  private trialsSucceeded = 0;
  private readonly waiters: Waiter[] = [];
  /** The window of each window rule (one shared when both rules use the same window length). */
  private readonly failureWindow: OutcomeWindow | undefined;
  private readonly slowWindow: OutcomeWindow | undefined;
  /** The distinct windows above (none, one shared, or two): every outcome goes into each. */
  private readonly windows: readonly OutcomeWindow[];
  private lastTransitionAt = Date.now();
  private lastTrip: { at: number; reason: string } | null = null;
  private prevState: BreakerState = 'closed';

  /** Requests forwarded to this upstream and not yet ended. */
  get inFlight(): number {
    return this.load.n;
  }

  /** A reload replaced `previous` with this breaker: its requests still in flight count here too. */
  inherit(previous: ServiceBreaker): void {
    this.load = previous.load;
  }

  constructor(
    config: ServiceConfig,
    events: EventEmitter<BreakerEvents>,
    rotateBucketController: EventEmitter,
    clock: Clock = monotonic,
    random: Random = Math.random,
  ) {
    this.cfg = config;
    this.events = events;
    this.clock = clock;
    this.random = random;
    this.cooldownInForce = config.cooldownMs;
    const fr = config.failureRate;
    const sc = config.slowCalls;
    this.failureWindow = fr ? new OutcomeWindow(fr.windowMs, clock) : undefined;
    this.slowWindow = sc ? (fr && fr.windowMs === sc.windowMs ? this.failureWindow : new OutcomeWindow(sc.windowMs, clock)) : undefined;
    this.windows = [...new Set([this.failureWindow, this.slowWindow])].filter((w) => w !== undefined);
    // A fresh options object per breaker: opossum mutates it, and reads resetTimeout from it.
    this.cbOptions = {
      name: config.name,
      resetTimeout: config.cooldownMs,
      timeout: false,
      errorThresholdPercentage: 100,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      rotateBucketController,
    };
    this.cb = new CircuitBreaker(NEVER_FIRED, this.cbOptions);
    this.cb.on('open', () => this.onState('open'));
    this.cb.on('halfOpen', () => {
      if (this.forcedOpen) {
        // opossum arms its reset timer on every open(); a forced-open circuit must not probe.
        this.silent = true;
        this.cb.open();
        this.silent = false;
        return;
      }
      this.nextReason = `cooldown of ${formatDuration(this.cooldownInForce)} elapsed`;
      this.onState('half_open');
    });
    this.cb.on('close', () => this.onState('closed'));
  }

  get config(): ServiceConfig {
    return this.cfg;
  }

  /**
   * A reload changed only what does not shape the breaker (`mode`, `fallback`, `maxConcurrent`:
   * see serviceFingerprint): the new settings apply, the state stays.
   */
  reconfigure(config: ServiceConfig): void {
    this.cfg = config;
  }

  get name(): string {
    return this.cfg.name;
  }

  get state(): BreakerState {
    return this.cb.closed ? 'closed' : this.cb.halfOpen ? 'half_open' : 'open';
  }

  get forced(): boolean {
    return this.forcedOpen;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Callers waiting for the half-open verdict. */
  get queued(): number {
    return this.waiters.length;
  }

  /** Epoch ms at which an open circuit lets its trial through; 0 when not open or forced. */
  get nextProbeAt(): number {
    return this.cb.opened && !this.forcedOpen ? this.openedAt + this.cooldownInForce : 0;
  }

  /**
   * The cooldown in force: while open, the one drawn for this opening; otherwise the one the next
   * opening would get (its backoff step, before jitter).
   */
  get cooldownMs(): number {
    if (this.cb.opened) return this.cooldownInForce;
    return cooldownStep(this.openings + 1, this.config.cooldownMs, this.config.backoff);
  }

  /** The window rules' view, null where no window rule is set. */
  windowSnapshot(): WindowSnapshot | null {
    if (this.failureWindow === undefined && this.slowWindow === undefined) return null;
    const f = this.failureWindow?.counts();
    const s = this.slowWindow === this.failureWindow ? f : this.slowWindow?.counts();
    return {
      requests: Math.max(f?.total ?? 0, s?.total ?? 0),
      failureRate: f ? (f.total ? f.failures / f.total : 0) : null,
      slowCallRate: s ? (s.total ? s.slow / s.total : 0) : null,
    };
  }

  /**
   * Lets a request through or not. Returns a ticket for {@link success}/{@link failure}/{@link abandon},
   * {@link REJECTED}, or {@link QUEUED} (call {@link enqueue}). In HALF_OPEN, `halfOpen.trials`
   * tickets are handed out per half-open period; an abandoned trial gives its slot back.
   */
  admit(): number {
    if (this.cb.closed) return this.generation * 2;
    if (this.cb.halfOpen) {
      if (this.trialsAdmitted < this.config.halfOpen.trials) {
        this.trialsAdmitted += 1;
        return this.generation * 2 + 1;
      }
      if (this.waiters.length < this.config.halfOpen.queue) return QUEUED;
    }
    return REJECTED;
  }

  /**
   * After {@link admit} answered {@link QUEUED}: `admitted` is called once, with a closed-circuit
   * ticket when the circuit closes, or {@link REJECTED} when it re-opens or `halfOpen.maxWait`
   * passes. Returns a function that withdraws the caller (its client left); then `admitted` is
   * never called.
   */
  enqueue(admitted: (ticket: number) => void): () => void {
    const waiter: Waiter = {
      admitted,
      timer: setTimeout(() => {
        if (this.withdraw(waiter)) admitted(REJECTED);
      }, this.config.halfOpen.maxWaitMs),
    };
    this.waiters.push(waiter);
    return () => void this.withdraw(waiter);
  }

  /** Whole seconds a rejected caller should wait (`Retry-After`), at least 1. */
  retryAfterSeconds(): number {
    if (this.cb.opened && !this.forcedOpen) {
      return Math.max(1, Math.ceil((this.openedAtTick + this.cooldownInForce - this.clock()) / 1000));
    }
    if (this.forcedOpen) return Math.max(1, Math.ceil(this.config.cooldownMs / 1000));
    return 1; // half-open with the trials in flight: ask again shortly
  }

  /** The request's response completed. `slow`: it was already counted as a slow call. */
  success(ticket: number, slow = false): void {
    if (!this.current(ticket)) return;
    this.failures = 0;
    if (ticket & 1) {
      this.trialsSucceeded += 1;
      if (this.trialsSucceeded >= this.config.halfOpen.trials) {
        const n = this.config.halfOpen.trials;
        this.nextReason = n === 1 ? 'trial request succeeded' : `${n} trial requests succeeded`;
        this.cb.close();
      }
      return;
    }
    if (!slow) this.record(false, false, undefined);
  }

  /** The request has waited `slowCalls.duration` for response headers: a slow call, counted now. */
  slow(ticket: number): void {
    if (!this.current(ticket) || ticket & 1 || this.slowWindow === undefined) return;
    this.record(false, true, undefined);
  }

  /**
   * The upstream failed the request. `slow`: it was already counted as a slow call (it counts once
   * more, as a failure, not as another request). `retryAfterMs`: the upstream's Retry-After, when
   * the failure is a response carrying one.
   */
  failure(
    ticket: number,
    reason: FailureReason,
    detail: string,
    code?: string,
    requestId?: string,
    slow = false,
    retryAfterMs?: number,
  ): void {
    const stale = !this.current(ticket);
    this.events.emit('failure', { service: this.config.name, reason, detail, code, requestId, stale });
    if (stale) return;
    if (ticket & 1) {
      this.trip(`trial request failed: ${detail}`, retryAfterMs);
      return;
    }
    this.failures += 1;
    if (this.failures >= this.config.threshold && this.cb.closed) {
      this.trip(`${this.failures} consecutive failure${this.failures === 1 ? '' : 's'}: ${detail}`, retryAfterMs);
      return;
    }
    if (slow) {
      // Already in the windows as a slow call: now a failure too, not another request.
      for (const w of this.windows) w.recordLateFailure();
      this.evaluateWindows(retryAfterMs);
    } else {
      this.record(true, false, retryAfterMs);
    }
  }

  /** The client left: neither success nor failure. A half-open trial slot is given back. */
  abandon(ticket: number): void {
    if (this.current(ticket) && ticket & 1) this.trialsAdmitted -= 1;
  }

  /** Operator action: open and stay open (no probing) until {@link forceClose}. */
  forceOpen(reason: string): void {
    this.forcedOpen = true;
    if (this.cb.opened) {
      // Already open: report the change of kind (now forced) as a transition of its own.
      this.emitTransition('open', 'open', `forced open: ${reason}`);
      return;
    }
    this.nextReason = `forced open: ${reason}`;
    this.cb.open();
  }

  /** Operator action: close now, clear the failure count and any forced-open state. */
  forceClose(reason: string): void {
    const wasForced = this.forcedOpen;
    this.forcedOpen = false;
    this.failures = 0;
    if (this.cb.closed) {
      if (wasForced) this.emitTransition('closed', 'closed', `forced closed: ${reason}`);
      return;
    }
    this.nextReason = `forced closed: ${reason}`;
    this.cb.close();
  }

  snapshot(): BreakerSnapshot {
    const state = this.state;
    return {
      name: this.config.name,
      url: this.config.url,
      state,
      forced: this.forcedOpen,
      consecutiveFailures: this.failures,
      threshold: this.config.threshold,
      cooldownMs: this.cooldownMs,
      timeoutMs: this.config.timeoutMs,
      lastTransitionAt: new Date(this.lastTransitionAt).toISOString(),
      retryAfterSeconds: state === 'open' ? this.retryAfterSeconds() : null,
      lastTrip: this.lastTrip ? { at: new Date(this.lastTrip.at).toISOString(), reason: this.lastTrip.reason } : null,
      ...this.policySnapshot(),
    };
  }

  /** The fields only a service with §9 keys has: the default config's snapshot stays as it was. */
  private policySnapshot(): Pick<BreakerSnapshot, 'window' | 'halfOpen' | 'mode' | 'inFlight' | 'maxConcurrent' | 'fallback'> {
    const window = this.windowSnapshot();
    const c = this.config;
    const h = c.halfOpen;
    return {
      ...(c.mode === 'observe' ? { mode: c.mode } : {}),
      ...(c.maxConcurrent !== undefined ? { inFlight: this.inFlight, maxConcurrent: c.maxConcurrent } : {}),
      ...(c.fallback !== undefined ? { fallback: true } : {}),
      ...(window !== null ? { window } : {}),
      ...(h.trials > 1 || h.queue > 0
        ? { halfOpen: { trials: h.trials, admitted: this.trialsAdmitted, succeeded: this.trialsSucceeded, queued: this.waiters.length } }
        : {}),
    };
  }

  /** Stops opossum's timers and turns away queued callers; the breaker must not be used afterwards. */
  shutdown(): void {
    this.releaseWaiters(false);
    this.cb.shutdown();
  }

  private current(ticket: number): boolean {
    return ticket >> 1 === this.generation;
  }

  /** An outcome into every window, then the rules (a success can complete `minRequests` too). */
  private record(failure: boolean, slow: boolean, retryAfterMs: number | undefined): void {
    for (const w of this.windows) w.record(failure, slow);
    this.evaluateWindows(retryAfterMs);
  }

  private evaluateWindows(retryAfterMs: number | undefined): void {
    if (this.windows.length === 0 || !this.cb.closed) return;
    const fr = this.config.failureRate;
    const sc = this.config.slowCalls;
    const reason =
      (fr && failureRateTrip(this.failureWindow!.counts(), fr)) || (sc && slowCallTrip(this.slowWindow!.counts(), sc)) || undefined;
    if (reason !== undefined) this.trip(reason, retryAfterMs);
  }

  /**
   * Opens the circuit for a cooldown: an honoured upstream Retry-After decides its length, else the
   * backoff step (the step advances either way). The reason says which applied.
   */
  private trip(reason: string, retryAfterMs: number | undefined): void {
    this.openings += 1;
    const drawn = drawCooldown(this.openings, this.config.cooldownMs, this.config.backoff, this.random);
    let ms = drawn.ms;
    let why = reason;
    if (retryAfterMs !== undefined && this.config.retryAfter !== undefined) {
      ms = Math.min(Math.max(retryAfterMs, 1000), this.config.retryAfter.maxMs);
      why = `${reason}; upstream Retry-After ${formatDuration(ms)}`;
    } else if (drawn.note) {
      why = `${reason}; ${drawn.note}`;
    }
    this.cooldownInForce = ms;
    this.cbOptions.resetTimeout = ms;
    this.nextReason = why;
    this.cb.open();
  }

  private onState(to: BreakerState): void {
    if (this.silent) return;
    const from = this.prevState;
    const reason = this.nextReason || 'opossum state change';
    this.nextReason = '';
    this.generation += 1;
    this.trialsAdmitted = 0;
    this.trialsSucceeded = 0;
    for (const w of this.windows) w.clear();
    if (to === 'open') {
      this.openedAt = Date.now();
      this.openedAtTick = this.clock();
      this.lastTrip = { at: this.openedAt, reason };
      if (this.forcedOpen) this.cooldownInForce = this.config.cooldownMs;
    }
    if (to === 'closed') {
      this.failures = 0;
      this.openings = 0;
      this.cooldownInForce = this.config.cooldownMs;
      this.cbOptions.resetTimeout = this.config.cooldownMs;
    }
    this.emitTransition(from, to, reason);
    if (to !== 'half_open') this.releaseWaiters(to === 'closed');
  }

  /** The half-open verdict reaches the queue: on close each caller goes on as a closed-circuit request. */
  private releaseWaiters(closed: boolean): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters.splice(0);
    for (const w of waiters) clearTimeout(w.timer);
    // Not from inside the outcome that closed the circuit: the callers start their own exchanges.
    queueMicrotask(() => {
      for (const w of waiters) w.admitted(closed && this.cb.closed ? this.generation * 2 : REJECTED);
    });
  }

  private withdraw(waiter: Waiter): boolean {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return false;
    this.waiters.splice(i, 1);
    clearTimeout(waiter.timer);
    return true;
  }

  private emitTransition(from: BreakerState, to: BreakerState, reason: string): void {
    this.prevState = to;
    this.lastTransitionAt = Date.now();
    this.events.emit('transition', { service: this.config.name, from, to, reason, at: this.lastTransitionAt, forced: this.forcedOpen });
  }
}
