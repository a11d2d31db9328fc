/** Writes `total` bytes to `out` in 64 KiB chunks, waiting for `drain` when it is full, then ends it. */
export function writeChunks(out: NodeJS.WritableStream, total: number, fill: string): void {
  const chunk = Buffer.alloc(64 * 1024, fill);
  let sent = 0;
  const more = (): void => {
    while (sent < total) {
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      if (!out.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void out.once('drain', more);
    }
    out.end();
  };
  more();
}
