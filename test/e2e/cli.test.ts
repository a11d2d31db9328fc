import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test, after } from 'node:test';
import { NODE_FLAGS } from '../../src/runtime.js';
import { BIN, json, listening, request, ROOT, runCli, spawnCli, startProxy, startUpstream } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'circuit-proxy-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('CLI (docs/operations.md), the real bin', () => {
  test('--help and --version exit 0', async () => {
    const help = await runCli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /serve/);
    assert.match(help.stdout, /validate/);
    assert.match(help.stdout, /status/);
    const serveHelp = await runCli(['serve', '--help']);
    assert.equal(serveHelp.code, 0);
    assert.match(serveHelp.stdout, /--admin-port/);
    const version = await runCli(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+$/);
  });

  test('schema prints the committed JSON Schema and exits 0', async () => {
    const r = await runCli(['schema']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, readFileSync(`${ROOT}config/proxy.schema.json`, 'utf8'));
    assert.equal((JSON.parse(r.stdout) as { $schema: string }).$schema, 'https://json-schema.org/draft/2020-12/schema');
  });

  test("schema through a shell pipe: all of it, not the pipe buffer's first 64 KiB", async () => {
    const size = readFileSync(`${ROOT}config/proxy.schema.json`).length;
    assert.ok(size > 65_536, 'the schema is larger than a pipe buffer');
    const { stdout } = await promisify(execFile)('sh', ['-c', `"${process.execPath}" "${BIN}" schema | wc -c`]);
    assert.equal(Number(stdout.trim()), size);
  });

  test('node runs with NODE_FLAGS whichever way the bin is started; the listening line says so', async () => {
    const cfg = file(
      'flags.yaml',
      'listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices: {product: {url: "http://127.0.0.1:1"}}\n',
    );
    const flags = async (nodeFlags: readonly string[] | 'shebang', env: NodeJS.ProcessEnv = {}): Promise<unknown> => {
      const cli = spawnCli(['serve', '--config', cfg], env, nodeFlags);
      try {
        const line = await cli.waitLine(listening);
        return {
          memoryReducer: line.memoryReducer,
          maxSemiSpaceMB: line.maxSemiSpaceMB,
          initialOldSpaceMB: line.initialOldSpaceMB,
          mallocTrimThreshold: line.mallocTrimThreshold,
        };
      } finally {
        cli.child.kill('SIGTERM');
        await cli.exit;
      }
    };
    const shipped = { memoryReducer: false, maxSemiSpaceMB: 16, initialOldSpaceMB: 64, mallocTrimThreshold: '67108864' };
    assert.deepEqual(await flags('shebang'), shipped, 'bin/circuit-proxy.js run directly (npx, PATH)');
    assert.deepEqual(await flags(NODE_FLAGS), shipped, 'node <NODE_FLAGS> bin/circuit-proxy.js (Dockerfile, demo, bench)');
    assert.deepEqual(
      await flags([], { MALLOC_TRIM_THRESHOLD_: undefined }),
      { memoryReducer: true, maxSemiSpaceMB: null, initialOldSpaceMB: null, mallocTrimThreshold: null },
      'plain node: reported, not hidden',
    );
  });

  test('bad usage exits 2', async () => {
    assert.equal((await runCli(['--no-such-flag'])).code, 2);
    assert.equal((await runCli(['serve', '--port', 'abc'])).code, 2);
    assert.equal((await runCli(['serve', '--log-level', 'loud'])).code, 2);
  });

  test('validate: the policies per service, and a note where slowCalls.duration can never fire', async () => {
    const cfg = file(
      'policies.yaml',
      'services:\n  product:\n    url: http://p:8000\n    timeout: 2s\n    slowCalls: { duration: 2s, threshold: 80% }\n    halfOpen: { queue: 5 }\n  cart:\n    url: http://c:8000\n',
    );
    const r = await runCli(['validate', '--config', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^product .*slowCalls >2s 80% of >=20 in 30s; halfOpen 1 trial, queue 5 \(1s\)$/m);
    assert.match(r.stdout, /^cart .* -$/m);
    assert.match(r.stdout, /^note: product: slowCalls\.duration \(2s\) >= timeout \(2s\): .*never fires$/m);
  });

  test('validate: the fleet line, its Redis password hidden, the host name as the sidecar id by default', async () => {
    const cfg = file(
      'fleet.yaml',
      'fleet:\n  redis: redis://:s3cret@redis:6379/0\n  key: make-order\n  quorum: 2\n  share: [trial]\nservices:\n  product:\n    url: http://p:8000\n',
    );
    const r = await runCli(['validate', '--config', cfg]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`^fleet make-order through redis://:\\*\\*\\*@redis:6379/0: sidecar ${hostname()}, shares trial, quorum 2`, 'm'),
    );
    assert.doesNotMatch(r.stdout, /s3cret/);
  });

  test('validate: the sample config is valid; a bad one exits 2 naming the key path, no stack trace', async () => {
    const ok = await runCli(['validate']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /product\s+http:\/\/product-service:8000\s+3\s+30s\s+5s/);
    const bad = file('bad.yaml', 'services:\n  product:\n    url: http://p:8000\n    threshold: 0\n');
    const r = await runCli(['validate', '--config', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /services\.product\.threshold \(line 4\): must be an integer ≥ 1, got 0/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    const viaEnv = await runCli(['validate'], { CIRCUIT_PROXY_CONFIG: bad });
    assert.equal(viaEnv.code, 2);
  });

  test('serve: bad config exits 2 before listening; busy port exits 1', async () => {
    const bad = await runCli(['serve', '--config', file('bad2.yaml', 'services: {product: {url: ftp://x}}\n')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /services\.product\.url/);
    const blocker = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const port = (blocker.address() as { port: number }).port;
    const busy = await runCli([
      'serve',
      '--config',
      file('busy.yaml', `listen: {host: 127.0.0.1, port: ${port}}\nservices: {product: {url: "http://127.0.0.1:1"}}\n`),
    ]);
    blocker.close();
    assert.equal(busy.code, 1);
  });

  test('serve with env precedence, status table, SIGHUP reload, SIGTERM drain exit 0', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200).end('ok');
    });
    const gone = await startUpstream(() => undefined);
    const deadUrl = gone.url;
    await gone.close();
    const cfg = file(
      'serve.yaml',
      `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\ndefaults: {threshold: 5, cooldown: 10s}\nservices:\n  product:\n    url: \${PRODUCT_URL}\n  cart:\n    url: ${up.url}\n`,
    );
    const cli = spawnCli(['serve', '--config', cfg], { PRODUCT_URL: deadUrl, CB_THRESHOLD: '2', CB_COOLDOWN_SECONDS: '0.2' });
    try {
      const ready = await cli.waitLine(listening);
      const port = ready.port as number;
      const adminPort = ready.adminPort as number;
      assert.equal((await request(port, '/svc/cart/x')).status, 200);
      assert.equal((await request(port, '/svc/product/x')).status, 502);
      assert.equal((await request(port, '/svc/product/x')).status, 502);
      const open = await request(port, '/svc/product/x');
      assert.equal(open.status, 503, 'env CB_THRESHOLD=2 beat YAML defaults.threshold=5');
      assert.equal(json(open).detail, 'Circuit open for product');
      const line = await cli.waitLine((l) => l.msg === 'Circuit open for product');
      assert.equal(line.service, 'product');
      assert.equal(line.to, 'open');

      // Hold it open (the 200 ms cooldown is shorter than spawning `status`).
      assert.equal((await request(adminPort, '/breakers/product/open', { method: 'POST' })).status, 200);
      const status = await runCli(['status', '--admin-url', `http://127.0.0.1:${adminPort}`]);
      assert.equal(status.code, 3, 'a circuit is open');
      assert.match(status.stdout, /SERVICE\s+STATE\s+FAILURES\s+NEXT PROBE IN\s+REQUESTS\s+REJECTED/);
      assert.match(status.stdout, /product\s+open \(forced\)\s+2\/2\s+forced\s+3\s+1\s+/);
      assert.match(status.stdout, /cart\s+closed\s+0\/2\s+-\s+1\s+0/);
      const asJson = await runCli(['status', '--json', '--admin-url', `http://127.0.0.1:${adminPort}`]);
      assert.equal(JSON.parse(asJson.stdout).breakers[1].name, 'cart');

      // Reload: product now points at the live upstream (changed -> fresh breaker), cart unchanged.
      writeFileSync(
        cfg,
        `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  product:\n    url: ${up.url}\n  cart:\n    url: ${up.url}\n  order:\n    url: ${up.url}\n`,
      );
      cli.child.kill('SIGHUP');
      const reloaded = await cli.waitLine((l) => l.msg === 'config reloaded');
      assert.deepEqual(reloaded.changed, ['product']);
      assert.deepEqual(reloaded.added, ['order']);
      assert.deepEqual(reloaded.unchanged, ['cart']);
      assert.equal((await request(port, '/svc/order/x')).status, 200);
      const closed = await runCli(['status', '--admin-url', `http://127.0.0.1:${adminPort}`]);
      assert.equal(closed.code, 0, closed.stdout);

      writeFileSync(cfg, 'services: {product: {url: nope}}\n');
      cli.child.kill('SIGHUP');
      const rejected = await cli.waitLine((l) => typeof l.msg === 'string' && l.msg.startsWith('config reload rejected'));
      assert.match(String(rejected.msg), /services\.product\.url/);
      assert.equal((await request(port, '/svc/order/x')).status, 200, 'old config keeps serving');

      cli.child.kill('SIGTERM');
      assert.equal(await cli.exit, 0);
    } finally {
      cli.child.kill('SIGKILL');
      await up.close();
    }
  });

  test('status --watch redraws the table every second until interrupted, then exits 0', async () => {
    const up = await startUpstream((req, res) => {
      req.resume();
      res.end('ok');
    });
    const p = await startProxy(`services:\n  product:\n    url: ${up.url}\n`);
    const child = spawn(
      process.execPath,
      [...NODE_FLAGS, `${ROOT}bin/circuit-proxy.js`, 'status', '--watch', '--admin-url', `http://127.0.0.1:${p.adminPort}`],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const frames = (): number => out.split('(Ctrl-C to stop)').length - 1;
      const t0 = performance.now();
      while (frames() < 1) await new Promise((r) => setTimeout(r, 20));
      await request(p.port, '/svc/product/x');
      await request(p.adminPort, '/breakers/product/open', { method: 'POST' });
      while (frames() < 3 && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      assert.ok(frames() >= 3, `${frames()} frames`);
      assert.match(out, /product\s+closed/);
      assert.match(out.slice(out.lastIndexOf('(Ctrl-C to stop)')), /product\s+open \(forced\)\s+0\/3\s+forced\s+1\s+0/);
      child.kill('SIGINT');
      const [code] = (await once(child, 'exit')) as [number];
      assert.equal(code, 0);
    } finally {
      child.kill('SIGKILL');
      await p.close();
      await up.close();
    }
  });

  test('status exits 1 when the admin listener is unreachable', async () => {
    const r = await runCli(['status', '--admin-url', 'http://127.0.0.1:1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot read breakers/);
  });
});

test('a closed stdout (validate | head -1) ends quietly, no stack trace', async () => {
  const { spawn } = await import('node:child_process');
  const { BIN, ROOT } = await import('../helpers.js');
  // Far more output than a pipe buffers (64 KiB), so writes after the reader left must fail.
  const many = file(
    'many.yaml',
    `services:\n${Array.from({ length: 3000 }, (_, i) => `  svc-${i}: { url: "http://127.0.0.1:9/${i}" }\n`).join('')}`,
  );
  const child = spawn(process.execPath, [BIN, 'validate', '--config', many], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.once('data', () => child.stdout.destroy());
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(stderr, '');
  assert.equal(code, 0);
});
