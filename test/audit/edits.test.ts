/**
 * "Approve with changes" in the audit trail: export lines carry the decided revision as
 * `request` and the agent's as `original_request`, and `audit verify` checks the chain
 * original_request -> edits -> request. Logs are signed and chained for real (TestChain);
 * each broken one is re-signed with the same key, so only the chain check can catch it.
 * Digests are computed here with `canonicalize` and node:crypto, not requestDigest.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { describe, expect, it } from "vitest";
import { CHANGE_EVENTS, formatTimeline } from "../../src/audit/events.js";
import { type ExportSource, exportChunks, parseExportQuery } from "../../src/audit/export.js";
import { ExportVerifier, type VerifyReport } from "../../src/audit/verify.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { decodeJws, signRecord } from "../../src/records/signing.js";
import { TestChain } from "./chain.js";
import { linesOf, newKey } from "./log.js";

const KEY = newKey();
const JWKS = [KEY.publicJwk];

function jcs(v: unknown): string {
  return createHash("sha256").update(canonicalize(v)!, "utf8").digest("base64url");
}

async function exportOf(sources: readonly ExportSource[], options: Record<string, string> = {}) {
  const parsed = parseExportQuery(options);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  let text = "";
  for await (const chunk of exportChunks([sources], parsed.query)) text += chunk;
  return linesOf(text);
}

function verify(lines: readonly string[]): VerifyReport {
  const v = new ExportVerifier({ jwks: JWKS });
  for (const l of lines) if (!v.push(l)) break;
  return v.finish();
}

/** seq 1 plain, seq 2 changed twice by approvers (120+1 -> 100 -> 80), seq 3 denied. */
function log() {
  const chain = new TestChain(KEY);
  const plain = chain.decision();
  const revised = chain.decision({ amounts: [100, 80] });
  const denied = chain.decision({ verdict: "denied" });
  return { chain, plain, revised, denied };
}

type Line = Record<string, unknown> & { record: string; request: unknown; original_request?: unknown };

/** The lines as objects, and back. */
const parse = (lines: readonly string[]) => lines.map((l) => JSON.parse(l) as Line);
const text = (lines: readonly Line[]) => lines.map((l) => JSON.stringify(l));

/** Re-signs line `i`'s record with its claims changed by `change`: a validly signed, wrong record. */
function resign(lines: Line[], i: number, change: (c: RecordClaims) => RecordClaims): Line[] {
  const claims = decodeJws(lines[i]!.record).payload as unknown as RecordClaims;
  const out = structuredClone(lines);
  out[i]!.record = signRecord(KEY, change(claims));
  return out;
}

function failed(r: VerifyReport): { seq: number | null; reason: string; message: string } {
  expect(r.ok, JSON.stringify(r)).toBe(false);
  return r.ok ? { seq: null, reason: "ok", message: "" } : r;
}

describe("export lines of a changed request", () => {
  it("carry the decided revision as request and the agent's as original_request, digest for digest", async () => {
    const { chain, revised } = log();
    const lines = parse(await exportOf(chain.sources()));
    expect(lines.map((l) => "original_request" in l)).toEqual([false, true, false]);
    const line = lines[1]!;
    const claims = decodeJws(line.record).payload as unknown as RecordClaims;
    expect(line.original_request).toEqual(revised.request);
    expect(line.request).toEqual(revised.decided);
    expect((line.request as { action: { details: unknown } }).action.details).toEqual({
      amount: 80,
      note: "revision 3",
    });
    expect(jcs(line.request)).toBe(claims.action_sha256);
    expect(jcs(line.original_request)).toBe(claims.original_sha256);
    expect(claims.edits).toHaveLength(2);
    // Plain lines hash as before.
    for (const l of [lines[0]!, lines[2]!]) {
      expect(jcs(l.request)).toBe((decodeJws(l.record).payload as { action_sha256: string }).action_sha256);
    }
  });

  it("verify passes the whole export and a filtered one", async () => {
    const { chain } = log();
    const all = verify(await exportOf(chain.sources()));
    expect(all).toMatchObject({ ok: true, decisions: 3, omitted: 0 });
    const approvedOnly = await exportOf(chain.sources(), { verdict: "approved" });
    expect(approvedOnly.filter((l) => l.includes('"omitted":true'))).toHaveLength(1);
    expect(verify(approvedOnly)).toMatchObject({ ok: true, decisions: 2, omitted: 1 });
  });
});

