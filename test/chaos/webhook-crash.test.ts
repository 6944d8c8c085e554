/**
 * A crash between the verdict and its webhook, and between sending a webhook and
 * recording the attempt: the webhook still arrives, always with the same webhook-id.
 */
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { type Chaos, startChaos } from "../support/chaos.js";
import { eventually, SIGNING_SECRET, USERS } from "../support/harness.js";
import { type Receiver, startReceiver } from "../support/receiver.js";

let c: Chaos;
let rx: Receiver;
const alice = USERS.find((u) => u.id === "U0ALICE")!;

beforeAll(async () => {
  rx = await startReceiver();
  c = await startChaos({
    policy: (y) =>
      y.replace(
        "callback_origins: [https://billing.internal]",
        `callback_origins: [{ origin: "${rx.origin}", allow_private: true }]`,
      ),
  });
});
afterAll(async () => {
  await c?.stop();
  await rx?.close();
});

async function decideOn(crashPoint: string) {
  const a = await c.child({ CRASH_POINT: crashPoint });
  const { req, job } = await c.submit({ callback_url: `${rx.origin}/hook` });
  const row = await eventually(
    async () =>
      c
        .db()
        .prepare(
          "SELECT a.id, c.channel, c.ts FROM actions a JOIN cards c ON c.action_id = a.id WHERE a.request_id = ?",
        )
        .get(req.request_id) as { id: string; channel: string; ts: string } | undefined,
    "the card",
    20_000,
  );
  await c.sim
    .click({
      user: { id: alice.id, team_id: alice.team_id, name: alice.name },
      channel: row.channel,
      ts: row.ts,
      actionId: ACTION_IDS.approve,
      appUrl: `${a.url}/slack/events`,
      signingSecret: SIGNING_SECRET,
    })
    .catch(() => {});
  await eventually(async () => a.proc.exitCode !== null || a.proc.signalCode !== null, "the crash", 20_000);
  return { actionId: row.id, job };
}

describe("webhooks survive kill -9", () => {
  it("between the verdict and the delivery: delivered after restart", async () => {
    const before = rx.received.length;
    const { actionId, job } = await decideOn("after_record");
    expect(rx.received.length).toBe(before);
    const b = await c.child();
    await job.waitUntilFinished(c.events, 20_000);
    await eventually(async () => rx.received.length > before, "the webhook", 20_000);
    const got = rx.received[rx.received.length - 1]!;
    const decisionId = (
      c.db().prepare("SELECT decision_id FROM records WHERE action_id = ?").get(actionId) as {
        decision_id: string;
      }
    ).decision_id;
    expect(got.headers["webhook-id"]).toBe(decisionId);
    new Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").verify(
      got.body,
      got.headers as Record<string, string>,
    );
    await b.stop();
  });

  it("between sending and recording the attempt: sent again with the same id (at least once)", async () => {
    const before = rx.received.length;
    const { actionId } = await decideOn("after_webhook_send");
    expect(rx.received.length).toBe(before + 1);
    const b = await c.child();
    await eventually(async () => rx.received.length >= before + 2, "the webhook again", 20_000);
    const ids = rx.received.slice(before).map((r) => r.headers["webhook-id"]);
    expect(new Set(ids).size).toBe(1);
    // The attempt is recorded after the receiver has answered, so it lands a moment later.
    const attempts = () =>
      (
        c.db().prepare("SELECT count(*) AS n FROM webhook_attempts WHERE action_id = ?").get(actionId) as {
          n: number;
        }
      ).n;
    await eventually(async () => attempts() >= 1, "the attempt recorded", 10_000);
    await b.stop();
  });
});
