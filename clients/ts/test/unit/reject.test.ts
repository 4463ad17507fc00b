// Rejection cases: what an attacker on the path (or a broken server) sends
// must never be accepted. Each test shows the attack failing at the level a
// user sees (the client's fetch, login, heartbeat), against the in-process
// FakeServer, plus the strict decoders on their own.

import assert from "node:assert/strict";
import { test } from "node:test";
import { b64uDecode, b64uEncode, fromHex, toHex, utf8 } from "../../src/bytes.js";
import { createClient, type DynkeyClient } from "../../src/client.js";
import { parseSignedDirectory, verifyDirectory } from "../../src/directory.js";
import { DynkeyError } from "../../src/errors.js";
import { parseStrictJSON } from "../../src/json.js";
import * as wire from "../../src/wire.js";
import { FakeServer } from "./fakeserver.js";
import { ed25519FromSeed, vectors, type Any } from "./helpers.js";

const BASE = "https://api.test";

for (const v of vectors.vectors as Any[]) {
  const suiteName = v.suite as "ecies-x25519" | "ecies-p256";

  async function setup(): Promise<{ srv: FakeServer; client: DynkeyClient }> {
    const srv = await FakeServer.create(suiteName, fromHex(v.identity.seed), [fromHex(v.keys.server.seed)]);
    const client = createClient({
      baseURL: BASE,
      username: "alice",
      password: "pw",
      identityKey: v.identity.public_key,
      suite: suiteName,
      fetch: srv.fetch,
      heartbeatIntervalMs: 0,
    });
    return { srv, client };
  }

  const rejects = async (p: Promise<unknown>, code: string) => {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof DynkeyError, `not a DynkeyError: ${e}`);
      assert.equal(e.code, code, e.message);
      return true;
    });
  };

  test(`${suiteName}: a round trip through the fake server works (baseline for the attacks below)`, async () => {
    const { srv, client } = await setup();
    const r = await client.fetch("/api/echo?x=1", { method: "POST", body: "hello", headers: { "content-type": "text/plain" } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "text/plain");
    assert.equal(await r.text(), "hello");
    srv.handler = () => ({ status: 204, contentType: "", body: new Uint8Array() });
    const r2 = await client.fetch("/api/empty", { method: "PUT" });
    assert.equal(r2.status, 204);
    assert.equal(await r2.text(), "");
    client.close();
  });

  test(`${suiteName}: tampered response is refused and never passed on`, async () => {
    const { srv, client } = await setup();
    await client.login();
    for (const [name, tamper] of [
      ["ciphertext bit", (b: Uint8Array) => ((b[b.length - 20] ^= 1), b)],
      ["nonce bit", (b: Uint8Array) => ((b[10] ^= 1), b)],
      ["truncated", (b: Uint8Array) => b.subarray(0, b.length - 1)],
    ] as const) {
      srv.responseHook = async (resp) => new Response(tamper(new Uint8Array(await resp.arrayBuffer())) as Uint8Array<ArrayBuffer>, { status: resp.status, headers: resp.headers });
      await rejects(client.fetch("/api/echo", { method: "POST", body: "secret" }), "response-not-authentic");
      void name;
    }
    // Status changed on the wire (200 → 201): authenticated by the AAD.
    srv.responseHook = async (resp) => new Response(await resp.arrayBuffer(), { status: 201, headers: resp.headers });
    await rejects(client.fetch("/api/echo", { method: "POST", body: "x" }), "response-not-authentic");
    // A 200 turned into "204" with Dynkey-Status.
    srv.responseHook = async (resp) => {
      const h = new Headers(resp.headers);
      h.set(wire.STATUS_HEADER, "204");
      return new Response(await resp.arrayBuffer(), { status: 200, headers: h });
    };
    await rejects(client.fetch("/api/echo", { method: "POST", body: "x" }), "response-not-authentic");
    // Dynkey-Status naming a status that can carry a body.
    srv.responseHook = async (resp) => {
      const h = new Headers(resp.headers);
      h.set(wire.STATUS_HEADER, "200");
      return new Response(await resp.arrayBuffer(), { status: 200, headers: h });
    };
    await rejects(client.fetch("/api/echo", { method: "POST", body: "x" }), "response-not-authentic");
    // A plaintext answer instead of an envelope.
    srv.responseHook = () => new Response("plain", { status: 200, headers: { "content-type": "text/plain" } });
    await rejects(client.fetch("/api/echo", { method: "POST", body: "x" }), "response-not-authentic");
    // A response moved from another request (same session): bound to its message id.
    let saved: ArrayBuffer | undefined;
    srv.responseHook = async (resp) => {
      const b = await resp.arrayBuffer();
      if (!saved) {
        saved = b;
        return new Response(b, { status: resp.status, headers: resp.headers });
      }
      return new Response(saved, { status: resp.status, headers: resp.headers });
    };
    await client.fetch("/api/echo", { method: "POST", body: "first" });
    await rejects(client.fetch("/api/echo", { method: "POST", body: "second" }), "response-not-authentic");
    client.close();
  });

  test(`${suiteName}: a directory signed by another identity is refused`, async () => {
    const { srv, client } = await setup();
    const other = await ed25519FromSeed(new Uint8Array(32).fill(7));
    srv.directoryHook = async () => srv.signedDocument(await srv.directoryText(), other);
    await rejects(client.login(), "directory-rejected");
    // The same key, but the document claims the trusted identity: the signature fails.
    srv.directoryHook = async () => {
      const doc = JSON.parse(new TextDecoder().decode(await srv.signedDocument(await srv.directoryText(), other)));
      doc.identity = b64uEncode(fromHex(v.identity.public_key));
      return utf8(JSON.stringify(doc));
    };
    await rejects(client.login(), "directory-rejected");
    // After a good login, a heartbeat announcing a key under another identity is refused
    // and the server key does not change.
    srv.directoryHook = undefined;
    await client.login();
    const before = client.state().serverKeyId;
    await srv.rotate();
    srv.directoryHook = async (doc, where) => (where === "heartbeat" ? srv.signedDocument(await srv.directoryText(), other) : doc);
    await rejects(client.heartbeat(), "directory-rejected");
    assert.equal(client.state().serverKeyId, before);
    client.close();
  });

  test(`${suiteName}: a directory with a lower epoch is ignored (no rollback)`, async () => {
    const { srv, client } = await setup();
    await client.login();
    await srv.rotate(); // epoch 2, new primary
    await client.heartbeat();
    const k2 = srv.primary.id;
    assert.equal(client.state().serverKeyId, k2);
    assert.equal(client.state().epoch, "2");
    // An old, genuinely signed directory (epoch 1, the first key) replayed in a heartbeat.
    const old = await srv.directoryText(1, [{ pub: srv.keys[0].pub, status: "primary" }]);
    srv.directoryHook = async (doc, where) => (where === "heartbeat" ? srv.signedDocument(old) : doc);
    await client.heartbeat();
    assert.equal(client.state().serverKeyId, k2, "moved back to the old key");
    assert.equal(client.state().epoch, "2");
    client.close();
  });

  test(`${suiteName}: duplicate JSON members in a signed payload are refused`, async () => {
    const { srv, client } = await setup();
    const good = await srv.directoryText();
    for (const bad of [
      good.replace('"epoch":', '"epoch":99,"epoch":'),
      good.replace('"epoch":', '"Epoch":99,"epoch":'),
      good.replace('"status":"primary"', '"status":"primary","status":"decrypt-only"'),
    ]) {
      assert.notEqual(bad, good);
      srv.directoryHook = async () => srv.signedDocument(bad);
      await rejects(client.login(), "directory-rejected");
    }
    // Duplicates in the served document itself.
    srv.directoryHook = async (doc) => {
      const t = new TextDecoder().decode(doc);
      return utf8(t.replace('{"identity":', '{"identity":"AAAA","identity":'));
    };
    await rejects(client.login(), "directory-rejected");
    client.close();
  });

  test(`${suiteName}: non-canonical base64url is refused`, async () => {
    const { srv, client } = await setup();
    const variants: Array<[string, (doc: Any) => void]> = [
      ["padding on the signature", (d) => (d.signature += "==")],
      ["trailing bits in the identity", (d) => (d.identity = d.identity.slice(0, -1) + String.fromCharCode(d.identity.charCodeAt(d.identity.length - 1) + 1))],
      // The vectors' identity keys contain '-' or '_', so this changes the text, not the bytes.
      ["standard alphabet", (d) => (d.identity = d.identity.replace(/-/g, "+").replace(/_/g, "/"))],
      ["line break", (d) => (d.payload = d.payload.slice(0, 10) + "\n" + d.payload.slice(10))],
    ];
    for (const [name, mutate] of variants) {
      srv.directoryHook = async (doc) => {
        const d = JSON.parse(new TextDecoder().decode(doc));
        const before = JSON.stringify(d);
        mutate(d);
        assert.notEqual(JSON.stringify(d), before, name);
        return utf8(JSON.stringify(d));
      };
      await rejects(client.login(), "directory-rejected");
    }
    // A non-canonical public key inside a correctly signed payload.
    const good = JSON.parse(await srv.directoryText());
    const pub = good.keys[0].public as string;
    const last = pub.charCodeAt(pub.length - 1);
    good.keys[0].public = pub.slice(0, -1) + String.fromCharCode(last + 1);
    srv.directoryHook = async () => srv.signedDocument(JSON.stringify(good));
    await rejects(client.login(), "directory-rejected");
    client.close();
  });

  test(`${suiteName}: directory key id, status and primary rules`, async () => {
    const srv = await FakeServer.create(suiteName, fromHex(v.identity.seed), [fromHex(v.keys.old_server.seed), fromHex(v.keys.server.seed)]);
    const trusted = fromHex(v.identity.public_key);
    const check = async (payload: string) => verifyDirectory(parseSignedDirectory(parseStrictJSON(new TextDecoder().decode(await srv.signedDocument(payload)))), trusted);
    const good = JSON.parse(await srv.directoryText(3, [{ pub: srv.keys[1].pub, status: "primary" }, { pub: srv.keys[0].pub, status: "decrypt-only", expires: 5 }]));
    await check(JSON.stringify(good));
    const cases: Array<[string, (d: Any) => void]> = [
      ["wrong key id", (d) => (d.keys[0].id = d.keys[1].id)],
      ["upper-case key id", (d) => (d.keys[0].id = d.keys[0].id.toUpperCase())],
      ["two primaries", (d) => ((d.keys[1].status = "primary"), delete d.keys[1].expires)],
      ["no primary", (d) => ((d.keys[0].status = "decrypt-only"), (d.keys[0].expires = 9))],
      ["unknown status", (d) => (d.keys[1].status = "retired")],
      ["decrypt-only without expiry", (d) => delete d.keys[1].expires],
      ["key listed twice", (d) => (d.keys[1] = { ...d.keys[0], status: "decrypt-only", expires: 5 })],
      ["version 2", (d) => (d.version = 2)],
      ["bad suite name", (d) => (d.suite = "ECIES")],
      ["epoch negative", (d) => (d.epoch = -1)],
    ];
    for (const [name, mutate] of cases) {
      const d = structuredClone(good);
      mutate(d);
      await assert.rejects(check(JSON.stringify(d)), (e: unknown) => e instanceof DynkeyError && e.code === "directory-rejected", name);
    }
  });

  test(`${suiteName}: concurrent calls share one login, and one failed login fails them all`, async () => {
    const { srv, client } = await setup();
    srv.loginHook = () => srv.problem("login-failed", 401);
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => client.fetch("/api/echo", { method: "POST", body: "x" })));
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assert.ok((r as PromiseRejectedResult).reason instanceof DynkeyError && (r as PromiseRejectedResult).reason.code === "login-failed");
    }
    assert.equal(srv.logins, 1, "one password attempt for eight concurrent calls");
    srv.loginHook = undefined;
    const ok = await Promise.all(Array.from({ length: 8 }, (_, i) => client.fetch("/api/echo", { method: "POST", body: String(i) }).then((r) => r.text())));
    assert.deepEqual(ok, ["0", "1", "2", "3", "4", "5", "6", "7"]);
    assert.equal(srv.logins, 2);
    assert.equal(client.stats().logins, 1);
    client.close();
  });

  test(`${suiteName}: a re-login refused during recovery is reported, not the expired token`, async () => {
    const { srv, client } = await setup();
    await client.login();
    srv.tokens.clear(); // every token now refused (token-invalid)
    srv.loginHook = () => srv.problem("login-failed", 401);
    await rejects(client.fetch("/api/echo", { method: "POST", body: "x" }), "login-failed");
    srv.loginHook = undefined;
    const r = await client.fetch("/api/echo", { method: "POST", body: "y" });
    assert.equal(await r.text(), "y");
    client.close();
  });

  test(`${suiteName}: a rotation whose response was lost: the new key is tried first, kept if it landed, dropped if not`, async () => {
    const srv = await FakeServer.create(suiteName, fromHex(v.identity.seed), [fromHex(v.keys.server.seed)]);
    let lose: "response" | "request" | undefined;
    const net: typeof fetch = async (input, init) => {
      if (lose === "request") {
        lose = undefined;
        throw new TypeError("network down");
      }
      const r = await srv.fetch(input, init);
      if (lose === "response") {
        lose = undefined;
        throw new TypeError("connection reset");
      }
      return r;
    };
    const client = createClient({ baseURL: BASE, username: "alice", password: "pw", identityKey: v.identity.public_key, suite: suiteName, fetch: net, heartbeatIntervalMs: 0 });
    await client.login();
    await client.fetch("/api/x", { method: "POST", body: "warm" }); // the next key is ready
    const k0 = client.state().clientKeyId;
    // It landed, the answer was lost.
    client.rotateNow();
    lose = "response";
    await rejects(client.fetch("/api/x", { method: "PUT", body: "a" }), "network");
    assert.equal(client.state().clientKeyId, k0);
    assert.equal(await (await client.fetch("/api/x", { method: "POST", body: "b" })).text(), "b");
    const k1 = client.state().clientKeyId;
    assert.notEqual(k1, k0, "the pending key is confirmed");
    assert.equal(client.stats().clientRotations, 1);
    // It never reached the server.
    await client.fetch("/api/x", { method: "POST", body: "warm" });
    client.rotateNow();
    lose = "request";
    await rejects(client.fetch("/api/x", { method: "PUT", body: "c" }), "network");
    assert.equal(await (await client.fetch("/api/x", { method: "POST", body: "d" })).text(), "d");
    assert.equal(client.state().clientKeyId, k1, "back to the key the server knows");
    assert.equal(client.stats().clientRotations, 1);
    assert.equal(client.stats().recoveries, 1);
    // And it can still rotate afterwards.
    await client.fetch("/api/x", { method: "POST", body: "warm" });
    client.rotateNow();
    await client.fetch("/api/x", { method: "PUT", body: "e" });
    assert.notEqual(client.state().clientKeyId, k1);
    assert.equal(client.stats().clientRotations, 2);
    client.close();
  });

  test(`${suiteName}: a server offering another suite is refused (no downgrade)`, async () => {
    const other = suiteName === "ecies-x25519" ? "ecies-p256" : "ecies-x25519";
    const srv = await FakeServer.create(other, fromHex(v.identity.seed), [crypto.getRandomValues(new Uint8Array(32))]);
    const client = createClient({ baseURL: BASE, username: "a", password: "b", identityKey: v.identity.public_key, suite: suiteName, fetch: srv.fetch, heartbeatIntervalMs: 0 });
    await rejects(client.login(), "suite-mismatch");
    client.close();
  });
}

