/**
 * "Approve with changes" (SPEC "Changes before approval") through the use case on both
 * stores, real migrations and a real signing key: a change makes a revision, clears the
 * earlier approvals and counts as the editor's; forged pointers, wrong types, stale
 * revisions, non-approvers and a changed policy are refused with nothing changed; the
 * record binds the decided revision, the agent's digest and the edits. Digests are checked
 * with an independent canonical JSON written here, and the edits replayed with the patch
 * library.
 */
import { createHash, randomBytes } from "node:crypto";
import jsonpatch from "fast-json-patch";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parsePolicyText as parsePolicy } from "../../src/adapters/policy/load.js";
import { Approvals } from "../../src/app/approvals.js";
import type { Store } from "../../src/app/ports.js";
import type { Policy, RecordClaims } from "../../src/domain/types.js";
import { generateSigningKeyPem, loadSigningKey, signRecord } from "../../src/records/signing.js";
import { membersOf, PROOFS_ALREADY_CHECKED, STORE_BACKENDS } from "../support/stores.js";

const KEY = loadSigningKey(generateSigningKeyPem());

const POLICY = `issuer: https://cs.example.com
slack: { team_id: T0TEAM }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: Europe/Berlin }
defaults: { timeout: 30m, on_timeout: deny, approval_valid_for: 15m, max_pending: 100 }
agents:
  billing:
    owners: { technical: U0TECH }
    auth: { hmac_secret_env: BILLING_SECRET }
    allowed_actions: ["payments.*"]
routes:
  - name: big-refunds
    when: { action: ["payments.refund"], details: { "/amount": { gt: 1000 } } }
    approvers: { users: [U0CFO] }
    channel: C0CFO
    quorum: 1
    timeout: 30m
  - name: payments
    when: { action: ["payments.*"] }
    approvers: { users: [U0ALICE, U0BOB, U0CAROL] }
    channel: C0APPROVALS
    quorum: QUORUM
    timeout: 30m
`;

const policy = (quorum = 2, extra = ""): Policy =>
  parsePolicy(POLICY.replace("QUORUM", String(quorum)) + extra, "/etc/countersign/policy.yml");

const directory = membersOf("T0TEAM");
const proofs = PROOFS_ALREADY_CHECKED;

/** RFC 8785 for the plain values these tests use (ASCII strings, safe integers, booleans), written independently. */
function jcs(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(jcs).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${jcs(o[k])}`)
    .join(",")}}`;
}
const digest = (v: unknown) => createHash("sha256").update(jcs(v)).digest("base64url");
const claimsOf = (jws: string): RecordClaims =>
  JSON.parse(Buffer.from(jws.split(".")[1]!, "base64url").toString("utf8")) as RecordClaims;

const T0 = Date.parse("2026-03-02T10:00:00Z");
const voter = (user: string) => ({ user, team: "T0TEAM", isGuest: false });

