import { describe, expect, it } from "vitest";
import {
  type ActionState,
  cancel,
  castVote,
  countedApprovals,
  nextTimerAt,
  onDeadline,
  startLevel,
  type Voter,
  voteRefusal,
} from "../../src/domain/decision.js";
import type { Route, RouteLevel, StepUpProof } from "../../src/domain/types.js";

const T = "T0TEAM";
const now = new Date("2026-11-30T10:00:00Z");
const level = (users: string[], quorum: number): RouteLevel => ({
  approvers: { users, groups: [], owners: [] },
  channel: "C0X",
  quorum,
  timeout_ms: 60_000,
});
const route: Route = {
  name: "r",
  index: 0,
  when: {},
  levels: [level(["U1", "U2", "U3"], 2), level(["U9"], 1)],
  on_timeout: "escalate",
};
const base: ActionState = {
  id: "act_1",
  status: "pending",
  routeName: "r",
  level: 0,
  quorum: 2,
  eligible: ["U1", "U2", "U3"],
  deadlineAt: now.getTime() + 60_000,
  capAt: null,
  onBehalfOf: null,
  votes: [],
};
const voter = (user: string, o: Partial<Voter> = {}): Voter => ({ user, team: T, isGuest: false, ...o });
const approve = { vote: "approve" as const, cardLevel: 0 };
const next = () => now.getTime() + 999;

describe("castVote", () => {
  it("counts an approval below quorum without deciding", () => {
    const s = castVote(base, voter("U1"), approve, T, now);
    expect(s).toMatchObject({ kind: "vote", vote: { user: "U1", vote: "approve", at: now.toISOString() } });
    expect("decision" in s && s.decision).toBeFalsy();
  });

  it("decides approved when distinct approvals reach the quorum", () => {
    const s0 = { ...base, votes: [{ user: "U1", team: T, vote: "approve" as const, at: now.toISOString() }] };
    expect(castVote(s0, voter("U2"), approve, T, now)).toMatchObject({
      decision: { verdict: "approved", reasonCode: "approvers" },
    });
  });

  it("any deny denies, with the reason as reason_text", () => {
    const s = castVote(base, voter("U3"), { vote: "deny", comment: "no", cardLevel: 0 }, T, now);
    expect(s).toMatchObject({ decision: { verdict: "denied", reasonText: "no" } });
  });

  it.each([
    ["a decided action", { ...base, status: "decided" as const }, voter("U1"), "already_decided"],
    ["a click on an earlier level's card", { ...base, level: 1 }, voter("U1"), "stale_card"],
    [
      "a level whose approvers are not resolved yet",
      { ...base, eligible: null },
      voter("U1"),
      "level_not_started",
    ],
    [
      "the person the agent acts for, even if listed",
      { ...base, onBehalfOf: "U1" },
      voter("U1"),
      "on_behalf_of",
    ],
    [
      "a member of another workspace with a listed id",
      base,
      voter("U1", { team: "T0OTHER" }),
      "other_workspace",
    ],
    ["a guest with a listed id", base, voter("U1", { isGuest: true }), "guest"],
    ["someone not eligible", base, voter("U7"), "not_an_approver"],
    [
      "a second vote by the same person",
      { ...base, votes: [{ user: "U1", team: T, vote: "approve" as const, at: "x" }] },
      voter("U1"),
      "already_voted",
    ],
  ])("refuses %s", (_n, state, v, code) => {
    expect(castVote(state, v, approve, T, now)).toMatchObject({ kind: "refused", code });
    // The entry point asks the same rules before it opens a modal: the same refusal, word for word.
    expect(voteRefusal(state, v, approve, T)).toEqual(castVote(state, v, approve, T, now));
  });

  it("voteRefusal lets an eligible approver vote", () => {
    expect(voteRefusal(base, voter("U1"), { cardLevel: 0 }, T)).toBeNull();
  });
});

