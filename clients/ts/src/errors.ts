// Typed errors. Every failure the client reports is a DynkeyError whose
// `code` is stable: either a server problem code (docs/PROTOCOL.md §9) or one
// of the client-side codes below.

/** Problem codes the server sends (docs/PROTOCOL.md §9). */
export type ProblemCode =
  | "bad-format"
  | "not-encrypted"
  | "too-large"
  | "unsupported-suite"
  | "server-key-unknown"
  | "decrypt-failed"
  | "token-invalid"
  | "token-expired"
  | "client-key-unknown"
  | "client-key-expired"
  | "stale"
  | "replay"
  | "rotation-refused"
  | "login-failed"
  | "login-throttled"
  | "login-busy"
  | "outcome-unknown"
  | "method-not-allowed"
  | "unavailable";

/** Codes raised by the client itself. */
export type ClientCode =
  /** A response was neither sealed for this request nor a well-formed problem: never passed on. */
  | "response-not-authentic"
  /** A key directory failed verification (identity, signature, key ids, format). */
  | "directory-rejected"
  /** The server offers another suite than the client accepts (no downgrade). */
  | "suite-mismatch"
  /** First contact over plain http without a pinned identity key and without the opt-in. */
  | "insecure-first-contact"
  /** The request cannot be sent: a GET or HEAD with a body (fetch refuses it), or a HEAD whose envelope does not fit in the Dynkey-Envelope header. */
  | "method-not-supported"
  /** The request body is over maxBodySize. */
  | "body-too-large"
  /** The client was closed. */
  | "closed"
  /** The network request failed (the fetch implementation threw). */
  | "network"
  /** A recovery step failed (for example the directory was refetched less than 10 s ago). */
  | "recovery-failed"
  /** Bad configuration passed to createClient. */
  | "config";

/** The parsed RFC 9457 problem body with dynkey's members. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: string;
  /** Server clock on "stale" (informative, not authenticated). */
  s_time?: number;
  /** The current signed directory on "server-key-unknown" (verified before use). */
  directory?: unknown;
}

/** The one error type the client throws. */
export class DynkeyError extends Error {
  /** Stable code: a server problem code or a client code. */
  readonly code: ProblemCode | ClientCode | string;
  /** HTTP status of a server problem; 0 for client-side errors. */
  readonly status: number;
  /** The server's problem body, when the error is a server refusal. */
  readonly problem?: Problem;

  constructor(code: ProblemCode | ClientCode | string, message: string, opts: { status?: number; problem?: Problem; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = "DynkeyError";
    this.code = code;
    this.status = opts.status ?? 0;
    this.problem = opts.problem;
  }

  /** An error from a server problem. */
  static fromProblem(p: Problem): DynkeyError {
    const msg = p.detail ? `dynkey: ${p.code} (${p.status}): ${p.detail}` : `dynkey: ${p.code} (${p.status})`;
    return new DynkeyError(p.code, msg, { status: p.status, problem: p });
  }
}
