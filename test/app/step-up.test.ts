/**
 * Step-up through the use case on both stores (SPEC "Step-up"): at a level with
 * `step_up: passkey` an approval without a verified assertion casts nothing, and only
 * approvals confirmed at that level count towards its quorum; a deny needs no step-up.
 * The assertion itself is the passkey page's to verify (test/browser/passkeys.test.ts);
 * here the core must carry it into the record and never count an approval without it.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parsePolicyText } from "../../src/adapters/policy/load.js";
import { Approvals } from "../../src/app/approvals.js";
import type { Store } from "../../src/app/ports.js";
import type { RecordClaims, StepUpProof } from "../../src/domain/types.js";
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
  ops:
    owners: { technical: U0TECH }
    auth: { hmac_secret_env: OPS_SECRET }
    allowed_actions: ["db.*", "infra.*"]
routes:
  - name: drops
    when: { action: ["db.drop"] }
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0OPS
    quorum: 2
    timeout: 30m
    step_up: passkey
  - name: deletes
    when: { action: ["infra.delete"] }
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0OPS
    quorum: 2
    timeout: 30m
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0ALICE, U0CFO, U0DAN] }, quorum: 2, timeout: 15m, step_up: passkey }
`;

const directory = membersOf("T0TEAM");
const proofs = PROOFS_ALREADY_CHECKED;
const proof = (user: string): StepUpProof => ({
  method: "webauthn",
  credential_id: `cred-${user}`,
  public_key: { kty: "OKP", crv: "Ed25519", x: "AAAA" },
  authenticator_data: "YXV0aA",
  client_data_json: "Y2xpZW50",
  signature: "c2ln",
  nonce: `nonce-${user}`,
});
const voter = (user: string) => ({ user, team: "T0TEAM", isGuest: false });
const claimsOf = (jws: string): RecordClaims =>
  JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString("utf8")) as RecordClaims;

describe.each(STORE_BACKENDS)("step-up levels on $name", (backend) => {
  let store: Store;
  let drop: () => Promise<void>;
  let clock = Date.parse("2026-03-02T10:00:00Z");
  let n = 0;
  let approvals: Approvals;

  beforeEach(async () => {
    const opened = await backend.open();
    store = opened.store;
    drop = opened.drop;
    store.setSigner((claims) => ({ jws: signRecord(KEY, claims), kid: KEY.kid }));
    approvals = new Approvals({
      store,
      policy: parsePolicyText(POLICY, "/etc/countersign/policy.yml"),
      proofs,
      directory,
      now: () => new Date(clock),
      random: randomBytes,
    });
  });
  afterEach(async () => {
    await drop();
  });

  async function started(type: string): Promise<string> {
    const { action } = await approvals.submit({
      request: {
        request_id: `r${++n}`,
        agent_id: "ops",
        action: {
          type,
          summary: "Drop the staging database",
          details: { database: "staging", keep_backup_days: 7 },
          editable: ["/keep_backup_days"],
        },
        risk_class: "high",
        region: "eu",
        purpose: "Decommissioning",
      },
      proof: "unused",
      judgedAt: new Date(clock),
      via: "http",
      proofChecked: { jti: `j${n}-${randomUUID()}`, exp: Math.floor(clock / 1000) + 300, agentId: "ops" },
    });
    expect((await approvals.startLevel(action.id, 0)).kind).toBe("applied");
    return action.id;
  }

  it("an approval without a passkey casts nothing; confirmed approvals decide and carry step_up into the record", async () => {
    const id = await started("db.drop");
    const plain = await approvals.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0 });
    expect(plain).toMatchObject({ kind: "refused", code: "step_up_required" });
    expect((await store.getAction(id))?.votes).toEqual([]);
    clock += 1000;
    const first = await approvals.vote(id, voter("U0ALICE"), {
      vote: "approve",
      cardLevel: 0,
      step_up: proof("U0ALICE"),
    });
    expect(first).toMatchObject({ kind: "applied", action: { status: "pending" } });
    const second = await approvals.vote(id, voter("U0BOB"), {
      vote: "approve",
      cardLevel: 0,
      step_up: proof("U0BOB"),
    });
    expect(second).toMatchObject({ kind: "applied", action: { status: "decided", verdict: "approved" } });
    const claims = claimsOf(second.kind === "applied" ? (second.record?.jws ?? "") : "");
    expect(claims.votes.map((v) => [v.user, v.step_up?.nonce])).toEqual([
      ["U0ALICE", "nonce-U0ALICE"],
      ["U0BOB", "nonce-U0BOB"],
    ]);
  });

  it("a deny needs no step-up", async () => {
    const id = await started("db.drop");
    const denied = await approvals.vote(id, voter("U0BOB"), {
      vote: "deny",
      cardLevel: 0,
      comment: "not today",
    });
    expect(denied).toMatchObject({ kind: "applied", action: { status: "decided", verdict: "denied" } });
  });

  it("at a step-up escalation level an approval carried over without a passkey does not count", async () => {
    const id = await started("infra.delete");
    // Level 0 (no step-up, quorum 2): Alice approves, nobody else does, its deadline passes.
    const atLevel0 = await approvals.vote(id, voter("U0ALICE"), { vote: "approve", cardLevel: 0 });
    expect(atLevel0).toMatchObject({ kind: "applied", action: { status: "pending" } });
    clock = ((await store.getAction(id))?.deadlineAt ?? clock) + 1;
    expect((await approvals.deadline(id, 0)).kind).toBe("applied");
    expect((await approvals.startLevel(id, 1)).kind).toBe("applied");
    expect((await store.getAction(id))?.level).toBe(1);
    const plain = await approvals.vote(id, voter("U0CFO"), { vote: "approve", cardLevel: 1 });
    expect(plain).toMatchObject({ kind: "refused", code: "step_up_required" });
    const cfo = await approvals.vote(id, voter("U0CFO"), {
      vote: "approve",
      cardLevel: 1,
      step_up: proof("U0CFO"),
    });
    // Alice's carried-over approval has no passkey for this level: one of two, still pending.
    expect(cfo).toMatchObject({ kind: "applied", action: { status: "pending", level: 1 } });
    const dan = await approvals.vote(id, voter("U0DAN"), {
      vote: "approve",
      cardLevel: 1,
      step_up: proof("U0DAN"),
    });
    expect(dan).toMatchObject({ kind: "applied", action: { status: "decided", verdict: "approved" } });
  });

  it("a change at a step-up level makes the revision, and the editor's approval waits for their passkey", async () => {
    const id = await started("db.drop");
    const changed = await approvals.change(
      id,
      voter("U0ALICE"),
      { cardLevel: 0, revision: 1 },
      { "/keep_backup_days": 30 },
    );
    expect(changed).toMatchObject({ kind: "applied", action: { status: "pending", revision: 2 } });
    expect((await store.getAction(id))?.votes).toEqual([]);
    const stale = await approvals.vote(id, voter("U0ALICE"), {
      vote: "approve",
      cardLevel: 0,
      revision: 1,
      step_up: proof("U0ALICE"),
    });
    expect(stale).toMatchObject({ kind: "refused", code: "stale_revision" });
    for (const user of ["U0ALICE", "U0BOB"]) {
      clock += 1000;
      await approvals.vote(id, voter(user), {
        vote: "approve",
        cardLevel: 0,
        revision: 2,
        step_up: proof(user),
      });
    }
    const a = await store.getAction(id);
    expect(a).toMatchObject({ status: "decided", verdict: "approved" });
    const claims = claimsOf((await store.getRecord(id))?.jws ?? "");
    expect(claims.edits?.map((e) => e.user)).toEqual(["U0ALICE"]);
    expect(claims.votes.map((v) => [v.user, v.revision, v.step_up?.nonce])).toEqual([
      ["U0ALICE", 2, "nonce-U0ALICE"],
      ["U0BOB", 2, "nonce-U0BOB"],
    ]);
  });
});
