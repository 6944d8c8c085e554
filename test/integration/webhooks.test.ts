import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { eventually, type Harness, request, startHarness, testPolicy } from "../support/harness.js";
import { type Receiver, startReceiver } from "../support/receiver.js";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
let h: Harness;
let rx: Receiver;

beforeAll(async () => {
  rx = await startReceiver();
  // Loopback is refused unless the exact origin is listed with allow_private; `localhost`
  // on the same port is listed without it, so a name resolving to loopback is refused.
  const policy = testPolicy().replace(
    "callback_origins: [https://billing.internal]",
    `callback_origins: [https://billing.internal, { origin: "${rx.origin}", allow_private: true }, "http://localhost:${rx.port}"]`,
  );
  h = await startHarness({ policy, env: { WEBHOOK_RETRY_DELAYS: "1s,1s,1s" } });
});
afterAll(async () => {
  await h?.stop();
  await rx?.close();
});

async function decide(callback: string): Promise<{ actionId: string; decisionId: string }> {
  const req = request({
    region: "us",
    action: { type: "ops.restart", summary: "restart" },
    callback_url: callback,
  });
  const job = await h.submit(req);
  const card = await h.card(req.request_id);
  await h.click("U0ALICE", card, ACTION_IDS.approve);
  await job.waitUntilFinished(h.events, 10_000);
  const rec = await h.app.store.getRecord(card.actionId);
  return { actionId: card.actionId, decisionId: rec!.decisionId };
}

describe("signed webhooks", () => {
  it("delivers the verdict signed per Standard Webhooks; a receiver failing twice gets it on the third attempt, same id", async () => {
    rx.script({ status: 500 }, { status: 503 });
    const before = rx.received.length;
    const { actionId, decisionId } = await decide(`${rx.origin}/hooks/decision`);
    await eventually(async () => rx.received.length - before >= 3, "three attempts", 15_000);
    const got = rx.received.slice(before);
    expect(got.map((r) => r.headers["webhook-id"])).toEqual([decisionId, decisionId, decisionId]);
    const last = got[2]!;
    const payload = new Webhook(SECRET).verify(last.body, last.headers as Record<string, string>) as {
      type: string;
      data: { action_id: string; verdict: string; record: string };
    };
    expect(payload).toMatchObject({
      type: "decision.approved",
      data: { action_id: actionId, verdict: "approved" },
    });
    expect(payload.data.record).toBe((await h.app.store.getRecord(actionId))!.jws);
    // Bodies are identical on every attempt.
    expect(new Set(got.map((r) => r.body)).size).toBe(1);
    // The attempt is written once the receiver's answer is back, so after the receiver
    // has seen it: wait for the third row rather than race it.
    const attempts = await eventually(async () => {
      const a = await h.app.store.webhookAttempts(actionId);
      return a.length >= 3 && a;
    }, "three recorded attempts");
    expect(attempts.map((a) => a.status)).toEqual([500, 503, 200]);
    expect(attempts.every((a) => a.durationMs >= 0 && a.webhookId === decisionId)).toBe(true);
  });

  it("does not follow a redirect: a 302 is a failed attempt, retried", async () => {
    rx.script({ status: 302, headers: { location: "http://169.254.169.254/latest/meta-data" } });
    const { actionId } = await decide(`${rx.origin}/hooks/redirect`);
    await eventually(
      async () => (await h.app.store.webhookAttempts(actionId)).length >= 2,
      "a retry after the 302",
    );
    const attempts = await h.app.store.webhookAttempts(actionId);
    expect(attempts[0]).toMatchObject({ status: 302 });
    expect(attempts[0]!.error).toMatch(/redirect/);
    expect(attempts[1]).toMatchObject({ status: 200 });
  });

  it("stops retrying on 410 Gone", async () => {
    rx.script({ status: 410 });
    const { actionId } = await decide(`${rx.origin}/hooks/gone`);
    await eventually(
      async () => (await h.app.store.webhookAttempts(actionId)).length >= 1,
      "the first attempt",
    );
    await new Promise((r) => setTimeout(r, 2_500));
    expect((await h.app.store.webhookAttempts(actionId)).map((a) => a.status)).toEqual([410]);
  });

  it("refuses a listed origin whose name resolves to loopback without allow_private (SSRF), on every attempt", async () => {
    const before = rx.received.length;
    const { actionId } = await decide(`http://localhost:${rx.port}/hooks/ssrf`);
    await eventually(
      async () => (await h.app.store.webhookAttempts(actionId)).length >= 2,
      "two refused attempts",
    );
    const attempts = await h.app.store.webhookAttempts(actionId);
    expect(attempts.every((a) => a.status === null && /loopback|private|refused/i.test(a.error ?? ""))).toBe(
      true,
    );
    expect(rx.received.length).toBe(before);
  });
});

describe("countersign webhooks list|redeliver", () => {
  it("lists the attempts and redelivers with the same id", async () => {
    const { execFile } = await import("node:child_process");
    const { promisify } = await import("node:util");
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ["bin/countersign.mjs", ...args], {
        env: { ...process.env, ...h.dbEnv, LOG_LEVEL: "silent" },
      });
    const before = rx.received.length;
    const { actionId, decisionId } = await decide(`${rx.origin}/hooks/cli`);
    await eventually(async () => rx.received.length > before, "the first delivery");
    const list = await run(["webhooks", "list", actionId]);
    expect(list.stdout).toMatch(/#1 .* HTTP 200 /);
    const redo = await run(["webhooks", "redeliver", actionId]);
    expect(redo.stdout).toMatch(/queued a redelivery/);
    await eventually(async () => rx.received.length > before + 1, "the redelivery");
    expect(rx.received[rx.received.length - 1]!.headers["webhook-id"]).toBe(decisionId);
  });
});
