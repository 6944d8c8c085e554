/**
 * The approval use-cases on a real store (SQLite in memory, the real migrations) with a
 * directory and proof check typed against the real ports: plan, eligibility, quorum,
 * escalation and orphan expiry, without Redis or Slack.
 */
import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SqliteStore } from "../../src/adapters/db/sqlite.js";
import { parsePolicyText as parsePolicy } from "../../src/adapters/policy/load.js";
import { Approvals } from "../../src/app/approvals.js";
import type { Directory, DirectoryUser, ProofCheck } from "../../src/app/ports.js";
import type { Policy } from "../../src/domain/types.js";

const HEAD = `issuer: https://cs.example.com
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
`;

const ROUTES = `routes:
  - name: payments
    when: { action: ["payments.*"] }
    approvers: { users: [U0ALICE, U0BOB, U0GUEST, U0BOT, U0GONE, U0ELSEWHERE, U0ANA], groups: [S0FIN] }
    channel: C0APPROVALS
    quorum: 2
    timeout: 30m
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] }, quorum: 1, timeout: 15m }
`;

function policy(routes = ROUTES): Policy {
  return parsePolicy(`${HEAD}${routes}`, "/etc/countersign/policy.yml");
}

const person = (id: string, o: Partial<DirectoryUser> = {}): DirectoryUser => ({
  id,
  team: "T0TEAM",
  isGuest: false,
  isBot: false,
  deleted: false,
  ...o,
});

/** The directory as Slack would answer it: a guest, a bot, a deactivated user, a user of another workspace. */
class FakeDirectory implements Directory {
  readonly users = new Map<string, DirectoryUser>(
    [
      person("U0ALICE"),
      person("U0BOB"),
      person("U0CAROL"),
      person("U0CFO"),
      person("U0ANA"),
      person("U0GUEST", { isGuest: true }),
      person("U0BOT", { isBot: true }),
      person("U0GONE", { deleted: true }),
      person("U0ELSEWHERE", { team: "T0OTHER" }),
    ].map((u) => [u.id, u]),
  );
  async user(id: string): Promise<DirectoryUser | null> {
    return this.users.get(id) ?? null;
  }
  async groupMembers(groupId: string): Promise<readonly string[]> {
    return groupId === "S0FIN" ? ["U0CAROL", "U0ALICE"] : [];
  }
}

/** Proofs are checked by the HTTP API in these tests (`proofChecked`); a call here is a bug. */
const proofs: ProofCheck = {
  async verify() {
    throw new Error("the proof should have been checked already");
  },
};

const T0 = Date.parse("2026-03-02T10:00:00Z");

