import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Gauge, Registry, type Metric } from 'prom-client';
import { LabelCache, NO_LABELS, SampledFamily, type Labels } from '../../src/metrics/family.js';
import { parseExposition } from '../prom-text.js';

// Service names with characters the exposition format escapes.
const SERVICES = ['product', 'we"ird\\name', 'two\nlines'];
const COUNTS: Record<string, Record<string, number>> = {
  product: { '200': 7, '503': 0 },
  'we"ird\\name': { '200': 1, '502': 3 },
  'two\nlines': {},
};

/** Samples as sorted strings: label order inside a sample is free in the format. */
function normalized(text: string): string[] {
  const e = parseExposition(text);
  return [
    ...[...e.types].map(([n, t]) => `TYPE ${n} ${t}`),
    ...[...e.help].map(([n, h]) => `HELP ${n} ${h}`),
    ...e.samples.map((s) => `${s.name} ${JSON.stringify(Object.entries(s.labels).sort())} ${s.value}`),
  ].sort();
}

describe('SampledFamily', () => {
  test("renders what prom-client's own Counter and Gauge render for the same values", async () => {
    const ref = new Registry();
    const c = new Counter({ name: 'x_total', help: 'Requests "by" code\\n.', labelNames: ['service', 'code'], registers: [ref] });
    const g = new Gauge({ name: 'x_state', help: 'State.', labelNames: ['service'], registers: [ref] });
    for (const service of SERVICES) {
      for (const [code, n] of Object.entries(COUNTS[service]!)) c.labels(service, code).inc(n);
      g.set({ service }, service.length);
    }

    const ours = new Registry();
    const shared = new Map<string, Labels>(SERVICES.map((s) => [s, Object.freeze({ service: s })]));
    const code = new LabelCache('code');
    ours.registerMetric(
      new SampledFamily('x_total', 'Requests "by" code\\n.', 'counter', (emit) => {
        for (const s of SERVICES) for (const [k, n] of Object.entries(COUNTS[s]!)) emit(n, code.get(k), shared.get(s)!);
      }) as unknown as Metric,
    );
    ours.registerMetric(
      new SampledFamily('x_state', 'State.', 'gauge', (emit) => {
        for (const s of SERVICES) emit(s.length, NO_LABELS, shared.get(s)!);
      }) as unknown as Metric,
    );

    const text = await ours.metrics();
    assert.deepEqual(normalized(text), normalized(await ref.metrics()));
    assert.match(text, /x_total\{code="200",service="we\\"ird\\\\name"\} 1\n/);
    assert.match(text, /x_state\{service="two\\nlines"\} 9\n/);
    assert.deepEqual(
      (await ours.getMetricsAsJSON()).map((m) => m.values.map((v) => v.labels)),
      (await ref.getMetricsAsJSON()).map((m) => m.values.map((v) => v.labels)),
    );
  });

  test('resetMetrics() runs the zero callback; a family without one reports live values', async () => {
    let n = 5;
    const registry = new Registry();
    const s = Object.freeze({ service: 'a' });
    registry.registerMetric(
      new SampledFamily(
        'c_total',
        'C.',
        'counter',
        (emit) => emit(n, NO_LABELS, s),
        () => (n = 0),
      ) as unknown as Metric,
    );
    registry.registerMetric(new SampledFamily('g', 'G.', 'gauge', (emit) => emit(42, NO_LABELS, s)) as unknown as Metric);
    assert.match(await registry.metrics(), /c_total\{service="a"\} 5\n/);
    registry.resetMetrics();
    const text = await registry.metrics();
    assert.match(text, /c_total\{service="a"\} 0\n/);
    assert.match(text, /g\{service="a"\} 42\n/);
  });

  test('LabelCache hands out one frozen object per value', () => {
    const c = new LabelCache('code');
    assert.equal(c.get(200), c.get(200));
    assert.deepEqual(c.get(503), { code: '503' });
    assert.ok(Object.isFrozen(c.get(499)));
  });
});
