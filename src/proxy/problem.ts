import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FallbackResponse } from '../config/types.js';

function problemJson(status: number, title: string, detail: string, service?: string): object {
  return { type: 'about:blank', title, status, detail, ...(service ? { service } : {}) };
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

  constructor(title: string, detail: string, service: string) {
    this.body = JSON.stringify(problemJson(503, title, detail, service));
    this.headers = problemHeaders(Buffer.byteLength(this.body), ['retry-after', '', 'x-request-id', '']);
  }

  /** The header list with both values filled in: shared and overwritten by the next call. */
  headersFor(retryAfterSeconds: number, requestId: string): string[] {
    const h = this.headers;
    h[h.length - 3] = String(retryAfterSeconds);
    h[h.length - 1] = requestId;
    return h;
  }

  send(req: IncomingMessage, res: ServerResponse, retryAfterSeconds: number, requestId: string): void {
    res.writeHead(503, this.headersFor(retryAfterSeconds, requestId));
    res.end(req.method === 'HEAD' ? undefined : this.body);
  }
}

/** The open circuit's 503 (docs/behaviour.md). */
export class OpenCircuitResponse extends CannedProblem {
  constructor(service: string) {
    super('Circuit open', `Circuit open for ${service}`, service);
  }
}

/** A full bulkhead's 503 (docs/load-shedding.md), for one in-flight count. */
export class ShedResponse extends CannedProblem {
  constructor(
    service: string,
    readonly inFlight: number,
    readonly maxConcurrent: number,
  ) {
    super('Too many requests in flight', `${service} has ${inFlight} requests in flight (maxConcurrent ${maxConcurrent})`, service);
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

  constructor(service: string, fallback: FallbackResponse) {
    this.status = fallback.status;
    this.body = fallback.body.toString('latin1');
    this.headers = [
      ...fallback.headers,
      'content-length',
      String(fallback.body.length),
      'x-circuit-fallback',
      service,
      'retry-after',
      '',
      'x-request-id',
      '',
    ];
  }

  send(req: IncomingMessage, res: ServerResponse, retryAfterSeconds: number, requestId: string): void {
    const h = this.headers;
    h[h.length - 3] = String(retryAfterSeconds);
    h[h.length - 1] = requestId;
    res.writeHead(this.status, h);
    if (req.method === 'HEAD') res.end();
    else res.end(this.body, 'latin1');
  }
}
