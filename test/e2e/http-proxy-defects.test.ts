/** One regression test per known http-proxy 1.18.1 defect our forwarding layer neutralizes. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { listening, rawRequest, request, spawnCli, startProxy, startUpstream, type RunningProxy, type Upstream } from '../helpers.js';

describe('http-proxy 1.18.1 defects', () => {
  let up: Upstream;
  let p: RunningProxy;
  let hang = false;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      if (hang) return;
      if (req.url === '/reset-mid-body') {
        res.writeHead(200, { 'transfer-encoding': 'chunked' });
        res.write('first chunk');
        setImmediate(() => res.socket?.destroy());
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`ok ${req.headers.connection ?? ''}`);
    });
    p = await startProxy(`defaults: { timeout: 200ms, threshold: 100 }\nservices:\n  product:\n    url: ${up.url}\n`);
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  test('#1647: a request with a Trailer header does not crash the process', async () => {
    const r = await rawRequest(p.port, 'GET /svc/product/x HTTP/1.1\r\nHost: x\r\nTrailer: x-checksum\r\nConnection: close\r\n\r\n');
    assert.match(r, /^HTTP\/1\.1 200 /);
    const chunked = await rawRequest(
      p.port,
      'POST /svc/product/x HTTP/1.1\r\nHost: x\r\nTrailer: x-checksum\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nx-checksum: 1\r\n\r\n',
    );
    assert.match(chunked, /^HTTP\/1\.1 200 /);
    // still alive
    assert.equal((await request(p.port, '/svc/product/x')).status, 200);
  });

  test('#1586: a client abort aborts the upstream request (no leaked upstream socket)', async () => {
    hang = true;
    try {
      const client = httpRequest({ host: '127.0.0.1', port: p.port, path: '/svc/product/hang', agent: false });
      client.on('error', () => undefined);
      client.end();
      const [, upRes] = (await once(up.events, 'request')) as [unknown, ServerResponse];
      // The upstream's response closes unfinished only when its connection is torn down.
      const closed = once(upRes, 'close');
      client.destroy();
      await closed;
      assert.equal(upRes.writableFinished, false);
    } finally {
      hang = false;
    }
  });

  test('upstream reset mid-body: the client does not hang, and sees a reset (ECONNRESET), not a clean end', async () => {
    await assert.rejects(request(p.port, '/svc/product/reset-mid-body'), (err: NodeJS.ErrnoException) => err.code === 'ECONNRESET');
  });

  test('canary: urlJoin collapses "//"; the path set on proxyReq in its proxyReq event reaches the upstream as received', async () => {
    const seen: string[] = [];
    const onRequest = (req: { url?: string }): void => void seen.push(req.url ?? '');
    up.events.on('request', onRequest);
    try {
      const target = '/svc/product//a//b/http://x/%2F?q=%20a//b&c=%2F';
      assert.equal((await request(p.port, target)).status, 200);
      // A body that arrives with the head is pushed synchronously: piped at once, it would make
      // Node render the request line before proxyReq (http-proxy #1287). DeferredBody waits.
      const r = await rawRequest(
        p.port,
        'POST /svc/product//with//body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
      );
      assert.match(r, /^HTTP\/1\.1 200 /);
      assert.deepEqual(
        seen,
        ['//a//b/http://x/%2F?q=%20a//b&c=%2F', '//with//body'],
        'http-proxy rendered the request line before its proxyReq event: src/proxy/forwarder.ts must set the path elsewhere',
      );
    } finally {
      up.events.off('request', onRequest);
    }
  });

  test('deleteLength: a chunked DELETE reaches the upstream chunked with its body, never as content-length: 0', async () => {
    const seen: Array<{ te?: string; cl?: string; body: string }> = [];
    const onRequest = (req: IncomingMessage): void => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => seen.push({ te: req.headers['transfer-encoding'], cl: req.headers['content-length'], body }));
    };
    up.events.on('request', onRequest);
    try {
      const r = await rawRequest(
        p.port,
        'DELETE /svc/product/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      );
      assert.match(r, /^HTTP\/1\.1 200 /);
      assert.deepEqual(seen, [{ te: 'chunked', cl: undefined, body: 'hello' }]);
    } finally {
      up.events.off('request', onRequest);
    }
  });

  test('proxyTimeout is an idle timer reported as ECONNRESET: our own timeout answers 504', async () => {
    hang = true;
    try {
      const r = await request(p.port, '/svc/product/slow');
      assert.equal(r.status, 504);
      assert.equal(JSON.parse(r.body).detail, 'product timed out after 200ms');
    } finally {
      hang = false;
    }
  });

  test('without an agent it forces Connection: close: 1000 sequential requests reuse ~1 upstream connection', async () => {
    const before = up.connections;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 1000; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: p.port, path: '/svc/product/pool', agent }, (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve(b));
        });
        req.on('error', reject);
        req.end();
      });
      if (i === 0) assert.equal(body, 'ok keep-alive', 'upstream sees a keep-alive connection');
    }
    agent.destroy();
    assert.ok(up.connections - before <= 2, `${up.connections - before} upstream connections for 1000 requests`);
  });

  test('an upstream error throws without an error listener: our error listener takes them, even after headers', async () => {
    // Mid-body reset after headers went out is the case; the process survived the tests above.
    await assert.rejects(request(p.port, '/svc/product/reset-mid-body'));
    assert.equal((await request(p.port, '/svc/product/x')).status, 200);
  });
});

describe('http-proxy 1.18.1 calls util._extend, deprecated at runtime since Node 22 (DEP0060; silenced by a Node flag)', () => {
  test('the real bin forwards without printing a deprecation warning', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-dep-'));
    const cfg = join(dir, 'proxy.yaml');
    writeFileSync(
      cfg,
      `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  product:\n    url: ${up.url}\n`,
    );
    const cli = spawnCli(['serve', '--config', cfg]);
    try {
      const ready = await cli.waitLine(listening);
      assert.equal((await request(ready.port as number, '/svc/product/x')).status, 200);
      cli.child.kill('SIGTERM');
      assert.equal(await cli.exit, 0);
      assert.doesNotMatch(cli.stderr, /DeprecationWarning|DEP0060/);
    } finally {
      cli.child.kill('SIGKILL');
      await up.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
