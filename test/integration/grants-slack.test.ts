/**
 * Revocation from Slack through the simulator (real signed payloads): the decided card
 * keeps Revoke for the last level's approvers and the agent's owners; anyone else is
 * refused; the modal's reason lands in the receipt; the thread shows redeem, outcome and
 * revoke as they happen, and the card loses Revoke once redeemed or revoked.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { SimMessage } from "../../src/simulator/slack-api.js";
import { grantsHarness, post } from "../support/grants.js";
import { eventually, type Harness, request } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await grantsHarness();
});
afterAll(async () => {
  await h?.stop();
});

/** An ops request on the us-ops route (quorum 1), approved by Alice's click. */
async function approvedByClick() {
  const req = request({ region: "us", action: { type: "ops.restart", summary: "Restart the api" } });
  const job = await h.submit(req);
  const card = await h.card(req.request_id);
  await h.click("U0ALICE", card, ACTION_IDS.approve);
  const done = (await job.waitUntilFinished(h.events, 10_000)) as { record: string };
  return { card, record: done.record, request: req };
}

function cardMessage(card: { channel: string; ts: string }): SimMessage {
  return h.sim.messages(card.channel).find((m) => m.ts === card.ts && !m.thread_ts)!;
}

const hasRevoke = (m: SimMessage) => JSON.stringify(m.blocks ?? []).includes(ACTION_IDS.revoke);
const thread = (card: { channel: string; ts: string }) =>
  h.sim
    .messages(card.channel)
    .filter((m) => m.thread_ts === card.ts)
    .map((m) => m.text)
    .join("\n");

describe("Revoke on the decided card", () => {
  it("is refused to someone who is neither an approver nor an owner; an approver revokes with a reason", async () => {
    const { card, record, request: decided } = await approvedByClick();
    await eventually(async () => hasRevoke(cardMessage(card)), "the decided card with Revoke");

    await h.click("U0MALLORY", card, ACTION_IDS.revoke);
    await eventually(
      async () =>
        h.sim
          .messages(card.channel)
          .some((m) => m.ephemeral_for === "U0MALLORY" && /may revoke/.test(m.text)),
      "the refusal note",
    );
    expect(h.sim.views().some((v) => v.user === "U0MALLORY")).toBe(false);

    // An owner of the agent (U0TECH, technical) may revoke too; Bob, an approver of the level, does it here.
    await h.click("U0BOB", card, ACTION_IDS.revoke);
    const r = await h.submitModal("U0BOB", { reason: "the change window closed" });
    expect(r.status).toBe(200);
    // Acknowledged after commit: the receipt is in the log when Slack hears back.
    const rows = await h.sql<{ jws: string }>(
      "SELECT jws FROM records WHERE action_id = ? AND kind = 'revoked'",
      card.actionId,
    );
    expect(rows).toHaveLength(1);
    const claims = JSON.parse(Buffer.from(rows[0]!.jws.split(".")[1]!, "base64url").toString());
    expect(claims).toMatchObject({
      by: { user: "U0BOB", team: "T0TEST" },
      reason_text: "the change window closed",
    });

    const redeem = await post(
      h,
      "/v1/grants/redeem",
      { record, request: decided },
      { executor: "deploy-tool" },
    );
    expect(redeem.status).toBe(409);
    expect(redeem.json.code).toBe("revoked");
    await eventually(async () => /Revoked by <@U0BOB>/.test(thread(card)), "the revoke noted in the thread");
    await eventually(async () => !hasRevoke(cardMessage(card)), "the card without Revoke");
  });

  it("the thread shows redeem and outcome, and the card loses Revoke once redeemed", async () => {
    const { card, record, request: decided } = await approvedByClick();
    await eventually(async () => hasRevoke(cardMessage(card)), "the decided card with Revoke");
    const redeem = await post(
      h,
      "/v1/grants/redeem",
      { record, request: decided },
      { executor: "deploy-tool" },
    );
    expect(redeem.status).toBe(200);
    const outcome = await post(
      h,
      `/v1/actions/${card.actionId}/outcome`,
      { status: "succeeded", detail: "restarted in 4 s" },
      { executor: "deploy-tool" },
    );
    expect(outcome.status).toBe(201);
    await eventually(
      async () =>
        /Redeemed by executor deploy-tool/.test(thread(card)) &&
        /succeeded: restarted in 4 s/.test(thread(card)),
      "redeem and outcome noted in the thread",
    );
    await eventually(async () => !hasRevoke(cardMessage(card)), "the card without Revoke");
  });
});

describe("Revoke after valid_until", () => {
  let short: Harness;
  beforeAll(async () => {
    short = await grantsHarness({ validFor: "2s" });
  });
  afterAll(async () => {
    await short?.stop();
  });

  it("the card drops Revoke once the approval's valid_until has passed", async () => {
    const req = request({ region: "us", action: { type: "ops.restart", summary: "Restart the worker" } });
    const job = await short.submit(req);
    const card = await short.card(req.request_id);
    await short.click("U0ALICE", card, ACTION_IDS.approve);
    await job.waitUntilFinished(short.events, 10_000);
    const message = () => short.sim.messages(card.channel).find((m) => m.ts === card.ts && !m.thread_ts)!;
    await eventually(async () => hasRevoke(message()), "the decided card with Revoke");
    await eventually(async () => !hasRevoke(message()), "the card without Revoke after valid_until", 15_000);
  });
});
