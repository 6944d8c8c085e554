/**
 * The decision state machine, as pure functions of an action's state, an input and `now`.
 *
 * Every function answers with a Transition (what to change and why) or a Refusal. The
 * store applies a transition atomically, re-reading the state inside its transaction,
 * so when a vote, a deadline and a cancel race, the first to commit wins and the others
 * see a decided action and change nothing. Terminal states are final: no function here
 * produces a transition from a decided action.
 */
import type { ReasonCode, Route, StepUpProof, Verdict, Vote } from "./types.js";

/**
 * A vote as the core keeps it: the record's Vote, and the 0-based level it was cast at.
 * The level is never in the record (the record's vote is exactly SPEC's); the store's
 * vote row already keeps it (`votes.level`). It is also the level a vote's `step_up`
 * confirms: castVote refuses a ballot for any level but the current one, so a passkey
 * assertion made for level L (its challenge names L) is only ever stored with level L.
 * Absent (votes built by hand in tests), the vote is taken to confirm no level.
 */
export type LevelVote = Vote & { readonly level?: number };

export interface ActionState {
  readonly id: string;
  readonly status: "pending" | "decided";
  readonly routeName: string | null;
  readonly level: number;
  readonly quorum: number;
  /** null until the current level has started (its approvers resolved). */
  readonly eligible: readonly string[] | null;
  readonly deadlineAt: number | null;
  /** The request's own wall-clock cap (timeout_s), over all levels. */
  readonly capAt: number | null;
  readonly onBehalfOf: string | null;
  readonly votes: readonly LevelVote[];
  /**
   * The current level's `step_up` (route.levels[level].step_up): each approval at this
   * level must be confirmed with the approver's passkey, and only approvals confirmed for
   * this level count towards its quorum. Absent: an ordinary level.
   */
  readonly stepUp?: "passkey";
}

export interface DecisionOutcome {
  readonly verdict: Verdict;
  readonly reasonCode: ReasonCode;
  readonly reasonText: string;
}

export type Transition =
  | { readonly kind: "vote"; readonly vote: Vote; readonly decision?: DecisionOutcome }
  | {
      readonly kind: "level_started";
      readonly level: number;
      readonly eligible: readonly string[];
      readonly quorum: number;
    }
  | {
      readonly kind: "escalate";
      readonly fromLevel: number;
      readonly toLevel: number;
      readonly quorum: number;
      readonly deadlineAt: number;
      readonly why: "timeout" | "no_eligible_approvers";
    }
  | { readonly kind: "decide"; readonly decision: DecisionOutcome };

export interface Refusal {
  readonly kind: "refused";
  /** Stable code for events and tests. */
  readonly code:
    | "already_decided"
    | "not_an_approver"
    | "on_behalf_of"
    | "guest"
    | "other_workspace"
    | "already_voted"
    | "level_not_started"
    | "stale_card"
    | "not_due"
    | "step_up_required";
  /** A sentence for the person (ephemeral note) and the event. */
  readonly reason: string;
}

export type Step = Transition | Refusal;

export interface Voter {
  readonly user: string;
  /** The voter's workspace (team id) as Slack reported it. */
  readonly team: string;
  readonly isGuest: boolean;
  readonly email?: string;
  readonly realName?: string;
}

export function approvals(votes: readonly Vote[]): number {
  return new Set(votes.filter((v) => v.vote === "approve").map((v) => v.user)).size;
}

/**
 * The approvals that count towards the quorum of `level` (SPEC "Step-up"): at an ordinary
 * level, every distinct approver's, carried-over ones included; at a step-up level, only
 * approvals that carry `step_up` and were cast at that very level. An approval carried
 * over from an earlier level, with or without a passkey, proves nothing about this one.
 */
export function countedApprovals(
  votes: readonly LevelVote[],
  level: number,
  stepUp: "passkey" | undefined,
): number {
  const counted =
    stepUp === undefined ? votes : votes.filter((v) => v.step_up !== undefined && v.level === level);
  return approvals(counted);
}

/**
 * Whether `voter` may vote now, by the one rule set every entry point asks: null, or why not.
 * The Slack entry point asks it before opening a modal (a Deny reason typed into a modal that
 * could never count would be wasted), and castVote asks it inside the transaction.
 * `cardLevel` is the level of the card that was clicked: a click counts only for the card
 * it was on, so a button on an old level's card cannot vote after an escalation.
 */
export function voteRefusal(
  s: ActionState,
  voter: Voter,
  ballot: { cardLevel: number },
  policyTeam: string,
): Refusal | null {
  if (s.status === "decided") return refuse("already_decided", "this request has already been decided");
  if (ballot.cardLevel !== s.level) {
    return refuse("stale_card", "this card is from an earlier escalation level; vote on the current card");
  }
  if (s.eligible === null)
    return refuse("level_not_started", "the approvers for this level are still being resolved");
  if (s.onBehalfOf !== null && voter.user === s.onBehalfOf) {
    return refuse("on_behalf_of", "you asked the agent for this action, so you cannot approve it");
  }
  if (voter.team !== policyTeam)
    return refuse("other_workspace", "votes from another workspace are not accepted");
  if (voter.isGuest) return refuse("guest", "guest accounts cannot vote");
  if (!s.eligible.includes(voter.user))
    return refuse("not_an_approver", "you are not an approver at this level");
  if (s.votes.some((v) => v.user === voter.user)) return refuse("already_voted", "you have already voted");
  return null;
}

