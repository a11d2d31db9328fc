import { formatDuration } from './config/duration.js';
import { loadConfig, type ConfigOverrides } from './config/load.js';
import { redactUrl, type CallPolicy, type Config, type RouteConfig, type ServiceConfig } from './config/types.js';
import { percent } from './policy/rules.js';
import { ConfigError, ExitCode } from './errors.js';
import { createLogger } from './log.js';
import type { LevelWithSilent } from 'pino';
import { initialOldSpaceMB, maxSemiSpaceMB, memoryReducerOn } from './runtime.js';
import { CircuitProxy } from './server.js';
import { table } from './table.js';

export const DEFAULT_CONFIG = 'config/proxy.yaml';

export interface ServeOptions {
  readonly config: string;
  readonly overrides: ConfigOverrides;
  readonly logLevel: LevelWithSilent;
  readonly pretty: boolean;
  readonly accessLog: boolean;
  readonly adminToken: string | undefined;
}

/** Loads the config, starts both listeners and installs signal handlers. Resolves with the exit code once stopped. */
export async function serve(opts: ServeOptions): Promise<number> {
  const log = createLogger({ level: opts.logLevel, pretty: opts.pretty });
  const load = (): Config => loadConfig(opts.config, process.env, opts.overrides);
  let config: Config;
  try {
    config = load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return ExitCode.usage;
    }
    throw err;
  }
  const proxy = new CircuitProxy(config, { log, adminToken: opts.adminToken, accessLog: opts.accessLog, loadConfig: load });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception: exiting');
    process.exit(ExitCode.runtime);
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  let addresses;
  try {
    addresses = await proxy.listen();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    log.fatal({ code: e.code }, `cannot listen: ${e.message}`);
    await proxy.close(0);
    return ExitCode.runtime;
  }
  log.info(
    {
      port: addresses.port,
      adminPort: addresses.adminPort,
      config: opts.config,
      services: [...config.services.values()].map((s) => ({
        name: s.name,
        url: s.url,
        threshold: s.circuit.threshold,
        cooldown: formatDuration(s.circuit.cooldownMs),
        timeout: formatDuration(s.call.timeoutMs),
      })),
      // Off as shipped (src/runtime.ts): on means this node was started without NODE_FLAGS.
      memoryReducer: memoryReducerOn(),
      // 16 as shipped; null means V8 sizes the young generation itself (up to 64 MB on Node 24).
      maxSemiSpaceMB: maxSemiSpaceMB() ?? null,
      // 64 as shipped; null: V8 may set the old generation's limit as low as it likes (docs/operations.md).
      initialOldSpaceMB: initialOldSpaceMB() ?? null,
      // 67108864 as shipped (PROCESS_ENV); null: glibc's default, which slows streaming (docs/operations.md).
      mallocTrimThreshold: process.env.MALLOC_TRIM_THRESHOLD_ ?? null,
    },
    `circuit-proxy listening on ${config.listen.host}:${addresses.port} (admin ${config.admin.host}:${addresses.adminPort})`,
  );

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        resolve(ExitCode.runtime);
        return;
      }
      stopping = true;
      log.info({ signal, graceMs: proxy.currentConfig.shutdownGraceMs }, 'draining: no new connections, in-flight requests may finish');
      proxy.close().then(
        () => {
          log.info('stopped');
          resolve(ExitCode.ok);
        },
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          resolve(ExitCode.runtime);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      try {
        proxy.reloadFromSource();
      } catch {
        // Logged by reloadFromSource; the old config keeps serving.
      }
    });
  });
}

