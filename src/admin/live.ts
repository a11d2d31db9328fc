/**
 * What the status page and the event stream show (docs/observability.md, "Status page and event
 * stream"): each service's last 100 transitions, its requests and errors per second over the last
 * 5 minutes, and the `GET /events` streams, bounded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TransitionEvent } from '../circuit/circuit.js';
import type { ServiceRegistry } from '../upstream/registry.js';
import type { BreakerSnapshot } from '../upstream/service.js';

/** Transitions kept per service for `/breakers/<name>/history`. */
export const HISTORY_LENGTH = 100;
/** One-second samples kept per service: 5 minutes. */
export const SERIES_SECONDS = 300;
/** Concurrent `GET /events` streams; the next one gets 503. */
export const MAX_STREAMS = 64;
/** A stream whose unsent bytes pass this is a consumer that does not read: dropped, never buffered without limit. */
export const MAX_STREAM_BACKLOG = 256 * 1024;

export interface HistoryEntry {
  readonly at: string;
  readonly from: string;
  readonly to: string;
  readonly reason: string;
  readonly forced: boolean;
  /** The fleet sidecar whose message made it (docs/fleet.md); absent: this sidecar's own. */
  readonly fleet?: string;
}

/** Requests and errors (5xx sent to the client) per second, oldest first. */
interface Series {
  readonly requests: number[];
  readonly errors: number[];
  /** The totals at the last tick: each second's sample is the difference. */
  last: { requests: number; errors: number };
  /** Per route: the totals at the last tick and the last second's difference. */
  readonly routes: Map<string, { last: { requests: number; errors: number }; rps: number; eps: number }>;
}

/** Where the counts come from: the metrics' own per-service totals (no listener of ours per request). */
export interface Totals {
  totals(service: string): { requests: number; errors: number; rejected: number } | undefined;
  /** Of a service with routes: requests and 5xx by route (docs/routes.md). */
  routeTotals(service: string): ReadonlyMap<string, { requests: number; errors: number }>;
  /** Open WebSocket tunnels (docs/websocket.md). */
  openTunnels(service: string): number;
}

/** One route of a service: its totals, and its requests and 5xx in the last full second. */
export interface RouteStats {
  readonly route: string;
  readonly requests: number;
  readonly errors: number;
  readonly rps: number;
  readonly errorsPerSecond: number;
}

export interface ServiceStats extends BreakerSnapshot {
  readonly nextProbeAt: number;
  readonly queued: number;
  readonly inFlightNow: number;
  /** Requests and errors in the last full second. */
  readonly rps: number;
  readonly errorsPerSecond: number;
  /** Requests, and those answered without the upstream (503 or fallback), as `/metrics` counts them. */
  readonly requests: number;
  readonly rejected: number;
  /** Open WebSocket tunnels (docs/websocket.md). */
  readonly tunnels: number;
  /** A service with routes: each route's counts and rates (`-`: requests no route matched). */
  readonly routes?: RouteStats[];
}

