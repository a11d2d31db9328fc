import { isIP } from 'node:net';
import { z } from 'zod';
import { DURATION_PATTERN, MAX_DURATION_MS, parseDuration } from './duration.js';
import type { StatusRange } from './types.js';

/**
 * The one schema the YAML is checked against (docs/configuration.md), and the source of the JSON
 * Schema that `circuit-proxy schema` prints (./json-schema.ts). Unknown keys are rejected
 * everywhere. Messages state the rule; the loader adds the key path and the value received. Each
 * key's `meta` (description with unit, default) is what editors show.
 */

/** Every rule's message, with the same wording for every way a value can miss it. */
function rule(message: string): { error: string } {
  return { error: message };
}

const MAPPING = rule('must be a mapping');

/** An integer from `min` to `max`, with the same message for every way a value misses it. */
function intIn(min: number, max: number, message: string) {
  return z.int(rule(message)).min(min, rule(message)).max(max, rule(message));
}

const DURATION_RULE = 'must be a duration such as 250ms, 5s, 1m or a number of milliseconds, from 1ms to 24d';

/** `250ms`, `5s`, `1.5s`, `1m`, `1h`, or a bare number of milliseconds; milliseconds out. */
function duration(description: string, defaultValue: string) {
  return z
    .union(
      [
        z.string(rule(DURATION_RULE)).regex(DURATION_PATTERN, rule(DURATION_RULE)),
        z.number(rule(DURATION_RULE)).min(1, rule(DURATION_RULE)).max(MAX_DURATION_MS, rule(DURATION_RULE)),
      ],
      rule(DURATION_RULE),
    )
    .meta({ description, default: defaultValue })
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === undefined || ms < 1 || ms > MAX_DURATION_MS) {
        ctx.issues.push({ code: 'custom', message: DURATION_RULE, input: value });
        return z.NEVER;
      }
      return ms;
    });
}

const THRESHOLD_RULE = 'must be an integer ≥ 1';
const threshold = z
  .int(rule(THRESHOLD_RULE))
  .min(1, rule(THRESHOLD_RULE))
  .meta({ description: 'Consecutive failures that open the circuit. Env CB_THRESHOLD overrides the defaults.', default: 3 });

const PORT_RULE = 'must be an integer from 0 to 65535';
const port = (description: string, defaultValue: number) => intIn(0, 65535, PORT_RULE).meta({ description, default: defaultValue });
const host = (description: string) =>
  z.string(rule('must be a host name or IP address')).min(1, rule('must not be empty')).meta({ description });

const STATUS_RULE = 'must be a list of HTTP statuses (100-599) or ranges such as 500-599';
const STATUS_PATTERN = /^[1-5]\d\d(?:-[1-5]\d\d)?$/;
const statusEntry = z
  .union([intIn(100, 599, STATUS_RULE), z.string(rule(STATUS_RULE)).regex(STATUS_PATTERN, rule(STATUS_RULE))], rule(STATUS_RULE))
  .transform((value, ctx): StatusRange => {
    const range = statusRange(value);
    if (range.from > range.to) {
      ctx.issues.push({ code: 'custom', message: STATUS_RULE, input: value });
      return z.NEVER;
    }
    return range;
  });

function statusRange(value: number | string): StatusRange {
  if (typeof value === 'number') return { from: value, to: value };
  const [from, to = from] = value.split('-');
  return { from: Number(from), to: Number(to) };
}
const failureStatuses = z.array(statusEntry, rule(STATUS_RULE)).meta({
  description: 'Upstream statuses counted as failures: codes or ranges, e.g. [429, 500-599]. [] counts none.',
  default: ['500-599'],
});

const URL_RULE = 'must be an http: or https: URL';
const url = z
  .string(rule(URL_RULE))
  .regex(/^https?:\/\//i, rule(URL_RULE))
  .superRefine((value, ctx) => {
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: URL_RULE, input: value });
      return;
    }
    if (parsed.search || parsed.hash || value.includes('?') || value.includes('#')) {
      ctx.addIssue({ code: 'custom', message: 'must not carry a query or fragment', input: value });
    }
  })
  .meta({ description: 'Base URL of the upstream (http: or https:), may carry a path prefix; no query or fragment.' });

