// Byte helpers: encodings (hex, strict base64url), length prefixes and
// big-endian integers, as docs/PROTOCOL.md defines them. No cryptography here.

const te = new TextEncoder();
const td = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes of s. */
export function utf8(s: string): Uint8Array {
  return te.encode(s);
}

/** Decodes UTF-8, throwing on invalid sequences. */
export function fromUtf8(b: Uint8Array): string {
  return td.decode(b);
}

/** Concatenates byte strings. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** u16 big-endian. */
export function u16(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new RangeError(`u16 out of range: ${n}`);
  return new Uint8Array([n >>> 8, n & 0xff]);
}

/** u32 big-endian. */
export function u32(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`u32 out of range: ${n}`);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** u64 big-endian from a non-negative safe integer or bigint. */
export function u64(n: number | bigint): Uint8Array {
  const v = BigInt(n);
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`u64 out of range: ${n}`);
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v);
  return b;
}

/** i64 big-endian two's complement. */
export function i64(n: number | bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigInt64(0, BigInt(n));
  return b;
}

/** lp16(x) = u16(len(x)) || x. */
export function lp16(x: Uint8Array): Uint8Array {
  return concat(u16(x.length), x);
}

/** lp32(x) = u32(len(x)) || x. */
export function lp32(x: Uint8Array): Uint8Array {
  return concat(u32(x.length), x);
}

/** Reads one lp16 field; returns undefined if truncated. */
export function readLP16(b: Uint8Array, off: number): { v: Uint8Array; next: number } | undefined {
  if (b.length - off < 2) return undefined;
  const n = (b[off] << 8) | b[off + 1];
  if (b.length - off - 2 < n) return undefined;
  return { v: b.subarray(off + 2, off + 2 + n), next: off + 2 + n };
}

/** Lower-case hex. */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** Parses hex (either case); throws on odd length or a non-hex digit. */
export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) throw new SyntaxError("invalid hex");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64U = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64U_REV = (() => {
  const r = new Int16Array(128).fill(-1);
  for (let i = 0; i < B64U.length; i++) r[B64U.charCodeAt(i)] = i;
  return r;
})();

/** base64url without padding (RFC 4648 §5). */
export function b64uEncode(b: Uint8Array): string {
  let s = "";
  let i = 0;
  for (; i + 3 <= b.length; i += 3) {
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    s += B64U[n >>> 18] + B64U[(n >>> 12) & 63] + B64U[(n >>> 6) & 63] + B64U[n & 63];
  }
  const rest = b.length - i;
  if (rest === 1) {
    const n = b[i] << 16;
    s += B64U[n >>> 18] + B64U[(n >>> 12) & 63];
  } else if (rest === 2) {
    const n = (b[i] << 16) | (b[i + 1] << 8);
    s += B64U[n >>> 18] + B64U[(n >>> 12) & 63] + B64U[(n >>> 6) & 63];
  }
  return s;
}

/**
 * Strict base64url decoding, as PROTOCOL.md §13 requires: only the URL-safe
 * alphabet, no padding, no line breaks or other characters, and the unused
 * trailing bits zero, so that every byte string has exactly one encoding.
 * Throws SyntaxError otherwise.
 */
export function b64uDecode(s: string): Uint8Array {
  if (s.length % 4 === 1) throw new SyntaxError("base64url: impossible length");
  const vals = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? B64U_REV[c] : -1;
    if (v < 0) throw new SyntaxError(`base64url: invalid character at ${i}`);
    vals[i] = v;
  }
  const full = Math.floor(s.length / 4);
  const rest = s.length % 4;
  const out = new Uint8Array(full * 3 + (rest === 0 ? 0 : rest - 1));
  let o = 0;
  let i = 0;
  for (let q = 0; q < full; q++, i += 4) {
    const n = (vals[i] << 18) | (vals[i + 1] << 12) | (vals[i + 2] << 6) | vals[i + 3];
    out[o++] = n >>> 16;
    out[o++] = (n >>> 8) & 0xff;
    out[o++] = n & 0xff;
  }
  if (rest === 2) {
    if ((vals[i + 1] & 0x0f) !== 0) throw new SyntaxError("base64url: non-zero trailing bits");
    out[o++] = (vals[i] << 2) | (vals[i + 1] >>> 4);
  } else if (rest === 3) {
    if ((vals[i + 2] & 0x03) !== 0) throw new SyntaxError("base64url: non-zero trailing bits");
    const n = (vals[i] << 18) | (vals[i + 1] << 12) | (vals[i + 2] << 6);
    out[o++] = n >>> 16;
    out[o++] = (n >>> 8) & 0xff;
  }
  return out;
}

/** Constant-length-independent equality of two byte strings (not secret data). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** A copy as a fresh ArrayBuffer-backed Uint8Array (WebCrypto wants BufferSource). */
export function buf(b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}
