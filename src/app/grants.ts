/**
 * After the verdict: an approval is redeemed once by the executor that carries it out, its
 * outcome is reported once, and until it is redeemed (or its valid_until passes) it can be
 * revoked. Each of these is a receipt, the log's next entry, appended in the transaction
 * that judges it (Store.appendReceipt holds the action), so of a redeem and a revoke that
 * race the first to commit wins and the other is refused with its code.
 *
 * The checks run in the order docs/agents.md gives (authentication, bad_record, forbidden,
 * not_approved, action_mismatch, already_redeemed, revoked, grant_expired): an executor
 * without rights learns nothing about the approval, and a redeemer that retries gets its
 * own receipt back. Every refusal is an audit event.
 */

import { GRANT_EVENTS } from "../audit/events.js";
import { requestDigest } from "../domain/canonical.js";
import { AppError } from "../domain/errors.js";
import { newId, type RandomBytes } from "../domain/ids.js";
import { actionGlobMatches } from "../domain/policy.js";
import type {
  OutcomeStatus,
  Policy,
  ReceiptClaims,
  RecordClaims,
  UnchainedReceiptClaims,
} from "../domain/types.js";
import type {
  GrantCode,
  NewEffect,
  NewEvent,
  ReceiptPlan,
  ReceiptResult,
  ReceiptState,
  Refused,
  Store,
  StoredReceipt,
} from "./ports.js";

export type { GrantCode } from "./ports.js";

/** A refusal of a redeem, outcome or revoke; the HTTP API maps `code` to its status. */
export class GrantRefusal extends AppError<GrantCode> {
  override readonly name = "GrantRefusal" as const;
  constructor(
    code: GrantCode,
    message: string,
    /** Extra members of the problem (already_redeemed: redeemed_at and the first receipt). */
    readonly extra: Readonly<Record<string, unknown>> = {},
  ) {
    super(code, message);
  }
}

export interface GrantsDeps {
  readonly store: Store;
  readonly policy: Policy;
  /** Verifies a decision record's signature against the log's keys; throws when it does not verify. */
  readonly verifyRecord: (jws: string) => Promise<RecordClaims>;
  /** The randomness of receipt ids, given like the clock. */
  readonly random: RandomBytes;
}

/** Who acts on the approval. */
export type GrantActor =
  | { readonly executor: string }
  | { readonly agent: string }
  | { readonly user: string; readonly team: string }
  | { readonly cli: true };

const DETAIL_LIMIT = 1000;

/** The one answer for an action that does not exist and for another agent's. */
const NO_SUCH_ACTION = "no such action";

export class Grants {
  constructor(private readonly deps: GrantsDeps) {}

  /** Spends an executor's (or agent's) proof: each token works once. */
  async acceptProof(signerId: string, proof: { readonly jti: string; readonly exp: number }): Promise<void> {
    await this.deps.store.spendProof(signerId, proof, Date.now());
  }

  /** A Revoke click or submission by someone who may not revoke: kept as an audit event. */
  async refuseRevoke(actionId: string, userId: string, reason: string): Promise<void> {
    await this.deps.store.appendEvents(
      actionId,
      null,
      [{ type: GRANT_EVENTS.revokeRefused, actor: `slack:${userId}`, data: { code: "forbidden", reason } }],
      Date.now(),
    );
  }

  /** A redemption refused at the entry point (its authentication, or an agent asking): kept as an audit event. */
  async refuseAtEntry(agentId: string | null, actor: string, code: string, reason: string): Promise<void> {
    await this.deps.store.appendEvents(
      null,
      agentId,
      [{ type: GRANT_EVENTS.redeemRefused, actor, data: { code, reason } }],
      Date.now(),
    );
  }

  /**
   * An outcome report refused before the log's transaction judged it (its authentication,
   * its body, an action that does not exist): kept as an audit event like redeem's, on the
   * action the path names when there is one. An event on an action is never shown to the
   * caller, so keeping it there tells the caller nothing, and `audit events` shows who tried.
   */
  async refuseOutcome(actionId: string, actor: string, code: string, reason: string): Promise<void> {
    const a = await this.deps.store.getAction(actionId);
    await this.deps.store.appendEvents(
      a ? a.id : null,
      a ? a.agentId : null,
      [
        {
          type: GRANT_EVENTS.outcomeRefused,
          actor,
          data: { code, reason, ...(a ? {} : { action_id: actionId.slice(0, 100) }) },
        },
      ],
      Date.now(),
    );
  }