const PERCENT_RULE = 'must be a percentage such as 50% or a ratio such as 0.5, above 0 and at most 100%';
const JITTER_RULE = 'must be a percentage such as 10% or a ratio such as 0.1, from 0 to 100%';
/** 0-100%, so the generated JSON Schema refuses "150%" as `validate` does (0% where not allowed is left to `validate`). */
const PERCENT_PATTERN = /^\s*(?:100(?:\.0+)?|\d{1,2}(?:\.\d+)?)\s*%\s*$/;

/** `50%` or `0.5`; a ratio out. `zero` allows 0 (jitter), else the value must be above 0. */
function percentage(description: string, zero = false, defaultValue?: string) {
  const message = zero ? JITTER_RULE : PERCENT_RULE;
  const number = zero ? z.number(rule(message)).min(0, rule(message)) : z.number(rule(message)).gt(0, rule(message));
  return z
    .union([z.string(rule(message)).regex(PERCENT_PATTERN, rule(message)), number.max(1, rule(message))], rule(message))
    .meta({ description, ...(defaultValue !== undefined ? { default: defaultValue } : {}) })
    .transform((value, ctx) => {
      const ratio = typeof value === 'number' ? value : Number(value.trim().slice(0, -1).trim()) / 100;
      if (!(ratio <= 1 && (zero ? ratio >= 0 : ratio > 0))) {
        ctx.issues.push({ code: 'custom', message, input: value });
        return z.NEVER;
      }
      return ratio;
    });
}

const COUNT_RULE = 'must be an integer ≥ 1';
const minRequests = z
  .int(rule(COUNT_RULE))
  .min(1, rule(COUNT_RULE))
  .meta({ description: 'Below this many outcomes in the window the ratio never trips.', default: 20 });
const window = () => duration('Sliding window the ratio is taken over, in 1 s buckets.', '30s');

const failureRate = z
  .strictObject(
    {
      threshold: percentage('Open when failures / outcomes in the window reach this.'),
      minRequests: minRequests.optional(),
      window: window().optional(),
    },
    MAPPING,
  )
  .meta({ description: 'Open on a failure ratio over a sliding time window (off unless set).' });

const slowCalls = z
  .strictObject(
    {
      duration: duration('No response headers this long after the request was sent in full: a slow call, counted at that moment.', '2s'),
      threshold: percentage('Open when slow calls / outcomes in the window reach this.'),
      minRequests: minRequests.optional(),
      window: window().optional(),
    },
    MAPPING,
  )
  .meta({ description: 'Open on a ratio of slow calls, counted while they are still in flight (off unless set).' });

const MULTIPLIER_RULE = 'must be a number ≥ 1';
const backoff = z
  .strictObject(
    {
      multiplier: z
        .number(rule(MULTIPLIER_RULE))
        .min(1, rule(MULTIPLIER_RULE))
        .meta({ description: 'Each consecutive opening lasts this many times the one before.', default: 2 })
        .optional(),
      max: duration('No opening lasts longer than this; at least the cooldown.', '5m').optional(),
      jitter: percentage('Each cooldown is drawn uniformly within ± this of its step.', true, '0%').optional(),
    },
    MAPPING,
  )
  .meta({ description: 'Lengthen the cooldown of each re-opening without a close in between (off unless set).' });

const halfOpen = z
  .strictObject(
    {
      trials: z
        .int(rule(COUNT_RULE))
        .min(1, rule(COUNT_RULE))
        .meta({ description: 'Requests let through per half-open period; the circuit closes when all succeed.', default: 1 })
        .optional(),
      queue: z
        .int(rule('must be an integer ≥ 0'))
        .min(0, rule('must be an integer ≥ 0'))
        .meta({ description: 'Further callers that wait for the verdict instead of a 503 at once.', default: 0 })
        .optional(),
      maxWait: duration('How long a queued caller waits at most.', '1s').optional(),
    },
    MAPPING,
  )
  .meta({ description: 'Who is let through while the circuit is half-open.' });

