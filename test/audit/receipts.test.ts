/**
 * Receipts in the audit trail: the export lines and CSV columns they make, and `audit
 * verify`'s rules of what may happen to an approval. Every log here is signed and chained
 * for real; the broken ones break only the rule under test, so each failure can come from
 * that rule alone.
 */
import { describe, expect, it } from "vitest";
import { formatTimeline, GRANT_EVENTS } from "../../src/audit/events.js";
import { CSV_COLUMNS, type ExportSource, exportChunks, parseExportQuery } from "../../src/audit/export.js";
import { ExportVerifier, type VerifyReport } from "../../src/audit/verify.js";
import { decodeJws, jwsDigest, signRecord } from "../../src/records/signing.js";
import { type Decided, TestChain } from "./chain.js";
import { linesOf, newKey } from "./log.js";

const KEY = newKey();
const JWKS = [KEY.publicJwk];
const PAYMENTS = { executor: "payments-api" } as const;

async function exportOf(
  sources: readonly ExportSource[],
  options: Record<string, string> = {},
): Promise<string> {
  const parsed = parseExportQuery(options);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  let text = "";
  // Pages of two: a receipt and its decision often land on different pages.
  const pages: ExportSource[][] = [];
  for (let i = 0; i < sources.length; i += 2) pages.push(sources.slice(i, i + 2));
  for await (const chunk of exportChunks(pages, parsed.query)) text += chunk;
  return text;
}

function verify(lines: readonly string[]): VerifyReport {
  const v = new ExportVerifier({ jwks: JWKS });
  for (const l of lines) if (!v.push(l)) break;
  return v.finish();
}

async function verifyChain(chain: TestChain): Promise<VerifyReport> {
  return verify(linesOf(await exportOf(chain.sources())));
}

function failure(r: VerifyReport): { seq: number | null; reason: string } {
  expect(r.ok, JSON.stringify(r)).toBe(false);
  return r.ok ? { seq: null, reason: "ok" } : { seq: r.seq, reason: r.reason };
}

/**
 * A log with the whole life of approvals: redeemed and succeeded; revoked; redeemed and
 * failed; denied; approved for another agent and redeemed; approved and never used.
 */
function mixedLog(): { chain: TestChain; d: Decided[] } {
  const chain = new TestChain(KEY);
  const d: Decided[] = [];
  d.push(chain.decision()); // 1
  chain.receipt(d[0]!, { kind: "redeemed", by: PAYMENTS }); // 2
  d.push(chain.decision({ agent: "crm-agent", region: "us" })); // 3
  chain.receipt(d[0]!, { kind: "outcome", by: PAYMENTS, status: "succeeded", detail: "refund re_123" }); // 4
  chain.receipt(d[1]!, {
    kind: "revoked",
    by: { user: "U0ALICE", team: "T0TEST" },
    reason_text: "wrong customer",
  }); // 5
  d.push(chain.decision()); // 6
  chain.receipt(d[2]!, { kind: "redeemed", by: PAYMENTS }); // 7
  chain.receipt(d[2]!, { kind: "outcome", by: PAYMENTS, status: "failed", detail: "card declined" }); // 8
  d.push(chain.decision({ verdict: "denied" })); // 9
  d.push(chain.decision({ agent: "crm-agent", region: "us" })); // 10
  chain.receipt(d[4]!, { kind: "redeemed", by: { executor: "crm-api" } }); // 11
  chain.receipt(d[4]!, { kind: "revoked", by: { cli: true }, reason_text: "too late, but noted" }); // 12
  d.push(chain.decision()); // 13
  chain.receipt(d[5]!, { kind: "outcome", by: { agent: "billing-agent" }, status: "succeeded" }); // 14
  return { chain, d };
}

