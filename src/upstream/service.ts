import type { EventEmitter } from 'node:events';
import { AdmissionChain, observed, type Gate } from '../admission/chain.js';
import { Bulkhead, CircuitGate } from '../admission/gates.js';
import { Circuit, type BreakerEvents, type BreakerState, type CircuitSnapshot } from '../circuit/circuit.js';
import { keepsCircuit, type RouteConfig, type ServiceConfig } from '../config/types.js';
import { routeMatches } from '../policy/routes.js';
import { monotonic } from '../policy/clock.js';
import { RetryBudget } from '../policy/retry.js';
import { Discovery, type Resolution } from './discovery.js';
import { EndpointSet, type EndpointEvents, type EndpointSnapshot } from './endpoints.js';

/** Admin-facing snapshot (`/breakers`, docs/observability.md). */
export interface BreakerSnapshot extends CircuitSnapshot {
  name: string;
  url: string;
  timeoutMs: number;
  /** `observe` where set (docs/load-shedding.md); absent in enforce mode. */
  mode?: 'observe';
  /** Requests in flight and the bulkhead's size, where `maxConcurrent` is set. */
  inFlight?: number;
  maxConcurrent?: number;
  /** True where an open circuit answers with a configured fallback. */
  fallback?: boolean;
  /** Each endpoint, where the service has several or discovers them (docs/endpoints.md). */
  endpoints?: EndpointSnapshot[];
  /** The last DNS discovery error, while the last good set serves. */
  discoveryError?: string;
  /** Where retries are set, or were made (docs/retries.md): started, refused by the budget, in flight. */
  retries?: { total: number; exhausted: number; inFlight: number };
}

/** A DNS discovery answer that changed something, or its first failure (logged once per change). */
export interface DiscoveryEvent {
  readonly service: string;
  readonly ok: boolean;
  readonly addresses?: readonly string[];
  readonly error?: string;
}

/** What a service emits: its circuit's events, its endpoints' and its discovery's. */
export interface ServiceEvents extends BreakerEvents, EndpointEvents {
  discovery: [DiscoveryEvent];
}

/** What the Service needs from its registry to build a circuit and its endpoints. */
export interface CircuitFactory {
  readonly events: EventEmitter<ServiceEvents>;
  readonly rotate: EventEmitter;
}

/**
 * One configured service at run time (docs/architecture.md, "The service"): its resolved config,
 * its circuit, its bulkhead and the admission chain made of them. It lives as long as the service
 * is configured: a reload gives it new settings, and a new circuit only when the circuit's own
 * policy or the address changed; the bulkhead's count carries on either way. Later, the home of
 * its endpoints, its retry budget and its routes.
 */
export class Service {
  private cfg: ServiceConfig;
  private circuitNow: Circuit;
  readonly bulkhead = new Bulkhead();
  /** The retry budget and its counts; one per service, kept across reloads (docs/retries.md). */
  readonly retryBudget = new RetryBudget(monotonic);
  private chainNow: AdmissionChain;
  /** Where its requests go, with outlier ejection; the same object across reloads. */
  readonly endpoints: EndpointSet;
  private discovery: Discovery | undefined;
  /** DNS resolutions that failed or came back empty (`proxy_discovery_errors_total`). */
  discoveryErrors = 0;
  private lastDiscovery = '';

  constructor(
    config: ServiceConfig,
    private readonly factory: CircuitFactory,
  ) {
    this.cfg = config;
    this.circuitNow = this.newCircuit(config);
    this.chainNow = this.newChain();
    // One emitter carries every kind; each part sees the events it emits (node's typed EventEmitter is invariant).
    this.endpoints = new EndpointSet(config.name, config.upstream, factory.events as unknown as EventEmitter<EndpointEvents>);
    this.startDiscovery();
  }

  get name(): string {
    return this.cfg.name;
  }

  get config(): ServiceConfig {
    return this.cfg;
  }

  /** The circuit in force; a call keeps the one it was admitted by. */
  get circuit(): Circuit {
    return this.circuitNow;
  }

