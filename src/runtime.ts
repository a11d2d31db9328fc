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
 * Measured: BENCHMARKS.md, "The late-run drift".
 */
export const NODE_FLAGS: readonly string[] = ['--no-memory-reducer'];

/** Whether V8's memory reducer is on for a process started with `execArgv` (the last flag wins). */
export function memoryReducerOn(execArgv: readonly string[] = process.execArgv): boolean {
  for (let i = execArgv.length - 1; i >= 0; i--) {
    const a = execArgv[i]!.replaceAll('_', '-');
    if (a === '--no-memory-reducer') return false;
    if (a === '--memory-reducer') return true;
  }
  return true;
}
