import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { formatDuration, parseDuration } from '../../src/config/duration.js';
import { expandEnv } from '../../src/config/env.js';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { ROOT } from '../helpers.js';

const ONE = 'services:\n  product:\n    url: http://p:8000\n';

describe('durations', () => {
  const table: Array<[unknown, number | undefined]> = [
    ['250ms', 250],
    ['5s', 5000],
    ['1.5s', 1500],
    ['1m', 60_000],
    ['2h', 7_200_000],
    [100, 100],
    ['100', 100],
    [' 5s ', 5000],
    ['5 s', 5000],
    ['-1s', undefined],
    ['5d', undefined],
    ['abc', undefined],
    [null, undefined],
    [-5, undefined],
    [Number.NaN, undefined],
  ];
  for (const [input, expected] of table) {
    test(`parseDuration(${JSON.stringify(input)}) = ${expected}`, () => assert.equal(parseDuration(input), expected));
  }
  test('formatDuration', () => {
    assert.equal(formatDuration(5000), '5s');
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(60_000), '1m');
    assert.equal(formatDuration(1500), '1.5s');
    assert.equal(formatDuration(1234), '1234ms');
  });
});

describe('env expansion', () => {
  test('${VAR} and ${VAR:-default}', () => {
    assert.deepEqual(expandEnv('${A}/x', { A: 'a' }), { value: 'a/x', missing: [] });
    assert.deepEqual(expandEnv('${B:-http://b:1}', {}), { value: 'http://b:1', missing: [] });
    assert.deepEqual(expandEnv('${B:-d}', { B: '' }), { value: 'd', missing: [] });
    assert.deepEqual(expandEnv('${C}', {}), { value: '${C}', missing: ['C'] });
    assert.deepEqual(expandEnv('$${A}', { A: 'a' }), { value: '${A}', missing: [] });
  });
  test('an expanded value is typed: threshold: ${T:-4} is the number 4', () => {
    const c = parseConfig('defaults:\n  threshold: ${T:-4}\n' + ONE, {});
    assert.equal(c.services.get('product')!.circuit.threshold, 4);
  });
  test('an env value cannot inject YAML structure', () => {
    // Expansion happens after parsing: the newline stays inside the string, which is then no valid URL.
    assert.throws(() => parseConfig('services:\n  product:\n    url: ${U}\n', { U: 'http://p:1\n    threshold: 9' }), ConfigError);
    const c = parseConfig('services:\n  product:\n    url: ${U}\n', { U: 'http://p:1/a threshold: 9' });
    assert.equal(c.services.get('product')!.circuit.threshold, 3);
  });
});

