import type { BreakerSnapshot } from './breaker/service-breaker.js';
import { formatDuration } from './config/duration.js';
import { ExitCode } from './errors.js';
import { table } from './main.js';

export interface StatusOptions {
  readonly adminUrl: string;
  readonly json: boolean;
  readonly color: boolean;
}

interface Counts {
  requests: number;
  rejected: number;
}

/** `status`: breaker table of a running proxy. Exit 0 when all closed, 3 when any is not closed, 1 when unreachable. */
export async function status(opts: StatusOptions): Promise<number> {
  const base = opts.adminUrl.replace(/\/+$/, '');
  let breakers: BreakerSnapshot[];
  let counts: Map<string, Counts>;
  try {
    const [b, m] = await Promise.all([
      fetch(`${base}/breakers`, { signal: AbortSignal.timeout(5000) }),
      fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) }),
    ]);
    if (!b.ok) throw new Error(`GET /breakers answered ${b.status}`);
    breakers = ((await b.json()) as { breakers: BreakerSnapshot[] }).breakers;
    counts = m.ok ? countsFromMetrics(await m.text()) : new Map();
  } catch (err) {
    process.stderr.write(`cannot read breakers from ${base}: ${(err as Error).message}\n`);
    return ExitCode.runtime;
  }
  const anyOpen = breakers.some((b) => b.state !== 'closed');
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ breakers: breakers.map((b) => ({ ...b, ...counts.get(b.name) })) }, null, 2)}\n`);
    return anyOpen ? ExitCode.circuitOpen : ExitCode.ok;
  }
  const now = Date.now();
  const rows = breakers.map((b) => {
    const c = counts.get(b.name);
    const probe = b.state === 'open' && !b.forced && b.retryAfterSeconds !== null ? `${b.retryAfterSeconds}s` : b.forced ? 'forced' : '-';
    return [
      b.name,
      b.state + (b.forced ? ' (forced)' : ''),
      `${b.consecutiveFailures}/${b.threshold}`,
      probe,
      String(c?.requests ?? '-'),
      String(c?.rejected ?? '-'),
      b.lastTrip ? `${ago(now, b.lastTrip.at)}: ${b.lastTrip.reason}` : '-',
    ];
  });
  const colors: Record<string, string> = { closed: '\x1b[32m', open: '\x1b[31m', half_open: '\x1b[33m' };
  const paint = (cell: string, row: number, col: number): string => {
    if (!opts.color || row < 0 || col !== 1) return cell;
    return `${colors[breakers[row]!.state] ?? ''}${cell}\x1b[0m`;
  };
  process.stdout.write(table(['SERVICE', 'STATE', 'FAILURES', 'NEXT PROBE IN', 'REQUESTS', 'REJECTED', 'LAST TRIP'], rows, paint));
  return anyOpen ? ExitCode.circuitOpen : ExitCode.ok;
}

function ago(now: number, iso: string): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 60 ? `${s}s ago` : `${formatDuration(s * 1000)} ago`;
}

/** Sums `proxy_requests_total` and reads `circuit_breaker_rejected_total` per service. */
export function countsFromMetrics(text: string): Map<string, Counts> {
  const out = new Map<string, Counts>();
  const get = (s: string): Counts => {
    let c = out.get(s);
    if (!c) out.set(s, (c = { requests: 0, rejected: 0 }));
    return c;
  };
  for (const line of text.split('\n')) {
    const m = /^(proxy_requests_total|circuit_breaker_rejected_total)\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!m) continue;
    const svc = /service="([^"]*)"/.exec(m[2]!)?.[1];
    if (svc === undefined) continue;
    if (m[1] === 'proxy_requests_total') get(svc).requests += Number(m[3]);
    else get(svc).rejected += Number(m[3]);
  }
  return out;
}
