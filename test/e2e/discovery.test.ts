/**
 * DNS discovery (docs/endpoints.md, "Discovery") against a real DNS server on loopback: Debian's
 * dnsmasq answering from an --addn-hosts file that the test rewrites (SIGHUP re-reads it). The
 * upstreams listen on 127.0.0.1, .2 and .3 at one port, as the replicas behind a headless Service.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { DiscoveryEvent } from '../../src/upstream/service.js';
import { json, metricValue, request, startProxy, type RunningProxy } from '../helpers.js';

const DNSMASQ = ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq'].find((p) => existsSync(p));

/**
 * A UDP port that is free now, below Linux's ephemeral range (32768-60999) so the many client
 * sockets of tests running beside this one cannot take its TCP twin before dnsmasq binds both.
 */
async function freeUdpPort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const s = createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((r) => s.close(() => r()));
    if (ok) return port;
  }
}

/** Waits until dnsmasq answers for search.test (true) or exits (false). */
async function dnsAnswers(dns: ChildProcess, port: number): Promise<boolean> {
  const probe = new Resolver({ timeout: 200, tries: 1 });
  probe.setServers([`127.0.0.1:${port}`]);
  for (;;) {
    if (dns.exitCode !== null) return false;
    const a = await probe.resolve4('search.test').catch(() => []);
    if (a.length === 2) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe(
  'DNS discovery with a real DNS server',
  { skip: DNSMASQ === undefined ? 'dnsmasq not installed (.ci/run installs it)' : false },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-dns-'));
    const hosts = join(dir, 'hosts');
    let dns: ChildProcess;
    let dnsPort = 0;
    const servers: Server[] = [];
    /** Requests per upstream address, and whether that one answers 500. */
    const seen = new Map<string, number>();
    const failing = new Set<string>();
    let port = 0;
    let p: RunningProxy;

    const setHosts = (addresses: readonly string[]): void => {
      writeFileSync(hosts, addresses.map((a) => `${a} search.test\n`).join(''), { mode: 0o644 });
    };

    /** The next discovery answer whose addresses (or failure) satisfy `ok`. */
    const nextDiscovery = (ok: (d: DiscoveryEvent) => boolean): Promise<DiscoveryEvent> =>
      new Promise((resolve) => {
        const on = (d: DiscoveryEvent): void => {
          if (!ok(d)) return;
          p.proxy.registry.off('discovery', on);
          resolve(d);
        };
        p.proxy.registry.on('discovery', on);
      });

    before(async () => {
      // The replicas: 127.0.0.1, .2 and .3 on one port (the whole 127/8 is loopback on Linux).
      for (const ip of ['127.0.0.1', '127.0.0.2', '127.0.0.3']) {
        const s = createServer((req, res) => {
          req.resume();
          seen.set(ip, (seen.get(ip) ?? 0) + 1);
          res.setHeader('x-host-seen', req.headers.host ?? '');
          if (failing.has(ip)) res.writeHead(500).end('down');
          else res.end(ip);
        });
        s.listen(port, ip);
        await once(s, 'listening');
        port = (s.address() as AddressInfo).port;
        servers.push(s);
      }
      setHosts(['127.0.0.1', '127.0.0.2']);
      // The free UDP port may be taken (UDP or TCP, dnsmasq binds both) before dnsmasq binds it:
      // it then exits 2, and we try another port. A bounded number of tries, not a time window.
      let stderr = '';
      for (let attempt = 1; ; attempt++) {
        dnsPort = await freeUdpPort();
        stderr = '';
        dns = spawn(
          DNSMASQ!,
          [
            '--keep-in-foreground',
            '--conf-file=/dev/null',
            `--port=${dnsPort}`,
            '--listen-address=127.0.0.1',
            '--bind-interfaces',
            '--no-resolv',
            '--no-hosts',
            `--addn-hosts=${hosts}`,
            '--pid-file=',
            '--user=root',
            '--no-negcache',
          ],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
        dns.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
        if (await dnsAnswers(dns, dnsPort)) break;
        if (attempt === 5) throw new Error(`dnsmasq exited ${dns.exitCode}: ${stderr.trim()}`);
      }
      p = await startProxy(
        `defaults: { threshold: 100 }\nservices:\n  search:\n    url: http://search.test:${port}\n` +
          `    discovery: { dns: true, refresh: 100ms, servers: ["127.0.0.1:${dnsPort}"] }\n` +
          '    outlier: { consecutiveFailures: 1, ejectionTime: 1h, maxEjectedPercent: 100% }\n',
      );
    });

    after(async () => {
      await p?.close();
      dns?.kill('SIGKILL');
      for (const s of servers) {
        s.closeAllConnections();
        s.close();
      }
      rmSync(dir, { recursive: true, force: true });
    });

    const addresses = async (): Promise<Array<[string, string]>> =>
      json(await request(p.adminPort, '/breakers/search')).endpoints.map((e: { address: string; state: string }) => [e.address, e.state]);

    test('every address of the name is an endpoint; Host stays the name', async () => {
      if ((await addresses()).length !== 2) await nextDiscovery((d) => d.ok);
      assert.deepEqual(await addresses(), [
        [`127.0.0.1:${port}`, 'active'],
        [`127.0.0.2:${port}`, 'active'],
      ]);
      const rs = [];
      for (let i = 0; i < 4; i++) rs.push(await request(p.port, `/svc/search/q${i}`));
      assert.deepEqual(rs.map((r) => r.body).sort(), ['127.0.0.1', '127.0.0.1', '127.0.0.2', '127.0.0.2']);
      assert.equal(rs[0]!.headers['x-host-seen'], `search.test:${port}`);
    });

    test('an address added shows up, one removed goes, an ejected one that stays stays ejected', async () => {
      failing.add('127.0.0.2');
      for (let i = 0; i < 2; i++) await request(p.port, `/svc/search/e${i}`);
      assert.equal((await addresses()).find(([a]) => a.startsWith('127.0.0.2'))?.[1], 'ejected');
      const changed = nextDiscovery((d) => d.ok && d.addresses?.join(' ') === '127.0.0.2 127.0.0.3');
      setHosts(['127.0.0.2', '127.0.0.3']);
      dns.kill('SIGHUP');
      await changed;
      assert.deepEqual(await addresses(), [
        [`127.0.0.2:${port}`, 'ejected'],
        [`127.0.0.3:${port}`, 'active'],
      ]);
      const before3 = seen.get('127.0.0.3') ?? 0;
      const before1 = seen.get('127.0.0.1') ?? 0;
      for (let i = 0; i < 4; i++) assert.equal((await request(p.port, `/svc/search/n${i}`)).body, '127.0.0.3');
      assert.equal(seen.get('127.0.0.3'), before3 + 4);
      assert.equal(seen.get('127.0.0.1'), before1, 'the removed address gets nothing');
      assert.equal(await metricValue(p, `proxy_endpoint_ejected{service="search",endpoint="127.0.0.1:${port}"}`), undefined);
      assert.ok(p.logs.find((l) => l.msg === `search endpoint 127.0.0.3:${port} added`).length === 1);
    });

    test('a failed resolution keeps serving on the last set, counted and told once', async () => {
      const failed = nextDiscovery((d) => !d.ok);
      dns.kill('SIGKILL');
      await once(dns, 'exit');
      const d = await failed;
      assert.match(d.error ?? '', /^cannot resolve search\.test: /);
      assert.equal((await request(p.port, '/svc/search/after')).body, '127.0.0.3');
      assert.deepEqual(await addresses(), [
        [`127.0.0.2:${port}`, 'ejected'],
        [`127.0.0.3:${port}`, 'active'],
      ]);
      assert.match(json(await request(p.adminPort, '/breakers/search')).discoveryError, /^cannot resolve search\.test/);
      assert.ok((await metricValue(p, 'proxy_discovery_errors_total{service="search"}'))! >= 1);
      const warn = p.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('search discovery failed, keeping the last good set'));
      assert.equal(warn.length, 1, 'logged once while the error stays the same');
    });
  },
);
