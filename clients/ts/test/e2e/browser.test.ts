// The same flow in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): the page is served from one loopback origin, the Go API
// from another (CORS), and the client runs inside the page from the built
// ES modules (dist/ and @hpke/* through an import map, no bundler).
//
// Without a browser the test is skipped, except under CI=true, where it fails.

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { after, before, describe, test } from "node:test";
import { repoRoot } from "../unit/helpers.js";
import { startServer, type TestServer } from "./server.js";

const CHROMIUM = process.env.DYNKEY_CHROMIUM ?? "/usr/bin/chromium";
const pkgRoot = join(repoRoot, "clients", "ts");

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>dynkey browser test</title>
<script type="importmap">
{"imports": {
  "@dynkey/client": "/dist/index.js",
  "@hpke/core": "/node_modules/@hpke/core/esm/mod.js",
  "@hpke/common": "/node_modules/@hpke/common/esm/mod.js",
  "@hpke/dhkem-x25519": "/node_modules/@hpke/dhkem-x25519/esm/mod.js",
  "@hpke/chacha20poly1305": "/node_modules/@hpke/chacha20poly1305/esm/mod.js"
}}
</script>
<script type="module">
  import * as dynkey from "@dynkey/client";
  window.dynkey = dynkey;
  window.events = [];
  window.ready = true;
</script>
</head><body>dynkey</body></html>`;

/** A module Web Worker that runs the client on its own. */
const WORKER = `
import { createClient } from "/dist/index.js";
onmessage = async (ev) => {
  const { url, identity, suite } = ev.data;
  try {
    const c = createClient({ baseURL: url, username: "alice", password: "alice-pw", identityKey: identity, suite, heartbeatIntervalMs: 0, policy: { maxMessages: 3 } });
    const out = [];
    for (let i = 0; i < 10; i++) {
      const r = await c.fetch("/api/echo", { method: i % 2 ? "POST" : "PUT", body: "w" + i });
      out.push(await r.text());
    }
    await c.heartbeat();
    const st = c.stats();
    c.close();
    postMessage({ ok: true, out, st, inWorker: typeof window === "undefined" });
  } catch (e) {
    postMessage({ ok: false, err: String(e) });
  }
};
`;

/** Serves the page, dist/ and node_modules/@hpke/ from the package directory. */
function startPageServer(): Promise<{ origin: string; close: () => Promise<void> }> {
  const types: Record<string, string> = { ".js": "text/javascript", ".html": "text/html", ".map": "application/json" };
  const srv = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/worker.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(WORKER);
      return;
    }
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(PAGE);
      return;
    }
    const rel = normalize(decodeURIComponent(path)).replace(/^\/+/, "");
    if (!(rel.startsWith("dist/") || rel.startsWith("node_modules/@hpke/")) || rel.includes("..")) {
      res.writeHead(404).end();
      return;
    }
    const file = join(pkgRoot, rel);
    if (!existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    let body: string | Buffer = readFileSync(file);
    if (extname(file) === ".js") {
      // Module workers have no import maps: resolve the bare specifiers here.
      body = body.toString("utf8").replace(/(from\s*|import\s*)"(@hpke\/[a-z0-9-]+)"/g, (_m, pre: string, spec: string) => `${pre}"/node_modules/${spec}/esm/mod.js"`);
    }
    res.end(body);
  });
  return new Promise((resolve) =>
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as AddressInfo;
      resolve({ origin: `http://127.0.0.1:${port}`, close: () => new Promise((r) => srv.close(() => r())) });
    }),
  );
}

