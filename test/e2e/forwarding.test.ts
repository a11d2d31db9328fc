import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { json, rawRequest, request, startProxy, startUpstream, type RunningProxy, type Upstream } from '../helpers.js';

/** Echoes what it received. */
function echo(): Promise<Upstream> {
  return startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString(),
        trailers: req.trailers,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'echo' });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  });
}

describe('forwarding (docs/behaviour.md)', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await echo();
    p = await startProxy(`services:\n  product:\n    url: ${up.url}/api\n  root:\n    url: ${up.url}\n`);
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  test('path after /svc/<name> is appended to the base path; query byte-for-byte; %2F and // kept', async () => {
    const r = await request(p.port, "/svc/product/a//b%2Fc/%7E?x=%41&y={1}&z=a?b&'q'");
    assert.equal(r.status, 200);
    assert.equal(json(r).url, "/api/a//b%2Fc/%7E?x=%41&y={1}&z=a?b&'q'");
  });

  test('/svc/<name> alone forwards to the base URL itself', async () => {
    assert.equal(json(await request(p.port, '/svc/product')).url, '/api');
    assert.equal(json(await request(p.port, '/svc/root')).url, '/');
    assert.equal(json(await request(p.port, '/svc/root?x=1')).url, '/?x=1');
  });

  for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
    test(`${method} with a body is forwarded with its body`, async () => {
      const r = await request(p.port, '/svc/product/x', { method, body: `body-of-${method}`, headers: { 'content-type': 'text/plain' } });
      assert.equal(json(r).method, method);
      assert.equal(json(r).body, `body-of-${method}`);
    });
  }

  test('HEAD gets headers and no body', async () => {
    const r = await request(p.port, '/svc/product/x', { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body, '');
    assert.equal(r.headers['x-upstream'], 'echo');
  });

  test('a request without a body reaches the upstream without one, framed as the client framed it', async () => {
    const get = json(await request(p.port, '/svc/product/x'));
    assert.equal(get.body, '');
    assert.equal(get.headers['content-length'], undefined);
    assert.equal(get.headers['transfer-encoding'], undefined);
    const post = json(await request(p.port, '/svc/product/x', { method: 'POST', body: '' }));
    assert.equal(post.method, 'POST');
    assert.equal(post.body, '');
    assert.equal(post.headers['content-length'], '0');
    assert.equal(post.headers['transfer-encoding'], undefined);
  });

  test('a chunked request body (DELETE too) keeps its framing', async () => {
    for (const method of ['POST', 'DELETE']) {
      const body = await new Promise<string>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: p.port,
            path: '/svc/product/chunked',
            method,
            agent: false,
            headers: { 'transfer-encoding': 'chunked' },
          },
          (res) => {
            let b = '';
            res.on('data', (c) => (b += c));
            res.on('end', () => resolve(b));
          },
        );
        req.on('error', reject);
        req.write('part1-');
        setImmediate(() => req.end('part2'));
      });
      assert.equal(JSON.parse(body).body, 'part1-part2', method);
    }
  });

  test('X-Forwarded-For/-Proto/-Host added; Host is the upstream; X-Request-Id generated and echoed', async () => {
    const r = await request(p.port, '/svc/product/h', { headers: { host: 'app.local:8080' } });
    const h = json(r).headers;
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'app.local:8080');
    assert.equal(h.host, `127.0.0.1:${up.port}`);
    assert.match(String(r.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(h['x-request-id'], r.headers['x-request-id']);
  });

  test('a client X-Request-Id is passed on and echoed', async () => {
    const r = await request(p.port, '/svc/product/h', { headers: { 'x-request-id': 'order-42' } });
    assert.equal(json(r).headers['x-request-id'], 'order-42');
    assert.equal(r.headers['x-request-id'], 'order-42');
  });

  test('hop-by-hop request headers, and those named in Connection, are not forwarded', async () => {
    const r = await request(p.port, '/svc/product/h', {
      headers: {
        connection: 'keep-alive, x-hop',
        'x-hop': 'secret',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        upgrade: 'h2c',
        'proxy-authorization': 'Basic eA==',
        'x-end-to-end': 'yes',
      },
    });
    const h = json(r).headers;
    for (const name of ['x-hop', 'keep-alive', 'te', 'upgrade', 'proxy-authorization']) assert.equal(h[name], undefined, name);
    assert.equal(h['x-end-to-end'], 'yes');
    assert.equal(h.connection, 'keep-alive', 'our own keep-alive connection to the upstream');
  });

  test('unknown service -> 404, outside /svc/ -> 404, problem+json, upstream untouched', async () => {
    const before = up.requests;
    for (const path of ['/svc/nope/x', '/other', '/', '/svc/', '/svc']) {
      const r = await request(p.port, path);
      assert.equal(r.status, 404, path);
      assert.equal(r.headers['content-type'], 'application/problem+json');
      assert.equal(json(r).status, 404);
      assert.ok(r.headers['x-request-id'], 'request id echoed on errors too');
    }
    assert.equal(up.requests, before);
  });

  test('dot segments (raw, encoded, backslash) -> 400; absolute-form and CONNECT -> 400; upstream untouched', async () => {
    const before = up.requests;
    for (const path of ['/svc/product/../x', '/svc/product/%2e%2E/x', '/svc/product/..%5Cx', '/svc/product/.', '/svc/product/%2E']) {
      const r = await rawRequest(p.port, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.match(r, /^HTTP\/1\.1 400 /, path);
    }
    const abs = await rawRequest(
      p.port,
      `GET http://127.0.0.1:${up.port}/svc/product/x HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(abs, /^HTTP\/1\.1 400 /);
    const connect = await rawRequest(p.port, `CONNECT 127.0.0.1:${up.port} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`);
    assert.match(connect, /^HTTP\/1\.1 400 /);
    assert.match(connect, /application\/problem\+json/);
    assert.equal(up.requests, before);
  });

  test('the upstream is never chosen from the Host header', async () => {
    const r = await request(p.port, '/svc/product/x', { headers: { host: 'evil.example:1' } });
    assert.equal(r.status, 200);
    assert.equal(json(r).headers.host, `127.0.0.1:${up.port}`);
  });
});

describe('response side', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/trailers') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('chunk1-');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end('chunk2');
        return;
      }
      if (req.url === '/hop') {
        res.writeHead(
          200,
          [
            ['Connection', 'keep-alive, X-Internal'],
            ['X-Internal', 'leak'],
            ['Keep-Alive', 'timeout=5'],
            ['Set-Cookie', 'a=1'],
            ['Set-Cookie', 'b=2'],
            ['Content-Length', '2'],
          ].flat(),
        );
        res.end('ok');
        return;
      }
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        let i = 0;
        const tick = (): void => {
          if (i++ === 5) {
            res.end();
            return;
          }
          res.write(`line ${i}\n`);
          setImmediate(tick);
        };
        tick();
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not here');
    });
    p = await startProxy(`services:\n  product:\n    url: ${up.url}\n`);
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  test('response trailers are forwarded on chunked responses', async () => {
    const r = await request(p.port, '/svc/product/trailers');
    assert.equal(r.body, 'chunk1-chunk2');
    assert.equal(r.trailers['x-checksum'], 'abc123');
  });

  test('hop-by-hop response headers dropped; repeated Set-Cookie kept', async () => {
    const r = await request(p.port, '/svc/product/hop');
    assert.equal(r.headers['x-internal'], undefined);
    assert.equal(r.headers['keep-alive'] === 'timeout=5' && r.headers['x-internal'] !== undefined, false);
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.body, 'ok');
  });

  test('streamed response body arrives whole; 4xx passes through', async () => {
    const r = await request(p.port, '/svc/product/stream');
    assert.equal(r.body, 'line 1\nline 2\nline 3\nline 4\nline 5\n');
    const nf = await request(p.port, '/svc/product/missing');
    assert.equal(nf.status, 404);
    assert.equal(nf.body, 'not here');
  });
});
