/**
 * Admission as an ordered chain of gates (docs/architecture.md, "Admission"): each gate admits,
 * rejects or queues a call; a call rejected by a later gate is released by the earlier ones (a
 * half-open trial slot goes back when the bulkhead sheds). Observe mode wraps each gate. A new
 * gate (a retry budget) is one more entry, not another branch in the handler.
 */

/** Why enforce mode would have rejected a request that observe mode forwarded. */
export type WouldRejectReason = 'open' | 'half_open' | 'bulkhead';

/** Which gate answered: the handler picks the answer by it (the open circuit's 503, the bulkhead's). */
export type GateKind = 'circuit' | 'bulkhead';

/** What a gate reads and writes on the call it admits (the Call implements it). */
export interface Admittee {
  /** The circuit's ticket for this call's outcomes. */
  ticket: number;
  /** The bulkhead counted this call: given back at release. */
  counted: boolean;
  /** Observe mode let through a call enforce mode would have rejected. */
  wouldReject(reason: WouldRejectReason): void;
}

export type GateAnswer = 'admitted' | 'rejected' | 'queued';

export interface Gate {
  readonly kind: GateKind;
  admit(a: Admittee): GateAnswer;
  /** After `queued`: `resume` is called once, later, unless the returned withdraw is called first. */
  wait(a: Admittee, resume: (admitted: boolean) => void): () => void;
  /** Lets the call through without counting against the gate (observe mode's would-be rejection). */
  bypass(a: Admittee): void;
  /** Why this gate would reject now (observe mode's counters). */
  readonly wouldRejectReason: WouldRejectReason;
  /** The call ended (its outcomes already reported): give back what `admit` took. */
  release(a: Admittee): void;
  /** A later gate refused the call, or it was never forwarded: give back what `admit` took, uncounted. */
  refund(a: Admittee): void;
}

export type Admission =
  { readonly kind: 'admitted' } | { readonly kind: 'rejected'; readonly by: GateKind } | { readonly kind: 'queued'; readonly at: number };

const ADMITTED: Admission = Object.freeze({ kind: 'admitted' });
const REJECTED_BY: Record<GateKind, Admission> = {
  circuit: Object.freeze({ kind: 'rejected', by: 'circuit' }),
  bulkhead: Object.freeze({ kind: 'rejected', by: 'bulkhead' }),
};

export class AdmissionChain {
  constructor(readonly gates: readonly Gate[]) {}

  /** Runs the gates from the first (or from `from`); a rejection refunds every gate before it. */
  admit(a: Admittee, from = 0): Admission {
    const gates = this.gates;
    for (let i = from; i < gates.length; i++) {
      const g = gates[i]!;
      switch (g.admit(a)) {
        case 'admitted':
          continue;
        case 'queued':
          return { kind: 'queued', at: i };
        case 'rejected':
          for (let j = 0; j < i; j++) gates[j]!.refund(a);
          return REJECTED_BY[g.kind];
      }
    }
    return ADMITTED;
  }

  /** After `queued` at gate `at`: `done` gets the final admission once; returns the withdraw. */
  wait(a: Admittee, at: number, done: (result: Admission) => void): () => void {
    const g = this.gates[at]!;
    return g.wait(a, (admitted) => {
      if (!admitted) {
        for (let j = 0; j < at; j++) this.gates[j]!.refund(a);
        done(REJECTED_BY[g.kind]);
        return;
      }
      // A rejection further on refunds every gate before it, this one included.
      const next = this.admit(a, at + 1);
      if (next.kind === 'queued') throw new Error('only one gate of a chain may queue');
      done(next);
    });
  }

  /**
   * A retry's attempt is admitted like a request by the circuit (docs/retries.md); the call
   * keeps its place at every other gate. A full half-open queue counts as a rejection: a retry
   * does not wait in it.
   */
  readmit(a: Admittee): boolean {
    for (const g of this.gates) if (g.kind === 'circuit') return g.admit(a) === 'admitted';
    return true;
  }

  /** The call ended: every gate gives back what it took. */
  release(a: Admittee): void {
    for (const g of this.gates) g.release(a);
  }
}

/**
 * Observe mode over a gate (docs/load-shedding.md): a rejection or a queue becomes a pass that
 * does not count against the gate, and is reported as a would-be rejection.
 */
export function observed(gate: Gate): Gate {
  return {
    kind: gate.kind,
    get wouldRejectReason() {
      return gate.wouldRejectReason;
    },
    admit(a) {
      const answer = gate.admit(a);
      if (answer === 'admitted') return answer;
      a.wouldReject(gate.wouldRejectReason);
      gate.bypass(a);
      return 'admitted';
    },
    wait: (a, resume) => gate.wait(a, resume),
    bypass: (a) => gate.bypass(a),
    release: (a) => gate.release(a),
    refund: (a) => gate.refund(a),
  };
}
