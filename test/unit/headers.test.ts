import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acceptableRequestId, clientRequestId, hasBody, prepareRequestHeaders, responseHeaders } from '../../src/proxy/headers.js';
import { newRequestId } from '../../src/proxy/request-id.js';

describe('request headers', () => {
  test('hop-by-hop and Connection-named headers are removed; framing is kept', () => {
    const h: Record<string, any> = {
      host: 'localhost:8080',
      connection: 'keep-alive, x-secret, content-length, host',
      'keep-alive': 'timeout=5',
      'x-secret': '1',
      te: 'trailers',
      trailer: 'x-checksum',
      upgrade: 'websocket',
      'proxy-authorization': 'Basic abc',
      'proxy-connection': 'keep-alive',
      expect: '100-continue',
      'content-length': '5',
      accept: 'application/json',
    };
    prepareRequestHeaders(h, 'rid-1', '127.0.0.1');
    assert.deepEqual(h, {
      host: 'localhost:8080',
      'content-length': '5',
      accept: 'application/json',
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'localhost:8080',
      'x-request-id': 'rid-1',
    });
  });
  test('a chunked request stays chunked', () => {
    const h: Record<string, any> = { 'transfer-encoding': 'chunked' };
    prepareRequestHeaders(h, 'r', '127.0.0.1');
    assert.equal(h['transfer-encoding'], 'chunked');
  });
  test('a body is there when chunked or with a non-zero Content-Length, after preparation', () => {
    const cases: Array<[Record<string, string>, boolean]> = [
      [{}, false],
      [{ 'content-length': '0' }, false],
      [{ 'content-length': '5' }, true],
      [{ 'content-length': '00' }, true], // unusual spelling: piped, which is always right
      [{ 'transfer-encoding': 'chunked' }, true],
      [{ 'transfer-encoding': 'gzip, chunked', 'content-length': '0' }, true],
    ];
    for (const [sent, expected] of cases) {
      const h: Record<string, any> = { host: 'h', ...sent };
      prepareRequestHeaders(h, 'r', '127.0.0.1');
      assert.equal(hasBody(h), expected, JSON.stringify(sent));
    }
  });
  const forwarded: Array<[string, string, Record<string, string>, [string, string, string]]> = [
    [
      'loopback caller trusted',
      '::ffff:127.0.0.1',
      { 'x-forwarded-for': '10.0.0.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example' },
      ['10.0.0.1, 127.0.0.1', 'https', 'shop.example'],
    ],
    [
      'other callers not',
      '10.1.2.3',
      { 'x-forwarded-for': '1.2.3.4', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil' },
      ['1.2.3.4, 10.1.2.3', 'http', 'h'],
    ],
  ];
  for (const [name, address, sent, expected] of forwarded) {
    test(`X-Forwarded-*: ${name}`, () => {
      const h: Record<string, any> = { host: 'h', ...sent };
      prepareRequestHeaders(h, 'r', address);
      assert.deepEqual([h['x-forwarded-for'], h['x-forwarded-proto'], h['x-forwarded-host']], expected);
    });
  }

  test('request ids: printable ASCII up to 200 chars kept, others replaced', () => {
    assert.equal(acceptableRequestId('abc-123'), 'abc-123');
    assert.equal(acceptableRequestId('a b'), undefined);
    assert.equal(acceptableRequestId('x'.repeat(201)), undefined);
    assert.equal(acceptableRequestId(['a', 'b']), undefined);
    assert.equal(acceptableRequestId(undefined), undefined);
  });

  test("the client's request id is read from the raw headers: any case, sent once, acceptable", () => {
    assert.equal(clientRequestId(['Host', 'h', 'X-Request-ID', 'abc-1']), 'abc-1');
    assert.equal(clientRequestId(['x-request-id', 'abc-1', 'Accept', '*/*']), 'abc-1');
    assert.equal(clientRequestId(['Host', 'h']), undefined);
    assert.equal(clientRequestId(['x-request-id', 'a', 'X-Request-Id', 'a']), undefined, 'sent twice');
    assert.equal(clientRequestId(['x-request-id', 'a b']), undefined);
    assert.equal(clientRequestId(['x-request-ix', 'abc']), undefined);
  });

  test('generated request ids are version 4 UUIDs, distinct across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = newRequestId();
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(id);
    }
    assert.equal(seen.size, 2000);
  });
});

describe('response headers', () => {
  test('hop-by-hop dropped, duplicates and case kept, our request id appended', () => {
    const raw = [
      'Content-Type',
      'text/plain',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
      'Connection',
      'keep-alive, X-Internal',
      'X-Internal',
      'x',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'X-Request-Id',
      'theirs',
      'Trailer',
      'x-sum',
    ];
    assert.deepEqual(responseHeaders(raw, 'keep-alive, X-Internal', 'ours', false), [
      'Content-Type',
      'text/plain',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
      'x-request-id',
      'ours',
    ]);
    assert.deepEqual(responseHeaders(['Trailer', 'x-sum'], undefined, 'ours', true), ['Trailer', 'x-sum', 'x-request-id', 'ours']);
  });

  test('a name listed in Connection is dropped whatever its length; plain keep-alive/close list nothing', () => {
    const raw = ['Content-Length', '3', 'CONNECTION', 'close', 'X-Long-Hop-By-Hop-Name', 'v', 'Te', 'x'];
    assert.deepEqual(responseHeaders(raw, 'close, X-Long-Hop-By-Hop-Name', 'r', false), ['Content-Length', '3', 'x-request-id', 'r']);
    assert.deepEqual(responseHeaders(raw, ' Keep-Alive ', 'r', false), [
      'Content-Length',
      '3',
      'X-Long-Hop-By-Hop-Name',
      'v',
      'x-request-id',
      'r',
    ]);
  });
});
