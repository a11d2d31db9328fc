/** The event stream and the transition history (docs/observability.md), over real sockets. */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { HISTORY_LENGTH, MAX_STREAMS } from '../../src/admin/live.js';
import { json, request, startProxy, startUpstream, until, type RunningProxy, type Upstream } from '../helpers.js';

/** Opens `GET /events` and collects its events. */
function stream(port: number): Promise<{ res: IncomingMessage; events: Array<{ event: string; data: any }>; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/events', agent: false }, (res) => {
      const events: Array<{ event: string; data: any }> = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(frame)?.[1] ?? 'message';
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          events.push({ event, data: data ? JSON.parse(data) : undefined });
        }
      });
      res.on('error', () => undefined);
      resolve({ res, events, close: () => req.destroy() });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('event stream and history', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    p = await startProxy(
      `defaults: { threshold: 1, cooldown: 30s }\nservices:\n  product:\n    url: ${up.url}\n  cart:\n    url: ${up.url}\n`,
    );
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  test('a snapshot at once, a transition within 1 s, stats every second', async () => {
    const s = await stream(p.adminPort);
    assert.equal(s.res.headers['content-type'], 'text/event-stream; charset=utf-8');
    await until(() => s.events.length > 0, 'the snapshot');
    assert.equal(s.events[0]!.event, 'snapshot');
    assert.deepEqual(
      s.events[0]!.data.services.map((x: { name: string }) => x.name),
      ['product', 'cart'],
    );
    const t0 = performance.now();
    await request(p.adminPort, '/breakers/product/open', { method: 'POST' });
    await until(() => s.events.some((e) => e.event === 'transition'), 'the transition', 1000);
    assert.ok(performance.now() - t0 < 1000);
    const t = s.events.find((e) => e.event === 'transition')!.data;
    assert.deepEqual([t.service, t.from, t.to, t.forced, t.stats.state], ['product', 'closed', 'open', true, 'open']);
    await until(() => s.events.some((e) => e.event === 'stats'), 'a stats event', 2500);
    const stats = s.events.find((e) => e.event === 'stats')!.data;
    assert.equal(stats.services.length, 2);
    s.close();
    await request(p.adminPort, '/breakers/product/close', { method: 'POST' });
  });

  test('history: the last 100 transitions, newest first, with at, from, to, reason, forced; 404 for an unknown name', async () => {
    for (let i = 0; i < 60; i++) {
      await request(p.adminPort, '/breakers/cart/open', { method: 'POST', body: `{"reason":"round ${i}"}` });
      await request(p.adminPort, '/breakers/cart/close', { method: 'POST' });
    }
    const h = json(await request(p.adminPort, '/breakers/cart/history'));
    assert.equal(h.transitions.length, HISTORY_LENGTH);
    assert.deepEqual(Object.keys(h.transitions[0]).sort(), ['at', 'forced', 'from', 'reason', 'to']);
    assert.match(h.transitions[0].reason, /^forced closed/);
    assert.match(h.transitions[1].reason, /^forced open: round 59/);
    assert.equal((await request(p.adminPort, '/breakers/nope/history')).status, 404);
  });

  test(`at most ${MAX_STREAMS} streams: the next one gets 503`, async () => {
    const open = await Promise.all(Array.from({ length: MAX_STREAMS }, () => stream(p.adminPort)));
    assert.ok(open.every((s) => s.res.statusCode === 200));
    const refused = await request(p.adminPort, '/events');
    assert.equal(refused.status, 503);
    for (const s of open) s.close();
    await until(() => p.proxy.live.streamCount === 0, 'streams gone');
    const again = await stream(p.adminPort);
    assert.equal(again.res.statusCode, 200);
    again.close();
  });

  test('a consumer that never reads is dropped, never buffered without limit, through 200 transitions', async () => {
    const raw = connect(p.adminPort, '127.0.0.1');
    raw.pause(); // never reads
    raw.write('GET /events HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => p.proxy.live.streamCount === 1, 'the stream');
    const heapBefore = process.memoryUsage().heapUsed;
    const reason = 'x'.repeat(4000);
    for (let i = 0; i < 200; i++) {
      p.proxy.registry.get('product')!.circuit.forceOpen(`${reason} ${i}`);
      p.proxy.registry.get('product')!.circuit.forceClose(`${reason} ${i}`);
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    await until(() => p.proxy.live.streamCount === 0, 'the slow consumer dropped', 5000);
    const grown = process.memoryUsage().heapUsed - heapBefore;
    assert.ok(grown < 32 * 1024 * 1024, `heap grew ${grown} bytes`);
    raw.destroy();
  });
});
