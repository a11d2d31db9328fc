/**
 * A real Prometheus server (Debian package `prometheus`, installed by .ci/run) scrapes the admin
 * port while a service goes down and comes back; its query API must show the state changes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request, startProxy, startUpstream } from '../helpers.js';
import { hasPrometheus, startPrometheus, waitFor } from '../prometheus.js';

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
    const prom = await startPrometheus(p.adminPort);
    const query = (promql: string): Promise<number | undefined> => prom.query(promql);
    try {
      const state = () => query('circuit_breaker_state{service="product"}');
      await waitFor(async () => (await state()) === 0, 'Prometheus sees product closed', 20_000);
      down = true;
      for (let i = 0; i < 2; i++) assert.equal((await request(p.port, '/svc/product/x')).status, 502);
      assert.equal((await request(p.port, '/svc/product/x')).status, 503);
      await waitFor(async () => (await state()) === 1, 'Prometheus sees product open');
      assert.equal(await query('circuit_breaker_open_total{service="product"}'), 1);
      down = false;
      await p.nextState('product', 'half_open');
      assert.equal((await request(p.port, '/svc/product/x')).status, 200);
      await waitFor(async () => (await state()) === 0, 'Prometheus sees product closed again');
      assert.equal(await query('circuit_breaker_failures_total{service="product",reason="reset"}'), 2);
      // HALF_OPEN lasted only until the trial: the transition counters record it.
      assert.equal(await query('circuit_breaker_transitions_total{service="product",from="open",to="half_open"}'), 1);
      assert.equal(await query('circuit_breaker_transitions_total{service="product",from="half_open",to="closed"}'), 1);
      assert.equal(await query('max_over_time(circuit_breaker_state{service="product"}[1m])'), 1);
    } finally {
      await prom.stop();
      await p.close();
      await up.close();
    }
  },
);
