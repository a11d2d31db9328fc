/** Retries (docs/retries.md) over real sockets: what is retried, what never is, the replay, the circuit and the budget. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import type { Completed } from '../../src/proxy/call.js';
import {
  json,
  metricValue,
  request,
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

async function upstream(handler: Handler): Promise<Upstream> {
  const up = await startUpstream(handler);
  opened.push(up);
  return up;
}

/** What an upstream received: method, framing headers and the body bytes. */
interface Seen {
  method: string;
  contentLength: string | undefined;
  transferEncoding: string | undefined;
  body: Buffer;
}

/** An upstream that records each request in full, then answers with `answer`. */
async function recording(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream & { seen: Seen[] }> {
  const seen: Seen[] = [];
  const up = await upstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method!,
        contentLength: req.headers['content-length'],
        transferEncoding: req.headers['transfer-encoding'],
        body: Buffer.concat(chunks),
      });
      answer(req, res);
    });
  });
  return Object.assign(up, { seen });
}

const ok = (): Promise<Upstream & { seen: Seen[] }> => recording((_req, res) => res.end('ok'));
const unavailable = (): Promise<Upstream & { seen: Seen[] }> =>
  recording((_req, res) => res.writeHead(503, { 'content-type': 'text/plain' }).end('down'));

/** A port nothing listens on (taken, then given back): a connection to it is refused. */
async function refusedUrl(): Promise<string> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

/** Every call's record (the access log's fields), by request id. */
const records = new WeakMap<RunningProxy, Completed[]>();

/** The record of the call with this request id, once the call has ended (its client response closed). */
async function recordOf(p: RunningProxy, match: (c: Completed) => boolean): Promise<Completed> {
  const list = records.get(p)!;
  await until(() => list.some(match), 'the call to end');
  return list.find(match)!;
}
const byId = (r: { headers: IncomingHttpHeaders }) => (c: Completed) => c.requestId === r.headers['x-request-id'];

/** A proxy with one service `svc` over these endpoints (round-robin from the first) and this retry rule. */
async function proxy(urls: readonly string[], extra: string): Promise<RunningProxy> {
  const list = urls.map((u) => `      - ${u}\n`).join('');
  const p = await startProxy(`services:\n  svc:\n    endpoints:\n${list}${extra}`);
  opened.push(p);
  const list2: Completed[] = [];
  records.set(p, list2);
  p.proxy.handler.on('completed', (c) => list2.push(c));
  return p;
}

const RETRIES = '    retries: { attempts: 2, backoff: { base: 1ms, max: 5ms } }\n';

describe('a write is never sent twice', () => {
  test('a POST that got a 503 reaches the upstream once; the client gets that 503 as it came', async () => {
    const a = await unavailable();
    const b = await ok();
    const p = await proxy([a.url, b.url], RETRIES);
    const r = await request(p.port, '/svc/svc/pay', { method: 'POST', body: '{"amount":1}' });
    assert.equal(r.status, 503);
    assert.equal(r.body, 'down');
    assert.equal(r.headers['x-circuit-attempts'], undefined);
    assert.equal(a.requests + b.requests, 1, 'one upstream request in all');
    const c = await recordOf(p, byId(r));
    assert.equal(c.attempts, 1);
    assert.equal(c.noRetry, 'not-idempotent');
  });

  test('a POST that timed out reaches the upstream once (504)', async () => {
    const slow = await upstream((req) => req.resume()); // never answers
    const b = await ok();
    const p = await proxy([slow.url, b.url], `${RETRIES}    timeout: 300ms\n`);
    const r = await request(p.port, '/svc/svc/pay', { method: 'POST', body: 'x' });
    assert.equal(r.status, 504);
    assert.equal(slow.requests, 1);
    assert.equal(b.requests, 0);
  });

  test('a POST whose connection was reset after it was written reaches the upstream once (502)', async () => {
    const reset = await upstream((req) => {
      req.resume();
      req.on('end', () => req.socket.resetAndDestroy());
    });
    const b = await ok();
    const p = await proxy([reset.url, b.url], RETRIES);
    const r = await request(p.port, '/svc/svc/pay', { method: 'POST', body: 'x' });
    assert.equal(r.status, 502);
    assert.equal(reset.requests, 1);
    assert.equal(b.requests, 0);
  });

  test('a POST whose connection was refused is retried and reaches the healthy endpoint once', async () => {
    const b = await ok();
    const p = await proxy([await refusedUrl(), b.url], RETRIES);
    const r = await request(p.port, '/svc/svc/pay', { method: 'POST', body: '{"amount":1}' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-circuit-attempts'], '2');
    assert.equal(b.seen.length, 1);
    assert.equal(b.seen[0]!.body.toString(), '{"amount":1}');
    assert.equal(await metricValue(p, 'proxy_retries_total{reason="connect",service="svc"}'), 1);
  });

  test('a POST with Idempotency-Key that got a 503 is retried: the body replayed byte for byte, Content-Length as sent', async () => {
    const a = await unavailable();
    const b = await ok();
    const p = await proxy([a.url, b.url], RETRIES);
    const body = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
    const r = await request(p.port, '/svc/svc/pay', { method: 'POST', body, headers: { 'idempotency-key': 'k-1' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-circuit-attempts'], '2');
    assert.deepEqual([a.seen.length, b.seen.length], [1, 1]);
    for (const s of [a.seen[0]!, b.seen[0]!]) {
      assert.equal(s.contentLength, '3000');
      assert.ok(s.body.equals(body));
    }
  });

  test('a chunked PUT that got a 503 is retried with the same bytes, chunked again', async () => {
    const a = await unavailable();
    const b = await ok();
    const p = await proxy([a.url, b.url], RETRIES);
    const r = await new Promise<{ status: number; attempts: string | undefined }>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: p.port, path: '/svc/svc/doc', method: 'PUT', agent: false, headers: { 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, attempts: res.headers['x-circuit-attempts'] as string | undefined }));
        },
      );
      req.on('error', reject);
      req.write('part one, ');
      req.end('part two');
    });
    assert.deepEqual(r, { status: 200, attempts: '2' });
    for (const s of [a.seen[0]!, b.seen[0]!]) {
      assert.equal(s.transferEncoding, 'chunked');
      assert.equal(s.contentLength, undefined);
      assert.equal(s.body.toString(), 'part one, part two');
    }
  });
});