describe("export: receipts beside the decisions", () => {
  it("a receipt's line is {seq, kind, receipt_id, agent_id, at, action_id, decision, by, ..., receipt}; decision lines say kind decision", async () => {
    const { chain, d } = mixedLog();
    const lines = linesOf(await exportOf(chain.sources())).map(
      (l) => JSON.parse(l) as Record<string, unknown>,
    );
    expect(lines).toHaveLength(14);
    expect(lines[0]).toMatchObject({ seq: 1, kind: "decision", decision_id: d[0]!.claims.jti });
    const receipt = lines[3]!;
    expect(Object.keys(receipt)).toEqual([
      "seq",
      "kind",
      "receipt_id",
      "agent_id",
      "action_id",
      "decision",
      "at",
      "by",
      "status",
      "detail",
      "receipt",
    ]);
    expect(receipt).toMatchObject({
      seq: 4,
      kind: "outcome",
      agent_id: "billing-agent",
      action_id: d[0]!.claims.action_id,
      decision: d[0]!.claims.jti,
      by: PAYMENTS,
      status: "succeeded",
      detail: "refund re_123",
    });
    const signed = decodeJws(receipt["receipt"] as string);
    expect(signed.header).toEqual({ alg: "EdDSA", kid: KEY.kid, typ: "receipt+jwt" });
    expect(signed.payload).toMatchObject({
      seq: 4,
      decision_sha256: jwsDigest(d[0]!.jws),
      prev: jwsDigest(chain.sources()[2]!.jws),
    });
    expect(lines[4]).toMatchObject({
      kind: "revoked",
      by: { user: "U0ALICE", team: "T0TEST" },
      reason_text: "wrong customer",
    });
  });

  it("CSV: one row per decision, with redeemed_at, outcome and revoked_at at the end", async () => {
    const { chain } = mixedLog();
    const rows = (await exportOf(chain.sources(), { format: "csv" })).split("\r\n").filter((r) => r !== "");
    expect(rows[0]).toBe(CSV_COLUMNS.join(","));
    expect(CSV_COLUMNS.slice(-3)).toEqual(["redeemed_at", "outcome", "revoked_at"]);
    const tail = rows.slice(1).map((r) => [r.split(",")[0], ...r.split(",").slice(-3)]);
    const at = (seq: number) => String(decodeJws(chain.sources()[seq - 1]!.jws).payload["at"]);
    expect(tail).toEqual([
      ["1", at(2), "succeeded", ""],
      ["3", "", "", at(5)],
      ["6", at(7), "failed", ""],
      ["9", "", "", ""],
      ["10", at(11), "", at(12)],
      ["13", "", "succeeded", ""],
    ]);
  });
});