const retryAfter = z
  .strictObject(
    {
      honor: z
        .boolean(rule('must be true or false'))
        .meta({
          description: "An upstream's Retry-After on the failure that opens the circuit sets that opening's cooldown.",
          default: false,
        })
        .optional(),
      max: duration('The longest cooldown an upstream Retry-After may set.', '10m').optional(),
    },
    MAPPING,
  )
  .meta({ description: "Honour an upstream's Retry-After (off unless honor: true)." });

const maxConcurrent = z
  .int(rule(COUNT_RULE))
  .min(1, rule(COUNT_RULE))
  .meta({ description: 'Bulkhead: requests in flight to this upstream at once; the next one gets 503 at once (off unless set).' });

const mode = z
  .enum(['enforce', 'observe'], rule('must be enforce or observe'))
  .meta({ description: 'observe: the breaker and bulkhead run, and what they would reject is forwarded and counted.', default: 'enforce' });

const REJECT_RETRY_AFTER_RULE = 'must be cooldown, none or a duration such as 1s (a cap)';
const rejectRetryAfter = z
  .union(
    [z.enum(['cooldown', 'none'], rule(REJECT_RETRY_AFTER_RULE)), duration('A cap, told in whole seconds rounded up.', '1s')],
    rule(REJECT_RETRY_AFTER_RULE),
  )
  .meta({
    description:
      'The Retry-After on the proxy\'s own 503s: cooldown (the seconds until half-open), none (left out), or a cap such as 1s (docs/behaviour.md, "What rejected callers are told").',
    default: 'cooldown',
  });

const STATUS_CODE_RULE = 'must be an HTTP status from 200 to 599';
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const fallback = z
  .strictObject(
    {
      status: intIn(200, 599, STATUS_CODE_RULE).meta({ description: 'Status of the fallback answer.', default: 200 }).optional(),
      headers: z
        .record(z.string().regex(HEADER_NAME, rule('header names must be HTTP tokens')), z.string(rule('must be a string')), MAPPING)
        .meta({ description: 'Headers of the fallback answer, e.g. content-type.' })
        .optional(),
      body: z
        .string(rule('must be a string'))
        .meta({ description: 'Body of the fallback answer (at most 64 KiB); or bodyFile.' })
        .optional(),
      bodyFile: z
        .string(rule('must be a path'))
        .min(1, rule('must be a path'))
        .meta({
          description: "A file holding the body (at most 64 KiB), read at load and reload; relative to the config file's directory.",
        })
        .optional(),
    },
    MAPPING,
  )
  .meta({ description: 'What an open circuit answers instead of the 503 problem (off unless set).' });

const BALANCE_RULE = 'must be round-robin or least-request';
const FILE_RULE = 'must be a file path (relative to the config file)';
const pemFile = (description: string) => z.string(rule(FILE_RULE)).min(1, rule(FILE_RULE)).meta({ description }).optional();
const tls = z
  .strictObject(
    {
      ca: pemFile('PEM file of the CA certificate(s) that sign the upstream: trusted instead of the system roots.'),
      cert: pemFile('PEM file of the client certificate the proxy presents (mTLS); needs key.'),
      key: pemFile('PEM file of the private key of cert (unencrypted).'),
      servername: z
        .string(rule('must be a host name'))
        .regex(/^[A-Za-z0-9.-]+$/, rule('must be a host name'))
        .meta({ description: "The TLS server name (SNI) and the name the certificate must carry; default the URL's host." })
        .optional(),
      minVersion: z
        .enum(['TLSv1.2', 'TLSv1.3'], rule('must be TLSv1.2 or TLSv1.3'))
        .meta({ description: 'The lowest TLS version accepted.', default: 'TLSv1.2' })
        .optional(),
    },
    MAPPING,
  )
  .meta({
    description:
      'TLS to an https upstream (docs/configuration.md, "TLS to upstreams"): a private CA, a client certificate. Certificates are always verified.',
  });

