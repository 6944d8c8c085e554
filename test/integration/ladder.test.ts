import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { eventually, type Harness, request, SIGNING_SECRET, startHarness } from "../support/harness.js";

type Done = { verdict: string; record: string };
const claimsOf = (r: Done) => decodeJwt(r.record) as unknown as RecordClaims;

describe("deadlines and escalation (second-long policy timeouts, real Redis)", () => {
  let h: Harness;
  beforeAll(async () => {
    // Short, but not too short: a level that runs out before its card is posted gets no
    // card (correctly), and a busy machine can delay an effect by a second.
    h = await startHarness({ timeout: "2s", escalationTimeout: "3s", onTimeout: "escalate" });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("escalates at the deadline: a new card for the next level, a note in the first card's thread", async () => {
    const req = request();
    const job = await h.submit(req);
    const first = await h.card(req.request_id, 0);
    const second = await h.card(first.actionId, 1);
    expect(second.ts).not.toBe(first.ts);
    const note = await h.sim.waitForCall(
      "chat.postMessage",
      (c) => c.args.thread_ts === first.ts && /escalat/i.test(String(c.args.text)),
    );
    expect(note).toBeTruthy();
    // Only the new level's approver may vote now; the CFO approves.
    await h.click("U0ALICE", first, ACTION_IDS.approve);
    await h.click("U0CFO", second, ACTION_IDS.approve);
    const r = (await job.waitUntilFinished(h.events, 10_000)) as Done;
    expect(r.verdict).toBe("approved");
    const c = claimsOf(r);
    expect(c.route).toEqual({ name: "eu-high-payments", quorum: 1, escalation_level: 1 });
    expect(c.eligible).toEqual(["U0CFO"]);
    expect(c.votes.map((v) => v.user)).toEqual(["U0CFO"]);
    const events = (await h.app.store.listEvents(first.actionId)).map((e) => e.type);
    expect(events).toEqual(
      expect.arrayContaining(["routed", "level_started", "escalated", "vote_refused", "vote_cast"]),
    );
  });

  it("expires after the last level: verdict expired, reason timeout, the card updated, the job released", async () => {
    const req = request();
    const job = await h.submit(req);
    const first = await h.card(req.request_id, 0);
    const r = (await job.waitUntilFinished(h.events, 15_000)) as Done;
    expect(r.verdict).toBe("expired");
    expect(claimsOf(r)).toMatchObject({ reason_code: "timeout", route: { escalation_level: 1 } });
    await eventually(async () => {
      const m = h.sim.messages(first.channel).find((x) => x.ts === first.ts);
      return m && !JSON.stringify(m.blocks).includes(ACTION_IDS.approve);
    }, "the first card to show the verdict");
  });
});

describe("quorum, double clicks and who may vote", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("needs two distinct approvers; notes each vote in the thread; a second click by the same person changes nothing", async () => {
    const req = request();
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await h.sim.waitForCall("chat.postMessage", (c) => c.args.thread_ts === card.ts);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    const note = await h.sim.waitForCall("chat.postEphemeral", (c) => c.args.user === "U0ALICE");
    expect(String(note.args.text)).toMatch(/already voted/);
    const a = await h.app.store.getAction(card.actionId);
    expect(a?.status).toBe("pending");
    expect(a?.votes).toHaveLength(1);
    await h.click("U0CAROL", card, ACTION_IDS.approve); // a member of the approver group S0FIN
    const r = (await job.waitUntilFinished(h.events, 10_000)) as Done;
    expect(claimsOf(r).votes.map((v) => v.user)).toEqual(["U0ALICE", "U0CAROL"]);
  });

  it("two people clicking at the same instant at quorum 1 produce exactly one record", async () => {
    const req = request({
      region: "us",
      action: { type: "ops.restart", summary: "Restart the billing worker" },
    });
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await Promise.all([
      h.click("U0ALICE", card, ACTION_IDS.approve),
      h.click("U0BOB", card, ACTION_IDS.approve),
    ]);
    const r = (await job.waitUntilFinished(h.events, 10_000)) as Done;
    expect(r.verdict).toBe("approved");
    const [records] = await h.sql<{ n: number }>(
      "SELECT count(*) AS n FROM records WHERE action_id = ?",
      card.actionId,
    );
    expect(records!.n).toBe(1);
    expect(claimsOf(r).votes).toHaveLength(1);
  });

  it("a deny after an approval verdict changes nothing: terminal states are final", async () => {
    const req = request({ region: "us", action: { type: "ops.restart", summary: "Restart again" } });
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    // Bob's client still shows the card as it was before the verdict.
    const stale = structuredClone(h.sim.messages(card.channel).find((m) => m.ts === card.ts)!);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    const r = (await job.waitUntilFinished(h.events, 10_000)) as Done;
    const { blockActionsPayload, findElement, sendSigned } = await import(
      "../../src/simulator/interactions.js"
    );
    const button = findElement(stale.blocks, ACTION_IDS.deny)!;
    const payload = blockActionsPayload({
      user: { id: "U0BOB", team_id: "T0TEST", name: "bob" },
      message: stale,
      actionId: ACTION_IDS.deny,
      value: String((button.element as { value?: string }).value),
      ...(button.blockId ? { blockId: button.blockId } : {}),
      triggerId: h.sim.newTriggerId("U0BOB"),
    });
    expect(
      (await sendSigned("interaction", payload, { url: h.slackUrl, signingSecret: SIGNING_SECRET })).status,
    ).toBe(200);
    await h.sim.waitForCall("chat.postEphemeral", (c) => c.args.user === "U0BOB");
    const a = await h.app.store.getAction(card.actionId);
    expect(a?.verdict).toBe("approved");
    expect((await h.app.store.getRecord(card.actionId))?.jws).toBe(r.record);
  });

  it.each([
    ["the person the agent acts for", "U0REQ", "on_behalf_of", /asked the agent/],
    ["a guest", "U0GUEST", "guest", /guest/],
    ["a member of another workspace", "U0OUTSIDE", "other_workspace", /another workspace/],
  ])("refuses %s, with an ephemeral note and an event", async (_who, user, code, text) => {
    const req = request({ on_behalf_of: { slack_user: "U0REQ" } });
    await h.submit(req);
    const card = await h.card(req.request_id);
    const a = await h.app.store.getAction(card.actionId);
    expect(a?.eligible).not.toContain(user);
    await h.click(user, card, ACTION_IDS.approve);
    const note = await h.sim.waitForCall(
      "chat.postEphemeral",
      (c) => c.args.user === user && c.at >= Date.now() - 5000,
    );
    expect(String(note.args.text)).toMatch(text);
    const events = await h.app.store.listEvents(card.actionId);
    expect(events.find((e) => e.type === "vote_refused" && e.actor === `slack:${user}`)?.data).toMatchObject({
      code,
    });
    expect((await h.app.store.getAction(card.actionId))?.votes).toEqual([]);
  });

  it("tells the on_behalf_of person the verdict by DM", async () => {
    const req = request({ on_behalf_of: { slack_user: "U0REQ" } });
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "wrong account" });
    await job.waitUntilFinished(h.events, 10_000);
    const open = await h.sim.waitForCall("conversations.open", (c) => String(c.args.users) === "U0REQ");
    const dmChannel = (open.response.channel as { id: string }).id;
    const dm = await h.sim.waitForCall("chat.postMessage", (c) => c.args.channel === dmChannel);
    expect(String(dm.args.text)).toMatch(/denied/i);
  });
});
