/**
 * `npm run bench`: circuit-proxy against a bare http-proxy baseline, measured in the same run.
 *
 * Processes: a keep-alive upstream (bench/upstream.ts), the baseline (bench/baseline.ts: bare
 * http-proxy 1.18.1, same agent settings), and circuit-proxy (the real CLI) with two services on
 * the same upstream: `product` (closed) and `held` (forced open through the admin API), and
 * `replicas`: three endpoints (three listeners of the upstream process), round-robin, outlier set; and
 * `retrying`: the default retry rule (docs/retries.md), never needed by the healthy upstream; and
 * `routed`: three routes (docs/routes.md), the last matching every request of the load; and a
 * second circuit-proxy process with `fleet` configured (docs/fleet.md) and a local redis-server up,
 * its closed `product` loaded as `fleet`, beside its twin without `fleet` (`twin`). When
 * `taskset` exists, each proxy is pinned to core 0, upstream and load generator to core 1. The
 * floor (bench/floor.ts: a bare Node server answering the open circuit's 503) is measured too: it
 * bounds what the open/closed ratio can be on the machine at hand.
 * Load: wrk (when installed) or autocannon, 50 connections, BENCH_SECONDS (default 4) per round,
 * BENCH_ROUNDS (default 9) alternating rounds of baseline / closed / fleet / every policy / 3 endpoints / retries / routes / open / bulkhead rejection / fallback / floor, every other round in
 * reverse order. Then BENCH_PAIRED_ROUNDS (default 5) paired rounds, baseline and closed loaded
 * at the same time (bench/paired.ts), and closed, open (a second proxy process) and floor likewise; RSS
 * of a fresh proxy process after 30 s at 50 connections; a 1,000-service config (time to ready, /metrics scrape, RSS);
 * streaming rounds (bench/streaming.ts: a 1 GiB response and request body, baseline against circuit-proxy).
 * Then WebSocket rounds (bench/websocket.ts: echo messages/s and handshakes/s, baseline's `ws` against circuit-proxy).
 * Every Node process runs with circuit-proxy's NODE_FLAGS, on this Node or BENCH_NODE (bench/tools.ts). Targets 127.0.0.1 only; stops by itself. Writes bench/results/bench-<time>.json and BENCHMARKS.md.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { cpus } from 'node:os';
import { firstLine, forceOpen, listeningPorts } from './child.js';
import { NODE_FLAGS, PROCESS_ENV } from '../src/runtime.js';
import { pairedRounds } from './paired.js';
import {
  streamingRounds,
  streamingSummary,
  streamingTargets,
  STREAM_BLOCK,
  STREAM_MB,
  STREAM_ROUNDS,
  type StreamingResult,
} from './streaming.js';
import { websocketRounds, WS_ROUNDS, type WebSocketResult } from './websocket.js';
import {
  CLK_TCK,
  cleanUp,
  cpuTicks,
  load,
  median,
  NODE_VERSION,
  ROOT,
  rssMB,
  start,
  startRedisServer,
  TASKSET,
  tempFile,
  WRK,
  type Load,
} from './tools.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
const RSS_SECONDS = Number(process.env.BENCH_RSS_SECONDS ?? 30);
const PAIRED_ROUNDS = Number(process.env.BENCH_PAIRED_ROUNDS ?? 5);
const CONNECTIONS = 50;

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** A service with every trip and recovery policy set (docs/policies.md), none of them reached by the load. */
const POLICIES_SERVICE = (url: string): string =>
  `  policies:\n    url: ${url}\n    failureRate: { threshold: 50%, minRequests: 20, window: 30s }\n` +
  `    slowCalls: { duration: 2s, threshold: 80%, minRequests: 20, window: 30s }\n` +
  `    backoff: { multiplier: 2, max: 5m, jitter: 10% }\n    halfOpen: { trials: 3, queue: 10, maxWait: 1s }\n` +
  `    retryAfter: { honor: true, max: 10m }\n`;

interface Measured extends Load {
  cpuUsPerRequest: number;
  rssMB: number;
  upstreamConnections?: number;
  upstreamRequests?: number;
}

/** The upstream's counters, read on a fresh connection (no keep-alive). */
function upstreamStats(url: string): Promise<{ connections: number; requests: number }> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(JSON.parse(body) as { connections: number; requests: number }));
    }).on('error', reject);
  });
}

/**
 * The upstream's counters once nothing but our own stats requests reaches it: requests of the
 * previous round still queued in a busy proxy when its load generator stopped arrive late, and
 * must not be counted against the round that follows (seen: 25 of them after a slow closed round).
 */
async function settledUpstreamStats(url: string): Promise<{ connections: number; requests: number }> {
  let prev = await upstreamStats(url);
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const next = await upstreamStats(url);
    if (next.requests === prev.requests + 1 && next.connections === prev.connections + 1) return next;
    prev = next;
  }
  throw new Error('upstream still receiving requests 5 s after the previous round ended');
}

/**
 * circuit-proxy (the real CLI) on core 0 with the bench config: `held` and `fallback` forced open
 * through the admin API, `shed`'s bulkhead (maxConcurrent 1) filled by one request the upstream
 * never answers.
 */
async function startCircuitProxy(cfg: string): Promise<{ child: ChildProcess; port: number; adminPort: number }> {
  const child = start(0, [`${ROOT}bin/circuit-proxy.js`, 'serve', '--config', cfg]);
  const { port, adminPort } = await listeningPorts(child);
  await forceOpen(adminPort, 'held');
  await forceOpen(adminPort, 'fallback');
  get(`http://127.0.0.1:${port}/svc/shed/hold`, { agent: false }).on('error', () => undefined);
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`http://127.0.0.1:${adminPort}/breakers/shed`);
    if (((await r.json()) as { inFlight?: number }).inFlight === 1) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { child, port, adminPort };
}

