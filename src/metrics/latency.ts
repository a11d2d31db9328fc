/**
 * A labelled-by-service latency histogram whose observations cost a few comparisons and two
 * additions: each service owns a {@link LatencyCell} (plain numbers), and the registry reads the
 * cells only when scraped. prom-client's own Histogram hashes the label set on every `observe`,
 * even through a cached child; on a sidecar's success path that was most of the metrics cost.
 *
 * It is handed to a prom-client `Registry` with `registerMetric` and answers `get()` with the
 * value list prom-client's Histogram produces (`_bucket` with `le`, cumulative, `+Inf`, `_sum`,
 * `_count`), so the exposition is the same text.
 */

import { NO_LABELS } from './family.js';

/** One service's observations since startup (or since its series was created by a reload). */
export class LatencyCell {
  /** Non-cumulative counts; index `bounds.length` holds observations above the top bound. */
  readonly counts: Float64Array;
  sum = 0;

  constructor(
    private readonly bounds: readonly number[],
    /** The series' own label set, one object for its lifetime (prom-client caches its text by identity). */
    readonly labels: Readonly<Record<string, string>>,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.counts[i]! += 1;
    this.sum += seconds;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
  }
}

interface Sample {
  value: number;
  labels: Readonly<Record<string, string | number>>;
  sharedLabels: Readonly<Record<string, string>>;
  metricName: string;
}

const INF = Object.freeze({ le: '+Inf' });

export class LatencyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly cells = new Map<string, LatencyCell>();
  private readonly le: ReadonlyArray<Readonly<Record<string, number>>>;

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly label: string,
    private readonly bounds: readonly number[],
  ) {
    this.le = bounds.map((b) => Object.freeze({ le: b }));
  }

  /** The cell for `key` (a new, zeroed one replaces any previous). */
  create(key: string): LatencyCell {
    const cell = new LatencyCell(this.bounds, Object.freeze({ [this.label]: key }));
    this.cells.set(key, cell);
    return cell;
  }

  remove(key: string): void {
    this.cells.delete(key);
  }

  /**
   * What a prom-client registry asks for when it renders the text exposition: as prom-client's
   * Histogram, the series' labels go in `sharedLabels`, whose rendering the registry caches.
   */
  getForPromString(): { name: string; help: string; type: string; aggregator: string; values: Sample[] } {
    const values: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    const sum = `${this.name}_sum`;
    const count = `${this.name}_count`;
    for (const cell of this.cells.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += cell.counts[i]!;
        values.push({ value: cumulative, labels: this.le[i]!, sharedLabels: cell.labels, metricName: bucket });
      }
      const total = cumulative + cell.counts[this.bounds.length]!;
      values.push(
        { value: total, labels: INF, sharedLabels: cell.labels, metricName: bucket },
        { value: cell.sum, labels: NO_LABELS, sharedLabels: cell.labels, metricName: sum },
        { value: total, labels: NO_LABELS, sharedLabels: cell.labels, metricName: count },
      );
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** The same values with each sample's labels in one object (`getMetricsAsJSON`). */
  get(): { name: string; help: string; type: string; aggregator: string; values: Array<Omit<Sample, 'sharedLabels'>> } {
    const data = this.getForPromString();
    return { ...data, values: data.values.map(({ sharedLabels, labels, ...v }) => ({ ...v, labels: { ...labels, ...sharedLabels } })) };
  }

  /** `Registry.resetMetrics()` calls this on every metric. */
  reset(): void {
    for (const cell of this.cells.values()) cell.reset();
  }
}
