/**
 * The trip rules of a closed circuit behind one interface (docs/policies.md): each observes the
 * decided outcomes and answers with a trip reason, or undefined. The circuit asks them in order
 * and opens on the first reason; adding a rule is adding a class here. Pure: the clock is injected.
 */
import type { Clock } from './clock.js';
import { failureRateTrip, slowCallTrip, type FailureRateRule, type SlowCallRule } from './rules.js';
import { OutcomeWindow } from './window.js';

/**
 * What a closed circuit tells its rules about one request:
 * - `success`, `failure`: decided;
 * - `slow`: still waiting for headers past `slowCalls.duration`, counted now as one request;
 * - `slow-success`, `slow-failure`: a request already counted as slow was then decided (it is not
 *   counted as another request; a failure counts as a failure too).
 */
export type Observation = 'success' | 'failure' | 'slow' | 'slow-success' | 'slow-failure';

export interface TripRule {
  /** The outcome, then whether the rule trips: its reason, or undefined. */
  observe(o: Observation): string | undefined;
  /** Every state change starts the rule afresh. */
  clear(): void;
}

/** The seed's rule: `threshold` failures in a row (a success in between starts over). */
export class ConsecutiveFailures implements TripRule {
  count = 0;

  constructor(readonly threshold: number) {}

  observe(o: Observation): string | undefined {
    switch (o) {
      case 'success':
      case 'slow-success':
        this.count = 0;
        return undefined;
      case 'slow':
        return undefined;
      case 'failure':
      case 'slow-failure':
        this.count += 1;
        return this.count >= this.threshold ? `${this.count} consecutive failure${this.count === 1 ? '' : 's'}` : undefined;
    }
  }

  clear(): void {
    this.count = 0;
  }
}

/** What the window rules read, for `/breakers` and the metrics. */
export interface WindowSnapshot {
  readonly requests: number;
  readonly failureRate: number | null;
  readonly slowCallRate: number | null;
}

/**
 * The failure-rate and slow-call rules over their windows: one window shared when both use the
 * same length, so an outcome is one request in it however many rules read it.
 */
export class WindowRules implements TripRule {
  private readonly failureWindow: OutcomeWindow | undefined;
  private readonly slowWindow: OutcomeWindow | undefined;
  /** The distinct windows above: every outcome goes into each. */
  private readonly windows: readonly OutcomeWindow[];

  constructor(
    private readonly failureRate: FailureRateRule | undefined,
    private readonly slowCalls: SlowCallRule | undefined,
    clock: Clock,
  ) {
    const fr = failureRate;
    const sc = slowCalls;
    this.failureWindow = fr ? new OutcomeWindow(fr.windowMs, clock) : undefined;
    this.slowWindow = sc ? (fr && fr.windowMs === sc.windowMs ? this.failureWindow : new OutcomeWindow(sc.windowMs, clock)) : undefined;
    this.windows = [...new Set([this.failureWindow, this.slowWindow])].filter((w) => w !== undefined);
  }

  /** True where a window rule is set. */
  get active(): boolean {
    return this.windows.length > 0;
  }

  /** Whether slow calls are counted at all (`slowCalls` set). */
  get countsSlow(): boolean {
    return this.slowWindow !== undefined;
  }

  observe(o: Observation): string | undefined {
    switch (o) {
      case 'slow-success':
        return undefined; // already in the windows, as a slow call
      case 'success':
        for (const w of this.windows) w.record(false, false);
        break;
      case 'failure':
        for (const w of this.windows) w.record(true, false);
        break;
      case 'slow':
        if (this.slowWindow === undefined) return undefined;
        for (const w of this.windows) w.record(false, true);
        break;
      case 'slow-failure':
        for (const w of this.windows) w.recordLateFailure();
        break;
    }
    return (
      (this.failureRate && failureRateTrip(this.failureWindow!.counts(), this.failureRate)) ||
      (this.slowCalls && slowCallTrip(this.slowWindow!.counts(), this.slowCalls)) ||
      undefined
    );
  }

  clear(): void {
    for (const w of this.windows) w.clear();
  }

  snapshot(): WindowSnapshot | null {
    if (!this.active) return null;
    const f = this.failureWindow?.counts();
    const s = this.slowWindow === this.failureWindow ? f : this.slowWindow?.counts();
    return {
      requests: Math.max(f?.total ?? 0, s?.total ?? 0),
      failureRate: f ? (f.total ? f.failures / f.total : 0) : null,
      slowCallRate: s ? (s.total ? s.slow / s.total : 0) : null,
    };
  }
}
