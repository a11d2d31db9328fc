/**
 * The six demo upstreams of the reference order system, each a small in-memory HTTP service with
 * realistic endpoints. Used by `npm run demo`, `npm run scenarios`, the docker-compose demo
 * (`node dist/examples/demo/service.js <name>`) and tests.
 */
import { createHash } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export const SERVICE_NAMES = ['auth', 'customer', 'product', 'order', 'cart', 'notification'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

type Params = Record<string, string>;
type Route = [method: string, pattern: RegExp, handler: (p: Params, req: IncomingMessage, body: any, res: ServerResponse) => void];

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Notifications as they are queued, for the WebSocket feed (`GET /ws` on the notification service). */
const feed = new EventEmitter().setMaxListeners(0);

/** One unmasked WebSocket frame from server to client (RFC 6455 §5.2). */
function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : Buffer.from([0x80 | opcode, 126, n >> 8, n & 0xff]);
  return Buffer.concat([head, payload]);
}

/**
 * The notification service's live feed: a minimal WebSocket server (text frames out, ping and
 * close answered, anything else the client sends ignored), written by hand so the demo services
 * need no package at run time. docs/websocket.md shows it through the proxy.
 */
function openFeed(req: IncomingMessage, socket: Socket, service: string): void {
  const key = req.headers['sec-websocket-key'];
  if (req.url?.split('?')[0] !== '/ws' || typeof key !== 'string') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  const push = (note: unknown): void => void socket.write(frame(0x1, Buffer.from(JSON.stringify(note))));
  push({ hello: `${service} feed: each notification queued appears here` });
  feed.on('note', push);
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const opcode = buf[0]! & 0x0f;
      let len = buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) [len, at] = [buf.length >= 4 ? buf.readUInt16BE(2) : Infinity, 4];
      else if (len === 127) [len, at] = [buf.length >= 10 ? Number(buf.readBigUInt64BE(2)) : Infinity, 10];
      const masked = (buf[1]! & 0x80) !== 0;
      const end = at + (masked ? 4 : 0) + len;
      if (buf.length < end) return;
      const payload = Buffer.from(buf.subarray(end - len, end));
      if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= buf[at + (i % 4)]!;
      buf = buf.subarray(end);
      if (opcode === 0x8) {
        socket.end(frame(0x8, payload.subarray(0, 2)));
        return;
      }
      if (opcode === 0x9) socket.write(frame(0xa, payload));
    }
  });
  socket.on('error', () => socket.destroy());
  socket.on('close', () => feed.off('note', push));
}