/** A service of three endpoints, round-robin, outlier ejection set (docs/endpoints.md), none reached by the load. */
const REPLICAS_SERVICE = (urls: readonly string[]): string =>
  `  replicas:\n    endpoints: [${urls.join(', ')}]\n    balance: round-robin\n` +
  `    outlier: { consecutiveFailures: 5, failureRate: { threshold: 50%, minRequests: 20, window: 30s }, ejectionTime: 30s }\n`;

/** A service with the default retry rule (docs/retries.md), which a healthy upstream never triggers. */
const RETRY_SERVICE = (url: string): string => `  retrying:\n    url: ${url}\n    retries: {}\n`;

/** A service whose every request of the load walks three routes and takes the last (docs/routes.md). */
const ROUTED_SERVICE = (url: string): string =>
  `  routed:\n    url: ${url}\n    routes:\n` +
  `      - { match: { methods: [POST], path: /orders }, timeout: 10s }\n` +
  `      - { match: { path: /orders/*/status }, timeout: 1s }\n` +
  `      - { name: items, match: { methods: [GET], path: /items/* }, timeout: 5s }\n`;

/** A fallback answer of the size a degraded list endpoint would send. */
const FALLBACK_SERVICES = (url: string): string =>
  // A timeout the held request never reaches: the bulkhead stays full for the whole run.
  `  shed:\n    url: ${url}\n    maxConcurrent: 1\n    timeout: 24h\n` +
  `  fallback:\n    url: ${url}\n    fallback: { status: 200, headers: { content-type: application/json }, body: '{"items": [], "degraded": true}' }\n`;

async function measure(pid: number, url: string, seconds: number, statsUrl?: string): Promise<Measured> {
  const before = statsUrl ? await settledUpstreamStats(statsUrl) : undefined;
  const t0 = cpuTicks(pid);
  const l = await load(url, seconds, CONNECTIONS);
  const cpu = ((cpuTicks(pid) - t0) / CLK_TCK) * 1e6;
  const after = statsUrl ? await upstreamStats(statsUrl) : undefined;
  return {
    ...l,
    cpuUsPerRequest: Math.round((cpu / l.requests) * 10) / 10,
    rssMB: rssMB(pid),
    // Each stats call is one request on a connection of its own: the second one is not the proxy's.
    ...(before && after
      ? { upstreamConnections: after.connections - before.connections - 1, upstreamRequests: after.requests - before.requests - 1 }
      : {}),
  };
}