test("first contact over http without a pinned identity needs the explicit opt-in", () => {
  assert.throws(() => createClient({ baseURL: "http://api.test", username: "a", password: "b" }), (e: unknown) => e instanceof DynkeyError && e.code === "insecure-first-contact");
  createClient({ baseURL: "http://api.test", username: "a", password: "b", insecureTrustOnFirstUseWithoutTLS: true, heartbeatIntervalMs: 0 }).close();
  createClient({ baseURL: "https://api.test", username: "a", password: "b", heartbeatIntervalMs: 0 }).close();
  createClient({ baseURL: "http://api.test", username: "a", password: "b", identityKey: "00".repeat(32), heartbeatIntervalMs: 0 }).close();
});

test("strict base64url", () => {
  for (let n = 0; n < 40; n++) {
    const b = crypto.getRandomValues(new Uint8Array(n));
    assert.equal(toHex(b64uDecode(b64uEncode(b))), toHex(b));
  }
  for (const bad of ["QQ==", "QR", "QUF=", "Q", "QUJD\n", "QU JD", "QUJD+", "QUJD/", "Zg=", "Zh", "Zm9=", "é"]) {
    assert.throws(() => b64uDecode(bad), SyntaxError, bad);
  }
  assert.equal(new TextDecoder().decode(b64uDecode("Zg")), "f");
  assert.equal(new TextDecoder().decode(b64uDecode("Zm8")), "fo");
});

