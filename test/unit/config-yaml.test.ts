/** YAML constructs a hand-written config may use, and the ones it must refuse cleanly. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

describe('config YAML', () => {
  test('a config using anchors and aliases loads', () => {
    const text = 'services:\n  product: &svc\n    url: http://p:8000\n    threshold: 7\n  cart: *svc\n';
    assert.equal(parseConfig(text, {}).services.get('cart')?.circuit.threshold, 7);
  });

  test('problems are reported with the line of their key', () => {
    const text = 'services:\n  product:\n    url: http://p:8000\n    threshold: 0\n';
    assert.throws(
      () => parseConfig(text, {}),
      (err: ConfigError) => {
        assert.deepEqual(
          err.problems.map((p) => [p.path, p.line]),
          [['services.product.threshold', 4]],
        );
        return true;
      },
    );
  });

  test('a duplicate key is refused with its line', () => {
    assert.throws(
      () => parseConfig('services:\n  p: { url: "http://p" }\n  p: { url: "http://q" }\n', {}),
      (err: ConfigError) => err.problems.some((p) => p.path === '(yaml)' && /duplicate key "p"/.test(p.message) && p.line === 3),
    );
  });

  test('a plain null service key is refused (the yaml library reads it as "")', () => {
    assert.throws(
      () => parseConfig('services:\n  null:\n    url: http://p\n', {}),
      (err: ConfigError) => err.problems.some((p) => p.path === 'services.' && /got ""/.test(p.message)),
    );
  });

  test('YAML 1.2 core schema: a plain "yes" is a string, so no threshold', () => {
    assert.throws(
      () => parseConfig('services:\n  p:\n    url: http://p\n    threshold: yes\n', {}),
      (err: ConfigError) => err.problems.some((p) => p.path === 'services.p.threshold'),
    );
  });

  test('an alias bomb is refused as a config problem, not a crash', () => {
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      ...'bcdefghi'.split('').map((k, i) => `${k}: &${k} [${Array(10).fill(`*${'abcdefghi'[i]}`).join(', ')}]`),
    ];
    assert.throws(
      () => parseConfig(`${bomb.join('\n')}\nservices: { p: { url: 'http://p' } }\n`, {}),
      (err: ConfigError) => err instanceof ConfigError && /Excessive alias count/.test(err.problems[0]!.message),
    );
  });
});
