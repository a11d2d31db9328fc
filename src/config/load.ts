import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { formatDuration } from './duration.js';
import { expandEnv } from './env.js';
import { resolveLayers, type Layer } from './resolve.js';
import { compilePath, hides, type PathPattern, type RouteMatcher } from '../policy/routes.js';
import { rawConfigSchema, ROUTE_KEYS } from './schema.js';
import {
  BUILTIN,
  MAX_FALLBACK_BYTES,
  type AdmissionPolicy,
  type CallPolicy,
  type CircuitPolicy,
  type Config,
  type FallbackResponse,
  type FleetConfig,
  type ListenConfig,
  type ProxyListenConfig,
  type DiscoveryRule,
  type OutlierRule,
  type UpstreamTls,
  type RetryRule,
  type RouteConfig,
  type StatusRange,
  isFailureStatus,
  type ServiceConfig,
  type UpstreamPolicy,
} from './types.js';

/** Options that outrank the file: the CLI's `--port` and `--admin-port`. */
export interface ConfigOverrides {
  readonly port?: number;
  readonly adminPort?: number;
}

/** Reads, expands, validates and freezes a config file. Throws {@link ConfigError}. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env, overrides: ConfigOverrides = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError([{ path: '(file)', message: `cannot read ${file}: ${code}` }], file);
  }
  return parseConfig(text, env, overrides, file);
}

/**
 * Pure core of {@link loadConfig}: YAML text in, frozen Config out. One parser, the `yaml` library,
 * whose document keeps source ranges, so every problem is reported with its line.
 */
export function parseConfig(text: string, env: NodeJS.ProcessEnv, overrides: ConfigOverrides = {}, source?: string): Config {
  const { raw, lineOf } = readDocument(text, source);
  return build(raw, env, overrides, source, lineOf);
}

/** The `yaml` library's reading of the document, with a line lookup for key paths. */
function readDocument(text: string, source?: string): { raw: unknown; lineOf: LineOf } {
  const problems: ConfigProblem[] = [];
  const lines = new LineCounter();
  // yaml's own uniqueKeys check compares every key with every other (O(n²): 1,000 services took
  // ~150 ms); duplicates are found below with a Set instead.
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false, prettyErrors: false });
  for (const e of doc.errors) {
    const line = lines.linePos(e.pos[0]).line;
    problems.push({ path: '(yaml)', message: e.message.split('\n')[0]!, ...(line ? { line } : {}) });
  }
  visit(doc, {
    Map(_key, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const k = String(pair.key.value);
        if (seen.has(k)) {
          const line = pair.key.range ? lines.linePos(pair.key.range[0]).line : undefined;
          problems.push({ path: '(yaml)', message: `duplicate key ${show(k)}`, ...(line ? { line } : {}) });
        }
        seen.add(k);
      }
    },
  });
  if (problems.length) throw new ConfigError(problems, source);

  const lineOf = (path: readonly PropertyKey[]): number | undefined => {
    // Point at the key of a mapping entry (where a reader looks), else at the node itself.
    for (let n = path.length; n > 0; n--) {
      const parent = doc.getIn(path.slice(0, n - 1) as unknown[], true);
      const last = path[n - 1];
      let range: [number, number, number] | undefined | null;
      if (isMap(parent)) {
        const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(last));
        range = pair && isScalar(pair.key) ? pair.key.range : undefined;
      } else if (isSeq(parent)) {
        range = (parent.items[Number(last)] as { range?: [number, number, number] } | undefined)?.range;
      }
      if (range) return lines.linePos(range[0]).line;
    }
    const root = doc.contents as { range?: [number, number, number] } | null;
    return root?.range ? lines.linePos(root.range[0]).line : undefined;
  };

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // Aliases that would expand past the limit (a "billion laughs" document): a config problem.
    throw new ConfigError([{ path: '(yaml)', message: (err as Error).message }], source);
  }
  return { raw, lineOf };
}

