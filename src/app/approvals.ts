/**
 * The use-cases of an approval: submit, start a level, vote, time out, cancel. Each one
 * decides with the pure core (src/domain) inside one store transaction, and leaves what
 * must happen outside (Slack posts, job releases) in the outbox, carried out after commit.
 */
import { requestDigest } from "../domain/canonical.js";
import { changesAllowed, reviseRequest } from "../domain/change.js";
import { levelDeadline } from "../domain/deadlines.js";
import {
  type ActionState,
  cancel as cancelStep,
  castVote,
  type DecisionOutcome,
  onDeadline,
  type Step,
  startLevel,
  type Voter,
  voteRefusal,
} from "../domain/decision.js";
import { diffRequest } from "../domain/edits.js";
import { AppError, assertNever } from "../domain/errors.js";
import { newId, type RandomBytes } from "../domain/ids.js";
import { checkRequestAgainstPolicy, validateRequest } from "../domain/request.js";
import { type RouteQuery, selectRoute } from "../domain/routing.js";
import type { ActionRequest, AgentPolicy, Policy, Route, StepUpProof } from "../domain/types.js";
import { RejectionError } from "../domain/types.js";
import { crashPoint } from "./crash.js";
import type {
  ActionRow,
  ActionWithVotes,
  ApprovalStore,
  ChangeCode,
  Directory,
  MutateResult,
  NewAction,
  NewEffect,
  NewEvent,
  Plan,
  ProofCheck,
  RefusalCode,
  Refused,
  Revision,
  Store,
  StoredRecord,
  UnchainedClaims,
} from "./ports.js";
import { currentRequest } from "./ports.js";

export interface Submission {
  readonly request: unknown;
  readonly proof: string;
  /** When the request counts as made: for the queue, when the job was added. */
  readonly judgedAt: Date;
  readonly via: "queue" | "http";
  readonly job?: { readonly key: string; readonly id: string };
  /** For HTTP, the agent already authenticated by its bearer token (then `proof` was checked there). */
  readonly proofChecked?: { readonly jti: string; readonly exp: number; readonly agentId: string };
}

export interface SubmitResult {
  readonly repeat: boolean;
  readonly action: ActionRow;
  readonly record: StoredRecord | null;
}

export interface ApprovalsDeps {
  readonly store: ApprovalStore;
  readonly policy: Policy;
  readonly proofs: ProofCheck;
  readonly directory: Directory;
  readonly now: () => Date;
  /** Where new ids draw their randomness (node:crypto's randomBytes in production). */
  readonly random: RandomBytes;
  /** Called after a commit that issued a record (wakes long-polls). */
  readonly onDecided?: (actionId: string) => void;
}

export class Approvals {
  constructor(private readonly deps: ApprovalsDeps) {}

  get policy(): Policy {
    return this.deps.policy;
  }

  /**
   * Intake, shared by the queue and the HTTP API: one schema, one set of reasons.
   * A refusal throws RejectionError after keeping an audit event; nothing else changes.
   */
  async submit(s: Submission): Promise<SubmitResult> {
    const now = this.deps.now();
    try {
      return await this.admit(s, now);
    } catch (e) {
      if (e instanceof RejectionError) await this.recordRejection(e, s.request, s.via);
      throw e;
    }
  }

  /** Every refusal keeps an audit event, whichever entry point refused it and however early. */
  async recordRejection(e: RejectionError, request: unknown, via: Submission["via"]): Promise<void> {
    const raw = (request && typeof request === "object" ? request : {}) as Record<string, unknown>;
    const agentId = typeof raw.agent_id === "string" ? raw.agent_id.slice(0, 128) : null;
    await this.deps.store.appendEvents(
      null,
      agentId,
      [
        {
          type: "rejected",
          actor: agentId ? `agent:${agentId}` : "unknown",
          data: {
            code: e.code,
            message: e.message,
            errors: e.errors.slice(0, 20),
            via,
            request_id: typeof raw.request_id === "string" ? raw.request_id.slice(0, 128) : null,
          },
        },
      ],
      this.deps.now().getTime(),
    );
  }

