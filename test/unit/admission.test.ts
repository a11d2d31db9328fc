/** The admission chain (src/admission/chain.ts) from tables: order, refunds, queue, observe mode. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AdmissionChain, observed, type Admittee, type Gate, type GateAnswer, type WouldRejectReason } from '../../src/admission/chain.js';
import { Bulkhead } from '../../src/admission/gates.js';

/** A gate that answers from a script and records what it was asked. */
function scripted(kind: 'circuit' | 'bulkhead', answer: GateAnswer, log: string[]): Gate & { later?: (ok: boolean) => void } {
  const g: Gate & { later?: (ok: boolean) => void } = {
    kind,
    wouldRejectReason: kind === 'circuit' ? 'open' : 'bulkhead',
    admit: () => {
      log.push(`${kind}.admit`);
      return answer;
    },
    wait: (_a, resume) => {
      g.later = resume;
      return () => log.push(`${kind}.withdraw`);
    },
    bypass: () => log.push(`${kind}.bypass`),
    release: () => log.push(`${kind}.release`),
    refund: () => log.push(`${kind}.refund`),
  };
  return g;
}

function admittee(): Admittee & { rejects: WouldRejectReason[] } {
  const rejects: WouldRejectReason[] = [];
  return { ticket: 0, counted: false, rejects, wouldReject: (r) => rejects.push(r) };
}

describe('AdmissionChain', () => {
  const cases: Array<[string, GateAnswer, GateAnswer, string, string[]]> = [
    ['both admit', 'admitted', 'admitted', 'admitted', ['circuit.admit', 'bulkhead.admit']],
    ['the circuit rejects: the bulkhead is not asked', 'rejected', 'admitted', 'rejected circuit', ['circuit.admit']],
    [
      'the bulkhead rejects: the circuit is refunded (a half-open slot goes back)',
      'admitted',
      'rejected',
      'rejected bulkhead',
      ['circuit.admit', 'bulkhead.admit', 'circuit.refund'],
    ],
    ['the circuit queues: nothing after it is asked yet', 'queued', 'admitted', 'queued 0', ['circuit.admit']],
  ];
  for (const [name, first, second, expected, calls] of cases) {
    test(name, () => {
      const log: string[] = [];
      const chain = new AdmissionChain([scripted('circuit', first, log), scripted('bulkhead', second, log)]);
      const a = chain.admit(admittee());
      const got = a.kind === 'rejected' ? `rejected ${a.by}` : a.kind === 'queued' ? `queued ${a.at}` : a.kind;
      assert.equal(got, expected);
      assert.deepEqual(log, calls);
    });
  }

  test('a queued call resumes through the rest of the chain; a later rejection refunds the gate that queued it', () => {
    const log: string[] = [];
    const circuit = scripted('circuit', 'queued', log);
    const chain = new AdmissionChain([circuit, scripted('bulkhead', 'rejected', log)]);
    const a = admittee();
    const first = chain.admit(a);
    assert.equal(first.kind, 'queued');
    const results: string[] = [];
    chain.wait(a, 0, (r) => results.push(r.kind === 'rejected' ? `rejected ${r.by}` : r.kind));
    circuit.later!(true);
    assert.deepEqual(results, ['rejected bulkhead']);
    assert.deepEqual(log, ['circuit.admit', 'bulkhead.admit', 'circuit.refund']);
  });

  test('observe mode: a rejection or a queue is a bypass, reported once per gate', () => {
    const log: string[] = [];
    const chain = new AdmissionChain([scripted('circuit', 'rejected', log), scripted('bulkhead', 'rejected', log)].map(observed));
    const a = admittee();
    assert.equal(chain.admit(a).kind, 'admitted');
    assert.deepEqual(a.rejects, ['open', 'bulkhead']);
    assert.deepEqual(log, ['circuit.admit', 'circuit.bypass', 'bulkhead.admit', 'bulkhead.bypass']);
  });

  test('the bulkhead counts what it admits, and what observe mode lets past it; release gives each back once', () => {
    const b = new Bulkhead();
    b.max = 1;
    const a1 = admittee();
    const a2 = admittee();
    assert.equal(b.admit(a1), 'admitted');
    assert.equal(b.admit(a2), 'rejected');
    assert.equal(b.inFlight, 1);
    observed(b).admit(a2);
    assert.equal(b.inFlight, 2);
    b.release(a1);
    b.release(a1);
    b.refund(a2);
    assert.equal(b.inFlight, 0);
  });
});