/** Expands, validates and freezes a parsed tree; `lineOf` places problems in the source. */
function build(tree: unknown, env: NodeJS.ProcessEnv, overrides: ConfigOverrides, source: string | undefined, lineOf: LineOf): Config {
  const problems: ConfigProblem[] = [];
  const raw = expandTree(tree, env, [], problems, lineOf);
  const envDefaults = readEnvDefaults(env, problems);

  const parsed = rawConfigSchema.safeParse(raw ?? {}, { reportInput: true });
  if (!parsed.success) problems.push(...parsed.error.issues.flatMap((i) => toProblems(i, lineOf)));

  const rawServices = (raw as { services?: unknown } | null)?.services;
  if (parsed.success && rawServices !== null && typeof rawServices === 'object' && Object.keys(rawServices).length === 0) {
    problems.push(at(['services'], 'must list at least one service', lineOf));
  }
  if (problems.length || !parsed.success) throw new ConfigError(dedupe(problems), source);

  const data = parsed.data;
  const builtin: Layer<Tuning> = {
    path: [],
    values: {
      threshold: BUILTIN.threshold,
      cooldown: BUILTIN.cooldownMs,
      timeout: BUILTIN.timeoutMs,
      bodyIdleTimeout: BUILTIN.bodyIdleTimeoutMs,
      failureStatuses: BUILTIN.failureStatuses.map((r) => ({ ...r })),
      mode: 'enforce',
    },
  };
  const defaults: Layer<Tuning> = { path: ['defaults'], values: data.defaults };
  const fromEnv: Layer<Tuning> = { path: [], values: { threshold: envDefaults.threshold, cooldown: envDefaults.cooldownMs } };
  const services = new Map<string, ServiceConfig>();
  for (const [name, s] of Object.entries(data.services)) {
    const { url, endpoints, discovery, routes: routesRaw, ...own } = s;
    const r = resolveLayers<Tuning>([builtin, defaults, fromEnv, { path: ['services', name], values: own }]);
    const v = r.values as Tuning &
      Required<Pick<Tuning, 'threshold' | 'cooldown' | 'timeout' | 'bodyIdleTimeout' | 'failureStatuses' | 'mode'>>;
    const backoffMaxMs = v.backoff ? (v.backoff.max ?? BUILTIN.backoff.maxMs) : 0;
    if (v.backoff && backoffMaxMs < v.cooldown) {
      // Checked after precedence: the cooldown in force may come from env CB_COOLDOWN_SECONDS.
      problems.push(
        at(
          [...r.where('backoff'), 'max'],
          `must be at least the cooldown of ${name} (${formatDuration(v.cooldown)}), got ${formatDuration(backoffMaxMs)}`,
          lineOf,
        ),
      );
    }
    const call: CallPolicy = Object.freeze({
      timeoutMs: v.timeout,
      bodyIdleTimeoutMs: v.bodyIdleTimeout,
      failureStatuses: Object.freeze(v.failureStatuses.map((x) => Object.freeze({ ...x }))),
      slowCallMs: v.slowCalls?.duration,
      fallback: readFallback(r.where('fallback'), v.fallback, source, problems, lineOf),
      retries: readRetries(name, r.where('retries'), v.retries, v.failureStatuses, problems, lineOf),
      clientBodyIdleMs: undefined,
      streamIdleTimeoutMs: v.streamIdleTimeout,
      streamContentTypes: Object.freeze(v.streamContentTypes ?? ['text/event-stream']),
      rejectRetryAfter:
        typeof v.rejectRetryAfter === 'number' ? Math.max(1, Math.ceil(v.rejectRetryAfter / 1000)) : (v.rejectRetryAfter ?? 'cooldown'),
    });
    const routes = readRoutes(name, routesRaw, call, v.slowCalls !== undefined, source, problems, lineOf);
    const circuit: CircuitPolicy = Object.freeze({
      threshold: v.threshold,
      cooldownMs: v.cooldown,
      failureRate: v.failureRate ? Object.freeze(windowRule(v.failureRate)) : undefined,
      slowCalls: v.slowCalls ? Object.freeze({ durationMs: v.slowCalls.duration, ...windowRule(v.slowCalls) }) : undefined,
      backoff: v.backoff
        ? Object.freeze({
            multiplier: v.backoff.multiplier ?? BUILTIN.backoff.multiplier,
            maxMs: backoffMaxMs,
            jitter: v.backoff.jitter ?? BUILTIN.backoff.jitter,
          })
        : undefined,
      halfOpen: Object.freeze({
        trials: v.halfOpen?.trials ?? BUILTIN.halfOpen.trials,
        queue: v.halfOpen?.queue ?? BUILTIN.halfOpen.queue,
        maxWaitMs: v.halfOpen?.maxWait ?? BUILTIN.halfOpen.maxWaitMs,
      }),
      retryAfter: v.retryAfter?.honor ? Object.freeze({ maxMs: v.retryAfter.max ?? BUILTIN.retryAfterMaxMs }) : undefined,
    });
    const admission: AdmissionPolicy = Object.freeze({ maxConcurrent: v.maxConcurrent, mode: v.mode });
    const tls = readTls(name, r.where('tls'), v.tls, url ?? endpoints?.[0], source, problems, lineOf);
    const upstream = readUpstream(['services', name], { url, endpoints, discovery }, v, tls, problems, lineOf);
    if (upstream === undefined) continue;
    const shown = url ?? (endpoints ?? []).join(', ');
    services.set(name, Object.freeze({ name, url: shown, target: upstream.endpoints[0]!, upstream, call, routes, circuit, admission }));
  }
  if (problems.length) throw new ConfigError(dedupe(problems), source);
  const listen: ProxyListenConfig = Object.freeze({
    host: data.listen?.host ?? BUILTIN.listen.host,
    port: overrides.port ?? data.listen?.port ?? BUILTIN.listen.port,
    maxConnections: data.listen?.maxConnections ?? BUILTIN.listen.maxConnections,
  });
  const admin: ListenConfig = Object.freeze({
    host: data.admin?.host ?? BUILTIN.admin.host,
    port: overrides.adminPort ?? data.admin?.port ?? BUILTIN.admin.port,
  });
  return Object.freeze({
    listen,
    admin,
    clientTimeouts: Object.freeze({
      headerMs: data.clientTimeouts?.header ?? BUILTIN.clientTimeouts.headerMs,
      bodyIdleMs: data.clientTimeouts?.bodyIdle ?? BUILTIN.clientTimeouts.bodyIdleMs,
      ...(data.clientTimeouts?.tunnelIdle !== undefined ? { tunnelIdleMs: data.clientTimeouts.tunnelIdle } : {}),
    }),
    shutdownGraceMs: data.shutdownGrace ?? BUILTIN.shutdownGraceMs,
    services,
    ...(data.fleet !== undefined ? { fleet: readFleet(data.fleet) } : {}),
  });
}

