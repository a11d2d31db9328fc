/**
 * Maps a request target to a service (SPEC §2). Pure: no I/O, no config access.
 * The rest of the path and the query are returned exactly as received (no decoding, `%2F` kept).
 */

/** Longer targets get 414 (the header-size limit answers 431 beyond 16 KiB). */
export const MAX_TARGET_LENGTH = 8192;

export type Route =
  | { readonly ok: true; readonly name: string; readonly rest: string; readonly query: string }
  | { readonly ok: false; readonly status: 400 | 404 | 414; readonly title: string; readonly detail: string };

const PREFIX = '/svc/';

export function route(target: string): Route {
  if (target.length > MAX_TARGET_LENGTH) {
    return { ok: false, status: 414, title: 'URI Too Long', detail: `request target longer than ${MAX_TARGET_LENGTH} bytes` };
  }
  if (target.charCodeAt(0) !== 47 /* / */) {
    return { ok: false, status: 400, title: 'Bad Request', detail: 'request target must be a path (origin-form), such as /svc/<name>/...' };
  }
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  if (hasDotSegment(path)) {
    return { ok: false, status: 400, title: 'Bad Request', detail: 'path must not contain "." or ".." segments' };
  }
  if (!path.startsWith(PREFIX)) {
    return { ok: false, status: 404, title: 'Not Found', detail: 'no route: use /svc/<name>/...' };
  }
  const slash = path.indexOf('/', PREFIX.length);
  const name = slash < 0 ? path.slice(PREFIX.length) : path.slice(PREFIX.length, slash);
  if (name === '') return { ok: false, status: 404, title: 'Not Found', detail: 'no service name in path: use /svc/<name>/...' };
  return { ok: true, name, rest: slash < 0 ? '' : path.slice(slash), query };
}

const PERCENT_ESCAPE = /%([0-9a-fA-F]{2})/g;

/**
 * True when a segment is `.` or `..` once percent-decoded, reading `\` as `/`.
 * Decodes repeatedly (up to 3 times) so `%252e%252e` is caught too: an upstream or a framework
 * that decodes twice must not be walked out of its base path.
 */
export function hasDotSegment(path: string): boolean {
  if (path.indexOf('.') < 0 && path.indexOf('%') < 0) return false;
  let s = path;
  for (let i = 0; i < 3; i++) {
    const next = s.replace(PERCENT_ESCAPE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    if (next === s) break;
    s = next;
  }
  for (const seg of s.replaceAll('\\', '/').split('/')) {
    if (seg === '.' || seg === '..') return true;
  }
  return false;
}

/** Upstream path: the base URL's path with the rest appended, then the query verbatim. */
export function upstreamPath(basePath: string, rest: string, query: string): string {
  if (rest === '') return (basePath === '' ? '/' : basePath) + query;
  return basePath.endsWith('/') ? basePath.slice(0, -1) + rest + query : basePath + rest + query;
}
