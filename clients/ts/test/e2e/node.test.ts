// End to end in Node against the real Go server (clients/ts/testserver) on
// loopback, for both suites: login, 100 requests (concurrent), client key
// rotations by policy, server key rotations followed through heartbeats,
// 204 and other statuses, GET, and recovery from stale, server-key-unknown,
// client-key-expired and token-expired — each request's handler running
// exactly once.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient, type DynkeyClient, type DynkeyEvent } from "../../src/client.js";
import { DynkeyError } from "../../src/errors.js";
import { nodeHttpFetch } from "./nodefetch.js";
import { startServer, waitFor, type TestServer } from "./server.js";

for (const suite of ["ecies-x25519", "ecies-p256"] as const) {
  describe(`e2e node ${suite}`, { timeout: 120_000 }, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startServer(["-suite", suite]);
    });
    after(async () => {
      await srv?.stop();
    });

    function client(opts: Partial<Parameters<typeof createClient>[0]> = {}): { c: DynkeyClient; events: DynkeyEvent[] } {
      const events: DynkeyEvent[] = [];
      const c = createClient({
        baseURL: srv.url,
        username: "alice",
        password: "alice-pw",
        identityKey: srv.identity,
        suite,
        onEvent: (e) => events.push(e),
        ...opts,
      });
      return { c, events };
    }

    test("login, 100 requests, ≥2 client and ≥2 server rotations, 204, statuses", async () => {
      const { c, events } = client({ heartbeatIntervalMs: 100, policy: { maxMessages: 15 } });
      try {
        await c.login();
        const callsBefore = await srv.calls();
        const firstServerKey = c.state().serverKeyId;
        let sent = { echo: 0, empty: 0 };
        const serverKeys = new Set([firstServerKey]);
        for (let batch = 0; batch < 10; batch++) {
          if (batch === 3 || batch === 6) {
            const before = c.state().serverKeyId;
            await srv.rotate();
            await waitFor("the heartbeat to bring the new server key", () => c.state().serverKeyId !== before);
            serverKeys.add(c.state().serverKeyId);
          }
          await Promise.all(
            Array.from({ length: 10 }, async (_, i) => {
              const n = batch * 10 + i;
              if (n % 10 === 9) {
                const r = await c.fetch("/api/empty", { method: "PUT" });
                assert.equal(r.status, 204);
                assert.equal(await r.text(), "");
                sent.empty++;
                return;
              }
              const method = n % 2 === 0 ? "PUT" : "POST";
              const status = n % 7 === 0 ? 201 : n % 11 === 0 ? 418 : 200;
              const body = JSON.stringify({ n, pad: "x".repeat(n) });
              const r = await c.fetch(`/api/echo?status=${status}&n=${n}`, { method, body, headers: { "Content-Type": "application/json" } });
              assert.equal(r.status, status);
              assert.equal(r.headers.get("content-type"), "application/json");
              assert.equal(await r.text(), body);
              sent.echo++;
            }),
          );
        }
        const st = c.stats();
        const callsAfter = await srv.calls();
        assert.equal(sent.echo + sent.empty, 100);
        // Every handler ran exactly once per request.
        assert.equal((callsAfter["/api/echo"] ?? 0) - (callsBefore["/api/echo"] ?? 0), sent.echo);
        assert.equal((callsAfter["/api/empty"] ?? 0) - (callsBefore["/api/empty"] ?? 0), sent.empty);
        assert.ok(st.clientRotations >= 2, `client rotations: ${st.clientRotations}`);
        const viaHeartbeat = events.filter((e) => e.kind === "server-key-changed" && e.detail.includes("heartbeat")).length;
        assert.ok(viaHeartbeat >= 2, `server key changes through heartbeats: ${viaHeartbeat}`);
        assert.equal(serverKeys.size, 3);
        assert.equal(st.logins, 1);
        assert.equal(events.filter((e) => e.kind === "client-key-rotated").length, st.clientRotations);
        console.log(`# ${suite}: ${JSON.stringify(st)}`);
      } finally {
        c.close();
      }
    });

    test("GET, HEAD, DELETE and OPTIONS through the Dynkey-Envelope header with Node's fetch; GET carries rotations", async () => {
      const { c: g } = client({ heartbeatIntervalMs: 0, policy: { maxMessages: 3 } });
      try {
        for (let i = 0; i < 8; i++) {
          const r = await g.fetch("/api/hello?i=" + i);
          assert.equal(r.status, 200);
          assert.equal(await r.text(), "hello alice");
        }
        assert.ok(g.stats().clientRotations >= 2, "GET carries rotations");
        const h = await g.fetch("/api/hello", { method: "HEAD" });
        assert.equal(h.status, 200);
        assert.equal(h.headers.get("content-type"), "text/plain; charset=utf-8");
        assert.equal(h.body, null);
        const d = await g.fetch("/api/empty", { method: "DELETE" });
        assert.equal(d.status, 204);
        const o = await g.fetch("/api/echo?status=202", { method: "OPTIONS" });
        assert.equal(o.status, 202);
        // A GET with a body cannot be sent by the WHATWG fetch: a typed error, nothing spent.
        await assert.rejects(g.fetch("/api/echo", { method: "GET", body: "x" }), (e: unknown) => e instanceof DynkeyError && e.code === "method-not-supported");
        const r = await g.fetch("/api/echo", { method: "POST", body: "still fine" });
        assert.equal(await r.text(), "still fine");
      } finally {
        g.close();
      }
      // The nodeHttpFetch path (GET bodies allowed) with envelope "body" still works.
      const { c: b } = client({ heartbeatIntervalMs: 0, fetch: nodeHttpFetch, envelope: "body" });
      try {
        const r = await b.fetch("/api/hello");
        assert.equal(await r.text(), "hello alice");
      } finally {
        b.close();
      }
    });

    test("recovers from stale, server-key-unknown, client-key-expired and token-expired; each handler runs once", async () => {
      const { c, events } = client({ heartbeatIntervalMs: 0 });
      const recovered = () => events.filter((e) => e.kind === "recovered").map((e) => e.detail.replace(/^recovered from (\S+);.*$/, "$1"));
      const once = async (what: string, expect: string[]) => {
        const before = (await srv.calls())["/api/echo"] ?? 0;
        const n = events.length;
        const r = await c.fetch("/api/echo", { method: "POST", body: what });
        assert.equal(await r.text(), what);
        assert.equal(((await srv.calls())["/api/echo"] ?? 0) - before, 1, `${what}: the handler ran once`);
        const got = events.slice(n).filter((e) => e.kind === "recovered").map((e) => e.detail.replace(/^recovered from (\S+);.*$/, "$1"));
        assert.deepEqual(got, expect, what);
      };
      try {
        await c.login();
        await once("baseline", []);
        // The server clock jumps 3 min (freshness window 2 min).
        await srv.advance(3 * 60_000);
        await once("stale", ["stale"]);
        // Two server rotations the client does not hear of (no heartbeats),
        // then past the 1 min grace: its server key is destroyed.
        await srv.rotate();
        await srv.rotate();
        await srv.advance(90_000);
        await once("server-key-unknown", ["server-key-unknown"]);
        // The client key passes the server's hard limit (reject(age>=10m)).
        const key = c.state().clientKeyId;
        await srv.advance(7 * 60_000);
        await once("client-key-expired", ["stale", "client-key-expired"]);
        assert.notEqual(c.state().clientKeyId, key);
        // The token (30 min, minted at 0) expires at 31.5 min, before its
        // token key (retired at 3 min) is deleted at 3 + 30 + 1 min (then the
        // refusal would be token-invalid, recovered the same way).
        const logins = c.stats().logins;
        await srv.advance(20 * 60_000);
        await once("token-expired", ["stale", "token-expired"]);
        assert.equal(c.stats().logins, logins + 1);
        assert.deepEqual(recovered(), ["stale", "server-key-unknown", "stale", "client-key-expired", "stale", "token-expired"]);
      } finally {
        c.close();
      }
    });

    test("concurrent requests after a token expiry log in once", async () => {
      const { c } = client({ heartbeatIntervalMs: 0 });
      try {
        await c.login();
        await srv.advance(31 * 60_000);
        const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => c.fetch("/api/echo", { method: "POST", body: String(i) }).then((r) => r.text())));
        assert.deepEqual(rs, Array.from({ length: 20 }, (_, i) => String(i)));
        assert.equal(c.stats().logins, 2);
      } finally {
        c.close();
      }
    });

    test("a refusal forged after the handler ran never runs it twice (every code, POST/PUT/DELETE)", async () => {
      const codes = [
        "bad-format", "not-encrypted", "too-large", "unsupported-suite", "server-key-unknown", "decrypt-failed",
        "token-invalid", "token-expired", "client-key-unknown", "client-key-expired", "stale", "replay",
        "rotation-refused", "login-failed", "login-throttled", "login-busy", "method-not-allowed", "unavailable",
        "outcome-unknown",
      ];
      const status: Record<string, number> = { "not-encrypted": 415, "too-large": 413, "token-invalid": 401, "token-expired": 401,
        "client-key-unknown": 401, "client-key-expired": 401, "login-failed": 401, "rotation-refused": 409, "login-throttled": 429,
        "method-not-allowed": 405, "unavailable": 503, "login-busy": 503, "outcome-unknown": 409 };
      let forge: string | undefined;
      // A man in the middle: lets the request reach the server (the handler
      // runs), then replaces the sealed answer with a forged problem, once.
      const mitm: typeof fetch = async (input, init) => {
        const resp = await fetch(input, init);
        const sealed = resp.headers.get("content-type") === "application/dynkey";
        if (forge && sealed && new URL(String(input)).pathname === "/api/echo") {
          const code = forge;
          forge = undefined;
          const st = status[code] ?? 400;
          return new Response(JSON.stringify({ type: `urn:dynkey:problem:${code}`, title: code, status: st, code }), {
            status: st,
            headers: { "content-type": "application/problem+json" },
          });
        }
        return resp;
      };
      const { c } = client({ heartbeatIntervalMs: 0, fetch: mitm, policy: { maxMessages: 2 } });
      try {
        await c.login();
        for (const method of ["POST", "PUT", "DELETE"]) {
          for (const code of codes) {
            const before = (await srv.calls())["/api/echo"] ?? 0;
            forge = code;
            let outcome: string;
            try {
              const r = await c.fetch("/api/echo", { method, body: `${method} ${code}` });
              outcome = `HTTP ${r.status}`;
              // A retry under the same id may be answered with the response
              // stored for the first copy (PROTOCOL.md §11a): the genuine
              // answer, which the caller did get — never a second run.
              if (r.status === 200 && (await r.text()) === `${method} ${code}`) outcome = "stored answer";
            } catch (e) {
              assert.ok(e instanceof DynkeyError, String(e));
              outcome = e.code;
            }
            const ran = ((await srv.calls())["/api/echo"] ?? 0) - before;
            assert.equal(ran, 1, `${method} ${code}: handler ran ${ran} times (${outcome})`);
            // Refusals the client recovers from by retrying (with the same
            // id) reach the stored first answer, opened with the first
            // envelope's secret.
            if (["token-invalid", "token-expired"].includes(code) || (code === "rotation-refused" && method === "POST")) {
              assert.equal(outcome, "stored answer", `${method} ${code}`);
            }
            // The caller is told the truth: an error, never a response it did not get.
            assert.ok(!outcome.startsWith("HTTP "), `${method} ${code}: ${outcome}`);
          }
        }
      } finally {
        c.close();
      }
    });

    if (suite === "ecies-x25519") {
      test("the pure-JS X25519 fallback (@hpke/dhkem-x25519) interoperates too", async () => {
        const { c } = client({ heartbeatIntervalMs: 0, x25519: "js", policy: { maxMessages: 2 } });
        try {
          for (let i = 0; i < 6; i++) {
            const r = await c.fetch("/api/echo", { method: "PUT", body: `js ${i}` });
            assert.equal(await r.text(), `js ${i}`);
          }
          assert.ok(c.stats().clientRotations >= 2);
        } finally {
          c.close();
        }
      });
    }

    test("wrong password and wrong identity are typed errors", async () => {
      const { c } = client({ heartbeatIntervalMs: 0, password: "nope" });
      await assert.rejects(c.login(), (e: unknown) => e instanceof DynkeyError && e.code === "login-failed" && e.status === 401);
      c.close();
      const { c: w } = client({ heartbeatIntervalMs: 0, identityKey: "11".repeat(32) });
      await assert.rejects(w.fetch("/api/echo", { method: "POST", body: "x" }), (e: unknown) => e instanceof DynkeyError && e.code === "directory-rejected");
      w.close();
    });
  });
}
