// A minimal in-process dynkey server for the client's unit tests, built from
// the package's own wire functions and the vectors' keys. It is a `fetch`
// the client can be given, with hooks that let a test play the attacker:
// rewrite directories (lower epoch, wrong identity, duplicate members,
// non-canonical base64url), tamper with responses, or forge problems.
// The real Go server is exercised by the end-to-end tests.

import { b64uDecode, b64uEncode, concat, fromHex, readLP16, toHex, utf8 } from "../../src/bytes.js";
import { signatureInput } from "../../src/directory.js";
import { getSuite, type Suite } from "../../src/suite.js";
import * as wire from "../../src/wire.js";
import { ed25519FromSeed } from "./helpers.js";

export interface ParsedEnvelope {
  type: number;
  suite: string;
  serverKeyId: string;
  clientKey: Uint8Array;
  token: Uint8Array;
  messageId: Uint8Array;
  header: Uint8Array;
  ciphertext: Uint8Array;
}

export function parseEnvelope(b: Uint8Array): ParsedEnvelope {
  if (b[0] !== 0x44 || b[1] !== 0x4b || b[2] !== 1) throw new Error("not an envelope");
  const fields: Uint8Array[] = [];
  let off = 4;
  for (let i = 0; i < 7; i++) {
    const f = readLP16(b, off);
    if (!f) throw new Error("truncated");
    fields.push(f.v);
    off = f.next;
  }
  return {
    type: b[3],
    suite: new TextDecoder().decode(fields[0]),
    serverKeyId: toHex(fields[1]),
    clientKey: fields[2],
    token: fields[3],
    messageId: fields[4],
    header: b.subarray(0, off),
    ciphertext: b.subarray(off),
  };
}

export function parseInner(b: Uint8Array) {
  const f: Uint8Array[] = [];
  let off = 0;
  for (let i = 0; i < 4; i++) {
    const x = readLP16(b, off)!;
    f.push(x.v);
    off = x.next;
  }
  return { newClientKey: f[0], timeOffset: f[1], proof: f[2], contentType: new TextDecoder().decode(f[3]), body: b.subarray(off) };
}

export interface DirKey {
  pub: Uint8Array;
  status: "primary" | "decrypt-only";
  expires?: number;
}

export class FakeServer {
  suite!: Suite;
  identity!: { privateKey: CryptoKey; publicKey: Uint8Array };
  keys: Array<{ pair: CryptoKeyPair; pub: Uint8Array; id: string }> = [];
  epoch = 1;
  sTime = 1_767_225_600_000;
  /** client key id (hex) -> public key, for sessions */
  clients = new Map<string, CryptoKey>();
  tokens = new Set<string>();
  /** Rewrites the directory document served anywhere (keys endpoint, login, heartbeat). */
  directoryHook?: (doc: Uint8Array, where: "keys" | "login" | "heartbeat") => Promise<Uint8Array> | Uint8Array;
  /** Rewrites any sealed response. */
  responseHook?: (resp: Response, path: string) => Promise<Response> | Response;
  /** Answers a protected route. */
  handler: (method: string, path: string, body: Uint8Array, contentType: string) => { status: number; contentType: string; body: Uint8Array } = (m, p, b, ct) => ({
    status: 200,
    contentType: ct || "text/plain",
    body: b.length ? b : utf8(`${m} ${p}`),
  });
  calls = 0;
  logins = 0;
  /** How each request to a protected route carried its envelope. */
  transports: Array<{ method: string; via: "header" | "body"; contentType: string | null }> = [];
  /** Answers a login instead of the server (e.g. a login-failed problem). */
  loginHook?: () => Response | undefined;

  static async create(suiteName: "ecies-x25519" | "ecies-p256", identitySeed: Uint8Array, serverSeeds: Uint8Array[]): Promise<FakeServer> {
    const s = new FakeServer();
    s.suite = await getSuite(suiteName);
    s.identity = await ed25519FromSeed(identitySeed);
    for (const seed of serverSeeds) await s.addKey(await s.suite.deriveKeyPair(seed));
    return s;
  }

  async addKey(pair: CryptoKeyPair): Promise<void> {
    const pub = await this.suite.serializePublicKey(pair.publicKey);
    this.keys.push({ pair, pub, id: toHex(await wire.keyId(this.suite.name, pub)) });
  }

  /** Rotates: a fresh primary key, epoch + 1. */
  async rotate(): Promise<void> {
    await this.addKey(await this.suite.generateKeyPair());
    this.epoch++;
  }

  get primary() {
    return this.keys[this.keys.length - 1];
  }

