import { performance } from 'node:perf_hooks';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { ServerResponse } from 'node:http';
import {
  concurrent,
  json,
  NumberedCheck,
  request,
  startProxy,
  startUpstream,
  until,
  writeNumbered,
  type RunningProxy,
  type Upstream,
} from '../helpers.js';

/** Requests to `/held` wait here until the test releases them. */
const held: Array<() => void> = [];

/** Fault injection against a real upstream whose behaviour is chosen by path. */
async function faulty(): Promise<Upstream> {
  return startUpstream((req, res) => {
    req.resume();
    const path = req.url ?? '';
    if (path.startsWith('/ok')) return void res.end('ok');
    if (path.startsWith('/held')) return void held.push(() => res.end('ok'));
    if (path.startsWith('/503')) return void res.writeHead(503, { 'retry-after': '7' }).end('busy');
    if (path.startsWith('/reset-before-headers')) return void req.socket.destroy();
    if (path.startsWith('/reset-mid-chunked')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part');
      return void setImmediate(() => req.socket.destroy());
    }
    if (path.startsWith('/reset-mid-length')) {
      res.writeHead(200, { 'content-length': '100' });
      res.write('part');
      return void setImmediate(() => req.socket.destroy());
    }
    if (path.startsWith('/trickle')) {
      // 6 chunks, 80 ms apart: 480 ms in all, well past the 200 ms header timeout.
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const t = setInterval(() => {
        res.write(`chunk${n}\n`);
        if (++n === 6) {
          clearInterval(t);
          res.end();
        }
      }, 80);
      return;
    }
    if (path.startsWith('/stall')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first');
      return; // never more
    }
    if (path.startsWith('/pauses')) {
      // Two pauses of 250 ms: each longer than a 100 ms header timeout, shorter than 400 ms.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('a');
      setTimeout(() => {
        res.write('b');
        setTimeout(() => res.end('c'), 250);
      }, 250);
      return;
    }
    if (path.startsWith('/hang')) return;
    res.writeHead(404).end();
  });
}

