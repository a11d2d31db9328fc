import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FallbackResponse, RejectRetryAfter } from '../config/types.js';

/**
 * The `type` of the proxy's own 503s, so a client tells them from an upstream's 503 (RFC 9457
 * §3.1.1; tag URIs, RFC 4151, name without pointing anywhere). docs/behaviour.md lists them.
 */
export const PROBLEM_TYPE = {
  circuitOpen: 'tag:circuit-proxy,2026:circuit-open',
  shed: 'tag:circuit-proxy,2026:shed',
} as const;

function problemJson(status: number, title: string, detail: string, service?: string, type = 'about:blank'): object {
  return { type, title, status, detail, ...(service ? { service } : {}) };
}

/** The Retry-After a rejected caller is told, from the seconds the proxy would say (docs/behaviour.md). */
export function toldRetryAfter(told: RejectRetryAfter, seconds: number): number {
  return typeof told === 'number' ? Math.min(told, seconds) : seconds;
}

/** The header slots a canned answer fills per response: Retry-After (unless `none`) and X-Request-Id, last. */
function fillableSlots(told: RejectRetryAfter): string[] {
  return told === 'none' ? ['x-request-id', ''] : ['retry-after', '', 'x-request-id', ''];
}

function fill(h: string[], told: RejectRetryAfter, retryAfterSeconds: number, requestId: string): string[] {
  if (told !== 'none') h[h.length - 3] = String(toldRetryAfter(told, retryAfterSeconds));
  h[h.length - 1] = requestId;
  return h;
}

/** Builds an RFC 9457 problem+json body. */
export function problemBody(status: number, title: string, detail: string, service?: string): Buffer {
  return Buffer.from(JSON.stringify(problemJson(status, title, detail, service)));
}

/** A problem+json response's header list, `extra` (a flat `[name, value, ...]` list) last. */
function problemHeaders(bodyBytes: number, extra: readonly string[]): string[] {
  return ['content-type', 'application/problem+json', 'content-length', String(bodyBytes), 'cache-control', 'no-store', ...extra];
}

/** An answer sent instead of forwarding: the open circuit's 503, the bulkhead's, or a configured fallback. */
export interface CannedResponse {
  readonly status: number;
  send(req: IncomingMessage, res: ServerResponse, retryAfterSeconds: number, requestId: string): void;
}

/**
 * A 503 problem sent over and over (the open circuit's, a full bulkhead's): body and header list
 * are built once, and only `Retry-After` and `X-Request-Id` are filled in per response (Node reads
 * the list synchronously in `writeHead` and keeps no reference to it).
 *
 * The body is kept as a string, not a Buffer: `end(string)` lets Node append it to the header
 * block as one chunk, where a Buffer body is a chunk of its own that Node's `writev` path has to
 * assemble in JavaScript (about 1% of a rejection's CPU, measured paired against a bare Node
 * server: docs/performance-notes.md, "The open path").
 */
export class CannedProblem implements CannedResponse {
  readonly status = 503;
  readonly body: string;
  private readonly headers: string[];

  constructor(
    title: string,
    detail: string,
    service: string,
    type: string,
    private readonly told: RejectRetryAfter,
    extra: readonly string[] = [],
  ) {
    this.body = JSON.stringify(problemJson(503, title, detail, service, type));
    this.headers = problemHeaders(Buffer.byteLength(this.body), [...extra, ...fillableSlots(told)]);
  }

  /** The header list with its values filled in: shared and overwritten by the next call. */
  headersFor(retryAfterSeconds: number, requestId: string): string[] {
    return fill(this.headers, this.told, retryAfterSeconds, requestId);
  }

  send(req: IncomingMessage, res: ServerResponse, retryAfterSeconds: number, requestId: string): void {
    res.writeHead(503, this.headersFor(retryAfterSeconds, requestId));
    res.end(req.method === 'HEAD' ? undefined : this.body);
  }
}

/** The open circuit's 503 (docs/behaviour.md), marked `X-Circuit-Open: <service>`. */
export class OpenCircuitResponse extends CannedProblem {
  constructor(service: string, told: RejectRetryAfter) {
    super('Circuit open', `Circuit open for ${service}`, service, PROBLEM_TYPE.circuitOpen, told, ['x-circuit-open', service]);
  }
}

/** A full bulkhead's 503 (docs/load-shedding.md), for one in-flight count. */
export class ShedResponse extends CannedProblem {
  constructor(
    service: string,
    readonly inFlight: number,
    readonly maxConcurrent: number,
    told: RejectRetryAfter,
  ) {
    super(
      'Too many requests in flight',
      `${service} has ${inFlight} requests in flight (maxConcurrent ${maxConcurrent})`,
      service,
      PROBLEM_TYPE.shed,
      told,
    );
  }
}

/** What a problem+json answer says (RFC 9457); `service` where it is about one. */
export interface Problem {
  readonly status: number;
  readonly title: string;
  readonly detail: string;
  readonly service?: string | undefined;
}

/**
 * Writes a problem+json response unless headers already went out (then the socket is destroyed,
 * which is the only honest signal left). Extra headers come as a flat `[name, value, ...]` list.
 */
export function sendProblem(req: IncomingMessage, res: ServerResponse, p: Problem, extra: readonly string[] = []): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = problemBody(p.status, p.title, p.detail, p.service);
  res.writeHead(p.status, problemHeaders(body.length, extra));
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * A service's configured fallback (docs/load-shedding.md): its status, headers and body, plus
 * `X-Circuit-Fallback: <service>` and the `Retry-After` the 503 would have carried.
 */
export class FallbackAnswer implements CannedResponse {
  readonly status: number;
  /** The body's bytes as a latin1 string: sent with the header block in one chunk (see CannedProblem). */
  private readonly body: string;
  private readonly headers: string[];

  constructor(
    service: string,
    fallback: FallbackResponse,
    private readonly told: RejectRetryAfter,
  ) {
    this.status = fallback.status;
    this.body = fallback.body.toString('latin1');
    this.headers = [
      ...fallback.headers,
      'content-length',
      String(fallback.body.length),
      'x-circuit-fallback',
      service,
      ...fillableSlots(told),
    ];
  }

  send(req: IncomingMessage, res: ServerResponse, retryAfterSeconds: number, requestId: string): void {
    res.writeHead(this.status, fill(this.headers, this.told, retryAfterSeconds, requestId));
    if (req.method === 'HEAD') res.end();
    else res.end(this.body, 'latin1');
  }
}