describe("startLevel", () => {
  it("fixes the eligible approvers when enough can vote", () => {
    expect(startLevel(base, route, 0, ["U1", "U2"], next)).toEqual({
      kind: "level_started",
      level: 0,
      eligible: ["U1", "U2"],
      quorum: 2,
    });
  });

  it("escalates at once when fewer than the quorum are eligible", () => {
    expect(startLevel(base, route, 0, ["U1"], next)).toMatchObject({
      kind: "escalate",
      toLevel: 1,
      why: "no_eligible_approvers",
      deadlineAt: next(),
    });
  });

  it("counts approvals carried over from an earlier level towards reachability", () => {
    const s = { ...base, level: 0, votes: [{ user: "U8", team: T, vote: "approve" as const, at: "x" }] };
    expect(startLevel(s, route, 0, ["U1"], next)).toMatchObject({ kind: "level_started" });
  });

  it("denies with no_eligible_approvers after the last level", () => {
    const s = { ...base, level: 1, quorum: 1 };
    expect(startLevel(s, route, 1, [], next)).toMatchObject({
      kind: "decide",
      decision: { verdict: "denied", reasonCode: "no_eligible_approvers" },
    });
  });
});

describe("onDeadline", () => {
  const due = new Date(base.deadlineAt! + 1);

  it("does nothing before the deadline, or for a level that is no longer current", () => {
    expect(onDeadline(base, route, 0, now, next)).toMatchObject({ kind: "refused", code: "not_due" });
    expect(onDeadline({ ...base, level: 1 }, route, 0, due, next)).toMatchObject({
      kind: "refused",
      code: "not_due",
    });
  });

  it("escalates on timeout when the route says escalate and a level is left", () => {
    expect(onDeadline(base, route, 0, due, next)).toMatchObject({
      kind: "escalate",
      fromLevel: 0,
      toLevel: 1,
      why: "timeout",
    });
  });

  it("expires after the last level, and at once with on_timeout deny (fail closed)", () => {
    expect(onDeadline({ ...base, level: 1 }, route, 1, due, next)).toMatchObject({
      decision: { verdict: "expired", reasonCode: "timeout" },
    });
    expect(onDeadline(base, { ...route, on_timeout: "deny" }, 0, due, next)).toMatchObject({
      decision: { verdict: "expired" },
    });
  });

  it("expires when the request's own timeout_s cap passes, whatever level it is at", () => {
    const s = { ...base, capAt: now.getTime() - 1 };
    expect(onDeadline(s, route, 0, now, next)).toMatchObject({
      decision: { verdict: "expired", reasonCode: "timeout" },
    });
  });

  it("never changes a decided action (a late timer after a vote)", () => {
    expect(onDeadline({ ...base, status: "decided" }, route, 0, due, next)).toMatchObject({
      code: "already_decided",
    });
  });
});

describe("cancel and timers", () => {
  it("cancels a pending action with the note, and refuses a decided one", () => {
    expect(cancel(base, "withdrawn")).toMatchObject({
      decision: { verdict: "cancelled", reasonText: "withdrawn" },
    });
    expect(cancel({ ...base, status: "decided" }, "x")).toMatchObject({ code: "already_decided" });
  });

  it("fires the next timer at the earlier of the level deadline and the cap", () => {
    expect(nextTimerAt({ deadlineAt: 10, capAt: 5 })).toBe(5);
    expect(nextTimerAt({ deadlineAt: 10, capAt: null })).toBe(10);
    expect(nextTimerAt({ deadlineAt: null, capAt: null })).toBeNull();
  });
});