  /** Signs a payload given as raw JSON text (so tests can craft any bytes). */
  async signedDocument(payloadText: string, identity = this.identity): Promise<Uint8Array> {
    const payload = utf8(payloadText);
    const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, identity.privateKey, signatureInput(payload) as Uint8Array<ArrayBuffer>));
    return utf8(JSON.stringify({ identity: b64uEncode(identity.publicKey), payload: b64uEncode(payload), signature: b64uEncode(sig) }));
  }

  payloadText(epoch = this.epoch, keys?: DirKey[]): string {
    const ks = keys ?? [{ pub: this.primary.pub, status: "primary" as const }];
    return JSON.stringify({
      version: 1,
      epoch,
      suite: this.suite.name,
      s_time: this.sTime,
      keys: ks.map((k) => {
        const o: Record<string, unknown> = { id: "", public: b64uEncode(k.pub), status: k.status };
        if (k.expires) o.expires = k.expires;
        return o;
      }),
    });
  }

  async directoryText(epoch = this.epoch, keys?: DirKey[]): Promise<string> {
    const ks = keys ?? [{ pub: this.primary.pub, status: "primary" as const }];
    const obj = JSON.parse(this.payloadText(epoch, ks));
    for (let i = 0; i < ks.length; i++) obj.keys[i].id = toHex(await wire.keyId(this.suite.name, ks[i].pub));
    return JSON.stringify(obj);
  }

  async directory(where: "keys" | "login" | "heartbeat"): Promise<Uint8Array> {
    const doc = await this.signedDocument(await this.directoryText());
    return this.directoryHook ? this.directoryHook(doc, where) : doc;
  }

  problem(code: string, status: number, extra: Record<string, unknown> = {}): Response {
    return new Response(JSON.stringify({ type: `urn:dynkey:problem:${code}`, title: code, status, code, ...extra }), {
      status,
      headers: { "content-type": "application/problem+json" },
    });
  }

  /** The fetch to give the client. */
  fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const method = init?.method ?? "GET";
    if (url.pathname === wire.PATH_KEYS) {
      return new Response(await this.directory("keys") as Uint8Array<ArrayBuffer>, { headers: { "content-type": "application/json" } });
    }
    const body = new Uint8Array(await new Response(init?.body ?? null).arrayBuffer());
    const reqHeaders = new Headers(init?.headers);
    const hdr = reqHeaders.get(wire.ENVELOPE_HEADER);
    if (hdr !== null && body.length > 0) return this.problem("bad-format", 400);
    let env: ParsedEnvelope;
    try {
      env = parseEnvelope(hdr !== null ? b64uDecode(hdr) : body);
    } catch {
      return this.problem("bad-format", 400);
    }
    const head = method === "HEAD";
    this.sTime += 10;
    const sk = this.keys.find((k) => k.id === env.serverKeyId);
    if (!sk) {
      const dir = JSON.parse(new TextDecoder().decode(await this.directory("keys")));
      return this.problem("server-key-unknown", 400, { directory: dir });
    }
    let senderPub: CryptoKey;
    if (env.type === wire.TYPE_LOGIN) {
      senderPub = await this.suite.parsePublicKey(env.clientKey);
    } else {
      const c = this.clients.get(toHex(env.clientKey));
      if (!c) return this.problem("client-key-unknown", 401);
      if (!this.tokens.has(toHex(env.token))) return this.problem("token-invalid", 401);
      senderPub = c;
    }
    const aad = wire.requestAAD(method, url.pathname, url.search.replace(/^\?/, ""), env.header);
    const info = env.type === wire.TYPE_LOGIN ? wire.INFO_LOGIN : wire.INFO_REQUEST;
    let opened;
    try {
      opened = await this.suite.open(sk.pair, senderPub, utf8(info), aad, env.ciphertext);
    } catch {
      return this.problem("decrypt-failed", 400);
    }
    const inner = parseInner(opened.plaintext);
    if (inner.newClientKey.length > 0) {
      this.clients.set(toHex(await wire.keyId(this.suite.name, inner.newClientKey)), await this.suite.parsePublicKey(inner.newClientKey));
    }
    let out: { status: number; contentType: string; body: Uint8Array };
    if (url.pathname === wire.PATH_LOGIN) {
      this.logins++;
      const hooked = this.loginHook?.();
      if (hooked) return hooked;
      const id = toHex(await wire.keyId(this.suite.name, env.clientKey));
      this.clients.set(id, senderPub);
      const token = crypto.getRandomValues(new Uint8Array(32));
      this.tokens.add(toHex(token));
      const dir = JSON.parse(new TextDecoder().decode(await this.directory("login")));
      out = {
        status: 200,
        contentType: "application/json",
        body: utf8(JSON.stringify({ token: b64uEncode(token), token_expires: this.sTime + 3_600_000, client_key_id: id, s_time: this.sTime, directory: dir })),
      };
    } else if (url.pathname === wire.PATH_HEARTBEAT) {
      const dir = JSON.parse(new TextDecoder().decode(await this.directory("heartbeat")));
      out = { status: 200, contentType: "application/json", body: utf8(JSON.stringify({ s_time: this.sTime, directory: dir })) };
    } else {
      this.calls++;
      this.transports.push({ method, via: hdr !== null ? "header" : "body", contentType: reqHeaders.get("content-type") });
      out = this.handler(method, url.pathname, inner.body, inner.contentType);
    }
    const carries = wire.statusCarriesBody(out.status);
    const sealed = await wire.sealResponse(opened.secret, env.messageId, out.status, out.contentType, head ? new Uint8Array() : out.body);
    const headers: Record<string, string> = { "content-type": wire.MEDIA_TYPE };
    if (!carries) headers[wire.STATUS_HEADER] = String(out.status);
    if (head) headers[wire.RESPONSE_HEADER] = b64uEncode(sealed);
    const resp = new Response(head ? null : (sealed as Uint8Array<ArrayBuffer>), { status: carries ? out.status : 200, headers });
    return this.responseHook ? this.responseHook(resp, url.pathname) : resp;
  };
}

export { concat, fromHex };
