/**
 * `withApproval(fn, describe, options)`: a tool function that runs only after people
 * approved this very call. The frameworks' own approval features live inside the agent's
 * process and have lost or replayed approvals across restarts; this wrapper keeps the
 * decision outside (Countersign's database, a signed record) and the tool body inside.
 *
 * The call's arguments are the request's `details`, so what approvers see and what the
 * record's digest covers are exactly what `fn` receives. When approvers changed the request
 * ("Approve with changes"), `fn` gets the decided revision's details, not the model's
 * arguments: the record covers those.
 *
 * Outcomes, each plain for a model to read:
 * - approved: the record is verified first (signature, issuer, agent, digest, valid_until);
 *   then the executor (if any) redeems the grant, `fn` runs once, and the outcome is reported.
 * - denied, expired, cancelled, or still pending when `timeoutMs` ran out: `fn` does not
 *   run; a NotApproved result is returned (or thrown, with `onDenied: "throw"`) that says
 *   why, in words a model can pass on.
 * - refused (Rejected), unreachable (TransportError), a record that does not verify
 *   (InvalidRecord): thrown as they are; `fn` does not run.
 */
import { randomUUID } from "node:crypto";
import type { ActionRequest, RecordClaims, Verdict } from "../domain/types.js";
import { AgentClient, type AgentClientOptions, type Settled } from "./client.js";
import { CountersignError } from "./errors.js";
import { type ExecutorOptions, redeemGrant, reportOutcome } from "./grants.js";

/** What `describe(args)` tells approvers; the arguments themselves become `details`. */
export interface ApprovalAsk {
  /** Dotted lower-case action type, e.g. `payments.refund`. */
  type: string;
  /** One line, at most 300 characters: the card's header. */
  summary: string;
  risk_class: string;
  region: string;
  /** Why the agent wants to act, at most 1000 characters. */
  purpose: string;
  systems?: string[];
  /** JSON Pointers into the arguments that approvers may change, e.g. `["/amount"]`. */
  editable?: string[];
  /** The idempotency key. Default: a fresh one per call, so a retried tool call asks again. */
  request_id?: string;
}

/** An approved, verified grant: what an executor redeems. */
export interface ApprovalGrant {
  actionId: string;
  /** The signed decision record. */
  record: string;
  claims: RecordClaims;
  /** The request as decided: its canonical digest is the record's `action_sha256`. */
  request: ActionRequest;
}

/**
 * Where the approval is used once: the grants API (`POST /v1/grants/redeem` and
 * `POST /v1/actions/:id/outcome`). Pass the executor's ExecutorOptions to `executor` and
 * withApproval redeems with redeemGrant and reports with reportOutcome; an object of this
 * shape is for an executor of your own. Without either, the approval's single use rests
 * on this process alone.
 */
export interface ApprovalExecutor {
  /**
   * Redeems the grant before `fn` runs; a throw stops `fn` (an already redeemed, revoked
   * or expired grant must never run the action). Returns the receipt.
   */
  redeem(grant: ApprovalGrant): Promise<unknown>;
  /** Reports how `fn` ended, after it ended; `detail` at most 1000 characters. */
  reportOutcome(o: {
    grant: ApprovalGrant;
    receipt: unknown;
    status: "succeeded" | "failed";
    detail?: string;
  }): Promise<void>;
}

export type NotApprovedStatus = Exclude<Verdict, "approved"> | "pending";

/** What a model is told when its call did not run. */
export interface NotApprovedResult {
  approved: false;
  status: NotApprovedStatus;
  action_id: string;
  /** The approver's reason or the cancel note; "" when none was given. */
  reason_text: string;
  /** A sentence for the model: what happened and what (not) to do next. */
  message: string;
  /** The signed record, when the action was decided. */
  record?: string;
}

/** Thrown instead of returned with `onDenied: "throw"`; `message` is written for the model. */
export class NotApproved extends CountersignError {
  override readonly name = "NotApproved" as const;
  constructor(readonly result: NotApprovedResult) {
    super(result.message);
  }
}

export interface WithApprovalOptions extends Omit<AgentClientOptions, "baseUrl"> {
  /** Where Countersign serves its API. */
  baseUrl: string;
  /** How long to wait for a verdict; then the call is not run (status pending). Default 10 minutes. */
  timeoutMs?: number;
  /** On a denial (or expiry, cancel, pending): return a NotApprovedResult (default) or throw NotApproved. */
  onDenied?: "return" | "throw";
  /** Redeem each approval before `fn` runs and report its outcome: the executor's options, or your own. */
  executor?: ApprovalExecutor | ExecutorOptions;
  /**
   * A failed outcome report does not turn a finished action into a failure the model
   * would retry; it is passed here. Default: a warning on stderr.
   */
  onOutcomeError?: (e: unknown, grant: ApprovalGrant) => void;
}

