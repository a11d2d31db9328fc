/**
 * Watches a WebSocket feed through the proxy and prints each message:
 *   node dist/examples/demo/watch.js ws://localhost:8080/svc/notification/ws
 * A refused handshake prints its status and body (the proxy's 503 while the circuit is open).
 */
import { WebSocket } from 'ws';

const url = process.argv[2] ?? 'ws://localhost:8080/svc/notification/ws';
const ws = new WebSocket(url);
ws.on('open', () => process.stdout.write(`connected to ${url}\n`));
ws.on('message', (data: Buffer) => process.stdout.write(`${data.toString('utf8')}\n`));
ws.on('unexpected-response', (_req, res) => {
  let body = '';
  res.on('data', (c: Buffer) => (body += c.toString()));
  res.on('end', () => {
    process.stdout.write(`handshake refused: ${res.statusCode} ${body}\n`);
    process.exit(1);
  });
});
ws.on('close', (code) => {
  process.stdout.write(`closed (${code})\n`);
  process.exit(0);
});
ws.on('error', (err) => {
  process.stdout.write(`${err.message}\n`);
  process.exit(1);
});
process.on('SIGINT', () => ws.close(1000));