export class LiveState {
  private readonly history = new Map<string, HistoryEntry[]>();
  private readonly series = new Map<string, Series>();
  private readonly streams = new Set<ServerResponse>();
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    private readonly registry: ServiceRegistry,
    private readonly counts: Totals,
  ) {
    registry.on('transition', (t) => this.onTransition(t));
    registry.on('endpoint', (e) => this.broadcast('endpoint', { ...e, stats: this.stats(e.service) }));
    registry.on('removed', (name) => {
      this.history.delete(name);
      this.series.delete(name);
    });
    this.ticker = setInterval(() => this.tick(), 1000);
    this.ticker.unref();
  }

  /** `GET /stats`: what a `stats` event carries, as JSON (the `status` command reads it). */
  allStats(): ServiceStats[] {
    return [...this.registry.all()].map((b) => this.stats(b.name)!);
  }

  /** Newest first. */
  historyOf(name: string): HistoryEntry[] {
    return [...(this.history.get(name) ?? [])].reverse();
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** `GET /events`: a `snapshot` at once, `transition` and `endpoint` as they happen, `stats` every second. */
  openStream(req: IncomingMessage, res: ServerResponse): boolean {
    if (this.streams.size >= MAX_STREAMS) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.socket?.setNoDelay(true);
    this.streams.add(res);
    const drop = (): void => void this.streams.delete(res);
    res.on('close', drop);
    req.on('close', drop);
    this.write(
      res,
      frame('snapshot', {
        at: Date.now(),
        services: [...this.registry.all()].map((b) => ({
          ...this.stats(b.name),
          history: this.historyOf(b.name).slice(0, 10),
          series: this.seriesOf(b.name),
        })),
      }),
    );
    return true;
  }

  /** Ends every stream and the ticker (shutdown). */
  close(): void {
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.ticker = undefined;
    for (const res of this.streams) res.destroy();
    this.streams.clear();
  }

  private onTransition(t: TransitionEvent): void {
    let list = this.history.get(t.service);
    if (list === undefined) this.history.set(t.service, (list = []));
    const entry: HistoryEntry = {
      at: new Date(t.at).toISOString(),
      from: t.from,
      to: t.to,
      reason: t.reason,
      forced: t.forced,
      ...(t.fleet !== undefined ? { fleet: t.fleet } : {}),
    };
    list.push(entry);
    if (list.length > HISTORY_LENGTH) list.shift();
    this.broadcast('transition', { service: t.service, ...entry, stats: this.stats(t.service) });
  }

  private tick(): void {
    for (const b of this.registry.all()) {
      const s = this.seriesOf(b.name);
      const now = this.counts.totals(b.name) ?? { requests: 0, errors: 0 };
      s.requests.push(Math.max(0, now.requests - s.last.requests));
      s.errors.push(Math.max(0, now.errors - s.last.errors));
      s.last = { requests: now.requests, errors: now.errors };
      for (const [route, t] of this.counts.routeTotals(b.name)) {
        const r = s.routes.get(route);
        if (r === undefined) s.routes.set(route, { last: { ...t }, rps: t.requests, eps: t.errors });
        else {
          r.rps = Math.max(0, t.requests - r.last.requests);
          r.eps = Math.max(0, t.errors - r.last.errors);
          r.last = { ...t };
        }
      }
      if (s.requests.length > SERIES_SECONDS) {
        s.requests.shift();
        s.errors.shift();
      }
    }
    if (this.streams.size > 0)
      this.broadcast('stats', { at: Date.now(), services: [...this.registry.all()].map((b) => this.stats(b.name)) });
  }

  stats(name: string): ServiceStats | undefined {
    const b = this.registry.get(name);
    if (b === undefined) return undefined;
    const s = this.seriesOf(name);
    const t = this.counts.totals(name);
    return {
      ...b.snapshot(),
      nextProbeAt: b.circuit.nextProbeAt,
      queued: b.circuit.queued,
      inFlightNow: b.inFlight,
      rps: s.requests.at(-1) ?? 0,
      errorsPerSecond: s.errors.at(-1) ?? 0,
      requests: t?.requests ?? 0,
      rejected: t?.rejected ?? 0,
      tunnels: this.counts.openTunnels(name),
      ...(b.config.routes.length > 0 ? { routes: this.routeStats(b.name, s) } : {}),
    };
  }

  private routeStats(name: string, s: Series): RouteStats[] {
    const out: RouteStats[] = [];
    for (const [route, t] of this.counts.routeTotals(name)) {
      const r = s.routes.get(route);
      out.push({ route, requests: t.requests, errors: t.errors, rps: r?.rps ?? 0, errorsPerSecond: r?.eps ?? 0 });
    }
    return out;
  }

  private seriesOf(name: string): Series {
    let s = this.series.get(name);
    if (s === undefined) {
      const t = this.counts.totals(name);
      s = { requests: [], errors: [], last: { requests: t?.requests ?? 0, errors: t?.errors ?? 0 }, routes: new Map() };
      this.series.set(name, s);
    }
    return s;
  }

  private broadcast(event: string, data: unknown): void {
    if (this.streams.size === 0) return;
    const text = frame(event, data);
    for (const res of this.streams) this.write(res, text);
  }

  /** A consumer that does not read is dropped once its backlog passes the bound. */
  private write(res: ServerResponse, frame: string): void {
    if (res.writableLength > MAX_STREAM_BACKLOG) {
      this.streams.delete(res);
      res.destroy();
      return;
    }
    res.write(frame);
  }
}

/** One server-sent event (https://html.spec.whatwg.org/multipage/server-sent-events.html). */
function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
