import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, type Harness, request, startHarness } from "../support/harness.js";

const posts = (h: Harness, channel: string) =>
  h.sim.calls.filter(
    (c) => c.method === "chat.postMessage" && c.args.channel === channel && !c.args.thread_ts,
  );

/** Every chat.postMessage the stand-in saw for an action's card, answered or not. */
const postsFor = (h: Harness, actionId: string) =>
  h.sim.calls.filter(
    (c) =>
      c.method === "chat.postMessage" &&
      (c.args.metadata as { event_payload?: { action_id?: string } } | undefined)?.event_payload
        ?.action_id === actionId,
  );

/** The messages Slack shows for an action's card. */
const cardsFor = (h: Harness, actionId: string) =>
  h.sim
    .messages("C0EUAPPROVALS")
    .filter(
      (m) =>
        (m.metadata as { event_payload?: { action_id?: string } })?.event_payload?.action_id === actionId,
    );

describe("passing Slack faults: the card still arrives, and never twice", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("honours a 429's Retry-After and posts the card afterwards", async () => {
    h.sim.failNext("chat.postMessage", { status: 429, retryAfter: 1 });
    const t = Date.now();
    const req = request();
    await h.submit(req);
    const card = await h.card(req.request_id);
    expect(Date.now() - t).toBeGreaterThanOrEqual(900);
    expect(h.sim.messages(card.channel).filter((m) => m.ts === card.ts)).toHaveLength(1);
  });

  it("retries a 5xx and a network-level failure", async () => {
    // Nothing else may take the faults meant for this card.
    await eventually(
      async () => (await h.app.store.pendingEffectCount(Date.now())) === 0,
      "the outbox to settle",
    );
    h.sim.failNext("chat.postMessage", { status: 503 });
    h.sim.failNext("chat.postMessage", { reset: true });
    const req = request();
    await h.submit(req);
    const card = await h.card(req.request_id, 0, 30_000);
    // The stand-in saw the card's post three times: refused with a 503, cut off with no
    // answer at all, then answered. The card arrived once.
    const tries = postsFor(h, card.actionId);
    expect(tries.map((c) => c.status)).toEqual([503, 0, 200]);
    expect(tries.at(-1)!.response).toMatchObject({ ok: true, ts: card.ts });
    expect(cardsFor(h, card.actionId)).toHaveLength(1);
  });

  it("finds the posted card when Slack's answer was lost, instead of posting a second", async () => {
    const before = posts(h, "C0EUAPPROVALS").length;
    // Slack stores the message, then the answer is lost (a 500 after the fact).
    h.sim.failNext("chat.postMessage", { status: 500, effect: true });
    const req = request();
    await h.submit(req);
    const card = await h.card(req.request_id);
    const stored = h.sim
      .messages("C0EUAPPROVALS")
      .filter(
        (m) =>
          (m.metadata as { event_payload?: { action_id?: string } })?.event_payload?.action_id ===
          card.actionId,
      );
    expect(stored).toHaveLength(1);
    expect(stored[0]!.ts).toBe(card.ts);
    expect(posts(h, "C0EUAPPROVALS").length - before).toBe(1);
  });

  it("finds the posted card when the connection dropped after Slack stored it", async () => {
    await eventually(
      async () => (await h.app.store.pendingEffectCount(Date.now())) === 0,
      "the outbox to settle",
    );
    h.sim.failNext("chat.postMessage", { reset: true, effect: true });
    const req = request();
    await h.submit(req);
    const card = await h.card(req.request_id, 0, 30_000);
    expect(postsFor(h, card.actionId).map((c) => c.status)).toEqual([0]);
    const shown = cardsFor(h, card.actionId);
    expect(shown).toHaveLength(1);
    expect(shown[0]!.ts).toBe(card.ts);
  });
});

describe("permanent Slack faults are events, and the request still ends at its deadline", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ timeout: "2s", onTimeout: "deny" });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it.each(["channel_not_found", "not_in_channel", "invalid_auth", "invalid_blocks"])(
    "records %s as an event, logs it, and the request still expires at its deadline",
    async (error) => {
      // The previous case's expiry DMs the agent's owner: let that finish first, or it
      // would take the fault meant for this card.
      await eventually(
        async () => (await h.app.store.pendingEffectCount(Date.now())) === 0,
        "the outbox to settle",
      );
      h.sim.failNext("chat.postMessage", { error }, 1);
      const req = request({ region: "us", action: { type: "ops.restart", summary: `fault ${error}` } });
      const job = await h.submit(req);
      const actionId = await h.actionIdOf(req.request_id);
      const ev = await eventually(
        async () => (await h.app.store.listEvents(actionId)).find((e) => e.type === "slack_failed"),
        "a slack_failed event",
      );
      expect(ev.data).toMatchObject({ effect: "post_card", error });
      const r = (await job.waitUntilFinished(h.events, 10_000)) as { verdict: string };
      expect(r.verdict).toBe("expired");
    },
  );
});

describe("pacing: a burst to one channel is spread over time, none lost", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { SLACK_CHANNEL_RATE: "5", SLACK_CHANNEL_BURST: "2" } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("posts 10 cards at no more than 5 a second after a burst of 2", async () => {
    const reqs = Array.from({ length: 10 }, (_, i) =>
      request({ action: { type: "payments.refund", summary: `paced ${i}` } }),
    );
    await Promise.all(reqs.map((r) => h.submit(r)));
    await Promise.all(reqs.map((r) => h.card(r.request_id)));
    const at = posts(h, "C0EUAPPROVALS")
      .map((c) => c.at)
      .sort((a, b) => a - b);
    expect(at).toHaveLength(10);
    // 2 at once, then one slot every 200 ms: the tenth slot is 1.6 s after the first.
    // Slots are granted when an effect is claimed and the post follows a few ms later,
    // so allow that jitter; an unpaced burst would post all ten within a few ms.
    expect(at[9]! - at[0]!).toBeGreaterThanOrEqual(1_400);
    for (let i = 0; i < at.length; i++) {
      const inOneSecond = at.filter((t) => t >= at[i]! && t < at[i]! + 1_000).length;
      expect(inOneSecond).toBeLessThanOrEqual(7); // 5 a second plus the burst of 2
    }
  });
});
