/**
 * The agent SDK: ask Countersign before a high-impact action, over the BullMQ queue or
 * the HTTP API, and get back either a verified approval or a typed error. A verdict is
 * never taken on the transport's word: `verdict()` verifies the signed decision record
 * (against the JWKS the agent pinned) before it resolves, and resolves only for approved.
 */
import type { Queue, QueueEvents } from "bullmq";
import type { ActionRequest, RecordClaims } from "../domain/types.js";
import { mintProof } from "../records/proof.js";
import { agentCallError, jsonObject } from "./answer.js";
import {
  Cancelled,
  Denied,
  Expired,
  InvalidRecord,
  Rejected,
  TransportError,
  WaitTimeout,
} from "./errors.js";
import { waitForJob } from "./finished.js";
import { type JWKS, verifyDecided } from "./verify.js";

export type { ActionRequest, FieldError, RecordClaims, Verdict } from "../domain/types.js";
export { type ActionAnswer, AgentClient, type AgentClientOptions, type Settled } from "./client.js";
export {
  Cancelled,
  CountersignError,
  Denied,
  Expired,
  InvalidRecord,
  type RecordCheck,
  Rejected,
  type RejectedCode,
  TransportError,
  WaitTimeout,
} from "./errors.js";
export {
  AlreadyRedeemed,
  type ExecutorIdentity,
  type ExecutorOptions,
  GrantRefused,
  type GrantRefusedCode,
  InvalidReceipt,
  type OutcomeOptions,
  type OutcomeStatus,
  type ReceiptClaims,
  type RedeemedGrant,
  redeemGrant,
  reportOutcome,
} from "./grants.js";
export {
  type JWKS,
  type VerifiedRequest,
  type VerifyDecisionOptions,
  verify,
  verifyDecided,
  verifyDecision,
} from "./verify.js";
export {
  type ApprovalAsk,
  type ApprovalExecutor,
  type ApprovalGrant,
  NotApproved,
  type NotApprovedResult,
  type NotApprovedStatus,
  type WithApprovalOptions,
  withApproval,
} from "./with-approval.js";

export interface AgentIdentity {
  /** The agent's id in the policy: the proof's `iss`, the record's `sub`. */
  agentId: string;
  /** The policy's `issuer`: the proof's `aud`, the record's `iss`. */
  issuer: string;
  /** HS256 with the agent's shared secret (its UTF-8 bytes), or EdDSA with its Ed25519 private key (PKCS8 PEM). */
  key: { hmacSecret: string } | { privateKeyPem: string };
}

export type Transport =
  | { kind: "queue"; queue: Queue; queueEvents: QueueEvents }
  | {
      kind: "http";
      /** Where Countersign serves its API, e.g. `https://countersign.internal`. */
      baseUrl: string;
      /** Default: the global fetch. */
      fetch?: typeof fetch;
    };

export interface VerifiedDecision {
  verdict: "approved";
  /** The signed record: keep it with the action's own log. */
  record: string;
  claims: RecordClaims;
  /**
   * The request as decided: execute this, not what you sent. Approvers may have changed
   * it at your `editable` pointers ("Approve with changes"); the SDK has checked the
   * chain from what you sent through the record's `edits` to its `action_sha256`.
   */
  request: ActionRequest;
  /** True when approvers changed the request: `request` differs from what you sent. */
  revised: boolean;
}

export interface ApprovalHandle {
  /** Null on the queue until `verdict()` has seen the record (the job's result carries it). */
  actionId: string | null;
  requestId: string;
  /**
   * Waits for the decision and verifies its record. Resolves only for a valid approval;
   * throws Denied, Expired, Cancelled, Rejected, InvalidRecord, TransportError, or
   * WaitTimeout when `timeoutMs` passes first (the request stays pending; call again).
   * Default: no time limit, since people may take hours.
   */
  verdict(opts?: { timeoutMs?: number }): Promise<VerifiedDecision>;
}