/** `fleet:` with its defaults: both shared, quorum 1, the host name as the sidecar's id (docs/fleet.md). */
function readFleet(raw: NonNullable<z.infer<typeof rawConfigSchema>['fleet']>): FleetConfig {
  const share = raw.share ?? ['open', 'trial'];
  return Object.freeze({
    redis: raw.redis,
    key: raw.key,
    shareOpen: share.includes('open'),
    shareTrial: share.includes('trial'),
    quorum: raw.quorum ?? 1,
    sidecar: raw.sidecar ?? hostname(),
  });
}

type LineOf = (path: readonly PropertyKey[]) => number | undefined;

/** The keys a service and `defaults` share, as parsed (durations in ms). */
type Tuning = NonNullable<z.infer<typeof rawConfigSchema>['defaults']>;

type RawFallback = { status?: number; headers?: Record<string, string>; body?: string; bodyFile?: string };

/** What `failureRate` and `slowCalls` share: the ratio that trips, over how many outcomes, in what window. */
function windowRule(rule: { threshold: number; minRequests?: number; window?: number }): {
  ratio: number;
  minRequests: number;
  windowMs: number;
} {
  return { ratio: rule.threshold, minRequests: rule.minRequests ?? BUILTIN.minRequests, windowMs: rule.window ?? BUILTIN.windowMs };
}

