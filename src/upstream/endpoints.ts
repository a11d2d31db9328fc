/**
 * A service's endpoints (docs/endpoints.md): the addresses its requests go to, which of them are in
 * rotation, the balancer that picks one per request, and outlier ejection over each one's own
 * outcomes. The service's circuit sits above this and counts every request as before.
 */
import type { EventEmitter } from 'node:events';
import type { UpstreamPolicy, UpstreamTls } from '../config/types.js';
import { formatDuration } from '../config/duration.js';
import { monotonic, type Clock } from '../policy/clock.js';
import { mayEject, OutlierTracker } from '../policy/outlier.js';
import { OutcomeWindow } from '../policy/window.js';

/** `active`: in rotation; `ejected`: out until its ejection ends; `draining`: gone from config or DNS, finishing its requests. */
export type EndpointState = 'active' | 'ejected' | 'draining';

/** What `/breakers/<name>` and `/stats` show of one endpoint. */
export interface EndpointSnapshot {
  readonly address: string;
  readonly state: EndpointState;
  readonly inFlight: number;
  /** Decided requests and failures in the last minute. */
  readonly requests: number;
  readonly failures: number;
  /** While ejected: until when (ISO time), which ejection in a row, why. */
  readonly ejectedUntil?: string;
  readonly ejection?: number;
  readonly reason?: string;
}

/** `event: endpoint` on `GET /events`, and the log line: an endpoint ejected, back, added or removed. */
export interface EndpointEvent {
  readonly service: string;
  readonly endpoint: string;
  readonly state: EndpointState | 'added' | 'removed';
  /** Epoch ms; for ejections. */
  readonly at: number;
  readonly until?: number;
  readonly ejection?: number;
  readonly reason?: string;
}

export interface EndpointEvents {
  endpoint: [EndpointEvent];
  /** A removed endpoint's last request ended: its connection pool can go (src/proxy/forwarder.ts). */
  drained: [Endpoint];
}

const MINUTE_MS = 60_000;

/** One address of a service. */
export class Endpoint {
  /** `host:port` as connected, e.g. `10.0.0.11:8000` or `[fd00::1]:8000`. */
  readonly address: string;
  /** Scheme, connect host and port. */
  readonly url: URL;
  /** `Host` sent upstream (and the TLS server name): the configured URL's host. */
  readonly host: string;
  /** Identity across reloads and re-resolutions: same address and same Host keep their state. */
  readonly key: string;
  /** `{ service, endpoint }` for the metrics, one object for the endpoint's lifetime. */
  readonly labels: Readonly<Record<string, string>>;
  state: EndpointState = 'active';
  inFlight = 0;
  /** Totals since the endpoint appeared, by outcome (`proxy_endpoint_requests_total`). */
  successes = 0;
  failures = 0;
  abandoned = 0;
  ejectionsTotal = 0;
  /** The last minute's outcomes, for `/breakers`. */
  readonly recent: OutcomeWindow;
  outlier: OutlierTracker | undefined;
  returnTimer: NodeJS.Timeout | undefined;
  /** The service's `tls:` in force: a reload that changes it gives the endpoint a new connection pool (src/proxy/forwarder.ts). */
  tls: UpstreamTls | undefined;

  constructor(service: string, url: URL, host: string, clock: Clock) {
    this.url = url;
    this.host = host;
    this.address = `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
    this.key = `${url.protocol}//${this.address}|${host}`;
    this.labels = Object.freeze({ service, endpoint: this.address });
    this.recent = new OutcomeWindow(MINUTE_MS, clock);
  }
}

/**
 * The endpoints of one service. Lives as long as the service; a reload or a DNS answer updates
 * it in place, keeping the state of every endpoint that stays.
 */
export class EndpointSet {
  private list: Endpoint[] = [];
  /** Endpoints in rotation (active), what the balancer picks from. */
  private available: Endpoint[] = [];
  private readonly draining = new Set<Endpoint>();
  private next = 0;
  private policy: UpstreamPolicy;

  constructor(
    private readonly service: string,
    policy: UpstreamPolicy,
    private readonly events: EventEmitter<EndpointEvents>,
    private readonly clock: Clock = monotonic,
    private readonly random: () => number = Math.random,
  ) {
    this.policy = policy;
    this.replace(
      policy.endpoints.map((u) => [u, u.host] as const),
      false,
    );
  }