describe("step-up levels: only approvals confirmed with a passkey for that level count", () => {
  const proof = (tag: string): StepUpProof => ({
    method: "webauthn",
    credential_id: `cred-${tag}`,
    public_key: { kty: "OKP", crv: "Ed25519", x: "x" },
    authenticator_data: "ad",
    client_data_json: "cd",
    signature: "sig",
    nonce: `n-${tag}`,
  });
  const at = now.toISOString();
  const stepUpRoute: Route = {
    ...route,
    levels: [level(["U1", "U2", "U3"], 2), { ...level(["U1", "U8", "U9"], 2), step_up: "passkey" }],
  };
  const atLevel1: ActionState = {
    ...base,
    level: 1,
    quorum: 2,
    eligible: ["U1", "U8", "U9"],
    stepUp: "passkey",
  };

  it("an approval without a passkey casts nothing at a step-up level", () => {
    expect(castVote(atLevel1, voter("U8"), { vote: "approve", cardLevel: 1 }, T, now)).toMatchObject({
      kind: "refused",
      code: "step_up_required",
    });
  });

  it("an approval with a passkey is cast, and carries the proof into the vote", () => {
    const s = castVote(atLevel1, voter("U8"), { vote: "approve", cardLevel: 1, step_up: proof("8") }, T, now);
    expect(s).toMatchObject({ kind: "vote", vote: { user: "U8", step_up: proof("8") } });
    expect("decision" in s && s.decision).toBeFalsy();
  });

  it("approvals carried over from an earlier level do not count, with or without a passkey", () => {
    // U2 approved at level 0 without step-up; U3 approved at level 0 with a proof (for level 0).
    const carried: ActionState = {
      ...atLevel1,
      votes: [
        { user: "U2", team: T, vote: "approve", at, level: 0 },
        { user: "U3", team: T, vote: "approve", at, level: 0, step_up: proof("3") },
      ],
    };
    const one = castVote(
      carried,
      voter("U8"),
      { vote: "approve", cardLevel: 1, step_up: proof("8") },
      T,
      now,
    );
    expect(one).toMatchObject({ kind: "vote" });
    expect("decision" in one && one.decision).toBeFalsy();
    // Without the rule, U2 and U3 alone would already make the quorum of 2.
    expect(countedApprovals(carried.votes, 1, undefined)).toBe(2);
    expect(countedApprovals(carried.votes, 1, "passkey")).toBe(0);
  });

  it("two confirmed approvals at the level decide it", () => {
    const s: ActionState = {
      ...atLevel1,
      votes: [{ user: "U8", team: T, vote: "approve", at, level: 1, step_up: proof("8") }],
    };
    expect(
      castVote(s, voter("U9"), { vote: "approve", cardLevel: 1, step_up: proof("9") }, T, now),
    ).toMatchObject({ decision: { verdict: "approved", reasonCode: "approvers" } });
  });

  it("a vote with no level recorded confirms no level", () => {
    const votes = [{ user: "U8", team: T, vote: "approve" as const, at, step_up: proof("8") }];
    expect(countedApprovals(votes, 1, "passkey")).toBe(0);
  });

  it("deny needs no step-up and still denies", () => {
    expect(
      castVote(atLevel1, voter("U9"), { vote: "deny", comment: "no", cardLevel: 1 }, T, now),
    ).toMatchObject({
      decision: { verdict: "denied", reasonText: "no" },
    });
  });

  it("an ordinary level after a step-up level counts every approval, confirmed or not", () => {
    const s: ActionState = {
      ...base,
      level: 2,
      quorum: 2,
      eligible: ["U5"],
      votes: [{ user: "U8", team: T, vote: "approve", at, level: 1, step_up: proof("8") }],
    };
    expect(castVote(s, voter("U5"), { vote: "approve", cardLevel: 2 }, T, now)).toMatchObject({
      decision: { verdict: "approved" },
    });
  });

  it("startLevel counts neither carried approvals nor people who already voted towards a step-up level", () => {
    // Level 1 needs 2; U1 is eligible but approved at level 0, so only U8 can still vote there.
    const s: ActionState = {
      ...base,
      level: 1,
      quorum: 2,
      votes: [
        { user: "U1", team: T, vote: "approve", at, level: 0 },
        { user: "U2", team: T, vote: "approve", at, level: 0 },
      ],
    };
    expect(startLevel(s, stepUpRoute, 1, ["U1", "U8"], next)).toMatchObject({
      kind: "decide",
      decision: { verdict: "denied", reasonCode: "no_eligible_approvers" },
    });
    expect(startLevel(s, stepUpRoute, 1, ["U1", "U8", "U9"], next)).toMatchObject({ kind: "level_started" });
    // The same state at an ordinary level: U2's carried approval makes it reachable.
    const plain: Route = { ...stepUpRoute, levels: [stepUpRoute.levels[0]!, level(["U1", "U8", "U9"], 2)] };
    expect(startLevel(s, plain, 1, ["U1", "U8"], next)).toMatchObject({ kind: "level_started" });
  });
});