  private async admit(s: Submission, now: Date): Promise<SubmitResult> {
    const policy = this.deps.policy;
    const request = validateRequest(s.request);
    const { agent, riskClass } = checkRequestAgainstPolicy(policy, request);
    const digest = requestDigest(request);
    const proof =
      s.proofChecked ??
      (await this.deps.proofs.verify(s.proof, { agentId: agent.id, digest, judgedAt: s.judgedAt }));

    const decision = selectRoute(policy, {
      agent,
      action_type: request.action.type,
      risk_class: riskClass,
      region: request.region,
      details: request.action.details,
    });
    const route = decision.route;
    const t = now.getTime();
    const id = newId("act", t, this.deps.random);
    const capAt = request.timeout_s ? t + request.timeout_s * 1000 : null;
    const tz = policy.regions[request.region]?.tz ?? "UTC";
    const level0 = route?.levels[0];
    const deadlineAt = level0
      ? levelDeadline({
          now,
          level: level0,
          route: route!,
          tz,
          requestedAt: now,
          timeoutS: request.timeout_s,
        }).getTime()
      : null;

    const action: NewAction = {
      id,
      agentId: agent.id,
      requestId: request.request_id,
      request,
      requestSha256: digest,
      actionType: request.action.type,
      riskClass,
      region: request.region,
      routeName: route?.name ?? null,
      level: 0,
      quorum: level0?.quorum ?? 0,
      eligible: null,
      deadlineAt,
      capAt,
      policySha256: policy.sha256,
      requestedAt: t,
    };
    const actor = `agent:${agent.id}`;
    const events: NewEvent[] = [
      {
        type: "received",
        actor,
        data: { via: s.via, request_id: request.request_id, job_id: s.job?.id ?? null, jti: proof.jti },
      },
      {
        type: "routed",
        actor: "system",
        data: {
          route: route?.name ?? null,
          risk_class: riskClass,
          requested_risk_class: request.risk_class,
          auto: route?.auto ?? null,
          deadline: deadlineAt ? new Date(deadlineAt).toISOString() : null,
          explanation: decision.explanation,
        },
      },
    ];

    let immediate: DecisionOutcome | undefined;
    if (!route) {
      immediate = {
        verdict: "denied",
        reasonCode: "no_route",
        reasonText: "no route in the policy matches this request",
      };
    } else if (route.auto) {
      immediate = {
        verdict: route.auto === "approve" ? "approved" : "denied",
        reasonCode: "policy",
        reasonText: `auto-${route.auto === "approve" ? "approved" : "denied"} by route ${route.name}`,
      };
    }

    const result = await this.deps.store.admit({
      action,
      proof: { jti: proof.jti, exp: proof.exp },
      job: s.job ?? null,
      maxPending: agent.max_pending,
      events,
      effects: (a) =>
        immediate
          ? this.decisionEffects({ ...a, request }, immediate)
          : [...levelEffects(a.id, 0, deadlineAt, capAt)],
      ...(immediate
        ? {
            decision: {
              outcome: immediate,
              claims: this.claims({ ...action, eligible: [] }, [], immediate, now),
            },
          }
        : {}),
      now: t,
    });
    crashPoint("after_intake");
    if (result.kind === "created" && result.record) this.deps.onDecided?.(result.action.id);
    return { repeat: result.kind === "repeat", action: result.action, record: result.record };
  }

  /** Resolve a level's approvers (Slack I/O, outside any transaction), then fix them in one. */
  async startLevel(actionId: string, level: number): Promise<MutateResult> {
    const a = await this.deps.store.getAction(actionId);
    if (a?.status !== "pending" || a.level !== level) return a ? refusedResult(a) : { kind: "not_found" };
    const route = this.route(a);
    if (!route) return this.expireOrphan(a);
    const spec = route.levels[level];
    if (!spec) return this.expireOrphan(a);
    const { eligible, excluded } = await this.resolveEligible(a, spec.approvers);
    const now = this.deps.now();
    const result = await this.deps.store.mutate(actionId, now.getTime(), (cur) => {
      const step = startLevel(this.state(cur), route, level, eligible, (to) =>
        this.deadlineFor(cur, route, to, now),
      );
      return this.plan(cur, step, now, "system", { eligible, excluded });
    });
    return this.after(result);
  }

  async vote(
    actionId: string,
    voter: Voter,
    ballot: {
      vote: "approve" | "deny";
      comment?: string;
      cardLevel: number;
      revision?: number;
      step_up?: StepUpProof;
    },
  ): Promise<MutateResult> {
    const now = this.deps.now();
    const result = await this.deps.store.mutate(actionId, now.getTime(), (cur) => {
      const step = castVote(this.state(cur), voter, ballot, this.deps.policy.slack.team_id, now);
      return this.plan(cur, step, now, `slack:${voter.user}`, { voter, ballot });
    });
    return this.after(result);
  }

