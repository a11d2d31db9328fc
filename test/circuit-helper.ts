/** The circuit with the positional failure call the unit tables read best in. */
import { Circuit } from '../src/circuit/circuit.js';
import type { ServiceConfig } from '../src/config/types.js';
import { failed, type FailureReason } from '../src/outcome.js';
import type { EventEmitter } from 'node:events';
import type { BreakerEvents } from '../src/circuit/circuit.js';
import type { Clock } from '../src/policy/clock.js';
import type { Random } from '../src/policy/backoff.js';

export class TestCircuit extends Circuit {
  constructor(svc: ServiceConfig, events: EventEmitter<BreakerEvents>, rotate: EventEmitter, clock?: Clock, random?: Random) {
    super(svc.name, svc.circuit, events, rotate, clock, random);
  }

  /** A failure outcome from its parts: `slow` and `retryAfterMs` as the attempt would set them. */
  fail(ticket: number, reason: FailureReason, cause: string, code?: string, requestId?: string, slow = false, retryAfterMs?: number): void {
    this.failure(ticket, failed({ reason, cause, code, requestId, slow, retryAfterMs }));
  }
}
