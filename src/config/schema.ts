import { z } from 'zod';
import { MAX_DURATION_MS, parseDuration } from './duration.js';
import type { StatusRange } from './types.js';

/**
 * The one schema the YAML is checked against (docs/configuration.md). Unknown keys are rejected everywhere.
 * Messages state the rule; the loader adds the key path and the value received.
 */

const DURATION_RULE = 'must be a duration such as 250ms, 5s, 1m or a number of milliseconds, from 1ms to 24d';

const duration = z.unknown().transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined || ms < 1 || ms > MAX_DURATION_MS) {
    ctx.issues.push({ code: 'custom', message: DURATION_RULE, input: value });
    return z.NEVER;
  }
  return ms;
});

const threshold = z.int({ error: 'must be an integer ≥ 1' }).min(1, { error: 'must be an integer ≥ 1' });
const port = z
  .int({ error: 'must be an integer from 0 to 65535' })
  .min(0, { error: 'must be an integer from 0 to 65535' })
  .max(65535, { error: 'must be an integer from 0 to 65535' });
const host = z.string({ error: 'must be a host name or IP address' }).min(1, { error: 'must not be empty' });

const STATUS_RULE = 'must be a list of HTTP statuses (100-599) or ranges such as 500-599';
const statusEntry = z.unknown().transform((value, ctx): StatusRange => {
  const m = typeof value === 'number' ? [String(value), String(value), String(value)] : /^(\d{3})(?:-(\d{3}))?$/.exec(String(value).trim());
  const from = m ? Number(m[1]) : NaN;
  const to = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || !(from >= 100 && to <= 599 && from <= to)) {
    ctx.issues.push({ code: 'custom', message: STATUS_RULE, input: value });
    return z.NEVER;
  }
  return { from, to };
});
const failureStatuses = z.array(statusEntry, { error: STATUS_RULE });

const url = z.string({ error: 'must be an http: or https: URL' }).superRefine((value, ctx) => {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an http: or https: URL', input: value });
    return;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: 'must be an http: or https: URL', input: value });
  } else if (parsed.search || parsed.hash || value.includes('?') || value.includes('#')) {
    ctx.addIssue({ code: 'custom', message: 'must not carry a query or fragment', input: value });
  }
});

const tuning = {
  threshold: threshold.optional(),
  cooldown: duration.optional(),
  timeout: duration.optional(),
  bodyIdleTimeout: duration.optional(),
  failureStatuses: failureStatuses.optional(),
};

const CONNECTIONS_RULE = 'must be an integer from 1 to 1000000';
const maxConnections = z.int({ error: CONNECTIONS_RULE }).min(1, { error: CONNECTIONS_RULE }).max(1_000_000, { error: CONNECTIONS_RULE });

const admin = z.strictObject({ host: host.optional(), port: port.optional() }, { error: 'must be a mapping' });
const listen = z.strictObject(
  { host: host.optional(), port: port.optional(), maxConnections: maxConnections.optional() },
  { error: 'must be a mapping' },
);
const clientTimeouts = z.strictObject({ header: duration.optional(), bodyIdle: duration.optional() }, { error: 'must be a mapping' });

const service = z.strictObject({ url, ...tuning }, { error: 'must be a mapping with at least a url' });

export const rawConfigSchema = z.strictObject(
  {
    listen: listen.optional(),
    admin: admin.optional(),
    clientTimeouts: clientTimeouts.optional(),
    shutdownGrace: duration.optional(),
    defaults: z.strictObject(tuning, { error: 'must be a mapping' }).optional(),
    services: z.record(z.string(), service, { error: 'must be a mapping of service name to settings' }),
  },
  { error: 'must be a mapping' },
);

/** Service names: `[a-z0-9][a-z0-9-_]*` (docs/configuration.md). */
export const SERVICE_NAME = /^[a-z0-9][a-z0-9_-]*$/;
