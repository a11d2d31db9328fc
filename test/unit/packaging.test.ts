/**
 * Static checks for what cannot run here (no Docker engine): the Dockerfile, docker-compose.yml and
 * the Kubernetes example must agree with the code (ports, config path, health endpoint, services).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { BUILTIN } from '../../src/config/types.js';
import { NODE_FLAGS, PROCESS_ENV } from '../../src/runtime.js';
import { SERVICE_NAMES } from '../../examples/demo/services.js';
import { ROOT, startUpstream } from '../helpers.js';

const read = (p: string): string => readFileSync(`${ROOT}${p}`, 'utf8');
const sample = loadConfig(`${ROOT}config/proxy.yaml`, {});
const PORT = sample.listen.port;
const ADMIN = sample.admin.port;

interface Instruction {
  op: string;
  args: string;
}
/** Dockerfile instructions, continuation lines joined, comments dropped. */
function dockerfile(): Instruction[] {
  const joined = read('Dockerfile')
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(' ') };
    });
}

describe('Dockerfile', () => {
  const ins = dockerfile();
  const runtime = ins.slice(ins.map((i) => i.op).lastIndexOf('FROM'));
  test('multi-stage, pinned Node LTS base, non-root, tini as PID 1 running node directly', () => {
    assert.ok(ins.filter((i) => i.op === 'FROM').length >= 2);
    const arg = ins.find((i) => i.op === 'ARG' && i.args.startsWith('NODE_IMAGE='))!;
    assert.match(arg.args, /^NODE_IMAGE=node:(2[02468])\.\d+\.\d+-(bookworm|trixie)-slim$/);
    assert.equal(runtime.find((i) => i.op === 'USER')?.args, 'node');
    const entry = JSON.parse(runtime.find((i) => i.op === 'ENTRYPOINT')!.args) as string[];
    assert.deepEqual(entry.slice(0, 3 + NODE_FLAGS.length), ['/usr/bin/tini', '--', 'node', ...NODE_FLAGS], 'node with NODE_FLAGS');
    // The entrypoint file exists after the build and loads the compiled CLI.
    const file = entry[3 + NODE_FLAGS.length]!.replace('/app/', '');
    assert.ok(existsSync(`${ROOT}${file}`), file);
    assert.match(read(file), /\.\.\/dist\/src\/cli\.js/);
    assert.ok(existsSync(`${ROOT}dist/src/cli.js`));
    assert.ok(
      runtime.some((i) => i.op === 'RUN' && /npm ci --omit=dev/.test(i.args)),
      'production dependencies only',
    );
  });
  test('ports, config path and health check agree with the code', () => {
    const exposed = runtime.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(/\s+/).map(Number));
    assert.deepEqual(exposed.sort(), [PORT, ADMIN].sort());
    assert.deepEqual([PORT, ADMIN], [BUILTIN.listen.port, BUILTIN.admin.port]);
    const env = runtime
      .filter((i) => i.op === 'ENV')
      .map((i) => i.args)
      .join(' ');
    assert.match(env, /CIRCUIT_PROXY_CONFIG=\/etc\/circuit-proxy\/proxy\.yaml/);
    for (const [k, v] of Object.entries(PROCESS_ENV)) assert.ok(env.split(/\s+/).includes(`${k}=${v}`), `ENV ${k}=${v} (PROCESS_ENV)`);
    assert.ok(runtime.some((i) => i.op === 'COPY' && i.args === 'config/proxy.yaml /etc/circuit-proxy/proxy.yaml'));
    const health = runtime.find((i) => i.op === 'HEALTHCHECK')!.args;
    assert.ok(health.includes(`http://127.0.0.1:${ADMIN}/healthz`), health);
  });
  test("dockerfile-utils lint (the Docker language server's linter) reports nothing", () => {
    const r = spawnSync(process.execPath, [`${ROOT}node_modules/dockerfile-utils/bin/dockerfile-utils`, 'lint', `${ROOT}Dockerfile`], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal(r.stdout.trim(), '');
  });
  test('.dockerignore keeps node_modules and dist out of the context', () => {
    const lines = read('.dockerignore').split('\n');
    assert.ok(lines.includes('node_modules') && lines.includes('dist'));
  });
});

