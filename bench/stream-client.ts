/**
 * Streaming client for the bench: downloads (`get`) or uploads (`put`, chunked) N bytes through
 * a URL and prints `{ bytes, seconds }` as one JSON line. Usage:
 *   node dist/bench/stream-client.js get|put <url> <bytes>
 */
import { request } from 'node:http';
import { writeChunks } from './chunks.js';

const [mode, url, bytesArg] = process.argv.slice(2);
const total = Number(bytesArg);

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
if (mode === 'put') writeChunks(req, total, 'y');
else req.end();
