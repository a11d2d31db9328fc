/**
 * Early answers (docs/behaviour.md, "Early answers"): an upstream that answers before reading the
 * body and closes has its answer forwarded and counted by status, not a 502 reset.
 *
 * `Expect: 100-continue` is the upstream's to answer (docs/behaviour.md, "Expect: 100-continue"):
 * its 100 is relayed and the client's body follows only then; its final answer without a 100
 * reaches the client before any body is sent; an upstream that says nothing gets the body after
 * the proxy's own 100 (1 s, as curl waits). A raw client sends its body only on a 100.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startProxy, startUpstream, type RunningProxy, type Upstream } from '../helpers.js';

interface Exchange {
  /** What the client read, 100s included. */
  readonly text: string;
  /** Whether a 100 came, so the client sent its body. */
  readonly sentBody: boolean;
}

/** A client that announces `bytes` of body with Expect: 100-continue and sends it on a 100 only. */
function expecting(port: number, path: string, bytes: number): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let text = '';
    let sentBody = false;
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (!sentBody && /^HTTP\/1\.1 100 /.test(text)) {
        sentBody = true;
        s.write(Buffer.alloc(bytes, 0x61));
      }
    });
    s.on('close', () => resolve({ text, sentBody }));
    s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: ${bytes}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`);
  });
}

describe('Expect: 100-continue through the proxy', () => {
  let rejecting: Upstream;
  let accepting: Upstream;
  let silent: Upstream;
  let p: RunningProxy;
  const expectations: Record<string, Array<string | undefined>> = { rejecting: [], accepting: [], silent: [] };
  let gone = '';

  before(async () => {
    const echo = (req: IncomingMessage, res: ServerResponse): void => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`got ${n}`));
    };
    rejecting = await startUpstream(echo);
    accepting = await startUpstream(echo);
    silent = await startUpstream(echo);
    // The upstream decides from the head alone: too large, without reading a byte of body.
    rejecting.server.on('checkContinue', (req, res) => {
      expectations.rejecting!.push(req.headers.expect);
      res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' });
      res.end('too large');
    });
    // Node's default (no checkContinue listener) sends 100 at once: listen only to record.
    accepting.events.on('request', (req: IncomingMessage) => expectations.accepting!.push(req.headers.expect));
    // Implements no expectation: waits for the body without a 100.
    silent.server.on('checkContinue', (req, res) => {
      expectations.silent!.push(req.headers.expect);
      echo(req, res);
    });
    const down = await startUpstream(() => undefined);
    gone = down.url;
    await down.close();
    p = await startProxy(
      [
        'defaults: { threshold: 1, cooldown: 60s }',
        'services:',
        `  rejecting: { url: "${rejecting.url}" }`,
        `  accepting: { url: "${accepting.url}" }`,
        `  silent: { url: "${silent.url}" }`,
        `  down: { url: "${gone}" }`,
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    await p.close();
    for (const u of [rejecting, accepting, silent]) await u.close();
  });

  test("the upstream's final answer without a 100 reaches the client before any body is sent; not a failure", async () => {
    const x = await expecting(p.port, '/svc/rejecting/upload', 2_000_000);
    assert.match(x.text, /^HTTP\/1\.1 413 /, x.text);
    assert.ok(!x.sentBody, 'no 100: the client never sent its 2 MB');
    assert.match(x.text, /too large/);
    assert.deepEqual(expectations.rejecting, ['100-continue'], 'the expectation was forwarded');
    assert.equal(p.proxy.registry.get('rejecting')!.state, 'closed');
  });

  test("the upstream's 100 is relayed; the body follows and arrives whole", async () => {
    const x = await expecting(p.port, '/svc/accepting/upload', 100_000);
    assert.ok(x.sentBody);
    assert.match(x.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, x.text);
    assert.match(x.text, /got 100000$/);
    assert.deepEqual(expectations.accepting, ['100-continue']);
  });

  test('an upstream that implements no expectation gets the body after the proxy sends its own 100', async () => {
    const x = await expecting(p.port, '/svc/silent/upload', 50_000);
    assert.ok(x.sentBody);
    assert.match(x.text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, x.text);
    assert.match(x.text, /got 50000$/);
    assert.deepEqual(expectations.silent, ['100-continue']);
  });

  test('an unreachable upstream, then an open circuit: 502, then 503, and no 100 either time', async () => {
    const first = await expecting(p.port, '/svc/down/upload', 10_000);
    assert.match(first.text, /^HTTP\/1\.1 502 /, first.text);
    assert.ok(!first.sentBody);
    const second = await expecting(p.port, '/svc/down/upload', 10_000);
    assert.match(second.text, /^HTTP\/1\.1 503 /, second.text);
    assert.match(second.text, /x-circuit-open: down/i);
    assert.ok(!second.sentBody);
  });

  test('without Expect nothing changes: no 100, the body forwarded as sent', async () => {
    const before = expectations.accepting!.length;
    const r = await fetch(`http://127.0.0.1:${p.port}/svc/accepting/plain`, { method: 'POST', body: 'x'.repeat(1000) });
    assert.equal(await r.text(), 'got 1000');
    assert.deepEqual(expectations.accepting!.slice(before), [undefined]);
  });
});

