/**
 * The installable SDK as a stranger gets it: `npm pack` of packages/sdk, installed into an
 * empty project with `--omit=dev` (offline: its dependencies come from the npm cache), and
 * the docs' example (docs/examples/http-agent.mjs) run with plain `node` against a running
 * Countersign, until it prints a verified approval. The server's own dependencies must not
 * come along.
 */
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { BILLING_SECRET, eventually, type Harness, ISSUER, startHarness } from "../support/harness.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const run = promisify(execFile);

let h: Harness;
let dir: string;

beforeAll(async () => {
  h = await startHarness();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-sdk-pack-"));
}, 60_000);
afterAll(async () => {
  await h?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

it("packs, installs without the server's dependencies, and the docs' example gets a verified approval with plain node", async () => {
  const packed = await run("npm", ["pack", "--pack-destination", dir, "--json"], {
    cwd: path.join(ROOT, "packages/sdk"),
    timeout: 120_000,
  });
  const tarball = path.join(dir, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);
  const app = path.join(dir, "app");
  fs.mkdirSync(app);
  fs.writeFileSync(
    path.join(app, "package.json"),
    JSON.stringify({ name: "app", private: true, type: "module" }),
  );
  await run("npm", ["install", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", tarball], {
    cwd: app,
    timeout: 120_000,
  });
  const installed = fs.readdirSync(path.join(app, "node_modules"));
  for (const heavy of ["@slack", "drizzle-orm", "better-sqlite3", "fastify", "bullmq", "ioredis", "yaml"]) {
    expect(installed, heavy).not.toContain(heavy);
  }
  const pkg = JSON.parse(
    fs.readFileSync(path.join(app, "node_modules/@countersign/sdk/package.json"), "utf8"),
  );
  expect(fs.existsSync(path.join(app, "node_modules/@countersign/sdk", pkg.exports["."].types))).toBe(true);

  fs.copyFileSync(path.join(ROOT, "docs/examples/http-agent.mjs"), path.join(app, "http-agent.mjs"));
  const child = spawn(process.execPath, ["http-agent.mjs"], {
    cwd: app,
    env: {
      PATH: process.env.PATH ?? "",
      COUNTERSIGN_URL: h.app.url,
      COUNTERSIGN_ISSUER: ISSUER,
      BILLING_AGENT_SECRET: BILLING_SECRET,
    },
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  const actionId = await eventually(
    async () => /asked: action (act_\S+)/.exec(out)?.[1],
    `the example's action id (stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)})`,
    30_000,
  );
  const card = await h.card(actionId);
  await h.click("U0ALICE", card, ACTION_IDS.approve);
  await h.click("U0BOB", card, ACTION_IDS.approve);
  expect(await exited, err).toBe(0);
  expect(out).toContain(`approved: action ${actionId} by U0ALICE, U0BOB`);

  // The wrapper example: the tool body runs once the call is approved.
  const wrapped = await runExample(app, "with-approval.mjs", {}, ["U0ALICE", "U0BOB"]);
  expect(wrapped.out).toBe("refunded 120 EUR on order 1042\n");

  // The queue example needs bullmq (an optional peer) in the agent's project.
  await run(
    "npm",
    ["install", "--prefer-offline", "--no-audit", "--no-fund", "bullmq@6.7.0", "ioredis@6.0.0"],
    {
      cwd: app,
      timeout: 120_000,
    },
  );
  const jwks = await (await fetch(`${h.app.url}/.well-known/jwks.json`)).text();
  const queued = await runExample(
    app,
    "queue-agent.mjs",
    { REDIS_URL: "redis://127.0.0.1:6379", QUEUE_PREFIX: h.prefix, COUNTERSIGN_JWKS: jwks },
    ["U0ALICE"],
  );
  expect(queued.out).toMatch(/^approved: action act_\S+, valid until \d{4}-/);
}, 300_000);

/** Runs a docs example with plain node in `app`, approves the one action it asks for, and waits for it. */
async function runExample(app: string, file: string, env: Record<string, string>, approvers: string[]) {
  fs.copyFileSync(path.join(ROOT, "docs/examples", file), path.join(app, file));
  const before = new Set((await h.sql<{ id: string }>("SELECT id FROM actions")).map((r) => r.id));
  const child = spawn(process.execPath, [file], {
    cwd: app,
    env: {
      PATH: process.env.PATH ?? "",
      COUNTERSIGN_URL: h.app.url,
      COUNTERSIGN_ISSUER: ISSUER,
      BILLING_AGENT_SECRET: BILLING_SECRET,
      ...env,
    },
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr.on("data", (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  const actionId = await eventually(
    async () =>
      (await h.sql<{ id: string }>("SELECT id FROM actions")).map((r) => r.id).find((id) => !before.has(id)),
    `the action ${file} asks for (stderr ${JSON.stringify(err)})`,
    30_000,
  );
  const card = await h.card(actionId);
  for (const user of approvers) await h.click(user, card, ACTION_IDS.approve);
  expect(await exited, err).toBe(0);
  return { out, err, actionId };
}
