/**
 * The executor's side (docs/agents.md, "For the service that executes"): the service that
 * carries out an approved action redeems the approval first, exactly once, and reports
 * how it went. An approval in an agent's hands is only a claim; a redemption is
 * Countersign's signed word that this approval, for this exact request, was not used
 * before, is not revoked and has not expired, and is now used up.
 *
 * `redeemGrant` checks the record offline before any call (signature against the pinned
 * JWKS, `iss`, the request's digest, the verdict, `valid_until`), so a forged or stale
 * record never reaches the network, then redeems it and checks the receipt it gets back.
 * Every call carries a fresh proof JWT bound to its body, as agents' calls do.
 */
import { compactVerify, createLocalJWKSet, decodeProtectedHeader } from "jose";
import { sha256B64url } from "../domain/canonical.js";
import type { ActionRequest, OutcomeStatus, ReceiptClaims, RecordClaims } from "../domain/types.js";
import { mintProof } from "../records/proof.js";
import { jsonObject } from "./answer.js";
import { AlreadyRedeemed, GrantRefused, InvalidReceipt, InvalidRecord, TransportError } from "./errors.js";
import type { AgentIdentity } from "./index.js";
import { checkRecord, type JWKS } from "./verify.js";

export type { OutcomeStatus, ReceiptClaims } from "../domain/types.js";
export { AlreadyRedeemed, GrantRefused, type GrantRefusedCode, InvalidReceipt } from "./errors.js";

export interface ExecutorIdentity {
  /** The executor's id in the policy's `executors`: the proof's `iss`. */
  executorId: string;
  /** The policy's `issuer`: the proof's `aud`, the record's `iss`. */
  issuer: string;
  /** HS256 with the executor's shared secret (its UTF-8 bytes), or EdDSA with its Ed25519 private key (PKCS8 PEM). */
  key: { hmacSecret: string } | { privateKeyPem: string };
}

export interface ExecutorOptions {
  identity: ExecutorIdentity;
  /** Where Countersign serves its API, e.g. `https://countersign.internal`. */
  baseUrl: string;
  /** The keys that sign records and receipts, pinned; a function is called at each use (to follow key rotation). */
  jwks: JWKS | (() => Promise<JWKS>);
  /**
   * The agents whose approvals this executor accepts (mirror of the policy's `for_agents`).
   * Default: any agent's; Countersign enforces `for_agents` and `may_redeem` regardless.
   */
  agents?: readonly string[];
  /** Default: the global fetch. */
  fetch?: typeof fetch;
  /** Per call. Default 30 s. */
  timeoutMs?: number;
  /** The judging time for `valid_until` offline. Default: the current time. */
  now?: () => Date;
}

export interface RedeemedGrant {
  /** The signed redemption receipt: keep it with the execution's own log. */
  receipt: string;
  action_id: string;
  /** The verified receipt's claims. */
  receiptClaims: Extract<ReceiptClaims, { kind: "redeemed" }>;
  /** The verified decision record's claims. */
  decision: RecordClaims;
}

export interface OutcomeOptions {
  /** The executor that redeemed the approval, or the agent when nothing redeemed it. */
  identity: ExecutorIdentity | AgentIdentity;
  baseUrl: string;
  /** When given, the outcome receipt is verified against it before reportOutcome resolves. */
  jwks?: JWKS | (() => Promise<JWKS>);
  fetch?: typeof fetch;
  timeoutMs?: number;
}

const REQUEST_TIMEOUT_MS = 30_000;
/** The HTTP API's limit on an outcome's `detail`. */
const DETAIL_LIMIT = 1000;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

type ProofKey = Parameters<typeof mintProof>[0]["key"];

function proofKey(key: ExecutorIdentity["key"]): ProofKey {
  return "hmacSecret" in key
    ? { kind: "hmac", secret: new TextEncoder().encode(key.hmacSecret) }
    : { kind: "eddsa-private", privateKeyPem: key.privateKeyPem };
}

async function keys(jwks: JWKS | (() => Promise<JWKS>)): Promise<JWKS> {
  return typeof jwks === "function" ? jwks() : jwks;
}

