// Re-derives every value of testdata/protocol-vectors.json byte for byte,
// for both suites, from the inputs alone: key pairs from their seeds, the
// identity from its seed, the directory payload, signature and document, the
// login, request and rotation messages (header, inner, proof, AAD, HPKE
// ciphertext with the ephemeral key derived from ephemeral_seed, exporter
// secret, envelope) and their responses (derived key and nonce, plaintext,
// AAD, envelope), and the problem bodies.

import assert from "node:assert/strict";
import { test } from "node:test";
import { b64uDecode, b64uEncode, concat, fromHex, toHex, u16, utf8 } from "../../src/bytes.js";
import { parseSignedDirectory, primaryKey, signatureInput, verifyDirectory } from "../../src/directory.js";
import { parseStrictJSONBytes, asObject } from "../../src/json.js";
import { getSuite, type Suite, type X25519Impl } from "../../src/suite.js";
import { headerTransport, inHeader } from "../../src/transport.js";
import * as wire from "../../src/wire.js";
import { ed25519FromSeed, vectors, type Any } from "./helpers.js";

const h = fromHex;

const impls: Array<[string, X25519Impl]> = [
  ["ecies-x25519", "webcrypto"],
  ["ecies-x25519", "js"],
  ["ecies-p256", "auto"],
];

