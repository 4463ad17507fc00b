// A strict JSON reader for the documents the client must trust (the signed
// directory payload, login and heartbeat bodies, problems).
//
// JSON.parse keeps the last of two members with the same name and loses
// precision above 2^53. The Go reference decodes member names
// case-insensitively (encoding/json), so {"epoch":1,"Epoch":9} means epoch 9
// to a Go verifier and epoch 1 to JSON.parse. PROTOCOL.md §13: member names
// are lower-case and appear once. This reader therefore rejects any object
// with two member names equal ignoring ASCII case, and returns integers
// outside the safe range as bigint instead of rounding them.

/** A parsed JSON value; integers beyond ±(2^53−1) are bigint. */
export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [k: string]: JsonValue };

/** Thrown for any JSON the strict reader refuses. */
export class StrictJsonError extends SyntaxError {
  constructor(message: string) {
    super(`strict JSON: ${message}`);
    this.name = "StrictJsonError";
  }
}

const MAX_DEPTH = 32;

/** Parses text strictly (see the module comment). */
export function parseStrictJSON(text: string): JsonValue {
  let i = 0;
  const fail = (m: string): never => {
    throw new StrictJsonError(`${m} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const str = (): string => {
    if (text[i] !== '"') fail("expected string");
    i++;
    let out = "";
    for (;;) {
      if (i >= text.length) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        const e = text[i + 1];
        i += 2;
        switch (e) {
          case '"': out += '"'; break;
          case "\\": out += "\\"; break;
          case "/": out += "/"; break;
          case "b": out += "\b"; break;
          case "f": out += "\f"; break;
          case "n": out += "\n"; break;
          case "r": out += "\r"; break;
          case "t": out += "\t"; break;
          case "u": {
            const h = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("bad \\u escape");
            out += String.fromCharCode(parseInt(h, 16));
            i += 4;
            break;
          }
          default:
            fail("bad escape");
        }
        continue;
      }
      out += text[i];
      i++;
    }
  };
  const num = (): number | bigint => {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i));
    if (!m) return fail("bad number");
    i += m[0].length;
    if (m[2] === undefined && m[3] === undefined) {
      const n = Number(m[0]);
      return Number.isSafeInteger(n) ? n : BigInt(m[0]);
    }
    const f = Number(m[0]);
    if (!Number.isFinite(f)) fail("number out of range");
    return f;
  };
  const value = (depth: number): JsonValue => {
    if (depth > MAX_DEPTH) fail("nested too deeply");
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj: { [k: string]: JsonValue } = Object.create(null);
      const seen = new Set<string>();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        const k = str();
        const folded = k.replace(/[A-Z]/g, (x) => x.toLowerCase());
        if (seen.has(folded)) fail(`duplicate member "${k}"`);
        seen.add(folded);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        obj[k] = value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    return num();
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail("trailing data");
  return v;
}

/** Parses UTF-8 bytes strictly. */
export function parseStrictJSONBytes(b: Uint8Array): JsonValue {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(b);
  } catch {
    throw new StrictJsonError("invalid UTF-8");
  }
  return parseStrictJSON(text);
}

// Typed field readers: each throws StrictJsonError naming the member.

export type JsonObject = { [k: string]: JsonValue };

export function asObject(v: JsonValue | undefined, what: string): JsonObject {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new StrictJsonError(`${what}: not an object`);
  return v as JsonObject;
}

export function getString(o: JsonObject, k: string, optional = false): string | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== "string") throw new StrictJsonError(`"${k}": not a string`);
  return v;
}

/** A non-negative integer member as a safe number (times in ms). */
export function getSafeUint(o: JsonObject, k: string, optional = false): number | undefined {
  const v = o[k];
  if (v === undefined && optional) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new StrictJsonError(`"${k}": not a non-negative integer below 2^53`);
  return v;
}

/** A non-negative integer member of any size as bigint (epoch). */
export function getBigUint(o: JsonObject, k: string): bigint {
  const v = o[k];
  if (typeof v === "bigint" && v >= 0n && v <= 0xffffffffffffffffn) return v;
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new StrictJsonError(`"${k}": not an unsigned 64-bit integer`);
}

export function getBool(o: JsonObject, k: string): boolean {
  const v = o[k];
  if (v === undefined) return false;
  if (typeof v !== "boolean") throw new StrictJsonError(`"${k}": not a boolean`);
  return v;
}
