/**
 * The trip rules over a window (docs/policies.md), as pure functions: given the window's counts
 * and the rule, the trip reason, or undefined when the rule does not trip. Below `minRequests` a
 * ratio never trips.
 */
import { formatDuration } from '../config/duration.js';
import type { WindowCounts } from './window.js';

export interface FailureRateRule {
  /** Failures over outcomes, 0-1, at or above which the circuit opens. */
  readonly ratio: number;
  readonly minRequests: number;
  readonly windowMs: number;
}

export interface SlowCallRule extends FailureRateRule {
  /** No response headers this long after the request was sent in full: slow. */
  readonly durationMs: number;
}

/** `55%`, `12.5%`: a ratio as the trip reasons print it. */
export function percent(ratio: number): string {
  return `${Math.round(ratio * 1000) / 10}%`;
}

/** e.g. `failure rate 55% (11 of 20) in 30s >= 50%` */
export function failureRateTrip(c: WindowCounts, rule: FailureRateRule): string | undefined {
  if (c.total < rule.minRequests || c.total === 0) return undefined;
  const r = c.failures / c.total;
  if (r < rule.ratio) return undefined;
  return `failure rate ${percent(r)} (${c.failures} of ${c.total}) in ${formatDuration(rule.windowMs)} >= ${percent(rule.ratio)}`;
}

/** e.g. `slow calls 85% (17 of 20) over 2s in 30s >= 80%` */
export function slowCallTrip(c: WindowCounts, rule: SlowCallRule): string | undefined {
  if (c.total < rule.minRequests || c.total === 0) return undefined;
  const r = c.slow / c.total;
  if (r < rule.ratio) return undefined;
  return `slow calls ${percent(r)} (${c.slow} of ${c.total}) over ${formatDuration(rule.durationMs)} in ${formatDuration(rule.windowMs)} >= ${percent(rule.ratio)}`;
}
