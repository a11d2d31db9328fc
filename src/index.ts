/** The small public API: build a proxy from a config, or load one. */
export { CircuitProxy, type ProxyOptions, type Addresses } from './server.js';
export { loadConfig, parseConfig, type Config, type ServiceConfig } from './config/index.js';
export { ConfigError, CircuitProxyError, ExitCode } from './errors.js';
export type { BreakerSnapshot, BreakerState, FailureReason, TransitionEvent, FailureEvent } from './breaker/index.js';
export type { Completed, Outcome } from './proxy/exchange.js';
export { createLogger } from './log.js';
export { NODE_FLAGS } from './runtime.js';
