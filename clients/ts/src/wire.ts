// The dynkey wire format, byte for byte as docs/PROTOCOL.md §4–§9 specify:
// request envelopes and their associated data, the inner plaintext, the
// rotation proof's associated data, and the response envelope (HKDF-SHA256
// and AES-256-GCM on WebCrypto).

import { buf, concat, fromUtf8, i64, lp16, lp32, readLP16, toHex, u16, u64, utf8 } from "./bytes.js";
import { DynkeyError, type Problem } from "./errors.js";
import { asObject, getSafeUint, getString, parseStrictJSONBytes, type JsonObject } from "./json.js";

export const VERSION = 1;
export const TYPE_LOGIN = 1;
export const TYPE_REQUEST = 2;
export const TYPE_RESPONSE = 3;

export const INFO_LOGIN = "dynkey/v1 login";
export const INFO_REQUEST = "dynkey/v1 request";
export const INFO_PROOF = "dynkey/v1 rotation proof";
const LABEL_KEY_ID = "dynkey/v1 key id";
const LABEL_REQ_AAD = "dynkey/v1 request aad";
const LABEL_RESP = "dynkey/v1 response";
const LABEL_PROOF_AAD = "dynkey/v1 rotation proof aad";

export const KEY_ID_SIZE = 8;
export const MESSAGE_ID_SIZE = 16;
export const RESPONSE_NONCE_SIZE = 32;
export const MAX_TOKEN_SIZE = 1024;
export const MAX_CONTENT_TYPE = 1024;

export const PATH_KEYS = "/.well-known/dynkey/keys";
export const PATH_LOGIN = "/dynkey/login";
export const PATH_HEARTBEAT = "/dynkey/heartbeat";
export const MEDIA_TYPE = "application/dynkey";
export const PROBLEM_MEDIA_TYPE = "application/problem+json";
export const STATUS_HEADER = "Dynkey-Status";
/** The request header carrying an envelope, base64url without padding (§4, header transport). */
export const ENVELOPE_HEADER = "Dynkey-Envelope";
/** The response header carrying the sealed response of a HEAD request (§6). */
export const RESPONSE_HEADER = "Dynkey-Response";
/** The response header carrying a refusal's code (§6, §9): what a HEAD refusal, with no body, has. */
export const PROBLEM_HEADER = "Dynkey-Problem";
/** Largest encoded Dynkey-Envelope value the server accepts. */
export const MAX_ENVELOPE_HEADER_SIZE = 8192;

/** The HTTP status of each problem code (§9). */
export const PROBLEM_STATUS: Readonly<Record<string, number>> = {
  "bad-format": 400,
  "not-encrypted": 415,
  "too-large": 413,
  "unsupported-suite": 400,
  "server-key-unknown": 400,
  "decrypt-failed": 400,
  "token-invalid": 401,
  "token-expired": 401,
  "client-key-unknown": 401,
  "client-key-expired": 401,
  stale: 400,
  replay: 400,
  "rotation-refused": 409,
  "login-failed": 401,
  "login-throttled": 429,
  "login-busy": 503,
  "outcome-unknown": 409,
  "method-not-allowed": 405,
  unavailable: 503,
};

/** Suite names: 1..64 bytes of [a-z0-9-]. */
export function validSuiteName(s: string): boolean {
  return /^[a-z0-9-]{1,64}$/.test(s);
}

/** KeyID = SHA-256("dynkey/v1 key id" || 0x00 || lp16(suite) || public key)[0:8]. */
export async function keyId(suite: string, publicKey: Uint8Array): Promise<Uint8Array> {
  const h = await crypto.subtle.digest("SHA-256", buf(concat(utf8(LABEL_KEY_ID), new Uint8Array([0]), lp16(utf8(suite)), publicKey)));
  return new Uint8Array(h).slice(0, KEY_ID_SIZE);
}

/** The unencrypted, authenticated header of a request envelope (§4). */
export interface RequestHeader {
  type: number; // TYPE_LOGIN or TYPE_REQUEST
  suite: string;
  serverKeyId: Uint8Array; // 8 bytes
  /** login: the full client public key; request: the 8-byte client key id */
  clientKey: Uint8Array;
  token: Uint8Array; // empty on a login
  messageId: Uint8Array; // 16 bytes
  sTime: number; // ms, u64
  elapsed: number; // ms, u64
}

