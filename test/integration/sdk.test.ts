/** The SDK against the real Countersign: both transports, verdicts verified before they resolve. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { Denied, InvalidRecord, type JWKS, Rejected, requestApproval, verify } from "../../src/sdk/index.js";
import { BILLING_SECRET, type Harness, ISSUER, request, startHarness } from "../support/harness.js";

let h: Harness;
let jwks: JWKS;
const identity = { agentId: "billing-agent", issuer: ISSUER, key: { hmacSecret: BILLING_SECRET } };

beforeAll(async () => {
  h = await startHarness();
  jwks = (await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json()) as JWKS;
});
afterAll(async () => {
  await h?.stop();
});

describe("SDK round trip", () => {
  it("over the queue: approved, with the record verified", async () => {
    const req = request();
    const handle = await requestApproval(req, {
      identity,
      transport: { kind: "queue", queue: h.queue, queueEvents: h.events },
      jwks,
    });
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await h.click("U0BOB", card, ACTION_IDS.approve);
    const d = await handle.verdict({ timeoutMs: 10_000 });
    expect(d.verdict).toBe("approved");
    expect(d.claims).toMatchObject({ action_id: card.actionId, sub: "billing-agent" });
    // The short form an agent calls before acting, and what it refuses.
    expect((await verify(d.record, jwks, req, ISSUER)).action_id).toBe(card.actionId);
    await expect(
      verify(d.record, jwks, { ...req, purpose: "something else" }, ISSUER),
    ).rejects.toBeInstanceOf(InvalidRecord);
    await expect(verify(d.record, jwks, req, "https://someone-else.example")).rejects.toBeInstanceOf(
      InvalidRecord,
    );
  });

  it("over HTTP: Denied with the approver's reason", async () => {
    const req = request();
    const handle = await requestApproval(req, {
      identity,
      transport: { kind: "http", baseUrl: h.app.url },
      jwks,
    });
    expect(handle.actionId).toMatch(/^act_/);
    const card = await h.card(handle.actionId!);
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "amount exceeds the order" });
    const err = await handle.verdict({ timeoutMs: 10_000 }).catch((e) => e);
    expect(err).toBeInstanceOf(Denied);
    expect((err as Denied).reasonText).toBe("amount exceeds the order");
  });

  it("over HTTP: a refusal is Rejected with its code", async () => {
    const req = request({ action: { type: "infra.delete", summary: "nope" } });
    const err = await requestApproval(req, {
      identity,
      transport: { kind: "http", baseUrl: h.app.url },
      jwks,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(Rejected);
    expect((err as Rejected).code).toBe("action_not_allowed");
  });
});
