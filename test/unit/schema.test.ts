/**
 * The JSON Schema `circuit-proxy schema` prints: generated from the loader's zod schema, committed
 * as config/proxy.schema.json, and in agreement with `validate` (a real JSON Schema validator, ajv).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse, parseAllDocuments } from 'yaml';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { ROOT } from '../helpers.js';

const schema = configJsonSchema();
const ajv = new Ajv2020({ allErrors: true, strict: true });
const check = ajv.compile(schema);

/** What an editor sees: the YAML as written, `${VAR}` references unexpanded. */
function schemaAccepts(yaml: string): boolean {
  return check(parse(yaml)) === true;
}

function validateAccepts(yaml: string): boolean {
  try {
    parseConfig(yaml, {});
    return true;
  } catch (err) {
    if (err instanceof ConfigError) return false;
    throw err;
  }
}

describe('config JSON Schema', () => {
  test('config/proxy.schema.json is what `circuit-proxy schema` generates (run it and commit the output)', () => {
    const committed = readFileSync(`${ROOT}config/proxy.schema.json`, 'utf8');
    assert.equal(committed, `${JSON.stringify(schema, null, 2)}\n`);
  });

  test('draft 2020-12, every key described, closed enums and patterns where the value set is closed', () => {
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
    const text = JSON.stringify(schema);
    assert.match(text, /"pattern":"\^\\\\s\*\(\\\\d\+/, 'durations as a pattern');
    assert.match(text, /"propertyNames":\{"type":"string","pattern":"\^\[a-z0-9\]\[a-z0-9_-\]\*\$"\}/, 'service names as a pattern');
    const undescribed: string[] = [];
    const walk = (node: Record<string, any>, path: string): void => {
      for (const [key, value] of Object.entries((node.properties ?? {}) as Record<string, Record<string, any>>)) {
        if (!value.description) undescribed.push(`${path}${key}`);
        walk(value, `${path}${key}.`);
      }
      if (typeof node.additionalProperties === 'object') walk(node.additionalProperties, `${path}<name>.`);
    };
    walk(schema, '');
    assert.deepEqual(undescribed, []);
  });

  const shipped: Array<[string, string]> = [
    ['config/proxy.yaml', readFileSync(`${ROOT}config/proxy.yaml`, 'utf8')],
    [
      'examples/kubernetes/configmap.yaml',
      parseAllDocuments(readFileSync(`${ROOT}examples/kubernetes/configmap.yaml`, 'utf8'))
        .map((d) => d.toJS() as { kind?: string; data?: Record<string, string> })
        .find((d) => d.kind === 'ConfigMap')!.data!['proxy.yaml']!,
    ],
  ];
  for (const [name, yaml] of shipped) {
    test(`${name}: the schema and validate both accept it, and it carries the yaml-language-server modeline`, () => {
      assert.ok(schemaAccepts(yaml), JSON.stringify(check.errors));
      assert.ok(validateAccepts(yaml));
      assert.match(yaml, /^# yaml-language-server: \$schema=\S*proxy\.schema\.json$/m);
    });
  }

  const svc = (extra: string): string => `services:\n  product:\n    url: http://p:8000\n${extra}`;
  const bad: Array<[string, string]> = [
    ['an unknown top-level key', `${svc('')}retries: 3\n`],
    ['an unknown service key', svc('    thresold: 3\n')],
    ['a threshold of the wrong type', svc('    threshold: three\n')],
    ['a threshold below 1', svc('    threshold: 0\n')],
    ['a fractional threshold', svc('    threshold: 1.5\n')],
    ['a bad duration', svc('    cooldown: 30 seconds\n')],
    ['a duration of the wrong type', svc('    timeout: [5s]\n')],
    ['a bad failure status', svc('    failureStatuses: [5xx]\n')],
    ['a failure status out of range', svc('    failureStatuses: [700]\n')],
    ['a URL that is not http(s)', 'services:\n  product:\n    url: ftp://p\n'],
    ['a service without a url', 'services:\n  product:\n    threshold: 3\n'],
    ['a service with url and endpoints', 'services:\n  product:\n    url: http://p\n    endpoints: [http://q]\n'],
    ['endpoints that are not URLs', 'services:\n  product:\n    endpoints: [p:8000]\n'],
    ['an unknown balance', svc('    balance: random\n')],
    ['an unknown outlier key', svc('    outlier: { consecutive: 3 }\n')],
    ['a DNS server that is a host name', svc('    discovery: { dns: true, servers: [ns.local] }\n')],
    ['an upper-case service name', 'services:\n  Product:\n    url: http://p\n'],
    ['a port out of range', `listen: { port: 70000 }\n${svc('')}`],
    ['maxConnections below 1', `listen: { maxConnections: 0 }\n${svc('')}`],
    ['an unknown clientTimeouts key', `clientTimeouts: { total: 5s }\n${svc('')}`],
    ['a failure-rate threshold above 100%', svc('    failureRate: { threshold: 150% }\n')],
    ['a backoff jitter above 100%', svc('    backoff: { jitter: 100.5% }\n')],
    ['a stream content type that is not a media type', svc('    streamContentTypes: [event-stream]\n')],
    ['services not a mapping', 'services: [product]\n'],
    ['no services key', 'listen: { port: 8080 }\n'],
  ];
  for (const [what, yaml] of bad) {
    test(`refused by the schema and by validate: ${what}`, () => {
      assert.equal(schemaAccepts(yaml), false, 'the schema accepted it');
      assert.equal(validateAccepts(yaml), false, 'validate accepted it');
    });
  }

  test('only validate refuses what JSON Schema cannot state (documented in docs/configuration.md)', () => {
    for (const yaml of [
      svc('    cooldown: 0ms\n'),
      svc('    failureRate: { threshold: 0% }\n'),
      svc('    failureStatuses: [599-500]\n'),
      'services: {}\n',
      'services:\n  product:\n    endpoints: [http://a:1, https://b:1]\n',
      'services:\n  product:\n    endpoints: [http://a:1, http://b:1]\n    discovery: { dns: true }\n',
    ]) {
      assert.equal(schemaAccepts(yaml), true, yaml);
      assert.equal(validateAccepts(yaml), false, yaml);
    }
  });

  test('an environment reference passes the schema where any value may stand; validate checks what it expands to', () => {
    const yaml = svc('    threshold: ${T:-3}\n    timeout: ${TIMEOUT}\n');
    assert.ok(schemaAccepts(yaml), JSON.stringify(check.errors));
    assert.equal(parseConfig(yaml, { TIMEOUT: '2s' }).services.get('product')!.circuit.threshold, 3);
  });
});