/**
 * Verifies a receipt Countersign answered with: signed by a pinned key, `typ`
 * receipt+jwt, and about what was asked. The answer crossed a network; only the
 * signature makes it evidence.
 */
async function verifyReceipt(
  receipt: unknown,
  jwks: JWKS,
  expect: {
    kind: ReceiptClaims["kind"];
    issuer: string;
    actionId?: string;
    decision?: string;
    decisionSha256?: string;
  },
): Promise<ReceiptClaims> {
  if (typeof receipt !== "string" || receipt.split(".").length !== 3) {
    throw new InvalidReceipt("the answer carries no receipt (a compact JWS)");
  }
  let payload: Uint8Array;
  let typ: unknown;
  try {
    typ = decodeProtectedHeader(receipt).typ;
    ({ payload } = await compactVerify(receipt, createLocalJWKSet(jwks), { algorithms: ["EdDSA"] }));
  } catch (e) {
    throw new InvalidReceipt(`its signature does not verify with the pinned JWKS: ${message(e)}`);
  }
  if (typ !== "receipt+jwt") throw new InvalidReceipt(`typ is ${JSON.stringify(typ)}, not "receipt+jwt"`);
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
  } catch {
    throw new InvalidReceipt("its payload is not JSON");
  }
  const wanted: [string, unknown][] = [
    ["ver", 1],
    ["iss", expect.issuer],
    ["kind", expect.kind],
  ];
  if (expect.actionId !== undefined) wanted.push(["action_id", expect.actionId]);
  if (expect.decision !== undefined) wanted.push(["decision", expect.decision]);
  if (expect.decisionSha256 !== undefined) wanted.push(["decision_sha256", expect.decisionSha256]);
  for (const [k, v] of wanted) {
    if (claims[k] !== v) {
      throw new InvalidReceipt(`${k} is ${JSON.stringify(claims[k])}, expected ${JSON.stringify(v)}`);
    }
  }
  return claims as unknown as ReceiptClaims;
}

interface Answer {
  status: number;
  json: Record<string, unknown> | null;
}

async function post(
  url: string,
  token: string,
  body: string,
  o: { fetch?: typeof fetch; timeoutMs?: number },
): Promise<Answer> {
  const doFetch = o.fetch ?? fetch;
  let status: number;
  let text: string;
  try {
    const res = await doFetch(url, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        accept: "application/json, application/problem+json",
        "content-type": "application/json",
      },
      body,
      signal: AbortSignal.timeout(o.timeoutMs ?? REQUEST_TIMEOUT_MS),
    });
    status = res.status;
    text = await res.text();
  } catch (e) {
    throw new TransportError(`POST ${url} failed: ${message(e)}`, null, { cause: e });
  }
  return { status, json: jsonObject(text) };
}

/** A non-2xx answer as the error it stands for. */
function refusal(url: string, a: Answer): Error {
  const detail = typeof a.json?.["detail"] === "string" ? a.json["detail"] : null;
  // 5xx (503 while Redis or the database is down) says nothing about the grant itself.
  if (a.status >= 500) {
    return new TransportError(`POST ${url} answered ${a.status}${detail ? `: ${detail}` : ""}`, a.status);
  }
  const code = a.json?.["code"];
  if (typeof code !== "string") {
    return new TransportError(`POST ${url} answered ${a.status} without a problem+json body`, a.status);
  }
  if (code === "already_redeemed") {
    const receipt = a.json?.["receipt"];
    const at = a.json?.["redeemed_at"];
    return new AlreadyRedeemed(
      detail ?? `HTTP ${a.status}`,
      typeof receipt === "string" ? receipt : null,
      typeof at === "string" ? at : null,
    );
  }
  return new GrantRefused(code, a.status, detail ?? `HTTP ${a.status}`);
}

/**
 * Redeems an approval before executing it. `record` is the decision record the agent
 * handed over; `request` is what the executor is about to carry out: the decided
 * revision (the `request` the job's result, GET, the webhook or the SDK answered), which
 * must hash to the record's `action_sha256`. When approvers changed the request, the
 * agent's original is refused (InvalidRecord `action_sha256`): execute what was approved.
 *
 * Resolves once Countersign has committed the redemption: execute then, and only then,
 * and report how it went with reportOutcome. Throws InvalidRecord (offline: do not
 * execute; nothing was sent), GrantRefused or its AlreadyRedeemed (Countersign refused:
 * do not execute), InvalidReceipt (the answer is not Countersign's: do not execute), or
 * TransportError (nothing is known: the grant may or may not be redeemed; calling again
 * either redeems it or answers AlreadyRedeemed with the first receipt).
 */
