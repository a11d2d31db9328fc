/**
 * parseConfig reads a config with js-yaml when it loads cleanly and falls back to the `yaml`
 * library's document (line numbers) otherwise. These tests hold the two readings to each other.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { NOT_LOADED, parseConfig, quickLoad, readDocument } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { ROOT } from '../helpers.js';

const SCALARS = [
  ...['012', '0o17', '0O17', '0x1F', '0X1F', '0b101', '1_000', '0xFF_FF', '+1', '-0', '00', '09', '0o8', '0x'],
  ...['1e3', '1E3', '1.5e-3', '+0.5e+3', '3.0e+2', '.5', '5.', '0.', '-.5', '1.0', '12345678901234567890'],
  ...['+.inf', '-.Inf', '.NaN', '.nan', '.', '+', '-', '=', '<<'],
  ...['yes', 'No', 'on', 'TRUE', 'True', 'tRUE', 'false', 'null', 'Null', 'NULL', '~', ''],
  ...['2001-12-14', '12:30:45', '1:20', '250ms', '1.5s', 'http://p:8000/x?y=1#z', '${PORT:-8080}'],
  ...["'x'", '"\\u00e9\\t\\x41"', "'it''s'", '"a\\\n  b"', '|\n  line1\n  line2', '>-\n  fold\n  ed'],
];

const DOCUMENTS = [
  '{a: 1, b: [1, 2,], }',
  '"a b": 1\n\'c\': 2\n',
  'a:\nb: ~\n',
  '1: x\n2.5: y\ntrue: w\n0x10: z\n.inf: v\n',
  'a: &x 1\nb: 2\n',
  'a:\n  - 1\n  - b: 2\n    c: 3\n',
  '---\na: 1\n...\n',
  '\ufeffa: 1\n',
  'a: # comment\n  1\n',
  "a: 'multi\n  line'\nb: multi\n  line plain\n",
  '__proto__: {x: 1}\n',
  '- 1\n- [2, {c: d}]\n',
];

/** Documents the quick path must hand to the `yaml` library. */
const FALLBACK: Record<string, string> = {
  empty: '',
  'comment only': '# nothing\n',
  'two documents': 'a: 1\n---\nb: 2\n',
  'a YAML error': 'a: [1\n',
  'a duplicate key': 'a: 1\na: 2\n',
  'an alias': 'a: &x 1\nb: *x\n',
  'an explicit tag (yaml leaves !!float 3 a string)': 'a: !!float 3\n',
  'a local tag': 'a: !foo x\n',
  'a %YAML 1.1 directive (yes becomes true)': '%YAML 1.1\n---\na: yes\n',
  'a plain null key (yaml: key "")': 'services:\n  null:\n    url: http://p\n',
  'a ~ key': '~: 1\n',
  'a complex key': '? [x, y]\n: 1\n',
};

function shippedYaml(): Array<[string, string]> {
  const files: Array<[string, string]> = [];
  const dirs = ['config', 'examples/kubernetes', 'test/fixtures/config/invalid'];
  for (const dir of dirs) {
    for (const f of readdirSync(join(ROOT, dir))) {
      if (f.endsWith('.yaml')) files.push([`${dir}/${f}`, readFileSync(join(ROOT, dir, f), 'utf8')]);
    }
  }
  return files;
}

/** Where both read the text, they read the same tree. */
function assertSameTree(text: string, label: string): 'quick' | 'fallback' {
  const quick = quickLoad(text);
  if (quick === NOT_LOADED) return 'fallback';
  let slow: unknown;
  try {
    slow = readDocument(text).raw;
  } catch (err) {
    assert.fail(`${label}: js-yaml loaded it but the yaml library refused: ${(err as Error).message}`);
  }
  assert.deepEqual(quick, slow, label);
  return 'quick';
}

describe('config YAML: quick path and document path', () => {
  test('every scalar form reads the same as a value and as a list item', () => {
    for (const s of SCALARS) {
      assertSameTree(`k: ${s}\n`, `value ${JSON.stringify(s)}`);
      assertSameTree(`- ${s}\n`, `item ${JSON.stringify(s)}`);
    }
  });

  test('documents in other shapes read the same', () => {
    for (const d of DOCUMENTS) assert.equal(assertSameTree(d, JSON.stringify(d)), 'quick', JSON.stringify(d));
  });

  test('every YAML file shipped in the repository reads the same', () => {
    const paths = shippedYaml().map(([name, text]) => [name, assertSameTree(text, name)]);
    assert.ok(paths.some(([, p]) => p === 'quick'));
    assert.deepEqual(
      paths.filter(([name, p]) => name === 'config/proxy.yaml' && p !== 'quick'),
      [],
    );
  });

  for (const [what, text] of Object.entries(FALLBACK)) {
    test(`falls back to the yaml library: ${what}`, () => assert.equal(quickLoad(text), NOT_LOADED));
  }

  test('a config using anchors and aliases still loads (through the document path)', () => {
    const text = 'services:\n  product: &svc\n    url: http://p:8000\n    threshold: 7\n  cart: *svc\n';
    assert.equal(quickLoad(text), NOT_LOADED);
    assert.equal(parseConfig(text, {}).services.get('cart')?.threshold, 7);
  });

  test('problems found on the quick path are reported by the document path, with lines', () => {
    const text = 'services:\n  product:\n    url: http://p:8000\n    threshold: 0\n';
    assert.notEqual(quickLoad(text), NOT_LOADED);
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

  test('a plain null service key is refused as before (the yaml library reads it as "")', () => {
    assert.throws(
      () => parseConfig(FALLBACK['a plain null key (yaml: key "")']!, {}),
      (err: ConfigError) => err.problems.some((p) => p.path === 'services.' && /got ""/.test(p.message)),
    );
  });

  test('an alias bomb is refused by the document path as a config problem, not a crash', () => {
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
