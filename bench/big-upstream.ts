/**
 * Streaming upstream for the bench: `GET /big?bytes=N` answers N bytes (64 KiB chunks, with
 * back-pressure, Content-Length set); `PUT /sink` reads the request body to its end and answers
 * the byte count. Usage: node dist/bench/big-upstream.js <port>
 */
import { createServer } from 'node:http';
import { writeChunks } from './chunks.js';

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
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