async function main(): Promise<void> {
  process.stdout.write(
    `circuit-proxy bench: ${ROUNDS} rounds x ${SECONDS}s, ${CONNECTIONS} connections, load generator ${WRK ? 'wrk' : 'autocannon'}, taskset ${TASKSET ? 'yes (proxies on core 0, upstream + load on core 1)' : 'no'}\n`,
  );
  const up = start(1, [`${ROOT}dist/bench/upstream.js`, '0', '2']);
  const [upPort, ...extraPorts] = await firstLine(up, (l) => (l.port ? [l.port as number, ...(l.extra as number[])] : undefined));
  const upUrl = `http://127.0.0.1:${upPort}`;
  const replicaUrls = [upPort, ...extraPorts].map((p) => `http://127.0.0.1:${p}`);
  const base = start(0, [`${ROOT}dist/bench/baseline.js`, '0', upUrl]);
  const basePort = await firstLine(base, (l) => l.port as number | undefined);
  const floor = start(0, [`${ROOT}dist/bench/floor.js`, '0']);
  const floorPort = await firstLine(floor, (l) => l.port as number | undefined);
  const cfg = tempFile(
    'bench',
    `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  product:\n    url: ${upUrl}\n  held:\n    url: ${upUrl}\n${POLICIES_SERVICE(upUrl)}${FALLBACK_SERVICES(upUrl)}${REPLICAS_SERVICE(replicaUrls)}${RETRY_SERVICE(upUrl)}${ROUTED_SERVICE(upUrl)}`,
  );
  const { child: cp, port, adminPort } = await startCircuitProxy(cfg);
  // The fleet's process: the same closed service, `fleet` configured, Redis up (pinned beside the upstream).
  const redisUrl = await startRedisServer(1);
  const oneService = `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n  product:\n    url: ${upUrl}\n`;
  const fleetCfg = tempFile('bench-fleet', `fleet: { redis: "${redisUrl}", key: bench, sidecar: bench-1 }\n${oneService}`);
  // Its twin: the same one service, started the same way at the same time, without `fleet`: what
  // the fleet process is compared with, so a difference between processes is not taken for fleet's.
  const twinCfg = tempFile('bench-twin', oneService);
  const cpFleet = start(0, [`${ROOT}bin/circuit-proxy.js`, 'serve', '--config', fleetCfg]);
  const cpTwin = start(0, [`${ROOT}bin/circuit-proxy.js`, 'serve', '--config', twinCfg]);
  const [fleetPorts, twinPorts] = await Promise.all([listeningPorts(cpFleet), listeningPorts(cpTwin)]);
  const fleetConnected = async (): Promise<boolean> =>
    /^circuit_fleet_connected 1$/m.test(await (await fetch(`http://127.0.0.1:${fleetPorts.adminPort}/metrics`)).text());
  for (let i = 0; i < 100 && !(await fleetConnected()); i++) await new Promise((r) => setTimeout(r, 50));

  const targets = {
    baseline: { pid: base.pid!, url: `http://127.0.0.1:${basePort}/items/1` },
    closed: { pid: cp.pid!, url: `http://127.0.0.1:${port}/svc/product/items/1` },
    fleet: { pid: cpFleet.pid!, url: `http://127.0.0.1:${fleetPorts.port}/svc/product/items/1` },
    twin: { pid: cpTwin.pid!, url: `http://127.0.0.1:${twinPorts.port}/svc/product/items/1` },
    policies: { pid: cp.pid!, url: `http://127.0.0.1:${port}/svc/policies/items/1` },
    endpoints: { pid: cp.pid!, url: `http://127.0.0.1:${port}/svc/replicas/items/1` },
    retries: { pid: cp.pid!, url: `http://127.0.0.1:${port}/svc/retrying/items/1` },
    routes: { pid: cp.pid!, url: `http://127.0.0.1:${port}/svc/routed/items/1` },
    open: { pid: cp.pid!, url: `http://127.0.0.1:${port}/svc/held/items/1` },
    shed: { pid: cp.pid!, url: `http://127.0.0.1:${port}/svc/shed/items/1` },
    fallback: { pid: cp.pid!, url: `http://127.0.0.1:${port}/svc/fallback/items/1` },
    floor: { pid: floor.pid!, url: `http://127.0.0.1:${floorPort}/items/1` },
  };
  // Warm-up (JIT, pools), not recorded.
  for (const t of Object.values(targets)) await load(t.url, 2, CONNECTIONS);

  const rounds: Record<keyof typeof targets, Measured[]> = {
    baseline: [],
    closed: [],
    fleet: [],
    twin: [],
    policies: [],
    endpoints: [],
    retries: [],
    routes: [],
    open: [],
    shed: [],
    fallback: [],
    floor: [],
  };
  const order = [
    'baseline',
    'closed',
    'fleet',
    'twin',
    'policies',
    'endpoints',
    'retries',
    'routes',
    'open',
    'shed',
    'fallback',
    'floor',
  ] as const;
  for (let r = 1; r <= ROUNDS; r++) {
    // ABBA: every other round runs in reverse, so a drift in machine speed favours no target.
    for (const name of r % 2 === 1 ? order : [...order].reverse()) {
      const t = targets[name];
      const m = await measure(t.pid, t.url, SECONDS, name === 'open' ? `${upUrl}/__stats` : undefined);
      rounds[name].push(m);
      process.stdout.write(
        `round ${r} ${name.padEnd(8)} ${m.rps.toFixed(0).padStart(7)} req/s  p50 ${m.p50ms.toFixed(2)}ms  p99 ${m.p99ms.toFixed(2)}ms  ${m.cpuUsPerRequest}µs CPU/req  RSS ${m.rssMB}MB${m.upstreamConnections !== undefined ? `  upstream connections ${m.upstreamConnections}` : ''}\n`,
      );
    }
  }
  const summary = Object.fromEntries(
    Object.entries(rounds).map(([k, ms]) => [
      k,
      {
        rps: Math.round(median(ms.map((m) => m.rps))),
        // Medians of an even count of rounds are means of two: rounded as the rounds are.
        p50ms: round(median(ms.map((m) => m.p50ms)), 3),
        p99ms: round(median(ms.map((m) => m.p99ms)), 3),
        cpuUsPerRequest: round(median(ms.map((m) => m.cpuUsPerRequest)), 1),
        rssMB: round(median(ms.map((m) => m.rssMB)), 1),
      },
    ]),
  ) as Record<keyof typeof targets, { rps: number; p50ms: number; p99ms: number; cpuUsPerRequest: number; rssMB: number }>;
  // The several-endpoints service: every endpoint still in rotation after all its rounds, and the
  // load spread over all three (round-robin).
  const replicas = (await (await fetch(`http://127.0.0.1:${adminPort}/breakers/replicas`)).json()) as {
    endpoints: Array<{ address: string; state: string; requests: number }>;
  };
  const endpointsNoneEjected = replicas.endpoints.length === 3 && replicas.endpoints.every((e) => e.state === 'active');
  /** Per round, the endpoints service's req/s over the baseline's in that round: the spread of the ratio. */
  const endpointsPerRound = rounds.endpoints.map((m, i) => round(m.rps / rounds.baseline[i]!.rps, 3));
  process.stdout.write(
    `\nendpoints / baseline req/s per round: ${endpointsPerRound.join(' ')}; endpoints ${replicas.endpoints.map((e) => `${e.address} ${e.state}`).join(', ')}\n`,
  );
  // The retry rule was never needed: no retry was made in all its rounds.
  const retrying = (await (await fetch(`http://127.0.0.1:${adminPort}/breakers/retrying`)).json()) as { retries: { total: number } };
  const fleetPerRound = rounds.fleet.map((m, i) => round(m.rps / rounds.baseline[i]!.rps, 3));
  const fleetPerTwin = rounds.fleet.map((m, i) => round(m.rps / rounds.twin[i]!.rps, 3));
  const fleetStillConnected = await fleetConnected();
  process.stdout.write(
    `fleet / baseline req/s per round: ${fleetPerRound.join(' ')}; fleet / its twin without fleet: ${fleetPerTwin.join(' ')}; Redis connected at the end: ${fleetStillConnected}\n`,
  );
  const retriesPerRound = rounds.retries.map((m, i) => round(m.rps / rounds.baseline[i]!.rps, 3));
  process.stdout.write(`retries / baseline req/s per round: ${retriesPerRound.join(' ')}; retries made ${retrying.retries.total}\n`);
  // Every request of the routes rounds took the `items` route.
  const routed = (await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).json()) as {
    services: Array<{ name: string; requests: number; routes?: Array<{ route: string; requests: number }> }>;
  };
  const routedStats = routed.services.find((x) => x.name === 'routed')!;
  const allTookTheRoute = routedStats.routes?.length === 1 && routedStats.routes[0]!.route === 'items';
  const routesPerRound = rounds.routes.map((m, i) => round(m.rps / rounds.baseline[i]!.rps, 3));
  process.stdout.write(
    `routes / baseline req/s per round: ${routesPerRound.join(' ')}; every request took the items route: ${allTookTheRoute}\n`,
  );
  process.stdout.write(`\npaired: baseline and closed circuit loaded at the same time, ${PAIRED_ROUNDS} rounds x 5s...\n`);
  const [, pairedClosed] = await pairedRounds(
    [
      { name: 'baseline', ...targets.baseline },
      { name: 'closed', ...targets.closed },
    ],
    PAIRED_ROUNDS,
    5,
  );
  process.stdout.write(
    `CPU per request, baseline / closed: ${pairedClosed!.ratioToFirst.join(' ')} (median ${pairedClosed!.medianRatio})\n`,
  );
  // The fleet's process against the baseline and the closed circuit, all three at once on one core:
  // what `fleet` costs a request, free of the drift between rounds.
  process.stdout.write(
    `paired: baseline, the fleet process's twin without fleet and the fleet process (Redis up) loaded at the same time, ${PAIRED_ROUNDS} rounds x 5s...\n`,
  );
  const [, pairedFleetClosed, pairedFleet] = await pairedRounds(
    [
      { name: 'baseline', ...targets.baseline },
      { name: 'twin', ...targets.twin },
      { name: 'fleet', ...targets.fleet },
    ],
    PAIRED_ROUNDS,
    5,
  );
  /** Per round, the twin's CPU per request over the fleet process's: 1.0 = `fleet` costs nothing. */
  const fleetVsClosedCpu = pairedFleet!.usPerRequest.map((u, i) => round(pairedFleetClosed!.usPerRequest[i]! / u, 3));
  process.stdout.write(
    `CPU per request, baseline / fleet: ${pairedFleet!.ratioToFirst.join(' ')} (median ${pairedFleet!.medianRatio}); twin / fleet: ${fleetVsClosedCpu.join(' ')} (median ${round(median(fleetVsClosedCpu), 3)})\n`,
  );
  // The open path likewise, against the closed one: in a second proxy process, so each path's
  // CPU time is its own.
  const { child: cpOpen, port: openPort } = await startCircuitProxy(cfg);
  const openTarget = { name: 'open', pid: cpOpen.pid!, url: `http://127.0.0.1:${openPort}/svc/held/items/1` };
  await load(openTarget.url, 3, CONNECTIONS); // warm-up, not recorded
  process.stdout.write(
    `paired: closed circuit, open circuit (a second process) and the floor loaded at the same time, ${PAIRED_ROUNDS} rounds x 5s...\n`,
  );
  const [, pairedOpen, pairedFloor] = await pairedRounds(
    [{ name: 'closed', ...targets.closed }, openTarget, { name: 'floor', ...targets.floor }],
    PAIRED_ROUNDS,
    5,
  );
  cpOpen.kill('SIGTERM');
  process.stdout.write(`CPU per request, closed / open: ${pairedOpen!.ratioToFirst.join(' ')} (median ${pairedOpen!.medianRatio})\n`);
  process.stdout.write(`CPU per request, closed / floor: ${pairedFloor!.ratioToFirst.join(' ')} (median ${pairedFloor!.medianRatio})\n`);
  const openUpstreamConnections = rounds.open.reduce((a, m) => a + (m.upstreamConnections ?? 0) + (m.upstreamRequests ?? 0), 0);

  // The RSS target reads "after 30 s at 50 connections": a proxy process of its own, started for
  // it, not the one that has served every round above.
  for (const c of [cp, base, floor]) c.kill('SIGTERM');
  process.stdout.write(`\nRSS after ${RSS_SECONDS}s at ${CONNECTIONS} connections (closed circuit, fresh process)...\n`);
  const { child: fresh, port: freshPort } = await startCircuitProxy(cfg);
  const sustained = await measure(fresh.pid!, `http://127.0.0.1:${freshPort}/svc/product/items/1`, RSS_SECONDS);

  for (const c of [fresh, up]) c.kill('SIGTERM');

  process.stdout.write('1,000-service config...\n');
  const many = tempFile(
    'bench-1000',
    `listen: {host: 127.0.0.1, port: 0}\nadmin: {host: 127.0.0.1, port: 0}\nservices:\n${Array.from({ length: 1000 }, (_, i) => `  svc-${i}:\n    url: http://127.0.0.1:${upPort}/s${i}\n`).join('')}`,
  );
  const t0 = performance.now();
  const big = start(0, [`${ROOT}bin/circuit-proxy.js`, 'serve', '--config', many]);
  const bigAdmin = (await listeningPorts(big)).adminPort;
  const readyRes = await fetch(`http://127.0.0.1:${bigAdmin}/readyz`);
  if (!readyRes.ok) throw new Error(`1000-service proxy not ready: ${readyRes.status}`);
  const readyMs = Math.round(performance.now() - t0);
  const scrapes: number[] = [];
  let seriesBytes = 0;
  for (let i = 0; i < 7; i++) {
    const s = performance.now();
    const text = await (await fetch(`http://127.0.0.1:${bigAdmin}/metrics`)).text();
    scrapes.push(performance.now() - s);
    seriesBytes = text.length;
  }
  const scrapeMs = Math.round(median(scrapes.slice(2)) * 10) / 10;
  const bigRss = rssMB(big.pid!);
  big.kill('SIGTERM');

  process.stdout.write(
    `\nstreaming: ${STREAM_MB} MiB each way, ${STREAM_ROUNDS} rounds (ABBA, kept-alive and fresh upstream connections, new processes every ${STREAM_BLOCK} rounds)...\n`,
  );
  const streaming: StreamingResult = await streamingRounds();

  process.stdout.write(`\nWebSocket: echo and handshakes, ${WS_ROUNDS} alternating rounds...\n`);
  const websocket: WebSocketResult = await websocketRounds();

  const ratios = {
    closedVsBaseline: Math.round((summary.closed.rps / summary.baseline.rps) * 1000) / 1000,
    policiesVsBaseline: Math.round((summary.policies.rps / summary.baseline.rps) * 1000) / 1000,
    endpointsVsBaseline: Math.round((summary.endpoints.rps / summary.baseline.rps) * 1000) / 1000,
    /** Lowest and highest per-round ratio: the interval around endpointsVsBaseline. */
    endpointsVsBaselineRange: [Math.min(...endpointsPerRound), Math.max(...endpointsPerRound)],
    fleetVsBaseline: Math.round((summary.fleet.rps / summary.baseline.rps) * 1000) / 1000,
    fleetVsBaselineRange: [Math.min(...fleetPerRound), Math.max(...fleetPerRound)],
    twinVsBaseline: Math.round((summary.twin.rps / summary.baseline.rps) * 1000) / 1000,
    fleetVsTwin: Math.round((summary.fleet.rps / summary.twin.rps) * 1000) / 1000,
    fleetVsTwinRange: [Math.min(...fleetPerTwin), Math.max(...fleetPerTwin)],
    retriesVsBaseline: Math.round((summary.retries.rps / summary.baseline.rps) * 1000) / 1000,
    retriesVsBaselineRange: [Math.min(...retriesPerRound), Math.max(...retriesPerRound)],
    routesVsBaseline: Math.round((summary.routes.rps / summary.baseline.rps) * 1000) / 1000,
    routesVsBaselineRange: [Math.min(...routesPerRound), Math.max(...routesPerRound)],
    openVsClosed: Math.round((summary.open.rps / summary.closed.rps) * 100) / 100,
    /** The ceiling of openVsClosed on this machine: a bare Node server answering the same 503. */
    floorVsClosed: Math.round((summary.floor.rps / summary.closed.rps) * 100) / 100,
    openVsFloor: Math.round((summary.open.rps / summary.floor.rps) * 1000) / 1000,
    shedVsFloor: Math.round((summary.shed.rps / summary.floor.rps) * 1000) / 1000,
    fallbackVsFloor: Math.round((summary.fallback.rps / summary.floor.rps) * 1000) / 1000,
  };
  const targetsMet = {
    'closed >= 0.95x baseline rps': ratios.closedVsBaseline >= 0.95,
    'closed >= 0.95x baseline CPU per request (paired)': pairedClosed!.medianRatio >= 0.95,
    'every policy set (none reached) >= 0.90x baseline rps': ratios.policiesVsBaseline >= 0.9,
    '3 endpoints (round-robin, outlier set, none ejected) >= 0.95x baseline rps':
      ratios.endpointsVsBaseline >= 0.95 && endpointsNoneEjected,
    'fleet configured, Redis up >= 0.95x baseline rps': ratios.fleetVsBaseline >= 0.95 && fleetStillConnected,
    'fleet configured, Redis up >= 0.95x baseline CPU per request (paired)': pairedFleet!.medianRatio >= 0.95,
    'retries configured, never needed >= 0.95x baseline rps': ratios.retriesVsBaseline >= 0.95 && retrying.retries.total === 0,
    'a per-route match on every request >= 0.95x baseline rps': ratios.routesVsBaseline >= 0.95 && allTookTheRoute,
    'open >= 0.90x the floor rps': ratios.openVsFloor >= 0.9,
    'bulkhead rejection >= 0.85x the floor rps': ratios.shedVsFloor >= 0.85,
    'fallback answer >= 0.85x the floor rps': ratios.fallbackVsFloor >= 0.85,
    ...streamingTargets(streaming),
    'WebSocket echo messages/s >= 0.90x the baseline ws': websocket.echo.ratio >= 0.9 && websocket.errors === 0,
    'WebSocket handshakes/s >= 0.90x the baseline ws': websocket.handshakes.ratio >= 0.9 && websocket.errors === 0,
    'open p99 <= 3 ms': summary.open.p99ms <= 3,
    'open: zero upstream connections and requests': openUpstreamConnections === 0,
    [`RSS <= 100 MB after ${RSS_SECONDS}s at 50 connections`]: sustained.rssMB <= 100,
    '1000 services: ready <= 1 s': readyMs <= 1000,
    '1000 services: /metrics scrape <= 100 ms': scrapeMs <= 100,
    '1000 services: RSS <= 150 MB': bigRss <= 150,
  };
  const result = {
    date: new Date().toISOString(),
    command: `${process.env.BENCH_NODE ? `BENCH_NODE=${process.env.BENCH_NODE} ` : ''}BENCH_SECONDS=${SECONDS} BENCH_ROUNDS=${ROUNDS} BENCH_PAIRED_ROUNDS=${PAIRED_ROUNDS} BENCH_RSS_SECONDS=${RSS_SECONDS} BENCH_STREAM_MB=${STREAM_MB} BENCH_STREAM_ROUNDS=${STREAM_ROUNDS} BENCH_WS_ROUNDS=${WS_ROUNDS} npm run bench`,
    machine: {
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      node: NODE_VERSION,
      nodeFlags: NODE_FLAGS.join(' '),
      processEnv: Object.entries(PROCESS_ENV)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
      loadGenerator: WRK ? 'wrk -t1 -c50' : 'autocannon -c 50',
      taskset: TASKSET,
    },
    rounds,
    summary,
    ratios,
    paired: {
      rounds: PAIRED_ROUNDS,
      seconds: 5,
      closedCpuRatio: pairedClosed!.medianRatio,
      closed: pairedClosed,
      fleetCpuRatio: pairedFleet!.medianRatio,
      fleetVsClosedCpu: round(median(fleetVsClosedCpu), 3),
      fleet: { ...pairedFleet, twinOverFleet: fleetVsClosedCpu, twin: pairedFleetClosed },
      openCpuAdvantage: pairedOpen!.medianRatio,
      open: pairedOpen,
      floorCpuAdvantage: pairedFloor!.medianRatio,
      floor: pairedFloor,
    },
    openUpstreamConnections,
    sustained: { seconds: RSS_SECONDS, rps: Math.round(sustained.rps), rssMB: sustained.rssMB },
    thousandServices: { readyMs, scrapeMs, metricsBytes: seriesBytes, rssMB: bigRss },
    streaming,
    websocket,
    targetsMet,
  };
  mkdirSync(`${ROOT}bench/results`, { recursive: true });
  const file = `bench/results/bench-${result.date.replace(/[:.]/g, '-')}.json`;
  writeFileSync(`${ROOT}${file}`, JSON.stringify(result, null, 2) + '\n');
  // Hand-written notes below the marker survive a re-run.
  const MARKER = '<!-- notes: kept across runs -->';
  let notes = '';
  try {
    const old = readFileSync(`${ROOT}BENCHMARKS.md`, 'utf8');
    if (old.includes(MARKER)) notes = old.slice(old.indexOf(MARKER));
  } catch {
    /* first run */
  }
  writeFileSync(`${ROOT}BENCHMARKS.md`, markdown(result, file) + (notes ? `\n${notes}` : `\n${MARKER}\n`));

  const row = (name: string, s: (typeof summary)['closed'], ratio: string): string =>
    `${name.padEnd(22)}${String(s.rps).padStart(8)}  ${s.p50ms.toFixed(2).padStart(7)}  ${s.p99ms.toFixed(2).padStart(7)}  ${String(s.cpuUsPerRequest).padStart(9)}  ${String(s.rssMB).padStart(7)}  ${ratio}\n`;
  process.stdout.write(`\n${'median of ' + ROUNDS}`.padEnd(22) + '   req/s  p50 ms  p99 ms  µs CPU/req  RSS MB  ratio\n');
  process.stdout.write(row('bare http-proxy', summary.baseline, '1.00 (baseline)'));
  process.stdout.write(row('circuit-proxy closed', summary.closed, `${ratios.closedVsBaseline.toFixed(3)}x baseline`));
  process.stdout.write(row('closed, every policy', summary.policies, `${ratios.policiesVsBaseline.toFixed(3)}x baseline`));
  process.stdout.write(
    row(
      '3 endpoints, outlier',
      summary.endpoints,
      `${ratios.endpointsVsBaseline.toFixed(3)}x baseline (rounds ${ratios.endpointsVsBaselineRange.join('-')})`,
    ),
  );
  process.stdout.write(row('twin of fleet, no fleet', summary.twin, `${ratios.twinVsBaseline.toFixed(3)}x baseline`));
  process.stdout.write(
    row(
      'fleet, Redis up',
      summary.fleet,
      `${ratios.fleetVsBaseline.toFixed(3)}x baseline (rounds ${ratios.fleetVsBaselineRange.join('-')})`,
    ),
  );
  process.stdout.write(
    row(
      'retries, never needed',
      summary.retries,
      `${ratios.retriesVsBaseline.toFixed(3)}x baseline (rounds ${ratios.retriesVsBaselineRange.join('-')})`,
    ),
  );
  process.stdout.write(
    row(
      'per-route match',
      summary.routes,
      `${ratios.routesVsBaseline.toFixed(3)}x baseline (rounds ${ratios.routesVsBaselineRange.join('-')})`,
    ),
  );
  process.stdout.write(row('circuit-proxy open', summary.open, `${ratios.openVsClosed.toFixed(2)}x closed`));
  process.stdout.write(row('bulkhead rejection', summary.shed, `${ratios.shedVsFloor.toFixed(3)}x floor`));
  process.stdout.write(row('fallback answer', summary.fallback, `${ratios.fallbackVsFloor.toFixed(3)}x floor`));
  process.stdout.write(row('floor: bare Node 503', summary.floor, `${ratios.floorVsClosed.toFixed(2)}x closed`));
  process.stdout.write(`paired CPU ratio (baseline / closed, same time, same core): ${pairedClosed!.medianRatio}\n`);
  process.stdout.write(
    `paired CPU ratio (baseline / fleet, same time, same core): ${pairedFleet!.medianRatio}; twin without fleet / fleet: ${round(median(fleetVsClosedCpu), 3)}\n`,
  );
  process.stdout.write(`paired CPU ratio (closed / open, same time, same core): ${pairedOpen!.medianRatio}\n`);
  process.stdout.write(`paired CPU ratio (closed / floor, same time, same core): ${pairedFloor!.medianRatio}\n`);
  process.stdout.write(
    `\nopen path: ${ratios.openVsFloor}x the floor's req/s; the floor itself reaches ${ratios.floorVsClosed}x closed, the ceiling of open/closed on this machine and Node\n`,
  );
  process.stdout.write(
    `\nopen circuit: ${openUpstreamConnections} upstream connections; after ${RSS_SECONDS}s at 50 connections RSS ${sustained.rssMB} MB\n`,
  );
  process.stdout.write(
    `1,000 services: ready in ${readyMs} ms, /metrics scrape ${scrapeMs} ms (${Math.round(seriesBytes / 1024)} KiB), RSS ${bigRss} MB\n`,
  );
  process.stdout.write(
    `streaming ${STREAM_MB} MiB x ${STREAM_ROUNDS} rounds, circuit-proxy / baseline, median [95% interval]:\n${streamingSummary(streaming)}\n`,
  );
  process.stdout.write(
    `WebSocket: echo ${websocket.echo.ratio}x baseline (rounds ${websocket.echo.range.join('-')}), handshakes ${websocket.handshakes.ratio}x (rounds ${websocket.handshakes.range.join('-')})\n\n`,
  );
  for (const [k, v] of Object.entries(targetsMet)) process.stdout.write(`  ${v ? 'met   ' : 'MISSED'}  ${k}\n`);
  process.stdout.write(`\nwritten: ${file}, BENCHMARKS.md\n`);
}

