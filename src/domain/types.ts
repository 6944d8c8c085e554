/**
 * The shared vocabulary of Countersign's core. Everything here is plain data:
 * no I/O, no clocks, no Slack, no database. Adapters translate to and from it.
 */

import { AppError } from "./errors.js";
export type Verdict = "approved" | "denied" | "expired" | "cancelled";
export const VERDICTS: readonly Verdict[] = ["approved", "denied", "expired", "cancelled"];

export type ReasonCode =
  | "approvers"
  | "policy"
  | "timeout"
  | "no_route"
  | "no_eligible_approvers"
  | "cancelled";

/** Why a request was refused before it became an action. */
export type RejectionCode =
  | "invalid_request"
  | "unknown_agent"
  | "bad_proof"
  | "proof_expired"
  | "replayed_proof"
  | "action_not_allowed"
  | "region_not_allowed"
  | "callback_not_allowed"
  | "request_id_conflict"
  | "too_many_pending"
  | "unknown_executor";

/** One failing field; `path` is dotted as in `action.summary` (array items as `action.systems.3`). */
export interface FieldError {
  readonly path: string;
  readonly message: string;
}

/**
 * A refusal with a stable code. The message says what is wrong and where, in words a
 * person can act on; it never contains database or library internals.
 */
export class RejectionError extends AppError<RejectionCode> {
  override readonly name = "RejectionError" as const;
  constructor(
    code: RejectionCode,
    message: string,
    readonly errors: readonly FieldError[] = [],
  ) {
    super(code, message);
  }
  /** The BullMQ failedReason / log form: `rejected: <code>: <what and where>`. */
  get failedReason(): string {
    return `rejected: ${this.code}: ${this.message}`;
  }
}

// ---------------------------------------------------------------------------
// The agent's request: its type is derived from the schema that
// validates it, in src/domain/request.ts.
import type { OnBehalfOf } from "./request.js";

export type { ActionRequest, OnBehalfOf } from "./request.js";

// ---------------------------------------------------------------------------
// The policy file, after parsing and validation (src/domain/policy.ts).
// Durations are milliseconds. Every list is present (possibly empty) so callers
// never need to guess a default.

export type Weekday = "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun";

export interface BusinessHours {
  readonly days: readonly Weekday[];
  /** "HH:MM", 24 h, local to the region's time zone. */
  readonly start: string;
  readonly end: string;
}

export interface ApproverSpec {
  readonly users: readonly string[];
  /** Slack user group ids (S...), resolved with usergroups.users.list. */
  readonly groups: readonly string[];
  /** Owner roles of the requesting agent (e.g. "risk"), resolved through AgentPolicy.owners. */
  readonly owners: readonly string[];
}

/** One level of a route's ladder. Level 0 is the route itself; escalation levels follow. */
export interface RouteLevel {
  readonly approvers: ApproverSpec;
  readonly channel: string;
  readonly quorum: number;
  readonly timeout_ms: number;
  /** `passkey`: each approval at this level is confirmed with the approver's own passkey (SPEC "Step-up"). */
  readonly step_up?: "passkey";
}

/**
 * One `when.details` condition on a JSON Pointer into `action.details` (SPEC "Policy file").
 * All operators given must hold. `gt`..`lte` compare numbers; `eq`/`in` by RFC 8785 equality.
 */
export interface DetailCondition {
  readonly eq?: JsonValue;
  readonly in?: readonly JsonValue[];
  readonly gt?: number;
  readonly gte?: number;
  readonly lt?: number;
  readonly lte?: number;
  readonly exists?: boolean;
}

/** Plain JSON, as parsed. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | readonly JsonValue[]
  | { readonly [key: string]: JsonValue };

export interface RouteWhen {
  readonly risk_class?: readonly string[];
  readonly region?: readonly string[];
  /** Action type globs: `*` matches within one dotted segment, a trailing `.*` also matches deeper. */
  readonly action?: readonly string[];
  readonly agent?: readonly string[];
  readonly vendor_managed?: boolean;
  /** JSON Pointer (RFC 6901) into `action.details` -> its condition. */
  readonly details?: Readonly<Record<string, DetailCondition>>;
}

export interface Route {
  readonly name: string;
  /** 0-based position in the file; first match wins. */
  readonly index: number;
  readonly when: RouteWhen;
  /** Set for `auto:` routes, which have no levels. */
  readonly auto?: "approve" | "deny";
  /** Level 0 is the route; then its `escalation` entries. Empty for auto routes. */
  readonly levels: readonly RouteLevel[];
  readonly on_timeout: "deny" | "escalate";
  readonly business_hours?: BusinessHours;
}

export interface CallbackOrigin {
  /** Normalised `scheme://host[:port]` (default ports dropped, host lower-case). */
  readonly origin: string;
  readonly allow_private: boolean;
}

