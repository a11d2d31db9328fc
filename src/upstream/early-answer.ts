/**
 * Early answers (RFC 9112 §9.6): an upstream may answer before it has read the request body
 * (413, 401, 501) and close. Writing the rest of the body then fails (EPIPE, ECONNRESET), and
 * Node's net.Socket reports a failed write by destroying itself at once, before the answer
 * already in its receive queue is read: Node's HTTP client loses the response and reports the
 * write error (nodejs/node#12339, #54366, open). No documented option changes that, so this module
 * is the one place that reaches past it (docs/behaviour.md, "Early answers"):
 *
 * each upstream socket's `destroy` is wrapped; a destroy for a failed *write* is held while the
 * socket can still be read, and the read side's `errored` mark that the failed write set is
 * cleared (with it, the socket drops what it reads), so the answer is parsed and forwarded; the
 * socket is destroyed for real by the read side's own end or error, or after EARLY_ANSWER_WAIT_MS.
 * Relies on two things Node does not document: a failed write calls `destroy(err)` on the
 * instance with `err.syscall === 'write'`, and marks `_readableState.errored` with that error.
 * The canary in test/unit/early-answer.test.ts fails loudly if a Node release changes either
 * (CI runs it on Node 20, 22 and 24).
 */
import type { Agent } from 'node:http';
import type { Socket } from 'node:net';

/** How long an upstream that refused the rest of a body has to finish its answer. */
export const EARLY_ANSWER_WAIT_MS = 1000;

const HELD = Symbol('circuit-proxy.earlyAnswer');
type Held = Socket & { [HELD]?: NodeJS.Timeout | true };

function isWriteFailure(err: NodeJS.ErrnoException | null | undefined): boolean {
  // Node destroys with `null` too (an IncomingMessage's socket on a clean end).
  return err?.syscall === 'write' && (err.code === 'EPIPE' || err.code === 'ECONNRESET');
}

/** Wraps one socket's `destroy` as described above. */
export function holdWriteFailures(socket: Socket): void {
  // The instance's own method, called with the socket as `this` below.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const destroy = socket.destroy;
  const s = socket as Held;
  s.destroy = function (this: Held, err?: NodeJS.ErrnoException | null): Socket {
    if (this[HELD] === undefined && isWriteFailure(err) && !this.destroyed && !this.readableEnded) {
      // Writes after this one are buffered by the errored stream, never sent. The failed write
      // also marked the read side errored, which makes it drop what it reads: unmarked, so the
      // answer already received is read and parsed.
      const rs = (this as Socket & { _readableState?: { errored: unknown } })._readableState;
      if (rs !== undefined && rs.errored === err) rs.errored = null;
      const timer = setTimeout(() => destroy.call(this, err ?? undefined), EARLY_ANSWER_WAIT_MS);
      timer.unref();
      this[HELD] = timer;
      return this;
    }
    const held = this[HELD];
    if (held !== undefined && held !== true) clearTimeout(held);
    this[HELD] = true;
    return destroy.call(this, err ?? undefined);
  };
}

/** Every socket `agent` makes gets its write failures held (an agent's `createConnection` is Node's documented hook). */
export function holdWriteFailuresOf(agent: Agent): void {
  const a = agent as Agent & { createConnection: (...args: unknown[]) => Socket | undefined };
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the agent as `this`
  const create = a.createConnection;
  a.createConnection = function (this: Agent, ...args: unknown[]): Socket | undefined {
    const socket = create.apply(this, args);
    if (socket !== undefined) holdWriteFailures(socket);
    return socket;
  };
}
