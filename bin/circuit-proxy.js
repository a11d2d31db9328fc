#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=67108864 node --no-memory-reducer --max-semi-space-size=16 --initial-old-space-size=64 --disable-warning=DEP0060
// The variable is src/runtime.ts's PROCESS_ENV, the flags its NODE_FLAGS (a test keeps them in step); `env -S` splits them.
// Runs the compiled CLI. `npm ci` builds dist/ through the `prepare` script.
import { run } from '../dist/src/cli.js';

await run(process.argv);