export type AgentAuth =
  | { readonly kind: "hmac"; readonly secret_env: string }
  | { readonly kind: "eddsa"; readonly public_key_file: string /* absolute path */ };

export interface AgentPolicy {
  readonly id: string;
  /** Role name -> Slack user ids (a role in the file may be one id or a list). */
  readonly owners: Readonly<Record<string, readonly string[]>>;
  readonly auth: AgentAuth;
  readonly webhook_secret_env?: string;
  readonly callback_origins: readonly CallbackOrigin[];
  /** Action type globs, same syntax as RouteWhen.action. */
  readonly allowed_actions: readonly string[];
  /** Empty: any of the policy's regions. */
  readonly regions: readonly string[];
  readonly vendor_managed: boolean;
  readonly max_pending: number;
  /**
   * The MCP gateway's rules for this agent's tool calls, in order; empty: the gateway refuses
   * every call. Absent when the agent has none: read it as `agent.mcp_tools ?? []`.
   */
  readonly mcp_tools?: readonly McpToolRule[];
}

/** A service that carries out approved actions and redeems their grants (docs/agents.md). */
export interface ExecutorPolicy {
  readonly id: string;
  readonly auth: AgentAuth;
  /** Action type globs whose approvals it may redeem, same syntax as allowed_actions. */
  readonly may_redeem: readonly string[];
  /** Agents whose approvals it may redeem; empty: any agent's. */
  readonly for_agents: readonly string[];
}

/** Passes through without approval. */
export interface McpAllowRule {
  readonly kind: "allow";
  readonly tool: string;
}
/** Refused, never forwarded. */
export interface McpDenyRule {
  readonly kind: "deny";
  readonly tool: string;
}
/** Sent to Countersign as an ActionRequest and held until the verdict. */
export interface McpApprovalRule {
  readonly kind: "approval";
  readonly tool: string;
  readonly action: string;
  readonly risk_class: string;
  readonly region: string;
  /** `{name}` is filled from the call's top-level argument `name`; absent: "MCP tool call <tool>". */
  readonly summary: string | null;
}
export type McpToolRule = McpAllowRule | McpDenyRule | McpApprovalRule;

export interface Policy {
  readonly issuer: string;
  readonly slack: { readonly team_id: string };
  /** In rising order. */
  readonly risk_classes: readonly string[];
  readonly regions: Readonly<Record<string, { readonly tz: string }>>;
  readonly defaults: {
    readonly timeout_ms: number;
    readonly on_timeout: "deny" | "escalate";
    readonly approval_valid_for_ms: number;
    readonly max_pending: number;
  };
  /** Action type glob -> the lowest risk class it may carry. */
  readonly actions: Readonly<Record<string, { readonly min_risk: string }>>;
  readonly agents: Readonly<Record<string, AgentPolicy>>;
  /** Absent in a policy built without them: no executor may redeem anything. */
  readonly executors?: Readonly<Record<string, ExecutorPolicy>>;
  readonly routes: readonly Route[];
  /** base64url SHA-256 of the policy file's bytes, as recorded in `policy_sha256`. */
  readonly sha256: string;
  /** Absolute path of the file it came from (relative key paths resolve against its folder). */
  readonly file: string;
}

// ---------------------------------------------------------------------------
// Votes and records.

export interface Vote {
  readonly user: string;
  readonly team: string;
  readonly email?: string;
  readonly real_name?: string;
  readonly vote: "approve" | "deny";
  /** ISO 8601. */
  readonly at: string;
  readonly comment?: string;
  /** From 1: the revision this vote was cast for, present when approvers changed the request. */
  readonly revision?: number;
  /** Present when the vote was confirmed with the approver's passkey (SPEC "Step-up"). */
  readonly step_up?: StepUpProof;
}

/** The WebAuthn assertion that confirmed an approval, as the record carries it (base64url fields). */
export interface StepUpProof {
  readonly method: "webauthn";
  readonly credential_id: string;
  readonly public_key: PublicJwk;
  readonly authenticator_data: string;
  readonly client_data_json: string;
  readonly signature: string;
  readonly nonce: string;
}

/** A public key as a JWK (EC P-256, OKP Ed25519 or RSA), as WebAuthn credentials carry them. */
export interface PublicJwk {
  readonly kty: string;
  readonly crv?: string;
  readonly x?: string;
  readonly y?: string;
  readonly n?: string;
  readonly e?: string;
  readonly alg?: string;
}

/** One RFC 6902 operation, as `edits[].patch` carries it. */
export interface JsonPatchOperation {
  readonly op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  readonly path: string;
  readonly value?: JsonValue;
  readonly from?: string;
}

