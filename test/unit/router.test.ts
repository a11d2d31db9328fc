import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hasDotSegment, route, upstreamPath } from '../../src/proxy/router.js';

describe('route', () => {
  test('maps /svc/<name>/<rest>?<query>, rest and query untouched', () => {
    assert.deepEqual(route('/svc/product/products/1/stock?quantity=2'), {
      ok: true,
      name: 'product',
      rest: '/products/1/stock',
      query: '?quantity=2',
    });
    assert.deepEqual(route('/svc/product'), { ok: true, name: 'product', rest: '', query: '' });
    assert.deepEqual(route('/svc/product?x'), { ok: true, name: 'product', rest: '', query: '?x' });
    assert.deepEqual(route('/svc/product/a%2Fb//c?q=%41&r=a?b'), { ok: true, name: 'product', rest: '/a%2Fb//c', query: '?q=%41&r=a?b' });
  });
  const errors: Array<[string, number]> = [
    ['/', 404],
    ['/health', 404],
    ['/svc', 404],
    ['/svc/', 404],
    ['/svc//x', 404],
    ['/svcx/product', 404],
    ['http://evil.example/svc/product/', 400],
    ['evil.example:443', 400],
    ['*', 400],
    ['/svc/product/../admin', 400],
    ['/svc/product/./x', 400],
    ['/svc/product/%2e%2e/x', 400],
    ['/svc/product/%2E%2e/x', 400],
    ['/svc/product/.%2E', 400],
    ['/svc/product/..\\x', 400],
    ['/svc/product/a%5c..%5cb', 400],
    ['/svc/product/a%2f..%2fb', 400],
    ['/svc/product/%252e%252e/x', 400],
    ['/svc/..', 400],
    [`/svc/product/${'a'.repeat(9000)}`, 414],
  ];
  for (const [target, status] of errors) {
    test(`${target.slice(0, 60)} -> ${status}`, () => {
      const r = route(target);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.status, status);
    });
  }
  test('dots inside names are fine', () => {
    assert.equal(hasDotSegment('/svc/product/file.txt/..a/a../.hidden'), false);
    assert.equal(hasDotSegment('/svc/product/%41%42'), false);
  });
});

describe('upstreamPath', () => {
  test('keeps the base path prefix and the query verbatim', () => {
    assert.equal(upstreamPath('', '', ''), '/');
    assert.equal(upstreamPath('/', '', '?a'), '/?a');
    assert.equal(upstreamPath('/', '/x', '?a'), '/x?a');
    assert.equal(upstreamPath('', '/x', '?a'), '/x?a');
    assert.equal(upstreamPath('/api', '', '?a'), '/api?a');
    assert.equal(upstreamPath('/api', '/x', ''), '/api/x');
    assert.equal(upstreamPath('/api/', '/x', ''), '/api/x');
    assert.equal(upstreamPath('/api/', '', ''), '/api/');
    assert.equal(upstreamPath('/api', '/a//b%2F', '?q=%zz'), '/api/a//b%2F?q=%zz');
  });
});
