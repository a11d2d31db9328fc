/**
 * Benchmark upstream: a minimal keep-alive Node server answering a 91-byte JSON body.
 * `GET /__stats` reports how many connections and requests it has seen (that request included);
 * `GET /hold` is never answered.
 * Usage: node dist/bench/upstream.js <port> [extra]: `extra` more listeners on free ports, the
 * same handler and counters (the replicas of the bench's several-endpoints service).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

const BODY = Buffer.from(JSON.stringify({ id: 1, name: 'Espresso beans 1kg bag', price: 24.5, stock: 40, currency: 'EUR', ok: true }));
let connections = 0;
let requests = 0;
const handler = (req: IncomingMessage, res: ServerResponse): void => {
  requests++;
  if (req.url === '/__stats') {
    res.end(JSON.stringify({ connections, requests }));
    return;
  }
  if (req.url === '/hold') return; // never answered: fills a bulkhead for the bench's shed rounds
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
  res.end(BODY);
};
const listen = (port: number): Promise<number> => {
  const server = createServer(handler);
  server.keepAliveTimeout = 65_000;
  server.on('connection', () => connections++);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
};
const port = await listen(Number(process.argv[2] ?? 0));
const extra: number[] = [];
for (let i = 0; i < Number(process.argv[3] ?? 0); i++) extra.push(await listen(0));
process.stdout.write(`${JSON.stringify({ port, extra, bodyBytes: BODY.length })}\n`);
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