describe('fault injection', () => {
  let up: Upstream;
  let p: RunningProxy;
  before(async () => {
    up = await faulty();
    p = await startProxy(
      `defaults: { threshold: 3, cooldown: 60s, timeout: 200ms, bodyIdleTimeout: 300ms }\nservices:\n  product:\n    url: ${up.url}\n`,
    );
  });
  after(async () => {
    await p.close();
    await up.close();
  });
  const b = () => p.proxy.registry.get('product')!;
  const reset = () => b().circuit.forceClose('test');

  test('accepts then resets before headers -> 502 reset', async () => {
    reset();
    const r = await request(p.port, '/svc/product/reset-before-headers');
    assert.equal(r.status, 502);
    assert.match(json(r).detail, /^product unreachable: connection reset before response/);
    assert.equal(b().circuit.consecutiveFailures, 1);
  });

  for (const kind of ['chunked', 'length']) {
    test(`resets mid-body (${kind}) -> the client is cut, failure counted`, async () => {
      reset();
      await assert.rejects(request(p.port, `/svc/product/reset-mid-${kind}`));
      assert.equal(b().circuit.consecutiveFailures, 1);
    });
  }

  test('hangs without headers -> 504 at timeout', async () => {
    reset();
    const r = await request(p.port, '/svc/product/hang');
    assert.equal(r.status, 504);
    assert.equal(json(r).detail, 'product timed out after 200ms');
  });

  test('the header timeout also holds on a pooled keep-alive socket', async () => {
    reset();
    assert.equal((await request(p.port, '/svc/product/ok')).status, 200);
    const before = up.connections;
    const r = await request(p.port, '/svc/product/hang');
    assert.equal(r.status, 504);
    assert.equal(json(r).detail, 'product timed out after 200ms');
    assert.equal(up.connections, before, 'the hanging request went out on the pooled socket');
  });

  test('a body trickling slowly is not cut by the header timeout', async () => {
    reset();
    const r = await request(p.port, '/svc/product/trickle');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'chunk0\nchunk1\nchunk2\nchunk3\nchunk4\nchunk5\n');
    assert.equal(b().circuit.consecutiveFailures, 0);
  });

  test('pauses in a body longer than the header timeout but within bodyIdleTimeout are not cut', async () => {
    const q = await startProxy(`defaults: { timeout: 100ms, bodyIdleTimeout: 400ms }\nservices:\n  product:\n    url: ${up.url}\n`);
    try {
      const r = await request(q.port, '/svc/product/pauses');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'abc');
      assert.equal(q.proxy.registry.get('product')!.circuit.consecutiveFailures, 0);
    } finally {
      await q.close();
    }
  });

  test('a body idle timeout shorter than the header timeout applies from the first byte', async () => {
    const q = await startProxy(`defaults: { timeout: 2s, bodyIdleTimeout: 150ms }\nservices:\n  product:\n    url: ${up.url}\n`);
    try {
      const started = performance.now();
      await assert.rejects(request(q.port, '/svc/product/stall'));
      assert.ok(performance.now() - started < 1500, 'cut at the body idle timeout, not the header timeout');
      assert.equal(q.proxy.registry.get('product')!.circuit.consecutiveFailures, 1);
    } finally {
      await q.close();
    }
  });

  test('a body that stalls longer than bodyIdleTimeout ends the exchange (reset)', async () => {
    reset();
    const started = performance.now();
    await assert.rejects(request(p.port, '/svc/product/stall'));
    assert.ok(performance.now() - started >= 290, 'not before the idle timeout');
    assert.equal(b().circuit.consecutiveFailures, 1);
    assert.ok(p.logs.find((l) => typeof l.msg === 'string' && l.msg.includes('response body stalled for 300ms')).length >= 1);
  });

  test('a 5xx burst: passed through until the circuit opens, then 503 problem', async () => {
    reset();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await request(p.port, '/svc/product/503')).status);
    assert.deepEqual(statuses, [503, 503, 503, 503, 503, 503]);
    assert.equal(b().state, 'open');
    const r = await request(p.port, '/svc/product/503');
    assert.equal(r.headers['content-type'], 'application/problem+json', 'now the proxy answers, not the upstream');
  });

  test('200 concurrent requests at the moment of HALF_OPEN: exactly one upstream request', async () => {
    // A proxy of its own with a timeout that cannot end the held trial while 199 rejections are
    // answered on a loaded machine (the shared one times out at 200 ms).
    const q = await startProxy(`defaults: { threshold: 3, cooldown: 150ms, timeout: 10s }\nservices:\n  product:\n    url: ${up.url}\n`);
    try {
      for (let i = 0; i < 3; i++) await request(q.port, '/svc/product/503');
      await q.nextState('product', 'half_open');
      const before = up.requests;
      const trialArrived = once(up.events, 'request');
      const { all, rejected } = concurrent(q.port, '/svc/product/held', 200, 199);
      // The trial is held upstream while the 199 others are answered (in either order).
      await Promise.all([rejected, trialArrived]);
      assert.equal(up.requests - before, 1);
      held.splice(0).forEach((release) => release());
      const results = await all;
      assert.equal(up.requests - before, 1, 'and no other request reached the upstream afterwards');
      assert.equal(results.filter((r) => r.status === 200).length, 1);
      assert.equal(results.filter((r) => r.status === 503).length, 199);
      assert.equal(q.proxy.registry.get('product')!.state, 'closed');
    } finally {
      await q.close();
    }
  });

  test('a flapping upstream: every request is answered (200/502/503), the breaker opens and recovers', async () => {
    const flap = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    const port = flap.port;
    const p2 = await startProxy(
      `defaults: { threshold: 2, cooldown: 100ms, timeout: 500ms }\nservices:\n  product:\n    url: ${flap.url}\n`,
    );
    const seen = new Set<number>();
    const transitions: string[] = [];
    p2.proxy.registry.on('transition', (t) => transitions.push(t.to));
    let down = false;
    // Bounded: 8 phases of 150 ms, alternating down/up.
    for (let phase = 0; phase < 8; phase++) {
      if (down) {
        flap.server.listen(port, '127.0.0.1');
        await once(flap.server, 'listening');
      } else {
        flap.server.closeAllConnections();
        await new Promise<void>((r) => flap.server.close(() => r()));
      }
      down = !down;
      const until = performance.now() + 150;
      while (performance.now() < until) {
        const r = await request(p2.port, '/svc/product/x');
        seen.add(r.status);
        assert.ok([200, 502, 503].includes(r.status), String(r.status));
      }
    }
    assert.ok(seen.has(200) && seen.has(502) && seen.has(503), [...seen].join(','));
    assert.ok(transitions.includes('open') && transitions.includes('half_open') && transitions.includes('closed'), transitions.join(','));
    await p2.close();
    await flap.close();
  });
});