describe('idempotent requests', () => {
  test('a GET that got a 503 is retried on another endpoint: 200 with X-Circuit-Attempts: 2', async () => {
    const a = await unavailable();
    const b = await ok();
    const p = await proxy([a.url, b.url], RETRIES);
    const r = await request(p.port, '/svc/svc/stock');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
    assert.equal(r.headers['x-circuit-attempts'], '2');
    assert.deepEqual([a.requests, b.requests], [1, 1]);
    assert.equal(await metricValue(p, 'proxy_retries_total{reason="503",service="svc"}'), 1);
    const c = await recordOf(p, byId(r));
    assert.equal(c.attempts, 2);
    assert.equal(c.outcome, 'success');
    const retry = p.logs.find((l) => l.requestId === r.headers['x-request-id'] && l.attempt === 2);
    assert.equal(retry[0]!.endpoint, `127.0.0.1:${a.port}`);
    // Each attempt counted for its endpoint (and the circuit: one failure so far).
    assert.equal(p.proxy.registry.get('svc')!.circuit.snapshot().consecutiveFailures, 0, 'the success after it reset the count');
    const stats = json(await request(p.adminPort, '/stats')).services[0];
    assert.deepEqual(stats.retries, { total: 1, exhausted: 0, inFlight: 0 });
  });

  test('every attempt failing: the client gets the last one, with the number of attempts', async () => {
    const a = await unavailable();
    const b = await unavailable();
    const p = await proxy([a.url, b.url], `${RETRIES}    threshold: 10\n`);
    const r = await request(p.port, '/svc/svc/stock');
    assert.equal(r.status, 503);
    assert.equal(r.body, 'down');
    assert.equal(r.headers['x-circuit-attempts'], '3');
    assert.equal(a.requests + b.requests, 3);
    assert.equal(p.proxy.registry.get('svc')!.circuit.snapshot().consecutiveFailures, 3, 'each attempt counted');
  });

  test('a body over bufferBytes is not retried, and streams to the upstream before the client has sent it all', async () => {
    let sawData!: () => void;
    const upstreamHasData = new Promise<void>((r) => (sawData = r));
    const a = await upstream((req, res) => {
      req.once('data', () => sawData());
      req.resume();
      req.on('end', () => res.writeHead(503).end('down'));
    });
    const b = await ok();
    const p = await proxy([a.url, b.url], '    retries: { attempts: 2, backoff: { base: 1ms, max: 5ms }, bufferBytes: 1KiB }\n');
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: p.port, path: '/svc/svc/doc', method: 'PUT', agent: false, headers: { 'content-length': '4096' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        },
      );
      req.on('error', reject);
      req.write(Buffer.alloc(2048, 1));
      // The rest only once the upstream has the first part: the proxy did not wait for the whole body.
      void upstreamHasData.then(() => req.end(Buffer.alloc(2048, 2)));
    });
    assert.equal(status, 503);
    assert.deepEqual([a.requests, b.requests], [1, 0]);
    assert.equal((await recordOf(p, (c) => c.path === '/svc/svc/doc')).noRetry, 'body');
  });

  test('a response already started is never retried: the body cut mid-way resets the client', async () => {
    const a = await upstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setImmediate(() => res.socket!.resetAndDestroy());
    });
    const b = await ok();
    const p = await proxy([a.url, b.url], RETRIES);
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: p.port, path: '/svc/svc/big', agent: false }, (res) => {
        res.resume();
        res.on('error', (e) => resolve(e));
        res.on('end', () => resolve(undefined));
      });
      req.on('error', (e) => resolve(e));
      req.end();
    });
    assert.ok(err !== undefined, 'the client saw the cut');
    assert.deepEqual([a.requests, b.requests], [1, 0]);
  });

  test('an open circuit ends the loop: the client gets the upstream 503 that opened it, not a 503 of ours', async () => {
    const a = await unavailable();
    const b = await ok();
    const p = await proxy([a.url, b.url], `${RETRIES}    threshold: 1\n`);
    const r = await request(p.port, '/svc/svc/stock');
    assert.equal(r.status, 503);
    assert.equal(r.body, 'down', "the upstream's own answer");
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers['x-circuit-attempts'], undefined, 'one attempt was made');
    assert.deepEqual([a.requests, b.requests], [1, 0]);
    assert.equal(p.proxy.registry.get('svc')!.state, 'open');
    assert.equal((await recordOf(p, byId(r))).noRetry, 'circuit');
  });

  test('a connect failure with the circuit opening: the 502 of that failure, never "Circuit open"', async () => {
    const b = await ok();
    const p = await proxy([await refusedUrl(), b.url], `${RETRIES}    threshold: 1\n`);
    const r = await request(p.port, '/svc/svc/stock');
    assert.equal(r.status, 502);
    assert.match(json(r).detail, /unreachable: connect ECONNREFUSED/);
    assert.equal(b.requests, 0);
  });

  test('an upstream Retry-After longer than backoff.max means no retry', async () => {
    const a = await recording((_req, res) => res.writeHead(503, { 'retry-after': '5' }).end('later'));
    const b = await ok();
    const p = await proxy([a.url, b.url], RETRIES);
    const r = await request(p.port, '/svc/svc/stock');
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '5');
    assert.deepEqual([a.requests, b.requests], [1, 0]);
  });

  test('a status not in `on` is not retried; a client that leaves during the backoff ends the loop', async () => {
    const a = await recording((_req, res) => res.writeHead(500).end('boom'));
    const b = await ok();
    const p = await proxy([a.url, b.url], RETRIES);
    const r = await request(p.port, '/svc/svc/stock');
    assert.equal(r.status, 500);
    assert.deepEqual([a.requests, b.requests], [1, 0]);

    const c = await unavailable();
    const p2 = await proxy([c.url, b.url], '    retries: { attempts: 2, backoff: { base: 1h, max: 1h } }\n');
    const retrying = new Promise<void>((resolve) => p2.proxy.handler.once('retry', () => resolve()));
    const req = httpRequest({ host: '127.0.0.1', port: p2.port, path: '/svc/svc/stock', agent: false });
    req.on('error', () => {});
    req.end();
    await retrying;
    const completed = new Promise<{ status: number; outcome: string }>((resolve) => p2.proxy.handler.once('completed', resolve));
    req.destroy();
    const done = await completed;
    assert.deepEqual([done.status, done.outcome], [499, 'abandoned']);
    assert.equal(b.requests, 0, 'the retry never started');
    assert.equal(p2.proxy.registry.get('svc')!.retryBudget.inFlight, 0, 'its budget place given back');
  });
});

