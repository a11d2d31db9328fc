import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Histogram, Registry, type Metric } from 'prom-client';
import { LatencyHistogram } from '../../src/metrics/latency.js';

const BOUNDS = [0.005, 0.025, 0.1, 0.5, 2.5, 10];
// On each bound (le is inclusive), between bounds, above the top one, and zero.
const OBSERVATIONS: Record<string, number[]> = {
  product: [0, 0.005, 0.0050001, 0.025, 0.07, 0.1, 0.5, 2.5, 9.99, 10, 10.5, 3600],
  cart: [0.001, 0.001, 0.3],
  idle: [],
};

async function ours(): Promise<string> {
  const registry = new Registry();
  const h = new LatencyHistogram('t_seconds', 'Test.', 'service', BOUNDS);
  registry.registerMetric(h as unknown as Metric);
  for (const [service, values] of Object.entries(OBSERVATIONS)) {
    const cell = h.create(service);
    for (const v of values) cell.observe(v);
  }
  return registry.metrics();
}

async function promClients(): Promise<string> {
  const registry = new Registry();
  const h = new Histogram({ name: 't_seconds', help: 'Test.', labelNames: ['service'], buckets: BOUNDS, registers: [registry] });
  for (const [service, values] of Object.entries(OBSERVATIONS)) {
    h.zero({ service });
    for (const v of values) h.observe({ service }, v);
  }
  return registry.metrics();
}

describe('LatencyHistogram', () => {
  test("exposes exactly what prom-client's Histogram exposes for the same observations", async () => {
    assert.equal(await ours(), await promClients());
  });

  test("JSON values match prom-client's Histogram too (labels in one object)", async () => {
    const pc = new Registry();
    const h = new Histogram({ name: 't_seconds', help: 'Test.', labelNames: ['service'], buckets: BOUNDS, registers: [pc] });
    const registry = new Registry();
    const l = new LatencyHistogram('t_seconds', 'Test.', 'service', BOUNDS);
    registry.registerMetric(l as unknown as Metric);
    h.observe({ service: 'a' }, 0.2);
    l.create('a').observe(0.2);
    const strip = (j: any[]) =>
      j.map((m) => ({ ...m, values: m.values.map((v: any) => ({ value: v.value, labels: v.labels, metricName: v.metricName })) }));
    assert.deepEqual(strip(await registry.getMetricsAsJSON()), strip(await pc.getMetricsAsJSON()));
  });

  test('remove drops the series; reset zeroes it; create replaces a cell with a zeroed one', async () => {
    const registry = new Registry();
    const h = new LatencyHistogram('t_seconds', 'Test.', 'service', BOUNDS);
    registry.registerMetric(h as unknown as Metric);
    h.create('a').observe(1);
    h.create('b').observe(1);
    h.remove('a');
    let text = await registry.metrics();
    assert.doesNotMatch(text, /service="a"/);
    assert.match(text, /t_seconds_count\{service="b"\} 1\n/);
    registry.resetMetrics();
    text = await registry.metrics();
    assert.match(text, /t_seconds_count\{service="b"\} 0\n/);
    assert.match(text, /t_seconds_sum\{service="b"\} 0\n/);
    h.create('b').observe(0.001);
    h.create('b');
    assert.match(await registry.metrics(), /t_seconds_count\{service="b"\} 0\n/);
  });
});