  get admission(): AdmissionChain {
    return this.chainNow;
  }

  /** The route a request takes (docs/routes.md): the first that matches; undefined when none does. */
  routeFor(method: string, rest: string): RouteConfig | undefined {
    for (const r of this.cfg.routes) if (routeMatches(r.match, method, rest)) return r;
    return undefined;
  }

  get state(): BreakerState {
    return this.circuitNow.state;
  }

  /** Requests forwarded to this service and not yet ended. */
  get inFlight(): number {
    return this.bulkhead.inFlight;
  }

  /**
   * A reload's settings. Returns whether the circuit was replaced (its policy or the URL changed);
   * otherwise the circuit and its state stay, and the new call and admission settings apply to
   * the next request.
   */
  reconfigure(next: ServiceConfig): boolean {
    const replace = !keepsCircuit(this.cfg, next);
    this.cfg = next;
    if (replace) {
      this.circuitNow.shutdown();
      this.circuitNow = this.newCircuit(next);
    }
    this.chainNow = this.newChain();
    const before = this.discovery?.rule;
    this.endpoints.reconfigure(next.upstream);
    if (JSON.stringify(before) !== JSON.stringify(next.upstream.discovery)) {
      this.discovery?.stop();
      this.discovery = undefined;
      this.lastDiscovery = '';
      this.startDiscovery();
    }
    return replace;
  }

  snapshot(): BreakerSnapshot {
    const c = this.cfg;
    const a = c.admission;
    return {
      name: c.name,
      url: c.url,
      timeoutMs: c.call.timeoutMs,
      ...this.circuitNow.snapshot(),
      ...(a.mode === 'observe' ? { mode: a.mode } : {}),
      ...(a.maxConcurrent !== undefined ? { inFlight: this.inFlight, maxConcurrent: a.maxConcurrent } : {}),
      ...(c.call.fallback !== undefined ? { fallback: true } : {}),
      ...(this.endpoints.several ? { endpoints: this.endpoints.snapshot() } : {}),
      ...(this.lastDiscovery.startsWith('error:') ? { discoveryError: this.lastDiscovery.slice(6) } : {}),
      ...(c.call.retries !== undefined || this.retryBudget.byReason.size > 0
        ? { retries: { total: this.retryBudget.started, exhausted: this.retryBudget.exhausted, inFlight: this.retryBudget.inFlight } }
        : {}),
    };
  }

  shutdown(): void {
    this.circuitNow.shutdown();
    this.endpoints.shutdown();
    this.discovery?.stop();
  }

  private startDiscovery(): void {
    const rule = this.cfg.upstream.discovery;
    if (rule === undefined) return;
    this.discovery = new Discovery(rule, (r) => this.onResolution(r));
    this.discovery.start();
  }

  /** A DNS answer: the endpoints follow a good one; a bad one is counted, and told once per change. */
  private onResolution(r: Resolution): void {
    const key = r.ok ? `ok:${r.addresses.join(',')}` : `error:${r.error}`;
    if (r.ok) this.endpoints.resolved(r.addresses);
    else this.discoveryErrors += 1;
    if (key === this.lastDiscovery) return;
    this.lastDiscovery = key;
    this.factory.events.emit(
      'discovery',
      r.ok ? { service: this.name, ok: true, addresses: r.addresses } : { service: this.name, ok: false, error: r.error },
    );
  }

  private newCircuit(c: ServiceConfig): Circuit {
    return new Circuit(c.name, c.circuit, this.factory.events as unknown as EventEmitter<BreakerEvents>, this.factory.rotate);
  }

  /** Circuit, then bulkhead; observe mode wraps both. */
  private newChain(): AdmissionChain {
    this.bulkhead.max = this.cfg.admission.maxConcurrent;
    const gates: Gate[] = [new CircuitGate(this.circuitNow), this.bulkhead];
    return new AdmissionChain(this.cfg.admission.mode === 'observe' ? gates.map(observed) : gates);
  }
}
