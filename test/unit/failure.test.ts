import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { statusForFailure } from '../../src/outcome.js';
import { classifyUpstreamError } from '../../src/proxy/failure.js';

const err = (code: string, syscall?: string, message = code): NodeJS.ErrnoException => Object.assign(new Error(message), { code, syscall });

describe('failure mapping', () => {
  const table: Array<[NodeJS.ErrnoException, string, string]> = [
    [err('ECONNREFUSED', 'connect'), 'connect', 'connect ECONNREFUSED'],
    [err('ENOTFOUND', 'getaddrinfo'), 'connect', 'dns ENOTFOUND'],
    [err('EAI_AGAIN', 'getaddrinfo'), 'connect', 'dns EAI_AGAIN'],
    [err('EHOSTUNREACH', 'connect'), 'connect', 'connect EHOSTUNREACH'],
    [err('ECONNRESET', 'connect'), 'connect', 'connect ECONNRESET'],
    [err('ECONNRESET', undefined, 'socket hang up'), 'reset', 'connection reset before response (ECONNRESET)'],
    [err('ECONNRESET', 'read'), 'reset', 'connection reset before response (ECONNRESET)'],
    [err('EPIPE', 'write'), 'reset', 'connection reset before response (EPIPE)'],
    [err('DEPTH_ZERO_SELF_SIGNED_CERT'), 'connect', 'tls DEPTH_ZERO_SELF_SIGNED_CERT'],
    [err('ERR_TLS_CERT_ALTNAME_INVALID'), 'connect', 'tls ERR_TLS_CERT_ALTNAME_INVALID'],
  ];
  for (const [e, reason, cause] of table) {
    test(`${e.code} (${e.syscall ?? 'no syscall'}) -> ${reason}`, () => {
      assert.deepEqual(classifyUpstreamError(e), { reason, cause });
    });
  }
  test('status codes: open 503, timeout 504, connect/reset 502', () => {
    assert.equal(statusForFailure('open'), 503);
    assert.equal(statusForFailure('timeout'), 504);
    assert.equal(statusForFailure('connect'), 502);
    assert.equal(statusForFailure('reset'), 502);
  });
});
