/**
 * Outlier ejection of one endpoint (docs/endpoints.md, "Ejection"): when an endpoint's own
 * outcomes say it is failing, how long it stays out, and how many of a service's endpoints may be
 * out at once. Pure: the clock is injected; the endpoint set (src/upstream/endpoints.ts) acts on
 * the answers.
 */
import type { Clock } from './clock.js';
import { percent, type FailureRateRule } from './rules.js';
import { OutcomeWindow } from './window.js';

/** Outlier ejection of one service's endpoints (docs/endpoints.md); present only where `outlier` is set. */
export interface OutlierRule {
  /** Failures in a row on one endpoint that eject it. Default 5. */
  readonly consecutiveFailures: number;
  /** Eject on the endpoint's own failure ratio over a window; off unless set. */
  readonly failureRate: FailureRateRule | undefined;
  /** The n-th ejection in a row lasts n x this, in ms. Default 30 000. */
  readonly ejectionTimeMs: number;
  /** No ejection lasts longer, in ms. Default 300 000. */
  readonly maxEjectionTimeMs: number;
  /** At most this share of the endpoints ejected at once (0-1). Default 0.1. */
  readonly maxEjectedPercent: number;
}

export class OutlierTracker {
  /** Failures in a row since the last success or ejection. */
  consecutive = 0;
  /** Ejections without a success in between: the n of the next ejection's n x ejectionTime. */
  ejections = 0;
  /** Clock time the current ejection ends; 0 when not ejected. */
  ejectedUntil = 0;
  /** Why the endpoint was last ejected. */
  reason = '';
  private readonly window: OutcomeWindow | undefined;

  constructor(
    readonly rule: OutlierRule,
    private readonly clock: Clock,
  ) {
    this.window = rule.failureRate ? new OutcomeWindow(rule.failureRate.windowMs, clock) : undefined;
  }

  /**
   * One decided outcome of a request to the endpoint while it is in rotation. Returns why it
   * should be ejected now, or undefined. A success ends the run of ejections; after a return
   * with no success since, the first failure is reason enough (no probe request: docs/endpoints.md).
   */
  observe(failure: boolean, cause: string): string | undefined {
    this.window?.record(failure, false);
    if (!failure) {
      this.consecutive = 0;
      this.ejections = 0;
      return undefined;
    }
    this.consecutive += 1;
    if (this.ejections > 0) return `failed again after ejection ${this.ejections}: ${cause}`;
    const n = this.consecutive;
    if (n >= this.rule.consecutiveFailures) return `${n} consecutive failure${n === 1 ? '' : 's'}: ${cause}`;
    const fr = this.rule.failureRate;
    if (fr !== undefined && this.window !== undefined) {
      const c = this.window.counts();
      if (c.total >= fr.minRequests && c.failures / c.total >= fr.ratio) {
        return `failure rate ${percent(c.failures / c.total)} of ${c.total} requests: ${cause}`;
      }
    }
    return undefined;
  }

  /** Ejects: returns the clock time it ends, min(n x ejectionTime, maxEjectionTime) from now. */
  eject(reason: string): number {
    this.ejections += 1;
    this.reason = reason;
    this.consecutive = 0;
    this.window?.clear();
    const ms = Math.min(this.ejections * this.rule.ejectionTimeMs, this.rule.maxEjectionTimeMs);
    this.ejectedUntil = this.clock() + ms;
    return this.ejectedUntil;
  }

  /** Back in rotation; the run of ejections is remembered until a success. */
  restore(): void {
    this.ejectedUntil = 0;
  }

  get ejected(): boolean {
    return this.ejectedUntil !== 0;
  }
}

/**
 * Whether one more of `total` endpoints may be ejected while `ejected` are and `available` are
 * in rotation: at most floor(total x maxPercent) at once, but with two or more one always may be;
 * the last available endpoint never is.
 */
export function mayEject(total: number, ejected: number, available: number, maxPercent: number): boolean {
  if (available <= 1) return false;
  const cap = Math.max(Math.floor(total * maxPercent + 1e-9), total >= 2 ? 1 : 0);
  return ejected < cap;
}
