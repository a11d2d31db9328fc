/**
 * The floor of the open circuit: a bare Node HTTP server that answers every request with the same
 * 503 problem+json the open circuit sends (same header list, same body, body as a string as
 * circuit-proxy sends it), and does nothing else: no routing, breaker, request id, metrics or
 * logs: what Node's HTTP server costs for this answer before any work of ours. So `floor / closed`
 * req/s, measured in the same run, is the most the open/closed ratio can be on the machine at hand
 * for an open path built on Node's HTTP server.
 * Usage: node dist/bench/floor.js <port>
 */
import { createServer } from 'node:http';
import { OpenCircuitResponse } from '../src/proxy/problem.js';

// The open circuit's own body and header list (one source: src/proxy/problem.ts), made once.
const open = new OpenCircuitResponse('held', 'cooldown');
const BODY = open.body;
const HEADERS = [...open.headersFor(30, '6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b')];

const server = createServer((req, res) => {
  res.writeHead(503, HEADERS);
  res.end(req.method === 'HEAD' ? undefined : BODY);
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
});
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
