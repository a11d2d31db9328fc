/**
 * The WebSocket load of bench/websocket.ts, for a fixed time:
 *   node dist/bench/ws-client.js echo <ws-url> <seconds> <connections>
 *     each connection sends a 64-byte message and waits for its echo, over and over: messages/s;
 *   node dist/bench/ws-client.js handshake <ws-url> <seconds> <concurrency>
 *     each worker opens a connection, waits for the 101, closes it, again: handshakes/s.
 * Prints {"rate": N, "errors": N}. Traffic goes to the given loopback URL only.
 */
import { once } from 'node:events';
import { WebSocket } from 'ws';

const [mode, url, secondsArg, nArg] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 5);
const n = Number(nArg ?? 50);
const until = performance.now() + seconds * 1000;
const payload = Buffer.alloc(64, 'x');
let count = 0;
let errors = 0;

async function open(): Promise<WebSocket> {
  const ws = new WebSocket(url!, { perMessageDeflate: false });
  ws.on('error', () => {});
  await once(ws, 'open');
  return ws;
}

async function echoWorker(): Promise<void> {
  const ws = await open();
  while (performance.now() < until) {
    ws.send(payload);
    await once(ws, 'message');
    count += 1;
  }
  ws.close();
}

async function handshakeWorker(): Promise<void> {
  while (performance.now() < until) {
    try {
      const ws = await open();
      count += 1;
      ws.close();
      await once(ws, 'close');
    } catch {
      errors += 1;
    }
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: n }, () => (mode === 'echo' ? echoWorker() : handshakeWorker())));
const elapsed = (performance.now() - started) / 1000;
process.stdout.write(`${JSON.stringify({ rate: Math.round(count / elapsed), errors })}\n`);
process.exit(0);
