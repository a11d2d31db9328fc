/** A real Prometheus server (Debian package `prometheus`, installed by .ci/run) scraping an admin port, for tests. */
import { performance } from 'node:perf_hooks';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const hasPrometheus = spawnSync('prometheus', ['--version']).status === 0;
export const hasPromtool = spawnSync('promtool', ['--version']).status === 0;

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface RunningPrometheus {
  /** The query API's result vector for `promql`, or undefined when the query failed. */
  vector(promql: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }> | undefined>;
  /** The first sample's value, or undefined. */
  query(promql: string): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** Starts Prometheus on a free loopback port, scraping `127.0.0.1:<adminPort>` every 250 ms. */
export async function startPrometheus(adminPort: number): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-prom-'));
  const port = await freePort();
  writeFileSync(
    join(dir, 'prometheus.yml'),
    `global: { scrape_interval: 250ms, scrape_timeout: 200ms }\nscrape_configs:\n  - job_name: circuit-proxy\n    static_configs:\n      - targets: ['127.0.0.1:${adminPort}']\n`,
  );
  const prom = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: 'ignore' },
  );
  const vector: RunningPrometheus['vector'] = async (promql) => {
    const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`).catch(() => undefined);
    if (!r?.ok) return undefined;
    return ((await r.json()) as { data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }).data.result;
  };
  return {
    vector,
    async query(promql) {
      const v = (await vector(promql))?.[0]?.value[1];
      return v === undefined ? undefined : Number(v);
    },
    async stop() {
      prom.kill('SIGTERM');
      await new Promise((r) => prom.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` every 100 ms until it holds (bounded). */
export async function waitFor(check: () => Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = performance.now() + limitMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
