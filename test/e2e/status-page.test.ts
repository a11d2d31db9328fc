/**
 * The status page in a real browser (Debian's chromium, driven by playwright-core; no browser is
 * downloaded): live updates without a reload, the probe countdown, the force buttons, no console
 * error and no request to any other host. Screenshots at desktop and phone widths go to
 * $STATUS_PAGE_SHOTS when set.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WebSocket, WebSocketServer } from 'ws';
import { request, startProxy, startUpstream, type RunningProxy, type Upstream } from '../helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const SHOTS = process.env.STATUS_PAGE_SHOTS;

describe(
  'status page in a real browser',
  { skip: !hasChromium && `no chromium at ${CHROMIUM} (apt-get install chromium)`, timeout: 60_000 },
  () => {
    let up: Upstream;
    let bad: Upstream;
    let p: RunningProxy;
    let browser: Browser;
    let page: Page;
    const consoleErrors: string[] = [];
    const foreign: string[] = [];

    before(async () => {
      up = await startUpstream((req, res) => {
        req.resume();
        if (req.url?.startsWith('/fail')) res.writeHead(503).end();
        else res.end('ok');
      });
      new WebSocketServer({ server: up.server }).on('connection', (ws) => ws.on('message', (m) => ws.send(m)));
      bad = await startUpstream((req, res) => {
        req.resume();
        res.writeHead(503).end();
      });
      p = await startProxy(
        `defaults: { threshold: 2, cooldown: 30s }\nservices:\n  product:\n    url: ${up.url}\n    maxConcurrent: 16\n  cart:\n    url: ${up.url}\n    failureRate: { threshold: 50%, minRequests: 10 }\n  notification:\n    url: ${up.url}\n` +
          `  catalog:\n    endpoints: [${up.url}, ${bad.url}]\n    outlier: { consecutiveFailures: 1, ejectionTime: 1h }\n` +
          `  stock:\n    endpoints: [${bad.url}, ${up.url}]\n    threshold: 100\n    retries: { backoff: { base: 1ms, max: 2ms } }\n    routes:\n      - { name: items, match: { methods: [GET], path: /x } }\n`,
      );
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--no-first-run',
          '--disable-sync',
        ],
      });
      page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const own = `127.0.0.1:${p.adminPort}`;
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(m.text());
      });
      page.on('pageerror', (e) => consoleErrors.push(e.message));
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.protocol !== 'data:' && u.host !== own) foreign.push(r.url());
      });
      for (let i = 0; i < 5; i++) await request(p.port, '/svc/notification/x');
      await page.goto(`http://${own}/`);
      await page.waitForSelector('[data-service="product"][data-state="closed"]', { timeout: 5000 });
    });

    after(async () => {
      await browser?.close();
      await p?.close();
      await up?.close();
      await bad?.close();
    });

    test('a circuit forced open through the admin API turns its card open within 1 s, without a reload', async () => {
      const r = await request(p.adminPort, '/breakers/product/open', { method: 'POST', body: '{"reason":"browser test"}' });
      assert.equal(r.status, 200);
      await page.waitForSelector('[data-service="product"][data-state="open"]', { timeout: 1000 });
      const text = await page.textContent('[data-service="product"] .state');
      assert.equal(text, 'OPEN · FORCED', 'the state is in text too, not only in colour');
      assert.equal(await page.evaluate("document.querySelector('main .card').getAttribute('data-service')"), 'product', 'troubled first');
    });

    test('a circuit tripped by failures shows the countdown to its next probe and the trip reason', async () => {
      await request(p.port, '/svc/cart/fail');
      await request(p.port, '/svc/cart/fail');
      await page.waitForSelector('[data-service="cart"][data-state="open"]', { timeout: 1000 });
      await page.waitForFunction(
        `/^next probe in (29|30)s$/.test(document.querySelector('[data-service="cart"] .probe').textContent)`,
        undefined,
        {
          timeout: 1000,
        },
      );
      const trip = await page.textContent('[data-service="cart"] .trip');
      assert.match(trip ?? '', /2 consecutive failures: status 503/);
    });

    test('a state that came from the fleet says from which sidecar, live (docs/fleet.md)', async () => {
      // What a fleet message does to the circuit (test/e2e/fleet.test.ts sends real ones through Redis).
      p.proxy.registry.get('notification')!.circuit.fleetOpen('make-order-b', '3 consecutive failures: status 503', Date.now() + 60_000);
      await page.waitForSelector('[data-service="notification"][data-state="open"] [data-fleet-from="make-order-b"]', { timeout: 1000 });
      assert.equal(await page.textContent('[data-service="notification"] .via'), 'via fleet sidecar make-order-b');
      assert.match((await page.textContent('[data-service="notification"] .trip')) ?? '', /fleet: make-order-b 3 consecutive failures/);
      await page.waitForSelector('[data-service="notification"] .history li[data-fleet="make-order-b"]');
      p.proxy.registry.get('notification')!.circuit.forceClose('test reset');
      await page.waitForSelector('[data-service="notification"][data-state="closed"]', { timeout: 1000 });
      assert.equal(await page.$('[data-service="notification"] .via'), null, 'its own state again');
    });

    test('endpoints under their service: an ejected one in red with its countdown and reason, live', async () => {
      await page.waitForSelector(`[data-service="catalog"] [data-endpoint="127.0.0.1:${bad.port}"][data-endpoint-state="active"]`);
      for (let i = 0; i < 2; i++) await request(p.port, '/svc/catalog/x');
      const sel = `[data-service="catalog"] [data-endpoint="127.0.0.1:${bad.port}"][data-endpoint-state="ejected"]`;
      await page.waitForSelector(sel);
      await page.waitForFunction(
        `/^ejected \\(1\\) · back in 3[56]\\d\\ds · 1 consecutive failure: status 503$/.test(document.querySelector('${sel} span').textContent)`,
      );
      const colour = await page.evaluate(`getComputedStyle(document.querySelector('${sel}')).color`);
      assert.equal(colour, 'rgb(198, 40, 40)', 'red');
      const other = await page.textContent(`[data-service="catalog"] [data-endpoint="127.0.0.1:${up.port}"] span`);
      assert.match(other ?? '', /^active · \d+ req, 0 failed \(1 min\) · 0 in flight$/);
    });

    test('retries per service: the count on its card, live', async () => {
      // Each fact renders as <b>value</b><span>label</span>.
      const retries = (n: number): string => `[data-service="stock"] .fact:has(span:text-is("retries")) b:text-is("${n}")`;
      await page.waitForSelector(retries(0));
      const r = await request(p.port, '/svc/stock/x');
      assert.deepEqual([r.status, r.headers['x-circuit-attempts']], [200, '2']);
      await page.waitForSelector(retries(1));
      // Its route under it: requests per second, errors and the total, live.
      await page.waitForSelector(
        `[data-service="stock"] li[data-route="items"] span:text-matches("^[0-9]+ req/s · [0-9.]+% errors · 1 in all$")`,
      );
      assert.equal(await page.textContent('[data-service="stock"] li[data-route="items"] b'), 'items');
    });

    test('open WebSocket tunnels on the card, live', async () => {
      const tunnels = (n: number): string => `[data-service="notification"] .fact:has(span:text-is("tunnels")) b:text-is("${n}")`;
      const ws = new WebSocket(`ws://127.0.0.1:${p.port}/svc/notification/feed`);
      await once(ws, 'open');
      await page.waitForSelector(tunnels(1));
      ws.close();
      await once(ws, 'close');
      await page.waitForSelector('[data-service="notification"] .fact:has(span:text-is("tunnels"))', { state: 'detached' });
    });

    test('screenshots at desktop and phone widths', async () => {
      await page.waitForTimeout(1100); // one stats event, so the sparklines have a point
      if (SHOTS) {
        mkdirSync(SHOTS, { recursive: true });
        await page.screenshot({ path: join(SHOTS, 'status-desktop.png'), fullPage: true });
        await page.setViewportSize({ width: 390, height: 844 });
        await page.screenshot({ path: join(SHOTS, 'status-phone.png'), fullPage: true });
        await page.setViewportSize({ width: 1280, height: 900 });
      }
      const overflow = await page.evaluate('document.documentElement.scrollWidth > window.innerWidth');
      assert.equal(overflow, false, 'no horizontal scrolling');
    });

    test('the Close button closes the circuit, and the card shows it', async () => {
      await page.click('[data-service="product"] button[data-action="close"]');
      await page.waitForSelector('[data-service="product"][data-state="closed"]', { timeout: 1000 });
      assert.equal(p.proxy.registry.get('product')!.state, 'closed');
      assert.ok(p.logs.find((l) => l.msg === 'Operator forced product closed').length > 0);
    });

    test('no console error, and no request to any other host', () => {
      assert.deepEqual(consoleErrors, []);
      assert.deepEqual(foreign, []);
    });
  },
);
