/**
 * The monitoring kit (examples/monitoring, docs/observability.md): the alerting rules pass
 * `promtool check rules` and their unit tests (`promtool test rules`), and every PromQL expression
 * of the Grafana dashboard returns data from a real Prometheus scraping a real proxy under traffic.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { test } from 'node:test';
import { request, ROOT, startProxy, startUpstream, until } from '../helpers.js';
import { hasPrometheus, hasPromtool, startPrometheus, waitFor } from '../prometheus.js';

const KIT = `${ROOT}examples/monitoring/`;

test(
  'alerting rules: promtool check rules and promtool test rules',
  { skip: !hasPromtool && 'promtool not installed (apt-get install prometheus)' },
  () => {
    const check = spawnSync('promtool', ['check', 'rules', 'alerts.yml'], { cwd: KIT, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /SUCCESS: 5 rules found/);
    const unit = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: KIT, encoding: 'utf8' });
    assert.equal(unit.status, 0, unit.stdout + unit.stderr);
    const rules = readFileSync(`${KIT}alerts.yml`, 'utf8');
    for (const alert of ['CircuitOpen', 'CircuitFlapping', 'HighRejectionRatio', 'BulkheadAtLimit', 'FleetDisconnected']) {
      assert.match(readFileSync(`${KIT}alerts.test.yml`, 'utf8'), new RegExp(`alertname: ${alert}`), `${alert} has a unit test`);
      assert.match(rules, new RegExp(`alert: ${alert}`));
    }
  },
);

test(
  'every dashboard query returns data from a real Prometheus scraping a real proxy',
  { skip: !hasPrometheus && 'prometheus not installed (apt-get install prometheus)', timeout: 90_000 },
  async () => {
    const dashboard = JSON.parse(readFileSync(`${KIT}grafana/circuit-proxy.json`, 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    const queries = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));
    assert.ok(queries.length >= 10);
    const held: ServerResponse[] = [];
    const up = await startUpstream((req, res) => {
      req.resume();
      if (req.url?.startsWith('/fail')) res.writeHead(500).end();
      else if (req.url?.startsWith('/hold')) held.push(res);
      else res.end('ok');
    });
    const p = await startProxy(
      `defaults: { threshold: 2, cooldown: 30s }\nservices:\n  product:\n    url: ${up.url}\n    maxConcurrent: 1\n  cart:\n    url: ${up.url}\n`,
    );
    const prom = await startPrometheus(p.adminPort);
    try {
      await waitFor(async () => (await prom.query('circuit_breaker_state{service="product"}')) === 0, 'the first scrape', 20_000);
      // A little traffic of every kind, spread over a few scrapes: successes, 5xx, an opening and
      // its rejections, a bulkhead rejection.
      const deadline = performance.now() + 3000;
      while (performance.now() < deadline) {
        await request(p.port, '/svc/product/ok');
        await request(p.port, '/svc/cart/ok');
        await new Promise((r) => setTimeout(r, 50));
      }
      const holding = request(p.port, '/svc/product/hold');
      await until(() => held.length === 1, 'one request held');
      assert.equal((await request(p.port, '/svc/product/ok')).status, 503, 'the bulkhead');
      held[0]!.end('ok');
      await holding;
      for (let i = 0; i < 4; i++) await request(p.port, '/svc/cart/fail');
      await new Promise((r) => setTimeout(r, 1500));
      const rateWindow = (e: string): string => e.replaceAll('$__rate_interval', '1m');
      const empty: string[] = [];
      await waitFor(
        async () => {
          empty.length = 0;
          for (const q of queries) if (!(await prom.vector(rateWindow(q.expr)))?.length) empty.push(`${q.panel}: ${q.expr}`);
          return empty.length === 0;
        },
        'every dashboard query returns data',
        20_000,
      ).catch(() => assert.deepEqual(empty, [], 'dashboard queries without data'));
      assert.equal(await prom.query('circuit_breaker_state{service="cart"}'), 1);
    } finally {
      await prom.stop();
      await p.close();
      await up.close();
    }
  },
);
