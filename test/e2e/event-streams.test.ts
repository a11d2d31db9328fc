/** Event streams (docs/behaviour.md, "Event streams"): a quiet but healthy stream is not cut, and never counts as a failure. */
import assert from 'node:assert/strict';
import { request as httpRequest, type ServerResponse } from 'node:http';
import { after, describe, test } from 'node:test';
import { request, startProxy, startUpstream, type RunningProxy } from '../helpers.js';

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const x of opened.reverse()) await x.close();
});

/** An upstream that sends `events` events `gapMs` apart with the given content type, then ends (or, with `hold`, keeps the response open). */
async function setup(service: string): Promise<{ p: RunningProxy; open: ServerResponse[] }> {
  const open: ServerResponse[] = [];
  const up = await startUpstream((req, res) => {
    req.resume();
    const u = new URL(req.url ?? '/', 'http://x');
    const events = Number(u.searchParams.get('events') ?? 3);
    const gapMs = Number(u.searchParams.get('gap') ?? 400);
    res.writeHead(200, { 'content-type': u.searchParams.get('type') ?? 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    res.write(': hello\n\n');
    if (u.searchParams.has('hold')) {
      open.push(res);
      return;
    }
    let n = 0;
    const tick = setInterval(() => {
      res.write(`data: event ${++n}\n\n`);
      if (n === events) {
        clearInterval(tick);
        res.end();
      }
    }, gapMs);
    res.on('close', () => clearInterval(tick));
  });
  opened.push(up);
  const p = await startProxy(`defaults: { threshold: 3 }\nservices:\n  notification:\n    url: ${up.url}\n${service}`);
  opened.push(p);
  return { p, open };
}

describe('event streams', () => {
  test('a stream quieter than bodyIdleTimeout is delivered whole; three of them leave the circuit closed, nothing counted', async () => {
    const { p } = await setup('    bodyIdleTimeout: 150ms\n');
    const replies = await Promise.all([1, 2, 3].map(() => request(p.port, '/svc/notification/feed?events=3&gap=400')));
    for (const r of replies) {
      assert.equal(r.status, 200);
      assert.equal(r.body, ': hello\n\ndata: event 1\n\ndata: event 2\n\ndata: event 3\n\n');
    }
    const c = p.proxy.registry.get('notification')!.circuit;
    assert.equal(c.state, 'closed');
    assert.equal(c.consecutiveFailures, 0);
  });

  test('the same gaps in a response that is not a stream are still a stalled body (reset, counted)', async () => {
    const { p } = await setup('    bodyIdleTimeout: 150ms\n');
    await assert.rejects(request(p.port, '/svc/notification/feed?events=2&gap=400&type=application/json'));
    assert.equal(p.proxy.registry.get('notification')!.circuit.consecutiveFailures, 1);
  });

  test('streamContentTypes marks other media types as streams', async () => {
    const { p } = await setup('    bodyIdleTimeout: 150ms\n    streamContentTypes: [application/x-ndjson]\n');
    const r = await request(p.port, '/svc/notification/feed?events=2&gap=400&type=application/x-ndjson');
    assert.equal(r.status, 200);
    assert.match(r.body, /event 2/);
    assert.equal(p.proxy.registry.get('notification')!.circuit.consecutiveFailures, 0);
  });

  test('streamIdleTimeout closes a stream silent that long, without counting a failure; the stream was a success at its headers', async () => {
    const { p, open } = await setup('    streamIdleTimeout: 200ms\n');
    const c = p.proxy.registry.get('notification')!.circuit;
    const ended = new Promise<string>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.port, path: '/svc/notification/feed?hold=1', agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('close', () => resolve(body));
      });
      req.on('error', () => resolve('error'));
      req.end();
    });
    assert.equal(await ended, ': hello\n\n');
    assert.equal(open.length, 1);
    assert.equal(c.consecutiveFailures, 0);
    assert.equal(c.state, 'closed');
  });
});
