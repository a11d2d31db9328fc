/** The retry rule (docs/retries.md) from tables: what may be retried, the wait, the budget (injected clock), the config. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { failed, type OutcomeFields } from '../../src/outcome.js';
import { isIdempotent, mayRetry, retryDelay, RetryBudget, type RetryAsk, type RetryRule } from '../../src/policy/retry.js';

const RULE: RetryRule = {
  attempts: 2,
  on: ['connect', 'reset', 'timeout', 502, 503, 504],
  baseMs: 25,
  maxMs: 250,
  budgetRatio: 0.2,
  minPerSecond: 10,
  bufferBytes: 65536,
};

const CONNECT: OutcomeFields = { reason: 'connect', cause: 'connect ECONNREFUSED' };
const TLS: OutcomeFields = { reason: 'connect', cause: 'tls CERT_HAS_EXPIRED' };
const RESET: OutcomeFields = { reason: 'reset', cause: 'connection reset before response' };
const TIMEOUT: OutcomeFields = { reason: 'timeout', cause: 'no response headers within 5s' };
const S503: OutcomeFields = { reason: 'status', cause: 'status 503', status: 503 };
const S500: OutcomeFields = { reason: 'status', cause: 'status 500', status: 500 };
const S503_LATER: OutcomeFields = { reason: 'status', cause: 'status 503', status: 503, retryAfterMs: 1000 };
const S503_SOON: OutcomeFields = { reason: 'status', cause: 'status 503', status: 503, retryAfterMs: 100 };

function ask(method: string, o: OutcomeFields, more: Partial<RetryAsk> = {}): RetryAsk {
  return {
    rule: RULE,
    attempts: 1,
    outcome: failed(o),
    method,
    hasIdempotencyKey: false,
    replayable: true,
    clientGone: false,
    ...more,
  };
}

describe('what may be retried (method x failure x body x attempts)', () => {
  const rows: Array<[string, RetryAsk, string]> = [
    ['GET, connect refused', ask('GET', CONNECT), 'connect'],
    ['POST, connect refused: nothing was written', ask('POST', CONNECT), 'connect'],
    ['PATCH, TLS handshake failed: nothing was written', ask('PATCH', TLS), 'connect'],
    ['GET, reset', ask('GET', RESET), 'reset'],
    ['POST, reset after it was written', ask('POST', RESET), 'no: not-idempotent'],
    ['POST, timeout', ask('POST', TIMEOUT), 'no: not-idempotent'],
    ['POST, 503', ask('POST', S503), 'no: not-idempotent'],
    ['PATCH, 503', ask('PATCH', S503), 'no: not-idempotent'],
    ['POST with Idempotency-Key, 503', ask('POST', S503, { hasIdempotencyKey: true }), '503'],
    ['PUT, 503', ask('PUT', S503), '503'],
    ['DELETE, timeout', ask('DELETE', TIMEOUT), 'timeout'],
    ['HEAD, 503', ask('HEAD', S503), '503'],
    ['GET, 500 (not in on)', ask('GET', S500), 'no: not-listed'],
    ['GET, 503, body over bufferBytes', ask('GET', S503, { replayable: false }), 'no: body'],
    ['POST, connect refused, body over bufferBytes', ask('POST', CONNECT, { replayable: false }), 'no: body'],
    ['GET, 503 with Retry-After above backoff.max', ask('GET', S503_LATER), 'no: retry-after'],
    ['GET, 503 with Retry-After within backoff.max', ask('GET', S503_SOON), '503'],
    ['GET, 503, third attempt failed (attempts: 2)', ask('GET', S503, { attempts: 3 }), 'no: attempts'],
    ['GET, 503, second attempt failed', ask('GET', S503, { attempts: 2 }), '503'],
    ['GET, client gone', ask('GET', S503, { clientGone: true }), 'no: client-gone'],
    ['GET, no rule', ask('GET', S503, { rule: undefined }), 'no: off'],
    ['GET, attempts: 0', ask('GET', S503, { rule: { ...RULE, attempts: 0 } }), 'no: off'],
  ];
  for (const [name, a, expected] of rows) {
    test(`${name} -> ${expected}`, () => {
      const v = mayRetry(a);
      assert.equal(v.retry ? v.reason : `no: ${v.why}`, expected);
    });
  }

  test('idempotent methods as RFC 9110 §9.2.2 lists them', () => {
    const yes = ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'].filter((m) => isIdempotent(m, false));
    const no = ['POST', 'PATCH', 'CONNECT', 'get'].filter((m) => !isIdempotent(m, false));
    assert.equal(yes.length, 6);
    assert.equal(no.length, 4, 'methods are case-sensitive (RFC 9110 §9.1)');
    assert.ok(isIdempotent('POST', true));
  });
});

describe('the wait before a retry: full jitter, at least a Retry-After', () => {
  const rows: Array<[number, number, number | undefined, number]> = [
    // [retry n, random, retryAfterMs, expected ms]
    [1, 0, undefined, 0],
    [1, 0.5, undefined, 12],
    [1, 0.999, undefined, 24],
    [2, 0.5, undefined, 25],
    [3, 0.5, undefined, 50],
    [5, 0.999, undefined, 249],
    [9, 0.999, undefined, 249],
    [1, 0.1, 100, 100],
    [3, 0.9, 100, 100],
    [3, 0.9, 50, 90],
  ];
  for (const [n, r, after, expected] of rows) {
    test(`retry ${n}, random ${r}, Retry-After ${after ?? '-'} -> ${expected}ms`, () => {
      assert.equal(
        retryDelay(n, RULE, after, () => r),
        expected,
      );
    });
  }
});

describe('the retry budget (injected clock)', () => {
  test('ratio of requests in flight, else minPerSecond per second; places given back', () => {
    let now = 0;
    const b = new RetryBudget(() => now);
    // 100 in flight, ratio 20%: 20 retries at once; a floor of 2 per second past that.
    const granted: boolean[] = [];
    for (let i = 0; i < 23; i++) granted.push(b.acquire('503', 0.2, 2, 100));
    assert.equal(granted.filter(Boolean).length, 20, 'the floor is spent by the first ones in this second');
    assert.equal(b.exhausted, 3);
    now = 1000;
    assert.equal(b.acquire('503', 0.2, 2, 100), true, 'a new second: the floor again');
    assert.equal(b.acquire('503', 0.2, 2, 100), true);
    assert.equal(b.acquire('503', 0.2, 2, 100), false);
    for (let i = 0; i < 22; i++) b.release();
    assert.equal(b.inFlight, 0);
    assert.equal(b.acquire('connect', 0.2, 2, 100), true, 'room by ratio again');
    assert.equal(b.started, 23);
    assert.deepEqual(
      [...b.byReason],
      [
        ['503', 22],
        ['connect', 1],
      ],
    );
  });

  test('few requests in flight: the per-second floor lets a quiet service retry', () => {
    let now = 5000;
    const b = new RetryBudget(() => now);
    const rows: Array<[number, boolean]> = [
      [5000, true],
      [5100, true],
      [5999, false],
      [6000, true],
    ];
    for (const [at, expected] of rows) {
      now = at;
      assert.equal(b.acquire('reset', 0.2, 2, 1), expected, `at ${at}`);
    }
  });
});

describe('config', () => {
  test('off unless set; `retries: {}` takes every default; a service rule replaces the defaults rule whole', () => {
    const c = parseConfig(
      'defaults:\n  retries: { attempts: 1, on: [connect] }\nservices:\n  a: { url: http://a:1 }\n  b: { url: http://b:1, retries: {} }\n  c: { url: http://c:1, retries: { attempts: 0 } }\n',
      {},
    );
    assert.deepEqual({ ...c.services.get('a')!.call.retries }, { ...RULE, attempts: 1, on: ['connect'] });
    assert.deepEqual({ ...c.services.get('b')!.call.retries }, RULE);
    assert.equal(c.services.get('c')!.call.retries, undefined, 'attempts: 0 is off');
    assert.equal(parseConfig('services:\n  a: { url: http://a:1 }\n', {}).services.get('a')!.call.retries, undefined);
  });

  test('sizes and ratios', () => {
    const c = parseConfig(
      'services:\n  a:\n    url: http://a:1\n    retries: { bufferBytes: 1MiB, budget: { ratio: 0.5, minPerSecond: 0 } }\n',
      {},
    );
    const r = c.services.get('a')!.call.retries!;
    assert.deepEqual([r.bufferBytes, r.budgetRatio, r.minPerSecond], [1048576, 0.5, 0]);
    const d = parseConfig('services:\n  a:\n    url: http://a:1\n    retries: { bufferBytes: 0 }\n', {});
    assert.equal(d.services.get('a')!.call.retries!.bufferBytes, 0, 'only bodyless requests are retried');
  });

  test('a change of the retry rule keeps the circuit on reload (a call setting)', async () => {
    const { keepsCircuit } = await import('../../src/config/types.js');
    const a = parseConfig('services:\n  a: { url: http://a:1 }\n', {}).services.get('a')!;
    const b = parseConfig('services:\n  a: { url: http://a:1, retries: {} }\n', {}).services.get('a')!;
    assert.ok(keepsCircuit(a, b));
  });
});
