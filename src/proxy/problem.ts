import type { IncomingMessage, ServerResponse } from 'node:http';

/** Builds an RFC 9457 problem+json body. */
export function problemBody(status: number, title: string, detail: string, service?: string): Buffer {
  return Buffer.from(JSON.stringify({ type: 'about:blank', title, status, detail, ...(service ? { service } : {}) }));
}

/**
 * Writes a problem+json response unless headers already went out (then the socket is destroyed,
 * which is the only honest signal left). Extra headers come as a flat `[name, value, ...]` list.
 */
export function sendProblemBody(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  body: Buffer,
  extra: readonly string[] = [],
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  res.writeHead(status, [
    'content-type',
    'application/problem+json',
    'content-length',
    String(body.length),
    'cache-control',
    'no-store',
    ...extra,
  ]);
  res.end(req.method === 'HEAD' ? undefined : body);
}

export function sendProblem(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  title: string,
  detail: string,
  service?: string,
  extra: readonly string[] = [],
): void {
  sendProblemBody(req, res, status, problemBody(status, title, detail, service), extra);
}
