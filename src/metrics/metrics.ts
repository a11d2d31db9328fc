import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Fleet } from '../fleet/fleet.js';
import { MESSAGE_KINDS } from '../fleet/message.js';
import { STATE_VALUE, type BreakerState, type Circuit, type WindowSnapshot } from '../circuit/circuit.js';
import { FAILURE_REASONS } from '../outcome.js';
import type { Completed } from '../proxy/call.js';
import type { ServiceRegistry } from '../upstream/registry.js';
import type { Endpoint } from '../upstream/endpoints.js';
import type { Service } from '../upstream/service.js';
import type { ProxyHandler, WouldRejectReason } from '../proxy/handler.js';
import { LabelCache, NO_LABELS, registerFamily, SampledFamily, type Emit, type Labels } from './family.js';
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
/** `from>to` -> its `{ from, to }` label object, made once and shared by every service. */
const TRANSITION_LABELS = new Map(TRANSITIONS.map(([from, to]) => [`${from}>${to}`, Object.freeze({ from, to })]));

/**
 * One service's series: plain numbers that requests and breaker events bump, read by the
 * {@link SampledFamily} readers when scraped.
 */
interface ServiceSeries {
  readonly service: Service;
  /** `{ service }`, one object for the series' lifetime (prom-client caches its text by identity). */
  readonly labels: Labels;
  /** Requests by status code (of a service without routes). */
  readonly codes: Map<number, number>;
  /** Of a service with routes: requests by route, then status code (docs/routes.md). */
  readonly routed: Map<string, Map<number, { readonly labels: Labels; n: number }>>;
  readonly latency: LatencyCell;
  rejected: number;
  /** Bulkhead rejections. */
  shed: number;
  /** Observe mode's would-be rejections, by index in WOULD_REJECT. */
  readonly wouldReject: Float64Array;
  opens: number;
  /** By index in FAILURE_REASONS. */
  readonly failures: Float64Array;
  /** By `from>to`; the five that happen exist from the start. */
  readonly transitions: Map<string, { readonly labels: Labels; count: number }>;
}

const CODE = new LabelCache('code');

/** The count of one route and status of a service with routes, made on first use. */
function routedCell(s: ServiceSeries, route: string, code: number): { readonly labels: Labels; n: number } {
  let codes = s.routed.get(route);
  if (codes === undefined) s.routed.set(route, (codes = new Map<number, { readonly labels: Labels; n: number }>()));
  let cell = codes.get(code);
  if (cell === undefined) codes.set(code, (cell = { labels: Object.freeze({ code: String(code), route }), n: 0 }));
  return cell;
}
const RETRY_REASON = new LabelCache('reason');
const WOULD_REJECT: readonly WouldRejectReason[] = ['open', 'half_open', 'bulkhead'];
const WOULD_REJECT_LABELS: readonly Labels[] = WOULD_REJECT.map((reason) => Object.freeze({ reason }));
const REASON = FAILURE_REASONS.map((reason) => Object.freeze({ reason }));
const REASON_INDEX = new Map(FAILURE_REASONS.map((r, i) => [r, i]));
const ENDPOINT_OUTCOME = {
  success: Object.freeze({ outcome: 'success' }),
  failure: Object.freeze({ outcome: 'failure' }),
  abandoned: Object.freeze({ outcome: 'abandoned' }),
};
const ENDPOINT_STATE = {
  active: Object.freeze({ state: 'active' }),
  ejected: Object.freeze({ state: 'ejected' }),
  draining: Object.freeze({ state: 'draining' }),
};

