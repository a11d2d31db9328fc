import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, after } from 'node:test';
import { listening, request, spawnCli, startUpstream, type Upstream } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-life-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function heldUpstream(): Promise<Upstream & { release(): void }> {
  const held: Array<() => void> = [];
  const up = await startUpstream((req, res) => {
    req.resume();
    if (req.url === '/fast') return void res.end('fast');
    held.push(() => res.end('done'));
  });
  return Object.assign(up, { release: () => held.splice(0).forEach((f) => f()) });
}

function startCli(upUrl: string, grace: string) {
  const cfg = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    cfg,
    `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nshutdownGrace: ${grace}\nservices:\n  product:\n    url: ${upUrl}\n`,
  );
  return spawnCli(['serve', '--config', cfg]);
}

function get(
  port: number,
  path: string,
  agent: Agent | false = false,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('lifecycle (docs/operations.md), the real bin and real signals', () => {
  test('SIGTERM drains: in-flight requests finish with Connection: close, new connections refused, not ready, exit 0', async () => {
    const up = await heldUpstream();
    const cli = startCli(up.url, '10s');
    try {
      const { port, adminPort } = (await cli.waitLine(listening)) as { port: number; adminPort: number };
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      assert.equal((await get(port, '/svc/product/fast', agent)).status, 200);
      const inflight = get(port, '/svc/product/slow', agent);
      await once(up.events, 'request');
      cli.child.kill('SIGTERM');
      await cli.waitLine((l) => typeof l.msg === 'string' && l.msg.startsWith('draining'));
      assert.equal((await request(adminPort, '/readyz')).status, 503);
      await assert.rejects(
        new Promise((resolve, reject) => connect(port, '127.0.0.1').on('connect', resolve).on('error', reject)),
        /ECONNREFUSED/,
      );
      up.release();
      const r = await inflight;
      assert.equal(r.status, 200);
      assert.equal(r.body, 'done');
      assert.equal(r.headers.connection, 'close');
      assert.equal(await cli.exit, 0);
      agent.destroy();
    } finally {
      cli.child.kill('SIGKILL');
      await up.close();
    }
  });

  test('the grace period bounds the drain; a second signal exits at once', async () => {
    const up = await heldUpstream();
    const a = startCli(up.url, '300ms');
    const b = startCli(up.url, '30s');
    try {
      const pa = ((await a.waitLine(listening)) as { port: number }).port;
      const pb = ((await b.waitLine(listening)) as { port: number }).port;
      const ra = get(pa, '/svc/product/never').catch((e: Error) => e);
      const rb = get(pb, '/svc/product/never').catch((e: Error) => e);
      await Promise.all([once(up.events, 'request'), once(up.events, 'request')]);
      a.child.kill('SIGTERM');
      assert.equal(await a.exit, 0, 'grace over: remaining connections cut, still a clean exit');
      assert.ok((await ra) instanceof Error);
      b.child.kill('SIGTERM');
      await b.waitLine((l) => typeof l.msg === 'string' && l.msg.startsWith('draining'));
      b.child.kill('SIGTERM');
      assert.equal(await b.exit, 1);
      assert.ok((await rb) instanceof Error);
    } finally {
      a.child.kill('SIGKILL');
      b.child.kill('SIGKILL');
      await up.close();
    }
  });

  test('POST /reload applies a new file; an invalid one is refused with the §1 errors (400) and the old config keeps serving', async () => {
    const up = await heldUpstream();
    const cfg = join(dir, 'reload.yaml');
    writeFileSync(
      cfg,
      `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  product:\n    url: ${up.url}\n`,
    );
    const cli = spawnCli(['serve', '--config', cfg]);
    try {
      const { port, adminPort } = (await cli.waitLine(listening)) as { port: number; adminPort: number };
      writeFileSync(
        cfg,
        `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  product:\n    url: ${up.url}\n  cart:\n    url: ${up.url}\n`,
      );
      const ok = await request(adminPort, '/reload', { method: 'POST' });
      assert.equal(ok.status, 200);
      assert.deepEqual(JSON.parse(ok.body).added, ['cart']);
      assert.equal((await request(port, '/svc/cart/fast')).status, 200);
      writeFileSync(cfg, 'services:\n  product:\n    url: http://p:1\n    threshold: 0\n');
      const bad = await request(adminPort, '/reload', { method: 'POST' });
      assert.equal(bad.status, 400);
      assert.match(JSON.parse(bad.body).detail, /services\.product\.threshold \(line 4\): must be an integer ≥ 1, got 0/);
      assert.equal((await request(port, '/svc/cart/fast')).status, 200);
      cli.child.kill('SIGTERM');
      assert.equal(await cli.exit, 0);
    } finally {
      cli.child.kill('SIGKILL');
      await up.close();
    }
  });
});
