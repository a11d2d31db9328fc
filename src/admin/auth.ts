import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isLoopback } from '../net.js';

export type AuthResult = { ok: true; who: string } | { ok: false; status: 401 | 403; detail: string };

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * Operator actions (docs/observability.md): with a token configured, `Authorization: Bearer <token>` is required
 * (compared in constant time, on digests so the length does not leak); without one, loopback only.
 */
export function authorize(req: IncomingMessage, token: string | undefined): AuthResult {
  const who = req.socket.remoteAddress ?? 'unknown';
  if (token === undefined || token === '') {
    return isLoopback(who)
      ? { ok: true, who }
      : { ok: false, status: 403, detail: 'admin actions are allowed from loopback only when no admin token is configured' };
  }
  const header = req.headers.authorization;
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!m) return { ok: false, status: 401, detail: 'missing bearer token' };
  if (!timingSafeEqual(digest(m[1]!), digest(token))) return { ok: false, status: 403, detail: 'invalid bearer token' };
  return { ok: true, who };
}
