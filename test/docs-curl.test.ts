/**
 * The curl walk-throughs of docs/agents.md, run as written: the agent's ("### curl") asks
 * and waits, a person approves in the Slack stand-in meanwhile, and the executor's ("### With
 * curl") redeems the approval and reports its outcome. Each block is taken from the page
 * itself, with only the server's address filled in and `npx countersign` pointed at this
 * checkout's bin, so a command that stops working on the page fails here.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../src/adapters/slack/blocks.js";
import { EXECUTOR_SECRET, grantsHarness } from "./support/grants.js";
import { BILLING_SECRET, type Harness } from "./support/harness.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DOC = fs.readFileSync(path.join(ROOT, "docs/agents.md"), "utf8");

/** The first ```sh block after `heading`. */
function shBlock(heading: string): string {
  const at = DOC.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`docs/agents.md has no "${heading}" section`);
  const m = /```sh\n([\s\S]*?)```/.exec(DOC.slice(at));
  if (!m?.[1]) throw new Error(`no sh block after "${heading}"`);
  return m[1];
}

function run(script: string, h: Harness): Promise<{ code: number | null; out: string }> {
  const bin = path.join(ROOT, "bin/countersign.mjs");
  const filled = script
    .replace(/^COUNTERSIGN=.*$/m, `COUNTERSIGN=${h.app.url}`)
    .replace(/\bnpx countersign\b/g, `node ${bin}`);
  return new Promise((resolve) => {
    const p = spawn("bash", ["-euo", "pipefail", "-c", filled], {
      cwd: h.dir,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? h.dir,
        POLICY_FILE: path.join(h.dir, "policy.yml"),
        BILLING_AGENT_SECRET: BILLING_SECRET,
        PAYMENTS_EXECUTOR_SECRET: EXECUTOR_SECRET,
        LOG_LEVEL: "silent",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.stderr.on("data", (d) => {
      out += d;
    });
    p.on("exit", (code) => resolve({ code, out }));
  });
}

let h: Harness;
beforeAll(async () => {
  h = await grantsHarness();
}, 60_000);
afterAll(async () => {
  await h?.stop();
});

describe("docs/agents.md: the curl walk-throughs, run as written", () => {
  it("an agent asks and waits with curl; an executor redeems and reports the outcome with curl", async () => {
    const asking = run(shBlock("### curl"), h);
    // A person approves while the script long-polls (the route needs two approvers).
    const card = await h.card("refund-order-1044", 0, 60_000);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await h.click("U0BOB", card, ACTION_IDS.approve);
    const asked = await asking;
    expect(asked.code, asked.out).toBe(0);
    expect(asked.out).toContain('"verdict": "approved"');
    const answer = JSON.parse(fs.readFileSync(path.join(h.dir, "answer.json"), "utf8"));
    expect(fs.readFileSync(path.join(h.dir, "record.jws"), "utf8").trim()).toBe(answer.record);

    const executing = await run(shBlock("### With curl"), h);
    expect(executing.code, executing.out).toBe(0);
    const redeemed = JSON.parse(fs.readFileSync(path.join(h.dir, "redeemed.json"), "utf8"));
    expect(redeemed).toMatchObject({ action_id: answer.action_id, receipt: expect.any(String) });
    expect(executing.out).toMatch(/"receipt":"eyJ/);
    const kinds = await h.sql<{ kind: string }>(
      "SELECT kind FROM records WHERE action_id = ? ORDER BY seq",
      answer.action_id,
    );
    expect(kinds.map((k) => k.kind)).toEqual(["decision", "redeemed", "outcome"]);
  }, 120_000);
});
