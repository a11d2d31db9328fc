import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { json, request, startProxy } from '../helpers.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

test(
  'an https upstream with an untrusted certificate is a TLS failure: 502 and a connect failure',
  { skip: !hasOpenssl && 'openssl not installed' },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-tls-'));
    const made = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=localhost',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
      ],
      { encoding: 'utf8' },
    );
    assert.equal(made.status, 0, made.stderr);
    const server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (_req, res) =>
      res.end('secret'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const p = await startProxy(`defaults: { threshold: 1 }\nservices:\n  product:\n    url: https://localhost:${port}\n`);
    try {
      const r = await request(p.port, '/svc/product/x');
      assert.equal(r.status, 502);
      assert.match(
        json(r).detail,
        /^product unreachable: tls (DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/,
      );
      assert.equal(p.proxy.registry.get('product')!.state, 'open');
      assert.equal(p.logs.find((l) => l.reason === 'connect' && l.service === 'product').length, 1);
    } finally {
      await p.close();
      server.closeAllConnections();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
