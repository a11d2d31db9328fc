/**
 * Canary for src/upstream/early-answer.ts, the one reach past Node's documented API: a failed
 * write destroys the socket through the instance's `destroy(err)` with `syscall: 'write'`, and has
 * marked `_readableState.errored`. If a Node release changes either, this fails before the
 * early-answer e2e test does, and says which.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { holdWriteFailures } from '../../src/upstream/early-answer.js';

test("a write failure reaches the instance's destroy, marked as a write, and the answer already sent is still read", async () => {
  // A peer that answers the first bytes it gets and closes without reading the rest (an RST).
  const server = createServer((s) => {
    s.once('data', () => {
      s.write('answer');
      s.destroy();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  try {
    const seen: Array<{ code?: string; syscall?: string; markedReadSide: boolean }> = [];
    const client: Socket = connect(port, '127.0.0.1');
    holdWriteFailures(client);
    const original = client.destroy.bind(client);
    // Observe what Node calls (outside the module's wrapper, so before it clears the mark), then let the wrapper work.
    client.destroy = (err?: NodeJS.ErrnoException): Socket => {
      const e = err;
      const rs = (client as Socket & { _readableState?: { errored: unknown } })._readableState;
      seen.push({ code: e?.code, syscall: e?.syscall, markedReadSide: e !== undefined && rs?.errored === e });
      return original(err);
    };
    let read = '';
    client.on('data', (d: Buffer) => (read += d.toString()));
    client.on('error', () => {});
    await once(client, 'connect');
    // Keep writing until a write fails: the peer has gone.
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 2000 && !client.writableNeedDrain && seen.length === 0; i++) client.write(chunk);
    while (seen.length === 0 && !client.destroyed) {
      // Not events.once: it rejects on the 'error' this test provokes.
      if (client.writableNeedDrain) await new Promise((r) => (client.once('drain', r), client.once('close', r)));
      else client.write(chunk);
    }
    if (!client.destroyed) await new Promise((r) => client.once('close', r));
    const write = seen.find((s) => s.syscall === 'write');
    assert.ok(write, `a failed write reaches destroy(err) with syscall 'write' (seen: ${JSON.stringify(seen)})`);
    assert.match(write.code ?? '', /^(EPIPE|ECONNRESET)$/);
    assert.ok(write.markedReadSide, 'the failed write marked _readableState.errored with its error');
    assert.equal(read, 'answer', 'the answer in the receive queue was read after the failed write');
  } finally {
    server.close();
  }
});
