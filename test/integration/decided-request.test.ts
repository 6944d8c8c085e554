/**
 * What the agent gets when approvers changed its request: the job's result, GET
 * /v1/actions/:id and the webhook all carry `request`, the decided revision, replayed from
 * the stored request and the record's signed `edits`. The decision here is committed
 * through the real store (`Store.mutate`, the record signed and chained in its
 * transaction) with the claims a revision produces, so this test stands on its own until
 * the Slack modal makes revisions. Digests are checked with `canonicalize` and node:crypto.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { afterAll, beforeAll, expect, it } from "vitest";
import { decisionEffects } from "../../src/app/approvals.js";
import { diffRequest } from "../../src/domain/edits.js";
import type { ActionRequest, RecordClaims } from "../../src/domain/types.js";
import { decodeJws } from "../../src/records/signing.js";
import { eventually, type Harness, request, startHarness, TEAM, testPolicy } from "../support/harness.js";
import { type Receiver, startReceiver } from "../support/receiver.js";

function jcs(v: unknown): string {
  return createHash("sha256").update(canonicalize(v)!, "utf8").digest("base64url");
}

let h: Harness;
let rx: Receiver;

beforeAll(async () => {
  rx = await startReceiver();
  const policy = testPolicy().replace(
    "callback_origins: [https://billing.internal]",
    `callback_origins: [https://billing.internal, { origin: "${rx.origin}", allow_private: true }]`,
  );
  h = await startHarness({ policy });
});
afterAll(async () => {
  await h?.stop();
  await rx?.close();
});

/** Approves `actionId` as Alice after she changed the amount to `amount`, as a revision does. */
async function approveWithChange(actionId: string, amount: number): Promise<ActionRequest> {
  let decided: ActionRequest | null = null;
  const r = await h.app.store.mutate(actionId, Date.now(), (a) => {
    const next = structuredClone(a.request) as ActionRequest & {
      action: { details: Record<string, unknown> };
    };
    next.action.details["amount"] = amount;
    decided = next;
    const now = new Date();
    const vote = {
      user: "U0ALICE",
      team: TEAM,
      vote: "approve" as const,
      at: now.toISOString(),
      revision: 2,
    };
    const outcome = { verdict: "approved" as const, reasonCode: "approvers" as const, reasonText: "" };
    const claims = {
      ...h.app.approvals.claims(a, [{ ...vote, level: a.level }], outcome, now),
      action_sha256: jcs(next),
      original_sha256: a.requestSha256,
      edits: [{ user: "U0ALICE", team: TEAM, at: now.toISOString(), patch: diffRequest(a.request, next) }],
    };
    return {
      vote: { ...vote, level: a.level },
      events: [],
      effects: decisionEffects(a, a.request),
      decision: { outcome, claims },
    };
  });
  expect(r.kind).toBe("applied");
  return decided!;
}

it("the job's result, GET and the webhook carry the decided revision; the record binds both digests", async () => {
  const req = request({
    action: {
      type: "payments.refund",
      summary: "Refund order 1234",
      details: { order: "1234", amount: 120 },
    },
    callback_url: `${rx.origin}/hooks/decided`,
  });
  const job = await h.submit(req);
  const card = await h.card(req.request_id);
  const decided = await approveWithChange(card.actionId, 80);

  const result = (await job.waitUntilFinished(h.events, 15_000)) as {
    verdict: string;
    record: string;
    request: ActionRequest;
  };
  const claims = decodeJws(result.record).payload as unknown as RecordClaims;
  expect(result.verdict).toBe("approved");
  expect(result.request).toEqual(decided);
  expect(result.request.action.details).toEqual({ order: "1234", amount: 80 });
  expect(jcs(result.request)).toBe(claims.action_sha256);
  expect(jcs(req)).toBe(claims.original_sha256);
  expect(claims.action_sha256).not.toBe(claims.original_sha256);

  const got = await h.api("GET", `/v1/actions/${card.actionId}`);
  expect(got.status).toBe(200);
  expect(got.json.request).toEqual(decided);
  expect(jcs(got.json.request)).toBe(claims.action_sha256);

  await eventually(
    async () => rx.received.some((x) => x.body.includes(card.actionId)),
    "the webhook",
    15_000,
  );
  const hook = JSON.parse(rx.received.find((x) => x.body.includes(card.actionId))!.body) as {
    type: string;
    data: { request: ActionRequest; record: string };
  };
  expect(hook.type).toBe("decision.approved");
  expect(hook.data.request).toEqual(decided);
  expect(jcs(hook.data.request)).toBe(claims.action_sha256);

  // The store still holds the agent's own request: the revision is the record's to say.
  expect((await h.app.store.getAction(card.actionId))!.request).toEqual(req);
});

it("without changes, all three carry the agent's own request", async () => {
  const req = request({ callback_url: `${rx.origin}/hooks/plain` });
  const job = await h.submit(req);
  const card = await h.card(req.request_id);
  await h.api("POST", `/v1/actions/${card.actionId}/cancel`, { body: { note: "not needed" } });
  const result = (await job.waitUntilFinished(h.events, 15_000)) as {
    record: string;
    request: ActionRequest;
  };
  const claims = decodeJws(result.record).payload as unknown as RecordClaims;
  expect(result.request).toEqual(req);
  expect(jcs(result.request)).toBe(claims.action_sha256);
  expect(claims.original_sha256).toBeUndefined();
  expect((await h.api("GET", `/v1/actions/${card.actionId}`)).json.request).toEqual(req);
  await eventually(
    async () => rx.received.some((x) => x.body.includes(card.actionId)),
    "the webhook",
    15_000,
  );
  const hook = JSON.parse(rx.received.find((x) => x.body.includes(card.actionId))!.body) as {
    data: { request: ActionRequest };
  };
  expect(hook.data.request).toEqual(req);
});
