import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { parseConfig } from '../../src/config/load.js';
import type { ConfigError } from '../../src/errors.js';
import { json, request, startProxy } from '../helpers.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

/** Runs openssl in `dir`; a failure fails the test with openssl's own words. */
function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

/** A self-signed certificate for `cn` (a CA, or a server nobody vouches for), valid one day. */
function selfSigned(dir: string, cn: string, key: string, cert: string): void {
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', key, '-out', cert, '-days', '1']);
}

test(
  'an https upstream with an untrusted certificate is a TLS failure: 502 and a connect failure',
  { skip: !hasOpenssl && 'openssl not installed' },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-tls-'));
    selfSigned(dir, 'localhost', 'key.pem', 'cert.pem');
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

/**
 * A private PKI made with openssl for the tests below: a CA, a server certificate it signs (for
 * localhost, 127.0.0.1 and upstream.internal), and a client certificate for mTLS.
 */
function makePki(dir: string): void {
  selfSigned(dir, 'test CA', 'ca.key', 'ca.pem');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,DNS:upstream.internal,IP:127.0.0.1\n');
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=upstream', '-keyout', 'server.key', '-out', 'server.csr']);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '1',
    '-extfile',
    'server.ext',
  ]);
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=make-order', '-keyout', 'client.key', '-out', 'client.csr']);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'client.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'client.pem',
    '-days',
    '1',
  ]);
  // A second CA that signed nothing here, and a key that is not the client certificate's.
  selfSigned(dir, 'other CA', 'other.key', 'other.pem');
}

