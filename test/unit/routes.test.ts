/** Per-route call settings (docs/routes.md) from tables: patterns, matching, hidden routes, the resolved policies. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { keepsCircuit } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';
import { compilePath, hides, pathMatches, routeMatches, type PathPattern, type RouteMatcher } from '../../src/policy/routes.js';

function pattern(source: string): PathPattern {
  const p = compilePath(source);
  if (typeof p === 'string') throw new Error(`${source}: ${p}`);
  return p;
}

function matcher(methods: string[] | undefined, path: string | undefined): RouteMatcher {
  return { methods: methods ? new Set(methods) : undefined, path: path === undefined ? undefined : pattern(path) };
}

describe('path patterns: what can never match', () => {
  const rows: Array<[string, string]> = [
    ['orders', 'must start with / (paths are matched after /svc/<name>)'],
    ['/orders?x=1', 'matches the path only: no query or fragment, it could never match'],
    ['/orders#top', 'matches the path only: no query or fragment, it could never match'],
    ['/my orders', 'holds a character a request path cannot carry (paths are matched raw, before decoding)'],
    ['/orders/**/status', '** stands only at the end, as /**'],
    ['/ord*', '* stands for a whole segment, as /*/'],
  ];
  for (const [source, why] of rows) test(`${source} -> ${why}`, () => assert.equal(compilePath(source), why));
});

describe('matching the raw path after /svc/<name>', () => {
  const rows: Array<[string, string, boolean]> = [
    ['/orders', '/orders', true],
    ['/orders', '/orders/', false],
    ['/orders', '/orders/1', false],
    ['/orders', '/ordersx', false],
    ['/orders/*/status', '/orders/17/status', true],
    ['/orders/*/status', '/orders//status', false],
    ['/orders/*/status', '/orders/17/status/x', false],
    ['/orders/*/status', '/orders/17', false],
    ['/orders/**', '/orders', true],
    ['/orders/**', '/orders/17/status', true],
    ['/orders/**', '/orders/', true],
    ['/orders/**', '/ordersx', false],
    ['/**', '', true],
    ['/**', '/anything/at/all', true],
    ['/', '', true],
    ['/', '/', true],
    ['/', '/x', false],
    ['/a%2Fb', '/a%2Fb', true],
    ['/a/b', '/a%2Fb', false],
    ['/*', '/a%2Fb', true],
  ];
  for (const [p, path, expected] of rows) {
    test(`${p} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(path)}`, () =>
      assert.equal(pathMatches(pattern(p), path), expected));
  }

  test('methods: listed ones only; none listed is any', () => {
    assert.ok(routeMatches(matcher(['POST'], '/orders'), 'POST', '/orders'));
    assert.ok(!routeMatches(matcher(['POST'], '/orders'), 'GET', '/orders'));
    assert.ok(routeMatches(matcher(undefined, '/orders'), 'DELETE', '/orders'));
    assert.ok(routeMatches(matcher(['GET'], undefined), 'GET', '/x/y'));
  });
});

describe('an earlier route hiding a later one', () => {
  const rows: Array<[RouteMatcher, RouteMatcher, boolean]> = [
    [matcher(undefined, '/orders/**'), matcher(['POST'], '/orders'), true],
    [matcher(['GET'], '/orders/**'), matcher(['POST'], '/orders'), false],
    [matcher(['GET', 'POST'], '/orders'), matcher(['POST'], '/orders'), true],
    [matcher(['POST'], '/orders'), matcher(undefined, '/orders'), false],
    [matcher(undefined, '/orders/*/status'), matcher(undefined, '/orders/17/status'), true],
    [matcher(undefined, '/orders/17/status'), matcher(undefined, '/orders/*/status'), false],
    [matcher(undefined, '/orders/*'), matcher(undefined, '/orders/**'), false],
    [matcher(undefined, '/orders/**'), matcher(undefined, '/orders/*/x/**'), true],
    [matcher(undefined, '/**'), matcher(['GET'], undefined), true],
    [matcher(undefined, '/a'), matcher(undefined, undefined), false],
    [matcher(['GET'], undefined), matcher(['GET'], '/a'), true],
  ];
  rows.forEach(([earlier, later, expected], i) => {
    test(`row ${i}: ${expected ? 'hidden' : 'reachable'}`, () => assert.equal(hides(earlier, later), expected));
  });
});

