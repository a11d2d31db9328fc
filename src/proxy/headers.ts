import type { IncomingHttpHeaders } from 'node:http';
import { isLoopback } from '../net.js';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) plus those that describe this hop only:
 * `proxy-authorization` is meant for a proxy, never for the upstream; `expect` is restated on
 * the first attempt's upstream request when it is `100-continue` (src/proxy/attempt.ts), any
 * other expectation is dropped; `trailer` in a request crashes http-proxy 1.18.1 (#1647).
 */
const HOP_BY_HOP: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'expect',
];
const RESPONSE_HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'x-request-id']);
/**
 * Lengths of every name the response filter may drop (the set above and `trailer`): a raw header
 * name of any other length is kept without being lower-cased. Names a `Connection` header lists
 * are checked whatever their length.
 */
const RESPONSE_DROP_LENGTHS = new Set([...RESPONSE_HOP_BY_HOP, 'trailer'].map((n) => n.length));
/** `Connection` values that name no header of their own beyond the hop-by-hop ones. */
const PLAIN_CONNECTION = /^\s*(?:keep-alive|close)\s*$/i;

/** Headers a `Connection:` list may not remove: framing and routing stay ours. */
const PROTECTED = new Set(['host', 'content-length', 'x-request-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/** More request header lines than this get 431 (Node would silently drop those past its own limit). */
export const MAX_HEADERS = 100;

/** A client's `X-Request-Id` when it is printable ASCII of sane length, else undefined. */
export function acceptableRequestId(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && REQUEST_ID.test(value) ? value : undefined;
}

/**
 * The client's `X-Request-Id` read from the raw header list (so a request answered without being
 * forwarded never builds `req.headers`): acceptable and sent once, else undefined.
 */
export function clientRequestId(raw: readonly string[]): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 12 && name.toLowerCase() === 'x-request-id') {
      if (found !== undefined) return undefined; // sent twice: Node would join them, with a space
      found = raw[i + 1]!;
    }
  }
  return acceptableRequestId(found);
}

function clientAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/**
 * Rewrites an incoming request's headers in place into what goes upstream.
 * - hop-by-hop headers and those named in `Connection` are removed;
 * - the body framing is re-stated (`transfer-encoding: chunked` when the client chunked; Node
 *   re-frames), so a body is never sent without framing;
 * - `X-Forwarded-For` gets the caller's address appended; `X-Forwarded-Proto`/`-Host` from a
 *   loopback caller (the application we are the sidecar of) are kept, from anyone else replaced
 *   (Envoy's sidecar convention: the local application is trusted, the network is not);
 * - `X-Request-Id` is set to `requestId`.
 */
export function prepareRequestHeaders(h: IncomingHttpHeaders, requestId: string, remoteAddress: string | undefined): void {
  const chunked = h['transfer-encoding'] !== undefined;
  const length = h['content-length'];
  const connection = h.connection;
  if (connection !== undefined) {
    for (const token of connection.split(',')) {
      const name = token.trim().toLowerCase();
      if (name !== '' && !PROTECTED.has(name)) delete h[name];
    }
  }
  for (const name of HOP_BY_HOP) if (h[name] !== undefined) delete h[name];
  if (chunked) {
    h['transfer-encoding'] = 'chunked';
    delete h['content-length'];
  } else if (length !== undefined) {
    h['content-length'] = length;
  }
  const trusted = isLoopback(remoteAddress);
  const prior = h['x-forwarded-for'];
  const addr = clientAddress(remoteAddress);
  // Node joins repeated X-Forwarded-For lines with ', ' (a string); the type allows a list.
  h['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${addr}` : addr;
  if (!trusted || h['x-forwarded-proto'] === undefined) h['x-forwarded-proto'] = 'http';
  if (!trusted || h['x-forwarded-host'] === undefined) {
    if (h.host !== undefined) h['x-forwarded-host'] = h.host;
    else delete h['x-forwarded-host'];
  }
  h['x-request-id'] = requestId;
}

/**
 * Whether a request has a body, from its prepared framing headers: none without
 * `Transfer-Encoding` and with no or a zero `Content-Length` (RFC 9112 §6.3; Node's parser agrees).
 */
export function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Filters an upstream response's raw header list (names as sent, duplicates kept) for the client:
 * hop-by-hop headers and those named in its `Connection` are dropped, `Trailer` is kept only when
 * trailers will really be forwarded, and our `X-Request-Id` is appended.
 */
export function responseHeaders(raw: readonly string[], connection: string | undefined, requestId: string, keepTrailer: boolean): string[] {
  const named =
    connection && !PLAIN_CONNECTION.test(connection) ? new Set(connection.split(',').map((t) => t.trim().toLowerCase())) : undefined;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (named !== undefined || RESPONSE_DROP_LENGTHS.has(name.length)) {
      const lower = name.toLowerCase();
      if (RESPONSE_HOP_BY_HOP.has(lower) || (lower === 'trailer' && !keepTrailer) || named?.has(lower)) continue;
    }
    out.push(name, raw[i + 1]!);
  }
  out.push('x-request-id', requestId);
  return out;
}

/**
 * Removes, in place, the hop-by-hop headers of a parsed response head (those of RFC 9110 §7.6.1,
 * `Trailer`, those its `Connection` names, the upstream's `X-Request-Id`): a WebSocket handshake's
 * answer, whose head http-proxy renders from this object. `upgrade`: a 101, which keeps
 * `Connection` and `Upgrade` (RFC 9110 §7.8).
 */
export function dropHopByHop(h: IncomingHttpHeaders, upgrade: boolean): void {
  const connection = h.connection;
  if (connection !== undefined && !upgrade) {
    for (const token of connection.split(',')) {
      const name = token.trim().toLowerCase();
      if (name !== '' && !PROTECTED.has(name)) delete h[name];
    }
  }
  for (const name of RESPONSE_HOP_BY_HOP) if (!upgrade || (name !== 'connection' && name !== 'upgrade')) delete h[name];
  delete h.trailer;
}
