/** WebSocket through the proxy (docs/websocket.md): a real `ws` client and server, the real proxy between them. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { DemoService } from '../../examples/demo/services.js';
import type { Completed } from '../../src/proxy/call.js';
import {
  metricValue,
  rawRequest,
  request,
  ROOT,
  startProxy,
  startUpstream,
  until,
  type Handler,
  type RunningProxy,
  type Upstream,
} from '../helpers.js';

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const x of opened.reverse()) await x.close();
});

interface Setup {
  up: Upstream;
  wss: WebSocketServer;
  p: RunningProxy;
  records: Completed[];
  /** Handshake requests the upstream received, their headers. */
  handshakes: IncomingMessage[];
}

/** An upstream that echoes every message (and answers plain requests with `handler`), behind the proxy. */
async function setup(service = '', handler: Handler = (_req, res) => res.end('plain')): Promise<Setup> {
  const up = await startUpstream(handler);
  const handshakes: IncomingMessage[] = [];
  const wss = new WebSocketServer({ server: up.server });
  wss.on('connection', (ws, req) => {
    handshakes.push(req);
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  opened.push(up);
  const p = await startProxy(`services:\n  notification:\n    url: ${up.url}\n    threshold: 3\n${service}`);
  opened.push(p);
  const records: Completed[] = [];
  p.proxy.handler.on('completed', (c) => records.push(c));
  return { up, wss, p, records, handshakes };
}

function connect(p: RunningProxy, path = '/svc/notification/feed', headers: Record<string, string> = {}): WebSocket {
  return new WebSocket(`ws://127.0.0.1:${p.port}${path}`, { headers });
}

/** Resolves with the 101's headers once the client is open. */
async function opens(ws: WebSocket): Promise<IncomingMessage> {
  const [res] = (await once(ws, 'upgrade')) as [IncomingMessage];
  if (ws.readyState !== WebSocket.OPEN) await once(ws, 'open');
  return res;
}

/** The handshake's non-101 answer: status, headers, body. */
async function refused(ws: WebSocket): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  ws.on('error', () => {});
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  let body = '';
  res.setEncoding('utf8');
  for await (const chunk of res) body += chunk;
  return { status: res.statusCode ?? 0, headers: res.headers, body };
}

async function echo(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; isBinary: boolean }> {
  ws.send(data);
  const [got, isBinary] = (await once(ws, 'message')) as [Buffer, boolean];
  return { data: got, isBinary };
}

describe('WebSocket tunnels', () => {
  test('a handshake through the proxy: 101, messages both ways (text, binary, 1 MiB), ping/pong, a close from the client', async () => {
    const { p, up, records, handshakes } = await setup();
    const ws = connect(p, '/svc/notification/feed?user=7', {
      'x-request-id': 'ws-1',
      'proxy-authorization': 'Basic eA==',
      'keep-alive': 'timeout=5',
    });
    const res = await opens(ws);
    assert.equal(res.headers['x-request-id'], 'ws-1');
    const h = handshakes[0]!.headers;
    assert.equal(handshakes[0]!.url, '/feed?user=7');
    assert.equal(h.upgrade, 'websocket');
    assert.match(h.connection ?? '', /upgrade/i);
    assert.equal(h['x-request-id'], 'ws-1');
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['proxy-authorization'], undefined);
    assert.equal(h['keep-alive'], undefined);
    assert.equal(h.host, `127.0.0.1:${up.port}`);

    assert.deepEqual(await echo(ws, 'hello'), { data: Buffer.from('hello'), isBinary: false });
    const bin = Buffer.from([0, 1, 2, 255]);
    assert.deepEqual(await echo(ws, bin), { data: bin, isBinary: true });
    const big = Buffer.alloc(1024 * 1024, 7);
    const back = await echo(ws, big);
    assert.equal(back.data.length, big.length);
    assert.ok(back.data.equals(big));
    ws.ping('are you there');
    const [pong] = (await once(ws, 'pong')) as [Buffer];
    assert.equal(pong.toString(), 'are you there');

    assert.deepEqual(
      records.map((r) => [r.status, r.outcome, r.attempts]),
      [[101, 'success', 1]],
    );
    assert.equal(await metricValue(p, 'proxy_tunnels{service="notification"}'), 1);
    assert.equal(await metricValue(p, 'proxy_tunnels_total{service="notification"}'), 1);
    assert.equal(await metricValue(p, 'proxy_requests_total{code="101",service="notification"}'), 1);
    ws.close(1000, 'bye');
    const [code] = (await once(ws, 'close')) as [number];
    assert.equal(code, 1000);
    await until(() => p.proxy.handler.tunnels.size === 0 && up.sockets.size === 0, 'both sides of the tunnel closed');
    assert.equal(await metricValue(p, 'proxy_tunnels{service="notification"}'), 0);
    assert.equal(p.proxy.registry.get('notification')!.circuit.snapshot().state, 'closed');
  });

  test('a close from the upstream reaches the client with its code', async () => {
    const { p, wss } = await setup();
    wss.once('connection', (server) => setImmediate(() => server.close(4001, 'done')));
    const ws = connect(p);
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    assert.deepEqual([code, reason.toString()], [4001, 'done']);
    await until(() => p.proxy.handler.tunnels.size === 0, 'tunnel gone');
  });

  test('a refused upstream: 502 problem on the socket, counted as a failure; 3 of them open the circuit, then 503 without contacting it', async () => {
    const closedPort = await freePort();
    const p = await startProxy(`services:\n  notification:\n    url: http://127.0.0.1:${closedPort}\n    threshold: 3\n`);
    opened.push(p);
    for (let i = 0; i < 3; i++) {
      const r = await refused(connect(p));
      assert.equal(r.status, 502);
      assert.equal(r.headers['content-type'], 'application/problem+json');
      assert.match(JSON.parse(r.body).detail, /notification unreachable: connect ECONNREFUSED/);
    }
    assert.equal(p.proxy.registry.get('notification')!.circuit.snapshot().state, 'open');
    const r = await refused(connect(p));
    assert.equal(r.status, 503);
    assert.equal(JSON.parse(r.body).title, 'Circuit open');
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.equal(await metricValue(p, 'circuit_breaker_failures_total{reason="connect",service="notification"}'), 3);
  });

  test('an open circuit: 503 and no connection reaches the upstream; observe mode lets the handshake through and counts it', async () => {
    const { p, up } = await setup();
    p.proxy.registry.get('notification')!.circuit.forceOpen('test');
    const before = up.connections;
    const r = await refused(connect(p));
    assert.equal(r.status, 503);
    assert.equal(up.connections, before, 'upstream not contacted');

    const o = await setup('    mode: observe\n');
    o.p.proxy.registry.get('notification')!.circuit.forceOpen('test');
    const ws = connect(o.p);
    await opens(ws);
    assert.deepEqual(await echo(ws, 'x'), { data: Buffer.from('x'), isBinary: false });
    assert.equal(await metricValue(o.p, 'circuit_breaker_would_reject_total{reason="open",service="notification"}'), 1);
    ws.close();
    await once(ws, 'close');
  });

  test('an upstream that never answers the handshake: 504 after the timeout, a timeout failure', async () => {
    const up = createServer((s) => s.on('data', () => {})); // reads the handshake, says nothing
    up.listen(0, '127.0.0.1');
    await once(up, 'listening');
    const sockets = new Set<Socket>();
    up.on('connection', (s) => sockets.add(s));
    opened.push({ close: () => new Promise((r) => (sockets.forEach((s) => s.destroy()), up.close(() => r()))) });
    const p = await startProxy(
      `services:\n  notification:\n    url: http://127.0.0.1:${(up.address() as AddressInfo).port}\n    timeout: 150ms\n`,
    );
    opened.push(p);
    const r = await refused(connect(p));
    assert.equal(r.status, 504);
    assert.match(JSON.parse(r.body).detail, /timed out after 150ms/);
    assert.equal(await metricValue(p, 'circuit_breaker_failures_total{reason="timeout",service="notification"}'), 1);
  });

  test('any answer but 101 is relayed whole (a chunked one too), counted by its status; canary for the http-proxy reach', async () => {
    // A handshake the upstream's own request handler answers (no WebSocket server on that path).
    const plain = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/down') {
        res.writeHead(503, { 'retry-after': '2' });
        res.end('down');
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.write('no such ');
      res.end('feed'); // chunked: no content-length
    });
    opened.push(plain);
    const q = await startProxy(`services:\n  notification:\n    url: ${plain.url}\n    threshold: 1\n`);
    opened.push(q);
    const r = await refused(connect(q));
    assert.equal(r.status, 404);
    assert.equal(r.body, 'no such feed');
    assert.equal(r.headers['transfer-encoding'], undefined);
    assert.ok(r.headers['x-request-id']);
    assert.equal(
      q.proxy.registry.get('notification')!.circuit.snapshot().state,
      'closed',
      'a 404 is the client asking for what is not there',
    );
    const d = await refused(connect(q, '/svc/notification/down'));
    assert.deepEqual([d.status, d.body], [503, 'down']);
    assert.equal(q.proxy.registry.get('notification')!.circuit.snapshot().state, 'open', 'a 503 instead of 101 is a failure');
    // The reach (src/proxy/forwarder.ts, onProxyReqWs): http-proxy renders both heads from the parsed headers object we rewrite.
    const source = readFileSync(`${ROOT}node_modules/http-proxy/lib/http-proxy/passes/ws-incoming.js`, 'utf8');
    assert.ok(
      source.includes(
        "socket.write(createHttpHeader('HTTP/' + res.httpVersion + ' ' + res.statusCode + ' ' + res.statusMessage, res.headers));",
      ),
      'http-proxy changed how it writes a non-101 answer',
    );
    assert.ok(
      source.includes("socket.write(createHttpHeader('HTTP/1.1 101 Switching Protocols', proxyRes.headers));"),
      'http-proxy changed how it writes the 101',
    );
  });

  test('a tunnel outlives a circuit opening, holds no maxConcurrent place, and a drain closes it after the grace period', async () => {
    const { p } = await setup('    maxConcurrent: 1\n');
    const ws = connect(p);
    await opens(ws);
    p.proxy.registry.get('notification')!.circuit.forceOpen('test');
    assert.deepEqual(await echo(ws, 'still here'), { data: Buffer.from('still here'), isBinary: false });
    p.proxy.registry.get('notification')!.circuit.forceClose('test');
    const second = connect(p);
    await opens(second);
    assert.equal(p.proxy.registry.get('notification')!.inFlight, 0);
    const closing = p.proxy.close(300);
    const codes = await Promise.all([once(ws, 'close'), once(second, 'close')]);
    await closing;
    assert.deepEqual(
      codes.map(([c]) => c),
      [1006, 1006],
      'cut when the grace period ended',
    );
    assert.equal(p.proxy.handler.tunnels.size, 0);
  });

  test('a drain waits for a tunnel that closes within the grace period', async () => {
    const { p } = await setup();
    const ws = connect(p);
    await opens(ws);
    const closing = p.proxy.close(10_000);
    await echo(ws, 'during the drain');
    ws.close(1001);
    await closing;
  });

  test('clientTimeouts.tunnelIdle closes a tunnel quiet both ways; traffic keeps it open', async () => {
    const { p } = await setup().then(async (s) => {
      await s.p.close();
      const q = await startProxy(`clientTimeouts: { tunnelIdle: 1500ms }\nservices:\n  notification:\n    url: ${s.up.url}\n`);
      opened.push(q);
      return { p: q };
    });
    const busy = connect(p);
    const quiet = connect(p);
    await Promise.all([opens(busy), opens(quiet)]);
    const quietClosed = once(quiet, 'close');
    let quietOpen = true;
    void quietClosed.then(() => (quietOpen = false));
    // The busy tunnel sends every 50 ms (30 times less than the limit) until the quiet one is closed.
    while (quietOpen) {
      await echo(busy, 'tick');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(busy.readyState, WebSocket.OPEN);
    busy.close();
    await once(busy, 'close');
  });

  test('50 tunnels at once: all echo, and after they close no socket is left on either side', async () => {
    const { p, up } = await setup();
    const clients = Array.from({ length: 50 }, () => connect(p));
    await Promise.all(clients.map((c) => opens(c)));
    assert.equal(await metricValue(p, 'proxy_tunnels{service="notification"}'), 50);
    const replies = await Promise.all(clients.map((c, i) => echo(c, `m${i}`)));
    assert.deepEqual(
      replies.map((r) => r.data.toString()),
      clients.map((_, i) => `m${i}`),
    );
    await Promise.all(clients.map((c) => (c.close(), once(c, 'close'))));
    await until(() => p.proxy.handler.tunnels.size === 0 && up.sockets.size === 0, 'every tunnel closed on both sides');
    assert.equal(await metricValue(p, 'proxy_tunnels_total{service="notification"}'), 50);
  });

  test('a handshake to no configured service: 404 on the socket, nothing counted', async () => {
    const { p } = await setup();
    const r = await refused(connect(p, '/svc/nope/feed'));
    assert.equal(r.status, 404);
    assert.equal(p.proxy.registry.get('notification')!.circuit.snapshot().consecutiveFailures ?? 0, 0);
  });

  test("the demo's notification feed through the proxy: a notification queued appears on it; a close is answered", async () => {
    const svc = new DemoService('notification');
    await svc.start();
    opened.push({ close: () => svc.stop() });
    const p = await startProxy(`services:\n  notification:\n    url: http://127.0.0.1:${svc.port}\n`);
    opened.push(p);
    const ws = connect(p, '/svc/notification/ws');
    const [hello] = (await once(ws, 'message')) as [Buffer];
    assert.match(hello.toString(), /notification feed/);
    const next = once(ws, 'message');
    const r = await request(p.port, '/svc/notification/notifications', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"to":"ana"}',
    });
    assert.equal(r.status, 202);
    const [note] = (await next) as [Buffer];
    assert.equal(JSON.parse(note.toString()).to, 'ana');
    ws.ping('x');
    await once(ws, 'pong');
    ws.close(1000);
    const [code] = (await once(ws, 'close')) as [number];
    assert.equal(code, 1000);
  });

  test('another upgrade (h2c) is served as the plain request it also is, and the connection goes on', async () => {
    const { p, up } = await setup('', (req, res) => {
      req.resume();
      res.end(`plain ${req.method} ${req.url} upgrade=${req.headers.upgrade ?? '-'} connection=${req.headers.connection}`);
    });
    const before = up.requests;
    const reply = await rawRequest(
      p.port,
      'POST /svc/notification/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 2\r\n\r\nhi' +
        'GET /svc/notification/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    );
    assert.match(reply, /^HTTP\/1\.1 200 /);
    assert.match(reply, /plain POST \/x upgrade=- connection=keep-alive/);
    assert.match(reply, /plain GET \/y upgrade=-/);
    assert.equal(up.requests - before, 2);
  });
});

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