test('the bin, run directly, starts node with PROCESS_ENV and NODE_FLAGS (shebang; `env -S` splits them)', () => {
  const env = Object.entries(PROCESS_ENV).map(([k, v]) => `${k}=${v}`);
  assert.equal(read('bin/circuit-proxy.js').split('\n')[0], `#!/usr/bin/env -S ${env.join(' ')} node ${NODE_FLAGS.join(' ')}`);
});

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml')) as { services: Record<string, any> };
  const svc = compose.services;
  test("every demo upstream's health check probes the port its command listens on, not the image's admin port", () => {
    const merged = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, any> };
    for (const name of SERVICE_NAMES) {
      const c = merged.services[name];
      assert.ok(c.healthcheck, `${name} has a health check of its own (the image's probes :${ADMIN})`);
      assert.match(JSON.stringify(c.healthcheck.test), new RegExp(`127\\.0\\.0\\.1:${c.environment.PORT}/health`), name);
    }
  });
  test("make-order restarts by itself; the sidecar's health check fails once it no longer shares make-order's namespace", () => {
    assert.equal(svc['make-order'].restart, 'unless-stopped');
    const hc = JSON.stringify(svc['circuit-proxy'].healthcheck.test);
    assert.match(hc, new RegExp(`127\\.0\\.0\\.1:${ADMIN}/healthz`));
    assert.match(hc, /127\.0\.0\.1:8000\/health/, "make-order's own port, reachable only in its namespace");
  });
  test("no health check argument has a space (podman's Docker API splits there) and each runs a script the image has", async () => {
    const merged = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, any> };
    const checks = Object.entries(merged.services).filter(([, c]) => c.healthcheck);
    assert.ok(checks.length >= 8, 'make-order, its sidecar and six upstreams');
    for (const [name, c] of checks) {
      const args = c.healthcheck.test as string[];
      assert.equal(args[0], 'CMD', name);
      for (const a of args) assert.doesNotMatch(a, /\s/, `${name}: ${JSON.stringify(a)} (containers/podman#26519)`);
      // /app/dist/... in the image is dist/... here: the same tsc output.
      assert.ok(existsSync(`${ROOT}${args[2]!.replace('/app/', '')}`), `${name}: ${args[2]} is built`);
    }
    const [ok, bad] = await Promise.all([200, 500].map((status) => startUpstream((_req, res) => res.writeHead(status).end())));
    try {
      const probe = async (...urls: string[]): Promise<number | null> => {
        const child = spawn(process.execPath, [`${ROOT}dist/examples/demo/probe.js`, ...urls], { stdio: 'ignore' });
        return ((await once(child, 'exit')) as [number | null])[0];
      };
      assert.equal(await probe(ok!.url), 0);
      assert.equal(await probe(ok!.url, bad!.url), 1, 'every URL must answer 2xx');
      assert.equal(await probe(), 2, 'usage');
    } finally {
      await Promise.all([ok!.close(), bad!.close()]);
    }
  });
  test('every service in config/proxy.yaml has a compose service of its name, reachable at the URL host and port it defaults to', () => {
    for (const s of sample.services.values()) {
      const c = svc[s.name];
      assert.ok(c, `compose service ${s.name} (docs/operations.md: docker compose stop ${s.name})`);
      assert.ok(c.networks.default.aliases.includes(s.target.hostname), `${s.name} answers as ${s.target.hostname}`);
      assert.equal(s.target.port, '8000');
      assert.equal(c.environment?.PORT ?? '8000', '8000');
      assert.ok(JSON.stringify(c.entrypoint).includes(`/service.js","${s.name}"`), `${s.name} runs the ${s.name} demo service`);
    }
    assert.deepEqual([...sample.services.keys()].sort(), [...SERVICE_NAMES].sort());
  });
  test("circuit-proxy is make-order's sidecar: shared network namespace, admin published, proxy port not", () => {
    const cp = svc['circuit-proxy'];
    assert.equal(cp.network_mode, 'service:make-order');
    // '${MAKE_ORDER_PUBLISH:-8000}:8000' read with its default.
    const published = (svc['make-order'].ports as string[]).map((p) =>
      p
        .replace(/\$\{\w+:-([^}]*)\}/g, '$1')
        .split(':')
        .map(Number),
    );
    assert.ok(!published.some(([, c]) => c === PORT), `${PORT} is the app's alone (loopback)`);
    assert.ok(
      published.some(([h, c]) => h === ADMIN && c === ADMIN),
      `publishes ${ADMIN}`,
    );
    assert.equal(svc['make-order'].environment.PROXY_URL, `http://localhost:${PORT}`);
  });
  test('config mounted where the image reads it; CB_* passed through from .env', () => {
    const cp = svc['circuit-proxy'];
    assert.ok((cp.volumes as string[]).includes('./config/proxy.yaml:/etc/circuit-proxy/proxy.yaml:ro'));
    assert.equal(cp.environment.CB_THRESHOLD, '${CB_THRESHOLD:-3}');
    assert.equal(cp.environment.CB_COOLDOWN_SECONDS, '${CB_COOLDOWN_SECONDS:-30}');
    assert.match(read('.env'), /^CB_THRESHOLD=\d+$/m);
    assert.match(read('.env'), /^CB_COOLDOWN_SECONDS=\d+$/m);
  });
  test('the monitoring profile scrapes the admin port', () => {
    assert.deepEqual(svc.prometheus.profiles, ['monitoring']);
    const prom = parse(read('examples/monitoring/prometheus.yml'));
    assert.deepEqual(prom.scrape_configs[0].static_configs[0].targets, [`make-order:${ADMIN}`]);
  });
  const compose1 = spawnSync('docker-compose', ['version']).status === 0;
  test(
    'docker-compose config -q accepts it, and the sidecar proxy listens on loopback with no published proxy port',
    { skip: !compose1 && 'docker-compose not installed (apt-get install docker-compose)' },
    () => {
      const r = spawnSync('docker-compose', ['-f', `${ROOT}docker-compose.yml`, 'config'], { encoding: 'utf8', cwd: ROOT });
      assert.equal(r.status, 0, r.stderr);
      const resolved = parseAllDocuments(r.stdout)[0]!.toJS();
      const env = resolved.services['circuit-proxy'].environment;
      assert.equal(env.CIRCUIT_PROXY_LISTEN_HOST, '127.0.0.1');
      assert.equal(loadConfig(`${ROOT}config/proxy.yaml`, env).listen.host, '127.0.0.1');
      const published = JSON.stringify(resolved.services['make-order'].ports ?? []);
      assert.doesNotMatch(published, new RegExp(`\\b${PORT}\\b`), 'the proxy port is not published');
    },
  );
  test(
    'the fleet profile: Redis and two make-order replicas whose sidecars share one fleet, each with its own id (docs/fleet.md)',
    { skip: !compose1 && 'docker-compose not installed (apt-get install docker-compose)' },
    () => {
      const r = spawnSync('docker-compose', ['-f', `${ROOT}docker-compose.yml`, '--profile', 'fleet', 'config'], {
        encoding: 'utf8',
        cwd: ROOT,
      });
      assert.equal(r.status, 0, r.stderr);
      const resolved = parseAllDocuments(r.stdout)[0]!.toJS();
      assert.ok(resolved.services.redis, 'a Redis');
      const ids = ['a', 'b'].map((x) => {
        const sidecar = resolved.services[`circuit-proxy-${x}`];
        assert.equal(sidecar.network_mode, `service:make-order-${x}`);
        const fleet = loadConfig(`${ROOT}examples/compose/proxy-fleet.yaml`, sidecar.environment).fleet!;
        assert.equal(fleet.key, 'make-order');
        assert.equal(fleet.redis, 'redis://redis:6379/0');
        return fleet.sidecar;
      });
      assert.deepEqual(ids, ['make-order-a', 'make-order-b']);
      for (const name of ['redis', 'make-order-a', 'circuit-proxy-a', 'make-order-b', 'circuit-proxy-b'])
        assert.deepEqual(resolved.services[name].profiles, ['fleet'], `${name} only with the profile`);
    },
  );
  test(
    'examples/compose/replicas.yml: product scaled to 3, the sidecar reading the config with product found by DNS',
    { skip: !compose1 && 'docker-compose not installed (apt-get install docker-compose)' },
    () => {
      const r = spawnSync('docker-compose', ['-f', `${ROOT}docker-compose.yml`, '-f', `${ROOT}examples/compose/replicas.yml`, 'config'], {
        encoding: 'utf8',
        cwd: ROOT,
      });
      assert.equal(r.status, 0, r.stderr);
      const resolved = parseAllDocuments(r.stdout)[0]!.toJS();
      assert.equal(resolved.services.product.deploy.replicas, 3);
      // docker-compose 1.x prints a volume as "source:target:mode", 2.x as {source, target}.
      const mounts = (resolved.services['circuit-proxy'].volumes as unknown[])
        .map((v: any) => (typeof v === 'string' ? { source: v.split(':')[0], target: v.split(':')[1] } : v))
        .filter((v: any) => v.target === '/etc/circuit-proxy/proxy.yaml');
      assert.deepEqual(
        mounts.map((v: any) => v.source),
        [`${ROOT}examples/compose/proxy.yaml`],
        'the override replaces the mount, not adds one',
      );
      const cfg = loadConfig(`${ROOT}examples/compose/proxy.yaml`, resolved.services['circuit-proxy'].environment);
      const product = cfg.services.get('product')!;
      assert.ok(product.upstream.discovery);
      assert.ok(resolved.services.product.networks.default.aliases.includes(new URL(product.url).hostname));
      // Apart from product's discovery and outlier, the same config as config/proxy.yaml.
      const plain = loadConfig(`${ROOT}config/proxy.yaml`, resolved.services['circuit-proxy'].environment);
      assert.deepEqual([...cfg.services.keys()], [...plain.services.keys()]);
      for (const name of cfg.services.keys()) if (name !== 'product') assert.deepEqual(cfg.services.get(name), plain.services.get(name));
    },
  );
});

