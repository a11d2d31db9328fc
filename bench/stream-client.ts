/**
 * Streaming client for the bench: downloads (`get`) or uploads (`put`, chunked) N bytes through
 * a URL, `count` transfers at once (default 1), each on its own keep-alive connection, and prints
 * `{ bytes, seconds }` (all transfers' bytes, wall time until the last ends) as one JSON line.
 * Usage: node dist/bench/stream-client.js get|put <url> <bytes> [count]
 */
import { Agent, request } from 'node:http';
import { writeChunks } from './chunks.js';

const [mode, url, bytesArg, countArg] = process.argv.slice(2);
const total = Number(bytesArg);
const count = Number(countArg ?? 1);
// Keep-alive, as a client with a pool asks: a bare http-proxy passes a client's `Connection: close`
// on to the upstream (docs/http-proxy-defects.md), which would make every baseline transfer's
// upstream connection a fresh one.
const agent = new Agent({ keepAlive: true, maxSockets: count });

function fail(message: string): never {
  process.stderr.write(`stream-client: ${message}\n`);
  process.exit(1);
}

function one(): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url!, { method: mode === 'put' ? 'PUT' : 'GET', agent }, (res) => {
      let n = 0;
      let body = '';
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (mode === 'put') body += c.toString();
      });
      res.on('end', () => {
        const bytes = mode === 'put' ? Number(body) : n;
        if (res.statusCode !== 200 || bytes !== total) fail(`status ${res.statusCode}, ${bytes} of ${total} bytes`);
        resolve(bytes);
      });
    });
    req.on('error', (err) => fail(err.message));
    if (mode === 'put') writeChunks(req, total, 'y');
    else req.end();
  });
}

const started = process.hrtime.bigint();
void Promise.all(Array.from({ length: count }, one)).then((sizes) => {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(`${JSON.stringify({ bytes: sizes.reduce((a, b) => a + b, 0), seconds })}\n`);
  agent.destroy();
});