describe("audit verify: a log with receipts", () => {
  it("a valid mixed log passes, counting decisions and receipts", async () => {
    const { chain } = mixedLog();
    expect(await verifyChain(chain)).toMatchObject({
      ok: true,
      records: 14,
      decisions: 6,
      receipts: 8,
      omitted: 0,
      lastSeq: 14,
    });
  });

  it("an intact filtered export passes: a receipt is kept exactly when its decision is", async () => {
    const { chain } = mixedLog();
    for (const joined of [true, false]) {
      const lines = linesOf(await exportOf(chain.sources(joined), { agent: "crm-agent" }));
      const kept = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => !l["omitted"]);
      expect(kept.map((l) => l["seq"])).toEqual([3, 5, 10, 11, 12]);
      expect(verify(lines)).toMatchObject({ ok: true, decisions: 2, receipts: 3, omitted: 9, lastSeq: 14 });

      const us = linesOf(await exportOf(chain.sources(joined), { region: "eu", verdict: "approved" }));
      const keptUs = us.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => !l["omitted"]);
      expect(keptUs.map((l) => l["seq"])).toEqual([1, 2, 4, 6, 7, 8, 13, 14]);
      expect(verify(us)).toMatchObject({ ok: true, decisions: 3, receipts: 5 });
    }
  });

  it("a decision line from an export made before receipts (no kind) still verifies", async () => {
    const { chain } = mixedLog();
    const lines = linesOf(await exportOf(chain.sources())).map((l) => {
      const o = JSON.parse(l) as Record<string, unknown>;
      if (o["kind"] === "decision") delete o["kind"];
      return JSON.stringify(o);
    });
    expect(verify(lines)).toMatchObject({ ok: true, receipts: 8 });
  });

  it("a second redemption of one decision: redeemed_twice, at the second", async () => {
    const chain = new TestChain(KEY);
    const d = chain.decision();
    chain.receipt(d, { kind: "redeemed", by: PAYMENTS });
    chain.decision();
    chain.receipt(d, { kind: "redeemed", by: { executor: "other-api" } });
    expect(failure(await verifyChain(chain))).toEqual({ seq: 4, reason: "redeemed_twice" });
  });

  it("a redemption after a revocation: redeemed_after_revocation", async () => {
    const chain = new TestChain(KEY);
    const d = chain.decision();
    chain.receipt(d, { kind: "revoked", by: { cli: true }, reason_text: "stop" });
    chain.receipt(d, { kind: "redeemed", by: PAYMENTS });
    expect(failure(await verifyChain(chain))).toEqual({ seq: 3, reason: "redeemed_after_revocation" });
  });

  it("a receipt naming a decision that is not in the log: unknown_decision", async () => {
    const chain = new TestChain(KEY);
    chain.decision();
    const elsewhere = new TestChain(KEY).decision();
    chain.receipt(elsewhere, { kind: "redeemed", by: PAYMENTS });
    expect(failure(await verifyChain(chain))).toEqual({ seq: 2, reason: "unknown_decision" });
  });

  it("a receipt naming a denied decision: unknown_decision (only approvals are used)", async () => {
    const chain = new TestChain(KEY);
    const d = chain.decision({ verdict: "denied" });
    chain.receipt(d, { kind: "redeemed", by: PAYMENTS });
    expect(failure(await verifyChain(chain))).toEqual({ seq: 2, reason: "unknown_decision" });
  });

  it("a receipt whose decision_sha256 is not its decision's digest: decision_mismatch", async () => {
    const chain = new TestChain(KEY);
    const d = chain.decision();
    chain.receipt(
      d,
      { kind: "redeemed", by: PAYMENTS },
      { override: { decision_sha256: jwsDigest("another") } },
    );
    expect(failure(await verifyChain(chain))).toEqual({ seq: 2, reason: "decision_mismatch" });
  });

  it("a receipt that names the decision but another action: decision_mismatch", async () => {
    const chain = new TestChain(KEY);
    const d = chain.decision();
    chain.receipt(d, { kind: "redeemed", by: PAYMENTS }, { override: { action_id: "act_other" } });
    expect(failure(await verifyChain(chain))).toEqual({ seq: 2, reason: "decision_mismatch" });
  });

  it("a receipt line deleted from the export: record_dropped at its seq", async () => {
    const { chain } = mixedLog();
    const lines = linesOf(await exportOf(chain.sources()));
    lines.splice(6, 1); // seq 7, the redemption of the third approval
    expect(failure(verify(lines))).toEqual({ seq: 7, reason: "record_dropped" });
  });

  it("a redemption at valid_until: redeemed_after_expiry (and a moment before passes)", async () => {
    const late = new TestChain(KEY);
    const d = late.decision({ validForMs: 60_000 });
    late.receipt(d, { kind: "redeemed", by: PAYMENTS }, { at: d.claims.valid_until! });
    expect(failure(await verifyChain(late))).toEqual({ seq: 2, reason: "redeemed_after_expiry" });

    const inTime = new TestChain(KEY);
    const e = inTime.decision({ validForMs: 60_000 });
    inTime.receipt(
      e,
      { kind: "redeemed", by: PAYMENTS },
      {
        at: new Date(Date.parse(e.claims.valid_until!) - 1).toISOString(),
      },
    );
    expect(await verifyChain(inTime)).toMatchObject({ ok: true, receipts: 1 });
  });

  it("two outcomes for one decision: two_outcomes, at the second", async () => {
    const chain = new TestChain(KEY);
    const d = chain.decision();
    chain.receipt(d, { kind: "redeemed", by: PAYMENTS });
    chain.receipt(d, { kind: "outcome", by: PAYMENTS, status: "failed" });
    chain.receipt(d, { kind: "outcome", by: PAYMENTS, status: "succeeded" });
    expect(failure(await verifyChain(chain))).toEqual({ seq: 4, reason: "two_outcomes" });
  });

  it("an outcome from an executor that did not redeem, or from the agent after a redemption: outcome_not_by_redeemer", async () => {
    const stranger = new TestChain(KEY);
    const d = stranger.decision();
    stranger.receipt(d, { kind: "redeemed", by: PAYMENTS });
    stranger.receipt(d, { kind: "outcome", by: { executor: "other-api" }, status: "succeeded" });
    expect(failure(await verifyChain(stranger))).toEqual({ seq: 3, reason: "outcome_not_by_redeemer" });

    const agent = new TestChain(KEY);
    const e = agent.decision();
    agent.receipt(e, { kind: "redeemed", by: PAYMENTS });
    agent.receipt(e, { kind: "outcome", by: { agent: "billing-agent" }, status: "succeeded" });
    expect(failure(await verifyChain(agent))).toEqual({ seq: 3, reason: "outcome_not_by_redeemer" });
  });

  it("a decision revoked twice: revoked_twice", async () => {
    const chain = new TestChain(KEY);
    const d = chain.decision();
    chain.receipt(d, { kind: "revoked", by: { cli: true }, reason_text: "one" });
    chain.receipt(d, { kind: "revoked", by: { user: "U0BOB", team: "T0TEST" }, reason_text: "two" });
    expect(failure(await verifyChain(chain))).toEqual({ seq: 3, reason: "revoked_twice" });
  });

  it("an edited receipt claim: the line's field is edited_claim, the JWS payload is bad_signature", async () => {
    const { chain } = mixedLog();
    const lines = linesOf(await exportOf(chain.sources()));
    const edit = (i: number, change: (l: Record<string, unknown>) => void): string[] => {
      const copy = [...lines];
      const o = JSON.parse(copy[i]!) as Record<string, unknown>;
      change(o);
      copy[i] = JSON.stringify(o);
      return copy;
    };
    // The line says it succeeded; the receipt signed failed.
    expect(failure(verify(edit(7, (l) => (l["status"] = "succeeded"))))).toEqual({
      seq: 8,
      reason: "edited_claim",
    });
    // The executor's name changed in the nested `by`.
    expect(failure(verify(edit(6, (l) => (l["by"] = { executor: "someone-else" }))))).toEqual({
      seq: 7,
      reason: "edited_claim",
    });
    // A field no receipt signs, and a signed one removed.
    expect(failure(verify(edit(1, (l) => (l["note"] = "x"))))).toEqual({ seq: 2, reason: "edited_claim" });
    expect(failure(verify(edit(1, (l) => delete l["by"])))).toEqual({ seq: 2, reason: "malformed" });
    // The payload inside the JWS: the signature no longer verifies.
    const tampered = edit(7, (l) => {
      const [h, p, s] = (l["receipt"] as string).split(".");
      const payload = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
      payload["status"] = "succeeded";
      l["receipt"] = `${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`;
      l["status"] = "succeeded";
    });
    expect(failure(verify(tampered))).toEqual({ seq: 8, reason: "bad_signature" });
  });

  it("a receipt cannot pass for a decision record, nor a record for a receipt: their typ differs", async () => {
    const { chain } = mixedLog();
    const lines = linesOf(await exportOf(chain.sources()));
    const asRecord = JSON.parse(lines[1]!) as Record<string, unknown>;
    const decision = JSON.parse(lines[0]!) as Record<string, unknown>;
    const swapped = [...lines];
    swapped[1] = JSON.stringify({ ...decision, seq: 2, record: asRecord["receipt"] });
    expect(failure(verify(swapped))).toEqual({ seq: 2, reason: "bad_signature" });
    const other = [...lines];
    other[0] = JSON.stringify({ seq: 1, kind: "redeemed", receipt: decision["record"] });
    expect(failure(verify(other))).toEqual({ seq: 1, reason: "bad_signature" });
  });

  it("a receipt re-signed with a key outside the JWKS: unknown_key", async () => {
    const chain = new TestChain(newKey());
    const d = chain.decision();
    chain.receipt(d, { kind: "redeemed", by: PAYMENTS });
    const lines = linesOf(await exportOf(chain.sources()));
    // The decision is re-signed with the trusted key; the receipt keeps the foreign one.
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    first["record"] = signRecord(KEY, d.claims);
    lines[0] = JSON.stringify(first);
    expect(failure(verify(lines))).toEqual({ seq: 2, reason: "unknown_key" });
  });
});

