// examples/browser in headless Chromium: the page logs in, calls the Gin API
// on another origin and shows the keys; the test waits for at least two
// rotations of each side with no failed request and saves a screenshot in
// its temp dir. Skipped without the browser, failed under CI=true (the
// browser test file reports the missing browser).

import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { repoRoot } from "../unit/helpers.js";

const CHROMIUM = process.env.DYNKEY_CHROMIUM ?? "/usr/bin/chromium";
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

test("examples/browser: ≥2 rotations of each side, live in headless Chromium, screenshot", { skip: !existsSync(CHROMIUM) && "no chromium", timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "dynkey-example-"));
  const bin = join(dir, "browser");
  execFileSync("go", ["build", "-o", bin, "./examples/browser"], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"], timeout: 600_000 });
  const proc = spawn(bin, ["-stdin", "-js", join(repoRoot, "clients", "ts")], { stdio: ["pipe", "pipe", "inherit"] });
  const { chromium } = await import("playwright-core");
  let ctx: Any;
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: proc.stdout! }).once("line", resolve);
      proc.once("exit", (c) => reject(new Error(`example exited with ${c}`)));
    });
    const info = JSON.parse(line) as { page: string; api: string };
    assert.notEqual(new URL(info.page).origin, new URL(info.api).origin);
    ctx = await chromium.launchPersistentContext(join(dir, "profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 1100, height: 800 },
    });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    await page.goto(info.page);
    await page.waitForFunction(
      () => {
        const s = (window as Any).summary;
        return s && s.clientRotations >= 2 && s.serverRotations >= 2 && s.requests >= 10;
      },
      null,
      { timeout: 60_000, polling: 200 },
    );
    const summary = await page.evaluate(() => (window as Any).summary);
    const shot = join(dir, "examples-browser.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`# summary ${JSON.stringify(summary)}; screenshot ${shot}`);
    assert.equal(summary.failed, 0);
    assert.ok(existsSync(shot));
    const shown = await page.evaluate(() => ({ ck: document.getElementById("ck")!.textContent, sk: document.getElementById("sk")!.textContent }));
    assert.match(shown.ck!, /^[0-9a-f]{16}$/);
    assert.match(shown.sk!, /^[0-9a-f]{16}$/);
  } finally {
    await ctx?.close();
    proc.stdin!.end();
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once("exit", r)));
  }
});