const balance = z.enum(['round-robin', 'least-request'], rule(BALANCE_RULE)).meta({
  description: 'How requests are spread over available endpoints: round-robin, or least-request (the less loaded of two picked at random).',
  default: 'round-robin',
});

const outlier = z
  .strictObject(
    {
      consecutiveFailures: z
        .int(rule(COUNT_RULE))
        .min(1, rule(COUNT_RULE))
        .meta({ description: 'Eject an endpoint after this many failures in a row on it.', default: 5 })
        .optional(),
      failureRate: z
        .strictObject(
          {
            threshold: percentage("Eject when the endpoint's failures / outcomes in the window reach this."),
            minRequests: minRequests.optional(),
            window: window().optional(),
          },
          MAPPING,
        )
        .meta({ description: "Eject on the endpoint's failure ratio over a sliding window (off unless set)." })
        .optional(),
      ejectionTime: duration('The n-th ejection in a row (no success in between) lasts n x this.', '30s').optional(),
      maxEjectionTime: duration('No ejection lasts longer than this; at least ejectionTime.', '5m').optional(),
      maxEjectedPercent: percentage(
        'At most this share of the endpoints is ejected at once (with 2 or more, one always may be; the last available never is).',
        false,
        '10%',
      ).optional(),
    },
    MAPPING,
  )
  .meta({
    description: 'Outlier ejection: a failing endpoint is taken out of rotation for a while (off unless set; needs 2 or more endpoints).',
  });

const ENDPOINTS_RULE = 'must be a list of http: or https: URLs';
const endpoints = z
  .array(url, rule(ENDPOINTS_RULE))
  .min(1, rule('must list at least one URL'))
  .meta({ description: 'Several base URLs of one service (same scheme and base path); instead of url.' });

const SERVER_RULE = 'must be a DNS server as an IP address with an optional port, e.g. 10.0.0.2:53 or [fd00::2]:53';
const discovery = z
  .strictObject(
    {
      dns: z.boolean(rule('must be true or false')).meta({ description: "Every A/AAAA record of url's host name is an endpoint." }),
      refresh: duration('Re-resolve the host name this often.', '10s').optional(),
      servers: z
        .array(
          z
            .string(rule(SERVER_RULE))
            .regex(
              /^(?:\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$/,
              rule(SERVER_RULE),
            )
            .refine((v) => dnsServer(v) !== undefined, rule(SERVER_RULE)),
          rule('must be a list of DNS servers'),
        )
        .min(1, rule('must list at least one server'))
        .meta({
          description: 'DNS servers to ask (IP[:port]); without it, the system resolver (getaddrinfo, as /etc/hosts and resolv.conf say).',
        })
        .optional(),
    },
    MAPPING,
  )
  .meta({ description: "Endpoints from DNS: url's host name re-resolved every refresh (off unless dns: true)." });

/** `10.0.0.2`, `10.0.0.2:5353`, `[fd00::2]:53` or a bare IPv6 address: the form `dns.Resolver.setServers` takes; undefined otherwise. */
export function dnsServer(value: string): string | undefined {
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(value);
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(value);
  const m = v6 ?? v4;
  const ip = m ? m[1]! : value;
  const port = m?.[2];
  if (isIP(ip) === 0 || (m === null && isIP(value) !== 6)) return undefined;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return undefined;
  return value;
}

const SIZE_RULE = 'must be a size such as 64KiB, 1MiB or a number of bytes, from 0 to 16MiB';
const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB)?\s*$/;
const SIZE_UNIT: Record<string, number> = { B: 1, KB: 1000, KiB: 1024, MB: 1_000_000, MiB: 1024 * 1024 };
export const MAX_RETRY_BUFFER_BYTES = 16 * 1024 * 1024;

