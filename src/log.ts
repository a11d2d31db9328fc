import { createRequire } from 'node:module';
import { pino, type Logger, type LevelWithSilent } from 'pino';
import type { ServiceRegistry } from './upstream/registry.js';
import { formatDuration } from './config/duration.js';
import type { ProxyHandler } from './proxy/handler.js';
import { describeEndpointEvent } from './upstream/endpoints.js';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LogOptions {
  readonly level?: LevelWithSilent;
  /** Human-readable lines through pino-pretty, when it is installed. */
  readonly pretty?: boolean;
  /** Where JSON lines go; stdout by default. Tests pass a stream. */
  readonly stream?: NodeJS.WritableStream;
}

/** Never log credentials, wherever they appear in a logged object. */
const REDACT = [
  'authorization',
  'cookie',
  '*.authorization',
  '*.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  'headers["set-cookie"]',
  '*.headers["set-cookie"]',
];

export function createLogger(opts: LogOptions = {}): Logger {
  const base = { level: opts.level ?? 'info', redact: { paths: REDACT, censor: '[redacted]' }, base: { name: 'circuit-proxy' } };
  if (opts.stream) return pino(base, opts.stream);
  if (opts.pretty && prettyAvailable()) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, sync: true } } });
  }
  // Synchronous stdout: pino's async writer can spin in its exit flush once stdout is gone (EPIPE).
  return pino(base, pino.destination({ dest: 1, sync: true }));
}

function prettyAvailable(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

/**
 * Subscribes the log to breaker and proxy events (docs/observability.md, "Logs"). The phrases `Circuit open for <name>`
 * and `<name> unreachable: ...` are part of the contract: operators grep for them.
 */
export function attachLogs(log: Logger, registry: ServiceRegistry, handler: ProxyHandler, accessLog: boolean): void {
  /** ` (observe)` after the message of a service in observe mode: nothing it logs was enforced. */
  const observing = (service: string): string => (registry.get(service)?.config.admission.mode === 'observe' ? ' (observe)' : '');
  registry.on('transition', (t) => {
    const fields = { service: t.service, from: t.from, to: t.to, reason: t.reason, forced: t.forced, fleet: t.fleet };
    const o = observing(t.service);
    if (t.to === 'open') log.warn(fields, `Circuit open for ${t.service}${o}`);
    else if (t.to === 'half_open') log.info(fields, `Circuit half-open for ${t.service}: trial requests decide${o}`);
    else log.info(fields, `Circuit closed for ${t.service}${o}`);
  });
  registry.on('failure', (f) => {
    const fields = {
      service: f.service,
      reason: f.reason,
      requestId: f.requestId,
      code: f.code,
      endpoint: f.endpoint || undefined,
      stale: f.stale || undefined,
    };
    const svc = registry.get(f.service);
    const o = observing(f.service);
    if (f.reason === 'timeout')
      log.warn(fields, `${f.service} timed out after ${svc ? formatDuration(svc.config.call.timeoutMs) : '?'}${o}`);
    else if (f.reason === 'status') log.warn(fields, `${f.service} answered with failure ${f.detail}${o}`);
    else log.warn(fields, `${f.service} unreachable: ${f.detail}${o}`);
  });
  registry.on('endpoint', (e) => {
    const fields = { service: e.service, endpoint: e.endpoint, state: e.state, reason: e.reason, ejection: e.ejection };
    if (e.state === 'ejected') log.warn(fields, describeEndpointEvent(e));
    else log.info(fields, describeEndpointEvent(e));
  });
  registry.on('discovery', (d) => {
    if (d.ok) log.info({ service: d.service, addresses: d.addresses }, `${d.service} discovery: ${d.addresses?.length ?? 0} address(es)`);
    else log.warn({ service: d.service, error: d.error }, `${d.service} discovery failed, keeping the last good set: ${d.error}`);
  });
  handler.on('retry', (e) =>
    log.info(
      { service: e.service, requestId: e.requestId, attempt: e.attempt, reason: e.reason, endpoint: e.endpoint, delayMs: e.delayMs },
      `${e.service}: retrying after ${e.reason} at ${e.endpoint} (attempt ${e.attempt}, in ${e.delayMs}ms)`,
    ),
  );
  handler.on('wouldReject', (service, reason) =>
    log.debug({ service, reason }, `${service}: would reject (${reason}), forwarded (observe)`),
  );
  // Once at warn (a misconfigured client says so at once), then at debug: a gRPC client retrying
  // would otherwise fill the log. proxy_protocol_refused_total counts every one.
  let refusedBefore = false;
  handler.on('protocolRefused', (protocol) => {
    const msg = 'HTTP/2 is not served: connection refused with GOAWAY HTTP_1_1_REQUIRED (speak HTTP/1.1)';
    if (refusedBefore) log.debug({ protocol }, msg);
    else log.warn({ protocol }, msg);
    refusedBefore = true;
  });
  if (accessLog) {
    handler.on('completed', (c) => {
      log.info(
        {
          service: c.service,
          method: c.method,
          path: c.path,
          status: c.status,
          outcome: c.outcome,
          durationMs: Math.round(c.durationSeconds * 1e6) / 1e3,
          requestId: c.requestId,
          attempts: c.attempts,
          noRetry: c.noRetry,
          route: c.route,
        },
        'request',
      );
    });
    handler.on('tunnelClosed', (service, seconds) => {
      log.info({ service, durationMs: Math.round(seconds * 1e6) / 1e3 }, 'tunnel closed');
    });
    handler.on('unrouted', (status, req) => {
      log.info({ method: req.method, path: req.url, status }, 'request (no route)');
    });
  }
}
