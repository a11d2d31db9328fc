/**
 * The outcome of one upstream attempt, as one value: made once where the attempt ends and read by
 * the circuit, the problem writer, the logs and the metrics (docs/architecture.md, "Outcomes").
 * It sits on the bottom floor so the circuit and the proxy share it without importing each other.
 */

/** Why an attempt failed (docs/behaviour.md, "What counts as a failure"). */
export type FailureReason = 'connect' | 'timeout' | 'reset' | 'status';

export const FAILURE_REASONS: readonly FailureReason[] = ['connect', 'timeout', 'reset', 'status'];

/** A failed attempt. */
export interface UpstreamOutcome {
  readonly reason: FailureReason;
  /** Readable cause for logs and problem details, e.g. `connect ECONNREFUSED`, `status 503`. */
  readonly cause: string;
  /** Node's error code when there was one (`ECONNREFUSED`, `ETIMEDOUT`). */
  readonly code: string | undefined;
  /** The upstream's status, for `status` failures. */
  readonly status: number | undefined;
  /** The endpoint the attempt went to (`host:port`). */
  readonly endpoint: string;
  /** The upstream's honoured `Retry-After` in ms, for a failure response that carried one. */
  readonly retryAfterMs: number | undefined;
  /** Whether any byte of the request reached the upstream (false: connect, DNS, TLS handshake). */
  readonly written: boolean;
  /** The attempt was already counted as a slow call (it then counts once more, as a failure). */
  readonly slow: boolean;
  /** The call's request id, for the logs. */
  readonly requestId: string | undefined;
}

/** The fields a failure must name; the rest default to "not known / not applicable". */
export type OutcomeFields = Pick<UpstreamOutcome, 'reason' | 'cause'> & Partial<UpstreamOutcome>;

/** A failure outcome with the unnamed fields at their neutral values. */
export function failed(fields: OutcomeFields): UpstreamOutcome {
  return {
    code: undefined,
    status: undefined,
    endpoint: '',
    retryAfterMs: undefined,
    written: fields.reason !== 'connect',
    slow: false,
    requestId: undefined,
    ...fields,
  };
}

/** HTTP status the proxy answers with for a failure it detected itself (docs/behaviour.md). */
export function statusForFailure(reason: FailureReason | 'open'): 502 | 503 | 504 {
  switch (reason) {
    case 'open':
      return 503;
    case 'timeout':
      return 504;
    case 'connect':
    case 'reset':
    case 'status':
      return 502;
  }
}
