/**
 * Checking a decision record before acting on it. The verdict field next to a record is a convenience: Redis is shared and an HTTP
 * answer can be tampered with on the way, so only a record signed by a key the agent
 * trusts, about this agent and this exact request, counts.
 */
import { compactVerify, createLocalJWKSet, decodeProtectedHeader, errors, type JSONWebKeySet } from "jose";
import { requestDigest } from "../domain/canonical.js";
import { checkEditChain } from "../domain/edits.js";
import { type ActionRequest, type RecordClaims, VERDICTS, type Verdict } from "../domain/types.js";
import { InvalidRecord } from "./errors.js";

/** A JSON Web Key Set: Countersign publishes it at `/.well-known/jwks.json`; pin it. */
export type JWKS = JSONWebKeySet;

export interface VerifyDecisionOptions {
  /** The keys you trust, typically pinned from Countersign's `/.well-known/jwks.json`. */
  jwks: JWKS;
  /**
   * The request exactly as you sent it. Its digest must be the record's `action_sha256`,
   * or, when approvers changed it ("Approve with changes"), the record's `original_sha256`,
   * with the record's `edits` turning it into the decided revision whose digest is
   * `action_sha256` (see verifyDecided, which returns that revision).
   */
  request: ActionRequest;
  /** Your agent id: the record's `sub`. */
  agentId: string;
  /** The policy's issuer: the record's `iss` (and the `aud` of your proofs). */
  issuer: string;
  /** Judging time for `valid_until`. Default: the current time. */
  now?: Date;
}

function signatureFailure(e: unknown, kid: unknown, alg: unknown): InvalidRecord {
  const code = e instanceof errors.JOSEError ? e.code : undefined;
  switch (code) {
    case "ERR_JWKS_NO_MATCHING_KEY":
      return new InvalidRecord(
        "signature",
        `no EdDSA signing key with kid ${JSON.stringify(kid)} is in the JWKS you trust`,
      );
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return new InvalidRecord(
        "signature",
        `alg ${JSON.stringify(alg)} is refused; records are signed with EdDSA`,
      );
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return new InvalidRecord("signature", `the signature does not verify with key ${JSON.stringify(kid)}`);
    case "ERR_JWS_INVALID":
      return new InvalidRecord("format", `not a valid compact JWS: ${(e as Error).message}`);
    default:
      return new InvalidRecord("signature", `the signature could not be checked: ${(e as Error).message}`);
  }
}

/** A verified record and the request it decided. */
export interface VerifiedRequest {
  claims: RecordClaims;
  /**
   * The request as decided: execute this, not what you sent. It is what you sent when
   * approvers changed nothing, else the revision they approved (your request with the
   * record's `edits` applied; its digest is the record's `action_sha256`).
   */
  request: ActionRequest;
  /** True when approvers changed the request. */
  revised: boolean;
}

/**
 * Verifies a decision record and returns its claims: the signature against `jwks`
 * (EdDSA only), `typ` decision+jwt, `ver`, `iss`, `sub`, the chain from the request you
 * sent to `action_sha256` (`original_sha256`, `edits` only at your `editable` pointers,
 * `action_sha256`), and for an approval that `valid_until` is still ahead. Any verdict
 * verifies; acting on it is the caller's choice. Throws InvalidRecord naming the failed
 * check. To know what to execute, use verifyDecided: approvers may have changed it.
 */
export async function verifyDecision(record: string, o: VerifyDecisionOptions): Promise<RecordClaims> {
  return (await checkRecord(record, o)).claims;
}

/**
 * verifyDecision's checks, returning the request to execute as well: the decided
 * revision, computed from what you sent and the record's signed `edits`.
 */
export function verifyDecided(record: string, o: VerifyDecisionOptions): Promise<VerifiedRequest> {
  return checkRecord(record, o);
}

/**
 * verifyDecision's checks, with the agent optional: an executor verifies a record about
 * whichever agent handed it over (`agentId` null), or one of the agents it serves.
 * `requestIs` says which request is given: the agent's as sent (default; the chain through
 * `edits` is checked) or the decided revision (an executor's, or an agent's that no longer
 * holds what it sent: its digest must be `action_sha256` itself).
 */