const hasCurl = spawnSync('curl', ['--version']).status === 0;

/** curl uploads `file` with no Expect (as Python requests and Node's fetch send): status code, or 0. */
function curlUpload(url: string, file: string): Promise<number> {
  return new Promise((resolve) =>
    execFile('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Expect:', '-T', file, '-X', 'POST', url], (_err, out) =>
      resolve(Number(out) || 0),
    ),
  );
}

describe('an upstream that answers before reading the body and closes', { skip: !hasCurl && 'curl not installed' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-early-'));
  const file = join(dir, 'upload.bin');
  const empty = join(dir, 'empty.bin');
  let early: Upstream;
  let hangsUp: Upstream;
  let p: RunningProxy;
  before(async () => {
    writeFileSync(file, Buffer.alloc(2_000_000, 0x62));
    writeFileSync(empty, '');
    // Node's own server: answers from the head, Connection: close, never reads the body (its
    // socket then closes with unread bytes: a reset for whoever is still writing).
    early = await startUpstream((_req, res) => {
      res.writeHead(413, { 'content-type': 'text/plain', 'content-length': '9', connection: 'close' });
      res.end('too large');
    });
    // Resets the connection without any answer: that stays a reset failure.
    hangsUp = await startUpstream((req) => req.socket.resetAndDestroy());
    p = await startProxy(
      `defaults: { threshold: 3, cooldown: 60s }\nservices:\n  early: { url: "${early.url}" }\n  hangsup: { url: "${hangsUp.url}" }\n`,
    );
  });
  after(async () => {
    await p.close();
    await early.close();
    await hangsUp.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('five 2 MB uploads get the 413 the upstream sends, counted by status: the circuit stays closed', async () => {
    // What the upstream answers, shown with an empty body (nothing left unread). A 2 MB upload sent to it
    // directly races its reset: curl sees 413 or, when the RST lands first, nothing (status 0, as
    // CI once did); taking that race away from the client is the proxy's part.
    const direct = await curlUpload(`${early.url}/upload`, empty);
    assert.equal(direct, 413, 'direct');
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) codes.push(await curlUpload(`http://127.0.0.1:${p.port}/svc/early/upload`, file));
    assert.deepEqual(codes, [413, 413, 413, 413, 413]);
    const b = p.proxy.registry.get('early')!;
    assert.equal(b.state, 'closed');
    assert.equal(p.logs.find((l) => l.service === 'early' && l.reason === 'reset').length, 0, 'no reset counted');
  });

  test("Python's http.server answering 413 from the head and closing: 413 three times, the circuit closed", async (t) => {
    if (spawnSync('python3', ['--version']).status !== 0) return t.skip('python3 not installed');
    const script = [
      'import http.server',
      'class H(http.server.BaseHTTPRequestHandler):',
      '    def do_POST(self):',
      '        self.send_error(413)',
      '    def log_message(self, *a):',
      '        pass',
      "s = http.server.HTTPServer(('127.0.0.1', 0), H)",
      'print(s.server_address[1], flush=True)',
      's.serve_forever()',
    ].join('\n');
    const py = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const port = await new Promise<number>((resolve) => py.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
      const url = `http://127.0.0.1:${port}`;
      // The control sends no body: a 2 MB one sent directly races Python's reset (the test above).
      assert.equal(await curlUpload(`${url}/upload`, empty), 413, 'direct');
      const q = await startProxy(`defaults: { threshold: 3, cooldown: 60s }\nservices:\n  py: { url: "${url}" }\n`);
      try {
        const codes: number[] = [];
        for (let i = 0; i < 3; i++) codes.push(await curlUpload(`http://127.0.0.1:${q.port}/svc/py/upload`, file));
        assert.deepEqual(codes, [413, 413, 413]);
        assert.equal(q.proxy.registry.get('py')!.state, 'closed');
      } finally {
        await q.close();
      }
    } finally {
      py.kill();
    }
  });

  test('a reset with no answer is still a reset failure (502), and three open the circuit', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) codes.push(await curlUpload(`http://127.0.0.1:${p.port}/svc/hangsup/upload`, file));
    assert.deepEqual(codes, [502, 502, 502]);
    assert.equal(p.proxy.registry.get('hangsup')!.state, 'open');
  });
});