describe("Approvals", () => {
  let store: SqliteStore;
  let clock: number;
  let jti = 0;

  const approvals = (p: Policy = policy()) =>
    new Approvals({
      store,
      policy: p,
      proofs,
      directory: new FakeDirectory(),
      now: () => new Date(clock),
      random: randomBytes,
    });

  async function submit(a: Approvals, extra: Record<string, unknown> = {}) {
    jti++;
    return a.submit({
      request: {
        request_id: `r${jti}`,
        agent_id: "billing",
        action: { type: "payments.refund", summary: "Refund 120 EUR to customer 8812" },
        risk_class: "high",
        region: "eu",
        purpose: "A duplicate charge",
        ...extra,
      },
      proof: "unused",
      judgedAt: new Date(clock),
      via: "http",
      proofChecked: { jti: `j${jti}`, exp: Math.floor(clock / 1000) + 300, agentId: "billing" },
    });
  }

  const vote = (a: Approvals, id: string, user: string, v: "approve" | "deny" = "approve", team = "T0TEAM") =>
    a.vote(id, { user, team, isGuest: false }, { vote: v, cardLevel: 0 });

  beforeEach(() => {
    store = new SqliteStore(":memory:");
    store.setSigner((claims) => ({ jws: `signed.${claims.seq}.${claims.jti}`, kid: "test" }));
    clock = T0;
  });
  afterEach(async () => {
    await store.close();
  });

  it("plans a routed request: pending at level 0 with the route's quorum, its first level queued", async () => {
    const a = approvals();
    const r = await submit(a);
    expect(r.repeat).toBe(false);
    expect(r.action).toMatchObject({ status: "pending", routeName: "payments", level: 0, quorum: 2 });
    const events = (await store.listEvents(r.action.id)).map((e) => e.type);
    expect(events).toEqual(["received", "routed"]);
    expect(await store.pendingEffectCount()).toBeGreaterThan(0);
  });

  it("makes eligible only members of this workspace who are not guests, bots, deactivated or the requester", async () => {
    const a = approvals();
    const { action } = await submit(a, { on_behalf_of: { slack_user: "U0ANA" } });
    const started = await a.startLevel(action.id, 0);
    expect(started.kind).toBe("applied");
    const eligible = [...((await store.getAction(action.id))?.eligible ?? [])].sort();
    expect(eligible).toEqual(["U0ALICE", "U0BOB", "U0CAROL"]);
  });

  it("refuses a vote from someone not eligible, and from another workspace", async () => {
    const a = approvals();
    const { action } = await submit(a);
    await a.startLevel(action.id, 0);
    const guest = await vote(a, action.id, "U0GUEST");
    expect(guest).toMatchObject({ kind: "refused" });
    const foreign = await vote(a, action.id, "U0ALICE", "approve", "T0OTHER");
    expect(foreign).toMatchObject({ kind: "refused", code: "other_workspace" });
    expect((await store.getAction(action.id))?.votes).toEqual([]);
  });

  it("decides only at quorum, and issues one record", async () => {
    const a = approvals();
    const { action } = await submit(a);
    await a.startLevel(action.id, 0);
    const first = await vote(a, action.id, "U0ALICE");
    expect(first).toMatchObject({ kind: "applied", record: null, action: { status: "pending" } });
    const second = await vote(a, action.id, "U0BOB");
    expect(second).toMatchObject({ kind: "applied", action: { status: "decided", verdict: "approved" } });
    expect(second.kind === "applied" && second.record?.seq).toBe(1);
    const again = await vote(a, action.id, "U0CAROL");
    expect(again).toMatchObject({ kind: "refused", code: "already_decided" });
  });

  it("escalates to the next level when the first times out", async () => {
    const a = approvals();
    const { action } = await submit(a);
    await a.startLevel(action.id, 0);
    const deadlineAt = (await store.getAction(action.id))!.deadlineAt!;
    clock = deadlineAt + 1;
    const r = await a.deadline(action.id, 0);
    expect(r).toMatchObject({ kind: "applied", action: { status: "pending", level: 1, quorum: 1 } });
    expect((await store.listEvents(action.id)).map((e) => e.type)).toContain("escalated");
    await a.startLevel(action.id, 1);
    expect((await store.getAction(action.id))?.eligible).toEqual(["U0CFO"]);
  });

  it("a deadline the sweep read as due is judged in the write alone: applied once, a second firing refused, early refused", async () => {
    const a = approvals();
    const { action } = await submit(a);
    await a.startLevel(action.id, 0);
    const deadlineAt = (await store.getAction(action.id))!.deadlineAt!;
    const reads = vi.spyOn(store, "getAction");
    // Early: the write judges it not due, changes nothing.
    clock = deadlineAt - 1;
    expect(await a.deadline(action.id, 0, { readDue: true })).toMatchObject({
      kind: "refused",
      code: "not_due",
    });
    clock = deadlineAt + 1;
    const [first, second] = await Promise.all([
      a.deadline(action.id, 0, { readDue: true }),
      a.deadline(action.id, 0, { readDue: true }),
    ]);
    expect(first).toMatchObject({ kind: "applied", action: { status: "pending", level: 1 } });
    expect(second).toMatchObject({ kind: "refused", code: "not_due" });
    expect(reads).not.toHaveBeenCalled();
    expect(await a.deadline("act_missing", 0, { readDue: true })).toEqual({ kind: "not_found" });
    expect((await store.listEvents(action.id)).filter((e) => e.type === "escalated")).toHaveLength(1);
    reads.mockRestore();
  });

  it("expires a request whose route the policy no longer has, at once and closed", async () => {
    const { action } = await submit(approvals());
    const changed = approvals(
      policy(`routes:
  - name: something-else
    when: { action: ["payments.*"] }
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
`),
    );
    const r = await changed.startLevel(action.id, 0);
    expect(r).toMatchObject({ kind: "applied", action: { status: "decided", verdict: "denied" } });
    expect(r.kind === "applied" && r.record).not.toBeNull();
  });
});
