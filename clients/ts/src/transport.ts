// How an envelope travels in HTTP. Today there is one way: the request body
// with Content-Type: application/dynkey (docs/PROTOCOL.md §3), for every
// method. Browsers' fetch (and Node's) refuse a GET or HEAD with a body, so a
// header transport for bodiless methods (issue 8: the envelope base64url in
// one request header) is the next addition: another EnvelopeTransport, chosen
// per method in Client's constructor. Nothing else in the client changes.

import { MEDIA_TYPE } from "./wire.js";

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
