/**
 * An upstream's `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as milliseconds
 * from `nowEpochMs`, clamped to [1 s, maxMs]; undefined when absent or unreadable.
 */
export function retryAfterMs(value: string | string[] | undefined, nowEpochMs: number, maxMs: number): number | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.trim();
  let ms: number;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const at = Date.parse(v);
    if (Number.isNaN(at) || !/[a-z]/i.test(v)) return undefined;
    ms = at - nowEpochMs;
  }
  return Math.min(Math.max(ms, 1000), maxMs);
}