/** `retries` with its defaults filled in (docs/retries.md); undefined when off. */
function readRetries(
  name: string,
  path: readonly PropertyKey[],
  raw: Tuning['retries'],
  failureStatuses: readonly StatusRange[],
  problems: ConfigProblem[],
  lineOf: LineOf,
): RetryRule | undefined {
  if (raw === undefined) return undefined;
  const b = BUILTIN.retries;
  const rule: RetryRule = Object.freeze({
    attempts: raw.attempts ?? b.attempts,
    on: Object.freeze([...(raw.on ?? b.on)]),
    baseMs: raw.backoff?.base ?? b.baseMs,
    maxMs: raw.backoff?.max ?? b.maxMs,
    budgetRatio: raw.budget?.ratio ?? b.budgetRatio,
    minPerSecond: raw.budget?.minPerSecond ?? b.minPerSecond,
    bufferBytes: raw.bufferBytes ?? b.bufferBytes,
  });
  rule.on.forEach((x, i) => {
    // A retried answer is a failed attempt for the circuit and the endpoint: it must count as one.
    if (typeof x === 'number' && !isFailureStatus(failureStatuses, x)) {
      problems.push(at([...path, 'on', i], `${x} is not one of the failureStatuses of ${name}: only a failure is retried`, lineOf));
    }
  });
  if (rule.maxMs < rule.baseMs) {
    problems.push(
      at(
        [...path, 'backoff', 'max'],
        `must be at least backoff.base (${formatDuration(rule.baseMs)}), got ${formatDuration(rule.maxMs)}`,
        lineOf,
      ),
    );
  }
  return rule.attempts === 0 ? undefined : rule;
}

type RawRoute = NonNullable<NonNullable<z.infer<typeof rawConfigSchema>['services'][string]['routes']>>[number];

/**
 * A service's routes (docs/routes.md): each pattern compiled, each route's call policy made from
 * the service's with the route's keys in their place, and a route that an earlier one hides
 * (first match wins) refused with both lines.
 */
function readRoutes(
  name: string,
  raw: readonly RawRoute[] | undefined,
  call: CallPolicy,
  hasSlowCallRule: boolean,
  source: string | undefined,
  problems: ConfigProblem[],
  lineOf: LineOf,
): readonly RouteConfig[] {
  if (raw === undefined) return Object.freeze([]);
  const out: RouteConfig[] = [];
  const names = new Set<string>();
  /** Routes whose pattern did not compile: never said to hide another. */
  const broken = new Set<number>();
  raw.forEach((r, i) => {
    const path = ['services', name, 'routes', i];
    let pattern: PathPattern | undefined;
    if (r.match.path !== undefined) {
      const p = compilePath(r.match.path);
      if (typeof p === 'string') {
        problems.push(at([...path, 'match', 'path'], `${p}, got ${show(r.match.path)}`, lineOf));
        broken.add(i);
      } else pattern = p;
    }
    const match: RouteMatcher = Object.freeze({ methods: r.match.methods ? new Set(r.match.methods) : undefined, path: pattern });
    for (let j = 0; j < out.length; j++) {
      if (broken.has(i) || broken.has(j) || !hides(out[j]!.match, match)) continue;
      const line = lineOf(['services', name, 'routes', j]);
      problems.push(
        at(path, `is hidden by routes.${j}${line ? ` (line ${line})` : ''}: every request it matches takes that route first`, lineOf),
      );
    }
    const label = r.name ?? String(i);
    if (names.has(label)) problems.push(at([...path, 'name'], `names another route too: ${show(label)}`, lineOf));
    names.add(label);
    if (r.slowCalls !== undefined && !hasSlowCallRule) {
      problems.push(
        at([...path, 'slowCalls'], `needs the slowCalls rule of ${name}: it counts the slow calls this duration marks`, lineOf),
      );
    }
    const failureStatuses = r.failureStatuses ? Object.freeze(r.failureStatuses.map((x) => Object.freeze({ ...x }))) : call.failureStatuses;
    const routeCall: CallPolicy = Object.freeze({
      timeoutMs: r.timeout ?? call.timeoutMs,
      bodyIdleTimeoutMs: call.bodyIdleTimeoutMs,
      failureStatuses,
      slowCallMs: r.slowCalls?.duration ?? call.slowCallMs,
      fallback: r.fallback ? readFallback([...path.map(String), 'fallback'], r.fallback, source, problems, lineOf) : call.fallback,
      retries: r.retries ? readRetries(name, [...path, 'retries'], r.retries, failureStatuses, problems, lineOf) : call.retries,
      clientBodyIdleMs: r.clientTimeouts?.bodyIdle ?? call.clientBodyIdleMs,
      streamIdleTimeoutMs: call.streamIdleTimeoutMs,
      streamContentTypes: call.streamContentTypes,
      rejectRetryAfter: call.rejectRetryAfter,
    });
    out.push(Object.freeze({ name: label, match, call: routeCall }));
  });
  return Object.freeze(out);
}

