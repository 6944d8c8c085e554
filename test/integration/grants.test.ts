/**
 * Grants through the real server, on the store the project names (SQLite or PostgreSQL):
 * redeem exactly once under 50 concurrent calls, every refusal with its code and status in
 * the documented order, outcomes, revocation from the CLI's use-case, and the receipts as
 * entries of the one log.
 */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openAuditReader } from "../../src/adapters/db/open-audit.js";
import { exportChunks } from "../../src/audit/export.js";
import { verifyExport } from "../../src/audit/verify.js";
import type { ReceiptClaims, RecordClaims } from "../../src/domain/types.js";
import { approved, grantsHarness, post } from "../support/grants.js";
import { type Harness, request } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await grantsHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe("POST /v1/grants/redeem", () => {
  it("answers 200 exactly once out of 50 concurrent redemptions; the others get the first receipt", async () => {
    const g = await approved(h);
    const answers = await Promise.all(
      Array.from({ length: 50 }, () =>
        post(h, "/v1/grants/redeem", { record: g.record, request: g.request }),
      ),
    );
    const ok = answers.filter((a) => a.status === 200);
    expect(ok).toHaveLength(1);
    const receipt = ok[0]!.json.receipt as string;
    expect(ok[0]!.json.action_id).toBe(g.actionId);
    for (const a of answers.filter((x) => x.status !== 200)) {
      expect(a.status).toBe(409);
      expect(a.json.code).toBe("already_redeemed");
      expect(a.json.receipt).toBe(receipt);
      expect(Date.parse(a.json.redeemed_at)).toBeGreaterThan(0);
    }
    const claims = decodeJwt(receipt) as unknown as ReceiptClaims;
    expect(claims).toMatchObject({
      kind: "redeemed",
      action_id: g.actionId,
      by: { executor: "payments-api" },
    });
    const rows = await h.sql<{ n: number }>(
      "SELECT count(*) AS n FROM records WHERE action_id = ? AND kind = 'redeemed'",
      g.actionId,
    );
    expect(Number(rows[0]!.n)).toBe(1);
    // The receipt is the log's next entry after whatever came before it: chained by prev.
    const seqRows = await h.sql<{ seq: number; kind: string }>(
      "SELECT seq, kind FROM records WHERE action_id = ? ORDER BY seq",
      g.actionId,
    );
    expect(seqRows.map((r) => r.kind)).toEqual(["decision", "redeemed"]);
    expect(Number(seqRows[1]!.seq)).toBe(claims.seq);
    const get = await h.api("GET", `/v1/actions/${g.actionId}`);
    expect(get.json.redeemed_at).toBe(claims.at);
    expect(get.json.revoked_at).toBeUndefined();
  });

  it("refuses a request that is not the approved one (409 action_mismatch)", async () => {
    const g = await approved(h);
    const other = { ...(g.request as object), purpose: "something else" };
    const r = await post(h, "/v1/grants/redeem", { record: g.record, request: other });
    expect(r.status).toBe(409);
    expect(r.json.code).toBe("action_mismatch");
  });

  it("refuses a tampered record (400 bad_record) and keeps an audit event of it", async () => {
    const g = await approved(h);
    const [hd, p, s] = g.record.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as RecordClaims;
    const forged = Buffer.from(JSON.stringify({ ...claims, valid_until: "2099-01-01T00:00:00Z" })).toString(
      "base64url",
    );
    const r = await post(h, "/v1/grants/redeem", { record: `${hd}.${forged}.${s}`, request: g.request });
    expect(r.status).toBe(400);
    expect(r.json.code).toBe("bad_record");
    const events = await h.sql<{ n: number }>(
      "SELECT count(*) AS n FROM events WHERE type = 'redeem_refused'",
    );
    expect(Number(events[0]!.n)).toBeGreaterThan(0);
  });

  it("refuses an executor whose may_redeem or for_agents does not cover the action, and an agent (403)", async () => {
    const g = await approved(h);
    const body = { record: g.record, request: g.request };
    const wrongKind = await post(h, "/v1/grants/redeem", body, { executor: "deploy-tool" });
    expect(wrongKind.status).toBe(403);
    expect(wrongKind.json.code).toBe("forbidden");
    const agent = await post(h, "/v1/grants/redeem", body, { agent: "billing-agent" });
    expect(agent.status).toBe(403);
    expect(agent.json.code).toBe("forbidden");
    const unknown = await post(h, "/v1/grants/redeem", body, { executor: "nobody" });
    expect(unknown.status).toBe(401);
    expect(unknown.json.code).toBe("unknown_executor");
    const kept = await h.sql<{ data_json: string }>(
      "SELECT data_json FROM events WHERE type = 'redeem_refused' AND actor = 'http'",
    );
    expect(kept.some((e) => JSON.parse(e.data_json).code === "unknown_executor")).toBe(true);
  });

  it("refuses a denied record (409 not_approved)", async () => {
    const req = request();
    const created = await h.api("POST", "/v1/actions", { body: req });
    const cancelled = await h.api("POST", `/v1/actions/${created.json.action_id}/cancel`, { body: {} });
    expect(cancelled.json.verdict).toBe("cancelled");
    const r = await post(h, "/v1/grants/redeem", { record: cancelled.json.record, request: req });
    expect(r.status).toBe(409);
    expect(r.json.code).toBe("not_approved");
  });

  it("revoke, then redeem: 409 revoked; GET shows revoked_at; a second revoke is already_revoked", async () => {
    const g = await approved(h);
    const receipt = await h.app.grants.revoke(g.actionId, { cli: true }, "wrong customer");
    const r = await post(h, "/v1/grants/redeem", { record: g.record, request: g.request });
    expect(r.status).toBe(409);
    expect(r.json.code).toBe("revoked");
    const get = await h.api("GET", `/v1/actions/${g.actionId}`);
    expect(get.json.revoked_at).toBe(new Date(receipt.at).toISOString());
    await expect(h.app.grants.revoke(g.actionId, { cli: true }, "again")).rejects.toMatchObject({
      code: "already_revoked",
    });
  });

  it("a redeemed approval cannot be revoked (first commit wins)", async () => {
    const g = await approved(h);
    expect((await post(h, "/v1/grants/redeem", { record: g.record, request: g.request })).status).toBe(200);
    await expect(h.app.grants.revoke(g.actionId, { cli: true }, "late")).rejects.toMatchObject({
      code: "already_redeemed",
    });
  });

  it("of 20 redeems and 20 revokes racing, exactly one of them commits", async () => {
    const g = await approved(h);
    const redeems = Array.from({ length: 20 }, () =>
      post(h, "/v1/grants/redeem", { record: g.record, request: g.request }).then((a) => a.status === 200),
    );
    const revokes = Array.from({ length: 20 }, () =>
      h.app.grants.revoke(g.actionId, { cli: true }, "race").then(
        () => true,
        () => false,
      ),
    );
    const wins = (await Promise.all([...redeems, ...revokes])).filter(Boolean);
    expect(wins).toHaveLength(1);
  });
});

