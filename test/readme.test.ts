/**
 * The README's "Running it for real" steps, run as written in a fresh folder: every
 * `npx countersign ...` line of that section's shell block, in order, with the local
 * Slack stand-in in place of Slack. `npm install` is the one step not repeated: the
 * commands run this checkout's bin, which is what `npx countersign` runs after it.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SlackApiSim } from "../src/simulator/slack-api.js";
import { freePort } from "./support/child.js";
import { deleteKeys, REDIS_URL, sleep } from "./support/harness.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = path.join(ROOT, "bin/countersign.mjs");

/** The shell lines of the first ```sh block under a README heading, comments removed. */
function readmeSteps(heading: string): string[] {
  const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
  const at = readme.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README.md has no "${heading}"`);
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!block) throw new Error(`no sh block under "${heading}"`);
  return block[1]!
    .split("\n")
    .map((l) => l.replace(/\s+#.*$/, "").trim())
    .filter(Boolean);
}

let dir: string;
let sim: SlackApiSim;
let env: NodeJS.ProcessEnv;
const prefix = `test-${randomUUID()}`;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-readme-"));
  sim = await SlackApiSim.start({ botToken: "xoxb-readme", teamId: "T0EXAMPLE", users: [] });
  // Nothing from the test's own environment may stand in for what the steps must create.
  env = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) =>
        !/^(POLICY_FILE|SIGNING_KEY_FILE|DATABASE_|SLACK_|QUEUE_PREFIX|PORT|HOST|AUDITOR_TOKENS|INTAKE_QUEUE|npm_)/.test(
          k,
        ) && !k.endsWith("_SECRET"),
    ),
  );
});
afterAll(async () => {
  await sim?.close();
  const redis = new Redis(REDIS_URL);
  await deleteKeys(redis, `${prefix}:*`);
  redis.disconnect();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("README: Running it for real", () => {
  it("runs as written in a fresh folder: init, policy check, serve to ready, then stop", async () => {
    const steps = readmeSteps("## Running it for real");
    expect(steps[0]).toBe("npm install");
    const commands = steps.slice(1);
    expect(commands.map((c) => c.split(" ").slice(0, 3).join(" "))).toEqual([
      "npx countersign init",
      "npx countersign policy",
      "npx countersign serve",
    ]);
    const port = await freePort();
    for (const command of commands) {
      expect(command).toMatch(/^npx countersign /);
      const args = command.split(/\s+/).slice(2);
      if (args[0] !== "serve") {
        const r = await promisify(execFile)(process.execPath, [BIN, ...args], { cwd: dir, env });
        if (args[0] === "init") {
          expect(r.stdout).toContain(`wrote ${path.join(dir, "policy.yml")}`);
          // What the README says to do next: the Slack app's values into .env. Here they
          // point at the local stand-in, with a port and a queue prefix of the test's own.
          const dotenv = fs
            .readFileSync(path.join(dir, ".env"), "utf8")
            .replace(/^SLACK_BOT_TOKEN=$/m, "SLACK_BOT_TOKEN=xoxb-readme")
            .replace(/^SLACK_SIGNING_SECRET=$/m, "SLACK_SIGNING_SECRET=readme-signing-secret")
            .replace(/^SLACK_API_URL=$/m, `SLACK_API_URL=${sim.url}`)
            .replace(/^PORT=3000$/m, `PORT=${port}`)
            .replace(/^QUEUE_PREFIX=bull$/m, `QUEUE_PREFIX=${prefix}`);
          expect(dotenv).toContain(`PORT=${port}`);
          fs.writeFileSync(path.join(dir, ".env"), dotenv);
        }
        if (args[0] === "policy") expect(r.stdout).toContain(`${path.join(dir, "policy.yml")}: ok`);
        continue;
      }
      const serve: ChildProcess = spawn(process.execPath, [BIN, ...args], {
        cwd: dir,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      serve.stdout?.on("data", (d) => {
        out += d;
      });
      serve.stderr?.on("data", (d) => {
        out += d;
      });
      const exited = new Promise<number | null>((r) => serve.once("exit", (code) => r(code)));
      try {
        const deadline = Date.now() + 40_000;
        for (;;) {
          const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
            (r) => r.status === 200,
            () => false,
          );
          if (ready) break;
          if (serve.exitCode !== null || Date.now() > deadline)
            throw new Error(`serve did not get ready:\n${out}`);
          await sleep(200);
        }
        const jwks = (await (await fetch(`http://127.0.0.1:${port}/.well-known/jwks.json`)).json()) as {
          keys: unknown[];
        };
        expect(jwks.keys).toHaveLength(1);
        expect(out).toContain(`"url":"http://127.0.0.1:${port}"`);
        serve.kill("SIGTERM");
        expect(await Promise.race([exited, sleep(15_000).then(() => "still running")])).toBe(0);
        expect(out).toContain("countersign: stopped");
      } finally {
        if (serve.exitCode === null) serve.kill("SIGKILL");
      }
    }
    // What init wrote: secrets fresh and of the right shape, the .env private to its owner.
    const dotenv = fs.readFileSync(path.join(dir, ".env"), "utf8");
    expect(dotenv).toMatch(/^EXAMPLE_AGENT_SECRET=[A-Za-z0-9_-]{43}$/m);
    expect(dotenv).toMatch(/^EXAMPLE_AGENT_WEBHOOK_SECRET=whsec_[A-Za-z0-9+/]{43}=$/m);
    expect(dotenv).toMatch(/^AUDITOR_TOKENS=\S{32}$/m);
    expect(fs.statSync(path.join(dir, ".env")).mode & 0o077).toBe(0);
  }, 120_000);

  it("init refuses to overwrite, naming each file, and writes nothing", async () => {
    const before = fs.readFileSync(path.join(dir, "policy.yml"), "utf8");
    const r = await promisify(execFile)(process.execPath, [BIN, "init"], { cwd: dir, env }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((r as { code: number }).code).toBe(1);
    expect((r as { stderr: string }).stderr).toContain(`not overwriting ${path.join(dir, "policy.yml")}`);
    expect((r as { stderr: string }).stderr).toContain(path.join(dir, ".env"));
    expect(fs.readFileSync(path.join(dir, "policy.yml"), "utf8")).toBe(before);
  });
});