function routesFor(name: ServiceName): Route[] {
  const products = new Map<string, { id: string; name: string; price: number; stock: number }>([
    ['1', { id: '1', name: 'Espresso beans 1kg', price: 24.5, stock: 40 }],
    ['2', { id: '2', name: 'Milk frother', price: 39.9, stock: 5 }],
    ['3', { id: '3', name: 'Ceramic cup', price: 9.0, stock: 0 }],
  ]);
  const decrement: Route[2] = (p, _r, body, res) => {
    const product = products.get(p.id!);
    if (!product) return send(res, 404, { error: `no product ${p.id}` });
    const delta = Number(body?.decrement ?? 0);
    if (!(delta > 0) || delta > product.stock) return send(res, 409, { error: 'insufficient stock', inStock: product.stock });
    product.stock -= delta;
    send(res, 200, { productId: product.id, inStock: product.stock });
  };
  const orders = new Map<string, unknown>();
  const carts = new Map<string, unknown[]>([['42', [{ productId: '1', quantity: 2 }]]]);
  switch (name) {
    case 'auth':
      return [
        [
          'GET',
          /^\/auth\/validate$/,
          (_p, req, _b, res) => {
            const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
            if (token === 'demo-token') send(res, 200, { valid: true, userId: '42', scopes: ['orders:write'] });
            else send(res, 401, { valid: false, error: 'invalid or missing token' });
          },
        ],
      ];
    case 'customer':
      return [
        [
          'GET',
          /^\/customers\/(?<id>[^/]+)$/,
          (p, _r, _b, res) =>
            p.id === '42'
              ? send(res, 200, { id: '42', name: 'Ada Lovelace', email: 'ada@example.com', tier: 'gold' })
              : send(res, 404, { error: `no customer ${p.id}` }),
        ],
      ];
    case 'product':
      return [
        ['GET', /^\/products$/, (_p, _r, _b, res) => send(res, 200, [...products.values()])],
        [
          'GET',
          /^\/products\/(?<id>[^/]+)$/,
          (p, _r, _b, res) => (products.has(p.id!) ? send(res, 200, products.get(p.id!)) : send(res, 404, { error: `no product ${p.id}` })),
        ],
        [
          'GET',
          /^\/products\/(?<id>[^/]+)\/stock$/,
          (p, req, _b, res) => {
            const product = products.get(p.id!);
            if (!product) return send(res, 404, { error: `no product ${p.id}` });
            const quantity = Number(new URL(req.url!, 'http://x').searchParams.get('quantity') ?? '1');
            send(res, 200, { productId: product.id, requested: quantity, inStock: product.stock, available: product.stock >= quantity });
          },
        ],
        [
          // A decrement, not a replacement: POST (a PUT must be idempotent, RFC 9110 9.2.2).
          'POST',
          /^\/products\/(?<id>[^/]+)\/stock$/,
          decrement,
        ],
        // The earlier form, still answered for clients written against it; make-order uses POST.
        ['PUT', /^\/products\/(?<id>[^/]+)\/stock$/, decrement],
      ];
    case 'order':
      return [
        [
          'POST',
          /^\/orders$/,
          (_p, _r, body, res) => {
            const id = `ord-${orders.size + 1001}`;
            const order = {
              id,
              customerId: body?.customerId,
              items: body?.items ?? [],
              status: 'created',
              createdAt: new Date().toISOString(),
            };
            orders.set(id, order);
            send(res, 201, order);
          },
        ],
        [
          'GET',
          /^\/orders\/(?<id>[^/]+)$/,
          (p, _r, _b, res) => (orders.has(p.id!) ? send(res, 200, orders.get(p.id!)) : send(res, 404, { error: `no order ${p.id}` })),
        ],
      ];
    case 'cart':
      return [
        ['GET', /^\/carts\/(?<id>[^/]+)$/, (p, _r, _b, res) => send(res, 200, { customerId: p.id, items: carts.get(p.id!) ?? [] })],
        [
          'DELETE',
          /^\/carts\/(?<id>[^/]+)$/,
          (p, _r, _b, res) => {
            carts.delete(p.id!);
            res.writeHead(204).end();
          },
        ],
      ];
    case 'notification':
      return [
        [
          'POST',
          /^\/notifications$/,
          (_p, _r, body, res) => {
            const note = { queued: true, to: body?.to ?? null, template: body?.template ?? null };
            feed.emit('note', note);
            send(res, 202, note);
          },
        ],
      ];
  }
}

/** A demo service that can be taken down (stops listening: callers get ECONNREFUSED) and brought back. */
export class DemoService {
  readonly name: ServiceName;
  private server: Server | undefined;
  private readonly routes: Route[];
  port: number;
  private readonly host: string;
  /** Milliseconds each answer waits before it is sent (the demo's "slow" switch); 0 by default. */
  delayMs = 0;
  /** While true every request but /health gets 503 (the demo's "fail" switch for one replica). */
  failing = false;
  /** The next this many requests but /health get 503 (a transient failure, for retries: docs/retries.md). */
  failNext = 0;

  /** `replicaOf`: another instance of the same service whose data this one shares (a replica). */
  constructor(name: ServiceName, port = 0, host = '127.0.0.1', replicaOf?: DemoService) {
    this.name = name;
    this.port = port;
    this.host = host;
    this.routes = replicaOf?.routes ?? routesFor(name);
  }

  get up(): boolean {
    return this.server !== undefined;
  }

  async start(): Promise<number> {
    if (this.server) return this.port;
    const server = createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 5000;
    if (this.name === 'notification') server.on('upgrade', (req, socket: Socket) => openFeed(req, socket, this.name));
    server.listen(this.port, this.host);
    await once(server, 'listening');
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return this.port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0]!;
      if (path === '/health') return send(res, 200, { service: this.name, status: 'ok' });
      if (this.failNext > 0) {
        this.failNext -= 1;
        return send(res, 503, { error: `${this.name} on port ${this.port}: transient failure (test switch)` });
      }
      if (this.failing) return send(res, 503, { error: `${this.name} replica on port ${this.port} is failing (demo switch)` });
      let body: unknown;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        return send(res, 400, { error: 'invalid JSON body' });
      }
      const answer = (): void => {
        for (const [method, pattern, handler] of this.routes) {
          const m = pattern.exec(path);
          if (m && req.method === method) return handler({ ...m.groups }, req, body, res);
        }
        send(res, 404, { error: `${this.name}: no route for ${req.method} ${path}` });
      };
      if (this.delayMs > 0) setTimeout(answer, this.delayMs);
      else answer();
    });
  }
}
