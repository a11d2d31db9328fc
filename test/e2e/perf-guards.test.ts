/** Performance regression guards that need no timing (issue: hot path). */
import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { test } from 'node:test';
import { countErrors, startProxy, startUpstream } from '../helpers.js';

function get(port: number, path: string, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the open path constructs no Error (and contacts no upstream) for 500 rejected requests', async () => {
  const up = await startUpstream((req, res) => {
    req.resume();
    res.end('ok');
  });
  const p = await startProxy(`services:\n  product:\n    url: ${up.url}\n`);
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  p.proxy.registry.get('product')!.circuit.forceOpen('perf guard');
  await get(p.port, '/svc/product/warm', agent); // first use allocates caches; not counted
  const requestsBefore = up.requests;
  try {
    // Every `new Error(...)` in JS code (ours, opossum's buildError, http-proxy's) is counted.
    const { result: statuses, constructed } = await countErrors(() =>
      Promise.all(Array.from({ length: 500 }, (_, i) => get(p.port, `/svc/product/x${i}`, agent))),
    );
    assert.ok(statuses.every((s) => s === 503));
    assert.equal(constructed, 0, `${constructed} Errors constructed on the open path`);
    assert.equal(up.requests, requestsBefore);
  } finally {
    agent.destroy();
    await p.close();
    await up.close();
  }
});

test('the guard itself sees Errors: opossum fire() on an open breaker (the naive path) constructs one per call', async () => {
  const { default: CircuitBreaker } = await import('opossum');
  const cb = new CircuitBreaker(() => Promise.resolve('ok'), { timeout: false });
  cb.open();
  const { constructed } = await countErrors(async () => {
    for (let i = 0; i < 10; i++) await cb.fire().catch(() => undefined);
  });
  cb.shutdown();
  assert.equal(constructed, 10);
});