describe('precedence: built-in < YAML defaults < env CB_* < service keys', () => {
  test('built-in defaults', () => {
    const s = parseConfig(ONE, {}).services.get('product')!;
    assert.deepEqual([s.circuit.threshold, s.circuit.cooldownMs, s.call.timeoutMs], [3, 30_000, 5_000]);
  });
  test('YAML defaults beat built-in', () => {
    const s = parseConfig('defaults: { threshold: 4, cooldown: 10s, timeout: 1s }\n' + ONE, {}).services.get('product')!;
    assert.deepEqual([s.circuit.threshold, s.circuit.cooldownMs, s.call.timeoutMs], [4, 10_000, 1_000]);
  });
  test('env beats YAML defaults', () => {
    const s = parseConfig('defaults: { threshold: 4, cooldown: 10s }\n' + ONE, {
      CB_THRESHOLD: '7',
      CB_COOLDOWN_SECONDS: '0.25',
    }).services.get('product')!;
    assert.deepEqual([s.circuit.threshold, s.circuit.cooldownMs], [7, 250]);
  });
  test('service keys beat env', () => {
    const c = parseConfig(
      'services:\n  product:\n    url: http://p:8000\n    threshold: 5\n    cooldown: 2s\n  cart:\n    url: http://c:8000\n',
      {
        CB_THRESHOLD: '7',
        CB_COOLDOWN_SECONDS: '9',
      },
    );
    assert.deepEqual([c.services.get('product')!.circuit.threshold, c.services.get('product')!.circuit.cooldownMs], [5, 2000]);
    assert.deepEqual([c.services.get('cart')!.circuit.threshold, c.services.get('cart')!.circuit.cooldownMs], [7, 9000]);
  });
  test('CLI port overrides beat the file', () => {
    const c = parseConfig('listen: { port: 1 }\nadmin: { port: 2 }\n' + ONE, {}, { port: 3, adminPort: 4 });
    assert.deepEqual([c.listen.port, c.admin.port], [3, 4]);
  });
  test('bad env values are reported with their name', () => {
    assert.throws(
      () => parseConfig(ONE, { CB_THRESHOLD: '0', CB_COOLDOWN_SECONDS: 'soon' }),
      (e: ConfigError) => {
        assert.deepEqual(
          e.problems.map((p) => p.path),
          ['(env) CB_THRESHOLD', '(env) CB_COOLDOWN_SECONDS'],
        );
        assert.match(e.message, /CB_THRESHOLD: must be an integer ≥ 1, got "0"/);
        return true;
      },
    );
  });
  test('clientTimeouts.tunnelIdle: off unless set; a bad value names its key path', () => {
    assert.equal(parseConfig(ONE, {}).clientTimeouts.tunnelIdleMs, undefined);
    assert.equal(parseConfig('clientTimeouts: { tunnelIdle: 5m }\n' + ONE, {}).clientTimeouts.tunnelIdleMs, 300_000);
    assert.throws(
      () => parseConfig('clientTimeouts: { tunnelIdle: soon }\n' + ONE, {}),
      (e: ConfigError) => {
        assert.deepEqual(
          e.problems.map((p) => p.path),
          ['clientTimeouts.tunnelIdle'],
        );
        return true;
      },
    );
  });
  test('rejectRetryAfter: cooldown unless set; none; a cap in whole seconds rounded up, at least 1', () => {
    const told = (v: string): unknown =>
      parseConfig(`defaults: { rejectRetryAfter: ${v} }\n` + ONE, {}).services.get('product')!.call.rejectRetryAfter;
    assert.equal(parseConfig(ONE, {}).services.get('product')!.call.rejectRetryAfter, 'cooldown');
    for (const [v, expected] of [
      ['cooldown', 'cooldown'],
      ['none', 'none'],
      ['1s', 1],
      ['1500ms', 2],
      ['10ms', 1],
      ['2m', 120],
    ] as const) {
      assert.equal(told(v), expected, v);
    }
  });
  test('failure statuses: default 500-599, configurable', () => {
    assert.deepEqual(parseConfig(ONE, {}).services.get('product')!.call.failureStatuses, [{ from: 500, to: 599 }]);
    const c = parseConfig('defaults: { failureStatuses: [429, 500-504] }\n' + ONE, {});
    assert.deepEqual(c.services.get('product')!.call.failureStatuses, [
      { from: 429, to: 429 },
      { from: 500, to: 504 },
    ]);
  });
  test('the result is frozen', () => {
    const c = parseConfig(ONE, {});
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.services.get('product')));
  });
});

describe('config/proxy.yaml (the deployable sample)', () => {
  test('validates and lists the six reference services with env-overridable URLs', () => {
    const c = loadConfig(`${ROOT}config/proxy.yaml`, { PRODUCT_URL: 'http://127.0.0.1:9/p' });
    assert.deepEqual([...c.services.keys()], ['auth', 'customer', 'product', 'order', 'cart', 'notification']);
    assert.equal(c.services.get('product')!.url, 'http://127.0.0.1:9/p');
    assert.equal(c.services.get('auth')!.url, 'http://auth-service:8000');
    assert.deepEqual([c.listen.port, c.admin.port], [8080, 9901]);
  });
});

describe('invalid configs: one fixture per rule, exact message', () => {
  const dir = `${ROOT}test/fixtures/config/invalid/`;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
    test(file, () => {
      const text = readFileSync(dir + file, 'utf8');
      const expected = /^# expect: (.*)$/m.exec(text)![1]!;
      assert.throws(
        () => parseConfig(text, {}, {}, file),
        (e: unknown) => {
          assert.ok(e instanceof ConfigError, 'a ConfigError');
          assert.equal(e.code, 'CP_ERR_CONFIG');
          assert.ok(e.message.includes(expected), `expected a line containing\n  ${expected}\ngot\n${e.message}`);
          assert.ok(!/\n\s+at /.test(e.message), 'no stack trace');
          return true;
        },
      );
    });
  }
});