/** `64KiB`, `1MiB`, `512B` or a bare number of bytes; bytes out. */
function size(description: string, defaultValue: string) {
  return z
    .union(
      [z.string(rule(SIZE_RULE)).regex(SIZE_PATTERN, rule(SIZE_RULE)), z.int(rule(SIZE_RULE)).min(0, rule(SIZE_RULE))],
      rule(SIZE_RULE),
    )
    .meta({ description, default: defaultValue })
    .transform((value, ctx) => {
      const m = typeof value === 'number' ? undefined : SIZE_PATTERN.exec(value);
      const bytes = typeof value === 'number' ? value : Math.round(Number(m![1]) * SIZE_UNIT[m![2] ?? 'B']!);
      if (!(bytes >= 0 && bytes <= MAX_RETRY_BUFFER_BYTES)) {
        ctx.issues.push({ code: 'custom', message: SIZE_RULE, input: value });
        return z.NEVER;
      }
      return bytes;
    });
}

const RETRY_ON_RULE = 'must be connect, reset, timeout or an HTTP status from 400 to 599';
const retryOn = z.union(
  [z.enum(['connect', 'reset', 'timeout'], rule(RETRY_ON_RULE)), intIn(400, 599, RETRY_ON_RULE)],
  rule(RETRY_ON_RULE),
);
const ATTEMPTS_RULE = 'must be an integer from 0 to 5';
const retries = z
  .strictObject(
    {
      attempts: intIn(0, 5, ATTEMPTS_RULE)
        .meta({ description: 'Extra attempts after the first; 0 turns retries off.', default: 2 })
        .optional(),
      on: z
        .array(retryOn, rule('must be a list of connect, reset, timeout and statuses'))
        .meta({
          description: 'Failures that may be retried. connect: nothing was written, any method; the rest: idempotent requests only.',
          default: ['connect', 'reset', 'timeout', 502, 503, 504],
        })
        .optional(),
      backoff: z
        .strictObject(
          {
            base: duration('Full jitter: before retry n, a wait drawn below min(max, base x 2^(n-1)).', '25ms').optional(),
            max: duration('The longest wait between attempts; an upstream Retry-After above it means no retry.', '250ms').optional(),
          },
          MAPPING,
        )
        .meta({ description: 'The wait between attempts.' })
        .optional(),
      budget: z
        .strictObject(
          {
            ratio: percentage("Retries in flight may be this share of the service's requests in flight.", false, '20%').optional(),
            minPerSecond: z
              .int(rule('must be an integer ≥ 0'))
              .min(0, rule('must be an integer ≥ 0'))
              .meta({ description: 'Beyond the ratio, this many retries may start each second.', default: 10 })
              .optional(),
          },
          MAPPING,
        )
        .meta({ description: 'The retry budget: past it a failure is answered, not retried (counted).' })
        .optional(),
      bufferBytes: size('A request body up to this size is kept for replay; a larger one streams and is not retried.', '64KiB').optional(),
    },
    MAPPING,
  )
  .meta({ description: 'Retries that never send a write twice (off unless set; docs/retries.md).' });

const MEDIA_TYPE_RULE = 'must be a list of media types such as text/event-stream';
const streamContentTypes = z
  .array(
    z
      .string(rule(MEDIA_TYPE_RULE))
      .regex(/^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+$/, rule(MEDIA_TYPE_RULE))
      .transform((t) => t.toLowerCase()),
    rule(MEDIA_TYPE_RULE),
  )
  .meta({
    description:
      'Responses of these media types are event streams: not subject to bodyIdleTimeout, a success at their headers (docs/behaviour.md, "Event streams").',
    default: ['text/event-stream'],
  });

