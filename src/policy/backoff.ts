/**
 * How long an opening lasts (docs/policies.md, "Backoff"): the n-th consecutive opening without a
 * close in between lasts `min(cooldown × multiplier^(n-1), max)`, drawn uniformly within ±jitter,
 * then capped at `max` again. Pure: the random source is injected.
 */
import { formatDuration } from '../config/duration.js';

export interface BackoffRule {
  readonly multiplier: number;
  readonly maxMs: number;
  /** 0-1: each cooldown drawn uniformly within ±jitter of its step. */
  readonly jitter: number;
}

export type Random = () => number;

/** The cooldown step for the n-th consecutive opening (n ≥ 1), before jitter. */
export function cooldownStep(n: number, cooldownMs: number, rule: BackoffRule | undefined): number {
  if (rule === undefined) return cooldownMs;
  return Math.min(cooldownMs * rule.multiplier ** Math.max(0, n - 1), rule.maxMs);
}

/** The cooldown drawn for the n-th consecutive opening, and the note a trip reason carries. */
export function drawCooldown(n: number, cooldownMs: number, rule: BackoffRule | undefined, random: Random): { ms: number; note: string } {
  const step = cooldownStep(n, cooldownMs, rule);
  if (rule === undefined) return { ms: step, note: '' };
  const jittered = rule.jitter > 0 ? step * (1 + (random() * 2 - 1) * rule.jitter) : step;
  const ms = Math.max(1, Math.min(Math.round(jittered), rule.maxMs));
  return { ms, note: `cooldown ${formatDuration(ms)} (backoff ${n} of ${formatDuration(rule.maxMs)})` };
}
