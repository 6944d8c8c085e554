/**
 * The same product on PostgreSQL: the whole path, the HTTP API with long-poll and
 * cancel, escalation and expiry, and a gapless verified chain. (The store contract suite
 * in test/db runs every Store method on both stores.)
 */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jwsDigest } from "../../src/adapters/crypto/signing.js";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { requestDigest } from "../../src/domain/canonical.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { type Harness, PG_URL, request, startHarness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ postgres: true, timeout: "1s", escalationTimeout: "1s", onTimeout: "escalate" });
});
afterAll(async () => {
  await h?.stop();
});

describe("on PostgreSQL", () => {
  it("runs the whole path: queue, card, clicks, a record the agent's job completes with", async () => {
    const req = request({ region: "us", action: { type: "ops.restart", summary: "Restart on PostgreSQL" } });
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    const r = (await job.waitUntilFinished(h.events, 10_000)) as { verdict: string; record: string };
    expect(r.verdict).toBe("approved");
    expect((decodeJwt(r.record) as unknown as RecordClaims).action_sha256).toBe(requestDigest(req));
  });

  it("answers the HTTP API: submit, long-poll woken by a deny, cancel with 409 after", async () => {
    const req = request({ region: "us", action: { type: "ops.restart", summary: "HTTP on PostgreSQL" } });
    const created = await h.api("POST", "/v1/actions", { body: req });
    expect(created.status).toBe(201);
    const card = await h.card(created.json.action_id);
    const poll = h.api("GET", `/v1/actions/${created.json.action_id}?wait=20`);
    await h.click("U0BOB", card, ACTION_IDS.deny);
    await h.submitModal("U0BOB", { reason: "not on a Friday" });
    expect((await poll).json.status).toBe("denied");
    const cancel = await h.api("POST", `/v1/actions/${created.json.action_id}/cancel`, { body: {} });
    expect(cancel.status).toBe(409);
  });

  it("escalates and expires on its timers", async () => {
    const req = request();
    const job = await h.submit(req);
    await h.card(req.request_id, 0);
    await h.card(req.request_id, 1);
    const r = (await job.waitUntilFinished(h.events, 15_000)) as { verdict: string; record: string };
    expect(r.verdict).toBe("expired");
    expect((decodeJwt(r.record) as unknown as RecordClaims).route.escalation_level).toBe(1);
  });

  it("keeps one gapless chain under concurrent decisions", async () => {
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const req = request({ risk_class: "low", action: { type: "crm.read", summary: `read ${i}` } });
        await (await h.submit(req)).waitUntilFinished(h.events, 10_000);
      }),
    );
    const pg = await import("pg");
    const client = new pg.default.Client({ connectionString: PG_URL });
    await client.connect();
    const { rows } = await client.query(`SELECT seq, jws FROM "${h.pgSchema}".records ORDER BY seq`);
    await client.end();
    expect(rows.length).toBeGreaterThanOrEqual(23);
    rows.forEach((r: { seq: number; jws: string }, i: number) => {
      const c = decodeJwt(r.jws) as unknown as RecordClaims;
      expect([Number(r.seq), c.seq]).toEqual([i + 1, i + 1]);
      expect(c.prev).toBe(i === 0 ? null : jwsDigest(rows[i - 1].jws));
    });
  });
});
