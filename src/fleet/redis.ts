/**
 * The fleet's Redis (docs/fleet.md): one connection for commands (PUBLISH, the board, the trial
 * lock, a health PING) and one subscribed to the fleet's channel, both through node-redis
 * (`@redis/client`, the client Redis maintains). Every command has a deadline and nothing is
 * queued while disconnected, so a Redis that is down, slow or silent costs a request nothing:
 * the fleet is told `connected: false` and each sidecar works alone until Redis answers again.
 * node-redis is loaded when the fleet starts, not before: a proxy without `fleet` never holds its
 * 5 MB of code in its heap (docs/performance-notes.md, "Streaming").
 */
import { EventEmitter } from 'node:events';
import type { RedisClientType } from '@redis/client';
import type { Logger } from '../log.js';
import { redactUrl } from '../config/types.js';
import type { BoardEntry, ClaimResult, FleetTransport, TransportEvents } from './fleet.js';

/** A command not answered within this long counts as Redis not answering. */
const COMMAND_DEADLINE_MS = 1000;
/** How often the command connection is PINGed: a Redis that accepts but never answers is found out. */
const HEALTH_EVERY_MS = 2000;
/** Not connected this long after start: reported not reachable even without an error. */
const HANDSHAKE_WAIT_MS = 5000;
/** Reconnect backoff: 100 ms doubling to 5 s, with jitter, for as long as it takes. */
const RECONNECT_MAX_MS = 5000;
/** Keys a board read asks for per SCAN step and per MGET, and the most it reads in all. */
const BOARD_BATCH = 500;
const BOARD_MAX_KEYS = 100_000;

/** Frees the lock only if it still holds our value (another sidecar's lock is never deleted). */
const RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export function reconnectDelay(retries: number, random: () => number = Math.random): number {
  const base = Math.min(RECONNECT_MAX_MS, 100 * 2 ** Math.min(retries, 6));
  return Math.round(base / 2 + (random() * base) / 2);
}