  /** POST /v1/grants/redeem by `executorId` (already authenticated), body `{record, request}`. */
  async redeem(executorId: string, body: unknown): Promise<{ receipt: StoredReceipt; actionId: string }> {
    const refuse = async (
      code: GrantCode,
      reason: string,
      actionId: string | null,
      agentId: string | null,
    ) => {
      await this.deps.store.appendEvents(
        actionId,
        agentId,
        [
          {
            type: GRANT_EVENTS.redeemRefused,
            actor: `executor:${executorId}`,
            data: { executor: executorId, code, reason },
          },
        ],
        Date.now(),
      );
      return new GrantRefusal(code, reason);
    };
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw await refuse("invalid_request", "the body must be {record, request}", null, null);
    }
    const { record, request } = body as { record?: unknown; request?: unknown };
    if (typeof record !== "string") {
      throw await refuse("bad_record", "record must be the decision record's compact JWS text", null, null);
    }
    const badRecord = async (why: string) => {
      // A record that is not the log's entry is verified, only to say why it is refused:
      // a forgery, or another log's record, or a record this log does not hold.
      const reason = await this.deps.verifyRecord(record).then(
        () => why,
        (e: unknown) => (e as Error).message,
      );
      return refuse(
        "bad_record",
        `record is not a decision record of this Countersign: ${reason}`,
        null,
        null,
      );
    };
    let claims: RecordClaims;
    try {
      claims = payloadOf<RecordClaims>(record);
      if (typeof claims !== "object" || claims === null || typeof claims.action_id !== "string")
        throw new Error("it names no action_id");
    } catch (e) {
      throw await refuse(
        "bad_record",
        `record is not a decision record of this Countersign: ${(e as Error).message}`,
        null,
        null,
      );
    }
    // Hashed before the transaction: its critical section should hold only what must be there.
    let requestSha256: string | null = null;
    try {
      if (request !== undefined) requestSha256 = requestDigest(request);
    } catch {
      // Not canonicalisable (a lone surrogate): it cannot be the approved request.
    }
    const notOurs = "it is not the decision this Countersign's log holds for its action";
    // One transaction reads the action with its decision (by primary key) and judges it all.
    // A record is ours when it is, byte for byte, the decision our log holds for its action:
    // that entry was signed as it was written, so no signature needs checking again (which
    // would cost more than the rest of a redemption), and its stored digest is the one the
    // receipt names. Until that is known, the record's claims are not trusted, so its
    // refusal is kept apart from the action it names (outside, below).
    const r = await this.deps.store.appendReceipt(claims.action_id, (s) => {
      const refused = (code: GrantCode, reason: string): Refused => ({
        refused: { code, reason },
        events:
          code === "bad_record"
            ? []
            : [
                {
                  type: GRANT_EVENTS.redeemRefused,
                  actor: `executor:${executorId}`,
                  data: { executor: executorId, code, reason },
                },
              ],
      });
      if (!s.record || s.record.jws !== record || s.record.decisionId !== claims.jti)
        return refused("bad_record", notOurs);
      const executors = this.deps.policy.executors ?? {};
      const executor = Object.hasOwn(executors, executorId) ? executors[executorId] : undefined;
      const covered =
        executor?.may_redeem.some((g) => actionGlobMatches(g, claims.action_type)) === true &&
        (executor.for_agents.length === 0 || executor.for_agents.includes(claims.sub));
      if (!covered) {
        return refused(
          "forbidden",
          `executor ${executorId} may not redeem approvals of ${claims.action_type} for agent ${claims.sub} (may_redeem, for_agents)`,
        );
      }
      if (claims.verdict !== "approved") {
        return refused(
          "not_approved",
          `the record's verdict is ${claims.verdict}: only an approval can be redeemed`,
        );
      }
      if (requestSha256 !== claims.action_sha256) {
        // Approvers changed the request: the agent's own is what it sent, not what was approved.
        const original = claims.original_sha256 !== undefined && requestSha256 === claims.original_sha256;
        return refused(
          "action_mismatch",
          original
            ? "request is the agent's original, but approvers changed it: present the decided revision (the request the job, GET or webhook answered), whose digest is the record's action_sha256"
            : "request is not the approved one: its RFC 8785 digest is not the record's action_sha256",
        );
      }
      const redeemed = s.receipts.find((x) => x.kind === "redeemed");
      if (redeemed)
        return refused("already_redeemed", `the approval was already redeemed at ${iso(redeemed.at)}`);
      if (s.receipts.some((x) => x.kind === "revoked")) return refused("revoked", "the approval was revoked");
      const validUntil = Date.parse(claims.valid_until ?? "");
      if (!(s.now < validUntil))
        return refused(
          "grant_expired",
          `the approval was valid until ${claims.valid_until}; it is ${iso(s.now)}`,
        );
      return plan(
        s,
        {
          kind: "redeemed",
          ...base(this.deps.policy, s, claims, s.record.digest, this.deps.random),
          by: { executor: executorId },
        },
        [{ type: GRANT_EVENTS.redeemed, actor: `executor:${executorId}`, data: { executor: executorId } }],
      );
    });
    if (r.kind === "not_found" || (r.kind === "refused" && r.code === "bad_record"))
      throw await badRecord(notOurs);
    return { receipt: appended(r), actionId: claims.action_id };
  }

  /**
   * POST /v1/actions/:id/outcome: by the executor that redeemed the approval, or by the
   * agent when nothing redeemed it. Once.
   */
  async outcome(
    actionId: string,
    by: { readonly executor: string } | { readonly agent: string },
    body: unknown,
  ): Promise<StoredReceipt> {
    const actor = "executor" in by ? `executor:${by.executor}` : `agent:${by.agent}`;
    const b = body as { status?: unknown; detail?: unknown } | null;
    const extra =
      typeof b === "object" && b !== null && !Array.isArray(b)
        ? Object.keys(b).filter((k) => k !== "status" && k !== "detail")
        : [];
    if (
      typeof b !== "object" ||
      b === null ||
      Array.isArray(b) ||
      (b.status !== "succeeded" && b.status !== "failed") ||
      (b.detail !== undefined && typeof b.detail !== "string") ||
      extra.length
    ) {
      const reason =
        'the body must be {status: "succeeded" | "failed", detail?: string}' +
        (extra.length ? `; unknown field ${extra[0]}` : "");
      await this.refuseOutcome(actionId, actor, "invalid_request", reason);
      throw new GrantRefusal("invalid_request", reason);
    }
    if (typeof b.detail === "string" && [...b.detail].length > DETAIL_LIMIT) {
      const reason = `detail is ${[...b.detail].length} characters; at most ${DETAIL_LIMIT}`;
      await this.refuseOutcome(actionId, actor, "invalid_request", reason);
      throw new GrantRefusal("invalid_request", reason);
    }
    const status = b.status as OutcomeStatus;
    const detail = b.detail as string | undefined;
    const r = await this.deps.store.appendReceipt(actionId, (s) => {
      const refused = (code: GrantCode, reason: string): Refused => ({
        refused: { code, reason },
        events: [{ type: GRANT_EVENTS.outcomeRefused, actor, data: { code, reason } }],
      });
      // An agent sees only its own actions: another agent's is answered as if it did not
      // exist, word for word, and the attempt is kept on it (the actor says who tried).
      if ("agent" in by && s.action.agentId !== by.agent) return refused("not_found", NO_SUCH_ACTION);
      if (s.action.verdict !== "approved" || !s.record)
        return refused(
          "not_approved",
          `action ${actionId} is ${s.action.verdict ?? "pending"}, not approved`,
        );
      const redeemed = s.receipts.find((x) => x.kind === "redeemed");
      const redeemer = redeemed ? redeemerOf(redeemed) : null;
      if ("executor" in by ? redeemer !== by.executor : redeemer !== null) {
        return refused(
          "forbidden",
          // Another executor is not told which one redeemed it; the action's own agent may know.
          redeemer
            ? "agent" in by
              ? `only executor ${redeemer}, which redeemed the approval, may report its outcome`
              : "only the executor that redeemed the approval may report its outcome"
            : "nothing redeemed the approval: only its agent may report its outcome",
        );
      }
      if (s.receipts.some((x) => x.kind === "outcome"))
        return refused("outcome_exists", "an outcome was already reported for this approval");
      const claims = decisionClaims(s.record.jws);
      return plan(
        s,
        {
          kind: "outcome",
          ...base(this.deps.policy, s, claims, s.record.digest, this.deps.random),
          by,
          status,
          ...(detail !== undefined ? { detail } : {}),
        },
        [
          {
            type: GRANT_EVENTS.outcomeReported,
            actor,
            data: { status, ...(detail !== undefined ? { detail } : {}) },
          },
        ],
      );
    });
    if (r.kind === "not_found") {
      await this.refuseOutcome(actionId, actor, "not_found", NO_SUCH_ACTION);
      throw new GrantRefusal("not_found", NO_SUCH_ACTION);
    }
    return appended(r);
  }

  /**
   * Withdraws an approval that nothing has redeemed yet: from Slack (`user`, checked by
   * the caller to be an eligible approver of the last level or an owner) or the CLI.
   */
  async revoke(
    actionId: string,
    by: { readonly user: string; readonly team: string } | { readonly cli: true },
    reasonText: string,
  ): Promise<StoredReceipt> {
    const actor = "cli" in by ? "cli" : `slack:${by.user}`;
    const r = await this.deps.store.appendReceipt(actionId, (s) => {
      const refused = (code: GrantCode, reason: string): Refused => ({
        refused: { code, reason },
        events: [{ type: GRANT_EVENTS.revokeRefused, actor, data: { code, reason } }],
      });
      if (s.action.verdict !== "approved" || !s.record)
        return refused(
          "not_approved",
          `action ${actionId} is ${s.action.verdict ?? "pending"}, not approved`,
        );
      if (s.receipts.some((x) => x.kind === "revoked"))
        return refused("already_revoked", "the approval was already revoked");
      const redeemed = s.receipts.find((x) => x.kind === "redeemed");
      if (redeemed)
        return refused("already_redeemed", `the approval was already redeemed at ${iso(redeemed.at)}`);
      const claims = decisionClaims(s.record.jws);
      if (!(s.now < Date.parse(claims.valid_until ?? "")))
        return refused(
          "grant_expired",
          `the approval was valid until ${claims.valid_until}: nothing left to revoke`,
        );
      return plan(
        s,
        {
          kind: "revoked",
          ...base(this.deps.policy, s, claims, s.record.digest, this.deps.random),
          by,
          reason_text: reasonText,
        },
        [{ type: GRANT_EVENTS.revoked, actor, data: { reason_text: reasonText } }],
        (receipt) =>
          s.action.request.callback_url
            ? [
                {
                  kind: "webhook",
                  dedupeKey: `webhook:${actionId}:revoked`,
                  payload: { receipt_seq: receipt.seq },
                },
              ]
            : [],
      );
    });
    return appended(r);
  }
}