const haveBrowser = existsSync(CHROMIUM);
if (!haveBrowser && process.env.CI === "true") {
  test("headless Chromium is installed", () => assert.fail(`${CHROMIUM} not found (CI=true): .ci/run installs Debian's chromium`));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

describe("e2e browser (headless Chromium)", { skip: !haveBrowser && "no chromium", timeout: 180_000 }, () => {
  let page: Any;
  let browser: Any;
  let pageSrv: { origin: string; close: () => Promise<void> };
  const servers: TestServer[] = [];

  before(async () => {
    const { chromium } = await import("playwright-core");
    pageSrv = await startPageServer();
    // A fresh profile per run.
    browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "dynkey-chromium-")), {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.on("console", (m: Any) => {
      if (m.type() === "error") console.log("# page:", m.text());
    });
    await page.goto(pageSrv.origin + "/");
    await page.waitForFunction(() => (window as Any).ready === true, null, { timeout: 30_000 });
  });

  after(async () => {
    await browser?.close();
    await pageSrv?.close();
    for (const s of servers) await s.stop();
  });

  test("a session kept in IndexedDB survives a page reload without a new login", async () => {
    const srv = await startServer(["-suite", "ecies-x25519", "-cors-origin", pageSrv.origin]);
    servers.push(srv);
    const make = `(url, identity) => window.dynkey.createClient({ baseURL: url, username: "alice", password: "alice-pw", identityKey: identity,
      heartbeatIntervalMs: 0, sessionStore: window.dynkey.indexedDBSessionStore("reload-test"), onEvent: (e) => window.events.push(e) })`;
    const first = await page.evaluate(
      async ([url, identity, make]: string[]) => {
        const w = window as Any;
        await w.dynkey.indexedDBSessionStore("reload-test").clear();
        w.client = (0, eval)(make)(url, identity);
        const r = await w.client.fetch("/api/echo", { method: "POST", body: "before reload" });
        const text = await r.text();
        const want = w.client.state().clientKeyId;
        // Wait until the background save landed.
        for (let i = 0; i < 100; i++) {
          const rec = await w.dynkey.indexedDBSessionStore("reload-test").load();
          if (rec && rec.keyPair) return { text, state: w.client.state(), stats: w.client.stats(), extractable: rec.keyPair.privateKey.extractable, hasPassword: JSON.stringify(Object.keys(rec)).includes("password") };
          await new Promise((r) => setTimeout(r, 20));
        }
        throw new Error("session not saved: " + want);
      },
      [srv.url, srv.identity, make],
    );
    assert.equal(first.text, "before reload");
    assert.equal(first.stats.logins, 1);
    assert.equal(first.extractable, false, "stored private key stays non-extractable");
    assert.equal(first.hasPassword, false);

    await page.reload();
    await page.waitForFunction(() => (window as Any).ready === true, null, { timeout: 30_000 });
    const before = (await srv.calls())["/api/echo"] ?? 0;
    const second = await page.evaluate(
      async ([url, identity, make]: string[]) => {
        const w = window as Any;
        w.client = (0, eval)(make)(url, identity);
        const r = await w.client.fetch("/api/echo", { method: "POST", body: "after reload" });
        const out = { text: await r.text(), state: w.client.state(), stats: w.client.stats(), kinds: w.events.map((e: Any) => e.kind) };
        w.client.close({ forgetStored: true });
        for (let i = 0; i < 100 && (await w.dynkey.indexedDBSessionStore("reload-test").load()); i++) await new Promise((r) => setTimeout(r, 20));
        return { ...out, cleared: (await w.dynkey.indexedDBSessionStore("reload-test").load()) === undefined };
      },
      [srv.url, srv.identity, make],
    );
    assert.equal(second.text, "after reload");
    assert.equal(second.stats.logins, 0, "no new login after the reload");
    assert.ok(second.kinds.includes("session-restored"));
    assert.equal(second.state.clientKeyId, first.state.clientKeyId);
    assert.equal(((await srv.calls())["/api/echo"] ?? 0) - before, 1);
    assert.equal(second.cleared, true);
  });

  // CORS (issue 8): the page on one loopback origin, the API on another,
  // built three ways — net/http with CORS by hand, chi with rs/cors, Echo
  // with its own CORS middleware — each in front of dynkey.
  for (const framework of ["nethttp", "chi", "echo"] as const) {
    test(`CORS with ${framework}: preflights pass, GET/HEAD/DELETE through the header, refusals readable, rotations of both sides`, async () => {
      const srv = await startServer(["-framework", framework, "-cors-origin", pageSrv.origin]);
      servers.push(srv);
      assert.notEqual(new URL(srv.url).origin, pageSrv.origin);
      const preflights = async (): Promise<Record<string, number>> => {
        const r = await fetch(srv.admin + "/admin/stats");
        return ((await r.json()) as { preflights: Record<string, number> }).preflights;
      };
      const out = await page.evaluate(async ([url, identity]: string[]) => {
        const w = window as Any;
        const c = w.dynkey.createClient({ baseURL: url, username: "alice", password: "alice-pw", identityKey: identity, heartbeatIntervalMs: 0, policy: { maxMessages: 4 } });
        w.corsClient = c;
        await c.login();
        const post = await c.fetch("/api/echo?status=201", { method: "POST", body: '{"a":1}', headers: { "Content-Type": "application/json" } });
        const get = await c.fetch("/api/hello?x=1");
        const head = await c.fetch("/api/hello", { method: "HEAD" });
        const del = await c.fetch("/api/empty", { method: "DELETE" });
        for (let i = 0; i < 12; i++) await (await c.fetch("/api/hello?i=" + i)).text();
        // A plain request, as a page without dynkey would send it: the refusal is readable.
        const plain = await fetch(url + "/api/hello");
        const plainHead = await fetch(url + "/api/hello", { method: "HEAD" });
        return {
          post: [post.status, post.headers.get("content-type"), await post.text()],
          get: [get.status, get.headers.get("content-type"), await get.text()],
          head: [head.status, head.headers.get("content-type"), head.body === null],
          del: [del.status, await del.text()],
          rotations: c.stats().clientRotations,
          plain: [plain.status, plain.headers.get("content-type"), plain.headers.get("Dynkey-Problem"), (await plain.json()).code],
          plainHead: [plainHead.status, plainHead.headers.get("Dynkey-Problem")],
        };
      }, [srv.url, srv.identity]);
      assert.deepEqual(out.post, [201, "application/json", '{"a":1}']);
      assert.deepEqual(out.get, [200, "text/plain; charset=utf-8", "hello alice"]);
      assert.deepEqual(out.head, [200, "text/plain; charset=utf-8", true]);
      assert.deepEqual(out.del, [204, ""]);
      assert.ok(out.rotations >= 2, `client rotations ${out.rotations}`);
      assert.deepEqual(out.plain, [415, "application/problem+json", "not-encrypted", "not-encrypted"]);
      assert.deepEqual(out.plainHead, [415, "not-encrypted"]);

      // Server rotations, followed through heartbeats from the page.
      for (let i = 0; i < 2; i++) {
        const before = await page.evaluate(() => (window as Any).corsClient.state().serverKeyId);
        await srv.rotate();
        const after = await page.evaluate(async () => {
          const c = (window as Any).corsClient;
          await c.heartbeat();
          return (await (await c.fetch("/api/hello")).text()) + " " + c.state().serverKeyId;
        });
        assert.match(after, /^hello alice [0-9a-f]{16}$/);
        assert.notEqual(after.split(" ")[2], before, "the page followed the server key rotation");
      }

      // Preflights: a header envelope always needs one (Dynkey-Envelope is not
      // CORS-safelisted), so does an application/dynkey body; a text/plain
      // body (simpleBodies) needs none. Fresh URLs defeat the preflight cache.
      const p0 = await preflights();
      const uniq = String(Date.now());
      await page.evaluate(async ([url, identity, uniq]: string[]) => {
        const w = window as Any;
        const simple = w.dynkey.createClient({ baseURL: url, username: "alice", password: "alice-pw", identityKey: identity, heartbeatIntervalMs: 0, simpleBodies: true });
        const r = await simple.fetch("/api/echo?simple=" + uniq, { method: "POST", body: "s" });
        if ((await r.text()) !== "s") throw new Error("simple body");
        simple.close();
      }, [srv.url, srv.identity, uniq]);
      const p1 = await preflights();
      assert.equal(p1["/api/echo"] ?? 0, p0["/api/echo"] ?? 0, "a text/plain body envelope needs no preflight");
      await page.evaluate(async (uniq: string) => {
        const c = (window as Any).corsClient;
        await (await c.fetch("/api/echo?dynkey=" + uniq, { method: "POST", body: "d" })).text();
        await (await c.fetch("/api/hello?header=" + uniq)).text();
        c.close();
      }, uniq);
      const p2 = await preflights();
      assert.equal((p2["/api/echo"] ?? 0) - (p1["/api/echo"] ?? 0), 1, "an application/dynkey body is preflighted");
      assert.equal((p2["/api/hello"] ?? 0) - (p1["/api/hello"] ?? 0), 1, "a Dynkey-Envelope header is preflighted");
      console.log(`# CORS ${framework}: preflights ${JSON.stringify(p2)}`);
    });
  }

  for (const suite of ["ecies-x25519", "ecies-p256"] as const) {
    test(`${suite}: login, 100 requests, rotations of both sides, 204, recoveries, page and API on different origins, and in a Web Worker`, async () => {
      const srv = await startServer(["-suite", suite, "-cors-origin", pageSrv.origin]);
      servers.push(srv);
      assert.notEqual(new URL(srv.url).origin, pageSrv.origin);

      const info = await page.evaluate(async ([url, identity, suite]: string[]) => {
        const w = window as Any;
        const s = await w.dynkey.getSuite(suite);
        const k = await s.generateKeyPair();
        w.events = [];
        w.client = w.dynkey.createClient({
          baseURL: url,
          username: "alice",
          password: "alice-pw",
          identityKey: identity,
          suite,
          heartbeatIntervalMs: 100,
          policy: { maxMessages: 15 },
          onEvent: (e: Any) => w.events.push(e),
        });
        await w.client.login();
        return { nonExtractable: s.nonExtractable, extractable: k.privateKey.extractable, isCryptoKey: k.privateKey instanceof CryptoKey, ua: navigator.userAgent };
      }, [srv.url, srv.identity, suite]);
      assert.equal(info.nonExtractable, true, "WebCrypto keys in the browser");
      assert.equal(info.extractable, false);
      assert.equal(info.isCryptoKey, true);
      console.log(`# ${info.ua}`);

      const callsBefore = await srv.calls();
      const batch = (b: number) =>
        page.evaluate(async (b: number) => {
          const w = window as Any;
          return Promise.all(
            Array.from({ length: 10 }, async (_, i) => {
              const n = b * 10 + i;
              if (n % 10 === 9) {
                const r = await w.client.fetch("/api/empty", { method: "PUT" });
                return { n, status: r.status, body: await r.text(), want: "", wantStatus: 204, ct: r.headers.get("content-type"), wantCt: null };
              }
              const body = JSON.stringify({ n });
              const status = n % 7 === 0 ? 201 : 200;
              const r = await w.client.fetch(`/api/echo?status=${status}`, { method: n % 2 ? "POST" : "PUT", body, headers: { "Content-Type": "application/json" } });
              return { n, status: r.status, body: await r.text(), want: body, wantStatus: status, ct: r.headers.get("content-type"), wantCt: "application/json" };
            }),
          );
        }, b);
      const serverKeys = new Set<string>();
      const state = () => page.evaluate(() => (window as Any).client.state());
      serverKeys.add((await state()).serverKeyId);
      for (let b = 0; b < 10; b++) {
        if (b === 3 || b === 6) {
          const before = (await state()).serverKeyId;
          await srv.rotate();
          await page.waitForFunction((k: string) => (window as Any).client.state().serverKeyId !== k, before, { timeout: 10_000 });
          serverKeys.add((await state()).serverKeyId);
        }
        for (const r of await batch(b)) {
          assert.equal(r.status, r.wantStatus, `request ${r.n}`);
          assert.equal(r.body, r.want, `request ${r.n}`);
          assert.equal(r.ct, r.wantCt, `request ${r.n}`);
        }
      }
      const callsAfter = await srv.calls();
      assert.equal((callsAfter["/api/echo"] ?? 0) - (callsBefore["/api/echo"] ?? 0), 90);
      assert.equal((callsAfter["/api/empty"] ?? 0) - (callsBefore["/api/empty"] ?? 0), 10);
      const st = await page.evaluate(() => (window as Any).client.stats());
      const events: Any[] = await page.evaluate(() => (window as Any).events);
      assert.ok(st.clientRotations >= 2, `client rotations ${st.clientRotations}`);
      assert.ok(events.filter((e) => e.kind === "server-key-changed" && e.detail.includes("heartbeat")).length >= 2);
      assert.equal(serverKeys.size, 3);
      console.log(`# browser ${suite}: ${JSON.stringify(st)}`);

      // GET travels with its envelope in the Dynkey-Envelope header (fetch refuses a body on it).
      const get = await page.evaluate(async () => {
        const r = await (window as Any).client.fetch("/api/hello");
        return `${r.status}:${await r.text()}`;
      });
      assert.equal(get, "200:hello alice");

      // Recoveries, with heartbeats off so that only the request sees each change.
      await page.evaluate(async ([url, identity, suite]: string[]) => {
        const w = window as Any;
        w.client.close();
        w.events = [];
        w.client = w.dynkey.createClient({ baseURL: url, username: "alice", password: "alice-pw", identityKey: identity, suite, heartbeatIntervalMs: 0, onEvent: (e: Any) => w.events.push(e) });
        await w.client.login();
      }, [srv.url, srv.identity, suite]);
      const once = async (what: string) => {
        const before = (await srv.calls())["/api/echo"] ?? 0;
        const got = await page.evaluate(async (what: string) => {
          const r = await (window as Any).client.fetch("/api/echo", { method: "POST", body: what });
          return r.text();
        }, what);
        assert.equal(got, what);
        assert.equal(((await srv.calls())["/api/echo"] ?? 0) - before, 1, `${what}: handler ran once`);
      };
      await srv.advance(3 * 60_000);
      await once("stale");
      await srv.rotate();
      await srv.rotate();
      await srv.advance(90_000);
      await once("server-key-unknown");
      await srv.advance(7 * 60_000);
      await once("client-key-expired");
      await srv.advance(20 * 60_000);
      await once("token-expired");
      const recovered: string[] = (await page.evaluate(() => (window as Any).events))
        .filter((e: Any) => e.kind === "recovered")
        .map((e: Any) => e.detail.replace(/^recovered from (\S+);.*$/, "$1"));
      assert.deepEqual(recovered, ["stale", "server-key-unknown", "stale", "client-key-expired", "stale", "token-expired"]);
      await page.evaluate(() => (window as Any).client.close());

      // The same client in a module Web Worker.
      const w = await page.evaluate(
        ([url, identity, suite]: string[]) =>
          new Promise((resolve) => {
            const worker = new Worker("/worker.js", { type: "module" });
            worker.onmessage = (ev) => {
              resolve(ev.data);
              worker.terminate();
            };
            worker.onerror = (ev) => resolve({ ok: false, err: ev.message });
            worker.postMessage({ url, identity, suite });
          }),
        [srv.url, srv.identity, suite],
      );
      assert.equal(w.ok, true, w.err);
      assert.equal(w.inWorker, true);
      assert.deepEqual(w.out, Array.from({ length: 10 }, (_, i) => "w" + i));
      assert.ok(w.st.clientRotations >= 2, `worker rotations ${w.st.clientRotations}`);
    });
  }
});
