// Client key rotation policy (patent claim 5; docs/PROTOCOL.md §5).

/** What a policy sees about the current client key. */
export interface PolicyFacts {
  /** Growth of the server clock (as the client estimates it: s_time + monotonic elapsed) since the key was installed, ms. */
  ageMs: number;
  /** Messages sent under the key. */
  messages: number;
  /** Plaintext body bytes sent under the key. */
  bytes: number;
  /** Hex id of the key. */
  keyId: string;
}

/** A decision function: return "rotate" to rotate on the next heartbeat or idempotent request. */
export type PolicyFunction = (facts: PolicyFacts) => "keep" | "rotate";

/**
 * A simple policy: rotate when any limit set is reached. Unset limits do not
 * apply. The default policy is { maxAgeMs: 3_600_000 } (1 h of server-clock
 * growth, like the Go client's policy.OffsetGrowth(1h)).
 */
export interface PolicyLimits {
  maxAgeMs?: number;
  maxMessages?: number;
  maxBytes?: number;
}

export type ClientPolicy = PolicyLimits | PolicyFunction;

export const DEFAULT_POLICY: PolicyLimits = { maxAgeMs: 3_600_000 };

/** Evaluates a policy. */
export function decide(p: ClientPolicy, f: PolicyFacts): "keep" | "rotate" {
  if (typeof p === "function") return p(f) === "rotate" ? "rotate" : "keep";
  if (p.maxAgeMs !== undefined && f.ageMs >= p.maxAgeMs) return "rotate";
  if (p.maxMessages !== undefined && f.messages >= p.maxMessages) return "rotate";
  if (p.maxBytes !== undefined && f.bytes >= p.maxBytes) return "rotate";
  return "keep";
}
