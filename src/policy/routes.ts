/**
 * Per-route call settings (docs/routes.md): which route a request takes, by method and by its raw
 * path after `/svc/<name>`. A path pattern is exact (`/orders`), may have `*` standing for one
 * whole segment, or ends in `/**` for a prefix (`/orders/**` matches `/orders` and everything
 * under it). Compiled once at load; pure, so the rules are tested from tables.
 */

/** One segment of a pattern: a literal, or `*` (any one segment, not empty). */
type Segment = string | typeof ANY;
const ANY = Symbol('*');

export interface PathPattern {
  /** As written in the config. */
  readonly source: string;
  readonly segments: readonly Segment[];
  /** Ends in `/**`: the segments are a prefix. */
  readonly prefix: boolean;
}

export interface RouteMatcher {
  /** Upper-case methods; undefined: any. */
  readonly methods: ReadonlySet<string> | undefined;
  /** Undefined: any path. */
  readonly path: PathPattern | undefined;
}

/** Characters a raw request path can hold (RFC 3986 pchar, `/`, and `%` of an escape). */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;

/** The pattern, or why it can never match a request path. */
export function compilePath(source: string): PathPattern | string {
  if (!source.startsWith('/')) return 'must start with / (paths are matched after /svc/<name>)';
  if (source.includes('?') || source.includes('#')) return 'matches the path only: no query or fragment, it could never match';
  if (!PATH_CHARS.test(source)) return 'holds a character a request path cannot carry (paths are matched raw, before decoding)';
  let body = source;
  let prefix = false;
  if (body === '/**') return { source, segments: [], prefix: true };
  if (body.endsWith('/**')) {
    prefix = true;
    body = body.slice(0, -3);
  }
  const parts = body.slice(1).split('/');
  const segments: Segment[] = [];
  for (const p of parts) {
    if (p === '*') segments.push(ANY);
    else if (p.includes('**')) return '** stands only at the end, as /**';
    else if (p.includes('*')) return '* stands for a whole segment, as /*/';
    else segments.push(p);
  }
  return { source, segments, prefix };
}

/** Does the raw path (after `/svc/<name>`, no query; `''` is `/`) match? No allocation. */
export function pathMatches(p: PathPattern, raw: string): boolean {
  const path = raw === '' ? '/' : raw;
  let at = 1; // after the leading '/'
  const segs = p.segments;
  if (segs.length === 0) return p.prefix || path === '/';
  for (let i = 0; i < segs.length; i++) {
    if (at > path.length) return false;
    let end = path.indexOf('/', at);
    if (end < 0) end = path.length;
    const s = segs[i]!;
    if (s === ANY) {
      if (end === at) return false; // `*` is one segment, not an empty one
    } else if (end - at !== s.length || !path.startsWith(s, at)) return false;
    at = end + 1;
  }
  // All segments matched; `at` is past the separator that followed the last one.
  if (at > path.length) return true; // the path ended exactly there
  return p.prefix;
}

export function routeMatches(m: RouteMatcher, method: string, raw: string): boolean {
  if (m.methods !== undefined && !m.methods.has(method)) return false;
  return m.path === undefined || pathMatches(m.path, raw);
}

/** Is every path `inner` matches also matched by `outer`? */
function pathWithin(inner: PathPattern | undefined, outer: PathPattern | undefined): boolean {
  if (outer === undefined) return true;
  if (inner === undefined) return outer.prefix && outer.segments.length === 0;
  const o = outer.segments;
  const n = inner.segments;
  if (outer.prefix) {
    if (n.length < o.length) return false;
  } else if (inner.prefix || n.length !== o.length) return false;
  for (let i = 0; i < o.length; i++) {
    if (o[i] === ANY) {
      if (n[i] === '') return false; // an empty literal segment is no `*`
      continue;
    }
    if (n[i] !== o[i]) return false;
  }
  return true;
}

/**
 * Does `earlier` take every request `later` would match (so `later` is dead config)? First match
 * wins, so such a pair is an error (docs/routes.md).
 */
export function hides(earlier: RouteMatcher, later: RouteMatcher): boolean {
  if (earlier.methods !== undefined) {
    if (later.methods === undefined) return false;
    for (const m of later.methods) if (!earlier.methods.has(m)) return false;
  }
  return pathWithin(later.path, earlier.path);
}