  /**
   * Before a vote is asked for (a Deny or comment modal opened): may `voter` vote on the
   * card of `cardLevel` now, by the same rules castVote applies. `counted` means their vote
   * is already in (a re-sent or double click: nothing to do, nothing to record). A
   * refusal is committed as an audit event before this returns, judged again inside the
   * transaction, so the entry point can acknowledge it as done.
   */
  async mayVote(
    actionId: string,
    voter: Voter,
    ballot: { vote: "approve" | "deny"; cardLevel: number; revision?: number },
  ): Promise<
    | { readonly kind: "ok" | "counted" | "not_found" }
    | { readonly kind: "refused"; readonly code: RefusalCode; readonly reason: string }
  > {
    const seen = await this.deps.store.getAction(actionId);
    if (!seen) return { kind: "not_found" };
    if (hasVoted(seen, voter.user)) return { kind: "counted" };
    const team = this.deps.policy.slack.team_id;
    if (!voteRefusal(this.state(seen), voter, ballot, team)) return { kind: "ok" };
    const now = this.deps.now();
    // What the transaction found when it did not refuse: the write lock judges again, and
    // "may vote" or "already counted" leave nothing to commit.
    let found: "ok" | "counted" | null = null;
    const result = await this.deps.store.mutate(actionId, now.getTime(), (cur) => {
      found = hasVoted(cur, voter.user) ? "counted" : null;
      const refusal = found ? null : voteRefusal(this.state(cur), voter, ballot, team);
      if (!found && !refusal) found = "ok";
      if (found || !refusal) return { refused: { code: "stale", reason: "nothing to commit" }, events: [] };
      return this.plan(cur, refusal, now, `slack:${voter.user}`, { voter, ballot }) as Refused;
    });
    if (result.kind === "not_found") return result;
    if (found) return { kind: found };
    if (result.kind !== "refused") return { kind: "ok" };
    return { kind: "refused", code: result.code, reason: result.reason };
  }

  /**
   * An approver changes the request before approving it (SPEC "Changes before approval"):
   * `values` maps pointers into `action.details` to their new values. Refused, with a
   * `change_refused` event and nothing else changed, when the person may not vote at this
   * level, the request is decided, `shown.revision` is no longer current, a pointer is not
   * editable (a forged submission), a value's JSON type differs from the one it replaces,
   * the policy file changed since routing, or the changed request would be refused or take
   * another route. Else one transaction writes the next revision, clears the earlier
   * approvals (they approved something else) and counts the editor's approval of it.
   */
  async change(
    actionId: string,
    voter: Voter,
    shown: { readonly cardLevel: number; readonly revision: number },
    values: Readonly<Record<string, unknown>>,
    comment?: string,
  ): Promise<MutateResult> {
    const now = this.deps.now();
    const result = await this.deps.store.mutate(actionId, now.getTime(), (cur) => {
      const refused = (code: RefusalCode, reason: string, pointer: string | null = null): Refused => ({
        refused: { code, reason, ...(pointer !== null ? { pointer } : {}) },
        events: [
          {
            type: "change_refused",
            actor: `slack:${voter.user}`,
            data: { code, reason, pointer, revision: shown.revision, level: shown.cardLevel },
          },
        ],
      });
      const judged = this.judgeChange(cur, voter, shown, values);
      if ("refused" in judged) return refused(judged.refused.code, judged.refused.reason, judged.pointer);
      const n = cur.revision + 1;
      const revision: Revision = {
        revision: n,
        request: judged.next,
        sha256: requestDigest(judged.next),
        edit: {
          user: voter.user,
          team: voter.team,
          at: now.toISOString(),
          patch: diffRequest(currentRequest(cur).request, judged.next),
        },
        ...(comment ? { comment } : {}),
      };
      // The action as it will stand: the new revision, the earlier approvals gone.
      const revised: ActionWithVotes = {
        ...cur,
        revision: n,
        revisions: [...cur.revisions, revision],
        votes: cur.votes.filter((v) => v.vote !== "approve"),
      };
      const changedEvent = {
        type: "changed",
        actor: `slack:${voter.user}`,
        data: {
          revision: n,
          level: cur.level,
          changes: judged.changes,
          patch: revision.edit.patch,
          sha256: revision.sha256,
          cleared: cur.votes.filter((v) => v.vote === "approve").map((v) => v.user),
          comment: comment ?? null,
        },
      } as const;
      if (this.state(revised).stepUp !== undefined) {
        // A step-up level: the change is made, but the editor's approval of it counts only
        // once confirmed with their passkey (the entry point sends the link for revision n).
        return {
          revise: revision,
          events: [changedEvent],
          effects: [
            {
              kind: "thread_note",
              dedupeKey: `note:${cur.id}:changed:${n}`,
              payload: { level: cur.level, note: "changed", user: voter.user, revision: n, step_up: true },
            },
            { kind: "update_card", dedupeKey: `changed:${cur.id}:${n}` },
          ],
        };
      }
      const ballot = {
        vote: "approve" as const,
        cardLevel: shown.cardLevel,
        revision: n,
        ...(comment ? { comment } : {}),
      };
      const step = castVote(this.state(revised), voter, ballot, this.deps.policy.slack.team_id, now);
      const p = this.plan(revised, step, now, `slack:${voter.user}`, { voter, ballot });
      if ("refused" in p) return refused(p.refused.code, p.refused.reason);
      return {
        ...p,
        revise: revision,
        events: [changedEvent, ...p.events],
        // The change's own note in the thread says who changed what and that it counts as
        // their approval, in place of the vote's note.
        effects: [
          {
            kind: "thread_note",
            dedupeKey: `note:${cur.id}:changed:${n}`,
            payload: { level: cur.level, note: "changed", user: voter.user, revision: n },
          },
          ...p.effects.filter((e) => !(e.kind === "thread_note" && e.payload?.note === "vote")),
          ...(p.decision ? [] : [{ kind: "update_card" as const, dedupeKey: `changed:${cur.id}:${n}` }]),
        ],
      };
    });
    return this.after(result);
  }

