/**
 * Revocation from the CLI in a real process, against a running server on the same
 * database: the receipt is in the log, a redeem is then refused `revoked`, the approval's
 * webhook not yet delivered is cancelled and the agent gets `decision.revoked` instead.
 * And `agent token` mints an executor's proof, as docs/agents.md's curl walk-through uses.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { decodeJwt } from "jose";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXECUTOR_SECRET, EXECUTORS } from "../support/grants.js";
import { eventually, type Harness, request, startHarness, testPolicy } from "../support/harness.js";
import { type Receiver, startReceiver } from "../support/receiver.js";

const WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
let h: Harness;
let rx: Receiver;

beforeAll(async () => {
  rx = await startReceiver();
  const policy = testPolicy({ extra: EXECUTORS }).replace(
    "callback_origins: [https://billing.internal]",
    `callback_origins: [{ origin: "${rx.origin}", allow_private: true }]`,
  );
  h = await startHarness({
    policy,
    env: { PAYMENTS_EXECUTOR_SECRET: EXECUTOR_SECRET, WEBHOOK_RETRY_DELAYS: "10s,10s" },
  });
});
afterAll(async () => {
  await h?.stop();
  await rx?.close();
});

function cli(args: string[]) {
  return promisify(execFile)(process.execPath, ["bin/countersign.mjs", ...args], {
    env: {
      PATH: process.env.PATH ?? "",
      ...h.dbEnv,
      POLICY_FILE: path.join(h.dir, "policy.yml"),
      SIGNING_KEY_FILE: path.join(h.dir, "signing-key.pem"),
      PAYMENTS_EXECUTOR_SECRET: EXECUTOR_SECRET,
      LOG_LEVEL: "silent",
    },
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );
}

describe("countersign grants revoke", () => {
  it("revokes (actor cli): redeem is then 409 revoked, the approval webhook is cancelled, decision.revoked arrives", async () => {
    // The receiver fails the approval's first attempt, so its retry is still pending when we revoke.
    rx.script({ status: 500 });
    const before = rx.received.length;
    const req = request({
      risk_class: "low",
      action: { type: "crm.read", summary: "Read customer 9" },
      callback_url: `${rx.origin}/hook`,
    });
    const created = await h.api("POST", "/v1/actions", { body: req });
    const actionId = created.json.action_id as string;
    await eventually(async () => rx.received.length > before, "the approval's first attempt");

    const r = await cli(["grants", "revoke", actionId, "--reason", "wrong customer"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`revoked ${actionId}`);

    const body = { record: created.json.record, request: req };
    const file = path.join(h.dir, "redeem.json");
    fs.writeFileSync(file, JSON.stringify(body));
    const minted = await cli(["agent", "token", "payments-api", "--request", file]);
    expect(minted.code).toBe(0);
    expect(decodeJwt(minted.stdout.trim()).iss).toBe("payments-api");
    const redeem = await fetch(`${h.app.url}/v1/grants/redeem`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${minted.stdout.trim()}` },
      body: JSON.stringify(body),
    });
    expect(redeem.status).toBe(409);
    expect(((await redeem.json()) as { code: string }).code).toBe("revoked");

    const revoked = await eventually(
      async () =>
        rx.received
          .slice(before)
          .map((x) => ({ x, p: JSON.parse(x.body) as { type: string; data: Record<string, unknown> } }))
          .find((y) => y.p.type === "decision.revoked"),
      "the decision.revoked webhook",
      15_000,
    );
    const verified = new Webhook(WHSEC).verify(
      revoked.x.body,
      revoked.x.headers as Record<string, string>,
    ) as {
      data: { receipt: string; record: string; action_id: string };
    };
    expect(verified.data.action_id).toBe(actionId);
    expect(decodeJwt(verified.data.receipt)).toMatchObject({
      kind: "revoked",
      by: { cli: true },
      reason_text: "wrong customer",
    });
    expect(revoked.x.headers["webhook-id"]).toBe(decodeJwt(verified.data.receipt).jti);
    // The approval's retry, due 10 s after its failed attempt, is cancelled rather than sent.
    await eventually(
      async () =>
        (await h.sql("SELECT 1 FROM events WHERE action_id = ? AND type = 'webhook_cancelled'", actionId))
          .length > 0,
      "the approval's webhook cancelled",
      20_000,
    );
    const approvals = rx.received
      .slice(before)
      .filter((x) => JSON.parse(x.body).type === "decision.approved");
    expect(approvals).toHaveLength(1);
    // `audit events` lists the revocation's receipt under the record, and the refused redeem.
    const timeline = await cli(["audit", "events", actionId]);
    expect(timeline.code).toBe(0);
    expect(timeline.stdout).toMatch(/receipt seq \d+: revoked/);
    expect(timeline.stdout).toContain("redeem_refused");
    const again = await cli(["grants", "revoke", actionId, "--reason", "twice"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("already_revoked");
  });
});