export class RedisTransport extends EventEmitter<TransportEvents> implements FleetTransport {
  /** Both made by start(), once node-redis is loaded. */
  private pub: RedisClientType | undefined;
  private sub: RedisClientType | undefined;
  /** The last PING (or command) answered in time. */
  private answering = true;
  private health: NodeJS.Timeout | undefined;
  private reported: boolean | undefined;
  /** Before the first connection, only an error makes it "not reachable" (connecting is not failing). */
  private failedOnce = false;
  private closing = false;
  /**
   * The first SUBSCRIBE was answered. node-redis says `ready` before it (on a reconnect, only
   * after subscribing again), and a board read on joining must come after the subscription
   * (docs/fleet.md, "The board").
   */
  private subscribed = false;
  private readonly options = { timeout: COMMAND_DEADLINE_MS, rejectInFlight: true } as const;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly log: Logger,
  ) {
    super();
  }

  get connected(): boolean {
    return !this.closing && this.answering && this.subscribed && this.pub?.isReady === true && this.sub?.isReady === true;
  }

  start(): void {
    // Neither the import nor a connect is awaited by anyone: the proxy serves from the start, fleet or not.
    import('@redis/client').then(
      ({ createClient }) => {
        if (this.closing) return;
        const options = {
          url: this.url,
          disableOfflineQueue: true,
          socket: { connectTimeout: COMMAND_DEADLINE_MS, reconnectStrategy: (retries: number) => reconnectDelay(retries) },
        };
        this.connect(createClient(options), createClient(options));
      },
      (err: unknown) => {
        this.log.error({ err: (err as Error).message }, 'fleet: the Redis client would not load');
        this.failedOnce = true;
        this.update();
      },
    );
    this.health = setInterval(() => void this.ping(), HEALTH_EVERY_MS);
    this.health.unref();
    // A Redis that accepts and never finishes the handshake raises no error: not reachable, said once.
    setTimeout(() => {
      this.failedOnce = true;
      this.update();
    }, HANDSHAKE_WAIT_MS).unref();
  }

  private connect(pub: RedisClientType, sub: RedisClientType): void {
    this.pub = pub;
    this.sub = sub;
    const url = this.url;
    for (const c of [pub, sub]) {
      // node-redis emits an error for every failed (re)connect: the fleet logs the loss once.
      c.on('error', (err: Error) => {
        this.log.debug({ err: err.message, redis: redactUrl(url) }, 'fleet: redis error');
        this.failedOnce = true;
        this.update();
      });
      c.on('ready', () => this.update());
      c.on('end', () => this.update());
      c.on('reconnecting', () => this.update());
    }
    pub.connect().catch(() => this.update());
    sub
      .connect()
      .then(() => sub.subscribe(this.channel, (text) => this.emit('message', text)))
      .then(() => {
        this.subscribed = true;
        this.update();
      })
      .catch(() => this.update());
  }

  async publish(text: string, board?: BoardEntry): Promise<boolean> {
    const pub = this.pub;
    if (!this.connected || pub === undefined) return false;
    try {
      // One connection keeps the order: the board holds it before anyone hears it (docs/fleet.md, "The board").
      const posted =
        board === undefined
          ? undefined
          : pub.sendCommand(
              board.ttlMs === undefined
                ? ['SET', board.key, board.text]
                : ['SET', board.key, board.text, 'PX', String(Math.max(1, Math.round(board.ttlMs)))],
              this.options,
            );
      await Promise.all([posted, pub.sendCommand(['PUBLISH', this.channel, text], this.options)]);
      return true;
    } catch {
      this.silent();
      return false;
    }
  }

  async claim(key: string, value: string, ttlMs: number): Promise<ClaimResult> {
    const pub = this.pub;
    if (!this.connected || pub === undefined) throw new Error('fleet: not connected');
    try {
      const set = await pub.sendCommand<string | null>(['SET', key, value, 'NX', 'PX', String(ttlMs)], this.options);
      if (set === 'OK') return { taken: true };
      const [holder, ttl] = await Promise.all([
        pub.sendCommand<string | null>(['GET', key], this.options),
        pub.sendCommand<number>(['PTTL', key], this.options),
      ]);
      return { taken: false, holder: holder ?? '?', ttlMs: ttl > 0 ? ttl : 0 };
    } catch (err) {
      this.silent();
      throw err;
    }
  }

  unpost(key: string): void {
    if (!this.connected || this.pub === undefined) return; // it lapses by its TTL
    this.pub.sendCommand(['DEL', key], this.options).catch(() => this.silent());
  }

  async readBoard(prefix: string): Promise<string[]> {
    const pub = this.pub;
    if (!this.connected || pub === undefined) return [];
    try {
      const keys = new Set<string>();
      let cursor = '0';
      do {
        const [next, found] = await pub.sendCommand<[string, string[]]>(
          ['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', String(BOARD_BATCH)],
          this.options,
        );
        for (const k of found) keys.add(k);
        cursor = next;
      } while (cursor !== '0' && keys.size < BOARD_MAX_KEYS);
      const all = [...keys];
      const texts: string[] = [];
      for (let i = 0; i < all.length; i += BOARD_BATCH) {
        const values = await pub.sendCommand<Array<string | null>>(['MGET', ...all.slice(i, i + BOARD_BATCH)], this.options);
        for (const v of values) if (typeof v === 'string') texts.push(v);
      }
      return texts;
    } catch {
      this.silent();
      return [];
    }
  }

  release(key: string, value: string): void {
    if (!this.connected || this.pub === undefined) return; // it lapses by its TTL
    this.pub.sendCommand(['EVAL', RELEASE_SCRIPT, '1', key, value], this.options).catch(() => this.silent());
  }

  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.health);
    // A client still reconnecting is destroyed: closing would wait for a Redis that is not there.
    await Promise.all(
      [this.pub, this.sub].map((c) => {
        if (c === undefined) return Promise.resolve();
        if (c.isReady) return c.close().catch(() => c.destroy());
        if (c.isOpen) c.destroy();
        return Promise.resolve();
      }),
    );
  }

  private async ping(): Promise<void> {
    const pub = this.pub;
    if (this.closing || pub?.isReady !== true) return;
    try {
      await pub.sendCommand(['PING'], this.options);
      this.answering = true;
    } catch {
      this.answering = false;
      this.failedOnce = true;
    }
    this.update();
  }

  /** A command missed its deadline: not connected until a PING is answered again. */
  private silent(): void {
    this.answering = false;
    this.failedOnce = true;
    this.update();
  }

  private update(): void {
    const up = this.connected;
    if (up === this.reported || this.closing) return;
    if (!up && this.reported === undefined && !this.failedOnce) return;
    this.reported = up;
    this.emit('connected', up);
  }
}
