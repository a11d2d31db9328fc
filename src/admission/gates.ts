/** The gates of a service's admission chain (src/admission/chain.ts): its circuit and its bulkhead. */
import { QUEUED, REJECTED, SHADOW, type Circuit } from '../circuit/circuit.js';
import type { Admittee, Gate, GateAnswer, WouldRejectReason } from './chain.js';

/** The circuit's say: a ticket, a rejection, or a place in the half-open queue. */
export class CircuitGate implements Gate {
  readonly kind = 'circuit';

  constructor(private readonly circuit: Circuit) {}

  get wouldRejectReason(): WouldRejectReason {
    return this.circuit.state === 'half_open' ? 'half_open' : 'open';
  }

  admit(a: Admittee): GateAnswer {
    const t = this.circuit.admit();
    if (t === REJECTED) return 'rejected';
    if (t === QUEUED) return 'queued';
    a.ticket = t;
    return 'admitted';
  }

  wait(a: Admittee, resume: (admitted: boolean) => void): () => void {
    return this.circuit.enqueue((t) => {
      if (t !== REJECTED) a.ticket = t;
      resume(t !== REJECTED);
    });
  }

  bypass(a: Admittee): void {
    a.ticket = SHADOW;
  }

  /** The attempts reported every outcome to the circuit already. */
  release(): void {}

  /** Never forwarded: a half-open trial slot goes back. */
  refund(a: Admittee): void {
    this.circuit.abandon(a.ticket);
  }
}

/** Requests in flight to one service; one counter per service, kept across reloads. */
export class Bulkhead implements Gate {
  readonly kind = 'bulkhead';
  readonly wouldRejectReason = 'bulkhead';
  inFlight = 0;
  /** `maxConcurrent`; undefined = no limit (the count is kept all the same, for /breakers and /stats). */
  max: number | undefined = undefined;

  admit(a: Admittee): GateAnswer {
    if (this.max !== undefined && this.inFlight >= this.max) return 'rejected';
    this.bypass(a);
    return 'admitted';
  }

  wait(): () => void {
    throw new Error('the bulkhead never queues');
  }

  /** Observe mode: the call is forwarded, so it is in flight and counts. */
  bypass(a: Admittee): void {
    this.inFlight += 1;
    a.counted = true;
  }

  release(a: Admittee): void {
    if (!a.counted) return;
    a.counted = false;
    this.inFlight -= 1;
  }

  refund(a: Admittee): void {
    this.release(a);
  }
}