export async function checkRecord(
  record: string,
  o: Omit<VerifyDecisionOptions, "agentId"> & {
    agentId: string | readonly string[] | null;
    requestIs?: "sent" | "decided";
  },
): Promise<VerifiedRequest> {
  if (typeof record !== "string" || record.split(".").length !== 3) {
    throw new InvalidRecord("format", "expected a compact JWS: three base64url parts separated by dots");
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(record);
  } catch {
    throw new InvalidRecord("format", "the protected header is not base64url JSON");
  }
  let keys: ReturnType<typeof createLocalJWKSet>;
  try {
    keys = createLocalJWKSet(o.jwks);
  } catch {
    throw new InvalidRecord("signature", 'the JWKS given is not a JSON Web Key Set ({"keys": [...]})');
  }
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(record, keys, { algorithms: ["EdDSA"] }));
  } catch (e) {
    throw signatureFailure(e, header.kid, header.alg);
  }
  // Checked after the signature: an unsigned header says nothing worth reporting first.
  if (header.typ !== "decision+jwt") {
    throw new InvalidRecord(
      "typ",
      `typ is ${JSON.stringify(header.typ)}, not "decision+jwt": this JWS is not a decision record`,
    );
  }
  let claims: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(payload));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not an object");
    claims = parsed as Record<string, unknown>;
  } catch {
    throw new InvalidRecord("format", "the payload is not a JSON object");
  }

  if (claims["ver"] !== 1) {
    throw new InvalidRecord("ver", `ver is ${JSON.stringify(claims["ver"])}; this SDK understands version 1`);
  }
  if (claims["iss"] !== o.issuer) {
    throw new InvalidRecord("iss", `iss is ${JSON.stringify(claims["iss"])}, expected "${o.issuer}"`);
  }
  const agents = o.agentId === null ? null : typeof o.agentId === "string" ? [o.agentId] : o.agentId;
  if (agents !== null && !agents.includes(claims["sub"] as string)) {
    throw new InvalidRecord(
      "sub",
      `sub is ${JSON.stringify(claims["sub"])}: the record is about another agent, not ${agents.map((a) => `"${a}"`).join(" or ")}`,
    );
  }
  let decided: ActionRequest = o.request;
  let revised = false;
  if (o.requestIs === "decided") {
    const digest = requestDigest(o.request);
    if (claims["action_sha256"] !== digest) {
      const isOriginal = claims["original_sha256"] !== undefined && claims["original_sha256"] === digest;
      throw new InvalidRecord(
        "action_sha256",
        isOriginal
          ? "this is the agent's original request, but approvers changed it: the record covers the decided revision (the request the job, GET or webhook answered), so execute and present that one"
          : `action_sha256 ${JSON.stringify(claims["action_sha256"])} is not the digest of this request (${digest}): the record covers a different action`,
      );
    }
  } else {
    const chain = checkEditChain(o.request, claims, requestDigest);
    if (!chain.ok) {
      throw new InvalidRecord(
        chain.step,
        chain.step === "action_sha256" && claims["edits"] === undefined
          ? `${chain.reason}: the record covers a different action`
          : chain.reason,
      );
    }
    decided = chain.decided as ActionRequest;
    revised = chain.revised;
  }
  const verdict = claims["verdict"];
  if (typeof verdict !== "string" || !VERDICTS.includes(verdict as Verdict)) {
    throw new InvalidRecord(
      "verdict",
      `verdict ${JSON.stringify(verdict)} is not one of ${VERDICTS.join(", ")}`,
    );
  }
  if (verdict === "approved") {
    const until = claims["valid_until"];
    const untilMs = typeof until === "string" ? Date.parse(until) : Number.NaN;
    if (Number.isNaN(untilMs)) {
      throw new InvalidRecord("valid_until", "an approval must carry valid_until as an ISO 8601 time");
    }
    const now = o.now ?? new Date();
    if (untilMs <= now.getTime()) {
      throw new InvalidRecord(
        "valid_until",
        `the approval was valid until ${until as string} and no longer covers the action (now ${now.toISOString()}); ask again`,
      );
    }
  }
  return { claims: claims as unknown as RecordClaims, request: decided, revised };
}

/**
 * The short form: `verify(record, jwks, request, issuer)`, `request` as you sent it. The
 * agent is the request's `agent_id`; everything verifyDecision checks is checked
 * (signature, typ, iss, sub, original_sha256 and edits when approvers changed the request,
 * action_sha256, valid_until). The issuer is required: it is what the record must name.
 */
export function verify(
  record: string,
  jwks: JWKS,
  request: ActionRequest,
  issuer: string,
  now?: Date,
): Promise<RecordClaims> {
  return verifyDecision(record, {
    jwks,
    request,
    agentId: request.agent_id,
    issuer,
    ...(now ? { now } : {}),
  });
}