interface RawTarget {
  url?: string;
  endpoints?: string[];
  discovery?: { dns: boolean; refresh?: number; servers?: string[] };
}

/**
 * Where a service's requests go (docs/endpoints.md): `url` or `endpoints`, optionally DNS
 * discovery on `url`'s host name, the balancer and the outlier rule. Endpoints share scheme and
 * base path: what varies is the address.
 */
function readUpstream(
  path: readonly string[],
  raw: RawTarget,
  v: Tuning,
  tls: UpstreamTls | undefined,
  problems: ConfigProblem[],
  lineOf: LineOf,
): UpstreamPolicy | undefined {
  if (raw.url !== undefined && raw.endpoints !== undefined) {
    problems.push(at([...path, 'endpoints'], 'url and endpoints together: set one', lineOf));
    return undefined;
  }
  const list = raw.endpoints ?? (raw.url !== undefined ? [raw.url] : []);
  if (list.length === 0) {
    problems.push(at([...path, 'url'], 'is required (or endpoints: a list of URLs)', lineOf));
    return undefined;
  }
  const urls = list.map((u) => new URL(u));
  const first = urls[0]!;
  const before = problems.length;
  const seen = new Set<string>();
  urls.forEach((u, i) => {
    const where = [...path, 'endpoints', i];
    if (u.protocol !== first.protocol) {
      problems.push(at(where, `must use the scheme of endpoints.0 (${first.protocol}), got ${show(list[i])}`, lineOf));
    } else if (u.pathname !== first.pathname) {
      problems.push(at(where, `must have the base path of endpoints.0 (${first.pathname}), got ${show(list[i])}`, lineOf));
    } else if (seen.has(u.host)) {
      problems.push(at(where, `lists ${u.host} twice`, lineOf));
    }
    seen.add(u.host);
  });
  let discovery: DiscoveryRule | undefined;
  const d = raw.discovery;
  if (d?.dns) {
    const host = first.hostname.replace(/^\[|\]$/g, '');
    if (raw.url === undefined) {
      problems.push(at([...path, 'discovery'], 'needs url (whose host name is resolved), not endpoints', lineOf));
    } else if (isIP(host) !== 0) {
      problems.push(at([...path, 'discovery', 'dns'], `needs a host name in url, got the address ${host}`, lineOf));
    } else {
      discovery = Object.freeze({
        host,
        refreshMs: d.refresh ?? BUILTIN.discoveryRefreshMs,
        servers: Object.freeze([...(d.servers ?? [])]),
      });
    }
  }
  let outlier: OutlierRule | undefined;
  const o = v.outlier;
  if (o !== undefined) {
    const ejectionTimeMs = o.ejectionTime ?? BUILTIN.outlier.ejectionTimeMs;
    const maxEjectionTimeMs = o.maxEjectionTime ?? Math.max(BUILTIN.outlier.maxEjectionTimeMs, ejectionTimeMs);
    if (maxEjectionTimeMs < ejectionTimeMs) {
      problems.push(
        at(
          [...path, 'outlier', 'maxEjectionTime'],
          `must be at least ejectionTime (${formatDuration(ejectionTimeMs)}), got ${formatDuration(maxEjectionTimeMs)}`,
          lineOf,
        ),
      );
    }
    outlier = Object.freeze({
      consecutiveFailures: o.consecutiveFailures ?? BUILTIN.outlier.consecutiveFailures,
      failureRate: o.failureRate ? Object.freeze(windowRule(o.failureRate)) : undefined,
      ejectionTimeMs,
      maxEjectionTimeMs,
      maxEjectedPercent: o.maxEjectedPercent ?? BUILTIN.outlier.maxEjectedPercent,
    });
  }
  if (problems.length > before) return undefined;
  return Object.freeze({
    endpoints: Object.freeze(urls),
    discovery,
    balance: v.balance ?? 'round-robin',
    outlier,
    tls,
  });
}

type RawTls = NonNullable<Tuning['tls']>;

/**
 * A service's `tls:` (docs/configuration.md, "TLS to upstreams"): its files read now (at load and
 * at each reload), relative to the config file, and checked by building the TLS context Node will
 * use, so a bad PEM or a key that is not the certificate's is a config error with its key path.
 * Under `defaults` it applies to the https services only.
 */
