/**
 * The baseline: bare http-proxy 1.18.1 with the same keep-alive agent settings as circuit-proxy's
 * forwarder, no breaker, no metrics, no header hygiene. Forwards everything to one target, WebSocket
 * handshakes with http-proxy's `ws`.
 * Usage: node dist/bench/baseline.js <port> <target-url>
 */
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const agent = new Agent({ keepAlive: true, scheduling: 'lifo', maxFreeSockets: 256, timeout: 4000 });
const proxy = httpProxy.createProxyServer({ target: process.argv[3], agent });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
const server = createServer((req, res) => proxy.web(req, res));
// WebSocket handshakes through http-proxy's `ws`, with the same agent (the WebSocket rounds: bench/websocket.ts).
server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head));
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
});
// Exit normally on signals (lets `node --cpu-prof` write its profile).
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
