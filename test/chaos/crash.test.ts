/**
 * kill -9 at each step of the flow (CRASH_POINT makes the process SIGKILL itself at an
 * exact point), then a fresh process: each request ends with exactly one record, at most
 * one card, and the agent's job completes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { waitForJob } from "../../src/sdk/finished.js";
import { type Chaos, startChaos } from "../support/chaos.js";
import type { Child } from "../support/child.js";
import { eventually, SIGNING_SECRET, USERS } from "../support/harness.js";

let c: Chaos;
beforeAll(async () => {
  c = await startChaos();
});
afterAll(async () => {
  await c?.stop();
});

const alice = USERS.find((u) => u.id === "U0ALICE")!;

function cardsFor(actionId: string) {
  return c.sim
    .messages("C0USOPS")
    .filter(
      (m) =>
        (m.metadata as { event_payload?: { action_id?: string } })?.event_payload?.action_id === actionId,
    );
}

async function actionIdOf(requestId: string): Promise<string> {
  return eventually(
    async () => {
      const row = c.db().prepare("SELECT id FROM actions WHERE request_id = ?").get(requestId) as
        | { id: string }
        | undefined;
      return row?.id;
    },
    `the action for ${requestId}`,
    20_000,
  );
}

async function cardSaved(actionId: string): Promise<{ channel: string; ts: string }> {
  return eventually(
    async () =>
      c.db().prepare("SELECT channel, ts FROM cards WHERE action_id = ?").get(actionId) as {
        channel: string;
        ts: string;
      },
    "the card to be saved",
    20_000,
  );
}

async function approve(child: Child, card: { channel: string; ts: string }) {
  const r = await c.sim.click({
    user: { id: alice.id, team_id: alice.team_id, name: alice.name },
    channel: card.channel,
    ts: card.ts,
    actionId: ACTION_IDS.approve,
    appUrl: `${child.url}/slack/events`,
    signingSecret: SIGNING_SECRET,
  });
  expect(r.status).toBe(200);
}

function recordsFor(actionId: string): number {
  return (
    c.db().prepare("SELECT count(*) AS n FROM records WHERE action_id = ?").get(actionId) as { n: number }
  ).n;
}

async function died(child: Child) {
  await eventually(
    async () => child.proc.exitCode !== null || child.proc.signalCode !== null,
    "the process to die",
    20_000,
  );
}

describe("kill -9 at each step", () => {
  it("after intake committed (before anything was posted)", async () => {
    const a = await c.child({ CRASH_POINT: "after_intake" });
    const { req, job } = await c.submit();
    await died(a);
    const b = await c.child();
    const id = await actionIdOf(req.request_id);
    const card = await cardSaved(id);
    await approve(b, card);
    const r = (await job.waitUntilFinished(c.events, 20_000)) as { verdict: string };
    expect(r.verdict).toBe("approved");
    expect(cardsFor(id)).toHaveLength(1);
    expect(recordsFor(id)).toBe(1);
    await b.stop();
  });

  it("after Slack posted the card but before we stored it", async () => {
    const a = await c.child({ CRASH_POINT: "after_card_post" });
    const { req, job } = await c.submit();
    await died(a);
    expect(c.sim.messages("C0USOPS").length).toBeGreaterThan(0);
    const b = await c.child();
    const id = await actionIdOf(req.request_id);
    const card = await cardSaved(id);
    await approve(b, card);
    await job.waitUntilFinished(c.events, 20_000);
    expect(cardsFor(id)).toHaveLength(1);
    expect(recordsFor(id)).toBe(1);
    await b.stop();
  });

  it("after the record committed but before the job was released", async () => {
    const a = await c.child({ CRASH_POINT: "after_record" });
    const { req, job } = await c.submit();
    const id = await actionIdOf(req.request_id);
    const card = await cardSaved(id);
    await approve(a, card).catch(() => {}); // the answer may be lost with the process
    await died(a);
    expect(recordsFor(id)).toBe(1);
    const b = await c.child();
    const r = (await job.waitUntilFinished(c.events, 20_000)) as { verdict: string; record: string };
    expect(r.verdict).toBe("approved");
    const jws = (c.db().prepare("SELECT jws FROM records WHERE action_id = ?").get(id) as { jws: string })
      .jws;
    expect(r.record).toBe(jws);
    await b.stop();
  });

  it("with two processes running, killing one: the other carries on", async () => {
    const [a, b] = await Promise.all([c.child(), c.child()]);
    const subs = await Promise.all(Array.from({ length: 6 }, () => c.submit()));
    const ids = await Promise.all(subs.map((s) => actionIdOf(s.req.request_id)));
    const cards = await Promise.all(ids.map((id) => cardSaved(id)));
    await a.kill9();
    for (const card of cards) await approve(b, card);
    const results = (await Promise.all(subs.map((s) => waitForJob(s.job, c.queue, c.events, 20_000)))) as {
      verdict: string;
    }[];
    expect(results.map((r) => r.verdict)).toEqual(Array(6).fill("approved"));
    for (const id of ids) {
      expect(recordsFor(id)).toBe(1);
      expect(cardsFor(id)).toHaveLength(1);
    }
    await b.stop();
  });
});
