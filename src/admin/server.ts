import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ServiceRegistry } from '../upstream/registry.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { sendProblem } from '../proxy/problem.js';
import { authorize } from './auth.js';
import { MAX_STREAMS, type LiveState } from './live.js';
import { STATUS_PAGE } from './status-page.js';
import type { Fleet } from '../fleet/fleet.js';

export interface AdminDeps {
  readonly registry: ServiceRegistry;
  readonly metrics: ProxyMetrics;
  readonly log: Logger;
  readonly token: string | undefined;
  /** True once config is loaded and both listeners are up; false while draining. */
  readonly isReady: () => boolean;
  /** Reloads the config file; throws ConfigError when the new file is invalid. */
  readonly reload?: () => unknown;
  /** History, per-second series and the event streams (status page). */
  readonly live: LiveState;
  /** Shared circuit state (docs/fleet.md): force actions with `?fleet=1` go to every sidecar. */
  readonly fleet?: Fleet | undefined;
}

const MAX_BODY = 4096;

/** The admin listener (docs/observability.md): health, metrics, breaker state, operator actions, reload. */
export function createAdminServer(deps: AdminDeps): Server {
  return createServer((req, res) => {
    handle(deps, req, res).catch((err: unknown) => {
      deps.log.error({ err }, 'admin request failed');
      if (!res.headersSent) sendProblem(req, res, { status: 500, title: 'Internal Server Error', detail: 'admin request failed' });
      else res.destroy();
    });
  });
}