  /** Several endpoints, or discovery: the endpoint series and columns are shown (one fixed URL is the service itself). */
  get several(): boolean {
    return this.policy.endpoints.length > 1 || this.policy.discovery !== undefined;
  }

  get all(): readonly Endpoint[] {
    return this.list;
  }

  /** Endpoints in config or DNS, then those draining. */
  get withDraining(): Endpoint[] {
    return this.draining.size === 0 ? this.list : [...this.list, ...this.draining];
  }

  get ejectedCount(): number {
    return this.list.length - this.available.length;
  }

  /**
   * The endpoint for the next request: round-robin, or the less loaded of two picked at random.
   * A retry passes the endpoints that failed it: another one when one is available (docs/retries.md).
   */
  pick(avoid?: ReadonlySet<Endpoint>): Endpoint {
    let a = this.available;
    if (avoid !== undefined && avoid.size > 0) {
      const others = a.filter((e) => !avoid.has(e));
      if (others.length > 0) a = others;
    }
    const n = a.length;
    if (n === 1) return a[0]!;
    if (n === 0) return this.list[0]!;
    if (this.policy.balance === 'round-robin') {
      if (this.next >= n) this.next = 0;
      return a[this.next++]!;
    }
    const i = Math.floor(this.random() * n);
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i) j += 1;
    return a[i]!.inFlight <= a[j]!.inFlight ? a[i]! : a[j]!;
  }

  /** A request went to `ep` and ended with this outcome (never a client's fault: those are `abandoned`). */
  outcome(ep: Endpoint, verdict: 'success' | 'failure' | 'abandoned', cause: string): void {
    if (verdict === 'abandoned') {
      ep.abandoned += 1;
      return;
    }
    const failure = verdict === 'failure';
    if (failure) ep.failures += 1;
    else ep.successes += 1;
    ep.recent.record(failure, false);
    const tracker = ep.outlier;
    if (tracker === undefined || ep.state !== 'active') return;
    const reason = tracker.observe(failure, cause);
    if (reason !== undefined && mayEject(this.list.length, this.ejectedCount, this.available.length, tracker.rule.maxEjectedPercent)) {
      this.eject(ep, tracker, reason);
    }
  }

  /** The request that went to `ep` has ended. */
  done(ep: Endpoint): void {
    ep.inFlight -= 1;
    if (ep.state === 'draining' && ep.inFlight === 0 && this.draining.delete(ep)) this.events.emit('drained', ep);
  }

  /** A reload's policy: endpoints that stay keep their state; a changed outlier rule starts their counts afresh. */
  reconfigure(policy: UpstreamPolicy): void {
    const outlierChanged = JSON.stringify(policy.outlier) !== JSON.stringify(this.policy.outlier);
    const prevBase = this.policy.discovery !== undefined ? this.policy.endpoints[0]!.href : undefined;
    this.policy = policy;
    if (outlierChanged) for (const ep of this.list) this.restore(ep, false);
    for (const ep of this.list) ep.tls = policy.tls;
    const sameBase = policy.discovery !== undefined && prevBase === policy.endpoints[0]!.href;
    // With discovery, the resolved set stays until the next answer, unless the URL itself changed.
    if (!sameBase)
      this.replace(
        policy.endpoints.map((u) => [u, u.host] as const),
        true,
      );
    else this.refreshOutlier();
  }

  /**
   * The addresses DNS gave for the discovery host name: each an endpoint of the service's scheme,
   * port and Host. An empty answer changes nothing (the last good set is kept).
   */
  resolved(addresses: readonly string[]): void {
    const base = this.policy.endpoints[0]!;
    if (addresses.length === 0) return;
    const host = base.host;
    this.replace(
      addresses.map((a) => {
        const u = new URL(base.href);
        u.hostname = a.includes(':') ? `[${a}]` : a;
        return [u, host] as const;
      }),
      true,
    );
  }

  snapshot(): EndpointSnapshot[] {
    const now = this.clock();
    const wall = Date.now();
    return this.withDraining.map((ep) => {
      const c = ep.recent.counts();
      const t = ep.outlier;
      return {
        address: ep.address,
        state: ep.state,
        inFlight: ep.inFlight,
        requests: c.total,
        failures: c.failures,
        ...(ep.state === 'ejected' && t !== undefined
          ? { ejectedUntil: new Date(wall + t.ejectedUntil - now).toISOString(), ejection: t.ejections, reason: t.reason }
          : {}),
      };
    });
  }

  shutdown(): void {
    for (const ep of this.withDraining) this.clearTimer(ep);
  }

  private eject(ep: Endpoint, tracker: OutlierTracker, reason: string): void {
    const ms = tracker.eject(reason) - this.clock();
    ep.state = 'ejected';
    ep.ejectionsTotal += 1;
    this.rebuild();
    this.clearTimer(ep);
    ep.returnTimer = setTimeout(() => this.restore(ep, true), ms);
    ep.returnTimer.unref();
    const at = Date.now();
    this.emit(ep, 'ejected', { at, until: at + Math.round(ms), ejection: tracker.ejections, reason });
  }

  /** Back in rotation (its ejection ended, or a reload changed the rule). */
  private restore(ep: Endpoint, announce: boolean): void {
    this.clearTimer(ep);
    if (ep.state !== 'ejected') return;
    ep.outlier?.restore();
    ep.state = 'active';
    this.rebuild();
    if (announce) this.emit(ep, 'active', {});
  }

  /** The set becomes `next`, by identity: the same address and Host keeps its endpoint object and state. */
  private replace(next: ReadonlyArray<readonly [URL, string]>, announce: boolean): void {
    const old = new Map(this.list.map((ep) => [ep.key, ep]));
    const list: Endpoint[] = [];
    for (const [url, host] of next) {
      const fresh = new Endpoint(this.service, url, host, this.clock);
      const kept = old.get(fresh.key);
      if (kept !== undefined) {
        old.delete(fresh.key);
        list.push(kept);
        continue;
      }
      const back = [...this.draining].find((d) => d.key === fresh.key);
      const ep = back ?? fresh;
      if (back !== undefined) {
        this.draining.delete(back);
        back.state = 'active';
      }
      list.push(ep);
      if (announce) this.emit(ep, 'added', {});
    }
    for (const ep of old.values()) {
      this.clearTimer(ep);
      ep.state = 'draining';
      if (ep.inFlight > 0) this.draining.add(ep);
      else this.events.emit('drained', ep);
      if (announce) this.emit(ep, 'removed', {});
    }
    for (const ep of list) ep.tls = this.policy.tls;
    this.list = list;
    this.refreshOutlier();
  }

  /** Gives each endpoint a tracker for the rule in force (none with one endpoint and no discovery). */
  private refreshOutlier(): void {
    const rule = this.policy.outlier;
    for (const ep of this.list) {
      if (rule === undefined) {
        this.restore(ep, false);
        ep.outlier = undefined;
      } else if (ep.outlier?.rule !== rule) {
        const prev = ep.outlier;
        ep.outlier = new OutlierTracker(rule, this.clock);
        if (prev !== undefined && ep.state === 'ejected') {
          // Same rule by value across a reload: the ejection in force carries on.
          ep.outlier.ejections = prev.ejections;
          ep.outlier.ejectedUntil = prev.ejectedUntil;
          ep.outlier.reason = prev.reason;
        }
      }
    }
    this.rebuild();
  }

  private rebuild(): void {
    this.available = this.list.filter((ep) => ep.state === 'active');
  }

  private clearTimer(ep: Endpoint): void {
    if (ep.returnTimer !== undefined) clearTimeout(ep.returnTimer);
    ep.returnTimer = undefined;
  }

  private emit(ep: Endpoint, state: EndpointEvent['state'], extra: Partial<EndpointEvent>): void {
    this.events.emit('endpoint', { service: this.service, endpoint: ep.address, state, at: Date.now(), ...extra });
  }
}

/** The log line of an endpoint event (src/log.ts). */
export function describeEndpointEvent(e: EndpointEvent): string {
  switch (e.state) {
    case 'ejected':
      return `${e.service} endpoint ${e.endpoint} ejected for ${formatDuration((e.until ?? e.at) - e.at)} (ejection ${e.ejection ?? 1}): ${e.reason ?? ''}`;
    case 'active':
      return `${e.service} endpoint ${e.endpoint} back in rotation`;
    case 'added':
      return `${e.service} endpoint ${e.endpoint} added`;
    case 'removed':
      return `${e.service} endpoint ${e.endpoint} removed (draining its requests)`;
    case 'draining':
      return `${e.service} endpoint ${e.endpoint} draining`;
  }
}
