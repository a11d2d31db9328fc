export { loadConfig, parseConfig, type ConfigOverrides } from './load.js';
export { formatDuration, parseDuration } from './duration.js';
export { expandEnv } from './env.js';
export * from './types.js';
