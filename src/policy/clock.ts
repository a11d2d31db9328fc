import { performance } from 'node:perf_hooks';

/**
 * Milliseconds on a clock that never steps (an NTP step or a VM resume does not move it), as
 * Node's timers are. Injected everywhere a policy reads time, so tests drive it from tables.
 */
export type Clock = () => number;

export const monotonic: Clock = () => performance.now();