describe("POST /v1/actions/:id/outcome", () => {
  it("by the executor that redeemed: 201 with a receipt, then 409 outcome_exists", async () => {
    const g = await approved(h);
    const before = await post(h, `/v1/actions/${g.actionId}/outcome`, { status: "succeeded" });
    // Nothing redeemed it yet: only its agent may report.
    expect(before.status).toBe(403);
    await post(h, "/v1/grants/redeem", { record: g.record, request: g.request });
    const byAgent = await post(
      h,
      `/v1/actions/${g.actionId}/outcome`,
      { status: "failed" },
      { agent: "billing-agent" },
    );
    expect(byAgent.status).toBe(403);
    // Its own agent may learn which executor redeemed it; another executor may not.
    expect(byAgent.json.detail).toContain("payments-api");
    const byOther = await post(
      h,
      `/v1/actions/${g.actionId}/outcome`,
      { status: "failed" },
      { executor: "deploy-tool" },
    );
    expect(byOther.status).toBe(403);
    expect(byOther.json.detail).toBe("only the executor that redeemed the approval may report its outcome");
    const r = await post(h, `/v1/actions/${g.actionId}/outcome`, {
      status: "succeeded",
      detail: "refund 991",
    });
    expect(r.status).toBe(201);
    expect(decodeJwt(r.json.receipt)).toMatchObject({
      kind: "outcome",
      status: "succeeded",
      detail: "refund 991",
      by: { executor: "payments-api" },
    });
    const again = await post(h, `/v1/actions/${g.actionId}/outcome`, { status: "failed" });
    expect(again.status).toBe(409);
    expect(again.json.code).toBe("outcome_exists");
  });

  it("by the agent when nothing redeemed it; before approval 409 not_approved", async () => {
    const g = await approved(h);
    const r = await post(
      h,
      `/v1/actions/${g.actionId}/outcome`,
      { status: "failed" },
      { agent: "billing-agent" },
    );
    expect(r.status).toBe(201);
    const pending = await h.api("POST", "/v1/actions", { body: request() });
    const p = await post(
      h,
      `/v1/actions/${pending.json.action_id}/outcome`,
      { status: "failed" },
      { agent: "billing-agent" },
    );
    expect(p.status).toBe(409);
    expect(p.json.code).toBe("not_approved");
  });
});