  /**
   * Before the "Approve with changes" modal opens: may `voter` change this request now, as
   * shown (its level and revision). A refusal is committed as a `change_refused` event
   * before this returns; `ok` carries the revision to fill the modal with and the
   * pointers that may change. Judged again, with the values, when the modal is submitted.
   */
  async mayChange(
    actionId: string,
    voter: Voter,
    shown: { readonly cardLevel: number; readonly revision: number },
  ): Promise<
    | {
        readonly kind: "ok";
        readonly request: ActionRequest;
        readonly revision: number;
        readonly editable: readonly string[];
      }
    | { readonly kind: "refused"; readonly code: RefusalCode; readonly reason: string }
    | { readonly kind: "not_found" }
  > {
    const a = await this.deps.store.getAction(actionId);
    if (!a) return { kind: "not_found" };
    const judged = this.judgeChange(a, voter, shown, null);
    if ("refused" in judged) {
      const { code, reason } = judged.refused;
      await this.deps.store.appendEvents(
        a.id,
        a.agentId,
        [
          {
            type: "change_refused",
            actor: `slack:${voter.user}`,
            data: {
              code,
              reason,
              pointer: null,
              revision: shown.revision,
              level: shown.cardLevel,
              opening: true,
            },
          },
        ],
        this.deps.now().getTime(),
      );
      return { kind: "refused", code, reason };
    }
    const current = currentRequest(a);
    return {
      kind: "ok",
      request: current.request,
      revision: current.revision,
      editable: changesAllowed(this.deps.policy, a.actionType, a.request),
    };
  }

  /**
   * The change's refusals, in the order a person can act on them; else the next revision.
   * With `values` null, only whether this person may change this request now.
   */
  private judgeChange(
    cur: ActionWithVotes,
    voter: Voter,
    shown: { readonly cardLevel: number; readonly revision: number },
    values: Readonly<Record<string, unknown>> | null,
  ):
    | {
        readonly refused: { readonly code: RefusalCode; readonly reason: string };
        readonly pointer: string | null;
      }
    | { readonly next: ActionRequest; readonly changes: readonly unknown[] } {
    const policy = this.deps.policy;
    const no = (code: RefusalCode, reason: string, pointer: string | null = null) => ({
      refused: { code, reason },
      pointer,
    });
    // Judged as a vote (a change counts as the editor's approval); an approval already in
    // from the same person is replaced, not a reason to refuse.
    const others = { ...cur, votes: cur.votes.filter((v) => v.user !== voter.user) };
    const refusal = voteRefusal(
      this.state(others),
      voter,
      { vote: "approve", cardLevel: shown.cardLevel, revision: shown.revision },
      policy.slack.team_id,
    );
    if (refusal) return no(refusal.code, refusal.reason);
    if (cur.policySha256 !== policy.sha256) {
      return no(
        "policy_changed",
        "the policy file has changed since this request was routed, so it cannot be changed; approve or deny it as it is",
      );
    }
    const current = currentRequest(cur).request;
    const editable = changesAllowed(policy, cur.actionType, cur.request);
    if (!editable.length) return no("not_editable", "this request does not let approvers change it");
    if (values === null) return { next: current, changes: [] };
    const revised = reviseRequest(current, editable, values);
    if (!revised.ok) {
      const first = revised.problems[0]!;
      return no(first.code as ChangeCode, revised.problems.map((p) => p.message).join("; "), first.pointer);
    }
    let riskClass: string;
    let query: RouteQuery;
    try {
      const next = validateRequest(revised.next);
      const checked = checkRequestAgainstPolicy(policy, next);
      riskClass = checked.riskClass;
      // `details` is read by the routes' details conditions, which fail closed.
      query = {
        agent: checked.agent,
        action_type: next.action.type,
        risk_class: riskClass,
        region: next.region,
        details: next.action.details,
      };
    } catch (e) {
      if (e instanceof RejectionError)
        return no("invalid_change", `the changed request is not valid: ${e.message}`);
      throw e;
    }
    if (riskClass !== cur.riskClass) {
      return no("reroute", `the changed request would have risk class ${riskClass}, not ${cur.riskClass}`);
    }
    let route: Route | null;
    try {
      route = selectRoute(policy, query).route;
    } catch (e) {
      if (e instanceof RejectionError)
        return no("reroute", `the changed request would be refused: ${e.message}`);
      throw e;
    }
    if (route?.name !== cur.routeName || route.auto !== undefined) {
      return no(
        "reroute",
        `the changed request would take ${route ? `route ${route.name}` : "no route"}, not route ${cur.routeName}; ask the agent for a new request instead`,
      );
    }
    if (!route.levels[cur.level]) {
      return no("reroute", `the changed request's route ${route.name} has no level ${cur.level}`);
    }
    return { next: revised.next, changes: revised.changes };
  }

