// How an envelope travels in HTTP (docs/PROTOCOL.md §4, "Header
// transport"): in the request body, or base64url in the Dynkey-Envelope
// request header. Browsers' fetch (and Node's) refuse a GET or HEAD with a
// body, so bodiless methods use the header by default; the bytes and their
// binding are the same either way.

import { b64uEncode } from "./bytes.js";
import { ENVELOPE_HEADER, MAX_ENVELOPE_HEADER_SIZE, MEDIA_TYPE } from "./wire.js";

/** Puts a sealed envelope on an outgoing request. */
export interface EnvelopeTransport {
  /** Sets the headers the envelope needs and returns the request body (or null). */
  attach(envelope: Uint8Array, headers: Headers): Uint8Array | null;
}

/** The envelope is the body; Content-Type: application/dynkey. */
export const bodyTransport: EnvelopeTransport = {
  attach(envelope, headers) {
    headers.set("Content-Type", MEDIA_TYPE);
    return envelope;
  },
};

/**
 * The envelope is the body with Content-Type: text/plain, a CORS-safelisted
 * type: a cross-origin POST, PUT or PATCH from a page then needs no
 * preflight. Protected routes and the login and heartbeat endpoints ignore
 * the content type of a body envelope; optional routes do not (they take a
 * body without application/dynkey as plain): see ClientOptions.simpleBodies.
 */
export const simpleBodyTransport: EnvelopeTransport = {
  attach(envelope, headers) {
    headers.set("Content-Type", "text/plain");
    return envelope;
  },
};

/** The envelope is base64url (no padding) in Dynkey-Envelope; no body, no Content-Type. */
export const headerTransport: EnvelopeTransport = {
  attach(envelope, headers) {
    headers.delete("Content-Type");
    headers.set(ENVELOPE_HEADER, b64uEncode(envelope));
    return null;
  },
};

/**
 * Where requests carry their envelope (ClientOptions.envelope):
 * "auto" puts it in the header for GET, HEAD, DELETE and OPTIONS without a
 * body and in the body otherwise; "body" always in the body (HEAD excepted:
 * it has no body); "header" in the header whenever it fits.
 */
export type EnvelopeMode = "auto" | "body" | "header";

/**
 * Reports whether the envelope of envLen bytes, for a request of this
 * method whose plaintext body has bodyLen bytes, travels in the header: the
 * Go client's rule. An envelope whose encoding exceeds 8192 bytes never
 * does (HEAD then cannot be sent).
 */
export function inHeader(mode: EnvelopeMode, method: string, bodyLen: number, envLen: number): boolean {
  if (encodedLength(envLen) > MAX_ENVELOPE_HEADER_SIZE) return false;
  if (method === "HEAD" || mode === "header") return true;
  if (mode === "body") return false;
  return (method === "GET" || method === "DELETE" || method === "OPTIONS") && bodyLen === 0;
}

/** Length of the unpadded base64url encoding of n bytes. */
export function encodedLength(n: number): number {
  return Math.floor(n / 3) * 4 + [0, 2, 3][n % 3];
}