function readTls(
  service: string,
  path: readonly (string | number)[],
  raw: RawTls | undefined,
  firstUrl: string | undefined,
  source: string | undefined,
  problems: ConfigProblem[],
  lineOf: LineOf,
): UpstreamTls | undefined {
  if (raw === undefined) return undefined;
  const https = firstUrl !== undefined && firstUrl.startsWith('https:');
  if (!https) {
    if (path[0] === 'services') problems.push(at(path, `needs an https url: ${service} is not https`, lineOf));
    return undefined;
  }
  const before = problems.length;
  if ((raw.cert === undefined) !== (raw.key === undefined)) {
    problems.push(
      at([...path, raw.cert === undefined ? 'cert' : 'key'], `is required with ${raw.cert === undefined ? 'key' : 'cert'}`, lineOf),
    );
  }
  const hash = createHash('sha256');
  const read = (key: 'ca' | 'cert' | 'key'): Buffer | undefined => {
    const file = raw[key];
    if (file === undefined) return undefined;
    try {
      const bytes = readFileSync(resolve(source ? dirname(source) : '.', file));
      hash.update(`${key}:`).update(bytes);
      return bytes;
    } catch (e) {
      problems.push(at([...path, key], `cannot read ${show(file)}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, lineOf));
      return undefined;
    }
  };
  const ca = read('ca');
  const cert = read('cert');
  const key = read('key');
  // Node skips what is not PEM in a CA list without a word: a file with no certificate is an error here.
  for (const [k, bytes, marker] of [
    ['ca', ca, 'CERTIFICATE'],
    ['cert', cert, 'CERTIFICATE'],
    ['key', key, 'PRIVATE KEY'],
  ] as const) {
    if (
      bytes !== undefined &&
      !bytes.includes(`-----BEGIN ${marker}`) &&
      !(k === 'key' && /-----BEGIN [A-Z]+ PRIVATE KEY/.test(bytes.toString('latin1')))
    ) {
      problems.push(at([...path, k], `is not usable: ${show(raw[k])} has no PEM ${marker.toLowerCase()}`, lineOf));
    }
  }
  if (problems.length > before) return undefined;
  const minVersion = raw.minVersion ?? 'TLSv1.2';
  try {
    createSecureContext({ ca, cert, key, minVersion });
  } catch (e) {
    const msg = (e as Error).message;
    const which =
      /key/i.test(msg) && key !== undefined ? 'key' : /cert/i.test(msg) && cert !== undefined ? 'cert' : ca !== undefined ? 'ca' : 'cert';
    problems.push(at([...path, which], `is not usable: ${msg}`, lineOf));
    return undefined;
  }
  hash.update(`servername:${raw.servername ?? ''}|min:${minVersion}`);
  return Object.freeze({
    ...(ca ? { ca } : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(raw.servername ? { servername: raw.servername } : {}),
    minVersion,
    fingerprint: hash.digest('hex'),
  });
}

/** A fallback answer, its body read from `bodyFile` (relative to the config file) and bounded. */
function readFallback(
  path: readonly string[],
  raw: RawFallback | undefined,
  source: string | undefined,
  problems: ConfigProblem[],
  lineOf: LineOf,
): FallbackResponse | undefined {
  if (raw === undefined) return undefined;
  if (raw.body !== undefined && raw.bodyFile !== undefined) {
    problems.push(at([...path, 'bodyFile'], 'body and bodyFile together: set one', lineOf));
    return undefined;
  }
  let body = Buffer.from(raw.body ?? '');
  if (raw.bodyFile !== undefined) {
    const file = resolve(source ? dirname(source) : '.', raw.bodyFile);
    try {
      body = readFileSync(file);
    } catch (err) {
      problems.push(at([...path, 'bodyFile'], `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, lineOf));
      return undefined;
    }
  }
  if (body.length > MAX_FALLBACK_BYTES) {
    problems.push(
      at([...path, raw.bodyFile !== undefined ? 'bodyFile' : 'body'], `must be at most 64 KiB, got ${body.length} bytes`, lineOf),
    );
    return undefined;
  }
  const headers: string[] = [];
  for (const [name, value] of Object.entries(raw.headers ?? {})) {
    const lower = name.toLowerCase();
    if (lower === 'content-length' || lower === 'transfer-encoding' || lower === 'connection') {
      problems.push(at([...path, 'headers', name], 'is set by the proxy', lineOf));
    } else if (/[^\t\x20-\x7e\x80-\xff]/.test(value)) {
      problems.push(at([...path, 'headers', name], 'must be a header value without control characters', lineOf));
    } else {
      headers.push(name, value);
    }
  }
  return Object.freeze({ status: raw.status ?? 200, headers: Object.freeze(headers), body });
}