const ORDER = `services:
  order:
    url: http://order:8000
    timeout: 5s
    retries: {}
    routes:
      - name: create
        match: { methods: [POST], path: /orders }
        timeout: 15s
        retries: { attempts: 0 }
      - match: { path: /orders/*/status }
        timeout: 500ms
        failureStatuses: [500, 502, 503, 504]
        clientTimeouts: { bodyIdle: 2s }
`;

describe('config', () => {
  test("a route's keys replace the service's, the rest is the service's", () => {
    const s = parseConfig(ORDER, {}).services.get('order')!;
    assert.equal(s.routes.length, 2);
    const [create, status] = s.routes;
    assert.equal(create!.name, 'create');
    assert.deepEqual(
      [create!.call.timeoutMs, create!.call.retries, create!.call.failureStatuses],
      [15_000, undefined, s.call.failureStatuses],
    );
    assert.equal(status!.name, '1', 'its index when it has no name');
    assert.equal(status!.call.timeoutMs, 500);
    assert.deepEqual(status!.call.retries, s.call.retries, "the service's retry rule");
    assert.equal(status!.call.clientBodyIdleMs, 2000);
    assert.equal(s.call.clientBodyIdleMs, undefined);
    assert.equal(status!.call.failureStatuses.length, 4);
  });

  test('changing only routes keeps the circuit on reload', () => {
    const a = parseConfig(ORDER, {}).services.get('order')!;
    const b = parseConfig(ORDER.replace('timeout: 500ms', 'timeout: 1s'), {}).services.get('order')!;
    const c = parseConfig('services:\n  order: { url: http://order:8000, timeout: 5s, retries: {} }\n', {}).services.get('order')!;
    assert.ok(keepsCircuit(a, b));
    assert.ok(keepsCircuit(a, c));
  });

  const errors: Array<[string, string, string]> = [
    [
      'a hidden route, with both lines',
      'services:\n  order:\n    url: http://o:1\n    routes:\n      - match: { path: /orders/** }\n      - match: { methods: [POST], path: /orders }\n',
      'services.order.routes.1 (line 6): is hidden by routes.0 (line 5): every request it matches takes that route first',
    ],
    [
      'an impossible pattern',
      'services:\n  order:\n    url: http://o:1\n    routes:\n      - match: { path: "/orders?id=1" }\n',
      'services.order.routes.0.match.path (line 5): matches the path only: no query or fragment, it could never match, got "/orders?id=1"',
    ],
    [
      'a circuit key under a route',
      'services:\n  order:\n    url: http://o:1\n    routes:\n      - match: { path: /orders }\n        threshold: 10\n',
      "services.order.routes.0.threshold (line 6): is not a route setting: a route may set only timeout, clientTimeouts.bodyIdle, retries, failureStatuses, slowCalls.duration, fallback; the circuit, its rules, the bulkhead and the endpoints are the service's (docs/routes.md)",
    ],
    [
      'a slow-call rule under a route',
      'services:\n  order:\n    url: http://o:1\n    slowCalls: { duration: 1s, threshold: 50% }\n    routes:\n      - match: { path: /orders }\n        slowCalls: { duration: 2s, threshold: 10% }\n',
      'services.order.routes.0.slowCalls.threshold (line 7): is not a route setting',
    ],
    [
      'slowCalls.duration without the service rule',
      'services:\n  order:\n    url: http://o:1\n    routes:\n      - match: { path: /orders }\n        slowCalls: { duration: 2s }\n',
      'services.order.routes.0.slowCalls (line 6): needs the slowCalls rule of order: it counts the slow calls this duration marks',
    ],
    [
      'two routes of one name',
      'services:\n  order:\n    url: http://o:1\n    routes:\n      - { name: a, match: { path: /x } }\n      - { name: a, match: { path: /y } }\n',
      'services.order.routes.1.name (line 6): names another route too: "a"',
    ],
    [
      'lower-case methods',
      'services:\n  order:\n    url: http://o:1\n    routes:\n      - match: { methods: [post] }\n',
      'services.order.routes.0.match.methods.0 (line 5): must be a list of HTTP methods such as GET or POST (upper case), got "post"',
    ],
  ];
  for (const [name, yaml, expected] of errors) {
    test(`error: ${name}`, () => {
      assert.throws(
        () => parseConfig(yaml, {}),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError);
          assert.ok(e.message.includes(expected), `expected\n  ${expected}\ngot\n${e.message}`);
          return true;
        },
      );
    });
  }
});
