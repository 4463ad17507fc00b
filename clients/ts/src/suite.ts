// The two HPKE suites of docs/PROTOCOL.md §1, on @hpke/core:
//
//   ecies-x25519: mode_auth, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305
//   ecies-p256:   mode_auth, DHKEM(P-256, HKDF-SHA256),  HKDF-SHA256, AES-128-GCM
//
// Seal(to, from, info, aad, pt) = SetupAuthS(pkR = to, info, skS = from),
// one Seal(aad, pt), output enc || ct; the per-message secret is
// Export("dynkey/v1 message secret", 32) of the same context.
//
// Client private keys are non-extractable WebCrypto CryptoKeys wherever the
// platform's WebCrypto has the curve (P-256 everywhere; X25519 in Node ≥ 20,
// current Chromium, Firefox and Safari). Where WebCrypto lacks X25519 the
// suite falls back to @hpke/dhkem-x25519 (pure JS; its keys live in JS memory).

import { Aes128Gcm, CipherSuite, DhkemP256HkdfSha256, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { DhkemX25519HkdfSha256 as DhkemX25519Js } from "@hpke/dhkem-x25519";
import { buf, utf8 } from "./bytes.js";
import { DynkeyError } from "./errors.js";

/** Names of the suites this package speaks. */
export type SuiteName = "ecies-x25519" | "ecies-p256";

/** The HPKE exporter context of the per-message secret. */
export const EXPORTER_CONTEXT = "dynkey/v1 message secret";

/** Result of Suite.seal. */
export interface Sealed {
  /** enc || ct */
  ciphertext: Uint8Array;
  /** the 32-byte per-message secret (HPKE exporter) */
  secret: Uint8Array;
}

/** One algorithm suite. */
export interface Suite {
  readonly name: SuiteName;
  /** Size of the KEM's encapsulated key (32 or 65). */
  readonly encSize: number;
  /** Size of a serialized public key. */
  readonly publicKeySize: number;
  /** Whether generated private keys are non-extractable WebCrypto keys. */
  readonly nonExtractable: boolean;
  /** A fresh key pair; the private key non-extractable where the platform allows. */
  generateKeyPair(): Promise<CryptoKeyPair>;
  /** RFC 9180 DeriveKeyPair(ikm) (tests and vectors; extractable). */
  deriveKeyPair(ikm: Uint8Array): Promise<CryptoKeyPair>;
  serializePublicKey(k: CryptoKey): Promise<Uint8Array>;
  /** Parses and validates a public key. */
  parsePublicKey(b: Uint8Array): Promise<CryptoKey>;
  /** Only for extractable keys (tests). */
  serializePrivateKey(k: CryptoKey): Promise<Uint8Array>;
  /**
   * HPKE auth-mode seal. `ephemeralSeed` (ikmE) is for test vectors only:
   * it makes the ephemeral key deterministic.
   */
  seal(to: CryptoKey, from: CryptoKeyPair, info: Uint8Array, aad: Uint8Array, pt: Uint8Array, ephemeralSeed?: Uint8Array): Promise<Sealed>;
  /** HPKE auth-mode open (tests; the client never opens requests). */
  open(to: CryptoKeyPair, from: CryptoKey, info: Uint8Array, aad: Uint8Array, ct: Uint8Array): Promise<{ plaintext: Uint8Array; secret: Uint8Array }>;
}

/** Which X25519 implementation a suite uses. */
export type X25519Impl = "auto" | "webcrypto" | "js";

async function webCryptoHasX25519(): Promise<boolean> {
  try {
    await crypto.subtle.generateKey({ name: "X25519" } as Algorithm, false, ["deriveBits"]);
    return true;
  } catch {
    return false;
  }
}

class HpkeSuite implements Suite {
  constructor(
    readonly name: SuiteName,
    private readonly cs: CipherSuite,
    readonly encSize: number,
    readonly publicKeySize: number,
    readonly nonExtractable: boolean,
    private readonly genParams: EcKeyGenParams | Algorithm | undefined,
  ) {}

  async generateKeyPair(): Promise<CryptoKeyPair> {
    if (this.genParams) {
      return (await crypto.subtle.generateKey(this.genParams, false, ["deriveBits"])) as CryptoKeyPair;
    }
    return this.cs.kem.generateKeyPair();
  }

  deriveKeyPair(ikm: Uint8Array): Promise<CryptoKeyPair> {
    return this.cs.kem.deriveKeyPair(buf(ikm).buffer);
  }

  async serializePublicKey(k: CryptoKey): Promise<Uint8Array> {
    return new Uint8Array(await this.cs.kem.serializePublicKey(k));
  }

  async parsePublicKey(b: Uint8Array): Promise<CryptoKey> {
    if (b.length !== this.publicKeySize) {
      throw new DynkeyError("directory-rejected", `${this.name}: public key of ${b.length} bytes`);
    }
    return this.cs.kem.deserializePublicKey(buf(b).buffer);
  }

  async serializePrivateKey(k: CryptoKey): Promise<Uint8Array> {
    return new Uint8Array(await this.cs.kem.serializePrivateKey(k));
  }

  async seal(to: CryptoKey, from: CryptoKeyPair, info: Uint8Array, aad: Uint8Array, pt: Uint8Array, ephemeralSeed?: Uint8Array): Promise<Sealed> {
    const ctx = await this.cs.createSenderContext({
      recipientPublicKey: to,
      senderKey: from,
      info: buf(info),
      ...(ephemeralSeed ? { ekm: buf(ephemeralSeed).buffer } : {}),
    });
    const ct = new Uint8Array(await ctx.seal(buf(pt), buf(aad)));
    const secret = new Uint8Array(await ctx.export(utf8(EXPORTER_CONTEXT), 32));
    const enc = new Uint8Array(ctx.enc);
    const out = new Uint8Array(enc.length + ct.length);
    out.set(enc);
    out.set(ct, enc.length);
    return { ciphertext: out, secret };
  }

  async open(to: CryptoKeyPair, from: CryptoKey, info: Uint8Array, aad: Uint8Array, ct: Uint8Array) {
    const ctx = await this.cs.createRecipientContext({
      recipientKey: to,
      senderPublicKey: from,
      enc: buf(ct.subarray(0, this.encSize)),
      info: buf(info),
    });
    const plaintext = new Uint8Array(await ctx.open(buf(ct.subarray(this.encSize)), buf(aad)));
    const secret = new Uint8Array(await ctx.export(utf8(EXPORTER_CONTEXT), 32));
    return { plaintext, secret };
  }
}

const cache = new Map<string, Promise<Suite>>();

/**
 * Returns the named suite. For ecies-x25519, `x25519` chooses the X25519
 * implementation: "auto" (default) uses WebCrypto when the platform has it
 * and @hpke/dhkem-x25519 otherwise.
 */
export function getSuite(name: string, x25519: X25519Impl = "auto"): Promise<Suite> {
  const key = `${name}/${x25519}`;
  let p = cache.get(key);
  if (!p) {
    p = makeSuite(name, x25519);
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

async function makeSuite(name: string, x25519: X25519Impl): Promise<Suite> {
  switch (name) {
    case "ecies-p256": {
      const cs = new CipherSuite({ kem: new DhkemP256HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
      return new HpkeSuite("ecies-p256", cs, 65, 65, true, { name: "ECDH", namedCurve: "P-256" });
    }
    case "ecies-x25519": {
      const native = x25519 === "webcrypto" || (x25519 === "auto" && (await webCryptoHasX25519()));
      const kem = native ? new DhkemX25519HkdfSha256() : new DhkemX25519Js();
      const cs = new CipherSuite({ kem, kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
      return new HpkeSuite("ecies-x25519", cs, 32, 32, native, native ? { name: "X25519" } : undefined);
    }
    default:
      throw new DynkeyError("config", `dynkey: unsupported suite ${JSON.stringify(name)} (this client speaks ecies-x25519 and ecies-p256)`);
  }
}