/** Who may revoke from Slack: the last level's eligible approvers and the agent's owners. */
export function mayRevoke(
  policy: Policy,
  a: { agentId: string; eligible: readonly string[] | null },
  user: string,
): boolean {
  if (a.eligible?.includes(user)) return true;
  const owners = policy.agents[a.agentId]?.owners ?? {};
  return Object.values(owners).some((ids) => ids.includes(user));
}

/** The fields every receipt about this decision shares. */
function base(
  policy: Policy,
  s: ReceiptState,
  claims: RecordClaims,
  decisionSha256: string,
  random: RandomBytes,
) {
  return {
    ver: 1 as const,
    iss: policy.issuer,
    sub: claims.sub,
    jti: newId("rct", s.now, random),
    iat: Math.floor(s.now / 1000),
    at: new Date(s.now).toISOString(),
    action_id: s.action.id,
    decision: claims.jti,
    decision_sha256: decisionSha256,
  };
}

/** A receipt's plan, with the card redrawn (Revoke comes and goes) and the step noted in its thread. */
function plan(
  s: ReceiptState,
  claims: UnchainedReceiptClaims,
  events: readonly NewEvent[],
  more: (r: StoredReceipt) => readonly NewEffect[] = () => [],
): ReceiptPlan {
  const id = s.action.id;
  return {
    claims,
    events,
    effects: (receipt) => [
      {
        kind: "thread_note",
        dedupeKey: `note:${id}:${claims.kind}`,
        payload: { level: s.action.level, note: claims.kind, receipt_seq: receipt.seq },
      },
      { kind: "update_card", dedupeKey: `update:${id}:${claims.kind}` },
      ...more(receipt),
    ],
  };
}

function appended(r: ReceiptResult): StoredReceipt {
  if (r.kind === "not_found") throw new GrantRefusal("not_found", NO_SUCH_ACTION);
  if (r.kind === "appended") return r.receipt;
  const code = r.code as GrantCode;
  if (code === "already_redeemed") {
    const first = r.state.receipts.find((x) => x.kind === "redeemed")!;
    throw new GrantRefusal(code, r.reason, { redeemed_at: iso(first.at), receipt: first.jws });
  }
  throw new GrantRefusal(code, r.reason);
}

/** The claims of a JWS of our own log (already verified when it was written). */
export function payloadOf<T>(jws: string): T {
  return JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString("utf8")) as T;
}

function decisionClaims(jws: string): RecordClaims {
  return payloadOf<RecordClaims>(jws);
}

function redeemerOf(r: StoredReceipt): string | null {
  const c = payloadOf<ReceiptClaims>(r.jws);
  return c.kind === "redeemed" ? c.by.executor : null;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
