import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { request, startProxy, startUpstream } from '../helpers.js';

const promtool = spawnSync('promtool', ['--version']).status === 0;

// .ci/run installs promtool (Debian package `prometheus`); on a machine without it the test says so.
test(
  'promtool check metrics reports nothing on our metrics, scraped mid-scenario (circuit open)',
  { skip: !promtool && 'promtool not installed (apt-get install prometheus)' },
  async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(500).end();
    });
    const p = await startProxy(
      `defaults: { threshold: 2, cooldown: 10s }\nservices:\n  product:\n    url: ${up.url}\n  cart:\n    url: ${up.url}\n`,
      { defaultMetrics: true },
    );
    try {
      for (let i = 0; i < 3; i++) await request(p.port, '/svc/product/x');
      await request(p.port, '/svc/unknown/x');
      const body = (await request(p.adminPort, '/metrics')).body;
      assert.match(body, /circuit_breaker_state\{service="product"\} 1/);
      const r = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
      const problems = `${r.stdout}${r.stderr}`
        .split('\n')
        .filter((l) => l.trim() !== '')
        // prom-client's default nodejs_* gauges end in _total: outside our control.
        .filter((l) => !/^nodejs_/.test(l));
      assert.deepEqual(problems, []);
    } finally {
      await p.close();
      await up.close();
    }
  },
);
