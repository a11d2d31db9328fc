/** Validated, frozen configuration: what the rest of the program reads. */
import type { BackoffRule } from '../policy/backoff.js';
import type { OutlierRule } from '../policy/outlier.js';
import type { RetryRule } from '../policy/retry.js';
import type { RouteMatcher } from '../policy/routes.js';
import type { FailureRateRule, SlowCallRule } from '../policy/rules.js';

export type { BackoffRule, FailureRateRule, OutlierRule, RetryRule, SlowCallRule };

/** Who is let through while half-open (docs/policies.md). */
export interface HalfOpenRule {
  /** Requests admitted per half-open period; the circuit closes when all succeed. Default 1. */
  readonly trials: number;
  /** Further callers that wait for the verdict. Default 0. */
  readonly queue: number;
  /** How long a queued caller waits at most, in ms. Default 1 000. */
  readonly maxWaitMs: number;
}

/** Honour an upstream's `Retry-After` (present only with `honor: true`). */
export interface RetryAfterRule {
  /** The longest cooldown it may set, in ms. Default 600 000. */
  readonly maxMs: number;
}

/** An inclusive range of HTTP status codes. */
export interface StatusRange {
  readonly from: number;
  readonly to: number;
}

export interface ListenConfig {
  readonly host: string;
  readonly port: number;
}

export interface ProxyListenConfig extends ListenConfig {
  /** Open client connections beyond this are refused. Default 10 000. */
  readonly maxConnections: number;
}

/** Limits on what a client may take its time over; none of them counts against a breaker. */
export interface ClientTimeouts {
  /** A request head not complete within this many ms gets 408. Default 10 000. */
  readonly headerMs: number;
  /** A request body idle this many ms between chunks gets 408. Default 30 000. */
  readonly bodyIdleMs: number;
  /** A WebSocket tunnel idle both ways this many ms is closed; undefined: off (docs/websocket.md). */
  readonly tunnelIdleMs?: number;
}

/**
 * What a request's call may set (docs/configuration.md): how long it may take, what counts as a
 * failure, what an open circuit answers. A change of these alone keeps the circuit's state on
 * reload; per-route overrides (later) are of these keys only.
 */
export interface CallPolicy {
  /** No response headers within this many ms after the request was sent = failure (504). Default 5 000. */
  readonly timeoutMs: number;
  /** A response body that stalls this many ms between chunks is cut and counted as `reset`. Default 30 000. */
  readonly bodyIdleTimeoutMs: number;
  /** Upstream statuses counted as failures. Default 500-599. */
  readonly failureStatuses: readonly StatusRange[];
  /** `slowCalls.duration`: no response headers this long = a slow call, in ms; off unless `slowCalls` is set. */
  readonly slowCallMs: number | undefined;
  /** What an open circuit answers instead of the 503 problem; off unless set. */
  readonly fallback: FallbackResponse | undefined;
  /** Retries (docs/retries.md); off (undefined) unless set with attempts ≥ 1. */
  readonly retries: RetryRule | undefined;
  /** A route's `clientTimeouts.bodyIdle` in ms; undefined: the proxy-wide one. */
  readonly clientBodyIdleMs: number | undefined;
  /** An event stream idle this many ms is closed, not counted; undefined: off (docs/behaviour.md, "Event streams"). */
  readonly streamIdleTimeoutMs: number | undefined;
  /** Media types (lower case, no parameters) whose responses are event streams. Default `text/event-stream`. */
  readonly streamContentTypes: readonly string[];
  /** The Retry-After of the proxy's own 503s: the cooldown's seconds, none, or at most this many seconds. */
  readonly rejectRetryAfter: RejectRetryAfter;
}

/** `rejectRetryAfter` (docs/behaviour.md, "What rejected callers are told"): a number is a cap in whole seconds, ≥ 1. */
export type RejectRetryAfter = 'cooldown' | 'none' | number;

/** One entry of a service's `routes` (docs/routes.md): which requests, and their call settings. */
export interface RouteConfig {
  /** `name:`, else the index: the `route` label of metrics, logs and /stats. */
  readonly name: string;
  readonly match: RouteMatcher;
  /** The service's call policy with this route's keys in place of the service's. */
  readonly call: CallPolicy;
}

/** What shapes a service's circuit: a change of any of these gives the service a fresh circuit on reload. */
export interface CircuitPolicy {
  /** Consecutive failures that open the circuit. Default 3 (env `CB_THRESHOLD`). */
  readonly threshold: number;
  /** OPEN -> HALF_OPEN delay in ms. Default 30 000 (env `CB_COOLDOWN_SECONDS`). */
  readonly cooldownMs: number;
  /** Open on a failure ratio over a window; off unless set. */
  readonly failureRate: FailureRateRule | undefined;
  /** Open on a ratio of slow calls over a window; off unless set. */
  readonly slowCalls: SlowCallRule | undefined;
  /** Lengthen the cooldown of consecutive openings; off unless set. */
  readonly backoff: BackoffRule | undefined;
  readonly halfOpen: HalfOpenRule;
  /** Honour an upstream's Retry-After; off unless set. */
  readonly retryAfter: RetryAfterRule | undefined;
}

/** Who is let through besides the circuit's say (docs/load-shedding.md); a change keeps the circuit's state. */
export interface AdmissionPolicy {
  /** Bulkhead: requests in flight at once; off unless set. */
  readonly maxConcurrent: number | undefined;
  /** `observe`: nothing is rejected, what would have been is counted. Default `enforce`. */
  readonly mode: 'enforce' | 'observe';
}

/** Endpoints from DNS (docs/endpoints.md, "Discovery"). */
export interface DiscoveryRule {
  /** The host name re-resolved. */
  readonly host: string;
  readonly refreshMs: number;
  /** DNS servers for `dns.Resolver`; empty: the system resolver (`dns.lookup`, every address). */
  readonly servers: readonly string[];
}