describe('no leaks', () => {
  test('10,000 mixed-fault requests: sockets return to baseline, no uncaught errors', async () => {
    const up = await faulty();
    const gone = await startUpstream(() => undefined);
    const goneUrl = gone.url;
    await gone.close();
    const p = await startProxy(
      `defaults: { threshold: 5, cooldown: 100ms, timeout: 300ms }\nservices:\n  product:\n    url: ${up.url}\n  dead:\n    url: ${goneUrl}\n`,
    );
    let uncaught = 0;
    const onErr = (): void => void uncaught++;
    process.on('uncaughtException', onErr);
    process.on('unhandledRejection', onErr);
    const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const baseline = sockets();
    const paths = [
      '/svc/product/ok',
      '/svc/product/503',
      '/svc/product/reset-before-headers',
      '/svc/product/reset-mid-chunked',
      '/svc/dead/x',
      '/svc/nope/x',
      '/svc/product/../x',
      'abort',
    ];
    let next = 0;
    const statuses = new Map<string, number>();
    const worker = async (): Promise<void> => {
      while (next < 10_000) {
        const path = paths[next++ % paths.length]!;
        if (path === 'abort') {
          await new Promise<void>((resolve) => {
            const req = httpRequest({ host: '127.0.0.1', port: p.port, path: '/svc/product/hang', agent: false });
            req.on('error', () => resolve());
            req.on('close', () => resolve());
            req.end();
            setImmediate(() => req.destroy());
          });
          continue;
        }
        const r = await request(p.port, path).then(
          (x) => String(x.status),
          () => 'cut',
        );
        statuses.set(r, (statuses.get(r) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    await p.close();
    await up.close();
    process.off('uncaughtException', onErr);
    process.off('unhandledRejection', onErr);
    assert.equal(uncaught, 0);
    assert.ok(
      statuses.get('200')! > 0 && statuses.get('502')! > 0 && statuses.get('404')! > 0 && statuses.get('400')! > 0,
      JSON.stringify([...statuses]),
    );
    // Sockets close asynchronously after their last byte; wait for them (bounded).
    const start = performance.now();
    while (sockets() > baseline && performance.now() - start < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.ok(sockets() <= baseline, `sockets ${sockets()} > baseline ${baseline}`);
  });
});

describe('a client that reads slowly', () => {
  const TOTAL = 32 * 1024 * 1024;
  let written = 0;
  let up: Upstream;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      // 32 MiB, numbered chunks, honouring back-pressure.
      written = 0;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) });
      writeNumbered(res, TOTAL, (sent) => (written = sent));
    });
  });
  after(() => up.close());

  /** Resolves once the upstream has written nothing more for 250 ms (bounded by 10 s). */
  async function upstreamStalls(): Promise<void> {
    let last = -1;
    let quiet = 0;
    for (const start = performance.now(); quiet < 10;) {
      assert.ok(performance.now() - start < 10_000, 'the upstream never stalled');
      await new Promise((r) => setTimeout(r, 25));
      quiet = written === last ? quiet + 1 : 0;
      last = written;
    }
  }

  test('holds the upstream back (back-pressure), is not a stalled upstream, and gets every byte', async () => {
    // bodyIdleTimeout far below the client's pause: a slow reader must not count against the upstream.
    const p = await startProxy(`defaults: { bodyIdleTimeout: 150ms }\nservices:\n  product:\n    url: ${up.url}\n`);
    try {
      let proxied: ServerResponse | undefined;
      p.proxy.server.once('request', (_req, res) => (proxied = res));
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: p.port, path: '/svc/product/big', agent: false }, resolve);
        req.on('error', reject);
        req.end();
      });
      res.pause();
      await upstreamStalls(); // the client has read nothing for 250 ms: longer than bodyIdleTimeout
      assert.ok(written < TOTAL, 'the upstream wrote everything: nothing held it back');
      assert.ok(proxied!.writableLength < 1024 * 1024, `${proxied!.writableLength} bytes buffered in the proxy`);
      const check = new NumberedCheck();
      res.on('data', (c: Buffer) => check.add(c));
      res.resume();
      await once(res, 'end');
      assert.equal(check.received, TOTAL);
      assert.equal(check.wrong, 0);
      assert.equal(p.proxy.registry.get('product')!.circuit.consecutiveFailures, 0);
      assert.equal(p.logs.find((l) => (l.level as number) >= 40).length, 0, 'no failure logged');
    } finally {
      await p.close();
    }
  });
});

