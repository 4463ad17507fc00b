// The header transport (docs/PROTOCOL.md §4) against the in-process
// FakeServer: which requests carry their envelope in Dynkey-Envelope, HEAD
// with its sealed response in Dynkey-Response, and the attacks on those
// headers failing.

import assert from "node:assert/strict";
import { test } from "node:test";
import { fromHex } from "../../src/bytes.js";
import { createClient, type ClientOptions, type DynkeyClient } from "../../src/client.js";
import { DynkeyError } from "../../src/errors.js";
import * as wire from "../../src/wire.js";
import { FakeServer } from "./fakeserver.js";
import { vectors, type Any } from "./helpers.js";

const v = (vectors.vectors as Any[]).find((x) => x.suite === "ecies-x25519");

async function setup(opts: Partial<ClientOptions> = {}): Promise<{ srv: FakeServer; client: DynkeyClient }> {
  const srv = await FakeServer.create("ecies-x25519", fromHex(v.identity.seed), [fromHex(v.keys.server.seed)]);
  const client = createClient({
    baseURL: "https://api.test",
    username: "alice",
    password: "pw",
    identityKey: v.identity.public_key,
    fetch: srv.fetch,
    heartbeatIntervalMs: 0,
    ...opts,
  });
  return { srv, client };
}

async function rejects(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DynkeyError, `not a DynkeyError: ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("transport: where each request carries its envelope", async () => {
  for (const [name, mode, method, body, via, ct] of [
    ["auto GET", "auto", "GET", undefined, "header", null],
    ["auto DELETE", "auto", "DELETE", undefined, "header", null],
    ["auto OPTIONS", "auto", "OPTIONS", undefined, "header", null],
    ["auto POST", "auto", "POST", "x", "body", wire.MEDIA_TYPE],
    ["auto DELETE with a body", "auto", "DELETE", "x", "body", wire.MEDIA_TYPE],
    ["body DELETE", "body", "DELETE", undefined, "body", wire.MEDIA_TYPE],
    ["header PUT", "header", "PUT", "x", "header", null],
  ] as const) {
    const { srv, client } = await setup({ envelope: mode });
    const r = await client.fetch("/api/items/7?fields=name", { method, body });
    assert.equal(r.status, 200, name);
    assert.equal(await r.text(), body ?? `${method} /api/items/7`, name);
    assert.deepEqual(srv.transports.at(-1), { method, via, contentType: ct }, name);
    client.close();
  }
});

test("transport: simpleBodies sends body envelopes as text/plain (no CORS preflight)", async () => {
  const { srv, client } = await setup({ simpleBodies: true });
  const r = await client.fetch("/api/echo", { method: "POST", body: "hi", headers: { "content-type": "application/json" } });
  assert.equal(await r.text(), "hi");
  assert.equal(r.headers.get("content-type"), "application/json", "the sealed content type is the caller's");
  assert.deepEqual(srv.transports.at(-1), { method: "POST", via: "body", contentType: "text/plain" });
  client.close();
});

test("transport: HEAD through the header, its response in Dynkey-Response", async () => {
  const { srv, client } = await setup();
  srv.handler = () => ({ status: 200, contentType: "text/markdown", body: new Uint8Array([1, 2, 3]) });
  const r = await client.fetch("/api/doc", { method: "HEAD" });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("content-type"), "text/markdown");
  assert.equal(r.headers.get(wire.RESPONSE_HEADER), null, "the envelope header is not passed on");
  assert.equal(r.body, null);
  assert.deepEqual(srv.transports.at(-1), { method: "HEAD", via: "header", contentType: null });

  // HEAD with envelope "body" still uses the header: it cannot have a body.
  const { srv: srv2, client: c2 } = await setup({ envelope: "body" });
  await c2.fetch("/api/doc", { method: "HEAD" });
  assert.equal(srv2.transports.at(-1)?.via, "header");
  c2.close();

  // The attacks: no Dynkey-Response, a tampered one, a non-canonical one.
  for (const [name, edit] of [
    ["missing", (h: Headers) => h.delete(wire.RESPONSE_HEADER)],
    ["tampered", (h: Headers) => {
      const s = h.get(wire.RESPONSE_HEADER)!;
      h.set(wire.RESPONSE_HEADER, s.slice(0, -2) + (s.at(-2) === "A" ? "B" : "A") + s.at(-1));
    }],
    ["padded", (h: Headers) => h.set(wire.RESPONSE_HEADER, h.get(wire.RESPONSE_HEADER)! + "=")],
    ["status moved to 201", (h: Headers) => h.set("x-status", "201")],
  ] as const) {
    srv.responseHook = (resp) => {
      const h = new Headers(resp.headers);
      edit(h);
      const status = h.get("x-status") ? Number(h.get("x-status")) : resp.status;
      return new Response(null, { status, headers: h });
    };
    await rejects(client.fetch("/api/doc", { method: "HEAD" }), "response-not-authentic").catch((e) => {
      throw new Error(`${name}: ${e}`);
    });
  }
  client.close();
});

test("transport: a HEAD refusal is read from Dynkey-Problem, and only if its status matches", async () => {
  const { srv, client } = await setup();
  await client.login();
  srv.responseHook = () => new Response(null, { status: 415, headers: { "content-type": wire.PROBLEM_MEDIA_TYPE, [wire.PROBLEM_HEADER]: "not-encrypted" } });
  await rejects(client.fetch("/api/doc", { method: "HEAD" }), "not-encrypted");
  srv.responseHook = () => new Response(null, { status: 200, headers: { "content-type": wire.PROBLEM_MEDIA_TYPE, [wire.PROBLEM_HEADER]: "not-encrypted" } });
  await rejects(client.fetch("/api/doc", { method: "HEAD" }), "response-not-authentic");
  srv.responseHook = () => new Response(null, { status: 400, headers: { "content-type": wire.PROBLEM_MEDIA_TYPE, [wire.PROBLEM_HEADER]: "not-encrypted" } });
  await rejects(client.fetch("/api/doc", { method: "HEAD" }), "response-not-authentic");
  srv.responseHook = () => new Response(null, { status: 400, headers: { "content-type": wire.PROBLEM_MEDIA_TYPE, [wire.PROBLEM_HEADER]: "no-such-code" } });
  await rejects(client.fetch("/api/doc", { method: "HEAD" }), "response-not-authentic");
  client.close();
});

test("transport: an envelope too large for the header goes in the body, except for HEAD", async () => {
  const { srv, client } = await setup({ envelope: "header" });
  const big = "x".repeat(7000);
  const r = await client.fetch("/api/echo", { method: "PUT", body: big });
  assert.equal((await r.text()).length, 7000);
  assert.equal(srv.transports.at(-1)?.via, "body");
  client.close();
});

test("transport: an unknown envelope mode is a config error", async () => {
  await rejects(setup({ envelope: "sideways" as never }), "config");
});