describe("audit events: what happened to the approval", () => {
  it("shows grant events and lists the receipts under the record, control characters made visible", () => {
    const chain = new TestChain(KEY);
    const d = chain.decision();
    const redeemed = chain.receipt(d, { kind: "redeemed", by: PAYMENTS });
    const outcome = chain.receipt(d, {
      kind: "outcome",
      by: PAYMENTS,
      status: "failed",
      detail: "declined\u001b[2J\u202e",
    });
    const at = Date.parse(d.claims.decided_at);
    const text = formatTimeline(
      {
        id: d.claims.action_id,
        agentId: "billing-agent",
        requestId: d.claims.request_id,
        actionType: "payments.refund",
        status: "approved",
        requestedAt: at - 30_000,
      },
      [
        {
          type: GRANT_EVENTS.redeemRefused,
          actor: "executor:crm-api",
          at: at + 500,
          data: { code: "forbidden", reason: "may_redeem does not cover payments.refund", record: d.jws },
        },
        {
          type: GRANT_EVENTS.redeemed,
          actor: "executor:payments-api",
          at: at + 1000,
          data: { receipt_seq: 2 },
        },
        {
          type: GRANT_EVENTS.outcomeReported,
          actor: "executor:payments-api",
          at: at + 2000,
          data: { status: "failed", receipt_seq: 3 },
        },
      ],
      { seq: 1, verdict: "approved", decidedAt: at, decisionId: d.claims.jti, digest: jwsDigest(d.jws) },
      [
        { seq: 2, jws: redeemed },
        { seq: 3, jws: outcome },
      ],
    );
    expect(text).toMatch(/redeem_refused\s+code=forbidden/);
    expect(text).not.toContain(d.jws);
    expect(text).toMatch(/outcome_reported\s+status=failed receipt_seq=3/);
    const lines = text.trimEnd().split("\n");
    expect(lines.at(-2)).toBe(
      `receipt seq 2: redeemed at ${String(decodeJws(redeemed).payload["at"])} by executor payments-api, sha256 ${jwsDigest(redeemed)}`,
    );
    expect(lines.at(-1)).toMatch(
      /^receipt seq 3: outcome at \S+ by executor payments-api, status=failed detail=declined\[U\+001B\]\[2J\[U\+202E\], sha256 /,
    );
  });
});
