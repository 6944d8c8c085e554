/**
 * What an agent can be told instead of "approved". Each outcome is its own class so an
 * agent's `catch` can tell "a person said no" (Denied) from "you asked wrongly" (Rejected)
 * from "ask again later" (TransportError, WaitTimeout), and never mistake one for another.
 */
import type { FieldError, RecordClaims, RejectionCode } from "../domain/types.js";

/** Rejection codes, plus the HTTP API's own (`unauthenticated`, `forbidden`, `not_found`, `too_large`). */
export type RejectedCode = RejectionCode | "unauthenticated" | "forbidden" | "not_found" | "too_large";

/** The base of every error the SDK throws on purpose. */
export class CountersignError extends Error {
  override readonly name: string = "CountersignError";
}

/**
 * Countersign refused the request before any person saw it.
 * Sending the same request again gets the same answer; fix what `message` and `errors` name.
 */
export class Rejected extends CountersignError {
  override readonly name = "Rejected" as const;
  constructor(
    /** Stable code, e.g. `invalid_request`, `callback_not_allowed`, `too_many_pending`. */
    readonly code: RejectedCode | (string & {}),
    message: string,
    /** For `invalid_request`: each failing field by dotted path. */
    readonly errors: readonly FieldError[] = [],
  ) {
    super(`${code}: ${message}`);
  }
}

/** A verified decision record with a verdict other than approved. */
abstract class Decided extends CountersignError {
  constructor(
    message: string,
    /** The verified record's claims; keep `record` for your own audit trail. */
    readonly claims: RecordClaims,
    readonly record: string,
  ) {
    super(message);
  }
}

/** People denied the action (or the policy did: `claims.reason_code` says which). */
export class Denied extends Decided {
  override readonly name = "Denied" as const;
  constructor(
    /** The approver's reason, as recorded; "" when none was given. */
    readonly reasonText: string,
    claims: RecordClaims,
    record: string,
  ) {
    super(
      `action ${claims.action_id} (${claims.request_id}) was denied (${claims.reason_code})${reasonText ? `: ${reasonText}` : ""}`,
      claims,
      record,
    );
  }
}

/** Nobody decided before the deadline, and the route's `on_timeout` is deny. */
export class Expired extends Decided {
  override readonly name = "Expired" as const;
  constructor(claims: RecordClaims, record: string) {
    super(
      `action ${claims.action_id} (${claims.request_id}) expired: nobody decided before its deadline`,
      claims,
      record,
    );
  }
}

/** The request was cancelled; `claims.reason_text` holds the cancel note. */
export class Cancelled extends Decided {
  override readonly name = "Cancelled" as const;
  constructor(claims: RecordClaims, record: string) {
    super(
      `action ${claims.action_id} (${claims.request_id}) was cancelled${claims.reason_text ? `: ${claims.reason_text}` : ""}`,
      claims,
      record,
    );
  }
}

/** Which check a decision record failed. */
export type RecordCheck =
  | "format"
  | "signature"
  | "typ"
  | "ver"
  | "iss"
  | "sub"
  | "action_sha256"
  | "original_sha256"
  | "edits"
  | "verdict"
  | "valid_until";

/**
 * A decision record did not verify: do NOT act on it. Over a shared Redis anyone with
 * access can write a job's result; only a record signed by a key in your JWKS counts.
 */
export class InvalidRecord extends CountersignError {
  override readonly name = "InvalidRecord" as const;
  constructor(
    readonly check: RecordCheck,
    message: string,
  ) {
    super(`decision record is not valid (${check}): ${message}`);
  }
}

/**
 * The request or its answer could not be carried (network, a 5xx, an answer that is not
 * Countersign's). Nothing was decided by this failure; asking again with the same
 * `request_id` is safe, since Countersign treats a repeat as the same request.
 */
export class TransportError extends CountersignError {
  override readonly name = "TransportError" as const;
  constructor(
    message: string,
    /** The HTTP status, when there was one. */
    readonly status: number | null = null,
    /** The underlying failure (fetch's TypeError with its ECONNREFUSED, a Redis error), kept as `cause`. */
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** `verdict({ timeoutMs })` ran out before a decision; the action is still pending. Call `verdict()` again. */
export class WaitTimeout extends CountersignError {
  override readonly name = "WaitTimeout" as const;
  constructor(
    readonly requestId: string,
    readonly timeoutMs: number,
  ) {
    super(`no decision on request ${requestId} within ${timeoutMs} ms; it is still pending`);
  }
}

/** Codes Countersign answers a redemption or an outcome report with (docs/agents.md). */
export type GrantRefusedCode =
  | "bad_record"
  | "forbidden"
  | "not_approved"
  | "action_mismatch"
  | "already_redeemed"
  | "revoked"
  | "grant_expired"
  | "outcome_exists"
  | "not_found"
  | "unauthenticated"
  | "unknown_executor"
  | "unknown_agent"
  | "bad_proof"
  | "proof_expired"
  | "replayed_proof"
  | "invalid_request";

/**
 * Countersign refused to redeem an approval or to record an outcome. Whatever the code,
 * an executor must not execute on a refused redemption.
 */
export class GrantRefused extends CountersignError {
  override readonly name: string = "GrantRefused";
  constructor(
    readonly code: GrantRefusedCode | (string & {}),
    /** The HTTP status it came with (409, 410, 403, ...). */
    readonly status: number,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/**
 * The approval was redeemed before. `receipt` is the first redemption's receipt: a
 * redeemer that retries after a lost answer finds its own executor id in it, but cannot
 * tell from it whether its earlier attempt went on to execute, so it must not run again.
 */
export class AlreadyRedeemed extends GrantRefused {
  override readonly name = "AlreadyRedeemed" as const;
  constructor(
    message: string,
    /** The first redemption's receipt (JWS), as Countersign answered it. */
    readonly receipt: string | null,
    /** ISO 8601, when it was redeemed. */
    readonly redeemedAt: string | null,
  ) {
    super("already_redeemed", 409, message);
  }
}

/** An answer's receipt did not verify against the pinned JWKS, or is about something else: do NOT act on it. */
export class InvalidReceipt extends CountersignError {
  override readonly name = "InvalidReceipt" as const;
  constructor(message: string) {
    super(`receipt is not valid: ${message}`);
  }
}
