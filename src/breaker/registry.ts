import { EventEmitter } from 'node:events';
import { serviceFingerprint, type Config } from '../config/types.js';
import { ServiceBreaker, type BreakerEvents } from './service-breaker.js';

export interface RegistryEvents extends BreakerEvents {
  /** A service's breaker appeared (startup or reload). */
  added: [ServiceBreaker];
  /** A service disappeared (reload). */
  removed: [string];
}

/** What a reload changed, for the log line. */
export interface ReconcileResult {
  readonly added: readonly string[];
  readonly changed: readonly string[];
  readonly removed: readonly string[];
  readonly unchanged: readonly string[];
}

/**
 * All breakers, by service name. Emits every breaker's events plus `added`/`removed`,
 * so metrics and logs subscribe in one place.
 */
export class BreakerRegistry extends EventEmitter<RegistryEvents> {
  private readonly breakers = new Map<string, ServiceBreaker>();
  private readonly fingerprints = new Map<string, string>();
  /**
   * One bucket-rotation emitter shared by every opossum Status, instead of one interval per breaker.
   * Nothing feeds opossum's rolling stats (outcomes are ours), so it never needs to tick.
   */
  private readonly rotate = new EventEmitter();

  constructor(config?: Config) {
    super();
    this.rotate.setMaxListeners(0);
    if (config) this.reconcile(config);
  }

  get(name: string): ServiceBreaker | undefined {
    return this.breakers.get(name);
  }

  all(): IterableIterator<ServiceBreaker> {
    return this.breakers.values();
  }

  get size(): number {
    return this.breakers.size;
  }

  /**
   * Brings the set of breakers in line with `config`: unchanged services keep their breaker
   * (state and counters), changed ones get a fresh breaker with the new settings (and the old
   * one's count of requests in flight, for the bulkhead), removed ones go.
   */
  reconcile(config: Config): ReconcileResult {
    const added: string[] = [];
    const changed: string[] = [];
    const removed: string[] = [];
    const unchanged: string[] = [];
    for (const name of [...this.breakers.keys()]) {
      if (!config.services.has(name)) {
        this.drop(name);
        removed.push(name);
      }
    }
    for (const [name, svc] of config.services) {
      const fp = serviceFingerprint(svc);
      const old = this.fingerprints.get(name);
      if (old === fp) {
        this.breakers.get(name)!.reconfigure(svc);
        unchanged.push(name);
        continue;
      }
      const previous = this.breakers.get(name);
      if (old !== undefined) {
        this.drop(name);
        changed.push(name);
      } else {
        added.push(name);
      }
      const breaker = new ServiceBreaker(svc, this as EventEmitter<BreakerEvents>, this.rotate);
      if (previous !== undefined) breaker.inherit(previous);
      this.breakers.set(name, breaker);
      this.fingerprints.set(name, fp);
      this.emit('added', breaker);
    }
    return { added, changed, removed, unchanged };
  }

  /** Stops every breaker's timers. */
  shutdown(): void {
    for (const name of [...this.breakers.keys()]) this.drop(name);
  }

  private drop(name: string): void {
    this.breakers.get(name)?.shutdown();
    this.breakers.delete(name);
    this.fingerprints.delete(name);
    this.emit('removed', name);
  }
}
