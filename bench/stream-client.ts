/**
 * Streaming client for the bench: downloads (`get`) or uploads (`put`, chunked) N bytes through
 * a URL and prints `{ bytes, seconds }` as one JSON line. Usage:
 *   node dist/bench/stream-client.js get|put <url> <bytes>
 */
import { request } from 'node:http';

const [mode, url, bytesArg] = process.argv.slice(2);
const total = Number(bytesArg);
const CHUNK = Buffer.alloc(64 * 1024, 'y');

const started = process.hrtime.bigint();
const req = request(url!, { method: mode === 'put' ? 'PUT' : 'GET', agent: false }, (res) => {
  let n = 0;
  let body = '';
  res.on('data', (c: Buffer) => {
    n += c.length;
    if (mode === 'put') body += c.toString();
  });
  res.on('end', () => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const bytes = mode === 'put' ? Number(body) : n;
    if (res.statusCode !== 200 || bytes !== total) {
      process.stderr.write(`stream-client: status ${res.statusCode}, ${bytes} of ${total} bytes\n`);
      process.exit(1);
    }
    process.stdout.write(`${JSON.stringify({ bytes, seconds })}\n`);
  });
});
req.on('error', (err) => {
  process.stderr.write(`stream-client: ${err.message}\n`);
  process.exit(1);
});
if (mode === 'put') {
  let sent = 0;
  const more = (): void => {
    while (sent < total) {
      const n = Math.min(CHUNK.length, total - sent);
      sent += n;
      if (!req.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void req.once('drain', more);
    }
    req.end();
  };
  more();
} else {
  req.end();
}
