// Starts the Go test server (clients/ts/testserver) for the end-to-end tests.
// The binary is built once per test process with `go build` (or taken from
// $DYNKEY_TESTSERVER), started with a pipe on stdin (closing it stops the
// server), and its first stdout line gives the ports and the identity key.

import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { repoRoot } from "../unit/helpers.js";

export interface TestServer {
  url: string;
  admin: string;
  identity: string;
  suite: string;
  proc: ChildProcess;
  stop(): Promise<void>;
  rotate(): Promise<void>;
  advance(ms: number): Promise<void>;
  calls(): Promise<Record<string, number>>;
}

let binary: string | undefined;

function build(): string {
  if (binary) return binary;
  if (process.env.DYNKEY_TESTSERVER && existsSync(process.env.DYNKEY_TESTSERVER)) {
    binary = process.env.DYNKEY_TESTSERVER;
    return binary;
  }
  const out = join(mkdtempSync(join(tmpdir(), "dynkey-ts-")), "testserver");
  execFileSync("go", ["build", "-o", out, "./clients/ts/testserver"], { cwd: repoRoot, stdio: ["ignore", "inherit", "inherit"], timeout: 300_000 });
  binary = out;
  return out;
}

export async function startServer(args: string[] = []): Promise<TestServer> {
  const proc = spawn(build(), args, { stdio: ["pipe", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    const timer = setTimeout(() => reject(new Error("testserver did not start in 30 s")), 30_000);
    rl.once("line", (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    proc.once("exit", (code) => reject(new Error(`testserver exited with ${code}`)));
  });
  const info = JSON.parse(line) as { url: string; admin: string; identity: string; suite: string };
  const post = async (path: string) => {
    const r = await fetch(info.admin + path, { method: "POST" });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  };
  return {
    ...info,
    proc,
    async stop() {
      if (proc.exitCode !== null) return;
      const done = new Promise<void>((r) => proc.once("exit", () => r()));
      proc.stdin!.end();
      const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
      await done;
      clearTimeout(t);
    },
    rotate: () => post("/admin/rotate"),
    advance: (ms: number) => post(`/admin/advance?ms=${ms}`),
    async calls() {
      const r = await fetch(info.admin + "/admin/stats");
      return ((await r.json()) as { calls: Record<string, number> }).calls;
    },
  };
}

/** Polls cond every 20 ms until it holds or timeoutMs passes. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