/** Keys that may stand under `defaults` or under a service. A rule under a service replaces the same rule under `defaults` whole. */
const tuning = {
  threshold: threshold.optional(),
  cooldown: duration('OPEN -> HALF_OPEN after this long. Env CB_COOLDOWN_SECONDS overrides the defaults.', '30s').optional(),
  timeout: duration('No response headers this long after the whole request is in: a failure, 504. Connecting counts.', '5s').optional(),
  bodyIdleTimeout: duration('A response body that stalls this long between chunks is cut (failure: reset).', '30s').optional(),
  streamIdleTimeout: duration(
    'An event stream (streamContentTypes) with no byte this long is closed, never counted as a failure (default off).',
    'off',
  ).optional(),
  streamContentTypes: streamContentTypes.optional(),
  failureStatuses: failureStatuses.optional(),
  failureRate: failureRate.optional(),
  slowCalls: slowCalls.optional(),
  backoff: backoff.optional(),
  halfOpen: halfOpen.optional(),
  retryAfter: retryAfter.optional(),
  maxConcurrent: maxConcurrent.optional(),
  mode: mode.optional(),
  fallback: fallback.optional(),
  rejectRetryAfter: rejectRetryAfter.optional(),
  balance: balance.optional(),
  outlier: outlier.optional(),
  tls: tls.optional(),
  retries: retries.optional(),
};

const clientBodyIdle = duration('A request body idle this long between chunks gets 408; never a breaker failure.', '30s');

/** The keys a route may set: the call's, never the circuit's (docs/routes.md). */
export const ROUTE_KEYS = ['timeout', 'clientTimeouts.bodyIdle', 'retries', 'failureStatuses', 'slowCalls.duration', 'fallback'] as const;

const METHOD_RULE = 'must be a list of HTTP methods such as GET or POST (upper case)';
const route = z
  .strictObject(
    {
      name: z
        .string(rule('must be a name matching [a-z0-9][a-z0-9-_]*'))
        .regex(/^[a-z0-9][a-z0-9_-]*$/, rule('must be a name matching [a-z0-9][a-z0-9-_]*'))
        .meta({ description: 'The route as metrics, logs and /stats name it; default its index.' })
        .optional(),
      match: z
        .strictObject(
          {
            methods: z
              .array(z.string(rule(METHOD_RULE)).regex(/^[A-Z]+$/, rule(METHOD_RULE)), rule(METHOD_RULE))
              .min(1, rule('must list at least one method, or be left out for any'))
              .meta({ description: 'Methods this route takes; any when left out.' })
              .optional(),
            path: z
              .string(rule('must be a path pattern such as /orders, /orders/*/status or /orders/**'))
              .meta({
                description: 'The raw path after /svc/<name>: exact, * for one segment, /** at the end for a prefix; any when left out.',
              })
              .optional(),
          },
          MAPPING,
        )
        .meta({ description: 'Which requests take this route; the first route that matches wins.' }),
      timeout: tuning.timeout,
      clientTimeouts: z
        .strictObject({ bodyIdle: clientBodyIdle.optional() }, MAPPING)
        .meta({ description: "This route's client body idle limit." })
        .optional(),
      retries: tuning.retries,
      failureStatuses: tuning.failureStatuses,
      slowCalls: z
        .strictObject({ duration: duration('No response headers this long: a slow call, for the service slowCalls rule.', '2s') }, MAPPING)
        .meta({ description: "This route's slow-call duration (the service's slowCalls rule counts them)." })
        .optional(),
      fallback: tuning.fallback,
    },
    MAPPING,
  )
  .meta({ description: "Call settings for some requests of the service (docs/routes.md); the circuit stays the service's." });

const CONNECTIONS_RULE = 'must be an integer from 1 to 1000000';
const maxConnections = intIn(1, 1_000_000, CONNECTIONS_RULE).meta({
  description: 'Open client connections beyond this are refused.',
  default: 10_000,
});

const listen = z
  .strictObject(
    {
      host: host('Address the proxy listens on; 127.0.0.1 for a sidecar (docs/operations.md).').optional(),
      port: port('Proxy port; --port overrides it.', 8080).optional(),
      maxConnections: maxConnections.optional(),
    },
    MAPPING,
  )
  .meta({ description: 'The proxy listener.' });
const admin = z
  .strictObject(
    {
      host: host('Address the admin listener binds.').optional(),
      port: port('Admin port; --admin-port overrides it.', 9901).optional(),
    },
    MAPPING,
  )
  .meta({ description: 'The admin listener: /metrics, /breakers, /healthz, /readyz, operator actions.' });
