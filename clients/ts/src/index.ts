// @dynkey/client: fetch that speaks dynkey. See README.md.

export { createClient } from "./client.js";
export type { ClientOptions, ClientState, ClientStats, DynkeyClient, DynkeyEvent, EventKind } from "./client.js";
export { DynkeyError } from "./errors.js";
export { indexedDBSessionStore } from "./persist.js";
export type { PersistedSession, SessionStore } from "./persist.js";
export type { ClientCode, Problem, ProblemCode } from "./errors.js";
export type { ClientPolicy, PolicyFacts, PolicyFunction, PolicyLimits } from "./policy.js";
export type { SuiteName, X25519Impl } from "./suite.js";
export type { EnvelopeMode } from "./transport.js";

// Lower-level pieces, for tests, tools and other transports.
export * as wire from "./wire.js";
export * as directory from "./directory.js";
export { getSuite } from "./suite.js";
export type { Suite, Sealed } from "./suite.js";
export { b64uDecode, b64uEncode, fromHex, toHex } from "./bytes.js";
export { parseStrictJSON, StrictJsonError } from "./json.js";
