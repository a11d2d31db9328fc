/**
 * A client's faults are never the upstream's (docs/behaviour.md, "Client limits"): stalled bodies,
 * slow heads, too many connections. And an upstream's cut body reaches the client as a reset.
 * One regression test per defect, named after what broke.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request, startProxy, startUpstream, type RunningProxy, type Upstream } from '../helpers.js';

/** Opens a raw connection and sends `bytes`; resolves with the socket once connected. */
async function open(port: number, bytes = ''): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  await once(s, 'connect');
  if (bytes) s.write(bytes);
  return s;
}

/** Everything the server sends until it closes the connection, and how it closed. */
async function readAll(s: Socket, limitMs = 5000): Promise<{ text: string; error: string | undefined }> {
  let text = '';
  let error: string | undefined;
  s.on('data', (c: Buffer) => (text += c.toString('latin1')));
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
  const timer = setTimeout(() => s.destroy(new Error('still open')), limitMs);
  await new Promise((resolve) => s.on('close', resolve));
  clearTimeout(timer);
  return { text, error };
}

describe('stalled request bodies are the client fault: 408, the circuit stays closed', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.on('data', () => undefined);
      req.on('end', () => res.end('ok'));
    });
    // timeout far below bodyIdle: before the fix, the upstream timeout ran while the proxy waited
    // for the client, and each stalled client counted as the upstream's 504.
    p = await startProxy(
      `clientTimeouts: { bodyIdle: 200ms }\ndefaults: { timeout: 100ms, threshold: 3, cooldown: 10s }\nservices:\n  product:\n    url: ${up.url}\n`,
    );
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  const head = (extra: string): string => `POST /svc/product/upload HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
  const stalls: Array<[string, string]> = [
    ['Content-Length: 100 and 10 bytes', head('Content-Length: 100\r\n') + '0123456789'],
    ['Expect: 100-continue and nothing', head('Content-Length: 100\r\nExpect: 100-continue\r\n')],
    ['a chunked upload that pauses', head('Transfer-Encoding: chunked\r\n') + '5\r\nhello\r\n'],
  ];

  test('three stalled uploads leave the circuit closed, and a normal request after them gets 200', async () => {
    const replies = await Promise.all(stalls.map(async ([, bytes]) => readAll(await open(p.port, bytes))));
    for (const [i, r] of replies.entries()) {
      assert.match(r.text, /HTTP\/1\.1 408 /, stalls[i]![0]);
      assert.match(r.text, /request body idle for 200ms/, stalls[i]![0]);
      assert.match(r.text, /connection: close/i, stalls[i]![0]);
    }
    const b = p.proxy.registry.get('product')!;
    assert.equal(b.state, 'closed');
    assert.equal(b.circuit.consecutiveFailures, 0);
    assert.equal(p.logs.find((l) => l.level === 40).length, 0, 'no upstream failure logged');
    const ok = await request(p.port, '/svc/product/after', { method: 'POST', body: 'x' });
    assert.equal(ok.status, 200);
  });

  test('a slow but moving upload is not a stall: each chunk inside bodyIdle, longer than bodyIdle in all', async () => {
    const s = await open(p.port, head('Transfer-Encoding: chunked\r\nConnection: close\r\n'));
    const reply = readAll(s);
    for (let i = 0; i < 4; i++) {
      s.write('2\r\nab\r\n');
      await new Promise((r) => setTimeout(r, 100));
    }
    s.write('0\r\n\r\n');
    assert.match((await reply).text, /^HTTP\/1\.1 200 /);
  });
});

describe('a body cut short by the upstream resets the client connection', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/length') res.writeHead(200, { 'content-length': '100' });
      else res.writeHead(200, { 'transfer-encoding': 'chunked' });
      res.write('123456789');
      setTimeout(() => res.socket?.resetAndDestroy(), 20);
    });
    p = await startProxy(`defaults: { threshold: 100 }\nservices:\n  product:\n    url: ${up.url}\n`);
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  for (const path of ['/length', '/chunked']) {
    test(`${path}: the client sees ECONNRESET after the headers, never a clean close`, async () => {
      const s = await open(p.port, `GET /svc/product${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const r = await readAll(s);
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.equal(r.error, 'ECONNRESET');
      assert.equal(p.proxy.registry.get('product')!.circuit.consecutiveFailures > 0, true, 'counted against the upstream');
    });
  }
});

describe('client limits: request head timeout, connection cap', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    p = await startProxy(
      `listen: { host: 127.0.0.1, port: 0, maxConnections: 3 }\nclientTimeouts: { header: 300ms }\nservices:\n  product:\n    url: ${up.url}\n`,
    );
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  test('a request head not complete within clientTimeouts.header gets 408 (not after Node default 60 s + 30 s)', async () => {
    const started = performance.now();
    const r = await readAll(await open(p.port, 'GET /svc/product/x HTTP/1.1\r\nHost: x\r\nX-Slow: '));
    assert.match(r.text, /^HTTP\/1\.1 408 /);
    assert.ok(performance.now() - started < 2000, `408 after ${performance.now() - started} ms`);
  });

  test('connections beyond listen.maxConnections are refused; a freed slot is usable again', async () => {
    const held = await Promise.all([open(p.port), open(p.port), open(p.port)]);
    // Each held connection is a complete idle keep-alive connection (so the head timeout leaves it be).
    for (const s of held) s.write('GET /svc/product/x HTTP/1.1\r\nHost: x\r\n\r\n');
    await Promise.all(held.map((s) => once(s, 'data')));
    const refused = await readAll(await open(p.port, 'GET /svc/product/x HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(refused.text, '', 'the fourth connection got an answer');
    held[0].destroy();
    await once(held[0], 'close');
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = await request(p.port, '/svc/product/x', { headers: { connection: 'close' } }).then(
        (r) => r.status,
        () => 0,
      );
    }
    assert.equal(status, 200);
    for (const s of held) s.destroy();
  });
});

describe('the configured timeout holds on a reused connection whatever the upstream keep-alive hint', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/slow') setTimeout(() => res.end('slow'), 1300);
      else res.end('fast');
    });
    // Node sends `Keep-Alive: timeout=2`; the agent derives a 1-2 s socket timeout from it.
    up.server.keepAliveTimeout = 2000;
    p = await startProxy(`defaults: { timeout: 4s }\nservices:\n  product:\n    url: ${up.url}\n`);
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  test('timeout 4s, a 1.3 s answer on the reused connection: 200, not a 504 after 1 s', async () => {
    assert.equal((await request(p.port, '/svc/product/fast')).status, 200);
    const connections = up.connections;
    const r = await request(p.port, '/svc/product/slow');
    assert.equal(up.connections, connections, 'the second request reused the connection');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'slow');
    assert.equal(p.proxy.registry.get('product')!.circuit.consecutiveFailures, 0);
  });
});