export async function redeemGrant(
  record: string,
  request: ActionRequest,
  o: ExecutorOptions,
): Promise<RedeemedGrant> {
  const { identity } = o;
  const jwks = await keys(o.jwks);
  // The executor presents the decided revision, not the agent's original: that is what
  // the record's action_sha256 covers and what Countersign checks again at redeem.
  const { claims: decision } = await checkRecord(record, {
    jwks,
    request,
    requestIs: "decided",
    agentId: o.agents ?? null,
    issuer: identity.issuer,
    ...(o.now ? { now: o.now() } : {}),
  });
  if (decision.verdict !== "approved") {
    throw new InvalidRecord(
      "verdict",
      `the record's verdict is ${decision.verdict}: only an approval can be redeemed`,
    );
  }
  const body = { record, request };
  const token = await mintProof({
    agentId: identity.executorId,
    audience: identity.issuer,
    key: proofKey(identity.key),
    request: body,
  });
  const url = `${o.baseUrl.replace(/\/+$/, "")}/v1/grants/redeem`;
  const a = await post(url, token, JSON.stringify(body), o);
  if (a.status !== 200) throw refusal(url, a);
  const receipt = a.json?.["receipt"];
  const receiptClaims = await verifyReceipt(receipt, jwks, {
    kind: "redeemed",
    issuer: identity.issuer,
    actionId: decision.action_id,
    decision: decision.jti,
    decisionSha256: sha256B64url(record),
  });
  if ((receiptClaims as { by?: { executor?: unknown } }).by?.executor !== identity.executorId) {
    throw new InvalidReceipt(
      `it names executor ${JSON.stringify((receiptClaims as { by?: { executor?: unknown } }).by?.executor)}, not "${identity.executorId}"`,
    );
  }
  return {
    receipt: receipt as string,
    action_id: decision.action_id,
    receiptClaims: receiptClaims as RedeemedGrant["receiptClaims"],
    decision,
  };
}

/**
 * Reports how the execution went, once per approval: by the executor that redeemed it,
 * or by the agent when nothing redeemed it. Resolves with the signed outcome receipt.
 * Throws GrantRefused (`outcome_exists` when one is already recorded, `not_approved`,
 * `forbidden`, `not_found`), InvalidReceipt, or TransportError (call again: a repeat
 * answers `outcome_exists` when the first one was recorded).
 */
export async function reportOutcome(
  actionId: string,
  status: OutcomeStatus,
  detail: string | undefined,
  o: OutcomeOptions,
): Promise<{ receipt: string }> {
  if (status !== "succeeded" && status !== "failed") {
    throw new Error(`status must be "succeeded" or "failed", not ${JSON.stringify(status)}`);
  }
  if (detail !== undefined && [...detail].length > DETAIL_LIMIT) {
    throw new Error(`detail is ${[...detail].length} characters; at most ${DETAIL_LIMIT} are kept`);
  }
  const { identity } = o;
  const body = detail === undefined ? { status } : { status, detail };
  const token = await mintProof({
    agentId: "executorId" in identity ? identity.executorId : identity.agentId,
    audience: identity.issuer,
    key: proofKey(identity.key),
    request: body,
  });
  const url = `${o.baseUrl.replace(/\/+$/, "")}/v1/actions/${encodeURIComponent(actionId)}/outcome`;
  const a = await post(url, token, JSON.stringify(body), o);
  if (a.status !== 201 && a.status !== 200) throw refusal(url, a);
  const receipt = a.json?.["receipt"];
  if (o.jwks !== undefined) {
    await verifyReceipt(receipt, await keys(o.jwks), { kind: "outcome", issuer: identity.issuer, actionId });
  } else if (typeof receipt !== "string") {
    throw new InvalidReceipt("the answer carries no receipt (a compact JWS)");
  }
  return { receipt: receipt as string };
}
