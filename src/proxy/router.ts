/**
 * Maps a request target to a service (docs/behaviour.md, "Routing"). Pure: no I/O, no config access.
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
  if (hasControlByte(path)) {
    return {
      ok: false,
      status: 400,
      title: 'Bad Request',
      detail: 'path must not contain NUL, control bytes or overlong UTF-8, raw or percent-encoded',
    };
  }
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

/** Percent-decodes up to 3 times, so `%252e` is read as `.`: an upstream that decodes twice must not be fooled. */
function decodeRepeatedly(path: string): string {
  let s = path;
  for (let i = 0; i < 3; i++) {
    const next = s.replace(PERCENT_ESCAPE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    if (next === s) break;
    s = next;
  }
  return s;
}

/**
 * True when a segment is `.` or `..` once percent-decoded, reading `\` as `/`, or when its part
 * before the first `;` is: Tomcat, Jetty and Spring read `..;/` as `../` (path parameters).
 */
export function hasDotSegment(path: string): boolean {
  if (path.indexOf('.') < 0 && path.indexOf('%') < 0) return false;
  for (const seg of decodeRepeatedly(path).replaceAll('\\', '/').split('/')) {
    const semi = seg.indexOf(';');
    const name = semi < 0 ? seg : seg.slice(0, semi);
    if (name === '.' || name === '..') return true;
  }
  return false;
}

const CONTROL = /[\x00-\x1f\x7f]/;
/** Lead bytes of overlong UTF-8 forms (`%c0%ae` is an overlong `.`): never valid UTF-8, read as `.` by some decoders. */
const OVERLONG = /[\xc0\xc1]|\xe0[\x80-\x9f]|\xf0[\x80-\x8f]/;

/**
 * True when the path holds a control byte (NUL included) or an overlong UTF-8 form, raw or
 * percent-encoded (`%00`, `%0a`, `%2500`, `%c0%ae`): C-based upstreams cut strings at NUL, lax
 * decoders read overlong forms as `.` and `/`, and no legitimate path carries either.
 */
export function hasControlByte(path: string): boolean {
  if (CONTROL.test(path)) return true;
  if (path.indexOf('%') < 0) return OVERLONG.test(path);
  const decoded = decodeRepeatedly(path);
  return CONTROL.test(decoded) || OVERLONG.test(decoded);
}

/** Upstream path: the base URL's path with the rest appended, then the query verbatim. */
export function upstreamPath(basePath: string, rest: string, query: string): string {
  if (rest === '') return (basePath === '' ? '/' : basePath) + query;
  return basePath.endsWith('/') ? basePath.slice(0, -1) + rest + query : basePath + rest + query;
}