describe('the retry budget', () => {
  test('against an upstream failing half its requests, retries stay within ratio x in flight or minPerSecond', async () => {
    let n = 0;
    // Every other request fails; a connection per request so no keep-alive order skews it.
    const flaky = await upstream((req, res) => {
      req.resume();
      n += 1;
      if (n % 2 === 1) res.writeHead(503).end('down');
      else res.end('ok');
    });
    const p = await proxy(
      [flaky.url],
      '    threshold: 1000000\n    retries: { attempts: 2, backoff: { base: 1ms, max: 2ms }, budget: { ratio: 20%, minPerSecond: 5 } }\n',
    );
    const clients = 20;
    const each = 15;
    let sent = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let i = 0; i < each; i++) {
          sent += 1;
          await request(p.port, `/svc/svc/r${i}`);
        }
      }),
    );
    const seconds = Math.ceil((performance.now() - started) / 1000) + 1;
    const retries = flaky.requests - sent;
    const budget = p.proxy.registry.get('svc')!.retryBudget;
    assert.equal(retries, budget.started, 'the upstream saw one request per attempt');
    assert.ok(budget.exhausted > 0, 'the budget refused some');
    // Upstream rate <= (1 + ratio) x the client's + minPerSecond, over the whole run.
    assert.ok(flaky.requests <= 1.2 * sent + 5 * seconds, `${flaky.requests} upstream requests for ${sent} sent in ~${seconds}s`);
    assert.equal(await metricValue(p, 'proxy_retry_budget_exhausted_total{service="svc"}'), budget.exhausted);
    assert.equal(budget.inFlight, 0);
  });
});
