import { type EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import { formatDuration, MAX_DURATION_MS } from '../config/duration.js';
import type { CircuitPolicy } from '../config/types.js';
import type { FailureReason, UpstreamOutcome } from '../outcome.js';
import { cooldownStep, drawCooldown, type Random } from '../policy/backoff.js';
import { monotonic, type Clock } from '../policy/clock.js';
import { ConsecutiveFailures, WindowRules, type Observation, type TripRule, type WindowSnapshot } from '../policy/trip.js';

export type { Clock, WindowSnapshot };

/** Breaker states as the admin API and logs spell them. */
export type BreakerState = 'closed' | 'open' | 'half_open';

/** Numeric encoding of the state gauge (docs/observability.md). */
export const STATE_VALUE: Record<BreakerState, number> = { closed: 0, open: 1, half_open: 2 };

export interface TransitionEvent {
  readonly service: string;
  readonly from: BreakerState;
  readonly to: BreakerState;
  readonly reason: string;
  readonly at: number;
  readonly forced: boolean;
  /** The fleet sidecar whose message made this transition (docs/fleet.md); absent: this sidecar's own. */
  readonly fleet?: string;
}

export interface FailureEvent {
  readonly service: string;
  readonly reason: FailureReason;
  /** Readable cause, e.g. `connect ECONNREFUSED`, `status 503`. */
  readonly detail: string;
  /** Node error code when there was one. */
  readonly code: string | undefined;
  readonly requestId: string | undefined;
  /** The endpoint the failed attempt went to (`host:port`). */
  readonly endpoint: string;
  /** True when the outcome belonged to an earlier state and did not count. */
  readonly stale: boolean;
}

export interface BreakerEvents {
  transition: [TransitionEvent];
  failure: [FailureEvent];
}

/** The circuit's part of the admin snapshot (`/breakers`, docs/observability.md). */
export interface CircuitSnapshot {
  state: BreakerState;
  forced: boolean;
  consecutiveFailures: number;
  threshold: number;
  cooldownMs: number;
  lastTransitionAt: string;
  retryAfterSeconds: number | null;
  lastTrip: { at: string; reason: string } | null;
  /** The window rules' counts (docs/policies.md), where a window rule is set. */
  window?: WindowSnapshot;
  /** Trials of this half-open period and queued callers, where `halfOpen` allows more than one trial or a queue. */
  halfOpen?: { trials: number; admitted: number; succeeded: number; queued: number };
  /** The fleet sidecar whose message put the circuit in this state (docs/fleet.md); absent: its own doing. */
  stateFrom?: string;
  /** Half-open in a fleet: the sidecar sending the fleet's trial, while it is another one (`?` while asking Redis). */
  trialBy?: string;
}

/**
 * The fleet's say over the half-open trial (docs/fleet.md, src/fleet/fleet.ts). Asked as the
 * cooldown elapses; `true`: this sidecar may send its trial now; `false`: it holds its trial and
 * will be told ({@link Circuit.trialGranted}, {@link Circuit.trialHeldBy}). Never awaited.
 */
export interface TrialCoordinator {
  halfOpened(circuit: Circuit, period: number): boolean;
}

/** Returned by {@link Circuit.admit} when the request must be rejected. */
export const REJECTED = -1;
/** Returned by {@link Circuit.admit} when the caller may wait for the half-open verdict ({@link Circuit.enqueue}). */
export const QUEUED = -2;
/**
 * The ticket of a request forwarded in observe mode that enforce mode would have rejected: never
 * current, so its outcome changes nothing in the circuit (docs/load-shedding.md).
 */
export const SHADOW = -3;

/** opossum's action is never fired: admission and outcomes are ours (see class doc). */
const NEVER_FIRED = (): Promise<void> => Promise.resolve();

/** A caller waiting for the half-open verdict. */
interface Waiter {
  readonly admitted: (ticket: number) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The circuit's state, one value (docs/architecture.md, "The circuit"): what belongs to one state
 * lives in its variant. `openings` (consecutive openings without a close) is the backoff step.
 */
export type CircuitState =
  | { readonly kind: 'closed' }
  | {
      readonly kind: 'open';
      /** Epoch ms of the opening, for display (`lastTrip`, the next-probe gauge). */
      readonly since: number;
      /** The same instant on the circuit's clock, for `Retry-After`. */
      readonly sinceTick: number;
      /** The cooldown drawn for this opening. */
      readonly cooldownMs: number;
      /** Forced by an operator: never probes, until forced closed. */
      readonly forced: boolean;
      readonly openings: number;
      /** The fleet sidecar whose message opened it; absent: this sidecar's own opening. */
      readonly from?: string;
    }
  | {
      readonly kind: 'half_open';
      /** Trial tickets handed out this period, less the abandoned ones. */
      admitted: number;
      succeeded: number;
      /** Callers waiting for the verdict (`halfOpen.queue`). */
      readonly waiters: Waiter[];
      readonly openings: number;
      /** Fleet: the trial is another sidecar's (its id; `?` while asking); admission rejects meanwhile. */
      heldBy?: string;
    };

/**
 * One service's circuit.
 *
 * The state is ours ({@link CircuitState}); opossum runs the cooldown: every `open()` arms its
 * `resetTimeout` timer, which moves it to HALF_OPEN and tells us (docs/architecture.md, "How
 * opossum is used"). Admission and outcomes go through this class instead of `fire()`, because a
 * sidecar needs what `fire()` cannot give:
 * - consecutive-failure trips and the window rules (src/policy/trip.ts), fed when an outcome is decided;
 * - a third outcome, "abandoned" (client left), that neither closes nor opens and frees a
 *   half-open trial slot;
 * - a state generation, so an outcome of a request admitted before the last transition is ignored
 *   (opossum would let a late success close a half-open circuit);
 * - several trials and a queue of callers waiting for their verdict;
 * - a cooldown per opening (backoff, an upstream's Retry-After): opossum reads `resetTimeout`
 *   from the options object it was given at every `open()` (see {@link Circuit.cbOptions}).
 * - no Promise, timer or `Error` per request on the hot path (a rejection allocates nothing).
 *
 * A ticket is `generation * 2 + (trial ? 1 : 0)`; a plain number so admission allocates nothing.
 */
export class Circuit {
  private readonly cb: CircuitBreaker;
  /**
   * The options object handed to opossum, kept: opossum reads `resetTimeout` from it each time the
   * circuit opens (opossum 9.0.0, pinned; test/unit/breaker.test.ts "canary" fails if that changes).
   */
  private readonly cbOptions: { resetTimeout: number } & Record<string, unknown>;
  private readonly clock: Clock;
  private readonly random: Random;
  private inner: CircuitState = { kind: 'closed' };
  private generation = 0;
  /** The seed's rule; its count stays visible while open, until a success or a close. */
  private readonly consecutive: ConsecutiveFailures;
  private readonly windows: WindowRules;
  /** The rules a closed circuit asks, in order: the first reason opens it. */
  private readonly rules: readonly TripRule[];
  private lastTransitionAt = Date.now();
  private lastTrip: { at: number; reason: string } | null = null;
  /** The sidecar whose message made the state in force (closed by a fleet close); undefined: ours. */
  private closedFrom: string | undefined;
  /** Set by the fleet when it shares the trial (docs/fleet.md); undefined: every trial is local. */
  coordinator: TrialCoordinator | undefined;

  constructor(
    readonly name: string,
    readonly policy: CircuitPolicy,
    private readonly events: EventEmitter<BreakerEvents>,
    rotateBucketController: EventEmitter,
    clock: Clock = monotonic,
    random: Random = Math.random,
  ) {
    this.clock = clock;
    this.random = random;
    this.consecutive = new ConsecutiveFailures(policy.threshold);
    this.windows = new WindowRules(policy.failureRate, policy.slowCalls, clock);
    this.rules = this.windows.active ? [this.consecutive, this.windows] : [this.consecutive];
    // A fresh options object per circuit: opossum mutates it, and reads resetTimeout from it.
    this.cbOptions = {
      name,
      resetTimeout: policy.cooldownMs,
      timeout: false,
      errorThresholdPercentage: 100,
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      rotateBucketController,
    };
    this.cb = new CircuitBreaker(NEVER_FIRED, this.cbOptions);
    this.cb.on('halfOpen', () => this.cooldownElapsed());
  }

  get state(): BreakerState {
    return this.inner.kind;
  }

  get forced(): boolean {
    return this.inner.kind === 'open' && this.inner.forced;
  }

  get consecutiveFailures(): number {
    return this.consecutive.count;
  }

  /** Callers waiting for the half-open verdict. */
  get queued(): number {
    return this.inner.kind === 'half_open' ? this.inner.waiters.length : 0;
  }

  /** Epoch ms at which an open circuit lets its trial through; 0 when not open or forced. */
  get nextProbeAt(): number {
    const s = this.inner;
    return s.kind === 'open' && !s.forced ? s.since + s.cooldownMs : 0;
  }

  /**
   * The cooldown in force: while open, the one drawn for this opening; otherwise the one the next
   * opening would get (its backoff step, before jitter).
   */
  get cooldownMs(): number {
    const s = this.inner;
    switch (s.kind) {
      case 'open':
        return s.cooldownMs;
      case 'half_open':
        return cooldownStep(s.openings + 1, this.policy.cooldownMs, this.policy.backoff);
      case 'closed':
        return cooldownStep(1, this.policy.cooldownMs, this.policy.backoff);
    }
  }

  /** The window rules' view, null where no window rule is set. */
  windowSnapshot(): WindowSnapshot | null {
    return this.windows.snapshot();
  }

  /**
   * Lets a request through or not. Returns a ticket for {@link success}/{@link failure}/{@link abandon},
   * {@link REJECTED}, or {@link QUEUED} (call {@link enqueue}). In HALF_OPEN, `halfOpen.trials`
   * tickets are handed out per half-open period; an abandoned trial gives its slot back.
   */
  admit(): number {
    const s = this.inner;
    if (s.kind === 'closed') return this.generation * 2;
    if (s.kind === 'half_open') {
      if (s.admitted < this.policy.halfOpen.trials && s.heldBy === undefined) {
        s.admitted += 1;
        return this.generation * 2 + 1;
      }
      if (s.waiters.length < this.policy.halfOpen.queue) return QUEUED;
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
    const s = this.inner;
    if (s.kind !== 'half_open') {
      queueMicrotask(() => admitted(this.admit()));
      return () => undefined;
    }
    const waiters = s.waiters;
    const waiter: Waiter = {
      admitted,
      timer: setTimeout(() => {
        if (withdraw(waiters, waiter)) admitted(REJECTED);
      }, this.policy.halfOpen.maxWaitMs),
    };
    waiters.push(waiter);
    return () => void withdraw(waiters, waiter);
  }

  /** Whole seconds a rejected caller should wait (`Retry-After`), at least 1. */
  retryAfterSeconds(): number {
    const s = this.inner;
    if (s.kind !== 'open') return 1; // half-open with the trials in flight: ask again shortly
    if (s.forced) return Math.max(1, Math.ceil(this.policy.cooldownMs / 1000));
    return Math.max(1, Math.ceil((s.sinceTick + s.cooldownMs - this.clock()) / 1000));
  }

  /** The request's response completed. `slow`: it was already counted as a slow call. */
  success(ticket: number, slow = false): void {
    if (!this.isCurrent(ticket)) return;
    this.consecutive.clear();
    const s = this.inner;
    if (s.kind === 'half_open' && ticket & 1) {
      s.succeeded += 1;
      const n = this.policy.halfOpen.trials;
      if (s.succeeded >= n) this.close(n === 1 ? 'trial request succeeded' : `${n} trial requests succeeded`);
      return;
    }
    this.observe(slow ? 'slow-success' : 'success', '', undefined);
  }

  /** The request has waited `slowCalls.duration` for response headers: a slow call, counted now. */
  slow(ticket: number): void {
    if (!this.isCurrent(ticket) || ticket & 1 || !this.windows.countsSlow) return;
    this.observe('slow', '', undefined);
  }

  /** The upstream failed the request (an attempt's outcome). */
  failure(ticket: number, o: UpstreamOutcome): void {
    const stale = !this.isCurrent(ticket);
    this.events.emit('failure', {
      service: this.name,
      reason: o.reason,
      detail: o.cause,
      code: o.code,
      requestId: o.requestId,
      endpoint: o.endpoint,
      stale,
    });
    if (stale) return;
    if (ticket & 1) {
      this.trip(`trial request failed: ${o.cause}`, o.retryAfterMs);
      return;
    }
    this.observe(o.slow ? 'slow-failure' : 'failure', o.cause, o.retryAfterMs);
  }

  /** The client left: neither success nor failure. A half-open trial slot is given back. */
  abandon(ticket: number): void {
    const s = this.inner;
    if (this.isCurrent(ticket) && ticket & 1 && s.kind === 'half_open') s.admitted -= 1;
  }

  /**
   * Operator action: open and stay open (no probing) until {@link forceClose}. `from`: the fleet
   * sidecar where the operator asked it for the whole fleet (docs/fleet.md).
   */
  forceOpen(reason: string, from?: string): void {
    const s = this.inner;
    const why = from === undefined ? `forced open: ${reason}` : `fleet: ${from} forced open: ${reason}`;
    if (s.kind === 'open') {
      // Already open: report the change of kind (now forced) as a transition of its own.
      this.inner = {
        kind: 'open',
        since: s.since,
        sinceTick: s.sinceTick,
        cooldownMs: s.cooldownMs,
        forced: true,
        openings: s.openings,
        ...(from !== undefined ? { from } : {}),
      };
      this.emitTransition('open', 'open', why, from);
      return;
    }
    this.open(why, this.policy.cooldownMs, true, 0, from);
  }

  /** Operator action: close now, clear the failure count and any forced-open state. */
  forceClose(reason: string, from?: string): void {
    this.consecutive.clear();
    if (this.inner.kind !== 'closed')
      this.close(from === undefined ? `forced closed: ${reason}` : `fleet: ${from} forced closed: ${reason}`, from);
  }

  /**
   * Another sidecar's opening reached the fleet's quorum, or its trial failed (docs/fleet.md): open
   * until the same instant (epoch ms), with its reason. A forced-open, already open circuit, or one
   * whose own trial is deciding, is left alone. Returns whether it opened.
   */
  fleetOpen(from: string, reason: string, until: number): boolean {
    const s = this.inner;
    if (s.kind === 'open' || (s.kind === 'half_open' && s.heldBy === undefined)) return false;
    const ms = Math.min(MAX_DURATION_MS, Math.max(1, until - Date.now()));
    this.open(`fleet: ${from} ${reason}`, ms, false, (s.kind === 'closed' ? 0 : s.openings) + 1, from);
    return true;
  }

  /** Another sidecar's trial succeeded: close, unless forced open or already closed. Returns whether it closed. */
  fleetClose(from: string, reason: string): boolean {
    const s = this.inner;
    if (s.kind === 'closed' || (s.kind === 'open' && s.forced)) return false;
    this.close(`fleet: ${from} ${reason}`, from);
    return true;
  }

  /**
   * A close told again after a sidecar rejoined the fleet (docs/fleet.md, "Failure modes"): as
   * {@link fleetClose}, but only for an opening that began before `at` (epoch ms on the sender's
   * clock). An older close says nothing about a newer opening.
   */
  fleetCloseReplayed(from: string, reason: string, at: number): boolean {
    const began = this.inner.kind === 'closed' ? undefined : this.lastTrip?.at;
    if (began === undefined || began >= at) return false;
    return this.fleetClose(from, reason);
  }

  /**
   * A fleet-wide force, read from the fleet's board on joining (docs/fleet.md, "The board"): an
   * open is applied unless already forced open; a close only ends a force open that came from the
   * fleet before `at`, never an operator's force here. Returns whether the state changed.
   */
  fleetForceReplayed(action: 'open' | 'close', from: string, reason: string, at: number): boolean {
    const s = this.inner;
    const forced = s.kind === 'open' && s.forced;
    if (action === 'open') {
      if (forced) return false;
      this.forceOpen(reason, from);
      return true;
    }
    if (!forced || s.from === undefined || (this.lastTrip?.at ?? 0) >= at) return false;
    this.forceClose(reason, from);
    return true;
  }

  /** The generation of the state in force: a fleet answer about an earlier half-open period is ignored. */
  get period(): number {
    return this.generation;
  }

  /** The fleet's trial is this sidecar's (it took the lock, or the fleet is unreachable): admit it. */
  trialGranted(period: number): void {
    const s = this.inner;
    if (period !== this.generation || s.kind !== 'half_open' || s.heldBy === undefined) return;
    delete s.heldBy;
  }

  /** The fleet's trial is another sidecar's: keep rejecting until its verdict (or its lock lapses). */
  trialHeldBy(period: number, sidecar: string): void {
    const s = this.inner;
    if (period !== this.generation || s.kind !== 'half_open' || s.heldBy === undefined) return;
    s.heldBy = sidecar;
  }

  /** Whether this half-open period's trial waits for another sidecar (or for Redis's answer). */
  get trialHeld(): boolean {
    return this.inner.kind === 'half_open' && this.inner.heldBy !== undefined;
  }

  /** Epoch ms of the opening in force; 0 when not open. */
  get openedAt(): number {
    return this.inner.kind === 'open' ? this.inner.since : 0;
  }

  /** True while an open circuit's opening was this sidecar's own and no operator's (the fleet republishes these). */
  get openedHere(): boolean {
    const s = this.inner;
    return s.kind === 'open' && !s.forced && s.from === undefined;
  }

  snapshot(): CircuitSnapshot {
    const state = this.inner.kind;
    const window = this.windowSnapshot();
    const h = this.policy.halfOpen;
    const s = this.inner;
    return {
      state,
      forced: this.forced,
      consecutiveFailures: this.consecutive.count,
      threshold: this.policy.threshold,
      cooldownMs: this.cooldownMs,
      lastTransitionAt: new Date(this.lastTransitionAt).toISOString(),
      retryAfterSeconds: state === 'open' ? this.retryAfterSeconds() : null,
      lastTrip: this.lastTrip ? { at: new Date(this.lastTrip.at).toISOString(), reason: this.lastTrip.reason } : null,
      ...(window !== null ? { window } : {}),
      ...(h.trials > 1 || h.queue > 0
        ? {
            halfOpen: {
              trials: h.trials,
              admitted: s.kind === 'half_open' ? s.admitted : 0,
              succeeded: s.kind === 'half_open' ? s.succeeded : 0,
              queued: this.queued,
            },
          }
        : {}),
      ...(this.stateFrom !== undefined ? { stateFrom: this.stateFrom } : {}),
      ...(s.kind === 'half_open' && s.heldBy !== undefined ? { trialBy: s.heldBy } : {}),
    };
  }

  /** The fleet sidecar whose message made the state in force; undefined: this sidecar's own doing. */
  get stateFrom(): string | undefined {
    const s = this.inner;
    return s.kind === 'open' ? s.from : s.kind === 'closed' ? this.closedFrom : undefined;
  }

  /** Stops opossum's timers and turns away queued callers; the circuit must not be used afterwards. */
  shutdown(): void {
    this.releaseWaiters();
    this.cb.shutdown();
  }

  private isCurrent(ticket: number): boolean {
    return ticket >> 1 === this.generation;
  }

  /** A closed circuit's outcome to its rules, in order; the first reason opens it. */
  private observe(o: Observation, cause: string, retryAfterMs: number | undefined): void {
    for (const rule of this.rules) {
      const reason = rule.observe(o);
      if (reason === undefined) continue;
      this.trip(rule === this.consecutive ? `${reason}: ${cause}` : reason, retryAfterMs);
      return;
    }
  }

  /**
   * Opens the circuit for a cooldown: an honoured upstream Retry-After decides its length, else the
   * backoff step (the step advances either way). The reason says which applied.
   */
  private trip(reason: string, retryAfterMs: number | undefined): void {
    const s = this.inner;
    const openings = (s.kind === 'closed' ? 0 : s.openings) + 1;
    const drawn = drawCooldown(openings, this.policy.cooldownMs, this.policy.backoff, this.random);
    let ms = drawn.ms;
    let why = reason;
    const honour = this.policy.retryAfter;
    if (retryAfterMs !== undefined && honour !== undefined) {
      ms = Math.min(Math.max(retryAfterMs, 1000), honour.maxMs);
      why = `${reason}; upstream Retry-After ${formatDuration(ms)}`;
    } else if (drawn.note) {
      why = `${reason}; ${drawn.note}`;
    }
    this.open(why, ms, false, openings);
  }

  private open(reason: string, cooldownMs: number, forced: boolean, openings = 0, origin?: string): void {
    const from = this.inner.kind;
    const since = Date.now();
    this.releaseWaiters();
    this.inner = {
      kind: 'open',
      since,
      sinceTick: this.clock(),
      cooldownMs,
      forced,
      openings,
      ...(origin !== undefined ? { from: origin } : {}),
    };
    this.lastTrip = { at: since, reason };
    this.cbOptions.resetTimeout = cooldownMs;
    this.enter(from, reason, origin);
    this.cb.open(); // arms opossum's cooldown timer
  }

  /** opossum's cooldown timer fired. A forced-open circuit never probes: it re-opens, silently. */
  private cooldownElapsed(): void {
    const s = this.inner;
    if (s.kind !== 'open') return;
    if (s.forced) {
      this.cb.open();
      return;
    }
    const half: CircuitState & { kind: 'half_open' } = { kind: 'half_open', admitted: 0, succeeded: 0, waiters: [], openings: s.openings };
    // In a fleet sharing the trial, held until the fleet says whose it is; never awaited here.
    if (this.coordinator !== undefined) half.heldBy = '?';
    this.inner = half;
    this.enter('open', `cooldown of ${formatDuration(s.cooldownMs)} elapsed`);
    if (this.coordinator !== undefined && this.inner === half && this.coordinator.halfOpened(this, this.generation))
      this.trialGranted(this.generation);
  }

  private close(reason: string, origin?: string): void {
    const from = this.inner.kind;
    const waiting = this.takeWaiters();
    this.inner = { kind: 'closed' };
    this.closedFrom = origin;
    this.consecutive.clear();
    this.cbOptions.resetTimeout = this.policy.cooldownMs;
    this.enter(from, reason, origin);
    this.cb.close();
    // The queue goes on as closed-circuit requests, not from inside the outcome that closed it.
    if (waiting.length) queueMicrotask(() => this.admitAll(waiting));
  }

  /** Every transition: a new generation (older tickets go stale), empty windows, the event. */
  private enter(from: BreakerState, reason: string, origin?: string): void {
    this.generation += 1;
    this.windows.clear();
    this.emitTransition(from, this.inner.kind, reason, origin);
  }

  private admitAll(waiters: readonly Waiter[]): void {
    for (const w of waiters) w.admitted(this.inner.kind === 'closed' ? this.generation * 2 : REJECTED);
  }

  /** Queued callers of a half-open circuit that is leaving that state, their timers stopped. */
  private takeWaiters(): Waiter[] {
    const s = this.inner;
    if (s.kind !== 'half_open' || s.waiters.length === 0) return [];
    const waiters = s.waiters.splice(0);
    for (const w of waiters) clearTimeout(w.timer);
    return waiters;
  }

  /** The half-open verdict was not a close: every queued caller is turned away. */
  private releaseWaiters(): void {
    const waiting = this.takeWaiters();
    if (waiting.length === 0) return;
    queueMicrotask(() => {
      for (const w of waiting) w.admitted(REJECTED);
    });
  }

  private emitTransition(from: BreakerState, to: BreakerState, reason: string, origin?: string): void {
    this.lastTransitionAt = Date.now();
    this.events.emit('transition', {
      service: this.name,
      from,
      to,
      reason,
      at: this.lastTransitionAt,
      forced: this.forced,
      ...(origin !== undefined ? { fleet: origin } : {}),
    });
  }
}

function withdraw(waiters: Waiter[], waiter: Waiter): boolean {
  const i = waiters.indexOf(waiter);
  if (i < 0) return false;
  waiters.splice(i, 1);
  clearTimeout(waiter.timer);
  return true;
}
