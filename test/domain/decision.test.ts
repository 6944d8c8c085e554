import { describe, expect, it } from "vitest";
import {
  type ActionState,
  cancel,
  castVote,
  nextTimerAt,
  onDeadline,
  startLevel,
  type Voter,
  voteRefusal,
} from "../../src/domain/decision.js";
import type { Route, RouteLevel } from "../../src/domain/types.js";

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