/** Encodes the prefix and the seven header fields. Throws on what a server would refuse. */
export function encodeRequestHeader(h: RequestHeader): Uint8Array {
  if (h.type === TYPE_LOGIN) {
    if (h.clientKey.length === 0 || h.clientKey.length > 8192 || h.token.length !== 0) throw new RangeError("login header fields");
  } else if (h.type === TYPE_REQUEST) {
    if (h.clientKey.length !== KEY_ID_SIZE || h.token.length === 0 || h.token.length > MAX_TOKEN_SIZE) throw new RangeError("request header fields");
  } else {
    throw new RangeError(`message type ${h.type} is not a request`);
  }
  if (!validSuiteName(h.suite) || h.serverKeyId.length !== KEY_ID_SIZE || h.messageId.length !== MESSAGE_ID_SIZE) {
    throw new RangeError("header field of the wrong size");
  }
  return concat(
    new Uint8Array([0x44, 0x4b, VERSION, h.type]),
    lp16(utf8(h.suite)),
    lp16(h.serverKeyId),
    lp16(h.clientKey),
    lp16(h.token),
    lp16(h.messageId),
    lp16(u64(h.sTime)),
    lp16(u64(h.elapsed)),
  );
}

/** aad = label || 0x00 || lp32(method) || lp32(escaped path) || lp32(raw query) || header. */
export function requestAAD(method: string, escapedPath: string, rawQuery: string, header: Uint8Array): Uint8Array {
  return concat(utf8(LABEL_REQ_AAD), new Uint8Array([0]), lp32(utf8(method)), lp32(utf8(escapedPath)), lp32(utf8(rawQuery)), header);
}

/** The sealed inner plaintext of a request (§4). */
export interface Inner {
  newClientKey?: Uint8Array;
  timeOffset?: number; // i64 ms; present iff rotating
  proof?: Uint8Array;
  contentType: string;
  body: Uint8Array;
}

/** Content types: at most 1024 bytes, no control character other than HTAB. */
export function validContentType(s: string): boolean {
  const b = utf8(s);
  if (b.length > MAX_CONTENT_TYPE) return false;
  for (const c of b) if ((c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  return true;
}

export function encodeInner(in_: Inner): Uint8Array {
  const rotating = (in_.newClientKey?.length ?? 0) > 0 || in_.timeOffset !== undefined || (in_.proof?.length ?? 0) > 0;
  if (rotating && (!in_.newClientKey?.length || in_.timeOffset === undefined || !in_.proof?.length)) {
    throw new RangeError("rotation fields must be all present or all empty");
  }
  if (!validContentType(in_.contentType)) throw new RangeError("content type too long or with a control character");
  return concat(
    lp16(in_.newClientKey ?? new Uint8Array()),
    lp16(in_.timeOffset === undefined ? new Uint8Array() : i64(in_.timeOffset)),
    lp16(in_.proof ?? new Uint8Array()),
    lp16(utf8(in_.contentType)),
    in_.body,
  );
}

/** proof_aad = label || 0x00 || message id || current client key id || lp16(new public key). */
export function proofAAD(messageId: Uint8Array, currentKeyId: Uint8Array, newPublicKey: Uint8Array): Uint8Array {
  return concat(utf8(LABEL_PROOF_AAD), new Uint8Array([0]), messageId, currentKeyId, lp16(newPublicKey));
}

// ---------------------------------------------------------------------------
// Responses (§6)

const RESPONSE_HEADER_SIZE = 4 + 2 + RESPONSE_NONCE_SIZE;

/** Whether a response with this status can carry the envelope (else it travels as 200 + Dynkey-Status). */
export function statusCarriesBody(status: number): boolean {
  return status >= 200 && status !== 204 && status !== 304;
}

/** okm = HKDF-SHA256(secret, salt = nonce, info = "dynkey/v1 response", 44): key = okm[0:32], nonce = okm[32:44]. */
export async function responseKey(secret: Uint8Array, nonce: Uint8Array): Promise<{ key: Uint8Array; aeadNonce: Uint8Array; cryptoKey: CryptoKey }> {
  const ikm = await crypto.subtle.importKey("raw", buf(secret), "HKDF", false, ["deriveBits"]);
  const okm = new Uint8Array(await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: buf(nonce), info: buf(utf8(LABEL_RESP)) }, ikm, 44 * 8));
  const key = okm.slice(0, 32);
  const cryptoKey = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]);
  return { key, aeadNonce: okm.slice(32, 44), cryptoKey };
}

