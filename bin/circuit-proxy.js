#!/usr/bin/env node
// Runs the compiled CLI. `npm ci` builds dist/ through the `prepare` script.
import { run } from '../dist/src/cli.js';

await run(process.argv);