/** `validate`: prints the resolved services or the problems. */
export function validate(file: string, overrides: ConfigOverrides): number {
  let config: Config;
  try {
    config = loadConfig(file, process.env, overrides);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return ExitCode.usage;
    }
    throw err;
  }
  const statuses = (c: CallPolicy): string =>
    c.failureStatuses.map((r) => (r.from === r.to ? String(r.from) : `${r.from}-${r.to}`)).join(',') || '-';
  const rows = [...config.services.values()].flatMap((s) => [
    [
      s.name,
      targetSummary(s),
      String(s.circuit.threshold),
      formatDuration(s.circuit.cooldownMs),
      formatDuration(s.call.timeoutMs),
      statuses(s.call),
      [policySummary(s), upstreamSummary(s), retrySummary(s.call)].filter((x) => x !== '-').join('; ') || '-',
    ],
    // Each route under its service: what it matches, and its call settings (docs/routes.md).
    ...s.routes.map((r) => [
      `  route ${r.name}`,
      routeSummary(r),
      '',
      '',
      formatDuration(r.call.timeoutMs),
      statuses(r.call),
      retrySummary(r.call) === '-' ? 'retries off' : retrySummary(r.call),
    ]),
  ]);
  process.stdout.write(
    `${file}: ok\nlisten ${config.listen.host}:${config.listen.port}, admin ${config.admin.host}:${config.admin.port}\n\n`,
  );
  const f = config.fleet;
  if (f !== undefined) {
    const shared = [f.shareOpen ? 'open' : '', f.shareTrial ? 'trial' : ''].filter(Boolean).join(', ') || 'nothing';
    process.stdout.write(
      `fleet ${f.key} through ${redactUrl(f.redis)}: sidecar ${f.sidecar}, shares ${shared}, quorum ${f.quorum} (docs/fleet.md)\n\n`,
    );
  }
  process.stdout.write(table(['SERVICE', 'URL', 'THRESHOLD', 'COOLDOWN', 'TIMEOUT', 'FAILURE STATUSES', 'POLICIES'], rows));
  for (const s of config.services.values()) {
    const u = s.upstream;
    if (u.outlier !== undefined && u.endpoints.length === 1 && u.discovery === undefined) {
      process.stdout.write(
        `note: ${s.name}: outlier is set but the service has one endpoint: nothing to eject, the circuit alone decides\n`,
      );
    }
    const slowMs = s.call.slowCallMs;
    if (slowMs !== undefined && slowMs >= s.call.timeoutMs) {
      process.stdout.write(
        `note: ${s.name}: slowCalls.duration (${formatDuration(slowMs)}) >= timeout (${formatDuration(s.call.timeoutMs)}): the timeout ends a call first, so the slow-call rule never fires\n`,
      );
    }
  }
  return ExitCode.ok;
}

/** Where a service's requests go, for the URL column: the URL, the endpoint list, or the name DNS resolves. */
function targetSummary(s: ServiceConfig): string {
  const u = s.upstream;
  if (u.discovery !== undefined) return `${s.url} (dns every ${formatDuration(u.discovery.refreshMs)})`;
  return u.endpoints.length > 1 ? `${u.endpoints.length} endpoints: ${s.url}` : s.url;
}

/** What a route matches: its methods (any when none) and its path pattern (any when none). */
function routeSummary(r: RouteConfig): string {
  const methods = r.match.methods ? [...r.match.methods].join(',') : 'any method';
  return `${methods} ${r.match.path?.source ?? 'any path'}`;
}

/** The retry rule in one cell (docs/retries.md); `-` when off. */
function retrySummary(call: CallPolicy): string {
  const r = call.retries;
  if (r === undefined) return '-';
  return (
    `retries ${r.attempts} on ${r.on.join(',')} (idempotent only past connect), backoff ${formatDuration(r.baseMs)}-${formatDuration(r.maxMs)}, ` +
    `budget ${percent(r.budgetRatio)} or ${r.minPerSecond}/s, body <=${r.bufferBytes} B`
  );
}

/** Balancing and outlier ejection in one cell (docs/endpoints.md); `-` for one URL. */
function upstreamSummary(s: ServiceConfig): string {
  const u = s.upstream;
  if (u.endpoints.length === 1 && u.discovery === undefined) return '-';
  const parts: string[] = [u.balance];
  const o = u.outlier;
  if (o !== undefined) {
    parts.push(
      `outlier ${o.consecutiveFailures} in a row${o.failureRate ? ` or ${percent(o.failureRate.ratio)} of >=${o.failureRate.minRequests}` : ''}, ` +
        `eject n x ${formatDuration(o.ejectionTimeMs)} (max ${formatDuration(o.maxEjectionTimeMs)}, ${percent(o.maxEjectedPercent)} at once)`,
    );
  }
  return parts.join(', ');
}

/** The trip and recovery policies of a service in one cell (docs/policies.md); `-` for the default rule alone. */
function policySummary(svc: ServiceConfig): string {
  const s = svc.circuit;
  const parts: string[] = [];
  if (s.failureRate)
    parts.push(
      `failureRate ${percent(s.failureRate.ratio)} of >=${s.failureRate.minRequests} in ${formatDuration(s.failureRate.windowMs)}`,
    );
  if (s.slowCalls)
    parts.push(
      `slowCalls >${formatDuration(s.slowCalls.durationMs)} ${percent(s.slowCalls.ratio)} of >=${s.slowCalls.minRequests} in ${formatDuration(s.slowCalls.windowMs)}`,
    );
  if (s.backoff)
    parts.push(
      `backoff x${s.backoff.multiplier} max ${formatDuration(s.backoff.maxMs)}${s.backoff.jitter ? ` ±${percent(s.backoff.jitter)}` : ''}`,
    );
  if (s.halfOpen.trials > 1 || s.halfOpen.queue > 0)
    parts.push(
      `halfOpen ${s.halfOpen.trials} trial${s.halfOpen.trials === 1 ? '' : 's'}, queue ${s.halfOpen.queue} (${formatDuration(s.halfOpen.maxWaitMs)})`,
    );
  if (s.retryAfter) parts.push(`retryAfter max ${formatDuration(s.retryAfter.maxMs)}`);
  return parts.join('; ') || '-';
}
