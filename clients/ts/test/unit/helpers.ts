// Shared by the unit tests: the protocol vectors and an Ed25519 key from a seed.

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { b64uDecode, concat, fromHex } from "../../src/bytes.js";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (tests run from build-test/test/unit). */
export const repoRoot = join(here, "..", "..", "..", "..", "..");
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Any = any;
export const vectors: Any = JSON.parse(readFileSync(join(repoRoot, "testdata", "protocol-vectors.json"), "utf8"));

/** Ed25519 key pair from a 32-byte seed, through WebCrypto PKCS#8 import. */
export async function ed25519FromSeed(seed: Uint8Array): Promise<{ privateKey: CryptoKey; publicKey: Uint8Array }> {
  const pkcs8 = concat(fromHex("302e020100300506032b657004220420"), seed);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8 as Uint8Array<ArrayBuffer>, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  return { privateKey, publicKey: b64uDecode(jwk.x!) };
}
