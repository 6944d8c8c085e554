/**
 * `countersign serve` stops on SIGTERM as a process manager sends it: the port is freed,
 * the log says it stopped, and with Redis gone it still stops within seconds, saying what
 * it left (the database keeps it for the next start).
 */
import { spawn } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Chaos, startChaos } from "../support/chaos.js";
import { freePort } from "../support/child.js";
import { sleep } from "../support/harness.js";
import { type PrivateRedis, startPrivateRedis } from "../support/private-redis.js";

let c: Chaos;
beforeAll(async () => {
  c = await startChaos({ env: { LOG_LEVEL: "info" } });
});
afterAll(async () => {
  await c?.stop();
}, 60_000);

/** Resolves with the exit code, or null if the process is still running after `ms`. */
function exitWithin(proc: import("node:child_process").ChildProcess, ms: number): Promise<number | null> {
  if (proc.exitCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(null), ms);
    proc.once("exit", (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

describe("stopping serve", () => {
  it("stops on SIGTERM to the bin: exit 0, the port freed, start and stop logged with the address", async () => {
    const child = await c.child();
    const port = Number(new URL(child.url).port);
    expect(child.output()).toContain(`"url":"${child.url}"`);
    child.proc.kill("SIGTERM");
    const code = await exitWithin(child.proc, 15_000);
    if (code === null) child.proc.kill("SIGKILL");
    expect(code).toBe(0);
    expect(await portFree(port)).toBe(true);
    expect(child.output()).toMatch(/"signal":"SIGTERM".*countersign: stopping/);
    expect(child.output()).toContain("countersign: stopped");
  }, 40_000);

  it("stops within seconds on SIGTERM while Redis is down, and says what it abandoned", async () => {
    const redis: PrivateRedis = await startPrivateRedis();
    try {
      const child = await c.child({ REDIS_URL: redis.url });
      await redis.kill();
      // Let the clients notice the loss and start reconnecting, as in a real outage.
      await sleep(1_000);
      const t0 = Date.now();
      child.proc.kill("SIGTERM");
      const code = await exitWithin(child.proc, 20_000);
      const took = Date.now() - t0;
      if (code === null) child.proc.kill("SIGKILL");
      expect(code, child.output()).not.toBeNull();
      // A few seconds: the stop's own bound, with room for a loaded machine.
      expect(took).toBeLessThan(12_000);
      expect(child.output()).toMatch(/abandoned/);
      expect(child.output()).toContain("countersign: stopped");
    } finally {
      await redis.stop();
    }
  }, 60_000);

  it("stops when npm exec (npx), which starts it through sh, gets SIGTERM: the port is freed", async () => {
    const port = await freePort();
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const npm = spawn("npm", ["exec", "--", "countersign", "serve"], {
      cwd: root,
      env: { ...process.env, ...c.env, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    npm.stdout?.on("data", (d) => {
      out += d;
    });
    npm.stderr?.on("data", (d) => {
      out += d;
    });
    try {
      const deadline = Date.now() + 40_000;
      for (;;) {
        const up = await fetch(`http://127.0.0.1:${port}/readyz`).then(
          (r) => r.status === 200,
          () => false,
        );
        if (up) break;
        if (Date.now() > deadline || npm.exitCode !== null) throw new Error(`serve did not start:\n${out}`);
        await sleep(200);
      }
      npm.kill("SIGTERM");
      // npm exits at once; the server behind sh must follow within seconds.
      let free = false;
      for (let i = 0; i < 60 && !free; i++) {
        await sleep(250);
        free = await portFree(port);
      }
      expect(free, out).toBe(true);
    } finally {
      if (npm.exitCode === null) npm.kill("SIGKILL");
      // Never leave an orphaned server behind when this fails: its pid is in its log lines.
      const pid = Number(/"pid":(\d+)/.exec(out)?.[1]);
      if (pid) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
  }, 60_000);
});
