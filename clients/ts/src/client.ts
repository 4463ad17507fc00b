// The dynkey client: createClient(...).fetch(input, init) seals the request,
// sends it, authenticates and opens the response, and recovers by itself
// from the refusals docs/PROTOCOL.md §9 tells it how to recover from.
//
// It mirrors the Go client (client/): signed key directory pinned to the
// server's identity key, time base from s_time plus the monotonic clock
// (performance.now()), background heartbeats that follow server key
// rotations, client key rotation by policy or on the server's request (only
// on heartbeats and idempotent requests), and retries that reuse the refused
// request's message id.

import { b64uDecode, bytesEqual, concat, fromHex, toHex, utf8 } from "./bytes.js";
import { parseIdentityKey, parseSignedDirectory, primaryKey, verifyDirectory, type SignedDirectory } from "./directory.js";
import { DynkeyError, type Problem } from "./errors.js";
import { asObject, getBool, getSafeUint, getString, parseStrictJSONBytes } from "./json.js";
import { decide, DEFAULT_POLICY, type ClientPolicy } from "./policy.js";
import type { PersistedSession, SessionStore } from "./persist.js";
import { getSuite, type Suite, type SuiteName, type X25519Impl } from "./suite.js";
import { bodyTransport, headerTransport, inHeader, simpleBodyTransport, type EnvelopeMode } from "./transport.js";
import {
  encodeInner,
  encodeRequestHeader,
  ENVELOPE_HEADER,
  INFO_LOGIN,
  INFO_PROOF,
  INFO_REQUEST,
  keyId,
  MAX_ENVELOPE_HEADER_SIZE,
  MEDIA_TYPE,
  MESSAGE_ID_SIZE,
  openResponse,
  parseProblem,
  PATH_HEARTBEAT,
  PATH_KEYS,
  PATH_LOGIN,
  PROBLEM_HEADER,
  PROBLEM_MEDIA_TYPE,
  PROBLEM_STATUS,
  proofAAD,
  requestAAD,
  RESPONSE_HEADER,
  STATUS_HEADER,
  statusCarriesBody,
  TYPE_LOGIN,
  TYPE_REQUEST,
  type Inner,
} from "./wire.js";

/** Options of createClient. Only baseURL, username and password are required. */
export interface ClientOptions {
  /** The server's origin (and optional path prefix), e.g. "https://api.example.com". */
  baseURL: string | URL;
  username: string;
  password: string;
  /**
   * The server's Ed25519 identity public key (64 hex digits, base64url, or
   * 32 bytes); every key directory must be signed by it. Default: none — the
   * identity of the first directory fetched is trusted, which requires an
   * https baseURL (or insecureTrustOnFirstUseWithoutTLS).
   */
  identityKey?: string | Uint8Array;
  /**
   * Trust the identity key of the first directory fetched over plain http.
   * Anyone on the path can then impersonate the server and read the
   * password. For local development only. Default false.
   */
  insecureTrustOnFirstUseWithoutTLS?: boolean;
  /** The suite the client accepts; a server offering another is refused (no downgrade). Default "ecies-x25519". */
  suite?: SuiteName;
  /** When the client rotates its key. Default { maxAgeMs: 3_600_000 }. */
  policy?: ClientPolicy;
  /** The fetch used to reach the server. Default globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
  /** Background heartbeat period; 0 or negative disables it. Default 60_000. */
  heartbeatIntervalMs?: number;
  /** Largest request body the client seals. Default 1 MiB. */
  maxBodySize?: number;
  /**
   * Where requests carry their envelope (docs/PROTOCOL.md §4): "auto" (the
   * default) puts it base64url in the Dynkey-Envelope header for GET, HEAD,
   * DELETE and OPTIONS without a body — fetch refuses a body on GET and
   * HEAD — and in the body otherwise; "body" always in the body (HEAD
   * excepted); "header" in the header whenever it fits (8192 bytes
   * encoded), else in the body. A header is never CORS-safelisted: a
   * cross-origin request with it is preflighted.
   */
  envelope?: EnvelopeMode;
  /**
   * Send body envelopes with Content-Type: text/plain instead of
   * application/dynkey. text/plain is CORS-safelisted, so a cross-origin
   * POST, PUT or PATCH from a page needs no preflight. Protected routes and
   * the login and heartbeat endpoints accept it; routes in optional mode do
   * not (they take it for a plain request). Default false.
   */
  simpleBodies?: boolean;
  /** Called synchronously on protocol events (never with secrets). */
  onEvent?: (e: DynkeyEvent) => void;
  /** X25519 implementation for ecies-x25519: "auto" (WebCrypto if present, default), "webcrypto" or "js". */
  x25519?: X25519Impl;
  /**
   * Keeps the session (token, non-extractable client key, server key) across
   * page loads, e.g. indexedDBSessionStore(). Default: none (a reload logs in
   * again). See the README's security notes before enabling it.
   */
  sessionStore?: SessionStore;
}

export type EventKind =
  | "login"
  | "session-restored"
  | "heartbeat"
  | "heartbeat-failed"
  | "client-key-rotated"
  | "server-key-changed"
  | "recovered"
  | "rotation-abandoned";

/** A protocol event. Key ids are public; no secret is ever passed. */
export interface DynkeyEvent {
  kind: EventKind;
  detail: string;
  clientKeyId?: string;
  serverKeyId?: string;
  epoch?: string;
}

/** Counters of what the client did. */
export interface ClientStats {
  requests: number;
  logins: number;
  clientRotations: number;
  serverKeyChanges: number;
  recoveries: number;
  heartbeatFailures: number;
}