function at(path: readonly PropertyKey[], message: string, lineOf: LineOf): ConfigProblem {
  const line = lineOf(path);
  return { path: path.map(String).join('.') || '(root)', message, ...(line ? { line } : {}) };
}

function toProblems(issue: z.core.$ZodIssue, lineOf: LineOf): ConfigProblem[] {
  if (issue.code === 'unrecognized_keys') {
    // Under a route: the service's own keys are refused with the reason (one circuit per service).
    const p = issue.path;
    const inRoute = p.length >= 4 && p[0] === 'services' && p[2] === 'routes';
    return issue.keys.map((k) =>
      at(
        [...p, k],
        inRoute
          ? `is not a route setting: a route may set only ${ROUTE_KEYS.join(', ')}; the circuit, its rules, the bulkhead and the endpoints are the service's (docs/routes.md)`
          : 'unknown key',
        lineOf,
      ),
    );
  }
  if (issue.code === 'invalid_key') {
    // A record key (a service name) that fails its rule: the rule is the nested issue's message.
    const rule = issue.issues[0]?.message ?? issue.message;
    return [at(issue.path, `${rule}, got ${show(issue.path[issue.path.length - 1])}`, lineOf)];
  }
  const input = (issue as { input?: unknown }).input;
  const message = input === undefined ? 'is required' : `${issue.message}, got ${show(input)}`;
  return [at(issue.path, message, lineOf)];
}

/** `${VAR}` expansion over every string of the parsed tree. */
function expandTree(node: unknown, env: NodeJS.ProcessEnv, path: PropertyKey[], problems: ConfigProblem[], lineOf: LineOf): unknown {
  if (typeof node === 'string') {
    if (!node.includes('${')) return node;
    const { value, missing } = expandEnv(node, env);
    for (const name of missing)
      problems.push(at(path, `environment variable ${name} is not set (use \${${name}:-default} for a fallback)`, lineOf));
    return retype(value);
  }
  if (Array.isArray(node)) return node.map((v, i) => expandTree(v, env, [...path, i], problems, lineOf));
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = expandTree(v, env, [...path, k], problems, lineOf);
    return out;
  }
  return node;
}

/** An expanded `${VAR}` becomes a number when it reads as one, so `threshold: ${T:-3}` works. */
function retype(value: string): unknown {
  return /^-?\d+(?:\.\d+)?$/.test(value.trim()) ? Number(value) : value;
}

/** Env `CB_THRESHOLD` and `CB_COOLDOWN_SECONDS` (decimals allowed: `0.2` is 200 ms). */
function readEnvDefaults(env: NodeJS.ProcessEnv, problems: ConfigProblem[]): { threshold?: number; cooldownMs?: number } {
  const out: { threshold?: number; cooldownMs?: number } = {};
  const t = env.CB_THRESHOLD;
  if (t !== undefined && t !== '') {
    if (/^\d+$/.test(t.trim()) && Number(t) >= 1) out.threshold = Number(t);
    else problems.push({ path: '(env) CB_THRESHOLD', message: `must be an integer ≥ 1, got ${show(t)}` });
  }
  const c = env.CB_COOLDOWN_SECONDS;
  if (c !== undefined && c !== '') {
    const ms = /^\d+(?:\.\d+)?$/.test(c.trim()) ? Math.round(Number(c) * 1000) : NaN;
    if (ms >= 1 && ms <= 2_147_483_647) out.cooldownMs = ms;
    else
      problems.push({ path: '(env) CB_COOLDOWN_SECONDS', message: `must be a number of seconds > 0 (decimals allowed), got ${show(c)}` });
  }
  return out;
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'a list' : 'a mapping';
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return typeof value; // undefined (nothing else comes out of parsed YAML)
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.path}\0${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
