import { compactVerify, createLocalJWKSet, decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { requestDigest } from "../../src/domain/canonical.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { eventually, type Harness, ISSUER, request, startHarness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

async function jwks() {
  const r = await fetch(`${h.app.url}/.well-known/jwks.json`);
  expect(r.status).toBe(200);
  return (await r.json()) as { keys: Record<string, unknown>[] };
}

describe("the whole path: queue -> route -> card -> clicks -> signed record -> job completes", () => {
  it("completes the agent's job with a record that verifies against the JWKS", async () => {
    const req = request();
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    expect(card.channel).toBe("C0EUAPPROVALS");
    const posted = h.sim.messages("C0EUAPPROVALS").find((m) => m.ts === card.ts)!;
    expect(JSON.stringify(posted.blocks)).toContain(ACTION_IDS.approve);

    expect((await h.click("U0ALICE", card, ACTION_IDS.approve)).status).toBe(200);
    // Quorum 2: one approval leaves it pending.
    await eventually(
      async () => (await h.app.store.getAction(card.actionId))?.votes.length === 1,
      "first vote",
    );
    expect((await h.app.store.getAction(card.actionId))?.status).toBe("pending");
    await h.click("U0BOB", card, ACTION_IDS.approve);

    const result = (await job.waitUntilFinished(h.events, 10_000)) as {
      action_id: string;
      request_id: string;
      verdict: string;
      record: string;
      request: unknown;
    };
    expect(result.verdict).toBe("approved");
    expect(result.action_id).toBe(card.actionId);
    expect(result.request_id).toBe(req.request_id);
    // The request as decided (here the agent's own), which the record's action_sha256 covers.
    expect(result.request).toEqual(req);

    const { payload, protectedHeader } = await compactVerify(
      result.record,
      createLocalJWKSet((await jwks()) as never),
    );
    expect(protectedHeader).toMatchObject({ alg: "EdDSA", typ: "decision+jwt", kid: h.app.signingKey.kid });
    const claims = JSON.parse(new TextDecoder().decode(payload)) as RecordClaims;
    expect(claims).toMatchObject({
      ver: 1,
      iss: ISSUER,
      sub: "billing-agent",
      action_id: card.actionId,
      request_id: req.request_id,
      action_type: "payments.refund",
      action_sha256: requestDigest(req),
      verdict: "approved",
      reason_code: "approvers",
      reason_text: "",
      route: { name: "eu-high-payments", quorum: 2, escalation_level: 0 },
    });
    expect(claims.votes.map((v) => v.user)).toEqual(["U0ALICE", "U0BOB"]);
    expect(claims.votes[0]).toMatchObject({
      team: "T0TEST",
      email: "alice@example.com",
      real_name: "Alice Approver",
    });
    // Eligible: listed users, group members and the risk owner; never the guest or the outsider.
    expect([...claims.eligible].sort()).toEqual(["U0ALICE", "U0BOB", "U0CAROL", "U0REQ", "U0RISK"]);
    expect(Date.parse(claims.valid_until!) - Date.parse(claims.decided_at)).toBe(15 * 60_000);

    // The card now shows the verdict and has no buttons.
    await eventually(async () => {
      const m = h.sim.messages("C0EUAPPROVALS").find((x) => x.ts === card.ts);
      return m && !JSON.stringify(m.blocks).includes(ACTION_IDS.approve) && m.edits > 0;
    }, "the card to be updated");
  });

  it("denies with the approver's reason from the modal, and the reason reaches the record", async () => {
    const req = request();
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await eventually(async () => h.sim.views().some((v) => v.user === "U0ALICE"), "the deny modal");
    const r = await h.submitModal("U0ALICE", { reason: "Duplicate of refund 998; already paid" });
    expect(r.status).toBe(200);
    const result = (await job.waitUntilFinished(h.events, 10_000)) as { verdict: string; record: string };
    expect(result.verdict).toBe("denied");
    const claims = decodeJwt(result.record) as unknown as RecordClaims;
    expect(claims.reason_code).toBe("approvers");
    expect(claims.reason_text).toBe("Duplicate of refund 998; already paid");
    expect(claims.votes).toHaveLength(1);
    expect(claims.votes[0]).toMatchObject({
      user: "U0ALICE",
      vote: "deny",
      comment: "Duplicate of refund 998; already paid",
    });
  });

  it("auto-approves a low-risk read by policy, with a signed record and no card", async () => {
    const req = request({ risk_class: "low", action: { type: "crm.read", summary: "Read customer 42" } });
    const job = await h.submit(req);
    const result = (await job.waitUntilFinished(h.events, 10_000)) as { verdict: string; record: string };
    expect(result.verdict).toBe("approved");
    const claims = decodeJwt(result.record) as unknown as RecordClaims;
    expect(claims.reason_code).toBe("policy");
    expect(claims.route.name).toBe("low-auto");
    expect(await h.app.store.getCards(claims.action_id)).toEqual([]);
  });

  it("denies with no_route when no route matches", async () => {
    const req = request({ region: "us", action: { type: "payments.charge", summary: "Charge card" } });
    const job = await h.submit(req);
    const result = (await job.waitUntilFinished(h.events, 10_000)) as { verdict: string; record: string };
    expect(result.verdict).toBe("denied");
    expect((decodeJwt(result.record) as unknown as RecordClaims).reason_code).toBe("no_route");
  });

  it("resolves a repeated job (same request, fresh proof) with the same record", async () => {
    const req = request({ risk_class: "low", action: { type: "crm.read", summary: "Read customer 7" } });
    const first = (await (await h.submit(req)).waitUntilFinished(h.events, 10_000)) as { record: string };
    const again = (await (await h.submit(req)).waitUntilFinished(h.events, 10_000)) as { record: string };
    expect(again.record).toBe(first.record);
  });

  it("releases a repeat that arrives while the first is still pending, with the same record", async () => {
    const req = request();
    const a = await h.submit(req);
    const card = await h.card(req.request_id);
    const b = await h.submit(req);
    await eventually(async () => (await b.getState()) === "delayed", "the repeat to park");
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "no" });
    const [ra, rb] = (await Promise.all([
      a.waitUntilFinished(h.events, 10_000),
      b.waitUntilFinished(h.events, 10_000),
    ])) as {
      record: string;
    }[];
    expect(rb!.record).toBe(ra!.record);
  });

  it("chains records: seq without gaps, prev = hash of the previous JWS", async () => {
    const rows = await h.sql<{ seq: number; jws: string; digest: string }>(
      "SELECT seq, jws, digest FROM records ORDER BY seq",
    );
    expect(rows.length).toBeGreaterThan(2);
    rows.forEach((r, i) => {
      const c = decodeJwt(r.jws) as unknown as RecordClaims;
      expect(c.seq).toBe(i + 1);
      expect(c.prev).toBe(i === 0 ? null : rows[i - 1]!.digest);
    });
  });
});
