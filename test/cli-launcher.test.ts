/**
 * The launcher's Node flags (bin/node-flags.mjs): `serve` started without them is started
 * again with them in a child process, which really runs with them; the parent passes stops
 * on and exits as the child does, and the child does not outlive a parent killed outright.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingNodeFlags, SERVE_NODE_FLAGS } from "../bin/node-flags.mjs";
import { type Chaos, startChaos } from "./support/chaos.js";
import { freePort } from "./support/child.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BIN = path.join(ROOT, "bin/countersign.mjs");

function exitOf(
  proc: ChildProcess,
  ms: number,
): Promise<{ code: number | null; signal: string | null } | null> {
  if (proc.exitCode !== null || proc.signalCode !== null)
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(null), ms);
    proc.once("exit", (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(f: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (f()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return f();
}

describe("which flags serve lacks", () => {
  it("serve lacks the serve flags until it has them; other commands need none", () => {
    expect(SERVE_NODE_FLAGS).toEqual(["--heap-growing-percent=30"]);
    expect(missingNodeFlags(["serve"], [], {})).toEqual([...SERVE_NODE_FLAGS]);
    expect(missingNodeFlags(["serve"], [...SERVE_NODE_FLAGS, "--inspect"], {})).toEqual([]);
    expect(missingNodeFlags(["serve"], ["--max-semi-space-size=4"], {})).toEqual([...SERVE_NODE_FLAGS]);
    expect(missingNodeFlags(["policy", "check"], [], {})).toEqual([]);
    expect(missingNodeFlags(["--help"], [], {})).toEqual([]);
    expect(missingNodeFlags([], [], {})).toEqual([]);
  });

  it("COUNTERSIGN_NODE_FLAGS replaces the list; empty means none", () => {
    expect(missingNodeFlags(["serve"], [], { COUNTERSIGN_NODE_FLAGS: "" })).toEqual([]);
    expect(
      missingNodeFlags(["serve"], ["--max-semi-space-size=4"], {
        COUNTERSIGN_NODE_FLAGS: " --max-semi-space-size=4  --optimize-for-size ",
      }),
    ).toEqual(["--optimize-for-size"]);
  });
});

describe("the relaunch, in real processes", () => {
  let dir: string;
  let script: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-launcher-"));
    script = path.join(dir, "serve.mjs");
    // The launcher's logic around a stand-in for serve that reports what it runs with.
    fs.writeFileSync(
      script,
      `import { missingNodeFlags, relaunch } from ${JSON.stringify(path.join(ROOT, "bin/node-flags.mjs"))};
const flags = missingNodeFlags(process.argv.slice(2), process.execArgv, process.env);
if (flags.length > 0) relaunch(flags, process.argv[1], process.argv.slice(2));
else {
  console.log(JSON.stringify({ execArgv: process.execArgv, pid: process.pid, launcher: process.env.COUNTERSIGN_LAUNCHER_PID }));
  if (process.argv[3] === "exit") process.exit(7);
  process.on("SIGTERM", () => { console.log("stopped on SIGTERM"); process.exit(0); });
  setInterval(() => {}, 1000);
}
`,
    );
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function start(args: string[]): { proc: ChildProcess; out: () => string } {
    const proc = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    proc.stdout?.on("data", (d) => {
      out += d;
    });
    return { proc, out: () => out };
  }

  it("the child runs with the flags, and its exit code is the launcher's", async () => {
    const { proc, out } = start(["serve", "exit"]);
    expect(await exitOf(proc, 15_000)).toEqual({ code: 7, signal: null });
    const seen = JSON.parse(out().trim()) as { execArgv: string[]; pid: number; launcher: string };
    expect(seen.execArgv).toEqual([...SERVE_NODE_FLAGS]);
    expect(seen.launcher).toBe(String(proc.pid));
    expect(seen.pid).not.toBe(proc.pid);
  });

  it("SIGTERM to the launcher stops the child, and the launcher exits as it did", async () => {
    const { proc, out } = start(["serve"]);
    expect(await until(() => out().includes("execArgv"), 15_000)).toBe(true);
    proc.kill("SIGTERM");
    expect(await exitOf(proc, 15_000)).toEqual({ code: 0, signal: null });
    expect(out()).toContain("stopped on SIGTERM");
  });

  it("under npm, a launcher whose shell died (npm's SIGTERM not passed on) stops the child", async () => {
    // As npm exec runs it: through `sh -c`, which does not pass npm's SIGTERM on.
    const sh = spawn("sh", ["-c", `"${process.execPath}" "${script}" serve; true`], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, npm_lifecycle_event: "npx" },
    });
    let out = "";
    sh.stdout?.on("data", (d) => {
      out += d;
    });
    expect(await until(() => out.includes("execArgv"), 15_000)).toBe(true);
    const { pid } = JSON.parse(out.trim()) as { pid: number };
    sh.kill("SIGKILL");
    expect(await until(() => out.includes("stopped on SIGTERM"), 10_000)).toBe(true);
    expect(await until(() => !alive(pid), 5_000)).toBe(true);
  });
});

describe("countersign serve through the launcher", () => {
  let c: Chaos;
  beforeAll(async () => {
    c = await startChaos({ env: { LOG_LEVEL: "info" } });
  });
  afterAll(async () => {
    for (const p of started)
      if (p.exitCode === null && p.signalCode === null) process.kill(-p.pid!, "SIGKILL");
    await c?.stop();
  }, 60_000);

  const started: ChildProcess[] = [];
  async function serve(): Promise<{ proc: ChildProcess; out: () => string; url: string }> {
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, ...c.env, PORT: String(port), HOST: "127.0.0.1" };
    delete env.COUNTERSIGN_NODE_FLAGS;
    // `node bin/countersign.mjs serve`, as the systemd unit in docs/deploy.md runs it: no flags.
    // A process group of its own, so a test can signal the group as a terminal or systemd does.
    const proc = spawn(process.execPath, [BIN, "serve"], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    started.push(proc);
    let out = "";
    proc.stdout?.on("data", (d) => {
      out += d;
    });
    proc.stderr?.on("data", (d) => {
      out += d;
    });
    const url = `http://127.0.0.1:${port}`;
    const ready = await until(() => out.includes("countersign: serving"), 30_000);
    if (!ready) proc.kill("SIGKILL");
    expect(ready, out).toBe(true);
    return { proc, out: () => out, url };
  }

  function serverPid(out: string): number {
    return Number(/"pid":(\d+)[^\n]*countersign: serving/.exec(out)?.[1]);
  }

  it("the server runs with the flags, and a SIGTERM to the process group is one graceful stop", async () => {
    const { proc, out } = await serve();
    const line = out()
      .split("\n")
      .find((l) => l.includes("countersign: serving"))!;
    expect(JSON.parse(line).node_flags).toEqual(expect.arrayContaining([...SERVE_NODE_FLAGS]));
    expect(serverPid(out())).not.toBe(proc.pid);
    // The server gets it twice, from the sender and passed on by the launcher: one stop, not "now".
    process.kill(-proc.pid!, "SIGTERM");
    expect(await exitOf(proc, 20_000)).toEqual({ code: 0, signal: null });
    expect(out()).toContain("countersign: stopped");
  }, 60_000);

  it("the server does not outlive a launcher killed outright", async () => {
    const { proc, out } = await serve();
    const pid = serverPid(out());
    expect(alive(pid)).toBe(true);
    proc.kill("SIGKILL");
    await exitOf(proc, 5_000);
    expect(await until(() => !alive(pid), 5_000)).toBe(true);
  }, 60_000);
});