/** aad = response header (38 bytes) || u16(status) || message id. */
export function responseAAD(header: Uint8Array, status: number, messageId: Uint8Array): Uint8Array {
  return concat(header, u16(status), messageId);
}

/** Seals a response (the server's side; here for vectors and tests). */
export async function sealResponse(secret: Uint8Array, messageId: Uint8Array, status: number, contentType: string, body: Uint8Array, nonce?: Uint8Array): Promise<Uint8Array> {
  if (!validContentType(contentType)) throw new RangeError("content type");
  if (status < 100 || status > 999) throw new RangeError(`status ${status}`);
  const n = nonce ?? crypto.getRandomValues(new Uint8Array(RESPONSE_NONCE_SIZE));
  const header = concat(new Uint8Array([0x44, 0x4b, VERSION, TYPE_RESPONSE]), u16(RESPONSE_NONCE_SIZE), n);
  const { cryptoKey, aeadNonce } = await responseKey(secret, n);
  const pt = concat(lp16(utf8(contentType)), body);
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv: buf(aeadNonce), additionalData: buf(responseAAD(header, status, messageId)) }, cryptoKey, buf(pt));
  return concat(header, new Uint8Array(ct));
}

/**
 * Authenticates and decrypts a response envelope received with `status`
 * (the real status: Dynkey-Status already applied) for the request with this
 * secret and message id. Throws DynkeyError("response-not-authentic").
 */
export async function openResponse(secret: Uint8Array, messageId: Uint8Array, status: number, b: Uint8Array): Promise<{ contentType: string; body: Uint8Array }> {
  const bad = (why: string) => new DynkeyError("response-not-authentic", `dynkey: response failed authentication: ${why}`);
  if (!Number.isInteger(status) || status < 100 || status > 999) throw bad(`status ${status}`);
  if (b.length < RESPONSE_HEADER_SIZE || b[0] !== 0x44 || b[1] !== 0x4b || b[2] !== VERSION || b[3] !== TYPE_RESPONSE || b[4] !== 0 || b[5] !== RESPONSE_NONCE_SIZE) {
    throw bad("not a dynkey response envelope");
  }
  const header = b.subarray(0, RESPONSE_HEADER_SIZE);
  const { cryptoKey, aeadNonce } = await responseKey(secret, b.subarray(6, RESPONSE_HEADER_SIZE));
  let pt: Uint8Array;
  try {
    pt = new Uint8Array(
      await crypto.subtle.decrypt({ name: "AES-GCM", iv: buf(aeadNonce), additionalData: buf(responseAAD(header, status, messageId)) }, cryptoKey, buf(b.subarray(RESPONSE_HEADER_SIZE))),
    );
  } catch {
    throw bad("AEAD open failed (wrong request, altered body, status or nonce)");
  }
  const f = readLP16(pt, 0);
  if (!f) throw bad("truncated plaintext");
  let contentType: string;
  try {
    contentType = fromUtf8(f.v);
  } catch {
    throw bad("content type is not UTF-8");
  }
  if (!validContentType(contentType)) throw bad("content type");
  return { contentType, body: pt.slice(f.next) };
}

// ---------------------------------------------------------------------------
// Problems (§9)

const PROBLEM_PREFIX = "urn:dynkey:problem:";

/**
 * Parses a problem body. A dynkey problem has a non-empty code and the type
 * urn:dynkey:problem:<code>; anything else (a proxy's problem, say) is not
 * one. Duplicate members are refused like everywhere else.
 */
export function parseProblem(b: Uint8Array): Problem | undefined {
  try {
    const o: JsonObject = asObject(parseStrictJSONBytes(b), "problem");
    const code = getString(o, "code")!;
    const type = getString(o, "type")!;
    if (code === "" || type !== PROBLEM_PREFIX + code) return undefined;
    const status = getSafeUint(o, "status", true) ?? 0;
    const p: Problem = { type, code, status, title: getString(o, "title", true) ?? "" };
    const detail = getString(o, "detail", true);
    if (detail !== undefined) p.detail = detail;
    const st = getSafeUint(o, "s_time", true);
    if (st !== undefined) p.s_time = st;
    if (o.directory !== undefined) p.directory = o.directory;
    return p;
  } catch {
    return undefined;
  }
}

/** Lower-case hex of a key id. */
export const keyIdHex = toHex;
