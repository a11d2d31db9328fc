export * from './handler.js';
export { Forwarder, type AgentTuning } from './forwarder.js';
export { route, hasDotSegment, upstreamPath } from './router.js';
export { problemBody, sendProblem } from './problem.js';
