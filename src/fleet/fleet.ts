/**
 * A fleet of sidecars sharing circuit state (docs/fleet.md). This listens to the circuits'
 * transitions and publishes the openings and closes; it feeds other sidecars' messages into the
 * circuits; and it decides, with a lock, which sidecar sends the fleet's one half-open trial.
 *
 * Nothing here is on a request's path: admission reads the circuit only, and the circuit never
 * waits for this (a trial held for the fleet is rejected like an open circuit's request, and let go
 * when Redis does not answer within {@link CLAIM_WAIT_MS}). Without a connection each sidecar is
 * exactly what it is without `fleet`.
 */
import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { Circuit, TransitionEvent, TrialCoordinator } from '../circuit/circuit.js';
import type { FleetConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import type { ServiceRegistry } from '../upstream/registry.js';
import type { Service } from '../upstream/service.js';
import {
  formatMessage,
  MESSAGE_KINDS,
  MESSAGE_VERSION,
  parseMessage,
  type FleetMessage,
  type IgnoredWhy,
  type MessageKind,
} from './message.js';

/** A claim of the trial lock not answered within this long: the sidecar sends its own trial. */
export const CLAIM_WAIT_MS = 1000;
/** A board entry outlives what it says by this much, so a reader's clock a little behind still reads it. */
const BOARD_MARGIN_MS = 1000;
/** A fleet-wide force close stays on the board this long: for sidecars apart while it was sent. */
const FORCE_CLOSE_KEPT_MS = 86_400_000;

/** A sidecar's last word on a service, kept in Redis for those that join later (docs/fleet.md, "The board"). */
export interface BoardEntry {
  readonly key: string;
  /** A message's text: an opening, a close told again, or a fleet-wide force. */
  readonly text: string;
  /** Undefined: kept until replaced (a fleet-wide force open). */
  readonly ttlMs: number | undefined;
}

export type ClaimResult = { readonly taken: true } | { readonly taken: false; readonly holder: string; readonly ttlMs: number };

export interface TransportEvents {
  /** A message on the fleet's channel (ours included: Redis echoes them). */
  message: [string];
  /** Whether Redis is reachable and answering (both connections). */
  connected: [boolean];
}

/** What the fleet needs from Redis (src/fleet/redis.ts); a test can give it another. */
export interface FleetTransport extends EventEmitter<TransportEvents> {
  readonly connected: boolean;
  /**
   * Publishes on the fleet's channel; never queued while disconnected. Resolves whether it went.
   * With `board`, that entry is written first, on the same connection (SET PX, then PUBLISH).
   */
  publish(text: string, board?: BoardEntry): Promise<boolean>;
  /** Deletes a board entry (DEL); while disconnected, it lapses by its TTL. */
  unpost(key: string): void;
  /** Every board entry under `prefix` (SCAN, MGET); none while disconnected or on a missed deadline. */
  readBoard(prefix: string): Promise<string[]>;
  /** Takes the lock `key` for `ttlMs` if free (SET NX PX), else says who holds it and for how long more. */
  claim(key: string, value: string, ttlMs: number): Promise<ClaimResult>;
  /** Frees the lock if it still holds `value`. */
  release(key: string, value: string): void;
  start(): void;
  close(): Promise<void>;
}

export interface FleetCounts {
  /** By kind, then direction. */
  readonly messages: Record<MessageKind, { in: number; out: number }>;
  ignored: number;
}

export class Fleet implements TrialCoordinator {
  /** This process, random per start: a sidecar never acts on the messages it sent itself. */
  readonly instance = randomBytes(6).toString('hex');
  readonly counts: FleetCounts = {
    messages: Object.fromEntries(MESSAGE_KINDS.map((k) => [k, { in: 0, out: 0 }])) as FleetCounts['messages'],
    ignored: 0,
  };
  /** Per service, the sidecars (by id) whose openings are known, with the opening's time. */
  private readonly openings = new Map<string, Map<string, number>>();
  /** Per service, this sidecar's last published close while its circuit has stayed closed since: told again on a (re)join. */
  private readonly closes = new Map<string, { readonly at: number; readonly reason: string }>();
  /** Per service, when its circuit here last closed (epoch ms): an opening older than that is over. */
  private readonly closedAt = new Map<string, number>();
  /** Per service, the trial lock's value while this sidecar holds it. */
  private readonly locks = new Map<string, string>();
  /** Per service, the timer that asks again when another sidecar's lock lapses. */
  private readonly reclaims = new Map<string, NodeJS.Timeout>();
  /** Claims waiting for Redis's answer, by their give-up timer. */
  private readonly waiting = new Set<NodeJS.Timeout>();
  private lastConnected: boolean | undefined;
  private closed = false;
  private readonly channel: string;

  constructor(
    readonly config: FleetConfig,
    private readonly registry: ServiceRegistry,
    private readonly transport: FleetTransport,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    private readonly claimWaitMs = CLAIM_WAIT_MS,
  ) {
    this.channel = fleetChannel(config.key);
  }

  get connected(): boolean {
    return this.transport.connected;
  }

  start(): void {
    for (const s of this.registry.all()) this.attach(s);
    this.registry.on('added', (s) => this.attach(s));
    this.registry.on('removed', (name) => this.forget(name));
    this.registry.on('transition', (t) => this.onTransition(t));
    this.transport.on('message', (text) => this.onMessage(text));
    this.transport.on('connected', (up) => this.onConnected(up));
    this.transport.start();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of [...this.reclaims.values(), ...this.waiting]) clearTimeout(t);
    this.reclaims.clear();
    this.waiting.clear();
    for (const [service, value] of this.locks) this.transport.release(lockKey(this.config.key, service), value);
    this.locks.clear();
    await this.transport.close();
  }

  /** An operator's force action for the whole fleet (`?fleet=1`). Resolves whether it was published. */
  force(service: string, action: 'open' | 'close', reason: string): Promise<boolean> {
    const m: FleetMessage = { ...this.common(service, reason), kind: 'force', action };
    // On the board too, for sidecars that join later: an open until a fleet-wide close replaces it.
    const ttlMs = action === 'open' ? undefined : FORCE_CLOSE_KEPT_MS;
    return this.send(m, { key: forceKey(this.config.key, service), text: formatMessage(m), ttlMs });
  }

  /** {@link TrialCoordinator}: the cooldown elapsed; whose is the trial? Answers at once, asks Redis after. */
  halfOpened(circuit: Circuit, period: number): boolean {
    if (!this.config.shareTrial || !this.transport.connected || this.closed) return true;
    this.claim(circuit, period);
    return false;
  }

  private attach(s: Service): void {
    s.circuit.coordinator = this.config.shareTrial ? this : undefined;
  }

  private forget(service: string): void {
    this.openings.delete(service);
    this.closes.delete(service);
    this.closedAt.delete(service);
    this.stopReclaim(service);
    this.releaseLock(service);
  }

  private common(service: string, reason: string) {
    // A reason longer than a message may carry is cut, never sent to be ignored.
    return {
      v: MESSAGE_VERSION,
      sidecar: this.config.sidecar,
      instance: this.instance,
      service,
      at: this.now(),
      reason: reason.slice(0, 500),
    } as const;
  }

  private async send(m: FleetMessage, board?: BoardEntry): Promise<boolean> {
    const sent = await this.transport.publish(formatMessage(m), board).catch(() => false);
    if (sent) this.counts.messages[m.kind].out += 1;
    return sent;
  }

  /** Publishes this sidecar's opening of a service, and posts it on the board until it is over. */
  private sendOpening(service: string, reason: string, at: number, until: number, trial: boolean): void {
    const m: FleetMessage = { ...this.common(service, reason), at, kind: 'open', until, trial };
    const ttlMs = until - this.now() + BOARD_MARGIN_MS;
    void this.send(m, ttlMs > 0 ? { key: this.boardKey(service), text: formatMessage(m), ttlMs } : undefined);
  }

  /**
   * Publishes this sidecar's trial close of a service (`replay`: told again), and posts it, marked
   * as told again, on the board for the longest cooldown the service may have: after that, no
   * circuit opened before it can still be waiting for it.
   */
  private sendClose(service: string, reason: string, at: number, replay: boolean): void {
    const told: FleetMessage = { ...this.common(service, reason), at, kind: 'close', replay: true };
    const m: FleetMessage = replay ? told : { ...this.common(service, reason), at, kind: 'close' };
    const ttlMs = this.longestCooldown(service) + BOARD_MARGIN_MS;
    void this.send(m, { key: this.boardKey(service), text: formatMessage(told), ttlMs });
  }

  private boardKey(service: string): string {
    return boardKey(this.config.key, service, this.config.sidecar);
  }

  private longestCooldown(service: string): number {
    const p = this.registry.get(service)?.circuit.policy;
    if (p === undefined) return 0;
    return Math.max(p.cooldownMs, p.backoff?.maxMs ?? 0, p.retryAfter?.maxMs ?? 0);
  }

  /** A circuit's own transition: published where shared; a transition the fleet caused never is. */
  private onTransition(t: TransitionEvent): void {
    const circuit = this.registry.get(t.service)?.circuit;
    if (t.to !== 'half_open') this.stopReclaim(t.service);
    if (t.to === 'closed') {
      this.openings.delete(t.service);
      this.closedAt.set(t.service, t.at);
    } else this.closes.delete(t.service);
    if (t.from === 'half_open') this.releaseLock(t.service);
    const verdict = t.from === 'half_open';
    const ownTrialClose = t.to === 'closed' && verdict && t.fleet === undefined && !t.forced && !t.reason.startsWith('forced');
    // Closed otherwise (the fleet's close, an operator's): this sidecar's opening on the board is over.
    if (t.to === 'closed' && !ownTrialClose) this.transport.unpost(this.boardKey(t.service));
    if (t.fleet !== undefined || t.forced || circuit === undefined) return;
    if (t.to === 'open' && (this.config.shareOpen || (verdict && this.config.shareTrial))) {
      if (this.config.shareOpen) this.record(t.service, this.config.sidecar, t.at);
      this.sendOpening(t.service, t.reason, t.at, circuit.nextProbeAt, verdict);
    } else if (ownTrialClose) {
      this.closes.set(t.service, { at: t.at, reason: t.reason });
      this.sendClose(t.service, t.reason, t.at, false);
    }
  }

  private onMessage(text: string): void {
    const parsed = parseMessage(text, this.now());
    if (!parsed.ok) return this.ignore(parsed.why, text);
    const m = parsed.message;
    if (m.instance === this.instance) return;
    this.apply(m, text);
  }

  /** Another sidecar's message, from the channel or the board. */
  private apply(m: FleetMessage, text: string, counted = true): void {
    if (m.kind === 'sync') {
      this.counts.messages.sync.in += 1;
      this.publishOwnState();
      return;
    }
    const circuit = this.registry.get(m.service)?.circuit;
    if (circuit === undefined) return this.ignore('unknown-service', text);
    if (counted) this.counts.messages[m.kind].in += 1;
    switch (m.kind) {
      case 'open': {
        // A failed fleet trial is the verdict a held sidecar waits for, whatever the quorum.
        if (m.trial && circuit.trialHeld) {
          circuit.fleetOpen(m.sidecar, m.reason, m.until);
          return;
        }
        // An opening from before this circuit last closed (told again after a rejoin) is over.
        if (!this.config.shareOpen || m.at <= (this.closedAt.get(m.service) ?? 0)) return;
        this.record(m.service, m.sidecar, m.at);
        if (this.count(m.service, circuit.policy.cooldownMs) >= this.config.quorum) circuit.fleetOpen(m.sidecar, m.reason, m.until);
        return;
      }
      case 'close':
        if (!this.config.shareOpen && !circuit.trialHeld) return;
        if (m.replay) {
          // Told again after a rejoin: it ends what began before it, and nothing newer.
          this.forgetOpeningsBefore(m.service, m.at);
          circuit.fleetCloseReplayed(m.sidecar, m.reason, m.at);
          return;
        }
        this.openings.delete(m.service);
        circuit.fleetClose(m.sidecar, m.reason);
        return;
      case 'force':
        if (m.action === 'open') circuit.forceOpen(m.reason, m.sidecar);
        else circuit.forceClose(m.reason, m.sidecar);
        return;
    }
  }

  /**
   * This sidecar's own openings still in force, and its last close of each service still closed,
   * published again: on (re)joining, and when another sidecar that (re)joined asks (a `sync`), so
   * what was published while either was apart still reaches it. Receivers count a sidecar once, so
   * a repeated opening changes no quorum; a repeated close is marked, and ends only openings older
   * than it.
   */
  private publishOwnState(): void {
    for (const [service, c] of this.closes) this.sendClose(service, c.reason, c.at, true);
    if (!this.config.shareOpen) return;
    for (const s of this.registry.all()) {
      const c = s.circuit;
      if (!c.openedHere || c.openedAt === 0) continue;
      this.sendOpening(s.name, c.snapshot().lastTrip?.reason ?? 'opened', c.openedAt, c.nextProbeAt, false);
    }
  }

  /**
   * On (re)joining, after subscribing: every other sidecar's last word on each service, from the
   * board. What was posted before our subscription is read here; what is posted after it, we hear
   * (docs/fleet.md, "The board"). Per service, closes are applied first, and an opening older than
   * the newest close on the board is over. Nothing here is counted as a message in.
   */
  private async readBoard(): Promise<void> {
    const texts = await this.transport.readBoard(boardPrefix(this.config.key));
    if (this.closed) return;
    const now = this.now();
    const read: FleetMessage[] = [];
    const newestClose = new Map<string, number>();
    for (const text of texts) {
      const parsed = parseMessage(text, now);
      // An opening already over is what a board holds until its TTL: not worth counting.
      if (!parsed.ok) {
        if (parsed.why !== 'stale') this.ignore(parsed.why, text);
        continue;
      }
      const m = parsed.message;
      if (m.instance === this.instance) continue;
      if (m.kind === 'sync' || (m.kind === 'close' && !m.replay)) {
        this.ignore('malformed', text);
        continue;
      }
      if (this.registry.get(m.service) === undefined) continue; // another config's service: theirs
      read.push(m);
      if (m.kind === 'close') newestClose.set(m.service, Math.max(m.at, newestClose.get(m.service) ?? 0));
    }
    // Forces first (a forced-open circuit takes no other word), then closes, then openings; each by time.
    const rank = { force: 0, close: 1, open: 2, sync: 3 } as const;
    read.sort((x, y) => rank[x.kind] - rank[y.kind] || x.at - y.at);
    let applied = 0;
    for (const m of read) {
      if (m.kind === 'open' && m.at <= (newestClose.get(m.service) ?? 0)) continue;
      if (m.kind === 'force') {
        if (this.registry.get(m.service)!.circuit.fleetForceReplayed(m.action, m.sidecar, m.reason, m.at)) applied += 1;
        continue;
      }
      this.apply(m, '', false);
      applied += 1;
    }
    this.log.info({ fleet: this.config.key, entries: texts.length, applied }, 'fleet: board read');
  }

  private ignore(why: IgnoredWhy, text: string): void {
    this.counts.ignored += 1;
    this.log.debug({ why, message: text.slice(0, 200) }, 'fleet message ignored');
  }

  private record(service: string, sidecar: string, at: number): void {
    let by = this.openings.get(service);
    if (by === undefined) this.openings.set(service, (by = new Map<string, number>()));
    by.set(sidecar, Math.max(at, by.get(sidecar) ?? 0));
  }

  private forgetOpeningsBefore(service: string, at: number): void {
    const by = this.openings.get(service);
    if (by === undefined) return;
    for (const [id, when] of by) if (when < at) by.delete(id);
  }

  /** Distinct sidecars that opened `service` within the last cooldown (docs/fleet.md, "Quorum"). */
  private count(service: string, cooldownMs: number): number {
    const by = this.openings.get(service);
    if (by === undefined) return 0;
    const since = this.now() - cooldownMs;
    for (const [id, at] of by) if (at < since) by.delete(id);
    return by.size;
  }

  /** Asks Redis for the trial lock of this half-open period; the circuit is told the answer, or to go alone. */
  private claim(circuit: Circuit, period: number): void {
    const service = circuit.name;
    const key = lockKey(this.config.key, service);
    const value = `${this.config.sidecar} ${this.instance} ${period}`;
    const ttlMs = this.lockTtl(service);
    let answered = false;
    const giveUp = setTimeout(() => {
      this.waiting.delete(giveUp);
      answered = true;
      this.log.warn(
        { service },
        `fleet: Redis did not answer the trial lock within ${this.claimWaitMs} ms: this sidecar sends its own trial`,
      );
      circuit.trialGranted(period);
    }, this.claimWaitMs);
    this.waiting.add(giveUp);
    const settled = (): void => {
      clearTimeout(giveUp);
      this.waiting.delete(giveUp);
    };
    this.transport.claim(key, value, ttlMs).then(
      (r) => {
        settled();
        const current = !answered && !this.closed && this.isHeld(circuit, period);
        if (r.taken) {
          if (current) {
            this.locks.set(service, value);
            circuit.trialGranted(period);
          } else this.transport.release(key, value);
          return;
        }
        if (!current) return;
        circuit.trialHeldBy(period, r.holder.split(' ')[0] || '?');
        this.scheduleReclaim(circuit, period, r.ttlMs);
      },
      () => {
        settled();
        if (!answered) circuit.trialGranted(period);
      },
    );
  }

  /** Another sidecar holds the trial: if its verdict has not come when its lock lapses, ask again. */
  private scheduleReclaim(circuit: Circuit, period: number, ttlMs: number): void {
    this.stopReclaim(circuit.name);
    const timer = setTimeout(
      () => {
        this.reclaims.delete(circuit.name);
        if (!this.isHeld(circuit, period)) return;
        if (this.transport.connected) this.claim(circuit, period);
        else circuit.trialGranted(period);
      },
      Math.max(ttlMs, 10) + 10,
    );
    this.reclaims.set(circuit.name, timer);
  }

  private isHeld(circuit: Circuit, period: number): boolean {
    return this.registry.get(circuit.name)?.circuit === circuit && circuit.period === period && circuit.trialHeld;
  }

  private stopReclaim(service: string): void {
    const t = this.reclaims.get(service);
    if (t !== undefined) clearTimeout(t);
    this.reclaims.delete(service);
  }

  private releaseLock(service: string): void {
    const value = this.locks.get(service);
    if (value === undefined) return;
    this.locks.delete(service);
    this.transport.release(lockKey(this.config.key, service), value);
  }

  /** The service's timeout (its longest route's, if longer) plus 1 s: a trial cannot outlive it. */
  private lockTtl(service: string): number {
    const s = this.registry.get(service);
    if (s === undefined) return 1000;
    let ms = s.config.call.timeoutMs;
    for (const r of s.config.routes) ms = Math.max(ms, r.call.timeoutMs);
    return ms + 1000;
  }

  private onConnected(up: boolean): void {
    if (up === this.lastConnected || this.closed) return;
    const first = this.lastConnected === undefined;
    this.lastConnected = up;
    if (!up) {
      this.log.warn(
        { fleet: this.config.key },
        `fleet: Redis ${first ? 'not reachable' : 'lost'}: this sidecar works alone until it answers again`,
      );
      // Held trials go ahead here: nobody can tell us whose they are.
      for (const s of this.registry.all()) if (s.circuit.trialHeld) s.circuit.trialGranted(s.circuit.period);
      for (const name of [...this.reclaims.keys()]) this.stopReclaim(name);
      return;
    }
    this.log.info({ fleet: this.config.key, sidecar: this.config.sidecar, channel: this.channel }, 'fleet: connected to Redis');
    // What was missed while apart, both ways: ours told again, theirs asked for.
    this.publishOwnState();
    if (this.config.shareOpen) void this.send({ ...this.common('*', 'joined'), kind: 'sync' });
    void this.readBoard();
  }
}

/** The fleet's pub/sub channel. */
export function fleetChannel(key: string): string {
  return `circuit-proxy:${key}:events`;
}

/** Where a sidecar's last word on a service is kept (docs/fleet.md, "The board"). */
export function boardKey(key: string, service: string, sidecar: string): string {
  return `${boardPrefix(key)}${service}:${sidecar}`;
}

export function boardPrefix(key: string): string {
  return `circuit-proxy:${key}:board:`;
}

/** Where the last fleet-wide force of a service is kept (docs/fleet.md, "The board"). */
export function forceKey(key: string, service: string): string {
  return `${boardPrefix(key)}${service}`;
}

/** The lock key of a service's half-open trial. */
export function lockKey(key: string, service: string): string {
  return `circuit-proxy:${key}:trial:${service}`;
}
