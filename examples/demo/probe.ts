/**
 * The compose demo's health checks: `node dist/examples/demo/probe.js <url>...` exits 0 when every
 * URL answers 2xx within 2 s, else 1. A script rather than `node -e "<code>"`: podman's
 * Docker-compatible API splits a health check's arguments at spaces (containers/podman#26519), so
 * docker-compose.yml keeps every argument free of them.
 */
const urls = process.argv.slice(2);
if (urls.length === 0) {
  process.stderr.write('usage: probe.js <url>...\n');
  process.exit(2);
}
const results = await Promise.allSettled(urls.map((u) => fetch(u, { signal: AbortSignal.timeout(2000) })));
const bad = results.flatMap((r, i) => (r.status === 'fulfilled' && r.value.ok ? [] : [urls[i]]));
if (bad.length > 0) process.stderr.write(`unhealthy: ${bad.join(' ')}\n`);
process.exit(bad.length === 0 ? 0 : 1);