describe('an upstream that reads an upload slowly', () => {
  const TOTAL = 32 * 1024 * 1024;
  let up: Upstream;
  /** The upstream's request stream, paused until the test lets it read. */
  let incoming: IncomingMessage | undefined;
  let arrived: (req: IncomingMessage) => void = () => undefined;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.pause();
      incoming = req;
      arrived(req);
      const check = new NumberedCheck();
      req.on('data', (c: Buffer) => check.add(c));
      req.on('end', () => res.end(JSON.stringify({ received: check.received, wrong: check.wrong })));
    });
  });
  after(() => up.close());

  test('holds the client back (back-pressure), several pauses in a row, and passes every byte in order', async () => {
    // bodyIdleTimeout far below the upstream's pauses: bytes queued for an upstream that will not
    // take them are the upstream's to answer for only when nothing moves at all (docs/behaviour.md).
    const p = await startProxy(`defaults: { bodyIdleTimeout: 5s }\nservices:\n  product:\n    url: ${up.url}\n`);
    try {
      let written = 0;
      const got = new Promise<IncomingMessage>((resolve) => (arrived = resolve));
      const reply = new Promise<string>((resolve, reject) => {
        const req = httpRequest(
          { host: '127.0.0.1', port: p.port, path: '/svc/product/upload', method: 'PUT', agent: false },
          (res: IncomingMessage) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve(body));
          },
        );
        req.on('error', reject);
        writeNumbered(req, TOTAL, (sent) => (written = sent));
      });
      const req = await got;
      // Three times: the client stops once the buffers between it and the paused upstream are
      // full, and moves again when the upstream reads.
      for (let round = 0; round < 3; round++) {
        let last = -1;
        for (let quiet = 0; quiet < 6;) {
          await new Promise((r) => setTimeout(r, 25));
          quiet = written === last ? quiet + 1 : 0;
          last = written;
        }
        assert.ok(written < TOTAL, `round ${round}: the client wrote everything: nothing held it back`);
        const held = written;
        // The upstream reads until the client has moved again (the pause reached it through the proxy).
        req.resume();
        await until(() => written > held, `round ${round}: the client moved again once the upstream read`, 10_000);
        req.pause();
      }
      incoming!.resume();
      const body = JSON.parse(await reply) as { received: number; wrong: number };
      assert.deepEqual(body, { received: TOTAL, wrong: 0 });
      assert.equal(p.proxy.registry.get('product')!.circuit.consecutiveFailures, 0);
    } finally {
      await p.close();
    }
  });
});
