// The signed key directory (docs/PROTOCOL.md §8): parsing, strict decoding
// and verification against the trusted Ed25519 identity key.

import { b64uDecode, buf, bytesEqual, concat, fromHex, toHex, utf8 } from "./bytes.js";
import { DynkeyError } from "./errors.js";
import { asObject, getBigUint, getSafeUint, getString, parseStrictJSONBytes, type JsonValue } from "./json.js";
import { keyId, validSuiteName } from "./wire.js";

const LABEL_DIR = "dynkey/v1 key directory";

/** The directory as served: identity key, exact payload bytes, signature. */
export interface SignedDirectory {
  identity: Uint8Array;
  payload: Uint8Array;
  signature: Uint8Array;
}

export interface DirectoryKey {
  /** lower-case hex key id */
  id: string;
  public: Uint8Array;
  status: "primary" | "decrypt-only";
  /** ms since the Unix epoch; 0 for the primary */
  expires: number;
}

/** The verified content of a directory. */
export interface Directory {
  version: 1;
  epoch: bigint;
  suite: string;
  sTime: number;
  keys: DirectoryKey[];
}

function reject(why: string, cause?: unknown): DynkeyError {
  return new DynkeyError("directory-rejected", `dynkey: key directory rejected: ${why}`, cause !== undefined ? { cause } : {});
}

/** Reads the served JSON document (already parsed strictly) into bytes; base64url is strict. */
export function parseSignedDirectory(v: JsonValue | undefined): SignedDirectory {
  try {
    const o = asObject(v, "directory");
    return {
      identity: b64uDecode(getString(o, "identity")!),
      payload: b64uDecode(getString(o, "payload")!),
      signature: b64uDecode(getString(o, "signature")!),
    };
  } catch (e) {
    throw reject(e instanceof Error ? e.message : String(e), e);
  }
}

/** The bytes the identity key signs: label || 0x00 || payload. */
export function signatureInput(payload: Uint8Array): Uint8Array {
  return concat(utf8(LABEL_DIR), new Uint8Array([0]), payload);
}

/** Imports a raw 32-byte Ed25519 public key for verification. */
export async function importIdentity(raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== 32) throw reject(`identity key of ${raw.length} bytes`);
  return crypto.subtle.importKey("raw", buf(raw), { name: "Ed25519" }, false, ["verify"]);
}

/**
 * Verifies a signed directory. It is accepted only if: its identity equals
 * `trusted` (byte for byte), the Ed25519 signature over the exact payload
 * bytes verifies, the payload parses strictly (no duplicate members), version
 * is 1, the suite is a valid name, every id is the lower-case hex key id of
 * its public key and appears once, every status is primary (expires absent
 * or 0) or decrypt-only (expires > 0), and exactly one key is primary.
 * Throws DynkeyError("directory-rejected").
 */
export async function verifyDirectory(sd: SignedDirectory, trusted: Uint8Array): Promise<Directory> {
  if (trusted.length !== 32) throw reject("no trusted identity key");
  if (!bytesEqual(sd.identity, trusted)) throw reject("signed by an untrusted identity key");
  let ok = false;
  try {
    const key = await importIdentity(trusted);
    ok = await crypto.subtle.verify({ name: "Ed25519" }, key, buf(sd.signature), buf(signatureInput(sd.payload)));
  } catch (e) {
    throw reject("Ed25519 verification failed to run", e);
  }
  if (!ok) throw reject("bad signature");
  let d: Directory;
  try {
    const o = asObject(parseStrictJSONBytes(sd.payload), "payload");
    const version = getSafeUint(o, "version");
    const suite = getString(o, "suite")!;
    if (version !== 1 || !validSuiteName(suite)) throw reject(`version ${version}, suite ${JSON.stringify(suite)}`);
    const keysV = o.keys;
    if (!Array.isArray(keysV)) throw reject("keys is not an array");
    d = { version: 1, epoch: getBigUint(o, "epoch"), suite, sTime: getSafeUint(o, "s_time")!, keys: [] };
    for (const kv of keysV) {
      const k = asObject(kv, "key");
      const status = getString(k, "status")!;
      d.keys.push({
        id: getString(k, "id")!,
        public: b64uDecode(getString(k, "public")!),
        status: status as DirectoryKey["status"],
        expires: getSafeUint(k, "expires", true) ?? 0,
      });
    }
  } catch (e) {
    if (e instanceof DynkeyError) throw e;
    throw reject(`payload: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  let primaries = 0;
  const seen = new Set<string>();
  for (const k of d.keys) {
    const want = toHex(await keyId(d.suite, k.public));
    if (k.id !== want) throw reject(`key id ${JSON.stringify(k.id)} does not match its key`);
    if (seen.has(k.id)) throw reject(`key ${k.id} listed twice`);
    seen.add(k.id);
    if (k.status === "primary" && k.expires === 0) primaries++;
    else if (!(k.status === "decrypt-only" && k.expires > 0)) throw reject(`key status ${JSON.stringify(k.status)} with expires ${k.expires}`);
  }
  if (primaries !== 1) throw reject(`${primaries} primary keys`);
  return d;
}

/** The primary key of a verified directory. */
export function primaryKey(d: Directory): DirectoryKey {
  return d.keys.find((k) => k.status === "primary")!;
}

/** Parses an identity key given as 64 hex digits, base64url, or bytes. */
export function parseIdentityKey(k: string | Uint8Array): Uint8Array {
  let raw: Uint8Array;
  if (typeof k !== "string") raw = new Uint8Array(k);
  else if (/^[0-9a-fA-F]{64}$/.test(k)) raw = fromHex(k);
  else raw = b64uDecode(k);
  if (raw.length !== 32) throw new DynkeyError("config", "dynkey: identityKey is not a 32-byte Ed25519 public key");
  return raw;
}