/** The current key state (public values only). */
export interface ClientState {
  loggedIn: boolean;
  clientKeyId?: string;
  serverKeyId?: string;
  epoch?: string;
}

/** A dynkey client. Safe under any number of concurrent calls. */
export interface DynkeyClient {
  /** Like the global fetch: resolves to a Response with the decrypted body, the real status and the handler's content type; rejects with DynkeyError. */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Logs in now (requests log in by themselves when needed). */
  login(): Promise<void>;
  /** Sends one heartbeat now. */
  heartbeat(): Promise<void>;
  /** Rotates the client key on the next heartbeat or idempotent request. */
  rotateNow(): void;
  /** Stops heartbeats and forgets the session and its keys; later calls fail with code "closed". With forgetStored, also clears the sessionStore. */
  close(opts?: { forgetStored?: boolean }): void;
  stats(): ClientStats;
  state(): ClientState;
}

interface KeyEntry {
  pair: CryptoKeyPair;
  pub: Uint8Array;
  id: Uint8Array;
  idHex: string;
}

interface ServerState {
  identity: Uint8Array;
  pub: Uint8Array;
  epoch: bigint;
  keyId: Uint8Array;
  keyIdHex: string;
  key: CryptoKey;
}

interface Session {
  token: Uint8Array;
  key: KeyEntry;
  installedAt: number; // server ms when the key was installed
  messages: number;
  bytes: number;
  /** A key sent in a rotation whose outcome is unknown: tried first next time. */
  pending?: KeyEntry;
  /** Requests in flight by the key id that authenticated them. */
  inFlight: Map<string, number>;
}

interface SealParams {
  type: number;
  key: KeyEntry;
  clientKey: Uint8Array;
  token: Uint8Array;
  newKey?: KeyEntry;
  pending?: boolean;
  sentAt?: number;
  messageId?: Uint8Array;
  /**
   * The secrets of the earlier envelopes of this request (its retries keep
   * the message id): the server answers a resent id with the response it
   * stored for the first copy, sealed to that copy's secret (PROTOCOL.md
   * §11a). exchange appends each envelope's secret.
   */
  secrets?: Uint8Array[];
}

interface Result {
  resp: Response;
  status: number;
  contentType: string;
  body: Uint8Array;
  problem?: Problem;
  at: number;
  messageId: Uint8Array;
  keyIdHex: string;
  serverKeyIdHex: string;
  /** The answer to a HEAD request: no body. */
  head: boolean;
}

interface OutgoingRequest {
  method: string;
  url: URL;
  contentType: string;
  body: Uint8Array;
  headers: Headers;
  signal?: AbortSignal | null;
}

/** At most this many recoveries per request (each kind at most once): PROTOCOL.md §9. */
const MAX_RECOVERIES = 3;
/** A directory refetch after "server-key-unknown" happens at most this often. */
const DIRECTORY_REFETCH_MS = 10_000;

const now = () => performance.now();

/**
 * Creates a client. It does not contact the server: the first request (or
 * login()) does. Throws DynkeyError("config" | "insecure-first-contact") on
 * options that cannot work.
 */
export function createClient(opts: ClientOptions): DynkeyClient {
  return new Client(opts);
}

class Client implements DynkeyClient {
  private readonly base: URL;
  private readonly suiteName: SuiteName;
  private readonly suiteP: Promise<Suite>;
  private readonly pinned?: Uint8Array;
  private readonly policy: ClientPolicy;
  private readonly fetchImpl: typeof globalThis.fetch;
  private readonly maxBody: number;
  private readonly hbInterval: number;
  private readonly envelopeMode: EnvelopeMode;

  private srv?: ServerState;
  private sess?: Session;
  private sTime = 0;
  private sTimeAt = 0;
  private rotating = false;
  private forceRot = false;
  private nextKey?: KeyEntry;
  private genning = false;
  private lastDir = -Infinity;
  private closed = false;
  private loginP?: Promise<void>;
  private dirP?: Promise<void>;
  private timer?: ReturnType<typeof setTimeout>;
  private restoreP?: Promise<void>;
  private readonly counters: ClientStats = { requests: 0, logins: 0, clientRotations: 0, serverKeyChanges: 0, recoveries: 0, heartbeatFailures: 0 };