test('the Dockerfile needs no BuildKit frontend image and leaves no root-owned compile cache behind', () => {
  const dockerfile = read('Dockerfile');
  assert.doesNotMatch(dockerfile, /^#\s*syntax=/m, 'a syntax directive makes BuildKit pull a frontend image');
  const runtimeInstall = dockerfile.split('\n').find((l) => l.startsWith('RUN npm ci --omit=dev'));
  assert.match(runtimeInstall ?? '', /rm -rf \/tmp\/node-compile-cache/);
});

test('the docker run example resolves host.docker.internal on a Linux engine too', () => {
  const ops = read('docs/operations.md');
  const run = /```bash\n([^`]*docker run[^`]*)```/.exec(ops)?.[1] ?? '';
  assert.match(run, /host\.docker\.internal/);
  assert.match(run, /--add-host=host\.docker\.internal:host-gateway/);
});

describe('examples/kubernetes', () => {
  const docs = ['deployment.yaml', 'configmap.yaml', 'product-service.yaml'].flatMap((f) =>
    parseAllDocuments(read(`examples/kubernetes/${f}`)).map((d) => d.toJS()),
  );
  const deploy = docs.find((d) => d.kind === 'Deployment');
  const cm = docs.find((d) => d.kind === 'ConfigMap');
  const pod = deploy.spec.template.spec;
  const sidecar = pod.initContainers.find((c: any) => c.name === 'circuit-proxy');
  test('native sidecar with probes on the admin port and Prometheus annotations', () => {
    assert.equal(sidecar.restartPolicy, 'Always');
    const ports = Object.fromEntries(sidecar.ports.map((p: any) => [p.name, p.containerPort]));
    assert.deepEqual(ports, { proxy: PORT, admin: ADMIN });
    assert.equal(sidecar.livenessProbe.httpGet.path, '/healthz');
    assert.equal(sidecar.readinessProbe.httpGet.path, '/readyz');
    assert.equal(sidecar.livenessProbe.httpGet.port, 'admin');
    assert.equal(deploy.spec.template.metadata.annotations['prometheus.io/port'], String(ADMIN));
    assert.ok(sidecar.resources.requests.memory && sidecar.resources.limits.memory);
    const app = pod.containers.find((c: any) => c.name === 'make-order');
    assert.equal(app.env.find((e: any) => e.name === 'PROXY_URL').value, `http://localhost:${PORT}`);
  });
  test("valid Kubernetes objects by the API's own schema (kubernetes-models, generated from the OpenAPI spec)", () => {
    // Required fields and types; the OpenAPI spec does not refuse unknown keys, so typos pass.
    new Deployment(deploy).validate();
    new ConfigMap(cm).validate();
    new Service(docs.find((d) => d.kind === 'Service')).validate();
    const broken = structuredClone(deploy);
    delete broken.spec.selector;
    assert.throws(() => new Deployment(broken).validate(), /must have required property selector/);
  });
  test('the ConfigMap holds a valid proxy.yaml, mounted where the image reads it', () => {
    const cfg = parseConfig(cm.data['proxy.yaml'], {});
    assert.deepEqual([...cfg.services.keys()].sort(), [...SERVICE_NAMES].sort());
    assert.deepEqual([cfg.listen.port, cfg.admin.port], [PORT, ADMIN]);
    assert.equal(cfg.listen.host, '127.0.0.1', 'the sidecar proxy listens on loopback only');
    assert.equal(sidecar.volumeMounts[0].mountPath, '/etc/circuit-proxy');
    assert.deepEqual(sidecar.args, ['serve', '--config', '/etc/circuit-proxy/proxy.yaml']);
  });
  test("product is found through a headless Service: the config's discovery host is that Service's cluster name", () => {
    const svc = docs.find((d) => d.kind === 'Service');
    assert.equal(svc.spec.clusterIP, 'None', 'headless: DNS answers with every pod, not one virtual IP');
    const product = parseConfig(cm.data['proxy.yaml'], {}).services.get('product')!;
    assert.ok(product.upstream.discovery, 'product has discovery.dns');
    const url = new URL(product.url);
    assert.equal(url.hostname.split('.')[0], svc.metadata.name);
    assert.equal(Number(url.port), svc.spec.ports[0].port);
    assert.deepEqual(svc.spec.selector, { 'app.kubernetes.io/name': 'product' });
  });
});

const yamllint = spawnSync('yamllint', ['--version']).status === 0;
test('yamllint accepts the YAML files', { skip: !yamllint && 'yamllint not installed (apt-get install yamllint)' }, () => {
  const r = spawnSync(
    'yamllint',
    ['-c', `${ROOT}.yamllint.yaml`, '--strict', 'config', 'docker-compose.yml', 'examples', '.yamllint.yaml'],
    { encoding: 'utf8', cwd: ROOT },
  );
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

const shellcheck = spawnSync('shellcheck', ['--version']).status === 0;
test('shellcheck accepts the shell scripts', { skip: !shellcheck && 'shellcheck not installed (apt-get install shellcheck)' }, () => {
  const r = spawnSync('shellcheck', ['scripts/image-test.sh', '.ci/run', '.ci/other-nodes'], { encoding: 'utf8', cwd: ROOT });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('the sidecar is recreated alone: --no-deps (else compose recreates make-order, which podman refuses while the sidecar joins it)', () => {
  const command = 'up -d --no-deps --force-recreate circuit-proxy';
  assert.ok(read('docker-compose.yml').includes(command));
  assert.ok(read('docs/operations.md').replace(/\s+/g, ' ').includes(command));
  assert.ok(read('scripts/image-test.sh').includes(command.replace('-d', '-d --no-build')), 'the image test runs the documented command');
});