async function handle(deps: AdminDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const [path = '/', query = ''] = (req.url ?? '/').split('?', 2);
  const method = req.method ?? 'GET';
  const get = method === 'GET' || method === 'HEAD';
  if (path === '/healthz') return get ? json(req, res, 200, { status: 'ok' }) : notAllowed(req, res, 'GET, HEAD');
  if (path === '/') {
    if (!get) return notAllowed(req, res, 'GET, HEAD');
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(STATUS_PAGE),
      'cache-control': 'no-store',
      // Self-contained: nothing is fetched from anywhere but this listener.
      'content-security-policy':
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
    });
    res.end(method === 'HEAD' ? undefined : STATUS_PAGE);
    return;
  }
  if (path === '/events') {
    if (method !== 'GET') return notAllowed(req, res, 'GET');
    if (!deps.live.openStream(req, res)) {
      return sendProblem(req, res, { status: 503, title: 'Service Unavailable', detail: `at most ${MAX_STREAMS} event streams at once` }, [
        'retry-after',
        '5',
      ]);
    }
    return;
  }
  if (path === '/readyz') {
    if (!get) return notAllowed(req, res, 'GET, HEAD');
    const ready = deps.isReady();
    return json(req, res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
  }
  if (path === '/metrics') {
    if (!get) return notAllowed(req, res, 'GET, HEAD');
    const text = await deps.metrics.metrics();
    res.writeHead(200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' });
    res.end(method === 'HEAD' ? undefined : text);
    return;
  }
  if (path === '/stats') {
    if (!get) return notAllowed(req, res, 'GET, HEAD');
    return json(req, res, 200, { services: deps.live.allStats() });
  }
  if (path === '/breakers') {
    if (!get) return notAllowed(req, res, 'GET, HEAD');
    return json(req, res, 200, { breakers: [...deps.registry.all()].map((b) => b.snapshot()) });
  }
  if (path === '/reload') {
    if (method !== 'POST') return notAllowed(req, res, 'POST');
    const auth = authorize(req, deps.token);
    if (!auth.ok) return refuse(req, res, auth.status, auth.detail);
    await drain(req);
    if (!deps.reload)
      return sendProblem(req, res, { status: 501, title: 'Not Implemented', detail: 'this proxy was not started from a config file' });
    try {
      const result = deps.reload();
      return json(req, res, 200, { reloaded: true, ...(result as object) });
    } catch (err) {
      if (err instanceof ConfigError)
        return json(
          req,
          res,
          400,
          { type: 'about:blank', title: 'Invalid config', status: 400, detail: err.message, problems: err.problems },
          'application/problem+json',
        );
      throw err;
    }
  }
  const m = /^\/breakers\/([^/]+)(?:\/(open|close|history))?$/.exec(path);
  if (m) {
    const breaker = deps.registry.get(safeDecode(m[1]!));
    const action = m[2];
    if (action === 'history') {
      if (!get) return notAllowed(req, res, 'GET, HEAD');
      if (!breaker) return sendProblem(req, res, { status: 404, title: 'Not Found', detail: `unknown service: ${m[1]}` });
      return json(req, res, 200, { name: breaker.name, transitions: deps.live.historyOf(breaker.name) });
    }
    if (action === undefined) {
      if (!get) return notAllowed(req, res, 'GET, HEAD');
      if (!breaker) return sendProblem(req, res, { status: 404, title: 'Not Found', detail: `unknown service: ${m[1]}` });
      return json(req, res, 200, breaker.snapshot());
    }
    if (method !== 'POST') return notAllowed(req, res, 'POST');
    const auth = authorize(req, deps.token);
    if (!auth.ok) return refuse(req, res, auth.status, auth.detail);
    if (!breaker) return sendProblem(req, res, { status: 404, title: 'Not Found', detail: `unknown service: ${m[1]}` });
    const body = await drain(req);
    // Force actions are this sidecar's unless asked for the whole fleet (docs/fleet.md).
    const wholeFleet = new URLSearchParams(query).get('fleet');
    if (wholeFleet !== null && wholeFleet !== '0' && wholeFleet !== '1')
      return sendProblem(req, res, { status: 400, title: 'Bad Request', detail: 'fleet must be 0 or 1' });
    if (wholeFleet === '1' && deps.fleet === undefined)
      return sendProblem(req, res, { status: 400, title: 'Bad Request', detail: 'fleet=1: this sidecar has no fleet configured' });
    const reason = readReason(body) ?? 'operator request';
    const tag = `${reason} (by ${auth.who})`;
    if (action === 'open') breaker.circuit.forceOpen(tag);
    else breaker.circuit.forceClose(tag);
    const published =
      wholeFleet === '1' && deps.fleet !== undefined
        ? await deps.fleet.force(breaker.name, action === 'open' ? 'open' : 'close', tag)
        : undefined;
    deps.log.warn(
      {
        service: breaker.name,
        action,
        who: auth.who,
        reason,
        ...(published !== undefined ? { fleet: published ? 'published' : 'not connected' } : {}),
      },
      `Operator forced ${breaker.name} ${action === 'open' ? 'open' : 'closed'}${published === true ? ' for the fleet' : ''}`,
    );
    return json(req, res, 200, {
      ...breaker.snapshot(),
      ...(published !== undefined
        ? { fleet: { published, ...(published ? {} : { detail: 'Redis not connected: applied on this sidecar only' }) } }
        : {}),
    });
  }
  sendProblem(req, res, {
    status: 404,
    title: 'Not Found',
    detail:
      'admin endpoints: / (status page) /events /stats /healthz /readyz /metrics /breakers /breakers/<name> /breakers/<name>/history /breakers/<name>/open|close /reload',
  });
}

function json(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : text);
}

function notAllowed(req: IncomingMessage, res: ServerResponse, allow: string): void {
  sendProblem(req, res, { status: 405, title: 'Method Not Allowed', detail: `use ${allow}` }, ['allow', allow]);
}

function refuse(req: IncomingMessage, res: ServerResponse, status: 401 | 403, detail: string): void {
  const title = status === 401 ? 'Unauthorized' : 'Forbidden';
  sendProblem(req, res, { status, title, detail }, status === 401 ? ['www-authenticate', 'Bearer'] : []);
}

/** Reads a small request body (the optional `{"reason": "..."}`); more than 4 KiB is cut off. */
async function drain(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) {
    if (text.length < MAX_BODY) text += String(chunk);
  }
  return text.slice(0, MAX_BODY);
}

function readReason(body: string): string | undefined {
  if (body.trim() === '') return undefined;
  try {
    const v = JSON.parse(body) as { reason?: unknown };
    return typeof v.reason === 'string' && v.reason.trim() !== '' ? v.reason.slice(0, 200) : undefined;
  } catch {
    return body.trim().slice(0, 200);
  }
}

/** Service names never need decoding, but a client may encode them; a malformed escape is no name. */
function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return '';
  }
}
