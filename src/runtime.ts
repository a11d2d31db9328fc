/**
 * The Node flags circuit-proxy runs with: the bin's shebang, the Dockerfile's ENTRYPOINT, the
 * demo, the scenarios, the tests and the bench all start it with these (a test keeps the shebang
 * and the Dockerfile in step). V8 reads them only at process start: NODE_OPTIONS refuses them and
 * `v8.setFlagsFromString` comes too late.
 *
 * `--no-memory-reducer`: once a busy process goes quiet, V8's memory reducer runs a
 * memory-reducing full collection. In this proxy that collection threw away the optimized code of
 * about 120 hot functions at once (`--trace-deopt`: "weak objects"), and the code V8 built again
 * afterwards stayed about 20% slower per request for as long as it was measured, 35 s and more
 * (`process.nextTick` alone 12x slower). A sidecar's traffic pauses all the time. Without the reducer
 * the heap is still collected as usual; it is only not shrunk further after traffic stops.
 * Measured: docs/performance-notes.md, "The late-run drift".
 *
 * `--max-semi-space-size=16`: V8's young generation capped at two 16 MB semi-spaces, which is what
 * Node 20 does by default and what every memory figure of ours was measured with. Node 24's V8
 * grows the young generation to 64 MB under load by itself: RSS after 30 s at 50 connections went
 * from 124 to 196 MB, with no CPU gained (paired, same core: 1.009 of the uncapped process's CPU
 * per request). Capped, the young generation is the same on Node 20, 22 and 24, and so is how a
 * pod's memory should be sized (a Node 24 process is still about 25 MB bigger to begin with).
 * Measured: docs/performance-notes.md, "Node 24 memory".
 *
 * `--initial-old-space-size=64`: V8 never sets its old generation's collection limit below 64 MB.
 * While a large body streams, every socket read is a fresh 64 KiB buffer outside the heap, and V8
 * counts such memory allocated since its last full collection against that limit. Our old
 * generation (about 16 MB live, above V8's 8 MB threshold for incremental marking, which a bare
 * http-proxy stays below) got a limit only a few MB above it from a full collection taken
 * mid-stream, and from then on nearly every young collection was followed by a full one, for as
 * long as the process streamed (the streaming bench's "slow mode"). With the floor, none on Node 20
 * and 22 (Node 24's V8 collects streamed memory otherwise, in a bare http-proxy too: "Node 24"). The
 * cost: under request load garbage accumulates to 64 MB before the first full collection.
 * Measured: docs/performance-notes.md, "Streaming".
 *
 * `--disable-warning=DEP0060`: http-proxy 1.18.1 calls `util._extend` on every request, a runtime
 * deprecation since Node 22: the first proxied request would print a DeprecationWarning, a non-JSON
 * line in a sidecar's logs (http-proxy #1715, fixed upstream but never released). The flag silences
 * that one warning and nothing else (Node >= 20.11).
 */
export const NODE_FLAGS: readonly string[] = [
  '--no-memory-reducer',
  '--max-semi-space-size=16',
  '--initial-old-space-size=64',
  '--disable-warning=DEP0060',
];

/**
 * The environment circuit-proxy runs with, beside NODE_FLAGS (the bin's shebang, the Dockerfile's
 * `ENV`, the demo, the tests and the bench set it): what the C library reads once, at process start.
 *
 * `MALLOC_TRIM_THRESHOLD_=67108864`: glibc keeps up to 64 MiB of freed memory at the top of its
 * heap instead of handing it back to the kernel. A streamed body's 64 KiB read buffers are freed in
 * bursts, one young collection's worth at a time; with glibc's default (128 KiB, raised only after
 * some large block happens to be freed) each burst went back to the kernel and the next reads came
 * back as fresh pages, hundreds of page faults per MiB moved, the kernel zeroing every page: up to
 * twice the CPU per byte, in whichever process had not raised its threshold by chance.
 * The memory stays the process's and is reused by the next reads. Measured:
 * docs/performance-notes.md, "Streaming". (musl and other C libraries ignore it.)
 */
export const PROCESS_ENV: Readonly<Record<string, string>> = { MALLOC_TRIM_THRESHOLD_: String(64 * 2 ** 20) };

/** Whether V8's memory reducer is on for a process started with `execArgv` (the last flag wins). */
export function memoryReducerOn(execArgv: readonly string[] = process.execArgv): boolean {
  for (let i = execArgv.length - 1; i >= 0; i--) {
    const a = execArgv[i]!.replaceAll('_', '-');
    if (a === '--no-memory-reducer') return false;
    if (a === '--memory-reducer') return true;
  }
  return true;
}

/**
 * The young generation's cap in MB (`--max-semi-space-size`) a process runs with: the last one on
 * its command line, which wins over NODE_OPTIONS, else the last in NODE_OPTIONS; undefined when
 * neither sets it and V8 sizes it itself.
 */
export function maxSemiSpaceMB(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions = process.env.NODE_OPTIONS ?? '',
): number | undefined {
  return lastNumber(execArgv, '--max-semi-space-size') ?? lastNumber(nodeOptions.split(/\s+/).filter(Boolean), '--max-semi-space-size');
}

/** The old generation's floor in MB (`--initial-old-space-size`, the last one on the command line); undefined when unset. */
export function initialOldSpaceMB(execArgv: readonly string[] = process.execArgv): number | undefined {
  return lastNumber(execArgv, '--initial-old-space-size');
}

/** The last value of a numeric V8 flag in `args` (`--flag=N` or `--flag N`; underscores count as dashes). */
function lastNumber(args: readonly string[], flag: string): number | undefined {
  let found: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!.replaceAll('_', '-');
    if (a.startsWith(`${flag}=`)) found = Number(a.slice(flag.length + 1));
    else if (a === flag && i + 1 < args.length) found = Number(args[++i]);
  }
  return found;
}