export interface RequestApprovalOptions {
  identity: AgentIdentity;
  transport: Transport;
  /** The keys that sign records, pinned; a function is called at each verification (to follow key rotation). */
  jwks: JWKS | (() => Promise<JWKS>);
}

/** The HTTP API's long-poll limit is 60 s; 30 s keeps well inside common proxy idle timeouts. */
const POLL_WAIT_S = 30;
/** A long-poll reply is due after `wait` seconds; allow this much more before calling it lost. */
const POLL_GRACE_MS = 15_000;
const REQUEST_TIMEOUT_MS = 30_000;
/** Consecutive transport failures tolerated while polling (a restart of Countersign, a network blip). */
const MAX_POLL_FAILURES = 5;

const REJECTED_REASON = /^rejected: ([a-z_]+): ([\s\S]*)$/;

type ProofKey = Parameters<typeof mintProof>[0]["key"];

function proofKey(identity: AgentIdentity): ProofKey {
  return "hmacSecret" in identity.key
    ? { kind: "hmac", secret: new TextEncoder().encode(identity.key.hmacSecret) }
    : { kind: "eddsa-private", privateKeyPem: identity.key.privateKeyPem };
}

function message(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  // fetch's "fetch failed" says nothing; its cause (ECONNREFUSED, a DNS failure) does.
  const cause = (e as Error & { cause?: unknown }).cause;
  return cause instanceof Error ? `${e.message}: ${cause.message}` : e.message;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Submits `request` for approval and returns at once with a handle; `await handle.verdict()`
 * for the outcome. Throws Rejected when the HTTP API refuses the request outright (on the
 * queue, refusals arrive through `verdict()`), TransportError when it cannot be sent.
 */
export async function requestApproval(
  request: ActionRequest,
  o: RequestApprovalOptions,
): Promise<ApprovalHandle> {
  const { identity } = o;
  if (request.agent_id !== identity.agentId) {
    throw new Error(
      `request.agent_id "${request.agent_id}" is not this identity's agentId "${identity.agentId}"; Countersign would refuse the proof`,
    );
  }
  const key = proofKey(identity);
  const mint = (body?: ActionRequest) =>
    mintProof({ agentId: identity.agentId, audience: identity.issuer, key, request: body });

  const conclude = async (record: unknown): Promise<{ decision: VerifiedDecision; claims: RecordClaims }> => {
    if (typeof record !== "string")
      throw new InvalidRecord("format", "the answer carries no decision record");
    const jwks = typeof o.jwks === "function" ? await o.jwks() : o.jwks;
    const {
      claims,
      request: decided,
      revised,
    } = await verifyDecided(record, {
      jwks,
      request,
      agentId: identity.agentId,
      issuer: identity.issuer,
    });
    switch (claims.verdict) {
      case "approved":
        return { decision: { verdict: "approved", record, claims, request: decided, revised }, claims };
      case "denied":
        throw new Denied(claims.reason_text, claims, record);
      case "expired":
        throw new Expired(claims, record);
      case "cancelled":
        throw new Cancelled(claims, record);
    }
  };

  const t = o.transport;
  if (t.kind === "queue") return queueHandle(request, await mint(request), t, conclude);
  return httpHandle(request, t, mint, conclude);
}

type Conclude = (record: unknown) => Promise<{ decision: VerifiedDecision; claims: RecordClaims }>;

async function queueHandle(
  request: ActionRequest,
  proof: string,
  t: Extract<Transport, { kind: "queue" }>,
  conclude: Conclude,
): Promise<ApprovalHandle> {
  let job: Awaited<ReturnType<Queue["add"]>>;
  try {
    job = await t.queue.add("approval", { request, proof });
  } catch (e) {
    throw new TransportError(`could not add the job to queue ${t.queue.name}: ${message(e)}`, null, {
      cause: e,
    });
  }
  const handle: ApprovalHandle = {
    actionId: null,
    requestId: request.request_id,
    async verdict(opts) {
      const timeoutMs = opts?.timeoutMs;
      let value: unknown;
      try {
        // One shared listener for every job waiting on this QueueEvents (src/sdk/finished.ts).
        value = await waitForJob(
          job,
          t.queue,
          t.queueEvents,
          timeoutMs === undefined ? undefined : Math.max(1, timeoutMs),
        );
      } catch (e) {
        const reason = message(e);
        const m = REJECTED_REASON.exec(reason);
        if (m) throw new Rejected(m[1]!, m[2]!);
        const state = await job.getState().catch(() => "unknown");
        if (timeoutMs !== undefined && state !== "failed" && state !== "completed") {
          throw new WaitTimeout(request.request_id, timeoutMs);
        }
        throw new TransportError(`job ${job.id} on queue ${t.queue.name} did not complete: ${reason}`);
      }
      const record =
        typeof value === "object" && value !== null ? (value as { record?: unknown }).record : undefined;
      try {
        const { decision, claims } = await conclude(record);
        handle.actionId = claims.action_id;
        return decision;
      } catch (e) {
        if (e instanceof Denied || e instanceof Expired || e instanceof Cancelled) {
          handle.actionId = e.claims.action_id;
        }
        throw e;
      }
    },
  };
  return handle;
}

interface ActionAnswer {
  action_id: string;
  request_id: string;
  status: string;
  record?: unknown;
}

function httpHandle(
  request: ActionRequest,
  t: Extract<Transport, { kind: "http" }>,
  mint: (body?: ActionRequest) => Promise<string>,
  conclude: Conclude,
): Promise<ApprovalHandle> {
  const base = t.baseUrl.replace(/\/+$/, "");
  const doFetch = t.fetch ?? fetch;

  const call = async (
    method: "GET" | "POST",
    path: string,
    token: string,
    body: string | undefined,
    timeoutMs: number,
  ): Promise<ActionAnswer> => {
    const where = `${method} ${base}${path}`;
    let status: number;
    let text: string;
    try {
      const res = await doFetch(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json, application/problem+json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = res.status;
      text = await res.text();
    } catch (e) {
      throw new TransportError(`${where} failed: ${message(e)}`, null, { cause: e });
    }
    const json = jsonObject(text);
    if (status >= 200 && status < 300) {
      if (json === null || typeof json["action_id"] !== "string" || typeof json["status"] !== "string") {
        throw new TransportError(`${where} answered ${status} without {action_id, status}`, status);
      }
      return json as unknown as ActionAnswer;
    }
    throw agentCallError(where, status, json);
  };

  return (async () => {
    const first = await call(
      "POST",
      "/v1/actions",
      await mint(request),
      JSON.stringify(request),
      REQUEST_TIMEOUT_MS,
    );
    const actionId = first.action_id;
    const path = `/v1/actions/${encodeURIComponent(actionId)}`;
    const handle: ApprovalHandle = {
      actionId,
      requestId: request.request_id,
      async verdict(opts) {
        const timeoutMs = opts?.timeoutMs;
        const deadline = timeoutMs === undefined ? null : Date.now() + timeoutMs;
        // An auto-decided request carries its record in the POST answer already.
        let answer: ActionAnswer | null = first.status !== "pending" ? first : null;
        let failures = 0;
        for (;;) {
          if (answer !== null && answer.status !== "pending") return (await conclude(answer.record)).decision;
          const left = deadline === null ? Number.POSITIVE_INFINITY : deadline - Date.now();
          if (left <= 0) throw new WaitTimeout(handle.requestId, timeoutMs!);
          const wait = Math.max(1, Math.min(POLL_WAIT_S, Math.floor(left / 1000)));
          try {
            // A fresh token each call: proofs live two minutes and a wait can last days.
            answer = await call(
              "GET",
              `${path}?wait=${wait}`,
              await mint(),
              undefined,
              wait * 1000 + POLL_GRACE_MS,
            );
            failures = 0;
          } catch (e) {
            if (!(e instanceof TransportError) || ++failures >= MAX_POLL_FAILURES) throw e;
            answer = null;
            await sleep(Math.min(1000 * 2 ** (failures - 1), Math.max(0, left)));
          }
        }
      },
    };
    return handle;
  })();
}