describe("refused outcome reports are audit events", () => {
  // biome-ignore lint/suspicious/noExplicitAny: events read field by field
  const refusals = async (actionId: string | null): Promise<any[]> =>
    (
      await h.sql<{ actor: string; data_json: string; action_id: string | null }>(
        actionId === null
          ? "SELECT actor, data_json, action_id FROM events WHERE type = 'outcome_refused' AND action_id IS NULL ORDER BY id"
          : "SELECT actor, data_json, action_id FROM events WHERE type = 'outcome_refused' AND action_id = ? ORDER BY id",
        ...(actionId === null ? [] : [actionId]),
      )
    ).map((e) => ({ actor: e.actor, ...JSON.parse(e.data_json) }));

  it("keeps a refused authentication and a bad body on the action, as redeem does", async () => {
    const g = await approved(h);
    const body = { status: "succeeded" };
    const bad = await fetch(`${h.app.url}/v1/actions/${g.actionId}/outcome`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer not-a-token" },
      body: JSON.stringify(body),
    });
    expect(bad.status).toBe(401);
    const badCode = ((await bad.json()) as { code: string }).code;
    const invalid = await post(
      h,
      `/v1/actions/${g.actionId}/outcome`,
      { status: "done" },
      { agent: "billing-agent" },
    );
    expect(invalid.status).toBe(400);
    expect(invalid.json.code).toBe("invalid_request");
    const kept = await refusals(g.actionId);
    expect(kept.map((e) => [e.actor, e.code])).toEqual([
      ["http", badCode],
      ["agent:billing-agent", "invalid_request"],
    ]);
    expect(kept[0].code).toMatch(/^(bad_proof|unauthenticated)$/);
    // Nothing was reported: the agent still can.
    const ok = await post(h, `/v1/actions/${g.actionId}/outcome`, body, { agent: "billing-agent" });
    expect(ok.status).toBe(201);
  });

  it("answers another agent's action exactly as a missing one, and keeps who tried on the action", async () => {
    const g = await approved(h);
    const body = { status: "succeeded" };
    const other = await post(h, `/v1/actions/${g.actionId}/outcome`, body, { agent: "ops-agent" });
    const missing = await post(h, "/v1/actions/act_00000000000000000000000000/outcome", body, {
      agent: "ops-agent",
    });
    expect(other.status).toBe(404);
    expect(missing.status).toBe(404);
    // Word for word the same problem: the caller learns nothing about the action.
    const { instance: _a, ...otherProblem } = other.json;
    const { instance: _b, ...missingProblem } = missing.json;
    expect(otherProblem).toEqual(missingProblem);
    expect(JSON.stringify(other.json)).not.toContain(g.actionId);
    // The attempt is evidence: kept on the action, which only the audit tools show.
    const kept = await refusals(g.actionId);
    expect(kept).toEqual([{ actor: "agent:ops-agent", code: "not_found", reason: "no such action" }]);
    const nowhere = await refusals(null);
    expect(nowhere.at(-1)).toMatchObject({
      actor: "agent:ops-agent",
      code: "not_found",
      action_id: "act_00000000000000000000000000",
    });
    // And it changed nothing: the owner's report still goes through.
    const ok = await post(h, `/v1/actions/${g.actionId}/outcome`, body, { agent: "billing-agent" });
    expect(ok.status).toBe(201);
  });
});

describe("grant_expired", () => {
  let short: Harness;
  beforeAll(async () => {
    short = await grantsHarness({ validFor: "1s" });
  });
  afterAll(async () => {
    await short?.stop();
  });

  it("refuses a redemption committed at or after valid_until (410)", async () => {
    const g = await approved(short);
    const validUntil = Date.parse((decodeJwt(g.record) as unknown as RecordClaims).valid_until!);
    await new Promise((r) => setTimeout(r, Math.max(0, validUntil - Date.now()) + 50));
    const r = await post(short, "/v1/grants/redeem", { record: g.record, request: g.request });
    expect(r.status).toBe(410);
    expect(r.json.code).toBe("grant_expired");
  });
});

describe("receipts in the audit log", () => {
  it("export carries redeem, outcome and revoke receipts; verify passes; CSV fills the after-verdict columns", async () => {
    const g = await approved(h);
    await post(h, "/v1/grants/redeem", { record: g.record, request: g.request });
    await post(h, `/v1/actions/${g.actionId}/outcome`, { status: "succeeded" });
    const r = await approved(h);
    await h.app.grants.revoke(r.actionId, { cli: true }, "not needed");
    const reader = await openAuditReader({
      databaseKind: h.storeKind,
      databasePath: h.dbEnv.DATABASE_URL!.replace(/^file:/, ""),
      databaseSchema: h.pgSchema ?? undefined,
    });
    try {
      const upTo = await reader.lastSeq();
      const jsonl: string[] = [];
      for await (const c of exportChunks(reader.records(upTo), { format: "jsonl", filter: {} }))
        jsonl.push(c);
      const lines = jsonl
        .join("")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      const mine = lines.filter((l) => l.action_id === g.actionId || l.action_id === r.actionId);
      expect(mine.map((l) => l.kind)).toEqual(["decision", "redeemed", "outcome", "decision", "revoked"]);
      const report = await verifyExport(jsonl, { jwks: await reader.publishedKeys() });
      expect(report).toMatchObject({ ok: true });
      const csv: string[] = [];
      for await (const c of exportChunks(reader.records(upTo), { format: "csv", filter: {} })) csv.push(c);
      const row = csv
        .join("")
        .split("\n")
        .find((l) => l.includes(g.actionId))!;
      expect(row).toContain("succeeded");
      const events = await reader.actionReceipts!(g.actionId);
      expect(events.map((e) => e.seq)).toEqual(mine.slice(1, 3).map((l) => l.seq));
      expect((await reader.actionRecord(g.actionId))?.seq).toBe(mine[0].seq);
    } finally {
      await reader.close();
    }
  });
});
