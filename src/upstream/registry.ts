import { EventEmitter } from 'node:events';
import type { Config } from '../config/types.js';
import { Service, type ServiceEvents } from './service.js';

export interface RegistryEvents extends ServiceEvents {
  /** A service appeared, or got a new circuit (startup or reload). */
  added: [Service];
  /** A service disappeared (reload). */
  removed: [string];
}

/** What a reload changed, for the log line. */
export interface ReconcileResult {
  readonly added: readonly string[];
  /** Services that got a new circuit (its policy or the URL changed). */
  readonly changed: readonly string[];
  readonly removed: readonly string[];
  /** Services that kept their circuit and its state (call or admission settings may have changed). */
  readonly unchanged: readonly string[];
}

/**
 * All services, by name. Emits every circuit's events plus `added`/`removed`, so metrics and logs
 * subscribe in one place.
 */
export class ServiceRegistry extends EventEmitter<RegistryEvents> {
  private readonly services = new Map<string, Service>();
  /**
   * One bucket-rotation emitter shared by every opossum Status, instead of one interval per circuit.
   * Nothing feeds opossum's rolling stats (outcomes are ours), so it never needs to tick.
   */
  readonly rotate = new EventEmitter();

  /** The circuits' events go out through the registry itself. */
  get events(): EventEmitter<ServiceEvents> {
    return this as EventEmitter<ServiceEvents>;
  }

  constructor(config?: Config) {
    super();
    this.rotate.setMaxListeners(0);
    if (config) this.reconcile(config);
  }

  get(name: string): Service | undefined {
    return this.services.get(name);
  }

  all(): IterableIterator<Service> {
    return this.services.values();
  }

  get size(): number {
    return this.services.size;
  }

  /**
   * Brings the services in line with `config`, by identity (the name): a service that stays is
   * the same object with the new settings (its circuit kept unless its policy or URL changed),
   * removed ones go.
   */
  reconcile(config: Config): ReconcileResult {
    const added: string[] = [];
    const changed: string[] = [];
    const removed: string[] = [];
    const unchanged: string[] = [];
    for (const name of [...this.services.keys()]) {
      if (!config.services.has(name)) {
        this.drop(name);
        removed.push(name);
      }
    }
    for (const [name, svc] of config.services) {
      const existing = this.services.get(name);
      if (existing === undefined) {
        const s = new Service(svc, this);
        this.services.set(name, s);
        added.push(name);
        this.emit('added', s);
      } else if (existing.reconfigure(svc)) {
        // A new circuit: its series and history start afresh, as for a service removed and added.
        changed.push(name);
        this.emit('removed', name);
        this.emit('added', existing);
      } else {
        unchanged.push(name);
      }
    }
    return { added, changed, removed, unchanged };
  }

  /** Stops every circuit's timers. */
  shutdown(): void {
    for (const name of [...this.services.keys()]) this.drop(name);
  }

  private drop(name: string): void {
    this.services.get(name)?.shutdown();
    this.services.delete(name);
    this.emit('removed', name);
  }
}
