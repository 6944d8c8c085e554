/** The approver's experience in Slack (issue 9), against the stand-in with signed payloads. */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS, requestModalPages } from "../../src/adapters/slack/blocks.js";
import type { RecordClaims } from "../../src/domain/types.js";
import {
  eventually,
  type Harness,
  request,
  SIGNING_SECRET,
  sleep,
  startHarness,
  USERS,
} from "../support/harness.js";

const u = (id: string) => {
  const x = USERS.find((y) => y.id === id)!;
  return { id: x.id, team_id: x.team_id, name: x.name };
};

describe("cards, modals, /approvals and the Home tab", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  // A valid request (details up to 32 KiB) fits one modal page; the paging of larger ones
  // is covered in test/adapters/blocks.test.ts. The loop below follows any pages there are.
  it("'View full request' shows every detail of a 27 KB request, and the agent's last 24 hours", async () => {
    const details: Record<string, string> = {};
    for (let i = 0; i < 60; i++)
      details[`line_item_${String(i).padStart(2, "0")}`] = `item ${i}: ${"x".repeat(450)}`;
    const req = request({ action: { type: "payments.refund", summary: "Bulk refund", details } });
    await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.viewFull);
    const open = await h.sim.waitForCall("views.open", (c) =>
      JSON.stringify(c.args.view).includes("Bulk refund"),
    );
    const pages = requestModalPages(req);
    let text = JSON.stringify(open.args.view);
    expect(text).toMatch(/last 24 h:\* \d+ request/);
    // Page through with the modal's own buttons, as a person would.
    for (let p = 2; p <= pages; p++) {
      const view = [...h.sim.views()].reverse().find((v) => v.user === "U0ALICE" && v.kind === "modal")!;
      const { blockActionsPayload, findElement, sendSigned } = await import(
        "../../src/simulator/interactions.js"
      );
      const next = findElement(view.view.blocks, `${ACTION_IDS.viewPage}_next`)!;
      const payload = blockActionsPayload({
        user: u("U0ALICE"),
        actionId: `${ACTION_IDS.viewPage}_next`,
        value: String((next.element as { value: string }).value),
        triggerId: h.sim.newTriggerId("U0ALICE"),
        view,
      } as never);
      await sendSigned("interaction", payload, { url: h.slackUrl, signingSecret: SIGNING_SECRET });
      const upd = await h.sim.waitForCall("views.update", (c) =>
        JSON.stringify(c.args.view).includes(`Page ${p} of`),
      );
      text += JSON.stringify(upd.args.view);
    }
    for (let i = 0; i < 60; i++) expect(text).toContain(`item ${i}: ${"x".repeat(450)}`);
  });

  it("'Approve with comment' puts the comment in the record's votes", async () => {
    const req = request({ region: "us", action: { type: "ops.restart", summary: "Restart with a comment" } });
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0BOB", card, ACTION_IDS.approveWithComment);
    await h.submitModal("U0BOB", { comment: "Checked the runbook; safe at this hour" });
    const r = (await job.waitUntilFinished(h.events, 10_000)) as { record: string };
    const c = decodeJwt(r.record) as unknown as RecordClaims;
    expect(c.votes[0]).toMatchObject({
      user: "U0BOB",
      vote: "approve",
      comment: "Checked the runbook; safe at this hour",
    });
  });

  it("/approvals lists exactly the caller's pending requests, ephemerally", async () => {
    const forCfo = request({
      action: { type: "payments.refund", summary: "Only Alice and Bob can vote on this" },
    });
    const usOps = request({
      region: "us",
      action: { type: "ops.restart", summary: "US ops restart for Alice" },
    });
    await h.submit(forCfo);
    await h.submit(usOps);
    await h.card(forCfo.request_id);
    const opsCard = await h.card(usOps.request_id);
    const alice = await h.sim.command({
      user: u("U0ALICE"),
      command: "/approvals",
      appUrl: h.slackUrl,
      signingSecret: SIGNING_SECRET,
    });
    expect(alice.status).toBe(200);
    const body = JSON.parse(alice.body) as { response_type: string; blocks: unknown[] };
    expect(body.response_type).toBe("ephemeral");
    const text = JSON.stringify(body.blocks);
    expect(text).toContain("Only Alice and Bob can vote on this");
    expect(text).toContain("US ops restart for Alice");
    // Once Alice has voted on one, it no longer waits for her.
    await h.click("U0ALICE", opsCard, ACTION_IDS.approve);
    await eventually(
      async () => (await h.app.store.getAction(opsCard.actionId))?.status === "decided",
      "the vote",
    );
    const again = await h.sim.command({
      user: u("U0ALICE"),
      command: "/approvals",
      appUrl: h.slackUrl,
      signingSecret: SIGNING_SECRET,
    });
    expect(again.body).not.toContain("US ops restart for Alice");
    // Mallory approves nothing: her list is empty.
    const mallory = await h.sim.command({
      user: u("U0MALLORY"),
      command: "/approvals",
      appUrl: h.slackUrl,
      signingSecret: SIGNING_SECRET,
    });
    expect(mallory.body).toContain("Nothing waits for your vote");
    expect(mallory.body).not.toContain("Only Alice and Bob");
  });

  it("publishes the Home tab on app_home_opened: waiting, decided, and the owner's agents", async () => {
    const r = await h.sim.openHome({ user: u("U0ALICE"), appUrl: h.slackUrl, signingSecret: SIGNING_SECRET });
    expect(r.status).toBe(200);
    const pub = await h.sim.waitForCall("views.publish", (c) => c.args.user_id === "U0ALICE");
    const text = JSON.stringify(pub.args.view);
    expect(text).toContain("Waiting for your vote");
    expect(text).toContain("You decided recently");
    expect(text).toContain("US ops restart for Alice");
    await h.sim.openHome({ user: u("U0RISK"), appUrl: h.slackUrl, signingSecret: SIGNING_SECRET });
    const owner = await h.sim.waitForCall("views.publish", (c) => c.args.user_id === "U0RISK");
    expect(JSON.stringify(owner.args.view)).toContain("Your agents' recent requests");
  });
});

describe("telling people: expiry DMs and reminders", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ timeout: "3s", onTimeout: "deny" });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("reminds once, at half time, only those who have not voted; DMs the technical owner on expiry", async () => {
    const req = request();
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    const reminder = await h.sim.waitForCall(
      "chat.postMessage",
      (c) => c.args.thread_ts === card.ts && /Reminder/.test(String(c.args.text)),
      5_000,
    );
    const text = String(reminder.args.text);
    expect(text).toContain("<@U0BOB>");
    expect(text).not.toContain("<@U0ALICE>");
    const r = (await job.waitUntilFinished(h.events, 10_000)) as { verdict: string };
    expect(r.verdict).toBe("expired");
    await sleep(300);
    const reminders = h.sim.calls.filter(
      (c) =>
        c.method === "chat.postMessage" &&
        c.args.thread_ts === card.ts &&
        /Reminder/.test(String(c.args.text)),
    );
    expect(reminders).toHaveLength(1);
    const open = await h.sim.waitForCall("conversations.open", (c) => String(c.args.users) === "U0TECH");
    const dm = await h.sim.waitForCall(
      "chat.postMessage",
      (c) => c.args.channel === (open.response.channel as { id: string }).id,
    );
    expect(String(dm.args.text)).toMatch(/expired/i);
  });
});
