/**
 * Streaming upstream for the bench: `GET /big?bytes=N` answers N bytes (64 KiB chunks, with
 * back-pressure, Content-Length set); `PUT /sink` reads the request body to its end and answers
 * the byte count. With `close=1` in the query the answer carries `Connection: close`, so the
 * proxy's next request opens a fresh upstream connection. `GET /stats` answers how many
 * connections have carried a request other than `/stats`. Usage: node dist/bench/big-upstream.js <port>
 */
import { createServer } from 'node:http';
import { writeChunks } from './chunks.js';

let connections = 0;
const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.searchParams.get('close') === '1') res.shouldKeepAlive = false;
  if (url.pathname.endsWith('/stats')) return void res.end(JSON.stringify({ connections }));
  const socket = req.socket as typeof req.socket & { counted?: boolean };
  if (socket.counted !== true) {
    socket.counted = true;
    connections++;
  }
  if (url.pathname.endsWith('/sink')) {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => res.end(String(n)));
    return;
  }
  const total = Number(url.searchParams.get('bytes') ?? 0);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
  writeChunks(res, total, 'x');
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
});
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