/** One change an approver made before approval (SPEC "Changes before approval"). */
export interface Edit {
  readonly user: string;
  readonly team: string;
  /** ISO 8601. */
  readonly at: string;
  /** Turns the previous revision into the next. */
  readonly patch: readonly JsonPatchOperation[];
}

/** The payload of a decision record, exactly as signed. */
export interface RecordClaims {
  readonly ver: 1;
  readonly iss: string;
  readonly sub: string;
  readonly jti: string;
  readonly iat: number;
  readonly action_id: string;
  readonly request_id: string;
  readonly action_type: string;
  readonly summary: string;
  readonly action_sha256: string;
  /** Only when approvers changed the request: the agent's digest (the proof's `req`). */
  readonly original_sha256?: string;
  /** Only when approvers changed the request, in order. */
  readonly edits?: readonly Edit[];
  readonly risk_class: string;
  readonly region: string;
  readonly purpose: string;
  readonly systems: readonly string[];
  readonly on_behalf_of: OnBehalfOf | null;
  readonly verdict: Verdict;
  readonly reason_code: ReasonCode;
  readonly reason_text: string;
  readonly route: {
    readonly name: string | null;
    readonly quorum: number;
    readonly escalation_level: number;
  };
  readonly eligible: readonly string[];
  readonly votes: readonly Vote[];
  readonly requested_at: string;
  readonly decided_at: string;
  readonly valid_until?: string;
  readonly policy_sha256: string;
  readonly seq: number;
  readonly prev: string | null;
}

// ---------------------------------------------------------------------------
// Receipts: what happened to an approval after its verdict (redeemed, its outcome,
// revoked), as entries of the same log as the decision records. Every kind shares the
// chain fields; a kind about an action also names the decision it concerns. A kind that
// is about no action (a passkey registration) extends ReceiptBase directly, so adding one
// is one more member of ReceiptClaims.

/** Fields every receipt carries: its place in the log and when it happened. */
export interface ReceiptBase {
  readonly ver: 1;
  readonly iss: string;
  /** The receipt's own id. */
  readonly jti: string;
  readonly iat: number;
  readonly seq: number;
  readonly prev: string | null;
  /** ISO 8601: when it was committed. */
  readonly at: string;
}

/** A receipt about one approved decision. */
export interface ActionReceiptBase extends ReceiptBase {
  /** The agent whose approval it is (the decision's `sub`). */
  readonly sub: string;
  readonly action_id: string;
  /** The decision's `jti`. */
  readonly decision: string;
  /** base64url SHA-256 of the decision's JWS text. */
  readonly decision_sha256: string;
}

/** An executor used the approval: at most one per decision, before `valid_until`, never after a revocation. */
export interface RedeemedReceiptClaims extends ActionReceiptBase {
  readonly kind: "redeemed";
  readonly by: { readonly executor: string };
}

export type OutcomeStatus = "succeeded" | "failed";

/** How the execution went: at most one per decision, by the redeeming executor (or the agent when none redeemed it). */
export interface OutcomeReceiptClaims extends ActionReceiptBase {
  readonly kind: "outcome";
  readonly by: { readonly agent: string } | { readonly executor: string };
  readonly status: OutcomeStatus;
  /** At most 1000 characters; absent when none was given. */
  readonly detail?: string;
}

/** The approval was withdrawn before anyone redeemed it. */
export interface RevokedReceiptClaims extends ActionReceiptBase {
  readonly kind: "revoked";
  readonly by: { readonly user: string; readonly team: string } | { readonly cli: true };
  readonly reason_text: string;
}

/**
 * A person registered a passkey (SPEC "Step-up"): about no action, so it has `user`,
 * `team`, `credential_id` and `public_key` in place of `action_id` and `decision`.
 */
export interface PasskeyRegisteredReceiptClaims extends ReceiptBase {
  readonly kind: "passkey_registered";
  readonly user: string;
  readonly team: string;
  /** base64url. */
  readonly credential_id: string;
  readonly public_key: PublicJwk;
}

/** The payload of a receipt (`typ: receipt+jwt`), exactly as signed. */
export type ReceiptClaims =
  | RedeemedReceiptClaims
  | OutcomeReceiptClaims
  | RevokedReceiptClaims
  | PasskeyRegisteredReceiptClaims;
export type ReceiptKind = ReceiptClaims["kind"];
export const RECEIPT_KINDS: readonly ReceiptKind[] = ["redeemed", "outcome", "revoked", "passkey_registered"];

/** A receipt's claims before the log gives it a place (distributes over the kinds). */
export type UnchainedReceiptClaims = Unchained<ReceiptClaims>;
type Unchained<C> = C extends unknown ? Omit<C, "seq" | "prev"> : never;