  /** Whether `voter`'s vote on this action is already in: a re-sent click or submission. */
  async hasVoted(actionId: string, user: string): Promise<boolean> {
    const a = await this.deps.store.getAction(actionId);
    return a !== null && hasVoted(a, user);
  }

  /**
   * A timer fired for `level`. Safe to call late, early or twice. `readDue`: the caller
   * has just read this deadline from the database as due and pending (the timers' sweep),
   * so the look before the write would find what it found and is skipped.
   */
  async deadline(actionId: string, level: number, opts: { readDue?: boolean } = {}): Promise<MutateResult> {
    const now = this.deps.now();
    // Each deadline fires twice by design (a BullMQ timer and the database sweep), and many
    // at once when a backlog falls due: a read first lets the loser skip the write lock.
    // The transaction below judges again, so this look is only an optimisation. The sweep
    // skips it: what it fires it has just read as due, so the look would pass, and in a
    // storm it was a second read of every action the sweep expired (docs/performance.md).
    if (!opts.readDue) {
      const seen = await this.deps.store.getAction(actionId);
      if (!seen) return { kind: "not_found" };
      const first = onDeadline(this.state(seen), this.route(seen), level, now, () => now.getTime());
      if (first.kind === "refused")
        return { kind: "refused", code: first.code, reason: first.reason, action: seen };
    }
    const result = await this.deps.store.mutate(actionId, now.getTime(), (cur) => {
      const route = this.route(cur);
      const step = onDeadline(this.state(cur), route, level, now, (to) =>
        route ? this.deadlineFor(cur, route, to, now) : now.getTime(),
      );
      return this.plan(cur, step, now, "timer", {});
    });
    return this.after(result);
  }

  /**
   * Spend the proof of an agent's call other than a submit (a cancel), so the same proof
   * cannot be played again. Throws RejectionError replayed_proof.
   */
  async acceptProof(agentId: string, proof: { readonly jti: string; readonly exp: number }): Promise<void> {
    await this.deps.store.spendProof(agentId, proof, this.deps.now().getTime());
  }

  /**
   * A click on a card this service does not know (or no longer knows): nothing changes,
   * but the attempt is kept for the audit trail.
   */
  async refuseUnknownClick(
    userId: string,
    reason: string,
    what: { readonly value?: string | null; readonly vote?: "approve" | "deny" },
  ): Promise<void> {
    await this.deps.store.appendEvents(
      null,
      null,
      [{ type: "vote_refused", actor: `slack:${userId}`, data: { code: "unknown_card", reason, ...what } }],
      this.deps.now().getTime(),
    );
  }

  async cancel(actionId: string, agentId: string, note: string): Promise<MutateResult> {
    const now = this.deps.now();
    const result = await this.deps.store.mutate(actionId, now.getTime(), (cur) => {
      if (cur.agentId !== agentId)
        return { refused: { code: "not_found", reason: "no such action" }, events: [] };
      return this.plan(cur, cancelStep(this.state(cur), note), now, `agent:${agentId}`, {});
    });
    return this.after(result);
  }

  private after(result: MutateResult): MutateResult {
    if (result.kind === "applied" && result.record) crashPoint("after_record");
    if (result.kind === "applied" && result.record) this.deps.onDecided?.(result.action.id);
    return result;
  }

