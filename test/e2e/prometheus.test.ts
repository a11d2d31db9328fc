/**
 * A real Prometheus server (Debian package `prometheus`, installed by .ci/run) scrapes the admin
 * port while a service goes down and comes back; its query API must show the state changes.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request, startProxy, startUpstream } from '../helpers.js';

const hasPrometheus = spawnSync('prometheus', ['--version']).status === 0;

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function query(port: number, promql: string): Promise<number | undefined> {
  const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`).catch(() => undefined);
  if (!r?.ok) return undefined;
  const body = (await r.json()) as { data: { result: Array<{ value: [number, string] }> } };
  const v = body.data.result[0]?.value[1];
  return v === undefined ? undefined : Number(v);
}

test(
  'Prometheus scrapes the admin port and sees closed -> open -> closed',
  { skip: !hasPrometheus && 'prometheus not installed (apt-get install prometheus)', timeout: 60_000 },
  async () => {
    let down = false;
    const up = await startUpstream((req, res) => {
      req.resume();
      if (down) req.socket.destroy();
      else res.end('ok');
    });
    const p = await startProxy(`defaults: { threshold: 2, cooldown: 2s }\nservices:\n  product:\n    url: ${up.url}\n`);
    const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-prom-'));
    const promPort = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global: { scrape_interval: 250ms, scrape_timeout: 200ms }\nscrape_configs:\n  - job_name: circuit-proxy\n    static_configs:\n      - targets: ['127.0.0.1:${p.adminPort}']\n`,
    );
    const prom = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { stdio: 'ignore' },
    );
    try {
      const state = () => query(promPort, 'circuit_breaker_state{service="product"}');
      await waitFor(async () => (await state()) === 0, 'Prometheus sees product closed', 20_000);
      down = true;
      for (let i = 0; i < 2; i++) assert.equal((await request(p.port, '/svc/product/x')).status, 502);
      assert.equal((await request(p.port, '/svc/product/x')).status, 503);
      await waitFor(async () => (await state()) === 1, 'Prometheus sees product open');
      assert.equal(await query(promPort, 'circuit_breaker_open_total{service="product"}'), 1);
      down = false;
      await p.nextState('product', 'half_open');
      assert.equal((await request(p.port, '/svc/product/x')).status, 200);
      await waitFor(async () => (await state()) === 0, 'Prometheus sees product closed again');
      assert.equal(await query(promPort, 'circuit_breaker_failures_total{service="product",reason="reset"}'), 2);
      // HALF_OPEN lasted only until the trial: the transition counters record it.
      assert.equal(await query(promPort, 'circuit_breaker_transitions_total{service="product",from="open",to="half_open"}'), 1);
      assert.equal(await query(promPort, 'circuit_breaker_transitions_total{service="product",from="half_open",to="closed"}'), 1);
      assert.equal(await query(promPort, 'max_over_time(circuit_breaker_state{service="product"}[1m])'), 1);
    } finally {
      prom.kill('SIGTERM');
      await new Promise((r) => prom.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
      await p.close();
      await up.close();
    }
  },
);

async function waitFor(check: () => Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
