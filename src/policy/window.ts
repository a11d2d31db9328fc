/**
 * A sliding time window of outcomes in 1 s buckets, for the failure-rate and slow-call rules
 * (docs/policies.md). An outcome counts from when it was decided until between `windowMs` and
 * `windowMs` + 1 s later, when its bucket falls out. Pure: the clock is injected.
 */
import type { Clock } from './clock.js';

const BUCKET_MS = 1000;

/** What a window holds now. */
export interface WindowCounts {
  /** Outcomes: successes, failures and slow calls, each request once. */
  readonly total: number;
  readonly failures: number;
  readonly slow: number;
}

export class OutcomeWindow {
  private readonly ids: Float64Array;
  private readonly totals: Uint32Array;
  private readonly failureCounts: Uint32Array;
  private readonly slowCounts: Uint32Array;

  constructor(
    readonly windowMs: number,
    private readonly clock: Clock,
  ) {
    // One bucket more than the window spans, so an outcome stays at least `windowMs`.
    const n = Math.ceil(windowMs / BUCKET_MS) + 1;
    this.ids = new Float64Array(n).fill(-1);
    this.totals = new Uint32Array(n);
    this.failureCounts = new Uint32Array(n);
    this.slowCounts = new Uint32Array(n);
  }

  /** A decided outcome: one more request, and whether it failed or was slow. */
  record(failure: boolean, slow: boolean): void {
    const i = this.bucket();
    this.totals[i]! += 1;
    if (failure) this.failureCounts[i]! += 1;
    if (slow) this.slowCounts[i]! += 1;
  }

  /** A call already counted as slow then failed: it counts as a failure too, not as a second request. */
  recordLateFailure(): void {
    this.failureCounts[this.bucket()]! += 1;
  }

  /** A state change starts an empty window. */
  clear(): void {
    this.ids.fill(-1);
    this.totals.fill(0);
    this.failureCounts.fill(0);
    this.slowCounts.fill(0);
  }

  counts(): WindowCounts {
    const current = Math.floor(this.clock() / BUCKET_MS);
    const oldest = current - this.ids.length + 1;
    let total = 0;
    let failures = 0;
    let slow = 0;
    for (let i = 0; i < this.ids.length; i++) {
      if (this.ids[i]! >= oldest) {
        total += this.totals[i]!;
        failures += this.failureCounts[i]!;
        slow += this.slowCounts[i]!;
      }
    }
    return { total, failures, slow };
  }

  /** The current bucket's slot, emptied first when it last held an older second. */
  private bucket(): number {
    const id = Math.floor(this.clock() / BUCKET_MS);
    const i = id % this.ids.length;
    if (this.ids[i] !== id) {
      this.ids[i] = id;
      this.totals[i] = 0;
      this.failureCounts[i] = 0;
      this.slowCounts[i] = 0;
    }
    return i;
  }
}