describe(
  'tls: a private CA and a client certificate (docs/configuration.md, "TLS to upstreams")',
  { skip: !hasOpenssl && 'openssl not installed' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-pki-'));
    const f = (name: string): string => join(dir, name);
    let mtls: Server;
    let plain: Server;
    let mtlsPort = 0;
    let plainPort = 0;
    before(async () => {
      makePki(dir);
      const key = readFileSync(f('server.key'));
      const cert = readFileSync(f('server.pem'));
      // Requires a client certificate signed by the CA, and says whose it got.
      mtls = createServer({ key, cert, ca: readFileSync(f('ca.pem')), requestCert: true, rejectUnauthorized: true }, (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        res.end(`hello ${String(peer.subject?.CN ?? 'nobody')}`);
      });
      plain = createServer({ key, cert }, (req, res) => res.end(`plain ${req.headers.host}`));
      await new Promise<void>((r) => mtls.listen(0, '127.0.0.1', r));
      await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
      mtlsPort = (mtls.address() as AddressInfo).port;
      plainPort = (plain.address() as AddressInfo).port;
    });
    after(() => {
      for (const s of [mtls, plain]) {
        s.closeAllConnections();
        s.close();
      }
      rmSync(dir, { recursive: true, force: true });
    });

    test('ca trusts the private CA; cert and key are presented (mTLS); servername names the certificate; each alone fails', async () => {
      const p = await startProxy(
        [
          'defaults: { threshold: 5 }',
          'services:',
          `  untrusted: { url: "https://localhost:${plainPort}" }`,
          `  trusted: { url: "https://localhost:${plainPort}", tls: { ca: "${f('ca.pem')}" } }`,
          `  wrongca: { url: "https://localhost:${plainPort}", tls: { ca: "${f('other.pem')}" } }`,
          `  nocert: { url: "https://localhost:${mtlsPort}", tls: { ca: "${f('ca.pem')}" } }`,
          `  mutual: { url: "https://localhost:${mtlsPort}", tls: { ca: "${f('ca.pem')}", cert: "${f('client.pem')}", key: "${f('client.key')}" } }`,
          `  byname: { url: "https://127.0.0.1:${plainPort}", tls: { ca: "${f('ca.pem')}", servername: upstream.internal } }`,
          `  tls13: { url: "https://localhost:${plainPort}", tls: { ca: "${f('ca.pem')}", minVersion: TLSv1.3 } }`,
          '',
        ].join('\n'),
      );
      try {
        const untrusted = await request(p.port, '/svc/untrusted/x');
        assert.equal(untrusted.status, 502);
        assert.match(
          json(untrusted).detail,
          /^untrusted unreachable: tls (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/,
        );
        const trusted = await request(p.port, '/svc/trusted/x');
        assert.equal(trusted.status, 200);
        assert.equal(trusted.body, `plain localhost:${plainPort}`);
        assert.equal((await request(p.port, '/svc/wrongca/x')).status, 502, 'a ca replaces the roots it is not added to');
        const nocert = await request(p.port, '/svc/nocert/x');
        assert.equal(nocert.status, 502, 'the server requires a client certificate');
        const mutual = await request(p.port, '/svc/mutual/x');
        assert.equal(mutual.status, 200, mutual.body);
        assert.equal(mutual.body, 'hello make-order');
        const byname = await request(p.port, '/svc/byname/x');
        assert.equal(byname.status, 200, byname.body);
        assert.equal((await request(p.port, '/svc/tls13/x')).status, 200);
      } finally {
        await p.close();
      }
    });

    test('a reload that changes tls: new connections use it; the circuit is kept', async () => {
      const yaml = (tls: string): string =>
        `defaults: { threshold: 5 }\nservices:\n  product: { url: "https://localhost:${plainPort}"${tls} }\n`;
      const p = await startProxy(yaml(''));
      try {
        assert.equal((await request(p.port, '/svc/product/x')).status, 502);
        const before = p.proxy.registry.get('product')!;
        const result = p.proxy.reload(
          parseConfig(
            `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${yaml(`, tls: { ca: "${f('ca.pem')}" }`)}`,
            {},
          ),
        );
        assert.deepEqual(result.unchanged, ['product'], 'a tls change keeps the circuit');
        assert.equal(p.proxy.registry.get('product'), before, 'same circuit');
        assert.equal((await request(p.port, '/svc/product/x')).status, 200);
      } finally {
        await p.close();
      }
    });

    test('config errors name the key path: unreadable file, cert without key, a key not the certificate’s, tls on http', () => {
      const cases: Array<[string, RegExp]> = [
        [`tls: { ca: "${f('missing.pem')}" }`, /services\.product\.tls\.ca \(line \d+\): cannot read .*missing\.pem.*ENOENT/],
        [`tls: { cert: "${f('client.pem')}" }`, /services\.product\.tls\.key \(line \d+\): is required with cert/],
        [
          `tls: { cert: "${f('client.pem')}", key: "${f('other.key')}" }`,
          /services\.product\.tls\.key \(line \d+\): is not usable: .*key values mismatch/,
        ],
        [`tls: { ca: "${f('server.ext')}" }`, /services\.product\.tls\.ca \(line \d+\): is not usable/],
        [`tls: { minVersion: TLSv1.0 }`, /services\.product\.tls\.minVersion \(line \d+\): must be TLSv1.2 or TLSv1.3/],
      ];
      for (const [tls, expected] of cases) {
        assert.throws(
          () => parseConfig(`services:\n  product: { url: "https://localhost:1", ${tls} }\n`, {}),
          (e: ConfigError) => {
            assert.match(e.message, expected);
            return true;
          },
          tls,
        );
      }
      assert.throws(
        () => parseConfig(`services:\n  product: { url: "http://localhost:1", tls: { ca: "${f('ca.pem')}" } }\n`, {}),
        /services\.product\.tls \(line \d+\): needs an https url: product is not https/,
      );
      // Under defaults, tls applies to the https services and leaves the others alone.
      const c = parseConfig(
        `defaults: { tls: { ca: "${f('ca.pem')}" } }\nservices:\n  a: { url: "http://a:1" }\n  b: { url: "https://b:1" }\n`,
        {},
      );
      assert.equal(c.services.get('a')!.upstream.tls, undefined);
      assert.ok(c.services.get('b')!.upstream.tls?.ca);
    });
  },
);