/** The streaming rows of BENCHMARKS.md. */
function streamingTable(st: StreamingResult): string {
  const est = (e: { median: number; low: number; high: number }): string => `${e.median}x [${e.low}, ${e.high}]`;
  const rows = ["| streaming | rate | CPU per GiB | RSS growth over the baseline's |", '| --- | --- | --- | ---: |'];
  for (const d of ['download', 'upload'] as const) {
    for (const m of ['kept', 'fresh'] as const) {
      const x = st[d][m];
      rows.push(
        `| ${d}, ${m === 'kept' ? 'kept-alive' : 'fresh'} upstream connection | ${est(x.rate)} | ${est(x.cpuPerGiB)} | ${x.rssGrowthOverBaselineMB} MB |`,
      );
    }
    const c = st.concurrent[d];
    rows.push(`| ${d}, ${c.transfers} at once (2 rounds) | ${c.ratio}x | - | ${c.rssGrowthOverBaselineMB} MB |`);
  }
  return rows.join('\n');
}

function markdown(r: any, file: string): string {
  const s = r.summary;
  return `# Benchmarks

Produced by \`npm run bench\` (bench/run.ts); every figure below comes from \`${file}\`.
Re-run: \`${r.command}\` (defaults: 9 rounds of 4 s, 5 paired rounds of 5 s, 30 s RSS run).

- Date: ${r.date}
- Machine: ${r.machine.cpu}, ${r.machine.cores} cores; measured processes on Node ${r.machine.node}, every Node process started with \`${r.machine.processEnv} node ${r.machine.nodeFlags}\` (as circuit-proxy ships: src/runtime.ts)
- Load: ${r.machine.loadGenerator}, 91-byte JSON body from a keep-alive Node upstream; ${r.machine.taskset ? 'proxies pinned to core 0, upstream and load generator to core 1 (taskset)' : 'no pinning (taskset missing)'}
- Baseline: bare http-proxy 1.18.1 with the same keep-alive agent settings (bench/baseline.ts), measured in the same run, rounds alternating baseline / closed / fleet / every policy / 3 endpoints / retries / routes / open / bulkhead rejection / fallback / floor, every other round in reverse order. "Every policy" is a service with failureRate, slowCalls, backoff, halfOpen and retryAfter all set (bench/run.ts, POLICIES_SERVICE); "retries" has the default retry rule (RETRY_SERVICE), never needed (GET requests, a healthy upstream); "per-route match" walks three routes and takes the third on every request (ROUTED_SERVICE).

| median of ${r.rounds.baseline.length} rounds | req/s | p50 ms | p99 ms | µs CPU/req | RSS MB | ratio |
| --- | ---: | ---: | ---: | ---: | ---: | --- |
| bare http-proxy | ${s.baseline.rps} | ${s.baseline.p50ms} | ${s.baseline.p99ms} | ${s.baseline.cpuUsPerRequest} | ${s.baseline.rssMB} | 1.00 (baseline) |
| circuit-proxy, circuit closed | ${s.closed.rps} | ${s.closed.p50ms} | ${s.closed.p99ms} | ${s.closed.cpuUsPerRequest} | ${s.closed.rssMB} | ${r.ratios.closedVsBaseline}x baseline |
| circuit-proxy, closed, every policy set (none reached) | ${s.policies.rps} | ${s.policies.p50ms} | ${s.policies.p99ms} | ${s.policies.cpuUsPerRequest} | ${s.policies.rssMB} | ${r.ratios.policiesVsBaseline}x baseline |
| circuit-proxy, closed, 3 endpoints (round-robin, outlier set, none ejected) | ${s.endpoints.rps} | ${s.endpoints.p50ms} | ${s.endpoints.p99ms} | ${s.endpoints.cpuUsPerRequest} | ${s.endpoints.rssMB} | ${r.ratios.endpointsVsBaseline}x baseline (per round ${r.ratios.endpointsVsBaselineRange.join(' to ')}) |
| circuit-proxy, closed, one service, no fleet (the fleet process's twin) | ${s.twin.rps} | ${s.twin.p50ms} | ${s.twin.p99ms} | ${s.twin.cpuUsPerRequest} | ${s.twin.rssMB} | ${r.ratios.twinVsBaseline}x baseline |
| circuit-proxy, closed, one service, \`fleet\` configured, Redis up | ${s.fleet.rps} | ${s.fleet.p50ms} | ${s.fleet.p99ms} | ${s.fleet.cpuUsPerRequest} | ${s.fleet.rssMB} | ${r.ratios.fleetVsBaseline}x baseline (per round ${r.ratios.fleetVsBaselineRange.join(' to ')}); ${r.ratios.fleetVsTwin}x its twin (per round ${r.ratios.fleetVsTwinRange.join(' to ')}) |
| circuit-proxy, closed, retries configured, never needed | ${s.retries.rps} | ${s.retries.p50ms} | ${s.retries.p99ms} | ${s.retries.cpuUsPerRequest} | ${s.retries.rssMB} | ${r.ratios.retriesVsBaseline}x baseline (per round ${r.ratios.retriesVsBaselineRange.join(' to ')}) |
| circuit-proxy, closed, a per-route match on every request | ${s.routes.rps} | ${s.routes.p50ms} | ${s.routes.p99ms} | ${s.routes.cpuUsPerRequest} | ${s.routes.rssMB} | ${r.ratios.routesVsBaseline}x baseline (per round ${r.ratios.routesVsBaselineRange.join(' to ')}) |
| circuit-proxy, circuit open (503) | ${s.open.rps} | ${s.open.p50ms} | ${s.open.p99ms} | ${s.open.cpuUsPerRequest} | ${s.open.rssMB} | ${r.ratios.openVsClosed}x closed |
| bulkhead rejection (503, maxConcurrent full) | ${s.shed.rps} | ${s.shed.p50ms} | ${s.shed.p99ms} | ${s.shed.cpuUsPerRequest} | ${s.shed.rssMB} | ${r.ratios.shedVsFloor}x floor |
| fallback answer (circuit open) | ${s.fallback.rps} | ${s.fallback.p50ms} | ${s.fallback.p99ms} | ${s.fallback.cpuUsPerRequest} | ${s.fallback.rssMB} | ${r.ratios.fallbackVsFloor}x floor |
| floor: bare Node server, same 503 | ${s.floor.rps} | ${s.floor.p50ms} | ${s.floor.p99ms} | ${s.floor.cpuUsPerRequest} | ${s.floor.rssMB} | ${r.ratios.floorVsClosed}x closed |

- Paired (baseline and closed circuit loaded at the same time on the same core, ${r.paired.rounds} rounds of ${r.paired.seconds} s, bench/paired.ts): CPU per request of the baseline divided by the closed circuit's, per round ${r.paired.closed.ratioToFirst.join(', ')}; median **${r.paired.closedCpuRatio}**. Likewise the open circuit (a second proxy process) against the closed one, CPU per request of the closed path divided by the open path's: ${r.paired.open.ratioToFirst.join(', ')}; median **${r.paired.openCpuAdvantage}**; and the floor (a third process, the same rounds) against the closed circuit: ${r.paired.floor.ratioToFirst.join(', ')}; median **${r.paired.floorCpuAdvantage}**. Steadier than req/s ratios across alternating rounds; the targets are defined on req/s.
- Fleet (docs/fleet.md): a circuit-proxy process with one service, \`fleet\` configured and a local redis-server up, and its twin (the same config without \`fleet\`, started at the same time), loaded at the same time as the baseline on the same core (${r.paired.rounds} rounds of ${r.paired.seconds} s): CPU per request of the baseline divided by the fleet process's, per round ${r.paired.fleet.ratioToFirst.join(', ')}; median **${r.paired.fleetCpuRatio}**; of the twin divided by the fleet process's: ${r.paired.fleet.twinOverFleet.join(', ')}; median **${r.paired.fleetVsClosedCpu}** (1.0: \`fleet\` costs a request nothing).
- The floor (bench/floor.ts) is a bare \`http.createServer\` answering the open circuit's 503 with the same headers and body, and nothing else: what Node's HTTP server costs for that answer before any work of ours. The open path reached **${r.ratios.openVsFloor}x** the floor's req/s; the floor reached **${r.ratios.floorVsClosed}x** the closed circuit's, which bounds open/closed on this machine and Node.
- Open circuit: ${r.openUpstreamConnections} upstream connections and requests during all open rounds.
- Sustained: a fresh proxy process after ${r.sustained.seconds} s at 50 connections (closed, ${r.sustained.rps} req/s): RSS ${r.sustained.rssMB} MB.
- 1,000 services: ready (process start to \`/readyz\` 200) in ${r.thousandServices.readyMs} ms; \`/metrics\` scrape ${r.thousandServices.scrapeMs} ms (median, ${Math.round(r.thousandServices.metricsBytes / 1024)} KiB); RSS ${r.thousandServices.rssMB} MB.
- Streaming (bench/streaming.ts, docs/performance-notes.md "Streaming": ${r.streaming.megabytes} MiB each way, ${r.streaming.rounds} rounds in ABBA order, each proxy on a kept-alive and on a fresh upstream connection, all processes started anew every ${r.streaming.block} rounds, a Node client on core 1), circuit-proxy / baseline per round, median [bootstrap 95% interval]:

${streamingTable(r.streaming)}
- WebSocket (bench/websocket.ts: a \`ws\` echo upstream behind the baseline's http-proxy \`ws\` and behind circuit-proxy, ${r.websocket.rounds} alternating rounds of ${r.websocket.seconds} s, a Node \`ws\` client on core 1): echo over 50 tunnels **${r.websocket.echo.ratio}x** the baseline's messages/s (per round ${r.websocket.echo.ratios.join(', ')}; msg/s baseline ${r.websocket.echo.baseline.join(', ')}, circuit-proxy ${r.websocket.echo.proxy.join(', ')}); handshakes (open, 101, close; 10 at a time) **${r.websocket.handshakes.ratio}x** (per round ${r.websocket.handshakes.ratios.join(', ')}); ${r.websocket.errors} errors.

| target | met |
| --- | --- |
${Object.entries(r.targetsMet)
  .map(([k, v]) => `| ${k} | ${v ? 'yes' : '**no**'} |`)
  .join('\n')}

Absolute numbers drift between runs on shared machines; the targets are ratios within one run.
`;
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack}\n`);
    process.exitCode = 1;
  })
  .finally(cleanUp);
