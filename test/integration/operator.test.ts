/**
 * What an operator reads: a record's decided_at never precedes its deciding vote (and the
 * SDK and `audit verify` accept the milliseconds), and the outbox gauge in /metrics
 * returns to 0 when nothing is due, a reminder due later being counted apart.
 */
import fs from "node:fs";
import path from "node:path";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { type JWKS, verifyDecision } from "../../src/sdk/verify.js";
import { runCli } from "../audit/cli-run.js";
import { eventually, type Harness, ISSUER, request, startHarness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

async function gauge(name: string): Promise<number> {
  const text = await (await fetch(`${h.app.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in /metrics:\n${text}`);
  return Number(line.slice(name.length + 1));
}

describe("decided_at", () => {
  it("keeps milliseconds and is never before the deciding vote; the SDK and audit verify accept it", async () => {
    const req = request();
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await eventually(
      async () => (await h.app.store.getAction(card.actionId))?.votes.length === 1,
      "the first vote",
    );
    await h.click("U0BOB", card, ACTION_IDS.approve);
    const { record } = (await job.waitUntilFinished(h.events, 15_000)) as { record: string };
    const claims = decodeJwt(record) as unknown as RecordClaims;
    expect(claims.decided_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    const lastVote = Math.max(...claims.votes.map((v) => Date.parse(v.at)));
    expect(Date.parse(claims.decided_at)).toBeGreaterThanOrEqual(lastVote);
    expect(Number.isInteger(claims.iat)).toBe(true);
    expect(Date.parse(claims.valid_until!) - Date.parse(claims.decided_at)).toBe(15 * 60_000);

    const jwks = (await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json()) as JWKS;
    const verified = await verifyDecision(record, {
      jwks,
      request: req,
      agentId: req.agent_id,
      issuer: ISSUER,
    });
    expect(verified.decided_at).toBe(claims.decided_at);

    const out = path.join(h.dir, "audit.jsonl");
    const ex = await runCli(["audit", "export", "--out", out], h.dbEnv);
    expect(ex.code, ex.stderr).toBe(0);
    expect(fs.readFileSync(out, "utf8")).toContain(`"decided_at":"${claims.decided_at}"`);
    const v = await runCli(["audit", "verify", out], h.dbEnv);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/^verified /);
  }, 40_000);
});

describe("/metrics", () => {
  it("counts effects that are due in countersign_outbox_pending and later ones apart", async () => {
    const req = request();
    await h.submit(req);
    // The card is posted; its reminder (at half the 30 minute deadline) waits in the outbox.
    await h.card(req.request_id);
    const due = await eventually(
      async () => ((await gauge("countersign_outbox_pending")) === 0 ? "zero" : null),
      "the due outbox effects to drain",
      20_000,
    );
    expect(due).toBe("zero");
    expect(await gauge("countersign_outbox_scheduled")).toBeGreaterThanOrEqual(1);
  }, 40_000);
});