type Args = Record<string, unknown>;

export function withApproval<A extends Args, R, Rest extends unknown[]>(
  fn: (args: A, ...rest: Rest) => R | Promise<R>,
  describe: (args: A) => ApprovalAsk,
  options: WithApprovalOptions & { onDenied: "throw" },
): (args: A, ...rest: Rest) => Promise<R>;
export function withApproval<A extends Args, R, Rest extends unknown[]>(
  fn: (args: A, ...rest: Rest) => R | Promise<R>,
  describe: (args: A) => ApprovalAsk,
  options: WithApprovalOptions,
): (args: A, ...rest: Rest) => Promise<R | NotApprovedResult>;
export function withApproval<A extends Args, R, Rest extends unknown[]>(
  fn: (args: A, ...rest: Rest) => R | Promise<R>,
  describe: (args: A) => ApprovalAsk,
  options: WithApprovalOptions,
): (args: A, ...rest: Rest) => Promise<R | NotApprovedResult> {
  const client = new AgentClient(options);
  const executor =
    options.executor && "identity" in options.executor ? grantsApi(options.executor) : options.executor;
  const timeoutMs = options.timeoutMs ?? 10 * 60_000;
  const onOutcomeError =
    options.onOutcomeError ??
    ((e: unknown, g: ApprovalGrant) =>
      process.emitWarning(
        `countersign: the outcome of ${g.actionId} could not be reported: ${e instanceof Error ? e.message : String(e)}`,
      ));

  return async (args: A, ...rest: Rest) => {
    const ask = describe(args);
    const { request_id, type, summary, systems, editable, ...who } = ask;
    const request = {
      request_id: request_id ?? `tool-${randomUUID()}`,
      agent_id: client.agentId,
      action: {
        type,
        summary,
        details: args,
        ...(systems === undefined ? {} : { systems }),
        ...(editable === undefined ? {} : { editable }),
      },
      risk_class: who.risk_class,
      region: who.region,
      purpose: who.purpose,
    } as ActionRequest;

    let answer = await client.submit(request);
    if (answer.status === "pending") answer = await client.wait(answer.action_id, { timeoutMs });
    if (answer.status === "pending") {
      return notApproved(options, {
        approved: false,
        status: "pending",
        action_id: answer.action_id,
        reason_text: "",
        message: `Not done: nobody has decided on action ${answer.action_id} yet, so it was not carried out. Do not do it another way; ask the user whether to wait.`,
      });
    }
    const s = await client.settle(answer, request);
    if (s.verdict !== "approved") return notApproved(options, refusal(s));

    const grant: ApprovalGrant = {
      actionId: s.action_id,
      record: s.record,
      claims: s.claims,
      request: s.request,
    };
    const receipt = executor ? await executor.redeem(grant) : undefined;
    // The record's details are the arguments: a revision approvers made is what runs.
    const decidedArgs = (s.request.action.details ?? {}) as A;
    let out: R;
    try {
      out = await fn(decidedArgs, ...rest);
    } catch (e) {
      if (executor) {
        const detail = (e instanceof Error ? e.message : String(e)).slice(0, 1000);
        await executor
          .reportOutcome({ grant, receipt, status: "failed", detail })
          .catch((err: unknown) => onOutcomeError(err, grant));
      }
      throw e;
    }
    if (executor) {
      await executor
        .reportOutcome({ grant, receipt, status: "succeeded" })
        .catch((err: unknown) => onOutcomeError(err, grant));
    }
    return out;
  };
}

function refusal(s: Settled): NotApprovedResult {
  const reason = s.claims.reason_text;
  const why = reason ? `: "${reason}"` : "";
  const message =
    s.verdict === "denied"
      ? `Not done: the action was denied${s.claims.reason_code === "approvers" ? " by its approvers" : ` (${s.claims.reason_code})`}${why}. Do not retry it unchanged; tell the user why.`
      : s.verdict === "expired"
        ? "Not done: nobody approved the action before its deadline. Do not retry it unchanged; tell the user."
        : `Not done: the request was cancelled${why}.`;
  return {
    approved: false,
    status: s.verdict as NotApprovedStatus,
    action_id: s.action_id,
    reason_text: reason,
    message,
    record: s.record,
  };
}

function notApproved(o: WithApprovalOptions, r: NotApprovedResult): NotApprovedResult {
  if (o.onDenied === "throw") throw new NotApproved(r);
  return r;
}

/** The grants API as an ApprovalExecutor: redeem before running, report after. */
function grantsApi(o: ExecutorOptions): ApprovalExecutor {
  return {
    redeem: (g) => redeemGrant(g.record, g.request, o),
    reportOutcome: async ({ grant, status, detail }) => {
      await reportOutcome(grant.actionId, status, detail, o);
    },
  };
}
