export * from './service-breaker.js';
export * from './registry.js';
