import type { ServiceStats } from './admin/live.js';
import { formatDuration } from './config/duration.js';
import { ExitCode } from './errors.js';
import { table } from './table.js';

export interface StatusOptions {
  readonly adminUrl: string;
  readonly json: boolean;
  readonly color: boolean;
  /** Redraw the table every second until interrupted (Ctrl-C). */
  readonly watch?: boolean;
}

/** `GET /stats` of a running proxy: every breaker's snapshot with its request counts. */
async function readStats(base: string): Promise<ServiceStats[]> {
  const r = await fetch(`${base}/stats`, { signal: AbortSignal.timeout(5000) });
  if (!r.ok) throw new Error(`GET /stats answered ${r.status}`);
  return ((await r.json()) as { services: ServiceStats[] }).services;
}

/** `status`: breaker table of a running proxy. Exit 0 when all closed, 3 when any is not closed, 1 when unreachable. */
export async function status(opts: StatusOptions): Promise<number> {
  const base = opts.adminUrl.replace(/\/+$/, '');
  if (opts.watch) return watch(base, opts);
  let services: ServiceStats[];
  try {
    services = await readStats(base);
  } catch (err) {
    process.stderr.write(`cannot read breakers from ${base}: ${(err as Error).message}\n`);
    return ExitCode.runtime;
  }
  const anyOpen = services.some((b) => b.state !== 'closed');
  process.stdout.write(opts.json ? `${JSON.stringify({ breakers: services }, null, 2)}\n` : render(services, opts.color));
  return anyOpen ? ExitCode.circuitOpen : ExitCode.ok;
}

/**
 * `status --watch`: the table redrawn every second until SIGINT/SIGTERM, then exit 0. On a
 * terminal the screen is cleared each time; piped, the tables follow one another.
 */
function watch(base: string, opts: StatusOptions): Promise<number> {
  const tty = process.stdout.isTTY === true;
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const draw = async (): Promise<void> => {
      let frame: string;
      try {
        frame = render(await readStats(base), opts.color);
      } catch (err) {
        frame = `cannot read breakers from ${base}: ${(err as Error).message}\n`;
      }
      if (stopped) return;
      const head = `circuit-proxy ${base} - ${new Date().toISOString()} (Ctrl-C to stop)\n\n`;
      process.stdout.write((tty ? '\x1b[H\x1b[2J' : '') + head + frame + (tty ? '' : '\n'));
      timer = setTimeout(() => void draw(), 1000);
    };
    const stop = (): void => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      resolve(ExitCode.ok);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    void draw();
  });
}

/** The breaker table `status` prints (exported for its unit test). */
export function render(services: readonly ServiceStats[], color: boolean, now = Date.now()): string {
  const rows: string[][] = [];
  /** Per row, the service state it paints (a route's row: none). */
  const states: Array<string | undefined> = [];
  for (const b of services) {
    rows.push(serviceRow(b, now));
    states.push(b.state);
    // A service with routes: a row per route under it, with its own counts (docs/routes.md).
    for (const r of b.routes ?? []) {
      const share = r.requests > 0 ? ` (${Math.round((100 * r.errors) / r.requests)}%)` : '';
      rows.push([`  route ${r.route}`, '', '', '', String(r.requests), '', String(r.rps), '', `5xx: ${r.errors}${share}`]);
      states.push(undefined);
    }
  }
  const colors: Record<string, string> = { closed: '\x1b[32m', open: '\x1b[31m', half_open: '\x1b[33m' };
  const paint = (cell: string, row: number, col: number): string => {
    const state = row < 0 || col !== 1 ? undefined : states[row];
    if (!color || state === undefined) return cell;
    return `${colors[state] ?? ''}${cell}\x1b[0m`;
  };
  return table(['SERVICE', 'STATE', 'FAILURES', 'NEXT PROBE IN', 'REQUESTS', 'REJECTED', 'REQ/S', 'ENDPOINTS', 'LAST TRIP'], rows, paint);
}

function serviceRow(b: ServiceStats, now: number): string[] {
  return [
    b.name,
    // Where a fleet message made the state, the sidecar it came from (docs/fleet.md, "Seeing it").
    b.state +
      (b.forced ? ' (forced)' : '') +
      (b.mode === 'observe' ? ' (observe)' : '') +
      (b.stateFrom !== undefined ? ` (fleet: ${b.stateFrom})` : ''),
    `${b.consecutiveFailures}/${b.threshold}`,
    probeCell(b),
    String(b.requests),
    String(b.rejected),
    String(b.rps),
    endpointsCell(b),
    b.lastTrip ? `${ago(now, b.lastTrip.at)}: ${b.lastTrip.reason}` : '-',
  ];
}

/** NEXT PROBE IN: the open circuit's countdown, `forced`, or the sidecar sending the fleet's trial. */
function probeCell(b: ServiceStats): string {
  if (b.forced) return 'forced';
  if (b.state === 'open' && b.retryAfterSeconds !== null) return `${b.retryAfterSeconds}s`;
  if (b.trialBy !== undefined) return `trial: ${b.trialBy}`;
  return '-';
}

/** `active/total`, and which are ejected; `-` for a service with one URL (docs/endpoints.md). */
function endpointsCell(b: ServiceStats): string {
  const eps = b.endpoints;
  if (eps === undefined) return '-';
  const current = eps.filter((e) => e.state !== 'draining');
  const out = current.filter((e) => e.state === 'ejected').map((e) => `${e.address} ejected`);
  const head = `${current.length - out.length}/${current.length} active`;
  return out.length ? `${head} (${out.join(', ')})` : head;
}

function ago(now: number, iso: string): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 60 ? `${s}s ago` : `${formatDuration(s * 1000)} ago`;
}