  private async expireOrphan(a: ActionWithVotes): Promise<MutateResult> {
    // The policy lost the route since routing (a changed file): the request cannot gather
    // votes any more, so it fails closed at once rather than waiting out its deadline.
    const now = this.deps.now();
    const result = await this.deps.store.mutate(a.id, now.getTime(), (cur) =>
      this.plan(
        cur,
        cur.status === "decided"
          ? { kind: "refused", code: "already_decided", reason: "already decided" }
          : {
              kind: "decide",
              decision: {
                verdict: "denied",
                reasonCode: "no_route",
                reasonText: `route ${cur.routeName} (level ${cur.level}) is no longer in the policy`,
              },
            },
        now,
        "system",
        {},
      ),
    );
    return this.after(result);
  }

  /**
   * The core's view of an action. The current level's `step_up` comes from the policy: at
   * a step-up level only approvals confirmed with a passkey at that level count.
   */
  private state(a: ActionWithVotes): ActionState {
    return stateOf(a, this.route(a)?.levels[a.level]?.step_up);
  }

  private route(a: Pick<ActionRow, "routeName">): Route | null {
    return this.deps.policy.routes.find((r) => r.name === a.routeName) ?? null;
  }

  private deadlineFor(a: ActionRow, route: Route, toLevel: number, now: Date): number {
    const level = route.levels[toLevel];
    if (!level) return now.getTime();
    const tz = this.deps.policy.regions[a.region]?.tz ?? "UTC";
    return levelDeadline({
      now,
      level,
      route,
      tz,
      requestedAt: new Date(a.requestedAt),
      timeoutS: a.request.timeout_s,
    }).getTime();
  }

  private async resolveEligible(
    a: ActionRow,
    spec: Route["levels"][number]["approvers"],
  ): Promise<{ eligible: string[]; excluded: { user: string; why: string }[] }> {
    const agent = this.deps.policy.agents[a.agentId];
    const candidates = new Set<string>(spec.users);
    for (const g of spec.groups) for (const u of await this.deps.directory.groupMembers(g)) candidates.add(u);
    for (const role of spec.owners) for (const u of agent?.owners[role] ?? []) candidates.add(u);
    const onBehalf = a.request.on_behalf_of?.slack_user ?? null;
    const eligible: string[] = [];
    const excluded: { user: string; why: string }[] = [];
    for (const id of candidates) {
      if (id === onBehalf) {
        excluded.push({ user: id, why: "on_behalf_of" });
        continue;
      }
      const u = await this.deps.directory.user(id);
      const why = !u
        ? "unknown_user"
        : u.deleted
          ? "deactivated"
          : u.isBot
            ? "bot"
            : u.isGuest
              ? "guest"
              : u.team !== this.deps.policy.slack.team_id
                ? "other_workspace"
                : null;
      if (why) excluded.push({ user: id, why });
      else eligible.push(id);
    }
    return { eligible, excluded };
  }

  /** Turn a step of the core into what the store must write, with its events and effects. */
  private plan(a: ActionWithVotes, step: Step, now: Date, actor: string, ctx: PlanContext): Plan | Refused {
    const t = now.getTime();
    if (step.kind === "refused") {
      const events: NewEvent[] = [];
      if (ctx.voter) {
        events.push({
          type: "vote_refused",
          actor,
          data: {
            code: step.code,
            reason: step.reason,
            vote: ctx.ballot?.vote,
            level: ctx.ballot?.cardLevel,
          },
        });
      }
      return { refused: { code: step.code, reason: step.reason }, events };
    }
    switch (step.kind) {
      case "vote": {
        const events: NewEvent[] = [
          {
            type: "vote_cast",
            actor,
            data: { vote: step.vote.vote, level: a.level, comment: step.vote.comment ?? null },
          },
        ];
        const votes = [...a.votes, { ...step.vote, level: a.level }];
        const effects: NewEffect[] = [
          {
            kind: "thread_note",
            dedupeKey: `note:${a.id}:vote:${step.vote.user}${revisionKey(a)}`,
            payload: { level: a.level, note: "vote", user: step.vote.user },
          },
        ];
        if (!step.decision) {
          // Redraw the card so its tally shows the vote, not only the thread.
          effects.push({
            kind: "update_card",
            dedupeKey: `tally:${a.id}:${step.vote.user}${revisionKey(a)}`,
          });
          return { vote: { ...step.vote, level: a.level }, events, effects };
        }
        return {
          vote: { ...step.vote, level: a.level },
          events: [...events, decidedEvent(step.decision)],
          effects: [...effects, ...this.decisionEffects(a, step.decision)],
          decision: { outcome: step.decision, claims: this.claims(a, votes, step.decision, now) },
        };
      }
      case "level_started":
        return {
          set: { eligible: step.eligible, quorum: step.quorum },
          events: [
            {
              type: "level_started",
              actor,
              data: {
                level: step.level,
                eligible: step.eligible,
                excluded: ctx.excluded ?? [],
                quorum: step.quorum,
              },
            },
          ],
          effects: [
            { kind: "post_card", dedupeKey: `card:${a.id}:${step.level}`, payload: { level: step.level } },
            // One reminder per level, at half the time to its deadline.
            ...(a.deadlineAt && a.deadlineAt > t
              ? [
                  {
                    kind: "remind" as const,
                    dedupeKey: `remind:${a.id}:${step.level}`,
                    payload: { level: step.level },
                    dueAt: t + Math.floor((a.deadlineAt - t) / 2),
                  },
                ]
              : []),
          ],
        };
      case "escalate":
        return {
          set: { level: step.toLevel, quorum: step.quorum, eligible: null, deadlineAt: step.deadlineAt },
          events: [
            {
              type: "escalated",
              actor,
              data: {
                from_level: step.fromLevel,
                to_level: step.toLevel,
                why: step.why,
                deadline: new Date(step.deadlineAt).toISOString(),
                ...(ctx.eligible ? { eligible: ctx.eligible, excluded: ctx.excluded ?? [] } : {}),
              },
            },
          ],
          effects: [
            {
              kind: "thread_note",
              dedupeKey: `note:${a.id}:escalated:${step.toLevel}`,
              payload: {
                level: step.fromLevel,
                note: "escalated",
                to_level: step.toLevel,
                deadline: step.deadlineAt,
              },
            },
            ...levelEffects(a.id, step.toLevel, step.deadlineAt, a.capAt),
          ],
        };
      case "decide": {
        const eligible = a.eligible ?? ctx.eligible ?? [];
        return {
          events: [decidedEvent(step.decision, actor)],
          effects: this.decisionEffects(a, step.decision),
          decision: {
            outcome: step.decision,
            claims: this.claims({ ...a, eligible }, a.votes, step.decision, now),
          },
        };
      }
      default:
        return assertNever(step, "decision step");
    }
  }

