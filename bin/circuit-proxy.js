#!/usr/bin/env -S node --no-memory-reducer --max-semi-space-size=16 --disable-warning=DEP0060
// The flags are src/runtime.ts's NODE_FLAGS (a test keeps them in step); `env -S` splits them.
// Runs the compiled CLI. `npm ci` builds dist/ through the `prepare` script.
import { run } from '../dist/src/cli.js';

await run(process.argv);
