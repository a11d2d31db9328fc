import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { connect, constants } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { rawRequest, request, startProxy, startUpstream, type RunningProxy, type Upstream } from '../helpers.js';

/** Hostile request targets and headers (docs/behaviour.md): a clear 4xx, nothing forwarded, the proxy lives. */
describe('hostile input', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      res.end('upstream');
    });
    p = await startProxy(`services:\n  product:\n    url: ${up.url}/base\n`);
  });
  after(async () => {
    await p.close();
    await up.close();
  });

  const send = (target: string, extra = '', method = 'GET'): Promise<string> =>
    rawRequest(p.port, `${method} ${target} HTTP/1.1\r\nHost: localhost\r\n${extra}Connection: close\r\n\r\n`);

  const cases: Array<[string, string, number]> = [
    ['dot-dot raw', '/svc/product/../../etc/passwd', 400],
    ['dot raw', '/svc/product/./x', 400],
    ['dot-dot encoded lower', '/svc/product/%2e%2e/x', 400],
    ['dot-dot encoded upper', '/svc/product/%2E%2E/x', 400],
    ['dot-dot mixed', '/svc/product/.%2E/x', 400],
    ['dot-dot with encoded slash', '/svc/product/a%2F..%2Fb', 400],
    ['dot-dot with backslash', '/svc/product/..\\x', 400],
    ['dot-dot with encoded backslash', '/svc/product/%5C..%5Cx', 400],
    ['double-encoded dot-dot', '/svc/product/%252E%252E/x', 400],
    ['trailing dot-dot', '/svc/product/x/..', 400],
    ['dot-dot as service', '/svc/../product/x', 400],
    ['dot-dot with a path parameter (Tomcat reads ..;/ as ../)', '/svc/product/..;/admin', 400],
    ['encoded dot-dot with a path parameter', '/svc/product/%2e%2e;x/admin', 400],
    ['dot with a path parameter', '/svc/product/.;/x', 400],
    ['dot-dot with a path parameter and a value', '/svc/product/..;jsessionid=1/admin', 400],
    ['encoded NUL', '/svc/product/x%00.json', 400],
    ['dot-dot then encoded NUL', '/svc/product/..%00/x', 400],
    ['double-encoded NUL', '/svc/product/x%2500', 400],
    ['encoded control byte (LF)', '/svc/product/x%0aSet-Cookie:%20a=b', 400],
    ['overlong UTF-8 dot-dot', '/svc/product/%c0%ae%c0%ae/x', 400],
    ['overlong UTF-8 slash', '/svc/product/..%c0%afadmin', 400],
    ['doubled slash before svc', '//svc/product/x', 404],
    ['doubled slash after svc', '/svc//product/x', 404],
    ['upper-case prefix', '/SVC/product/x', 404],
    ['upper-case name', '/svc/PRODUCT/x', 404],
    ['empty name', '/svc/', 404],
    ['encoded name', '/svc/prod%75ct/x', 404],
    ['invalid name chars', '/svc/pro$duct/x', 404],
    ['absolute-form, other host', 'http://169.254.169.254/svc/product/x', 400],
    ['absolute-form, the upstream itself', 'http://127.0.0.1/svc/product/x', 400],
    ['asterisk-form', '*', 400],
    ['long URL', `/svc/product/${'a'.repeat(9000)}`, 414],
    ['URL beyond the header limit', `/svc/product/${'a'.repeat(17000)}`, 431],
  ];
  for (const [name, target, status] of cases) {
    test(`${name} -> ${status}, nothing forwarded`, async () => {
      const before = up.requests;
      const r = await send(target, '', target === '*' ? 'OPTIONS' : 'GET');
      assert.match(r, new RegExp(`^HTTP/1\\.1 ${status} `), r.slice(0, 200));
      assert.match(r, /content-type: application\/problem\+json/i);
      assert.equal(up.requests, before);
    });
  }

  test('CONNECT (authority-form) -> 400, never tunnelled', async () => {
    const before = up.connections;
    const r = await rawRequest(p.port, `CONNECT 127.0.0.1:${up.port} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`);
    assert.match(r, /^HTTP\/1\.1 400 /);
    assert.equal(up.connections, before);
  });

  test('oversized headers -> 431', async () => {
    const r = await send('/svc/product/x', `X-Big: ${'b'.repeat(20_000)}\r\n`);
    assert.match(r, /^HTTP\/1\.1 431 /);
  });

  test('header names with odd bytes -> 400', async () => {
    for (const header of ['X-Bad\x01Name: v\r\n', 'X Space: v\r\n', 'X-Nul: a\x00b\r\n', ': empty\r\n']) {
      const r = await send('/svc/product/x', header);
      assert.match(r, /^HTTP\/1\.1 400 /, JSON.stringify(header));
    }
  });

  test('a path parameter that is not a dot segment is forwarded as received', async () => {
    const seen: string[] = [];
    const on = (req: { url?: string }): void => void seen.push(req.url ?? '');
    up.events.on('request', on);
    try {
      const r = await send('/svc/product/a;jsessionid=1/..x;y/%2e%2ex');
      assert.match(r, /^HTTP\/1\.1 200 /);
      assert.deepEqual(seen, ['/base/a;jsessionid=1/..x;y/%2e%2ex']);
    } finally {
      up.events.off('request', on);
    }
  });

  test('more than 100 request headers -> 431, nothing forwarded', async () => {
    const before = up.requests;
    const many = Array.from({ length: 101 }, (_, i) => `X-H${i}: v\r\n`).join('');
    assert.match(await send('/svc/product/x', many), /^HTTP\/1\.1 431 /);
    const exactly = Array.from({ length: 98 }, (_, i) => `X-H${i}: v\r\n`).join(''); // + Host + Connection = 100
    assert.match(await send('/svc/product/x', exactly), /^HTTP\/1\.1 200 /);
    assert.equal(up.requests, before + 1);
  });

  test('Content-Length after header 2,000 (head under 16 KiB) is never forwarded as a POST without its body: 431', async () => {
    const before = up.requests;
    const many = 'a:v\r\n'.repeat(2001);
    const r = await rawRequest(
      p.port,
      `POST /svc/product/x HTTP/1.1\r\nHost: x\r\n${many}Content-Length: 5\r\nConnection: close\r\n\r\nhello`,
    );
    assert.match(r, /^HTTP\/1\.1 431 /);
    assert.equal(up.requests, before);
  });

  test('a request Trailer header and TE are dropped, not fatal', async () => {
    const r = await send('/svc/product/x', 'Trailer: Expires\r\nTE: trailers\r\n');
    assert.match(r, /^HTTP\/1\.1 200 /);
  });

  test('HTTP/2 prior knowledge gets a GOAWAY HTTP_1_1_REQUIRED an h2 client can read; logged, counted, nothing forwarded', async () => {
    const refused = async (): Promise<number> =>
      Number(/^proxy_protocol_refused_total\{protocol="h2"\} (\d+)$/m.exec((await request(p.adminPort, '/metrics')).body)?.[1] ?? 0);
    const counted = await refused();
    const before = up.requests;
    const session = connect(`http://127.0.0.1:${p.port}`);
    session.on('error', () => {});
    const goaway = new Promise<[number, Buffer | undefined]>((resolve) =>
      session.on('goaway', (code: number, _last: number, data?: Buffer) => resolve([code, data])),
    );
    const stream = session.request({ ':path': '/svc/product/x' });
    stream.on('error', () => {});
    const [code, data] = await goaway;
    assert.equal(code, constants.NGHTTP2_HTTP_1_1_REQUIRED);
    assert.match(String(data), /HTTP\/1\.1 and WebSocket only/);
    session.destroy();
    // A second one: counted too, logged at debug only.
    const second = connect(`http://127.0.0.1:${p.port}`);
    second.on('error', () => {});
    await new Promise((resolve) => second.on('goaway', resolve));
    second.destroy();
    assert.equal(up.requests, before, 'nothing forwarded');
    assert.equal(await refused(), counted + 2, 'one per connection');
    const said = p.logs.find((l) => String(l.msg).startsWith('HTTP/2 is not served'));
    assert.deepEqual(
      said.map((l) => l.level),
      [40, 20],
      'warn once, then debug',
    );
  });

  test(
    'curl --http2-prior-knowledge is told HTTP/1.1 is required, not "Empty reply from server"',
    { skip: !/HTTP2/.test(spawnSync('curl', ['-V'], { encoding: 'utf8' }).stdout ?? '') && 'curl with HTTP/2 not installed' },
    async () => {
      // Async: the proxy runs in this process, so a synchronous curl would wait on a blocked loop.
      const r = await new Promise<{ code: number; stderr: string; stdout: string }>((resolve) =>
        execFile('curl', ['-sv', '--http2-prior-knowledge', `http://127.0.0.1:${p.port}/svc/product/x`], (err, stdout, stderr) =>
          resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
        ),
      );
      assert.doesNotMatch(r.stderr, /Empty reply/);
      assert.notEqual(r.code, 0, r.stdout);
      // curl 7.88 prints the frame it got with -v; error 13 is HTTP_1_1_REQUIRED (RFC 9113 §7).
      assert.match(r.stderr, /GOAWAY, error=13/, r.stderr);
    },
  );

  test('the proxy is alive and forwarding after all of the above', async () => {
    const r = await request(p.port, '/svc/product/ok');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'upstream');
  });
});
