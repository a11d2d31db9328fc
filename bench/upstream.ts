/**
 * Benchmark upstream: a minimal keep-alive Node server answering a 91-byte JSON body.
 * `GET /__stats` reports how many connections and requests it has seen (that request included);
 * `GET /hold` is never answered.
 * Usage: node dist/bench/upstream.js <port>
 */
import { createServer } from 'node:http';

const BODY = Buffer.from(JSON.stringify({ id: 1, name: 'Espresso beans 1kg bag', price: 24.5, stock: 40, currency: 'EUR', ok: true }));
let connections = 0;
let requests = 0;
const server = createServer((req, res) => {
  requests++;
  if (req.url === '/__stats') {
    res.end(JSON.stringify({ connections, requests }));
    return;
  }
  if (req.url === '/hold') return; // never answered: fills a bulkhead for the bench's shed rounds
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
  res.end(BODY);
});
server.keepAliveTimeout = 65_000;
server.on('connection', () => connections++);
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port, bodyBytes: BODY.length })}\n`);
});
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
