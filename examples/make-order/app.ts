/**
 * make-order: the reference application. `POST /ordering` runs the reference flow through the
 * circuit-proxy sidecar only (never talking to a dependency directly):
 * validate token (auth) -> get customer (customer) -> check and update stock per item (product)
 * -> create order (order) -> send notification (notification; its failure does not fail the order).
 * The proxy's 503/502/504 become make-order's own clear errors.
 */
import { createServer, type Server } from 'node:http';

export interface Item {
  productId: string;
  quantity: number;
}

export class DependencyError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.error));
  }
}

interface Call {
  status: number;
  body: any;
  headers: Headers;
}

export function createMakeOrder(proxyUrl: string): Server {
  const base = proxyUrl.replace(/\/+$/, '');

  async function call(service: string, path: string, init: RequestInit = {}): Promise<Call> {
    let res: Response;
    try {
      res = await fetch(`${base}/svc/${service}${path}`, {
        ...init,
        headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string>) },
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new DependencyError(502, { error: `circuit-proxy not reachable at ${base}: ${(err as Error).message}`, service });
    }
    const text = await res.text();
    let body: any = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      /* keep text */
    }
    // The sidecar's own answers: map them to clear, stable errors of ours.
    if (res.status === 503 && String(res.headers.get('content-type')).startsWith('application/problem+json')) {
      throw new DependencyError(503, {
        error: `${service} is temporarily unavailable (circuit open)`,
        service,
        retryAfterSeconds: Number(res.headers.get('retry-after') ?? '1'),
      });
    }
    if (res.status === 502) throw new DependencyError(502, { error: `${service} is unreachable`, service, detail: body?.detail ?? null });
    if (res.status === 504)
      throw new DependencyError(504, { error: `${service} did not answer in time`, service, detail: body?.detail ?? null });
    if (res.status >= 500) throw new DependencyError(502, { error: `${service} failed with ${res.status}`, service });
    return { status: res.status, body, headers: res.headers };
  }

  async function ordering(
    authorization: string | undefined,
    input: { customerId?: string; items?: Item[] },
  ): Promise<{ status: number; body: unknown }> {
    const auth = await call('auth', '/auth/validate', { headers: authorization ? { authorization } : {} });
    if (auth.status !== 200) return { status: 401, body: { error: 'invalid token' } };
    const customerId = input.customerId ?? String(auth.body.userId);
    const customer = await call('customer', `/customers/${encodeURIComponent(customerId)}`);
    if (customer.status !== 200) return { status: 404, body: { error: `unknown customer ${customerId}` } };
    const items = input.items ?? [];
    if (!Array.isArray(items) || items.length === 0) return { status: 400, body: { error: 'items must be a non-empty list' } };
    for (const item of items) {
      const stock = await call('product', `/products/${encodeURIComponent(item.productId)}/stock?quantity=${item.quantity}`);
      if (stock.status === 404) return { status: 422, body: { error: `unknown product ${item.productId}` } };
      if (!stock.body.available)
        return { status: 409, body: { error: `product ${item.productId} is out of stock`, inStock: stock.body.inStock } };
    }
    for (const item of items) {
      // A decrement is not idempotent: POST, so no retry rule ever sends it twice (docs/retries.md).
      const upd = await call('product', `/products/${encodeURIComponent(item.productId)}/stock`, {
        method: 'POST',
        body: JSON.stringify({ decrement: item.quantity }),
      });
      if (upd.status !== 200) return { status: 409, body: { error: `could not reserve product ${item.productId}` } };
    }
    const order = await call('order', '/orders', { method: 'POST', body: JSON.stringify({ customerId, items }) });
    let notification = 'sent';
    try {
      const n = await call('notification', '/notifications', {
        method: 'POST',
        body: JSON.stringify({ to: customer.body.email, template: 'order-created', orderId: order.body.id }),
      });
      if (n.status >= 400) notification = 'failed';
    } catch {
      notification = 'failed'; // a notification outage must not fail the order
    }
    return { status: 201, body: { order: order.body, notification } };
  }

  return createServer((req, res) => {
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/health') return reply(200, { status: 'ok' });
    if (req.method !== 'POST' || req.url !== '/ordering') return reply(404, { error: 'POST /ordering' });
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      let input: { customerId?: string; items?: Item[] };
      try {
        input = raw ? JSON.parse(raw) : {};
      } catch {
        return reply(400, { error: 'invalid JSON' });
      }
      ordering(req.headers.authorization, input).then(
        (r) => reply(r.status, r.body),
        (err: unknown) => {
          if (err instanceof DependencyError) {
            if (err.status === 503) res.setHeader('retry-after', String(Number(err.body.retryAfterSeconds ?? 1)));
            reply(err.status, err.body);
          } else reply(500, { error: 'internal error' });
        },
      );
    });
  });
}