  /**
   * What follows every verdict: the cards updated, the agent's jobs released, its
   * webhook, the requester told; and when nobody decided (a timeout, or nobody eligible),
   * the agent's technical owners too, since a silent timeout is a broken process.
   */
  private decisionEffects(a: Pick<ActionRow, "id" | "agentId" | "request">, d: DecisionOutcome): NewEffect[] {
    const effects = decisionEffects(a, a.request);
    if (d.verdict === "approved") {
      // The decided card offers Revoke until valid_until: redraw it then, so the button goes.
      effects.push({
        kind: "update_card",
        dedupeKey: `update:${a.id}:valid_until`,
        dueAt: this.deps.now().getTime() + this.deps.policy.defaults.approval_valid_for_ms + 1_000,
      });
    }
    if (d.reasonCode === "timeout" || d.reasonCode === "no_eligible_approvers") {
      for (const u of this.deps.policy.agents[a.agentId]?.owners.technical ?? []) {
        effects.push({ kind: "dm", dedupeKey: `dm:${a.id}:owner:${u}`, payload: { to: u, why: "owner" } });
      }
    }
    return effects;
  }

  /** The record's claims, all but seq and prev. */
  claims(
    a: Pick<
      ActionRow,
      | "id"
      | "agentId"
      | "requestId"
      | "request"
      | "requestSha256"
      | "riskClass"
      | "region"
      | "routeName"
      | "level"
      | "quorum"
      | "eligible"
      | "requestedAt"
      | "policySha256"
    > & { readonly revisions?: readonly Revision[] },
    votes: readonly ActionWithVotes["votes"][number][],
    outcome: DecisionOutcome,
    now: Date,
  ): UnchainedClaims {
    const revisions = a.revisions ?? [];
    const changed = revisions.length > 0;
    const decided = currentRequest({ ...a, revisions });
    const req = decided.request;
    // Milliseconds kept: cut to the second, a record would say it was decided before its deciding vote.
    const decidedAt = now;
    return {
      ver: 1,
      iss: this.deps.policy.issuer,
      sub: a.agentId,
      jti: newId("dec", now.getTime(), this.deps.random),
      iat: Math.floor(now.getTime() / 1000),
      action_id: a.id,
      request_id: a.requestId,
      action_type: req.action.type,
      summary: req.action.summary,
      // The revision decided, when approvers changed it; the agent's digest and the edits with it.
      action_sha256: decided.sha256,
      ...(changed ? { original_sha256: a.requestSha256, edits: revisions.map((r) => r.edit) } : {}),
      risk_class: a.riskClass,
      region: a.region,
      purpose: req.purpose,
      systems: req.action.systems ?? [],
      on_behalf_of: req.on_behalf_of ?? null,
      verdict: outcome.verdict,
      reason_code: outcome.reasonCode,
      reason_text: outcome.reasonText,
      route: { name: a.routeName, quorum: a.quorum, escalation_level: a.level },
      eligible: a.eligible ?? [],
      votes: votes.map(({ level: _level, revision, ...v }) =>
        changed && revision !== undefined ? { ...v, revision } : v,
      ),
      requested_at: new Date(a.requestedAt).toISOString(),
      decided_at: decidedAt.toISOString(),
      ...(outcome.verdict === "approved"
        ? {
            valid_until: new Date(
              decidedAt.getTime() + this.deps.policy.defaults.approval_valid_for_ms,
            ).toISOString(),
          }
        : {}),
      policy_sha256: a.policySha256,
    };
  }
}