test("strict JSON", () => {
  for (const bad of ['{"a":1,"a":2}', '{"a":1,"A":2}', '{"a":1} x', "{'a':1}", '{"a":01}', '{"a":"\u0001"}', '[1,]', '{"a":1,}', "", "nul"]) {
    assert.throws(() => parseStrictJSON(bad), SyntaxError, JSON.stringify(bad));
  }
  assert.deepEqual(parseStrictJSON('{"a":[1,"x",true,null,{"b":-2.5e3}]}'), Object.assign(Object.create(null), { a: [1, "x", true, null, Object.assign(Object.create(null), { b: -2500 })] }));
  assert.equal(parseStrictJSON("18446744073709551615"), 18446744073709551615n);
  assert.equal(parseStrictJSON("9007199254740991"), 9007199254740991);
});

test("problems: only dynkey problems are recognized", () => {
  const p = (o: unknown) => wire.parseProblem(utf8(JSON.stringify(o)));
  assert.ok(p({ type: "urn:dynkey:problem:stale", code: "stale", status: 400, title: "t" }));
  assert.equal(p({ type: "about:blank", code: "stale", status: 400 }), undefined);
  assert.equal(p({ type: "urn:dynkey:problem:", code: "", status: 400 }), undefined);
  assert.equal(wire.parseProblem(utf8('{"type":"urn:dynkey:problem:stale","code":"stale","code":"replay"}')), undefined);
});