  constructor(private readonly opts: ClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.baseURL);
    } catch (e) {
      throw new DynkeyError("config", `dynkey: baseURL ${String(opts.baseURL)} is not an absolute URL`, { cause: e });
    }
    if (base.protocol !== "https:" && base.protocol !== "http:") throw new DynkeyError("config", "dynkey: baseURL must be http(s)");
    this.base = base;
    if (!opts.username) throw new DynkeyError("config", "dynkey: username is required");
    if (opts.identityKey !== undefined) this.pinned = parseIdentityKey(opts.identityKey);
    if (!this.pinned && base.protocol !== "https:" && !opts.insecureTrustOnFirstUseWithoutTLS) {
      throw new DynkeyError(
        "insecure-first-contact",
        "dynkey: without a pinned identityKey the first key directory must come over https (or set insecureTrustOnFirstUseWithoutTLS for local development)",
      );
    }
    this.suiteName = opts.suite ?? "ecies-x25519";
    if (this.suiteName !== "ecies-x25519" && this.suiteName !== "ecies-p256") {
      throw new DynkeyError("config", `dynkey: unsupported suite ${JSON.stringify(this.suiteName)}`);
    }
    this.suiteP = getSuite(this.suiteName, opts.x25519 ?? "auto");
    this.suiteP.catch(() => {}); // reported on first use
    this.policy = opts.policy ?? DEFAULT_POLICY;
    const f = opts.fetch ?? globalThis.fetch;
    if (typeof f !== "function") throw new DynkeyError("config", "dynkey: no fetch implementation");
    this.fetchImpl = opts.fetch ? f : (input, init) => globalThis.fetch(input, init);
    this.maxBody = opts.maxBodySize && opts.maxBodySize > 0 ? opts.maxBodySize : 1 << 20;
    this.hbInterval = opts.heartbeatIntervalMs ?? 60_000;
    this.envelopeMode = opts.envelope ?? "auto";
    if (!["auto", "body", "header"].includes(this.envelopeMode)) {
      throw new DynkeyError("config", `dynkey: envelope must be "auto", "body" or "header", not ${JSON.stringify(opts.envelope)}`);
    }
    this.prepareNextKey();
    this.scheduleHeartbeat();
  }

  // ---- public API -------------------------------------------------------

  async fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const req = await this.outgoing(input, init);
    const res = await this.do(req);
    if (res.problem) throw DynkeyError.fromProblem(res.problem);
    return this.toResponse(res);
  }

  async login(): Promise<void> {
    await this.loginOnce(this.sess ?? null);
  }

  async heartbeat(): Promise<void> {
    const res = await this.do(this.heartbeatRequest());
    await this.heartbeatResult(res);
  }

  rotateNow(): void {
    this.forceRot = true;
  }

  close(opts?: { forgetStored?: boolean }): void {
    if (opts?.forgetStored) this.opts.sessionStore?.clear().catch(() => {});
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.sess = undefined;
    this.nextKey = undefined;
  }

  stats(): ClientStats {
    return { ...this.counters };
  }

  state(): ClientState {
    return {
      loggedIn: this.sess !== undefined,
      clientKeyId: this.sess?.key.idHex,
      serverKeyId: this.srv?.keyIdHex,
      epoch: this.srv?.epoch.toString(),
    };
  }

  // ---- helpers ------------------------------------------------------------

  private emit(kind: EventKind, detail: string): void {
    if (!this.opts.onEvent) return;
    try {
      this.opts.onEvent({ kind, detail, clientKeyId: this.sess?.key.idHex, serverKeyId: this.srv?.keyIdHex, epoch: this.srv?.epoch.toString() });
    } catch {
      // a throwing listener must not break the protocol
    }
  }

  private endpoint(path: string): URL {
    const u = new URL(this.base.href);
    u.pathname = u.pathname.replace(/\/$/, "") + path;
    u.search = "";
    u.hash = "";
    return u;
  }

  private serverNow(): { sTime: number; elapsed: number } {
    return { sTime: this.sTime, elapsed: Math.max(0, Math.floor(now() - this.sTimeAt)) };
  }

  private setServerTime(ms: number, at: number): void {
    if (ms > 0) {
      this.sTime = ms;
      this.sTimeAt = at;
    }
  }

  private async makeEntry(pair: CryptoKeyPair): Promise<KeyEntry> {
    const suite = await this.suiteP;
    const pub = await suite.serializePublicKey(pair.publicKey);
    const id = await keyId(suite.name, pub);
    return { pair, pub, id, idHex: toHex(id) };
  }

  private async generateEntry(): Promise<KeyEntry> {
    const suite = await this.suiteP;
    return this.makeEntry(await suite.generateKeyPair());
  }

  /** Generates the next client key in the background, so a rotation never waits for it. */
  private prepareNextKey(): void {
    if (this.nextKey || this.genning || this.closed) return;
    this.genning = true;
    this.generateEntry().then(
      (e) => {
        this.genning = false;
        if (!this.closed && !this.nextKey) this.nextKey = e;
      },
      () => {
        this.genning = false;
      },
    );
  }

  private scheduleHeartbeat(): void {
    if (this.hbInterval <= 0 || this.closed) return;
    this.timer = setTimeout(() => {
      if (this.closed) return;
      const run = this.sess ? this.heartbeat() : Promise.resolve();
      run
        .catch((e) => {
          if (this.closed) return;
          this.counters.heartbeatFailures++;
          this.emit("heartbeat-failed", e instanceof Error ? e.message : String(e));
        })
        .finally(() => this.scheduleHeartbeat());
    }, this.hbInterval);
    // Node: a heartbeat alone must not keep the process alive.
    const t = this.timer as unknown as { unref?: () => void };
    if (typeof t.unref === "function") t.unref();
  }

  /** Turns fetch-style arguments into the request to seal. */
  private async outgoing(input: RequestInfo | URL, init?: RequestInit): Promise<OutgoingRequest> {
    const isReq = typeof Request !== "undefined" && input instanceof Request;
    const url = new URL(isReq ? (input as Request).url : String(input), this.base);
    if (url.origin !== this.base.origin) {
      throw new DynkeyError("config", `dynkey: ${url.origin} is not the client's server ${this.base.origin}`);
    }
    const method = (init?.method ?? (isReq ? (input as Request).method : "GET")).toUpperCase();
    const headers = new Headers(isReq ? (input as Request).headers : undefined);
    if (init?.headers) new Headers(init.headers).forEach((v, k) => headers.set(k, v));
    let body = new Uint8Array();
    let derivedType: string | null = null;
    if (init?.body !== undefined && init.body !== null) {
      const r = new Response(init.body);
      derivedType = r.headers.get("content-type");
      body = new Uint8Array(await r.arrayBuffer());
    } else if (isReq && (input as Request).body) {
      body = new Uint8Array(await (input as Request).arrayBuffer());
    }
    if (body.length > this.maxBody) throw new DynkeyError("body-too-large", `dynkey: body of ${body.length} bytes is over maxBodySize ${this.maxBody}`);
    const contentType = headers.get("content-type") ?? (body.length > 0 ? derivedType ?? "" : "");
    return { method, url, contentType, body, headers, signal: init?.signal ?? (isReq ? (input as Request).signal : undefined) };
  }

  private heartbeatRequest(): OutgoingRequest {
    return { method: "POST", url: this.endpoint(PATH_HEARTBEAT), contentType: "", body: new Uint8Array(), headers: new Headers() };
  }

  private toResponse(res: Result): Response {
    const headers = new Headers(res.resp.headers);
    for (const h of ["content-length", "content-type", "content-encoding", STATUS_HEADER, RESPONSE_HEADER]) headers.delete(h);
    if (res.contentType) headers.set("content-type", res.contentType);
    if (res.status < 200 || res.status > 599) {
      throw new DynkeyError("response-not-authentic", `dynkey: status ${res.status} cannot be represented as a Response`);
    }
    const nullBody = res.status === 204 || res.status === 205 || res.status === 304 || res.head;
    return new Response(nullBody ? null : (res.body as Uint8Array<ArrayBuffer>), { status: res.status, headers });
  }

  // ---- directory -----------------------------------------------------------

  /** Fetches and verifies the key directory (single flight). */
  private fetchDirectory(): Promise<void> {
    if (!this.dirP) {
      this.dirP = this.fetchDirectoryNow().finally(() => {
        this.dirP = undefined;
      });
    }
    return this.dirP;
  }

  private async fetchDirectoryNow(): Promise<void> {
    const u = this.endpoint(PATH_KEYS);
    u.search = "?suite=" + encodeURIComponent(this.suiteName);
    const at = now();
    let resp: Response;
    try {
      resp = await this.fetchImpl(u.href, { method: "GET", cache: "no-store", credentials: "omit", redirect: "error" });
    } catch (e) {
      throw new DynkeyError("network", `dynkey: fetching the key directory: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const b = new Uint8Array(await resp.arrayBuffer());
    if (resp.status !== 200) {
      const p = parseProblem(b);
      if (p) throw DynkeyError.fromProblem(p);
      throw new DynkeyError("directory-rejected", `dynkey: key directory: HTTP ${resp.status}`);
    }
    let sd: SignedDirectory;
    try {
      sd = parseSignedDirectory(parseStrictJSONBytes(b));
    } catch (e) {
      if (e instanceof DynkeyError) throw e;
      throw new DynkeyError("directory-rejected", `dynkey: key directory: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    this.lastDir = at;
    const changed = await this.acceptDirectory(sd, at, true);
    if (changed) this.emit("server-key-changed", `server key changed to ${this.srv?.keyIdHex} (refetched directory)`);
  }

  /**
   * Verifies a signed directory against the trusted identity and adopts its
   * primary key if it is not older than the one held. Reports whether the
   * server key changed. firstUse allows trusting the identity on first use.
   */
  private async acceptDirectory(sd: SignedDirectory, at: number, firstUse: boolean): Promise<boolean> {
    const trusted = this.srv?.identity ?? this.pinned ?? (firstUse ? sd.identity : undefined);
    if (!trusted) throw new DynkeyError("directory-rejected", "dynkey: no trusted identity key");
    const d = await verifyDirectory(sd, trusted);
    if (d.suite !== this.suiteName) {
      throw new DynkeyError("suite-mismatch", `dynkey: server offers suite ${JSON.stringify(d.suite)}, client accepts ${JSON.stringify(this.suiteName)}`);
    }
    const pk = primaryKey(d);
    const suite = await this.suiteP;
    const key = this.srv?.keyIdHex === pk.id ? this.srv.key : await suite.parsePublicKey(pk.public);
    // Decide only now, after the awaits: another directory may have landed.
    if (this.srv && !bytesEqual(this.srv.identity, trusted)) throw new DynkeyError("directory-rejected", "dynkey: identity changed");
    if (this.srv && d.epoch < this.srv.epoch) return false; // never move back to an older key set
    this.setServerTime(d.sTime, at);
    if (this.srv && this.srv.keyIdHex === pk.id) {
      this.srv.epoch = d.epoch;
      return false;
    }
    const changed = this.srv !== undefined;
    this.srv = { identity: trusted, pub: pk.public, epoch: d.epoch, keyId: fromHex(pk.id), keyIdHex: pk.id, key };
    if (changed) {
      this.counters.serverKeyChanges++;
      this.persist();
    }
    return changed;
  }

  // ---- persistence -----------------------------------------------------------

  /** Saves the session to the sessionStore, if any (in the background). */
  private persist(): void {
    const st = this.opts.sessionStore;
    const srv = this.srv;
    const sess = this.sess;
    if (!st || !srv || !sess || this.closed) return;
    // Only WebCrypto keys: they are stored by structured clone and stay
    // non-extractable. The pure-JS X25519 fallback's key bytes are never written.
    if (typeof CryptoKey === "undefined" || !(sess.key.pair.privateKey instanceof CryptoKey)) return;
    const p: PersistedSession = {
      v: 1,
      baseURL: this.base.href,
      username: this.opts.username,
      suite: this.suiteName,
      identity: srv.identity,
      epoch: srv.epoch.toString(),
      serverPublic: srv.pub,
      token: sess.token,
      keyPair: sess.key.pair,
      keyPub: sess.key.pub,
      installedAt: sess.installedAt,
    };
    st.save(p).catch(() => {});
  }

  /**
   * Restores a stored session once. It is used only if it matches this
   * client (baseURL, username, suite, pinned identity); the time base comes
   * from a freshly fetched directory, verified against the stored identity
   * and never older than the stored epoch. If the token has expired since,
   * the first request recovers by logging in, as for any expired token.
   */
  private async restore(): Promise<void> {
    let p: PersistedSession | undefined;
    try {
      p = await this.opts.sessionStore!.load();
    } catch {
      return;
    }
    if (!p || p.v !== 1 || p.baseURL !== this.base.href || p.username !== this.opts.username || p.suite !== this.suiteName) return;
    if (this.pinned && !bytesEqual(this.pinned, p.identity)) return;
    if (this.sess || this.srv || this.closed) return;
    const suite = await this.suiteP;
    try {
      const id = await keyId(suite.name, p.serverPublic);
      this.srv = { identity: p.identity, pub: p.serverPublic, epoch: BigInt(p.epoch), keyId: id, keyIdHex: toHex(id), key: await suite.parsePublicKey(p.serverPublic) };
      await this.fetchDirectory();
      const kid = await keyId(suite.name, p.keyPub);
      this.sess = { token: p.token, key: { pair: p.keyPair, pub: p.keyPub, id: kid, idHex: toHex(kid) }, installedAt: p.installedAt, messages: 0, bytes: 0, inFlight: new Map() };
    } catch {
      // unusable (another identity, broken record, offline): start afresh
      this.srv = undefined;
      this.sess = undefined;
      return;
    }
    this.emit("session-restored", `session restored; client key ${this.sess.key.idHex}`);
  }

  // ---- login ---------------------------------------------------------------

  /**
   * Logs in unless another call already replaced the session `stale` (so
   * concurrent requests that all saw an expired token log in once).
   */
  private async loginOnce(stale: Session | null): Promise<void> {
    while (this.loginP) {
      // Wait for the login in flight; if it failed (a wrong password, say),
      // report that failure instead of trying again with the same password.
      await this.loginP;
    }
    if (this.closed) throw new DynkeyError("closed", "dynkey: client closed");
    if (this.sess && this.sess !== stale) return;
    this.loginP = this.doLogin().finally(() => {
      this.loginP = undefined;
    });
    return this.loginP;
  }

  private async doLogin(): Promise<void> {
    if (!this.srv) await this.fetchDirectory();
    let key = this.nextKey;
    this.nextKey = undefined;
    if (!key) key = await this.generateEntry();
    const body = utf8(JSON.stringify({ username: this.opts.username, password: this.opts.password }));
    const req: OutgoingRequest = { method: "POST", url: this.endpoint(PATH_LOGIN), contentType: "application/json", body, headers: new Headers() };
    const params = (): SealParams => ({ type: TYPE_LOGIN, key: key!, clientKey: key!.pub, token: new Uint8Array() });
    let res = await this.exchange(req, params());
    const tried: string[] = [];
    while (res.problem && tried.length < 2 && !tried.includes(res.problem.code)) {
      const p = res.problem;
      tried.push(p.code);
      if (p.code === "server-key-unknown" || p.code === "stale") {
        await this.recoverFrom(p, res);
      } else if (p.code === "login-busy") {
        // Too many password checks in flight on the server: wait a little
        // (Retry-After if given, at most 5 s) and try once more.
        const ra = Number(res.resp.headers.get("retry-after"));
        await new Promise((r) => setTimeout(r, Number.isFinite(ra) && ra > 0 ? Math.min(ra * 1000, 5000) : 500 + Math.random() * 500));
      } else {
        break;
      }
      // Same message id: a forged refusal cannot make the login run twice.
      res = await this.exchange(req, { ...params(), messageId: res.messageId });
    }
    if (res.problem) throw DynkeyError.fromProblem(res.problem);
    let token: Uint8Array, clientKeyId: string, sTime: number, sd: SignedDirectory;
    try {
      const o = asObject(parseStrictJSONBytes(res.body), "login response");
      token = b64uDecode(getString(o, "token")!);
      getSafeUint(o, "token_expires");
      clientKeyId = getString(o, "client_key_id")!;
      sTime = getSafeUint(o, "s_time")!;
      sd = parseSignedDirectory(o.directory);
    } catch (e) {
      if (e instanceof DynkeyError) throw e;
      throw new DynkeyError("response-not-authentic", `dynkey: login response: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (clientKeyId !== key.idHex) throw new DynkeyError("response-not-authentic", "dynkey: login response names another client key");
    if (token.length === 0 || token.length > 1024) throw new DynkeyError("response-not-authentic", "dynkey: login response token size");
    await this.acceptDirectory(sd, res.at, false);
    if (this.closed) throw new DynkeyError("closed", "dynkey: client closed");
    this.setServerTime(sTime, res.at);
    this.sess = { token, key, installedAt: sTime, messages: 0, bytes: 0, inFlight: new Map() };
    this.counters.logins++;
    this.persist();
    this.emit("login", `logged in as ${this.opts.username}; client key ${key.idHex}`);
    this.prepareNextKey();
  }

  // ---- one exchange -------------------------------------------------------

  /** Seals one request, sends it and opens the response (or reads the problem). */
  private async exchange(req: OutgoingRequest, p: SealParams): Promise<Result> {
    if (this.closed) throw new DynkeyError("closed", "dynkey: client closed");
    const srv = this.srv;
    if (!srv) throw new DynkeyError("recovery-failed", "dynkey: no server key");
    const suite = await this.suiteP;
    const { sTime, elapsed } = this.serverNow();
    this.counters.requests++;
    p.sentAt = sTime + elapsed;
    const messageId = p.messageId ?? crypto.getRandomValues(new Uint8Array(MESSAGE_ID_SIZE));
    const inner: Inner = { contentType: req.contentType, body: req.body };
    if (p.newKey) {
      const proof = await suite.seal(srv.key, p.newKey.pair, utf8(INFO_PROOF), proofAAD(messageId, p.clientKey, p.newKey.pub), new Uint8Array());
      inner.newClientKey = p.newKey.pub;
      inner.timeOffset = elapsed;
      inner.proof = proof.ciphertext;
    }
    const header = encodeRequestHeader({
      type: p.type,
      suite: suite.name,
      serverKeyId: srv.keyId,
      clientKey: p.clientKey,
      token: p.token,
      messageId,
      sTime,
      elapsed,
    });
    let pt: Uint8Array;
    try {
      pt = encodeInner(inner);
    } catch (e) {
      throw new DynkeyError("config", `dynkey: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const aad = requestAAD(req.method, req.url.pathname, req.url.search.replace(/^\?/, ""), header);
    const sealed = await suite.seal(srv.key, p.key.pair, utf8(p.type === TYPE_LOGIN ? INFO_LOGIN : INFO_REQUEST), aad, pt);
    const envelope = concat(header, sealed.ciphertext);

    const headers = new Headers(req.headers);
    headers.delete("content-type");
    headers.delete("content-encoding");
    headers.delete("content-length");
    const head = req.method === "HEAD";
    const useHeader = inHeader(this.envelopeMode, req.method, req.body.length, envelope.length);
    if (head && (!useHeader || req.body.length > 0)) {
      const err = new DynkeyError("method-not-supported", `dynkey: a HEAD request needs its envelope in the ${ENVELOPE_HEADER} header (no body, at most ${MAX_ENVELOPE_HEADER_SIZE} bytes encoded)`);
      (err as { notSent?: boolean }).notSent = true;
      throw err;
    }
    const transport = useHeader ? headerTransport : this.opts.simpleBodies ? simpleBodyTransport : bodyTransport;
    const body = transport.attach(envelope, headers);
    let resp: Response;
    try {
      resp = await this.fetchImpl(req.url.href, {
        method: req.method,
        headers,
        body: body as BodyInit | null,
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
        signal: req.signal ?? undefined,
      });
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (e instanceof TypeError && /GET\/HEAD|GET or HEAD|cannot have body/i.test(msg)) {
        const err = new DynkeyError(
          "method-not-supported",
          `dynkey: this fetch refuses a ${req.method} with a body; use the header transport (envelope "auto" or "header") (${msg})`,
          { cause: e },
        );
        (err as { notSent?: boolean }).notSent = true;
        throw err;
      }
      if (e instanceof Error && e.name === "AbortError") throw e;
      throw new DynkeyError("network", `dynkey: ${req.method} ${req.url.pathname}: ${msg}`, { cause: e });
    }
    const rb = new Uint8Array(await resp.arrayBuffer());
    const at = now();
    if (rb.length > this.maxBody + 64 * 1024) throw new DynkeyError("response-not-authentic", "dynkey: response too large");
    const res: Result = { resp, status: resp.status, contentType: "", body: rb, at, messageId, keyIdHex: "", serverKeyIdHex: srv.keyIdHex, head };
    const mt = (resp.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (mt === MEDIA_TYPE) {
      let status = resp.status;
      const ds = resp.headers.get(STATUS_HEADER);
      if (ds !== null) {
        status = /^[0-9]{3}$/.test(ds.trim()) ? Number(ds.trim()) : NaN;
        if (!Number.isInteger(status) || statusCarriesBody(status) || resp.status !== 200) {
          throw new DynkeyError("response-not-authentic", `dynkey: bad ${STATUS_HEADER} header`);
        }
      }
      let sealedBody: Uint8Array = rb;
      if (head) {
        // A HEAD response has no body: its envelope is in Dynkey-Response.
        try {
          sealedBody = b64uDecode(resp.headers.get(RESPONSE_HEADER) ?? "");
        } catch {
          sealedBody = new Uint8Array();
        }
        if (sealedBody.length === 0) throw new DynkeyError("response-not-authentic", `dynkey: HEAD response without a valid ${RESPONSE_HEADER} header`);
      }
      // This envelope's secret first; then those of the request's earlier
      // envelopes (a stored answer to the first copy). Each is tried with
      // the AEAD, which fails closed: nothing unauthenticated is passed on.
      const earlier = p.secrets ?? [];
      let opened: { contentType: string; body: Uint8Array } | undefined;
      let lastErr: unknown;
      for (const secret of [sealed.secret, ...earlier.slice().reverse()]) {
        try {
          opened = await openResponse(secret, messageId, status, sealedBody);
          break;
        } catch (e) {
          lastErr = e;
        }
      }
      p.secrets?.push(sealed.secret);
      if (!opened) throw lastErr;
      res.status = status;
      res.contentType = opened.contentType;
      res.body = opened.body;
      return res;
    }
    p.secrets?.push(sealed.secret);
    if (mt === PROBLEM_MEDIA_TYPE && resp.status >= 400) {
      // A refusal, sent before any handler ran. Not authenticated: the client
      // acts on it only in ways an attacker on the path could force anyway.
      let prob = parseProblem(rb);
      if (!prob && head) {
        // No body: the code comes from Dynkey-Problem, exactly as
        // unauthenticated as a body would be; it must match the status.
        const code = resp.headers.get(PROBLEM_HEADER) ?? "";
        if (Object.hasOwn(PROBLEM_STATUS, code) && PROBLEM_STATUS[code] === resp.status) {
          prob = { type: "urn:dynkey:problem:" + code, title: "", status: resp.status, code };
        }
      }
      if (prob) {
        res.problem = { ...prob, status: resp.status };
        res.contentType = PROBLEM_MEDIA_TYPE;
        return res;
      }
    }
    throw new DynkeyError("response-not-authentic", `dynkey: HTTP ${resp.status} with content type ${JSON.stringify(resp.headers.get("content-type"))}`);
  }

  // ---- a request under the session ------------------------------------------

  /** Seals and sends one request under the session, rotating if the policy says so, and settles the rotation. */
  private async send(req: OutgoingRequest, allowRotate: boolean, messageId?: Uint8Array, secrets?: Uint8Array[]): Promise<{ res: Result; sess: Session }> {
    const sess = this.sess;
    if (!sess) throw new DynkeyError("closed", "dynkey: not logged in");
    const p: SealParams = { type: TYPE_REQUEST, key: sess.key, clientKey: sess.key.id, token: sess.token, messageId, secrets };
    let used = sess.key;
    if (sess.pending) {
      p.key = sess.pending;
      p.pending = true;
      used = sess.pending;
    } else if (allowRotate && !this.rotating && this.nextKey && !this.olderKeyInFlight(sess) && (this.forceRot || this.policyDecision(sess) === "rotate")) {
      p.newKey = this.nextKey;
      this.nextKey = undefined;
      this.rotating = true;
      this.forceRot = false;
    }
    p.clientKey = used.id;
    sess.messages++;
    sess.bytes += req.body.length;
    sess.inFlight.set(used.idHex, (sess.inFlight.get(used.idHex) ?? 0) + 1);

    let res: Result | undefined;
    let err: unknown;
    try {
      res = await this.exchange(req, p);
      res.keyIdHex = used.idHex;
    } catch (e) {
      err = e;
    }

    const n = (sess.inFlight.get(used.idHex) ?? 1) - 1;
    if (n <= 0) sess.inFlight.delete(used.idHex);
    else sess.inFlight.set(used.idHex, n);
    const prob = res?.problem;
    let rotatedTo: KeyEntry | undefined;
    if (p.pending) {
      // Concurrent requests may all have used the pending key: only the first outcome settles it.
      const stillPending = this.sess === sess && sess.pending?.idHex === used.idHex;
      if (stillPending && res && !prob) {
        sess.key = used; // the rotation whose response was lost did land
        sess.pending = undefined;
        sess.installedAt = p.sentAt ?? sess.installedAt;
        sess.messages = 0;
        sess.bytes = 0;
        rotatedTo = used;
      } else if (stillPending && prob?.code === "client-key-unknown") {
        sess.pending = undefined; // it never landed: keep the old key
        this.prepareNextKey();
      }
    }
    if (p.newKey) {
      this.rotating = false;
      const notSent = (err as { notSent?: boolean } | undefined)?.notSent === true;
      if (err !== undefined && !notSent) {
        if (this.sess === sess) sess.pending = p.newKey; // outcome unknown: try it first next time
      } else if (res && !prob) {
        if (this.sess === sess) {
          sess.key = p.newKey;
          sess.installedAt = p.sentAt ?? sess.installedAt;
          sess.messages = 0;
          sess.bytes = 0;
          rotatedTo = p.newKey;
        }
      } else {
        if (!this.nextKey) this.nextKey = p.newKey; // never installed; use it next time
        if (prob?.code === "rotation-refused") this.emit("rotation-abandoned", prob.detail ?? "rotation refused");
      }
    }
    if (rotatedTo) {
      this.counters.clientRotations++;
      this.persist();
      this.emit("client-key-rotated", `client key rotated to ${rotatedTo.idHex}`);
      this.prepareNextKey();
    }
    if (err !== undefined) throw err;
    return { res: res!, sess };
  }

  /** Whether a request authenticated by another key than the current one is in flight. */
  private olderKeyInFlight(sess: Session): boolean {
    for (const [id, n] of sess.inFlight) if (id !== sess.key.idHex && n > 0) return true;
    return false;
  }

  private policyDecision(sess: Session): "keep" | "rotate" {
    const { sTime, elapsed } = this.serverNow();
    return decide(this.policy, { ageMs: sTime + elapsed - sess.installedAt, messages: sess.messages, bytes: sess.bytes, keyId: sess.key.idHex });
  }

  // ---- recovery -------------------------------------------------------------

  /**
   * Sends a request with the protocol's recovery (PROTOCOL.md §9): after a
   * refusal that says what to do, do it and retry — each kind at most once,
   * at most three in all — always with the refused request's message id, so
   * that a refusal forged after the handler ran makes the retry fail as
   * "replay" instead of running the handler twice.
   */
  private async do(req: OutgoingRequest): Promise<Result> {
    if (this.closed) throw new DynkeyError("closed", "dynkey: client closed");
    if (!this.sess && this.opts.sessionStore) await (this.restoreP ??= this.restore());
    if (!this.sess) await this.loginOnce(null);
    const secrets: Uint8Array[] = [];
    let { res, sess } = await this.send(req, mayCarryRotation(req), undefined, secrets);
    const recovered: string[] = [];
    while (recovered.length < MAX_RECOVERIES) {
      const prob = res.problem;
      if (!prob || recovered.includes(prob.code)) break;
      recovered.push(prob.code);
      let retry: boolean;
      try {
        retry = await this.recover(prob, sess, res);
      } catch (e) {
        // A recovery the server refused (a new login that failed, say) is
        // what the caller must act on; any other failure reports the
        // original refusal.
        if (e instanceof DynkeyError && (e.code === "closed" || e.problem !== undefined)) throw e;
        break;
      }
      if (!retry) break;
      this.counters.recoveries++;
      this.emit("recovered", `recovered from ${prob.code}; retrying`);
      ({ res, sess } = await this.send(req, false, res.messageId, secrets));
    }
    return res;
  }

  /** Acts on a refusal and reports whether a retry can succeed. */
  private async recover(p: Problem, sess: Session, res: Result): Promise<boolean> {
    switch (p.code) {
      case "server-key-unknown":
      case "stale":
        await this.recoverFrom(p, res);
        return true;
      case "token-expired":
      case "token-invalid":
        await this.loginOnce(sess);
        return true;
      case "client-key-unknown": {
        // If the key changed since the request was sealed, retry with the
        // current one; if the refused key is still ours, the server lost it.
        const changed = this.sess === sess && sess.key.idHex !== res.keyIdHex && sess.pending?.idHex !== res.keyIdHex;
        if (!changed) await this.loginOnce(sess);
        return true;
      }
      case "rotation-refused":
        return true; // the retry carries no rotation
      case "client-key-expired": {
        // Past the server's hard limit: rotate on a heartbeat (the one
        // request an expired key may still send, carrying its rotation),
        // then retry with the same message id.
        const rotated = this.sess === sess && sess.key.idHex !== res.keyIdHex;
        if (!rotated) await this.rotateOnHeartbeat();
        return true;
      }
      default:
        // Not "replay": the message was delivered before. Not the others: nothing to do.
        return false;
    }
  }

  /**
   * After "server-key-unknown" or "stale": a directory carried by the
   * problem is verified like any other; otherwise (or after "stale", whose
   * s_time is not trusted) the signed directory is refetched — after
   * "server-key-unknown" at most every 10 s.
   */
  private async recoverFrom(p: Problem, res: Result): Promise<void> {
    if (p.code === "stale") return this.fetchDirectory();
    if (this.srv && this.srv.keyIdHex !== res.serverKeyIdHex) return; // already moved on (a concurrent request)
    if (p.directory !== undefined) {
      try {
        const sd = parseSignedDirectory(p.directory as never);
        if (await this.acceptDirectory(sd, res.at, false)) {
          this.emit("server-key-changed", `server key changed to ${this.srv?.keyIdHex} (from a refusal's directory)`);
          return;
        }
      } catch {
        // forged or broken: fall through to a refetch
      }
    }
    if (now() - this.lastDir < DIRECTORY_REFETCH_MS) {
      throw new DynkeyError("recovery-failed", "dynkey: key directory fetched less than 10 s ago");
    }
    const before = this.srv?.keyIdHex;
    await this.fetchDirectory();
    if (this.srv?.keyIdHex === before) throw new DynkeyError("recovery-failed", "dynkey: the refetched directory names the same server key");
  }

  /** Rotates the client key now, on a heartbeat without the recovery loop. */
  private async rotateOnHeartbeat(): Promise<void> {
    if (!this.nextKey) {
      const k = await this.generateEntry();
      if (!this.nextKey) this.nextKey = k;
    }
    this.forceRot = true;
    const before = this.counters.clientRotations;
    const { res } = await this.send(this.heartbeatRequest(), true);
    await this.heartbeatResult(res);
    if (this.counters.clientRotations === before) {
      throw new DynkeyError("recovery-failed", "dynkey: the key rotation did not happen (another one in flight?)");
    }
  }

  /** Adopts what a heartbeat response says. */
  private async heartbeatResult(res: Result): Promise<void> {
    if (res.problem) throw DynkeyError.fromProblem(res.problem);
    let sTime: number, rotate: boolean, sd: SignedDirectory;
    try {
      const o = asObject(parseStrictJSONBytes(res.body), "heartbeat response");
      sTime = getSafeUint(o, "s_time")!;
      rotate = getBool(o, "rotate_client_key");
      sd = parseSignedDirectory(o.directory);
    } catch (e) {
      if (e instanceof DynkeyError) throw e;
      throw new DynkeyError("response-not-authentic", `dynkey: heartbeat body: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const changed = await this.acceptDirectory(sd, res.at, false);
    this.setServerTime(sTime, res.at);
    if (rotate) this.forceRot = true;
    this.emit("heartbeat", `s_time=${sTime} rotate_hint=${rotate}`);
    if (changed) this.emit("server-key-changed", `server key changed to ${this.srv?.keyIdHex} (announced in a heartbeat)`);
  }
}

/**
 * Whether a request may carry a client key rotation: heartbeats and the
 * idempotent methods GET, PUT, DELETE, OPTIONS (a refused rotation must be
 * safe to repeat).
 */
function mayCarryRotation(req: OutgoingRequest): boolean {
  switch (req.method) {
    case "GET":
    case "PUT":
    case "DELETE":
    case "OPTIONS":
      return true;
  }
  return req.method === "POST" && req.url.pathname.endsWith(PATH_HEARTBEAT);
}
