import { type EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import CircuitBreaker from 'opossum';
import { formatDuration } from '../config/duration.js';
import type { ServiceConfig } from '../config/types.js';

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
}

/** Returned by {@link ServiceBreaker.admit} when the request must be rejected. */
export const REJECTED = -1;

/**
 * Milliseconds on a clock that never steps: `Retry-After` is counted on it, as opossum's cooldown
 * timer (a `setTimeout`) is. Wall-clock time would be wrong across an NTP step or a VM resume: a
 * clock set back an hour would tell every rejected caller to wait an hour.
 */
export type Clock = () => number;

const monotonic: Clock = () => performance.now();

/** opossum's action is never fired: admission and outcomes are ours (see class doc). */
const NEVER_FIRED = (): Promise<void> => Promise.resolve();

/**
 * One service's circuit breaker.
 *
 * opossum holds the state (CLOSED / OPEN / HALF_OPEN), emits the transitions and runs the cooldown
 * timer (`resetTimeout`) that moves OPEN to HALF_OPEN. Admission and outcomes go through this class
 * instead of `fire()`, because the proxy needs what `fire()` cannot give (docs/architecture.md, "How opossum is used"):
 * - consecutive-failure trips (opossum only knows percentages over a rolling window);
 * - a third outcome, "abandoned" (client left), that neither closes nor opens and frees the half-open
 *   trial slot; opossum's `pendingClose` flag cannot be re-armed from outside;
 * - a state generation, so an outcome of a request admitted before the last transition is ignored
 *   (opossum would let a late success close a half-open circuit);
 * - no Promise, timer or `Error` per request on the hot path (a rejection allocates nothing).
 *
 * A ticket is `generation * 2 + (trial ? 1 : 0)`; a plain number so admission allocates nothing.
 */
export class ServiceBreaker {
  readonly config: ServiceConfig;
  private readonly cb: CircuitBreaker;
  private readonly events: EventEmitter<BreakerEvents>;
  private generation = 0;
  private failures = 0;
  private trialInFlight = false;
  private forcedOpen = false;
  /** Set while we re-open a forced circuit whose opossum timer fired: no transition to report. */
  private silent = false;
  private nextReason = '';
  /** Epoch ms of the last opening, for display (`lastTrip`, the next-probe gauge). */
  private openedAt = 0;
  /** The same instant on {@link clock}, for `Retry-After`. */
  private openedAtTick = 0;
  private lastTransitionAt = Date.now();
  private lastTrip: { at: number; reason: string } | null = null;
  private prevState: BreakerState = 'closed';

  private readonly clock: Clock;

  constructor(config: ServiceConfig, events: EventEmitter<BreakerEvents>, rotateBucketController: EventEmitter, clock: Clock = monotonic) {
    this.config = config;
    this.events = events;
    this.clock = clock;
    // A fresh options object per breaker: opossum mutates it.
    this.cb = new CircuitBreaker(NEVER_FIRED, {
      name: config.name,
      resetTimeout: config.cooldownMs,
      timeout: false,
      errorThresholdPercentage: 100,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      rotateBucketController,
    });
    this.cb.on('open', () => this.onState('open'));
    this.cb.on('halfOpen', () => {
      if (this.forcedOpen) {
        // opossum arms its reset timer on every open(); a forced-open circuit must not probe.
        this.silent = true;
        this.cb.open();
        this.silent = false;
        return;
      }
      this.nextReason = `cooldown of ${formatDuration(this.config.cooldownMs)} elapsed`;
      this.onState('half_open');
    });
    this.cb.on('close', () => this.onState('closed'));
  }

  get name(): string {
    return this.config.name;
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

  /** Epoch ms at which an open circuit lets its trial through; 0 when not open or forced. */
  get nextProbeAt(): number {
    return this.cb.opened && !this.forcedOpen ? this.openedAt + this.config.cooldownMs : 0;
  }

  /**
   * Lets a request through or not. Returns a ticket for {@link success}/{@link failure}/{@link abandon},
   * or {@link REJECTED}. In HALF_OPEN exactly one ticket (the trial) is handed out until it settles.
   */
  admit(): number {
    if (this.cb.closed) return this.generation * 2;
    if (this.cb.halfOpen && !this.trialInFlight) {
      this.trialInFlight = true;
      return this.generation * 2 + 1;
    }
    return REJECTED;
  }

  /** Whole seconds a rejected caller should wait (`Retry-After`), at least 1. */
  retryAfterSeconds(): number {
    if (this.cb.opened && !this.forcedOpen) {
      return Math.max(1, Math.ceil((this.openedAtTick + this.config.cooldownMs - this.clock()) / 1000));
    }
    if (this.forcedOpen) return Math.max(1, Math.ceil(this.config.cooldownMs / 1000));
    return 1; // half-open with the trial in flight: ask again shortly
  }

  success(ticket: number): void {
    if (!this.current(ticket)) return;
    this.failures = 0;
    if (ticket & 1) {
      this.trialInFlight = false;
      this.nextReason = 'trial request succeeded';
      this.cb.close();
    }
  }

  failure(ticket: number, reason: FailureReason, detail: string, code?: string, requestId?: string): void {
    const stale = !this.current(ticket);
    this.events.emit('failure', { service: this.config.name, reason, detail, code, requestId, stale });
    if (stale) return;
    if (ticket & 1) {
      this.trialInFlight = false;
      this.tripWith(`trial request failed: ${detail}`);
      return;
    }
    this.failures += 1;
    if (this.failures >= this.config.threshold && this.cb.closed) {
      this.tripWith(`${this.failures} consecutive failure${this.failures === 1 ? '' : 's'}: ${detail}`);
    }
  }

  /** The client left: neither success nor failure. A half-open trial slot is released. */
  abandon(ticket: number): void {
    if (this.current(ticket) && ticket & 1) this.trialInFlight = false;
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
      cooldownMs: this.config.cooldownMs,
      timeoutMs: this.config.timeoutMs,
      lastTransitionAt: new Date(this.lastTransitionAt).toISOString(),
      retryAfterSeconds: state === 'open' ? this.retryAfterSeconds() : null,
      lastTrip: this.lastTrip ? { at: new Date(this.lastTrip.at).toISOString(), reason: this.lastTrip.reason } : null,
    };
  }

  /** Stops opossum's timers; the breaker must not be used afterwards. */
  shutdown(): void {
    this.cb.shutdown();
  }

  private current(ticket: number): boolean {
    return ticket >> 1 === this.generation;
  }

  private tripWith(reason: string): void {
    this.nextReason = reason;
    this.cb.open();
  }

  private onState(to: BreakerState): void {
    if (this.silent) return;
    const from = this.prevState;
    const reason = this.nextReason || 'opossum state change';
    this.nextReason = '';
    this.generation += 1;
    this.trialInFlight = false;
    if (to === 'open') {
      this.openedAt = Date.now();
      this.openedAtTick = this.clock();
      this.lastTrip = { at: this.openedAt, reason };
    }
    if (to === 'closed') this.failures = 0;
    this.emitTransition(from, to, reason);
  }

  private emitTransition(from: BreakerState, to: BreakerState, reason: string): void {
    this.prevState = to;
    this.lastTransitionAt = Date.now();
    this.events.emit('transition', { service: this.config.name, from, to, reason, at: this.lastTransitionAt, forced: this.forcedOpen });
  }
}
