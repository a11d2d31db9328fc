/**
 * In-process counters for the streaming bench, loaded into both proxies alike (the bare http-proxy
 * and circuit-proxy) with `node --import <this file>`; never part of circuit-proxy itself. It
 * counts, per side (client: sockets the process accepted; upstream: sockets it opened):
 *
 * - `read`: body chunks the HTTP parser pushed into an IncomingMessage (one per socket read that
 *   carried body bytes) and their bytes;
 * - `write`: `socket.write()` calls and their bytes, and how many returned false;
 * - `flush`: writes handed to the kernel (`_write` / `_writev`: one system call each, or a queue of
 *   them while the socket is full) and their bytes;
 * - `outgoingFalse` / `drain`: an OutgoingMessage's `write()` returning false, and its `drain`
 *   events (each a wait for the other side);
 * - GC: collections by kind and their total milliseconds; heap, external memory and the young
 *   generation's size (V8's new space: both semi-spaces) at the snapshot.
 *
 * On SIGUSR2 it prints one JSON line `{"benchCounters": {...}}` to stdout (totals since start; the
 * bench takes differences). Documented in docs/performance-notes.md, "Streaming".
 */
/* eslint-disable @typescript-eslint/unbound-method -- wrapping prototype methods is this file's whole job; each is called with its own `this` */
import { IncomingMessage, OutgoingMessage } from 'node:http';
import { Socket } from 'node:net';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';

/** One side's totals since start (what a snapshot line carries; bench/streaming.ts reads it). */
export interface Side {
  readEvents: number;
  readBytes: number;
  writeCalls: number;
  writeBytes: number;
  writeFalse: number;
  flushes: number;
  flushBytes: number;
  outgoingFalse: number;
  drains: number;
}

const side = (): Side => ({
  readEvents: 0,
  readBytes: 0,
  writeCalls: 0,
  writeBytes: 0,
  writeFalse: 0,
  flushes: 0,
  flushBytes: 0,
  outgoingFalse: 0,
  drains: 0,
});
const sides = { client: side(), upstream: side() };
const gc = { minor: 0, major: 0, incremental: 0, weak: 0, ms: 0 };

/** An accepted socket has its `server` set; one this process opened has null there. */
const of = (socket: unknown): Side =>
  ((socket as { server?: unknown } | null | undefined)?.server ?? null) !== null ? sides.client : sides.upstream;
const size = (chunk: unknown): number =>
  typeof chunk === 'string' ? Buffer.byteLength(chunk) : ((chunk as { length?: number } | null)?.length ?? 0);

const push = IncomingMessage.prototype.push;
IncomingMessage.prototype.push = function (this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding): boolean {
  if (chunk !== null && chunk !== undefined) {
    const s = of(this.socket);
    s.readEvents++;
    s.readBytes += size(chunk);
  }
  return push.call(this, chunk, encoding);
};

const write = Socket.prototype.write as (this: Socket, ...args: unknown[]) => boolean;
Socket.prototype.write = function (this: Socket, ...args: unknown[]): boolean {
  const s = of(this);
  s.writeCalls++;
  s.writeBytes += size(args[0]);
  const ok = write.apply(this, args);
  if (!ok) s.writeFalse++;
  return ok;
};

type Flush = (this: Socket, ...args: unknown[]) => void;
const proto = Socket.prototype as unknown as { _write: Flush; _writev: Flush };
const flushOne = proto._write;
proto._write = function (this: Socket, ...args: unknown[]): void {
  const s = of(this);
  s.flushes++;
  s.flushBytes += size(args[0]);
  flushOne.apply(this, args);
};
const flushMany = proto._writev;
proto._writev = function (this: Socket, ...args: unknown[]): void {
  const s = of(this);
  s.flushes++;
  for (const c of args[0] as Array<{ chunk: unknown }>) s.flushBytes += size(c.chunk);
  flushMany.apply(this, args);
};

const outWrite = OutgoingMessage.prototype.write as (this: OutgoingMessage, ...args: unknown[]) => boolean;
OutgoingMessage.prototype.write = function (this: OutgoingMessage, ...args: unknown[]): boolean {
  const ok = outWrite.apply(this, args);
  if (!ok) of(this.socket).outgoingFalse++;
  return ok;
} as typeof OutgoingMessage.prototype.write;
const emit = OutgoingMessage.prototype.emit;
OutgoingMessage.prototype.emit = function (this: OutgoingMessage, event: string | symbol, ...args: unknown[]): boolean {
  if (event === 'drain') of(this.socket).drains++;
  return emit.call(this, event, ...args);
};

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gc.ms += e.duration;
    const kind = (e as { detail?: { kind?: number } }).detail?.kind;
    if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++;
    else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.minor++;
    else if (kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) gc.incremental++;
    else gc.weak++;
  }
}).observe({ entryTypes: ['gc'] });

process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  const newSpace = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  const snapshot = {
    sides,
    gc,
    heapUsedMB: m.heapUsed / 2 ** 20,
    externalMB: m.external / 2 ** 20,
    arrayBuffersMB: m.arrayBuffers / 2 ** 20,
    newSpaceMB: (newSpace?.space_size ?? 0) / 2 ** 20,
  };
  process.stdout.write(`${JSON.stringify({ benchCounters: snapshot })}\n`);
});
