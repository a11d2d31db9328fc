/** The small public API: build a proxy from a config, or load one. */
export { CircuitProxy, type ProxyOptions, type Addresses } from './server.js';
export { loadConfig, parseConfig, type Config, type ServiceConfig } from './config/index.js';
export { ConfigError, CircuitProxyError, ExitCode } from './errors.js';
export type { BreakerState, TransitionEvent, FailureEvent } from './circuit/circuit.js';
export type { BreakerSnapshot } from './upstream/service.js';
export type { FailureReason, UpstreamOutcome } from './outcome.js';
export type { Completed, Outcome } from './proxy/call.js';
export { createLogger } from './log.js';
export { NODE_FLAGS, PROCESS_ENV } from './runtime.js';
