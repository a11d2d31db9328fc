/**
 * http-proxy 1.18.1 calls `util._extend` on every request (it reads the function once, when it is
 * loaded). Node 22 made that API a runtime deprecation (DEP0060): the first proxied request then
 * prints a DeprecationWarning on stderr, a non-JSON line in a sidecar's logs (http-proxy #1715;
 * the fix was never released). Imported by the forwarder before http-proxy, this puts back the
 * same function without the warning wrapper: `_extend`'s own code, copying the own enumerable
 * string keys of an object `source` onto `target`.
 */
import util from 'node:util';

export function extend<T extends object>(target: T, source: unknown): T {
  if (source === null || typeof source !== 'object') return target;
  const keys = Object.keys(source);
  for (let i = keys.length - 1; i >= 0; i--) {
    const key = keys[i]!;
    (target as Record<string, unknown>)[key] = (source as Record<string, unknown>)[key];
  }
  return target;
}

(util as unknown as { _extend: typeof extend })._extend = extend;