describe.each(STORE_BACKENDS)("approve with changes on $name", (backend) => {
  let store: Store;
  let drop: () => Promise<void>;
  let clock: number;
  let n = 0;

  beforeEach(async () => {
    const opened = await backend.open();
    store = opened.store;
    drop = opened.drop;
    store.setSigner((claims) => ({ jws: signRecord(KEY, claims), kid: KEY.kid }));
    clock = T0;
  });
  afterEach(async () => {
    await drop();
  });

  const approvals = (p: Policy = policy()) =>
    new Approvals({ store, policy: p, proofs, directory, now: () => new Date(clock), random: randomBytes });

  const agentRequest = (details: Record<string, unknown>, editable = ["/amount", "/note", "/notify"]) => ({
    request_id: `r${++n}`,
    agent_id: "billing",
    action: { type: "payments.refund", summary: "Refund 120 EUR to customer 8812", details, editable },
    risk_class: "high",
    region: "eu",
    purpose: "A duplicate charge",
  });

  async function started(
    a: Approvals,
    details: Record<string, unknown> = { amount: 120, note: "dup", notify: true, customer: "8812" },
    editable?: string[],
  ) {
    const request = agentRequest(details, editable);
    const { action } = await a.submit({
      request,
      proof: "unused",
      judgedAt: new Date(clock),
      via: "http",
      proofChecked: { jti: `j${n}`, exp: Math.floor(clock / 1000) + 300, agentId: "billing" },
    });
    expect((await a.startLevel(action.id, 0)).kind).toBe("applied");
    return { id: action.id, request };
  }

  it("quorum 2: a change clears the earlier approval, counts as the editor's, and the record binds every revision", async () => {
    const a = approvals();
    const { id, request } = await started(a);
    expect(await a.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0, revision: 1 })).toMatchObject({
      kind: "applied",
      action: { status: "pending", revision: 1 },
    });
    clock += 1000;
    const changed = await a.change(
      id,
      voter("U0BOB"),
      { cardLevel: 0, revision: 1 },
      { "/amount": 100 },
      "partial refund",
    );
    expect(changed.kind).toBe("applied");
    const after = await store.getAction(id);
    expect(after?.revision).toBe(2);
    expect(after?.status).toBe("pending");
    // Alice approved revision 1: gone. Bob's change is his approval of revision 2.
    expect(after?.votes.map((v) => [v.user, v.vote, v.revision])).toEqual([["U0BOB", "approve", 2]]);
    expect(after?.revisions.map((r) => [r.revision, r.request.action.details])).toEqual([
      [2, { amount: 100, note: "dup", notify: true, customer: "8812" }],
    ]);
    // Alice's button still says revision 1: refused, nothing changed.
    const stale = await a.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0, revision: 1 });
    expect(stale).toMatchObject({ kind: "refused", code: "stale_revision" });
    // A second change by Carol on revision 2, then Alice approves revision 3.
    clock += 1000;
    expect(
      (
        await a.change(
          id,
          voter("U0CAROL"),
          { cardLevel: 0, revision: 2 },
          { "/note": "partial", "/notify": false },
        )
      ).kind,
    ).toBe("applied");
    expect((await store.getAction(id))?.votes.map((v) => v.user)).toEqual(["U0CAROL"]);
    clock += 1000;
    const approved = await a.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0, revision: 3 });
    expect(approved).toMatchObject({ kind: "applied", action: { status: "decided", verdict: "approved" } });
    const record = approved.kind === "applied" ? approved.record : null;
    const claims = claimsOf(record!.jws);
    const decided = {
      ...request,
      action: {
        ...request.action,
        details: { amount: 100, note: "partial", notify: false, customer: "8812" },
      },
    };
    expect(claims.action_sha256).toBe(digest(decided));
    expect(claims.original_sha256).toBe(digest(request));
    expect(claims.edits?.map((e) => [e.user, e.team])).toEqual([
      ["U0BOB", "T0TEAM"],
      ["U0CAROL", "T0TEAM"],
    ]);
    expect(claims.edits?.[0]?.patch).toEqual([{ op: "replace", path: "/action/details/amount", value: 100 }]);
    // The edits, replayed on the agent's request by the patch library, give the decided request.
    let replayed: unknown = structuredClone(request);
    for (const e of claims.edits ?? [])
      replayed = jsonpatch.applyPatch(replayed, e.patch as jsonpatch.Operation[], true, false).newDocument;
    expect(digest(replayed)).toBe(claims.action_sha256);
    expect(claims.votes.map((v) => [v.user, v.vote, v.revision])).toEqual([
      ["U0CAROL", "approve", 3],
      ["U0ALICE", "approve", 3],
    ]);
    const types = (await store.listEvents(id)).map((e) => e.type);
    expect(types.filter((t) => t === "changed")).toHaveLength(2);
  });

  it("quorum 1: the editor's change approves at once", async () => {
    const a = approvals(policy(1));
    const { id, request } = await started(a);
    const r = await a.change(id, voter("U0ALICE"), { cardLevel: 0, revision: 1 }, { "/amount": 80 });
    expect(r).toMatchObject({
      kind: "applied",
      action: { status: "decided", verdict: "approved", revision: 2 },
    });
    const claims = claimsOf(r.kind === "applied" ? r.record!.jws : "");
    expect(claims.original_sha256).toBe(digest(request));
    expect(claims.action_sha256).not.toBe(claims.original_sha256);
    expect(claims.votes).toEqual([
      expect.objectContaining({ user: "U0ALICE", vote: "approve", revision: 2 }),
    ]);
  });

  it("a record without changes has no original_sha256, edits or vote revisions", async () => {
    const a = approvals(policy(1));
    const { id, request } = await started(a);
    const r = await a.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0, revision: 1 });
    const claims = claimsOf(r.kind === "applied" ? r.record!.jws : "");
    expect(claims.action_sha256).toBe(digest(request));
    expect("original_sha256" in claims || "edits" in claims).toBe(false);
    expect(claims.votes[0]).not.toHaveProperty("revision");
  });

  it("refuses forged and wrong submissions, stale revisions and non-approvers, with nothing changed and an event each", async () => {
    const a = approvals();
    const { id } = await started(a);
    await a.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0, revision: 1 });
    const before = await store.getAction(id);
    const cases: [string, Parameters<Approvals["change"]>, string][] = [
      [
        "not editable",
        [id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/customer": "9999" }],
        "not_editable",
      ],
      [
        "outside details",
        [id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/action/summary": "x" }],
        "not_editable",
      ],
      [
        "string for number",
        [id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": "100" }],
        "wrong_type",
      ],
      [
        "number for boolean",
        [id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/notify": 0 }],
        "wrong_type",
      ],
      [
        "nothing changed",
        [id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 120 }],
        "no_change",
      ],
      [
        "stale revision",
        [id, voter("U0BOB"), { cardLevel: 0, revision: 2 }, { "/amount": 90 }],
        "stale_revision",
      ],
      [
        "not an approver",
        [id, voter("U0MALLORY"), { cardLevel: 0, revision: 1 }, { "/amount": 90 }],
        "not_an_approver",
      ],
      ["old level", [id, voter("U0BOB"), { cardLevel: 1, revision: 1 }, { "/amount": 90 }], "stale_card"],
    ];
    for (const [what, args, code] of cases) {
      const r = await a.change(...args);
      expect(r, what).toMatchObject({ kind: "refused", code });
    }
    const after = await store.getAction(id);
    expect(after?.revision).toBe(1);
    expect(after?.votes).toEqual(before?.votes);
    const refused = (await store.listEvents(id)).filter((e) => e.type === "change_refused");
    expect(refused.map((e) => e.data?.code)).toEqual(cases.map((c) => c[2]));
    expect(refused[0]?.data?.pointer).toBe("/customer");
  });

  it("refuses a change when the policy file changed since routing", async () => {
    const a = approvals();
    const { id } = await started(a);
    // The same rules in other bytes: its sha256 differs from the one the request was routed with.
    const reworded = approvals(policy(2, "# a comment\n"));
    const r = await reworded.change(id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 90 });
    expect(r).toMatchObject({ kind: "refused", code: "policy_changed" });
    expect((await store.getAction(id))?.revision).toBe(1);
  });

  it("re-routes a revision: a change that would take another route is refused with the reason, nothing changed", async () => {
    const a = approvals();
    const { id } = await started(a);
    await a.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0, revision: 1 });
    const r = await a.change(id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 5000 });
    expect(r).toMatchObject({ kind: "refused", code: "reroute" });
    expect(r.kind === "refused" && r.reason).toMatch(/route big-refunds, not route payments/);
    const after = await store.getAction(id);
    expect(after?.revision).toBe(1);
    expect(after?.votes.map((v) => v.user)).toEqual(["U0ALICE"]);
    // Within the route's conditions the change goes through.
    expect(
      (await a.change(id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 1000 })).kind,
    ).toBe("applied");
  });

  it("offers no change when the policy says editable: false for the action type", async () => {
    const forbidding = approvals(
      policy(2, "actions:\n  payments.refund: { min_risk: low, editable: false }\n"),
    );
    const { id } = await started(forbidding);
    const may = await forbidding.mayChange(id, voter("U0BOB"), { cardLevel: 0, revision: 1 });
    expect(may).toMatchObject({ kind: "refused", code: "not_editable" });
    const r = await forbidding.change(id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 90 });
    expect(r).toMatchObject({ kind: "refused", code: "not_editable" });
  });

  it("refuses a change of a request that lets approvers change nothing", async () => {
    const a = approvals();
    const { id } = await started(a, { amount: 5 }, []);
    const r = await a.change(id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 4 });
    expect(r).toMatchObject({ kind: "refused", code: "not_editable" });
  });

  it("a deny after a change denies, whatever revision its button showed", async () => {
    const a = approvals();
    const { id } = await started(a);
    await a.change(id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 90 });
    const r = await a.vote(id, voter("U0ALICE"), { vote: "deny", cardLevel: 0, revision: 1, comment: "no" });
    expect(r).toMatchObject({ kind: "applied", action: { status: "decided", verdict: "denied" } });
    const claims = claimsOf(r.kind === "applied" ? r.record!.jws : "");
    expect(claims.edits).toHaveLength(1);
    expect(claims.votes.map((v) => [v.user, v.vote, v.revision])).toEqual([
      ["U0BOB", "approve", 2],
      ["U0ALICE", "deny", 2],
    ]);
    const late = await a.change(id, voter("U0CAROL"), { cardLevel: 0, revision: 2 }, { "/amount": 80 });
    expect(late).toMatchObject({ kind: "refused", code: "already_decided" });
  });

  it("a change and a vote racing: one commits first, the other sees it; one record at most, never a lost revision", async () => {
    for (let round = 0; round < 6; round++) {
      const a = approvals(policy(1));
      const { id } = await started(a);
      const [changed, voted] = await Promise.all([
        a.change(id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 50 + round }),
        a.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0, revision: 1 }),
      ]);
      const wins = [changed, voted].filter((r) => r.kind === "applied");
      expect(wins).toHaveLength(1);
      const loser = [changed, voted].find((r) => r.kind === "refused");
      expect(loser).toMatchObject({ code: "already_decided" });
      const after = await store.getAction(id);
      const claims = claimsOf((await store.getRecord(id))!.jws);
      expect(claims.action_sha256).toBe(after!.revisions.at(-1)?.sha256 ?? after!.requestSha256);
    }
  });

  it("two changes of the same revision racing: the first wins, the second is stale", async () => {
    const a = approvals();
    const { id } = await started(a);
    const rs = await Promise.all([
      a.change(id, voter("U0BOB"), { cardLevel: 0, revision: 1 }, { "/amount": 60 }),
      a.change(id, voter("U0CAROL"), { cardLevel: 0, revision: 1 }, { "/amount": 70 }),
    ]);
    expect(rs.map((r) => r.kind).sort()).toEqual(["applied", "refused"]);
    expect(rs.find((r) => r.kind === "refused")).toMatchObject({ code: "stale_revision" });
    const after = await store.getAction(id);
    expect(after?.revision).toBe(2);
    expect(after?.votes).toHaveLength(1);
  });
});