interface PlanContext {
  voter?: Voter;
  ballot?: { vote: "approve" | "deny"; comment?: string; cardLevel: number; revision?: number };
  eligible?: readonly string[];
  excluded?: readonly { user: string; why: string }[];
}

function stateOf(a: ActionWithVotes, stepUp: "passkey" | undefined): ActionState {
  return {
    id: a.id,
    status: a.status,
    routeName: a.routeName,
    level: a.level,
    quorum: a.quorum,
    eligible: a.eligible,
    deadlineAt: a.deadlineAt,
    capAt: a.capAt,
    onBehalfOf: a.request.on_behalf_of?.slack_user ?? null,
    votes: a.votes,
    revision: a.revision,
    ...(stepUp ? { stepUp } : {}),
  };
}

/** Dedupe keys of a vote's effects: a person may vote again on a later revision. */
function revisionKey(a: Pick<ActionRow, "revision">): string {
  return a.revision > 1 ? `:r${a.revision}` : "";
}

function hasVoted(a: ActionWithVotes, user: string): boolean {
  return a.votes.some((v) => v.user === user);
}

function refusedResult(a: ActionWithVotes): MutateResult {
  return { kind: "refused", code: "stale", reason: "nothing to do", action: a };
}

function decidedEvent(d: DecisionOutcome, actor = "system"): NewEvent {
  const type = d.verdict === "expired" ? "expired" : d.verdict === "cancelled" ? "cancelled" : "decided";
  return { type, actor, data: { verdict: d.verdict, reason_code: d.reasonCode, reason_text: d.reasonText } };
}

function levelEffects(
  id: string,
  level: number,
  deadlineAt: number | null,
  capAt: number | null,
): NewEffect[] {
  const at = [deadlineAt, capAt].filter((x): x is number => x !== null);
  return [
    { kind: "start_level", dedupeKey: `level:${id}:${level}`, payload: { level } },
    ...(at.length
      ? [
          {
            kind: "timer" as const,
            dedupeKey: `timer:${id}:${level}`,
            payload: { level, at: Math.min(...at) },
          },
        ]
      : []),
  ];
}

/** What follows every verdict: the cards updated, the agent's jobs released, the requester told. */
export function decisionEffects(a: Pick<ActionRow, "id">, request: ActionRequest): NewEffect[] {
  const effects: NewEffect[] = [
    { kind: "release", dedupeKey: `release:${a.id}` },
    { kind: "update_card", dedupeKey: `update:${a.id}` },
  ];
  if (request.callback_url) effects.push({ kind: "webhook", dedupeKey: `webhook:${a.id}` });
  if (request.on_behalf_of?.slack_user) {
    effects.push({
      kind: "dm",
      dedupeKey: `dm:${a.id}:requester`,
      payload: { to: request.on_behalf_of.slack_user },
    });
  }
  return effects;
}

export type { AgentPolicy };

export class RedeliveryError extends AppError<"not_found" | "not_decided" | "no_callback"> {
  override readonly name = "RedeliveryError";
}

/**
 * Queue a decided action's webhook once more (the same webhook-id); a running server's
 * outbox carries it out. A use-case of its own because the CLI runs it without the rest
 * of Approvals (no policy, no Slack). Throws RedeliveryError saying why it cannot.
 */
export async function redeliverWebhook(
  store: Pick<Store, "getAction" | "addEffects">,
  actionId: string,
  now: number,
): Promise<{ readonly callbackUrl: string }> {
  const a = await store.getAction(actionId);
  if (!a) throw new RedeliveryError("not_found", `no action ${actionId}`);
  if (a.status !== "decided") {
    throw new RedeliveryError("not_decided", `action ${actionId} has no verdict yet`);
  }
  const callbackUrl = a.request.callback_url;
  if (!callbackUrl) throw new RedeliveryError("no_callback", `action ${actionId} has no callback_url`);
  await store.addEffects(
    actionId,
    [{ kind: "webhook", dedupeKey: `webhook:${actionId}:redeliver:${now}` }],
    now,
  );
  return { callbackUrl };
}
