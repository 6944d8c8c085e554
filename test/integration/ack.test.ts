/**
 * Acknowledge after commit (issue 19): what Slack is told happened is already in the
 * database; a commit that cannot finish in time answers an error the person sees; a
 * re-sent interaction changes nothing; a click on a card Slack shows, before the card is
 * saved, still counts. Slowness comes from the simulator (a slow users.info inside the
 * commit, a slow chat.postMessage answer), never from mocking our own modules.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import {
  blockActionsPayload,
  findElement,
  sendSigned,
  viewSubmissionPayload,
} from "../../src/simulator/interactions.js";
import {
  eventually,
  type Harness,
  request,
  SIGNING_SECRET,
  sleep,
  startHarness,
  USERS,
} from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const who = (id: string) => {
  const x = USERS.find((y) => y.id === id)!;
  return { id: x.id, team_id: x.team_id, name: x.name };
};

async function usOpsCard(summary: string) {
  const req = request({ region: "us", action: { type: "ops.restart", summary } });
  const job = await h.submit(req);
  return { job, card: await h.card(req.request_id) };
}

async function count(sql: string, ...args: unknown[]): Promise<number> {
  const [row] = await h.sql<{ n: number }>(sql, ...args);
  return Number(row?.n ?? 0);
}

const refusals = (actionId: string, actor: string) =>
  count(
    "SELECT count(*) AS n FROM events WHERE action_id = ? AND type = 'vote_refused' AND actor = ?",
    actionId,
    actor,
  );

describe("acknowledge after commit", () => {
  it("answers a refused click only once its refusal is committed", async () => {
    const { card } = await usOpsCard("Refused, committed first");
    // users.info is asked inside the commit (Mallory was never looked up): slow it down.
    h.sim.failNext("users.info", { delayMs: 800 });
    const t = Date.now();
    const r = await h.click("U0MALLORY", card, ACTION_IDS.approve);
    expect(r.status).toBe(200);
    expect(Date.now() - t).toBeGreaterThanOrEqual(700);
    // Read at once: no waiting. Answered first and written after, this would be 0.
    expect(await refusals(card.actionId, "slack:U0MALLORY")).toBe(1);
    // The note is an effect of the answer, sent after it.
    await h.sim.waitForCall("chat.postEphemeral", (c) => c.args.user === "U0MALLORY");
  });

  it("answers an approval only once the vote is in the record", async () => {
    const { job, card } = await usOpsCard("Approved, committed first");
    const r = await h.click("U0ALICE", card, ACTION_IDS.approve);
    expect(r.status).toBe(200);
    // Quorum 1: the answer comes after the verdict and its record committed.
    expect(await count("SELECT count(*) AS n FROM records WHERE action_id = ?", card.actionId)).toBe(1);
    expect(((await job.waitUntilFinished(h.events, 10_000)) as { verdict: string }).verdict).toBe("approved");
  });

  it("answers a button an error, never a 200, when the commit cannot finish in time; nothing is written", async () => {
    const { card } = await usOpsCard("Too slow to commit");
    // U0BIZ is looked up by nothing before this click: its users.info is in the commit.
    h.sim.failNext("users.info", { delayMs: 3_200 });
    const r = await h.click("U0BIZ", card, ACTION_IDS.approve);
    expect(r.status).toBeGreaterThanOrEqual(500);
    await sleep(1_500); // past the slow users.info: the write must not happen late
    expect(await refusals(card.actionId, "slack:U0BIZ")).toBe(0);
  });

  it("answers a modal submission `errors` when the commit cannot finish in time", async () => {
    const { card } = await usOpsCard("Modal too slow to commit");
    const opened = await h.click("U0ALICE", card, ACTION_IDS.deny);
    expect(opened.status).toBe(200);
    const view = await eventually(
      async () => [...h.sim.views()].reverse().find((v) => v.user === "U0ALICE" && v.kind === "modal"),
      "the deny modal",
    );
    // Submitted by someone whose look-up is slow (the modal itself is Alice's; the
    // entry point judges the submitter).
    h.sim.failNext("users.info", { delayMs: 3_200 });
    const payload = viewSubmissionPayload({
      user: who("U0TECH"),
      view,
      values: { reason: { reason: { type: "plain_text_input", value: "no" } } },
    });
    const r = await sendSigned("interaction", payload, { url: h.slackUrl, signingSecret: SIGNING_SECRET });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ response_action: "errors" });
    await sleep(1_500);
    expect(await refusals(card.actionId, "slack:U0TECH")).toBe(0);
    expect((await h.app.store.getAction(card.actionId))?.status).toBe("pending");
  });
});

describe("retries and re-sends", () => {
  it("a retried refused click is answered at once and writes one event, one note", async () => {
    const { card } = await usOpsCard("Retried refusal");
    const message = h.sim.messages(card.channel).find((m) => m.ts === card.ts)!;
    const found = findElement(message.blocks, ACTION_IDS.approve)!;
    const payload = blockActionsPayload({
      user: who("U0MALLORY"),
      message: structuredClone(message),
      actionId: ACTION_IDS.approve,
      value: String((found.element as { value: string }).value),
      triggerId: h.sim.newTriggerId("U0MALLORY"),
    });
    const notes = () =>
      h.sim.calls.filter((c) => c.method === "chat.postEphemeral" && c.args.user === "U0MALLORY").length;
    const before = notes();
    const send = (retryNum?: number) =>
      sendSigned("interaction", payload, {
        url: h.slackUrl,
        signingSecret: SIGNING_SECRET,
        ...(retryNum ? { retryNum } : {}),
      });
    expect((await send()).status).toBe(200);
    for (const n of [1, 2, 3]) expect((await send(n)).status).toBe(200);
    expect((await send()).status).toBe(200);
    await sleep(300);
    expect(await refusals(card.actionId, "slack:U0MALLORY")).toBe(1);
    expect(notes() - before).toBe(1);
  });

  it("a second click by a voter who counted changes nothing: no event, a note; a retry of it not even a note", async () => {
    const req = request({ action: { type: "payments.refund", summary: "Quorum two, clicked twice" } });
    await h.submit(req);
    const card = await h.card(req.request_id);
    expect((await h.click("U0ALICE", card, ACTION_IDS.approve)).status).toBe(200);
    const notes = () =>
      h.sim.calls.filter((c) => c.method === "chat.postEphemeral" && c.args.user === "U0ALICE").length;
    const before = notes();
    expect((await h.click("U0ALICE", card, ACTION_IDS.approve)).status).toBe(200);
    const note = await h.sim.waitForCall(
      "chat.postEphemeral",
      (c) => c.args.user === "U0ALICE" && /already voted/.test(String(c.args.text)),
    );
    expect(note).toBeTruthy();
    // Slack's retry of a click this instance never answered (another instance took the
    // first): answered at once, no event, no note.
    const message = h.sim.messages(card.channel).find((m) => m.ts === card.ts)!;
    const found = findElement(message.blocks, ACTION_IDS.approve)!;
    const payload = blockActionsPayload({
      user: who("U0ALICE"),
      message: structuredClone(message),
      actionId: ACTION_IDS.approve,
      value: String((found.element as { value: string }).value),
      triggerId: h.sim.newTriggerId("U0ALICE"),
    });
    const r = await sendSigned("interaction", payload, {
      url: h.slackUrl,
      signingSecret: SIGNING_SECRET,
      retryNum: 1,
    });
    expect(r.status).toBe(200);
    await sleep(300);
    expect(notes() - before).toBe(1);
    expect(await refusals(card.actionId, "slack:U0ALICE")).toBe(0);
    const a = await h.app.store.getAction(card.actionId);
    expect(a?.votes).toHaveLength(1);
    expect(a?.status).toBe("pending");
  });
});

describe("a click that comes too early", () => {
  it("counts a click on a card Slack already shows, before the card is saved", async () => {
    // Slack stores the message at once but its answer to chat.postMessage is slow: the
    // card is on screen while the card effect still waits to save it.
    h.sim.failNext("chat.postMessage", { delayMs: 700 });
    const req = request({ region: "us", action: { type: "ops.restart", summary: "Clicked early" } });
    const job = await h.submit(req);
    const actionId = await h.actionIdOf(req.request_id);
    const shown = await eventually(
      async () =>
        h.sim
          .messages("C0USOPS")
          .find(
            (m) =>
              (m.metadata as { event_payload?: { action_id?: string } } | undefined)?.event_payload
                ?.action_id === actionId,
          ),
      "the card on screen",
    );
    expect((await h.app.store.getCards(actionId)).length).toBe(0);
    const r = await h.click("U0ALICE", { channel: "C0USOPS", ts: shown.ts }, ACTION_IDS.approve);
    expect(r.status).toBe(200);
    expect(((await job.waitUntilFinished(h.events, 10_000)) as { verdict: string }).verdict).toBe("approved");
    expect(await refusals(actionId, "slack:U0ALICE")).toBe(0);
  });

  it("still refuses a button copied onto another message", async () => {
    const { card } = await usOpsCard("Copied button");
    const other = await usOpsCard("The other card");
    const message = h.sim.messages(card.channel).find((m) => m.ts === other.card.ts)!;
    const found = findElement(message.blocks, ACTION_IDS.approve)!;
    // The first card's button value, clicked on the second card's message.
    const firstValue = String(
      (
        findElement(h.sim.messages(card.channel).find((m) => m.ts === card.ts)!.blocks, ACTION_IDS.approve)!
          .element as { value: string }
      ).value,
    );
    expect(found).toBeTruthy();
    const payload = blockActionsPayload({
      user: who("U0ALICE"),
      message: structuredClone(message),
      actionId: ACTION_IDS.approve,
      value: firstValue,
      triggerId: h.sim.newTriggerId("U0ALICE"),
    });
    const t = Date.now();
    const r = await sendSigned("interaction", payload, { url: h.slackUrl, signingSecret: SIGNING_SECRET });
    expect(r.status).toBe(200);
    // Both cards are saved: no waiting for a card being posted.
    expect(Date.now() - t).toBeLessThan(1_000);
    expect((await h.app.store.getAction(card.actionId))?.votes).toHaveLength(0);
    expect((await h.app.store.getAction(other.card.actionId))?.votes).toHaveLength(0);
  });
});
