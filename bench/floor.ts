/**
 * The floor of the open circuit: a bare Node HTTP server that answers every request with the same
 * 503 problem+json the open circuit sends (same header list, same body, body as a string as
 * circuit-proxy sends it), and does nothing else: no routing, breaker, request id, metrics or
 * logs. No Node HTTP server can answer this 503 for less CPU, so `floor / closed` req/s, measured
 * in the same run, is the most the open/closed ratio can be on the machine at hand.
 * Usage: node dist/bench/floor.js <port>
 */
import { createServer } from 'node:http';

const BODY = JSON.stringify({ type: 'about:blank', title: 'Circuit open', status: 503, detail: 'Circuit open for held', service: 'held' });
const HEADERS = [
  'content-type',
  'application/problem+json',
  'content-length',
  String(Buffer.byteLength(BODY)),
  'cache-control',
  'no-store',
  'retry-after',
  '30',
  'x-request-id',
  '6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b',
];

const server = createServer((req, res) => {
  res.writeHead(503, HEADERS);
  res.end(req.method === 'HEAD' ? undefined : BODY);
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
});
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