/** Where a service's requests go: a change keeps the circuit unless `url` (or the endpoint list) changed. */
export interface UpstreamPolicy {
  /** The listed endpoints (one for `url`); with discovery, the URL whose host name is resolved. */
  readonly endpoints: readonly URL[];
  readonly discovery: DiscoveryRule | undefined;
  readonly balance: 'round-robin' | 'least-request';
  /** Off unless set. */
  readonly outlier: OutlierRule | undefined;
  /** `tls:` for an https upstream, files read at load; undefined: Node's defaults (system roots). */
  readonly tls: UpstreamTls | undefined;
}

/** An https upstream's TLS settings (docs/configuration.md, "TLS to upstreams"): always verified. */
export interface UpstreamTls {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly servername?: string;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** What the files and settings were, to tell a change on reload (the files' digests, not their bytes). */
  readonly fingerprint: string;
}

/** One configured service, resolved: its address and its policies, split by owner. */
export interface ServiceConfig {
  /** Service name as used in `/svc/<name>/...`. */
  readonly name: string;
  /** Base URL as configured (after `${VAR}` expansion); for `endpoints`, the list joined by `, `. */
  readonly url: string;
  /** Parsed base URL (the first endpoint's): scheme and base path, which every endpoint shares. */
  readonly target: URL;
  readonly upstream: UpstreamPolicy;
  readonly call: CallPolicy;
  /** Per-route call settings, first match wins; empty: every request takes `call`. */
  readonly routes: readonly RouteConfig[];
  readonly circuit: CircuitPolicy;
  readonly admission: AdmissionPolicy;
}

/** A configured fallback answer, read and checked at load. */
export interface FallbackResponse {
  readonly status: number;
  /** Header names and values as configured, flat: `[name, value, ...]`. */
  readonly headers: readonly string[];
  readonly body: Buffer;
}

/** Fallback bodies are bounded: they are held in memory and sent from it. */
export const MAX_FALLBACK_BYTES = 64 * 1024;

export interface Config {
  readonly listen: ProxyListenConfig;
  readonly admin: ListenConfig;
  readonly clientTimeouts: ClientTimeouts;
  /** In-flight requests get this long to finish on SIGTERM/SIGINT. Default 10 000 ms. */
  readonly shutdownGraceMs: number;
  /** Services by name, in file order. */
  readonly services: ReadonlyMap<string, ServiceConfig>;
  /** Shared circuit state through Redis (docs/fleet.md); undefined: off. */
  readonly fleet?: FleetConfig;
}

/** `fleet:` (docs/fleet.md): which sidecars share what, through which Redis. */
export interface FleetConfig {
  /** The Redis URL as configured (may carry a password: never logged as is, see {@link redactUrl}). */
  readonly redis: string;
  /** The fleet's name: its channel and lock keys. */
  readonly key: string;
  /** Openings (and the closes after a trial) are shared. */
  readonly shareOpen: boolean;
  /** The half-open trial is taken by one sidecar of the fleet at a time. */
  readonly shareTrial: boolean;
  /** Distinct sidecars that must open a service within one cooldown before the fleet does. */
  readonly quorum: number;
  /** This sidecar's id; default the host name. */
  readonly sidecar: string;
}

/** A URL with its password (and user) replaced, for logs and `validate`. */
export function redactUrl(value: string): string {
  try {
    const u = new URL(value);
    if (u.password === '' && u.username === '') return value;
    u.username = u.username ? '***' : '';
    u.password = u.password ? '***' : '';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** Built-in defaults (docs/configuration.md). */
export const BUILTIN = Object.freeze({
  threshold: 3,
  cooldownMs: 30_000,
  timeoutMs: 5_000,
  bodyIdleTimeoutMs: 30_000,
  failureStatuses: Object.freeze([Object.freeze({ from: 500, to: 599 })]),
  listen: Object.freeze({ host: '0.0.0.0', port: 8080, maxConnections: 10_000 }),
  clientTimeouts: Object.freeze({ headerMs: 10_000, bodyIdleMs: 30_000 }),
  admin: Object.freeze({ host: '0.0.0.0', port: 9901 }),
  shutdownGraceMs: 10_000,
  minRequests: 20,
  windowMs: 30_000,
  backoff: Object.freeze({ multiplier: 2, maxMs: 300_000, jitter: 0 }),
  halfOpen: Object.freeze({ trials: 1, queue: 0, maxWaitMs: 1000 }),
  retryAfterMaxMs: 600_000,
  outlier: Object.freeze({ consecutiveFailures: 5, ejectionTimeMs: 30_000, maxEjectionTimeMs: 300_000, maxEjectedPercent: 0.1 }),
  discoveryRefreshMs: 10_000,
  retries: Object.freeze({
    attempts: 2,
    on: Object.freeze(['connect', 'reset', 'timeout', 502, 503, 504] as const),
    baseMs: 25,
    maxMs: 250,
    budgetRatio: 0.2,
    minPerSecond: 10,
    bufferBytes: 64 * 1024,
  }),
});

/** True when `status` falls in one of the ranges. */
export function isFailureStatus(ranges: readonly StatusRange[], status: number): boolean {
  for (const r of ranges) if (status >= r.from && status <= r.to) return true;
  return false;
}

/**
 * Whether a reload must give the service a fresh circuit: its address or its circuit policy
 * changed. Call and admission policies apply to the next request and keep the circuit's state.
 */
export function keepsCircuit(a: ServiceConfig, b: ServiceConfig): boolean {
  return a.url === b.url && JSON.stringify(a.circuit) === JSON.stringify(b.circuit);
}