describe("audit verify refuses a broken chain of changes, naming the seq and the step", () => {
  it("an original_request altered", async () => {
    const { chain } = log();
    const lines = parse(await exportOf(chain.sources()));
    (lines[1]!.original_request as { purpose: string }).purpose = "something else";
    const f = failed(verify(text(lines)));
    expect(f).toMatchObject({ seq: 2, reason: "edited_claim" });
    expect(f.message).toContain("original_request against original_sha256");
  });

  it("an original_request dropped from the line", async () => {
    const { chain } = log();
    const lines = parse(await exportOf(chain.sources()));
    delete lines[1]!.original_request;
    const f = failed(verify(text(lines)));
    expect(f).toMatchObject({ seq: 2, reason: "malformed" });
    expect(f.message).toContain("no original_request");
  });

  it("an original_request added to a line whose record has no edits", async () => {
    const { chain } = log();
    const lines = parse(await exportOf(chain.sources()));
    lines[0]!.original_request = lines[0]!.request;
    expect(failed(verify(text(lines)))).toMatchObject({ seq: 1, reason: "edited_claim" });
  });

  it("signed edits that do not give the request (an edit's value altered)", async () => {
    const { chain } = log();
    const lines = resign(parse(await exportOf(chain.sources())), 1, (c) => ({
      ...c,
      edits: [
        c.edits![0]!,
        {
          ...c.edits![1]!,
          patch: c.edits![1]!.patch.map((op) => (op.path.endsWith("/amount") ? { ...op, value: 8 } : op)),
        },
      ],
    }));
    const f = failed(verify(text(lines)));
    expect(f).toMatchObject({ seq: 2, reason: "edited_claim" });
    expect(f.message).toContain("with the edits applied against action_sha256");
  });

  it("an edit removed from the record", async () => {
    const { chain } = log();
    // The last one: replaying the first alone gives amount 100, not the 80 action_sha256 covers.
    // (Dropping the first is caught by the signature alone, since the second replaces the same
    // members: each patch is absolute, a replace of the value, not a step from the one before.)
    const lines = resign(parse(await exportOf(chain.sources())), 1, (c) => ({ ...c, edits: [c.edits![0]!] }));
    const f = failed(verify(text(lines)));
    expect(f).toMatchObject({ seq: 2, reason: "edited_claim" });
    expect(f.message).toMatch(/action_sha256/);
  });

  it("an edit outside the agent's editable pointers, even when every digest matches", async () => {
    const { chain } = log();
    const lines = parse(await exportOf(chain.sources()));
    // A wider change, signed consistently: request, action_sha256 and the edit all agree.
    const request = structuredClone(lines[1]!.request) as { action: { details: Record<string, unknown> } };
    request.action.details["currency"] = "USD";
    const out = resign(lines, 1, (c) => ({
      ...c,
      action_sha256: jcs(request),
      edits: [
        ...c.edits!,
        { ...c.edits![1]!, patch: [{ op: "add", path: "/action/details/currency", value: "USD" }] },
      ],
    }));
    out[1]!.request = request;
    const f = failed(verify(text(out)));
    expect(f).toMatchObject({ seq: 2, reason: "edited_claim" });
    expect(f.message).toContain("the edits");
    expect(f.message).toContain('"add" at "/action/details/currency"');
  });

  it("an edit removed from the exported record without re-signing it", async () => {
    const { chain } = log();
    const lines = parse(await exportOf(chain.sources()));
    const [h, p, sig] = lines[1]!.record.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as RecordClaims;
    const shorter = Buffer.from(JSON.stringify({ ...claims, edits: [claims.edits![1]] })).toString(
      "base64url",
    );
    lines[1]!.record = `${h}.${shorter}.${sig}`;
    expect(failed(verify(text(lines)))).toMatchObject({ seq: 2, reason: "bad_signature" });
  });

  it("a request that is not what the edits give (the line's request altered)", async () => {
    const { chain } = log();
    const lines = parse(await exportOf(chain.sources()));
    (lines[1]!.request as { action: { details: { amount: number } } }).action.details.amount = 8000;
    expect(failed(verify(text(lines)))).toMatchObject({ seq: 2, reason: "edited_claim" });
  });
});

describe("audit events shows changes", () => {
  it("lists each change old -> new, agent text made visible, the patch left to the record", () => {
    const out = formatTimeline(
      {
        id: "act_1",
        agentId: "billing-agent",
        requestId: "r-1",
        actionType: "payments.refund",
        status: "decided",
        requestedAt: 0,
      },
      [
        {
          type: CHANGE_EVENTS.changed,
          actor: "slack:U0ALICE",
          at: 1000,
          data: {
            revision: 2,
            changes: [
              { pointer: "/amount", old: 120, new: 80 },
              { pointer: "/note", old: "as asked", new: "half\u001b[2J" },
            ],
            patch: [{ op: "replace", path: "/action/details/amount", value: 80 }],
          },
        },
        {
          type: CHANGE_EVENTS.refused,
          actor: "slack:U0MALLORY",
          at: 2000,
          data: { reason: "not an approver" },
        },
      ],
      null,
    );
    expect(out).toContain(
      'request_changed  revision=2 /amount: 120 → 80; /note: "as asked" → "half\\u001b[2J"',
    );
    expect(out).not.toContain("/action/details/amount");
    expect(out).toContain('change_refused   reason="not an approver"');
  });
});