const clientTimeouts = z
  .strictObject(
    {
      header: duration('A request head not complete within this gets 408.', '10s').optional(),
      bodyIdle: clientBodyIdle.optional(),
      tunnelIdle: duration('A WebSocket tunnel with no bytes either way this long is closed (default off).', 'off').optional(),
    },
    MAPPING,
  )
  .meta({ description: 'What a client may take its time over; none of these counts against a breaker.' });

const REDIS_RULE = 'must be a redis: or rediss: URL, e.g. redis://redis:6379/0';
const FLEET_KEY_RULE = 'must be 1-64 letters, digits, dot, dash or underscore';
const QUORUM_RULE = 'must be an integer from 1 to 1000';
const fleet = z
  .strictObject(
    {
      redis: z
        .string(rule(REDIS_RULE))
        .regex(/^rediss?:\/\/[^\s]+$/i, rule(REDIS_RULE))
        .refine((value) => URL.canParse(value), rule(REDIS_RULE))
        .meta({ description: 'The Redis (or Valkey >= 6) the fleet shares state through; ${REDIS_URL} works. Never on a request path.' }),
      key: z
        .string(rule(FLEET_KEY_RULE))
        .regex(/^[A-Za-z0-9._-]{1,64}$/, rule(FLEET_KEY_RULE))
        .meta({ description: "The fleet's name: sidecars with the same key share circuit state." }),
      share: z
        .array(z.enum(['open', 'trial'], rule('must be open or trial')), rule('must be a list of open, trial'))
        .meta({
          description: 'What is shared: openings (and closes) of circuits, and the one half-open trial.',
          default: ['open', 'trial'],
        })
        .optional(),
      quorum: intIn(1, 1000, QUORUM_RULE)
        .meta({ description: 'Distinct sidecars that must open a service within one cooldown before the whole fleet does.', default: 1 })
        .optional(),
      sidecar: z
        .string(rule('must be a string'))
        .regex(/^[^\s]{1,128}$/, rule('must be 1-128 characters without spaces'))
        .meta({ description: "This sidecar's id in the fleet; default the host name (a pod's name)." })
        .optional(),
    },
    MAPPING,
  )
  .meta({ description: 'Share circuit state with other sidecars through Redis (docs/fleet.md); off unless set.' });

const service = z
  .strictObject(
    {
      url: url.optional(),
      endpoints: endpoints.optional(),
      discovery: discovery.optional(),
      routes: z
        .array(route, rule('must be a list of routes'))
        .meta({ description: 'Per-route call settings; first match wins, unmatched requests use the service keys (docs/routes.md).' })
        .optional(),
      ...tuning,
    },
    rule('must be a mapping with a url or endpoints'),
  )
  .meta({ description: 'One upstream: its URL (or endpoints) and any key of `defaults` to override.' });

/** Service names: `[a-z0-9][a-z0-9-_]*` (docs/configuration.md). */
export const SERVICE_NAME = /^[a-z0-9][a-z0-9_-]*$/;
const serviceName = z.string().regex(SERVICE_NAME, rule('service name must match [a-z0-9][a-z0-9-_]*'));

export const rawConfigSchema = z
  .strictObject(
    {
      listen: listen.optional(),
      admin: admin.optional(),
      clientTimeouts: clientTimeouts.optional(),
      shutdownGrace: duration('On SIGTERM/SIGINT, in-flight requests get this long to finish.', '10s').optional(),
      fleet: fleet.optional(),
      defaults: z.strictObject(tuning, MAPPING).meta({ description: 'Apply to every service unless it sets its own.' }).optional(),
      services: z
        .record(serviceName, service, rule('must be a mapping of service name to settings'))
        .meta({ description: 'Upstreams by name: requests to /svc/<name>/... go to that service.' }),
    },
    MAPPING,
  )
  .meta({ title: 'circuit-proxy configuration', description: 'circuit-proxy configuration (docs/configuration.md).' });
