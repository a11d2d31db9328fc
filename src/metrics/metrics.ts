import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import {
  FAILURE_REASONS,
  STATE_VALUE,
  type BreakerRegistry,
  type BreakerState,
  type FailureReason,
  type ServiceBreaker,
} from '../breaker/index.js';
import type { Completed, ProxyHandler } from '../proxy/handler.js';
import { LatencyHistogram, type LatencyCell } from './latency.js';

/** Latency buckets (seconds): few on purpose, each costs a comparison per request. */
const DURATION_BUCKETS = [0.005, 0.025, 0.1, 0.5, 2.5, 10];
/** Codes zero-initialised per service: the ones the proxy itself produces, and plain success. */
const INITIAL_CODES = [200, 502, 503, 504];
const TRANSITIONS: ReadonlyArray<readonly [BreakerState, BreakerState]> = [
  ['closed', 'open'],
  ['open', 'half_open'],
  ['half_open', 'closed'],
  ['half_open', 'open'],
  ['open', 'closed'],
];

/**
 * One service's series. What every request touches is plain numbers (counts by status code not yet
 * handed to prom-client, the latency cell, rejections not yet handed over); prom-client gets them
 * when scraped. A prom-client child would hash its label set on every `inc`/`observe`.
 */
interface ServiceSeries {
  /** Requests by status code since the last scrape. */
  readonly pendingCodes: Map<number, number>;
  readonly latency: LatencyCell;
  pendingRejected: number;
  readonly failures: Map<FailureReason, Counter.Internal>;
}

/**
 * prom-client metrics (SPEC §4), fed only by breaker and proxy events. Per-service series exist
 * from startup at zero and vanish when a reload removes the service; labels come from config only.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly series = new Map<string, ServiceSeries>();
  private readonly requests: Counter<'service' | 'code'>;
  private readonly duration: LatencyHistogram;
  private readonly rejected: Counter<'service'>;
  private readonly failures: Counter<'service' | 'reason'>;
  private readonly opens: Counter<'service'>;
  private readonly transitions: Counter<'service' | 'from' | 'to'>;
  private readonly unrouted: Counter<'code'>;

  constructor(breakers: BreakerRegistry, proxy: ProxyHandler, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    const gauge = (name: string, help: string, value: (b: ServiceBreaker) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['service'],
        registers,
        collect() {
          this.reset();
          for (const b of breakers.all()) this.set({ service: b.name }, value(b));
        },
      });
    gauge('circuit_breaker_state', 'Breaker state: 0 closed, 1 open, 2 half-open.', (b) => STATE_VALUE[b.state]);
    gauge('circuit_breaker_consecutive_failures', 'Consecutive failures counted toward the threshold.', (b) => b.consecutiveFailures);
    gauge('circuit_breaker_forced_open', '1 when an operator forced the circuit open.', (b) => (b.forced ? 1 : 0));
    gauge(
      'circuit_breaker_next_probe_timestamp_seconds',
      'Unix time at which an open circuit lets its trial request through; 0 when not open.',
      (b) => b.nextProbeAt / 1000,
    );
    this.opens = new Counter({ name: 'circuit_breaker_open_total', help: 'Times the circuit opened.', labelNames: ['service'], registers });
    const series = this.series;
    this.rejected = new Counter({
      name: 'circuit_breaker_rejected_total',
      help: 'Requests answered 503 without contacting the upstream.',
      labelNames: ['service'],
      registers,
      collect() {
        for (const [service, s] of series) {
          if (s.pendingRejected > 0) this.inc({ service }, s.pendingRejected);
          s.pendingRejected = 0;
        }
      },
    });
    this.failures = new Counter({
      name: 'circuit_breaker_failures_total',
      help: 'Upstream failures by reason (connect, timeout, reset, status).',
      labelNames: ['service', 'reason'],
      registers,
    });
    this.transitions = new Counter({
      name: 'circuit_breaker_transitions_total',
      help: 'State transitions.',
      labelNames: ['service', 'from', 'to'],
      registers,
    });
    this.requests = new Counter({
      name: 'proxy_requests_total',
      help: 'Requests by service and status code sent to the client (499: client left first).',
      labelNames: ['service', 'code'],
      registers,
      collect() {
        for (const [service, s] of series) {
          for (const [code, n] of s.pendingCodes) {
            if (n === 0) continue;
            this.inc({ service, code: String(code) }, n);
            s.pendingCodes.set(code, 0);
          }
        }
      },
    });
    this.duration = new LatencyHistogram(
      'proxy_request_duration_seconds',
      'Time from request to the end of the response.',
      'service',
      DURATION_BUCKETS,
    );
    this.registry.registerMetric(this.duration as unknown as Metric);
    this.unrouted = new Counter({
      name: 'proxy_unrouted_requests_total',
      help: 'Requests that named no configured service (400, 404, 414).',
      labelNames: ['code'],
      registers,
    });

    for (const b of breakers.all()) this.add(b.name);
    breakers.on('added', (svc) => this.add(svc.name));
    breakers.on('removed', (name) => this.remove(name));
    breakers.on('failure', (f) => this.series.get(f.service)?.failures.get(f.reason)?.inc());
    breakers.on('transition', (t) => {
      if (t.from === t.to || !this.series.has(t.service)) return;
      if (t.to === 'open') this.opens.labels(t.service).inc();
      this.transitions.labels(t.service, t.from, t.to).inc();
    });
    proxy.on('completed', (c) => this.onCompleted(c));
    proxy.on('unrouted', (code) => this.unrouted.labels(String(code)).inc());
  }

  /** Prometheus text exposition. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private onCompleted(c: Completed): void {
    const s = this.series.get(c.service);
    if (s === undefined) return; // removed by a reload while in flight: no new series
    s.pendingCodes.set(c.status, (s.pendingCodes.get(c.status) ?? 0) + 1);
    s.latency.observe(c.durationSeconds);
    if (c.outcome === 'rejected') s.pendingRejected += 1;
  }

  private add(name: string): void {
    if (this.series.has(name)) this.remove(name);
    const pendingCodes = new Map<number, number>();
    for (const code of INITIAL_CODES) {
      this.requests.labels(name, String(code)).inc(0);
      pendingCodes.set(code, 0);
    }
    const failures = new Map<FailureReason, Counter.Internal>();
    for (const reason of FAILURE_REASONS) {
      const c = this.failures.labels(name, reason);
      c.inc(0);
      failures.set(reason, c);
    }
    this.opens.labels(name).inc(0);
    for (const [from, to] of TRANSITIONS) this.transitions.labels(name, from, to).inc(0);
    this.rejected.labels(name).inc(0);
    this.series.set(name, { pendingCodes, latency: this.duration.create(name), pendingRejected: 0, failures });
  }

  private remove(name: string): void {
    const s = this.series.get(name);
    if (s === undefined) return;
    for (const code of s.pendingCodes.keys()) this.requests.remove(name, String(code));
    for (const reason of FAILURE_REASONS) this.failures.remove(name, reason);
    for (const [from, to] of TRANSITIONS) this.transitions.remove(name, from, to);
    this.opens.remove(name);
    this.rejected.remove(name);
    this.duration.remove(name);
    this.series.delete(name);
  }
}
