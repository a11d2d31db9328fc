import type { FailureReason } from '../outcome.js';

/** What went wrong with an exchange, as the breaker and the client see it. */
export interface Classified {
  readonly reason: FailureReason;
  /** Short cause for logs and problem details, e.g. `connect ECONNREFUSED`. */
  readonly cause: string;
}

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH)/;
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EAI_NONAME',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ETIMEDOUT',
]);

/**
 * Classifies an upstream error raised before the response headers arrived. Errors of the connect
 * or DNS step (by code or by syscall) are `connect`; anything after a connection existed (a reset,
 * `socket hang up`) is `reset`.
 */
export function classifyUpstreamError(err: NodeJS.ErrnoException): Classified {
  const code = err.code ?? '';
  if (TLS_CODE.test(code)) return { reason: 'connect', cause: `tls ${code}` };
  if (CONNECT_CODES.has(code) || err.syscall === 'connect' || err.syscall === 'getaddrinfo') {
    const syscall = err.syscall ?? 'connect';
    const what = syscall === 'getaddrinfo' ? `dns ${code}` : `connect ${code || err.message}`;
    return { reason: 'connect', cause: what };
  }
  return { reason: 'reset', cause: `connection reset before response (${code || err.message})` };
}