/**
 * prom-client metrics (docs/observability.md), fed only by breaker and proxy events. Per-service series exist
 * from startup at zero and vanish when a reload removes the service; labels come from config only.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly series = new Map<string, ServiceSeries>();
  private readonly duration: LatencyHistogram;
  private readonly unrouted: Counter<'code'>;
  private readonly refused: Counter<'protocol'>;
  private readonly tunnelCounts: ProxyHandler['tunnelCounts'];

  constructor(breakers: ServiceRegistry, proxy: ProxyHandler, opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    const series = this.series;
    const family = (name: string, help: string, type: 'counter' | 'gauge', read: (emit: Emit) => void, zero?: () => void) =>
      registerFamily(this.registry, new SampledFamily(name, help, type, read, zero));
    const zeroAll = (zero: (s: ServiceSeries) => void) => () => {
      for (const s of series.values()) zero(s);
    };
    /** A family with one sample per service, labelled by the service only. */
    const perService = (name: string, help: string, type: 'counter' | 'gauge', value: (s: ServiceSeries) => number, zero?: () => void) =>
      family(
        name,
        help,
        type,
        (emit) => {
          for (const s of series.values()) emit(value(s), NO_LABELS, s.labels);
        },
        zero,
      );
    /** A per-service counter with samples only for the services where `present` holds. */
    const perServiceWhere = (
      name: string,
      help: string,
      present: (s: ServiceSeries) => boolean,
      value: (s: ServiceSeries) => number,
      zero: () => void,
    ) =>
      family(
        name,
        help,
        'counter',
        (emit) => {
          for (const s of series.values()) if (present(s)) emit(value(s), NO_LABELS, s.labels);
        },
        zero,
      );
    const gauge = (name: string, help: string, value: (c: Circuit) => number) =>
      perService(name, help, 'gauge', (s) => value(s.service.circuit));
    /** A per-service counter kept in the series' own field. */
    const counter = (name: string, help: string, field: 'opens' | 'rejected' | 'shed') =>
      perService(
        name,
        help,
        'counter',
        (s) => s[field],
        zeroAll((s) => (s[field] = 0)),
      );

    gauge('circuit_breaker_state', 'Breaker state: 0 closed, 1 open, 2 half-open.', (b) => STATE_VALUE[b.state]);
    gauge('circuit_breaker_consecutive_failures', 'Consecutive failures counted toward the threshold.', (b) => b.consecutiveFailures);
    gauge('circuit_breaker_forced_open', '1 when an operator forced the circuit open.', (b) => (b.forced ? 1 : 0));
    gauge(
      'circuit_breaker_next_probe_timestamp_seconds',
      'Unix time at which an open circuit lets its trial request through; 0 when not open.',
      (b) => b.nextProbeAt / 1000,
    );
    gauge(
      'circuit_breaker_cooldown_seconds',
      'The cooldown in force: while open, the one drawn for this opening; otherwise the one the next opening would get.',
      (b) => b.cooldownMs / 1000,
    );
    gauge('circuit_breaker_half_open_queue', 'Callers waiting for the half-open verdict (halfOpen.queue).', (b) => b.queued);
    /** A window rule's gauge: a sample only for the services where `present` holds. */
    const windowGauge = (name: string, help: string, value: (w: WindowSnapshot) => number | null) =>
      family(name, help, 'gauge', (emit) => {
        for (const s of series.values()) {
          const w = s.service.circuit.windowSnapshot();
          const v = w === null ? null : value(w);
          if (v !== null) emit(v, NO_LABELS, s.labels);
        }
      });
    windowGauge('circuit_breaker_window_requests', 'Outcomes in the current window (where a window rule is set).', (w) => w.requests);
    windowGauge(
      'circuit_breaker_failure_rate',
      'Failures / outcomes in the current window, 0-1 (where failureRate is set).',
      (w) => w.failureRate,
    );
    windowGauge(
      'circuit_breaker_slow_call_rate',
      'Slow calls / outcomes in the current window, 0-1 (where slowCalls is set).',
      (w) => w.slowCallRate,
    );
    counter('circuit_breaker_open_total', 'Times the circuit opened.', 'opens');
    counter('circuit_breaker_rejected_total', 'Requests answered without contacting the upstream (503 or the fallback).', 'rejected');
    perService(
      'proxy_in_flight',
      'Requests forwarded to the upstream and not yet ended (the bulkhead counts these).',
      'gauge',
      (s) => s.service.inFlight,
    );
    const tunnels = proxy.tunnelCounts;
    this.tunnelCounts = tunnels;
    perService('proxy_tunnels', 'Open WebSocket tunnels (docs/websocket.md).', 'gauge', (s) => tunnels.get(s.service.name)?.open ?? 0);
    perService(
      'proxy_tunnels_total',
      'WebSocket tunnels opened (handshakes the upstream answered 101).',
      'counter',
      (s) => tunnels.get(s.service.name)?.total ?? 0,
      () => tunnels.forEach((c) => (c.total = 0)),
    );
    counter('proxy_bulkhead_rejected_total', 'Requests answered 503 because maxConcurrent were in flight.', 'shed');
    family(
      'proxy_retries_total',
      'Retries started (docs/retries.md), by the failure retried: connect, reset, timeout or the status.',
      'counter',
      (emit) => {
        for (const s of series.values())
          for (const [reason, n] of s.service.retryBudget.byReason) emit(n, RETRY_REASON.get(reason), s.labels);
      },
      zeroAll((s) => s.service.retryBudget.byReason.clear()),
    );
    perService(
      'proxy_retry_budget_exhausted_total',
      'Failed attempts not retried because the retry budget was spent.',
      'counter',
      (s) => s.service.retryBudget.exhausted,
      zeroAll((s) => (s.service.retryBudget.exhausted = 0)),
    );
    family(
      'circuit_breaker_would_reject_total',
      'Observe mode: requests forwarded that enforce mode would have rejected, by reason (open, half_open, bulkhead).',
      'counter',
      (emit) => {
        for (const s of series.values())
          for (let i = 0; i < WOULD_REJECT.length; i++) emit(s.wouldReject[i]!, WOULD_REJECT_LABELS[i]!, s.labels);
      },
      zeroAll((s) => s.wouldReject.fill(0)),
    );
    family(
      'circuit_breaker_failures_total',
      'Upstream failures by reason (connect, timeout, reset, status).',
      'counter',
      (emit) => {
        for (const s of series.values()) for (let i = 0; i < REASON.length; i++) emit(s.failures[i]!, REASON[i]!, s.labels);
      },
      zeroAll((s) => s.failures.fill(0)),
    );
    family(
      'circuit_breaker_transitions_total',
      'State transitions.',
      'counter',
      (emit) => {
        for (const s of series.values()) for (const t of s.transitions.values()) emit(t.count, t.labels, s.labels);
      },
      zeroAll((s) => s.transitions.forEach((t) => (t.count = 0))),
    );
    family(
      'proxy_requests_total',
      'Requests by service and status code sent to the client (499: client left first).',
      'counter',
      (emit) => {
        for (const s of series.values()) {
          if (s.service.config.routes.length === 0) {
            for (const [code, n] of s.codes) emit(n, CODE.get(code), s.labels);
            continue;
          }
          // A service with routes: every series carries `route` (`-`: none matched), from startup.
          if (s.routed.size === 0) for (const code of INITIAL_CODES) routedCell(s, '-', code);
          for (const codes of s.routed.values()) for (const cell of codes.values()) emit(cell.n, cell.labels, s.labels);
        }
      },
      zeroAll((s) => {
        s.codes.forEach((_n, code) => s.codes.set(code, 0));
        s.routed.forEach((codes) => codes.forEach((cell) => (cell.n = 0)));
      }),
    );
    /** Each endpoint of the services that have several (or discover them), draining ones included until their last request ends. */
    const perEndpoint = (emitFor: (ep: Endpoint, emit: Emit) => void) => (emit: Emit) => {
      for (const s of series.values()) {
        const set = s.service.endpoints;
        if (set.several) for (const ep of set.withDraining) emitFor(ep, emit);
      }
    };
    family(
      'proxy_endpoint_requests_total',
      'Decided requests per endpoint by outcome (success, failure; abandoned: the client left or was at fault).',
      'counter',
      perEndpoint((ep, emit) => {
        emit(ep.successes, ENDPOINT_OUTCOME.success, ep.labels);
        emit(ep.failures, ENDPOINT_OUTCOME.failure, ep.labels);
        emit(ep.abandoned, ENDPOINT_OUTCOME.abandoned, ep.labels);
      }),
      zeroAll((s) => s.service.endpoints.withDraining.forEach((ep) => (ep.successes = ep.failures = ep.abandoned = 0))),
    );
    family(
      'proxy_endpoint_ejected',
      '1 while outlier ejection keeps the endpoint out of rotation.',
      'gauge',
      perEndpoint((ep, emit) => emit(ep.state === 'ejected' ? 1 : 0, NO_LABELS, ep.labels)),
    );
    family(
      'proxy_endpoint_ejections_total',
      'Times the endpoint was ejected.',
      'counter',
      perEndpoint((ep, emit) => emit(ep.ejectionsTotal, NO_LABELS, ep.labels)),
      zeroAll((s) => s.service.endpoints.withDraining.forEach((ep) => (ep.ejectionsTotal = 0))),
    );
    family('proxy_endpoints', 'Endpoints of the service by state (active, ejected, draining).', 'gauge', (emit) => {
      for (const s of series.values()) {
        const set = s.service.endpoints;
        if (!set.several) continue;
        const all = set.withDraining;
        const ejected = set.ejectedCount;
        const draining = all.length - set.all.length;
        emit(set.all.length - ejected, ENDPOINT_STATE.active, s.labels);
        emit(ejected, ENDPOINT_STATE.ejected, s.labels);
        emit(draining, ENDPOINT_STATE.draining, s.labels);
      }
    });
    perServiceWhere(
      'proxy_discovery_errors_total',
      'DNS resolutions of the service that failed or came back empty (the last good set kept serving).',
      (s) => s.service.config.upstream.discovery !== undefined,
      (s) => s.service.discoveryErrors,
      zeroAll((s) => (s.service.discoveryErrors = 0)),
    );
    this.duration = new LatencyHistogram(
      'proxy_request_duration_seconds',
      'Time from request to the end of the response.',
      'service',
      DURATION_BUCKETS,
    );
    registerFamily(this.registry, this.duration);
    this.unrouted = new Counter({
      name: 'proxy_unrouted_requests_total',
      help: 'Requests that named no configured service (400, 404, 414).',
      labelNames: ['code'],
      registers: [this.registry],
    });
    this.refused = new Counter({
      name: 'proxy_protocol_refused_total',
      help: 'Connections refused for speaking a protocol the proxy does not serve (h2: HTTP/2 prior knowledge).',
      labelNames: ['protocol'],
      registers: [this.registry],
    });

    for (const b of breakers.all()) this.add(b);
    breakers.on('added', (b) => this.add(b));
    breakers.on('removed', (name) => this.remove(name));
    breakers.on('failure', (f) => {
      const s = this.series.get(f.service);
      const i = REASON_INDEX.get(f.reason);
      if (s !== undefined && i !== undefined) s.failures[i]! += 1;
    });
    breakers.on('transition', (t) => {
      const s = this.series.get(t.service);
      if (t.from === t.to || s === undefined) return;
      if (t.to === 'open') s.opens += 1;
      const key = `${t.from}>${t.to}`;
      const known = s.transitions.get(key);
      if (known !== undefined) known.count += 1;
      else s.transitions.set(key, { labels: Object.freeze({ from: t.from, to: t.to }), count: 1 });
    });
    proxy.on('completed', (c) => this.onCompleted(c));
    proxy.on('wouldReject', (service, reason) => {
      const s = this.series.get(service);
      if (s !== undefined) s.wouldReject[WOULD_REJECT.indexOf(reason)]! += 1;
    });
    proxy.on('unrouted', (code) => this.unrouted.labels(String(code)).inc());
    proxy.on('protocolRefused', (protocol) => this.refused.labels(protocol).inc());
  }

  /**
   * A service's totals as `/metrics` counts them: requests (every status sent), those that were
   * 5xx, and those answered without the upstream. Read once a second by the status page's series.
   */
  totals(service: string): { requests: number; errors: number; rejected: number } | undefined {
    const s = this.series.get(service);
    if (s === undefined) return undefined;
    let requests = 0;
    let errors = 0;
    for (const [code, n] of s.codes) {
      requests += n;
      if (code >= 500) errors += n;
    }
    for (const codes of s.routed.values()) {
      for (const [code, cell] of codes) {
        requests += cell.n;
        if (code >= 500) errors += cell.n;
      }
    }
    return { requests, errors, rejected: s.rejected };
  }

  /** Of a service with routes: requests and 5xx by route, as `proxy_requests_total` counts them. */
  routeTotals(service: string): ReadonlyMap<string, { requests: number; errors: number }> {
    const out = new Map<string, { requests: number; errors: number }>();
    const s = this.series.get(service);
    if (s === undefined) return out;
    for (const [route, codes] of s.routed) {
      let requests = 0;
      let errors = 0;
      for (const [code, cell] of codes) {
        requests += cell.n;
        if (code >= 500) errors += cell.n;
      }
      out.set(route, { requests, errors });
    }
    return out;
  }

  /** Open WebSocket tunnels of a service, as `proxy_tunnels` shows them. */
  openTunnels(service: string): number {
    return this.tunnelCounts.get(service)?.open ?? 0;
  }

  /** Prometheus text exposition. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** The fleet's series (docs/fleet.md), read from its counts when scraped; only with `fleet` configured. */
  addFleet(fleet: Fleet): void {
    new Gauge({
      name: 'circuit_fleet_connected',
      help: "Whether this sidecar reaches the fleet's Redis (1) or works alone (0).",
      registers: [this.registry],
      collect() {
        this.set(fleet.connected ? 1 : 0);
      },
    });
    new Counter({
      name: 'circuit_fleet_messages_total',
      help: 'Fleet messages by kind (open, close, force) and direction (in: acted on from other sidecars, out: published).',
      labelNames: ['kind', 'direction'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const kind of MESSAGE_KINDS) {
          const n = fleet.counts.messages[kind];
          this.inc({ kind, direction: 'in' }, n.in);
          this.inc({ kind, direction: 'out' }, n.out);
        }
      },
    });
    new Counter({
      name: 'circuit_fleet_ignored_total',
      help: 'Fleet messages ignored: malformed, of an unknown version or service, from the future, or stale.',
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(fleet.counts.ignored);
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private onCompleted(c: Completed): void {
    const s = this.series.get(c.service);
    if (s === undefined) return; // removed by a reload while in flight: no new series
    if (c.route === undefined) s.codes.set(c.status, (s.codes.get(c.status) ?? 0) + 1);
    else routedCell(s, c.route, c.status).n += 1;
    s.latency.observe(c.durationSeconds);
    if (c.outcome === 'rejected') s.rejected += 1;
    else if (c.outcome === 'shed') s.shed += 1;
  }

  private add(service: Service): void {
    const name = service.name;
    this.remove(name);
    const latency = this.duration.create(name);
    const transitions = new Map([...TRANSITION_LABELS].map(([key, labels]) => [key, { labels, count: 0 }]));
    this.series.set(name, {
      service,
      labels: latency.labels,
      codes: new Map(INITIAL_CODES.map((code) => [code, 0])),
      routed: new Map(),
      latency,
      rejected: 0,
      shed: 0,
      wouldReject: new Float64Array(WOULD_REJECT.length),
      opens: 0,
      failures: new Float64Array(FAILURE_REASONS.length),
      transitions,
    });
  }

  private remove(name: string): void {
    if (!this.series.delete(name)) return;
    this.duration.remove(name);
  }
}