for (const [suiteName, impl] of impls) {
  const v = vectors.vectors.find((x: Any) => x.suite === suiteName);
  const label = `${suiteName} (${impl})`;

  test(`vectors ${label}: hpke parameters`, () => {
    assert.equal(v.hpke.mode, 2);
    assert.equal(v.hpke.kdf_id, 1);
    assert.equal(v.hpke.kem_id, suiteName === "ecies-x25519" ? 0x20 : 0x10);
    assert.equal(v.hpke.aead_id, suiteName === "ecies-x25519" ? 3 : 1);
    assert.equal(v.hpke.exporter_context, "dynkey/v1 message secret");
    assert.equal(v.hpke.secret_length, 32);
  });

  test(`vectors ${label}: key pairs and key ids`, async () => {
    const suite = await getSuite(suiteName, impl);
    for (const name of ["server", "old_server", "client", "new_client"]) {
      const k = v.keys[name];
      const pair = await suite.deriveKeyPair(h(k.seed));
      assert.equal(toHex(await suite.serializePublicKey(pair.publicKey)), k.public_key, name);
      assert.equal(toHex(await suite.serializePrivateKey(pair.privateKey)), k.private_key, name);
      assert.equal(toHex(await wire.keyId(suiteName, h(k.public_key))), k.key_id, name);
    }
  });

  test(`vectors ${label}: identity and signed directory`, async () => {
    const id = await ed25519FromSeed(h(v.identity.seed));
    assert.equal(toHex(id.publicKey), v.identity.public_key);
    const d = v.directory;
    // The payload: this implementation emits the same bytes for the same fields.
    const keys = d.keys.map((k: Any) => {
      const o: Any = { id: k.id, public: b64uEncode(h(k.public)), status: k.status };
      if (k.expires) o.expires = k.expires;
      return o;
    });
    const payload = utf8(JSON.stringify({ version: d.version, epoch: d.epoch, suite: suiteName, s_time: d.s_time, keys }));
    assert.equal(toHex(payload), d.payload);
    assert.equal(toHex(signatureInput(payload)), d.signature_input);
    const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, id.privateKey, signatureInput(payload) as Uint8Array<ArrayBuffer>));
    assert.equal(toHex(sig), d.signature);
    const doc = utf8(JSON.stringify({ identity: b64uEncode(id.publicKey), payload: b64uEncode(payload), signature: b64uEncode(sig) }));
    assert.equal(toHex(doc), d.document);
    // And the served document verifies to exactly these fields.
    const sd = parseSignedDirectory(parseStrictJSONBytes(h(d.document)));
    const got = await verifyDirectory(sd, h(v.identity.public_key));
    assert.equal(got.epoch, BigInt(d.epoch));
    assert.equal(got.sTime, d.s_time);
    assert.equal(got.suite, suiteName);
    assert.deepEqual(
      got.keys.map((k) => [k.id, toHex(k.public), k.status, k.expires]),
      d.keys.map((k: Any) => [k.id, k.public, k.status, k.expires]),
    );
    assert.equal(primaryKey(got).id, v.keys.server.key_id);
  });

  for (const msg of ["login", "request", "rotation", "header_get", "head"]) {
    test(`vectors ${label}: ${msg} message and response`, async () => {
      const suite: Suite = await getSuite(suiteName, impl);
      const m = v[msg];
      const pairs: Record<string, CryptoKeyPair> = {};
      for (const name of ["server", "old_server", "client", "new_client"]) pairs[name] = await suite.deriveKeyPair(h(v.keys[name].seed));
      const hd = m.header;
      const header = wire.encodeRequestHeader({
        type: hd.type,
        suite: hd.suite,
        serverKeyId: h(hd.server_key_id),
        clientKey: h(hd.client_key),
        token: h(hd.token),
        messageId: h(hd.message_id),
        sTime: hd.s_time,
        elapsed: hd.elapsed,
      });
      assert.equal(toHex(header), m.header_bytes, "header_bytes");
      assert.equal(m.info, hd.type === wire.TYPE_LOGIN ? wire.INFO_LOGIN : wire.INFO_REQUEST);

      // The rotation proof, if any.
      if (m.proof !== null) {
        const pr = m.proof;
        assert.equal(pr.info, wire.INFO_PROOF);
        const aad = wire.proofAAD(h(hd.message_id), h(hd.client_key), h(m.inner.new_client_key));
        assert.equal(toHex(aad), pr.aad, "proof aad");
        const sealed = await suite.seal(pairs[pr.recipient].publicKey, pairs[pr.sender], utf8(pr.info), aad, new Uint8Array(), h(pr.ephemeral_seed));
        assert.equal(toHex(sealed.ciphertext), pr.ciphertext, "proof ciphertext");
        assert.equal(m.inner.proof, pr.ciphertext);
        // The server side opens it with the new key as sender.
        const opened = await suite.open(pairs[pr.recipient], pairs[pr.sender].publicKey, utf8(pr.info), aad, h(pr.ciphertext));
        assert.equal(opened.plaintext.length, 0);
      }

      const inner = wire.encodeInner({
        newClientKey: h(m.inner.new_client_key),
        timeOffset: m.inner.time_offset ?? undefined,
        proof: h(m.inner.proof),
        contentType: m.inner.content_type,
        body: h(m.inner.body),
      });
      assert.equal(toHex(inner), m.inner_bytes, "inner_bytes");
      if (msg === "login") {
        // The login body is this JSON; JSON.stringify emits the same bytes.
        assert.equal(toHex(utf8(JSON.stringify({ username: "alice", password: "correct horse battery staple" }))), m.inner.body);
      }
      const aad = wire.requestAAD(m.method, m.path, m.query, header);
      assert.equal(toHex(aad), m.aad, "aad");
      const sealed = await suite.seal(pairs[m.recipient].publicKey, pairs[m.sender], utf8(m.info), aad, inner, h(m.ephemeral_seed));
      assert.equal(toHex(sealed.ciphertext), m.ciphertext, "ciphertext");
      assert.equal(toHex(sealed.secret), m.secret, "secret");
      assert.equal(toHex(concat(header, sealed.ciphertext)), m.envelope, "envelope");
      if (m.transport === "header") {
        // Header transport (§4): the same envelope, base64url without padding.
        assert.equal(b64uEncode(h(m.envelope)), m.envelope_header, "envelope_header");
        assert.equal(toHex(b64uDecode(m.envelope_header)), m.envelope);
        const hdrs = new Headers();
        assert.equal(headerTransport.attach(h(m.envelope), hdrs), null, "no body");
        assert.equal(hdrs.get(wire.ENVELOPE_HEADER), m.envelope_header);
        assert.ok(inHeader("auto", m.method, 0, h(m.envelope).length), "auto mode uses the header for " + m.method);
      } else {
        assert.equal(m.transport ?? "body", "body");
      }
      // The recipient's view agrees (plaintext and exporter).
      const opened = await suite.open(pairs[m.recipient], pairs[m.sender].publicKey, utf8(m.info), aad, sealed.ciphertext);
      assert.equal(toHex(opened.plaintext), m.inner_bytes);
      assert.equal(toHex(opened.secret), m.secret);

      // The response.
      const r = m.response;
      const rk = await wire.responseKey(h(m.secret), h(r.nonce));
      assert.equal(toHex(rk.key), r.key, "response key");
      assert.equal(toHex(rk.aeadNonce), r.aead_nonce, "response aead nonce");
      assert.equal(toHex(concat(u16(utf8(r.content_type).length), utf8(r.content_type), h(r.body))), r.plaintext, "response plaintext");
      const env = await wire.sealResponse(h(m.secret), h(hd.message_id), r.status, r.content_type, h(r.body), h(r.nonce));
      assert.equal(toHex(env), r.envelope, "response envelope");
      assert.equal(toHex(wire.responseAAD(env.subarray(0, 38), r.status, h(hd.message_id))), r.aad, "response aad");
      const got = await wire.openResponse(h(m.secret), h(hd.message_id), r.status, h(r.envelope));
      assert.equal(got.contentType, r.content_type);
      assert.equal(toHex(got.body), r.body);
      if (msg === "head") {
        // The HEAD response travels in Dynkey-Response and seals an empty body.
        assert.equal(r.body, "");
        assert.equal(b64uEncode(h(r.envelope)), r.header, "Dynkey-Response");
        const viaHeader = await wire.openResponse(h(m.secret), h(hd.message_id), r.status, b64uDecode(r.header));
        assert.equal(viaHeader.contentType, r.content_type);
      }

      if (msg === "login") {
        const o = asObject(parseStrictJSONBytes(h(r.body)), "login response");
        assert.equal(o.client_key_id, v.keys.client.key_id);
        assert.equal(toHex(b64uDecode(o.token as string)), v.request.header.token);
        const d = await verifyDirectory(parseSignedDirectory(o.directory), h(v.identity.public_key));
        assert.equal(d.epoch, BigInt(v.directory.epoch));
      }
    });
  }

  test(`vectors ${label}: problems`, async () => {
    for (const p of v.problems) {
      const got = wire.parseProblem(h(p.json));
      assert.ok(got, p.code);
      assert.equal(got.code, p.code);
      assert.equal(got.type, p.type);
      assert.equal(got.title, p.title);
      assert.equal(got.status, p.status);
      assert.equal(got.detail, p.detail);
      assert.equal(got.s_time ?? 0, p.s_time);
      assert.equal(got.directory !== undefined, p.with_directory);
      if (p.with_directory) {
        const d = await verifyDirectory(parseSignedDirectory(got.directory as never), h(v.identity.public_key));
        assert.equal(d.suite, suiteName);
      }
      // This implementation emits the same bytes for the same fields.
      const o: Any = { type: p.type, title: p.title, status: p.status, detail: p.detail, code: p.code };
      if (p.s_time) o.s_time = p.s_time;
      if (p.with_directory) {
        const dd = JSON.parse(new TextDecoder().decode(h(v.directory.document)));
        o.directory = dd;
      }
      assert.equal(toHex(utf8(JSON.stringify(o))), p.json, p.code);
    }
  });
}

test("vectors: header transport choice", () => {
  for (const [name, mode, method, bodyLen, envLen, want] of [
    ["auto GET", "auto", "GET", 0, 300, true],
    ["auto DELETE", "auto", "DELETE", 0, 300, true],
    ["auto OPTIONS", "auto", "OPTIONS", 0, 300, true],
    ["auto HEAD", "auto", "HEAD", 0, 300, true],
    ["auto GET with a body", "auto", "GET", 5, 300, false],
    ["auto POST", "auto", "POST", 0, 300, false],
    ["body GET", "body", "GET", 0, 300, false],
    ["body HEAD", "body", "HEAD", 0, 300, true],
    ["header POST", "header", "POST", 10, 300, true],
    ["too large (6145 bytes = 8194 encoded)", "header", "GET", 0, 6145, false],
    ["largest (6144 bytes = 8192 encoded)", "header", "GET", 0, 6144, true],
  ] as const) {
    assert.equal(inHeader(mode, method, bodyLen, envLen), want, name);
  }
});

test("vectors cover both suites", () => {
  assert.deepEqual(vectors.vectors.map((x: Any) => x.suite).sort(), ["ecies-p256", "ecies-x25519"]);
});
