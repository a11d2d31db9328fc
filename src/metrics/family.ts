/**
 * A metric family whose values live in plain numbers elsewhere (per-service counters, breaker
 * state) and are read only when scraped. Handed to a prom-client `Registry` with
 * `registerMetric`, so prom-client still renders the exposition.
 *
 * Why not prom-client's Counter and Gauge: with 1,000 services they hold 27,000 labelled series.
 * Creating them (a label-set hash each) took ~70 ms of startup, and each scrape went through a
 * `collect()` that re-set every gauge by label set, then rendered every sample's labels again:
 * a `sharedLabels` object is rendered once per family and cached by identity, plain `labels`
 * are rendered per sample. Here each sample carries its service's one label object as
 * `sharedLabels` (the way prom-client's own Histogram exposes a series), and the other labels
 * (`code`, `reason`, `from`/`to`) are shared frozen objects.
 */

import type { Metric, Registry } from 'prom-client';

export type Labels = Readonly<Record<string, string>>;

/**
 * Registers a family of ours (this file's SampledFamily, latency.ts's LatencyHistogram) with a
 * prom-client registry. They have what `Registry` reads of a metric (`name`, `help`, `type`,
 * `aggregator`, `get()`), not the whole `Metric` class: the one reach into prom-client's
 * internals, hence prom-client pinned exactly in package.json and the tests that compare our
 * exposition with prom-client's own Counter, Gauge and Histogram (test/unit/family.test.ts,
 * test/unit/latency.test.ts).
 */
export function registerFamily(registry: Registry, family: { readonly name: string; get(): unknown }): void {
  registry.registerMetric(family as unknown as Metric);
}

/** A sample as prom-client's registry renders it. */
export interface Sample {
  value: number;
  labels: Labels;
  sharedLabels: Labels;
}

/** Called once per sample by a family's reader. */
export type Emit = (value: number, labels: Labels, sharedLabels: Labels) => void;

export const NO_LABELS: Labels = Object.freeze({});

export class SampledFamily {
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
    /** Emits every sample, in exposition order. */
    private readonly read: (emit: Emit) => void,
    /** `Registry.resetMetrics()`: zeroes what `read` reports (counters); gauges report live values. */
    private readonly zero: () => void = () => {},
  ) {}

  /** What the registry asks for when it renders the text exposition. */
  getForPromString(): { name: string; help: string; type: string; aggregator: string; values: Sample[] } {
    const values: Sample[] = [];
    this.read((value, labels, sharedLabels) => values.push({ value, labels, sharedLabels }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** The same values with each sample's labels in one object (`getMetricsAsJSON`). */
  get(): { name: string; help: string; type: string; aggregator: string; values: Array<{ value: number; labels: Labels }> } {
    const values: Array<{ value: number; labels: Labels }> = [];
    this.read((value, labels, sharedLabels) => values.push({ value, labels: { ...sharedLabels, ...labels } }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.zero();
  }
}

/**
 * One frozen `{ [name]: value }` object per distinct value: sample label objects are shared
 * across services and scrapes. Callers bound the values (status codes, fixed enums).
 */
export class LabelCache {
  private readonly cache = new Map<string | number, Labels>();

  constructor(private readonly name: string) {}

  get(value: string | number): Labels {
    let labels = this.cache.get(value);
    if (labels === undefined) {
      labels = Object.freeze({ [this.name]: String(value) });
      this.cache.set(value, labels);
    }
    return labels;
  }
}
