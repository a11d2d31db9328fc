/**
 * Layered settings (docs/configuration.md, "Precedence"): built-in < `defaults` < env `CB_*` <
 * the service's own keys (< a route's, for call keys). One rule for every key: the highest layer
 * that sets a key wins, whole (a rule such as `failureRate` is not merged key by key).
 */

/** One layer: where it stands in the file (for messages) and its keys as parsed. */
export interface Layer<T> {
  /** Key path of the layer in the file, e.g. `['defaults']` or `['services', 'product']`; empty for built-in and env. */
  readonly path: readonly string[];
  readonly values: Partial<T> | undefined;
}

/** Per key, the winning value and the layer it came from. */
export interface Resolved<T> {
  readonly values: Partial<T>;
  /** The file path of the key that won: where a problem with its value is reported. */
  where(key: keyof T & string): readonly string[];
}

/** Resolves `layers`, lowest first. */
export function resolveLayers<T extends object>(layers: readonly Layer<T>[]): Resolved<T> {
  const values: Partial<T> = {};
  const from = new Map<keyof T, Layer<T>>();
  for (const layer of layers) {
    if (layer.values === undefined) continue;
    for (const key of Object.keys(layer.values) as (keyof T)[]) {
      const v = layer.values[key];
      if (v === undefined) continue;
      values[key] = v;
      from.set(key, layer);
    }
  }
  return { values, where: (key) => [...(from.get(key)?.path ?? []), key] };
}