/**
 * A vote from a click (or, at a step-up level, from a verified passkey assertion), judged
 * by voteRefusal. At a step-up level an approval without `step_up` casts nothing: the
 * entry point sends the approver to the passkey page instead, and this refusal is the
 * core's guard should one ever try. Checking the assertion itself is the entry point's
 * (the WebAuthn ceremony); the core only carries it into the vote. Deny needs no step-up.
 */
export function castVote(
  s: ActionState,
  voter: Voter,
  /** `step_up`: the verified assertion, for the action as shown, at `cardLevel` (the passkey page's). */
  ballot: { vote: "approve" | "deny"; comment?: string; cardLevel: number; step_up?: StepUpProof },
  policyTeam: string,
  now: Date,
): Step {
  const refusal = voteRefusal(s, voter, ballot, policyTeam);
  if (refusal) return refusal;
  if (s.stepUp !== undefined && ballot.vote === "approve" && ballot.step_up === undefined) {
    return refuse(
      "step_up_required",
      "this level needs each approval confirmed with your passkey; use the link you were sent",
    );
  }

  const vote: Vote = {
    user: voter.user,
    team: voter.team,
    ...(voter.email ? { email: voter.email } : {}),
    ...(voter.realName ? { real_name: voter.realName } : {}),
    vote: ballot.vote,
    at: now.toISOString(),
    ...(ballot.comment ? { comment: ballot.comment } : {}),
    // Only the passkey page passes one, after verifying the assertion; deny needs none.
    ...(ballot.step_up && ballot.vote === "approve" ? { step_up: ballot.step_up } : {}),
  };
  if (ballot.vote === "deny") {
    return {
      kind: "vote",
      vote,
      decision: { verdict: "denied", reasonCode: "approvers", reasonText: ballot.comment ?? "" },
    };
  }
  const count = countedApprovals([...s.votes, { ...vote, level: s.level }], s.level, s.stepUp);
  if (count >= s.quorum) {
    return {
      kind: "vote",
      vote,
      decision: { verdict: "approved", reasonCode: "approvers", reasonText: ballot.comment ?? "" },
    };
  }
  return { kind: "vote", vote };
}

/**
 * The approvers of a level have been resolved. Fewer candidates than the quorum can
 * still reach (approvals carried over count) means nobody could ever decide at this
 * level: escalate at once, or deny after the last level. At a step-up level nothing
 * carries over, and an eligible person who already voted at an earlier level cannot
 * vote again (one vote per person per action), so only those yet to vote can reach it.
 */
export function startLevel(
  s: ActionState,
  route: Route,
  level: number,
  eligible: readonly string[],
  nextDeadline: (toLevel: number) => number,
): Step {
  if (s.status === "decided") return refuse("already_decided", "already decided");
  if (level !== s.level) return refuse("stale_card", `level ${level} is no longer current`);
  const spec = route.levels[level];
  if (!spec) throw new Error(`route ${route.name} has no level ${level}`);
  const voted = new Set(s.votes.map((v) => v.user));
  const carried = new Set(s.votes.filter((v) => v.vote === "approve").map((v) => v.user));
  const reachable =
    spec.step_up !== undefined
      ? new Set(eligible.filter((u) => !voted.has(u))).size
      : new Set([...eligible, ...carried]).size;
  if (reachable < spec.quorum) {
    const to = level + 1;
    const next = route.levels[to];
    if (next) {
      return {
        kind: "escalate",
        fromLevel: level,
        toLevel: to,
        quorum: next.quorum,
        deadlineAt: nextDeadline(to),
        why: "no_eligible_approvers",
      };
    }
    return {
      kind: "decide",
      decision: {
        verdict: "denied",
        reasonCode: "no_eligible_approvers",
        reasonText: `only ${eligible.length} eligible approver(s) for a quorum of ${spec.quorum}`,
      },
    };
  }
  return { kind: "level_started", level, eligible, quorum: spec.quorum };
}

/**
 * A timer fired. Timers may fire late, early (clock skew between instances) or twice;
 * only a due deadline of the current level changes anything.
 */
export function onDeadline(
  s: ActionState,
  route: Route | null,
  level: number,
  now: Date,
  nextDeadline: (toLevel: number) => number,
): Step {
  if (s.status === "decided") return refuse("already_decided", "already decided");
  const t = now.getTime();
  const capped = s.capAt !== null && s.capAt <= t;
  if (!capped) {
    if (level !== s.level) return refuse("not_due", `level ${level} is no longer current`);
    if (s.deadlineAt === null || s.deadlineAt > t) return refuse("not_due", "the deadline has not come");
  }
  const to = s.level + 1;
  const next = route?.levels[to];
  if (!capped && route?.on_timeout === "escalate" && next) {
    return {
      kind: "escalate",
      fromLevel: s.level,
      toLevel: to,
      quorum: next.quorum,
      deadlineAt: nextDeadline(to),
      why: "timeout",
    };
  }
  return {
    kind: "decide",
    decision: {
      verdict: "expired",
      reasonCode: "timeout",
      reasonText: capped ? "the request's timeout_s passed without a decision" : "",
    },
  };
}

export function cancel(s: ActionState, note: string): Step {
  if (s.status === "decided") return refuse("already_decided", "already decided");
  return { kind: "decide", decision: { verdict: "cancelled", reasonCode: "cancelled", reasonText: note } };
}

/** The earliest instant a timer for this state must fire (level deadline or the cap). */
export function nextTimerAt(s: Pick<ActionState, "deadlineAt" | "capAt">): number | null {
  const candidates = [s.deadlineAt, s.capAt].filter((x): x is number => x !== null);
  return candidates.length ? Math.min(...candidates) : null;
}

function refuse(code: Refusal["code"], reason: string): Refusal {
  return { kind: "refused", code, reason };
}
