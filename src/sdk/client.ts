/**
 * The HTTP API one call at a time, for callers that hold an action across calls: the MCP
 * server (which answers `get_approval` for an action it may not have asked for in this
 * session, and cancels a request when its client gives up) and `withApproval`.
 * `requestApproval` in index.ts is the one-shot form; this client adds `get` by id,
 * `cancel`, and a wait that reports progress and stops on an AbortSignal.
 *
 * Every call mints a fresh proof: a token binds its call's body and is spent once.
 * A decided answer is never passed on as it came: `settle` verifies its record first,
 * against the request the agent sent, and when approvers changed it computes the decided
 * revision from the record's signed `edits` (which may touch only the agent's `editable`
 * pointers) and checks its digest is `action_sha256`: that revision is what to execute.
 */

import { canonicalJson } from "../domain/canonical.js";
import type { ActionRequest, RecordClaims, Verdict } from "../domain/types.js";
import { mintProof } from "../records/proof.js";
import { agentCallError, jsonObject } from "./answer.js";
import { InvalidRecord, TransportError } from "./errors.js";
import type { AgentIdentity } from "./index.js";
import { checkRecord, type JWKS } from "./verify.js";

/** What `GET /v1/actions/:id` and the other agent calls answer. */
export interface ActionAnswer {
  action_id: string;
  request_id: string;
  status: "pending" | Verdict;
  verdict?: Verdict;
  record?: string;
  /** The request as decided, once decided (the agent's own, or the revision approvers changed it to). */
  request?: ActionRequest;
  route?: string | null;
  deadline?: string | null;
}

/** A decided action whose record has been verified; `request` is what to execute on approval. */
export interface Settled {
  action_id: string;
  request_id: string;
  verdict: Verdict;
  record: string;
  claims: RecordClaims;
  request: ActionRequest;
  /** True when approvers changed the request: execute `request`, not what was sent. */
  revised: boolean;
}

export interface AgentClientOptions {
  identity: AgentIdentity;
  /** Where Countersign serves its API, e.g. `https://countersign.internal`. */
  baseUrl: string;
  /** The keys that sign records, pinned; a function is called at each verification (to follow key rotation). */
  jwks: JWKS | (() => Promise<JWKS>);
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

/** The HTTP API holds a long-poll for at most 60 s; shorter polls keep inside proxies' idle timeouts. */
const MAX_POLL_S = 30;
/** A long-poll answer is due after `wait` seconds; allow this much more before calling it lost. */
const POLL_GRACE_MS = 15_000;
const CALL_TIMEOUT_MS = 30_000;
/** Consecutive transport failures tolerated while waiting (a restart of Countersign, a network blip). */
const MAX_WAIT_FAILURES = 5;

function message(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  // fetch's "fetch failed" says nothing; its cause (ECONNREFUSED, a DNS failure) does.
  const cause = (e as Error & { cause?: unknown }).cause;
  return cause instanceof Error ? `${e.message}: ${cause.message}` : e.message;
}

export class AgentClient {
  readonly #o: AgentClientOptions;
  readonly #base: string;

  constructor(o: AgentClientOptions) {
    this.#o = o;
    this.#base = o.baseUrl.replace(/\/+$/, "");
  }

  get agentId(): string {
    return this.#o.identity.agentId;
  }

  /** POST /v1/actions: 201 for a new request, 200 for a repeat of the same `request_id` and content. */
  submit(request: ActionRequest, signal?: AbortSignal): Promise<ActionAnswer> {
    return this.#call("POST", "/v1/actions", request, CALL_TIMEOUT_MS, signal);
  }

  /** GET /v1/actions/:id, held up to `waitS` seconds (1-60) while pending. */
  get(actionId: string, waitS = 0, signal?: AbortSignal): Promise<ActionAnswer> {
    const wait = Math.max(0, Math.min(60, Math.floor(waitS)));
    const q = wait > 0 ? `?wait=${wait}` : "";
    return this.#call(
      "GET",
      `/v1/actions/${encodeURIComponent(actionId)}${q}`,
      undefined,
      wait * 1000 + POLL_GRACE_MS,
      signal,
    );
  }

  /**
   * POST /v1/actions/:id/cancel. Answers the cancelled action, or, when a verdict was
   * committed first (409), the action as decided: the caller settles either the same way.
   */
  cancel(actionId: string, note?: string): Promise<ActionAnswer> {
    return this.#call(
      "POST",
      `/v1/actions/${encodeURIComponent(actionId)}/cancel`,
      note === undefined ? {} : { note },
      CALL_TIMEOUT_MS,
      undefined,
      true,
    );
  }

  /**
   * Polls until the action is decided, `timeoutMs` passes (then answers the pending
   * action), or `signal` aborts (then throws its reason). Passing network failures are
   * retried a few times; a refusal is not.
   */
  async wait(actionId: string, o: { timeoutMs: number; signal?: AbortSignal }): Promise<ActionAnswer> {
    const until = Date.now() + o.timeoutMs;
    let failures = 0;
    for (;;) {
      o.signal?.throwIfAborted();
      const left = until - Date.now();
      let answer: ActionAnswer;
      try {
        answer = await this.get(actionId, left >= 1000 ? Math.min(MAX_POLL_S, left / 1000) : 0, o.signal);
        failures = 0;
      } catch (e) {
        o.signal?.throwIfAborted();
        if (!(e instanceof TransportError) || ++failures >= MAX_WAIT_FAILURES) throw e;
        await sleep(Math.min(1000 * 2 ** (failures - 1), Math.max(0, until - Date.now())), o.signal);
        if (Date.now() >= until) throw e;
        continue;
      }
      if (answer.status !== "pending" || Date.now() >= until - 500) return answer;
    }
  }

  /**
   * Verifies a decided answer's record and returns what it proves. `sent` is the request
   * the agent sent, when this process knows it; without it the decided request the
   * answer carries is checked against the record alone (signature, issuer, agent, digest).
   */
  async settle(answer: ActionAnswer, sent?: ActionRequest): Promise<Settled> {
    const { identity } = this.#o;
    if (typeof answer.record !== "string") {
      throw new InvalidRecord("format", `the answer for ${answer.action_id} carries no decision record`);
    }
    const given = sent ?? answer.request;
    if (given === undefined) {
      throw new InvalidRecord(
        "action_sha256",
        `the answer for ${answer.action_id} carries no request to check the record's action_sha256 against`,
      );
    }
    const jwks = typeof this.#o.jwks === "function" ? await this.#o.jwks() : this.#o.jwks;
    // Judged now, so an approval past its valid_until is refused (checkRecord's own check).
    // With what was sent, the chain sent -> edits -> action_sha256 is checked and the decided
    // revision computed from the signed edits; without it, the answer's request must be
    // the decided revision itself.
    const {
      claims,
      request: decided,
      revised,
    } = await checkRecord(answer.record, {
      jwks,
      request: given,
      requestIs: sent === undefined ? "decided" : "sent",
      agentId: identity.agentId,
      issuer: identity.issuer,
    });
    if (answer.request !== undefined && canonicalJson(answer.request) !== canonicalJson(decided)) {
      throw new InvalidRecord(
        "action_sha256",
        `the answer's request is not the one the record decided (the sent request with the record's edits applied)`,
      );
    }
    return {
      action_id: claims.action_id,
      request_id: claims.request_id,
      verdict: claims.verdict,
      record: answer.record,
      claims,
      request: decided,
      revised,
    };
  }

  async #call(
    method: "GET" | "POST",
    path: string,
    body: unknown,
    timeoutMs: number,
    signal?: AbortSignal,
    decidedConflictIsAnswer = false,
  ): Promise<ActionAnswer> {
    const { identity } = this.#o;
    const where = `${method} ${this.#base}${path}`;
    const token = await mintProof({
      agentId: identity.agentId,
      audience: identity.issuer,
      key:
        "hmacSecret" in identity.key
          ? { kind: "hmac", secret: new TextEncoder().encode(identity.key.hmacSecret) }
          : { kind: "eddsa-private", privateKeyPem: identity.key.privateKeyPem },
      request: body,
    });
    const timeout = AbortSignal.timeout(timeoutMs);
    let status: number;
    let text: string;
    try {
      const res = await (this.#o.fetch ?? fetch)(`${this.#base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json, application/problem+json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      status = res.status;
      text = await res.text();
    } catch (e) {
      signal?.throwIfAborted();
      throw new TransportError(`${where} failed: ${message(e)}`, null, { cause: e });
    }
    const json = jsonObject(text);
    const isAnswer =
      json !== null && typeof json["action_id"] === "string" && typeof json["status"] === "string";
    if (status >= 200 && status < 300) {
      if (!isAnswer)
        throw new TransportError(`${where} answered ${status} without {action_id, status}`, status);
      return json as unknown as ActionAnswer;
    }
    if (status === 409 && decidedConflictIsAnswer && isAnswer) return json as unknown as ActionAnswer;
    throw agentCallError(where, status, json);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", abort);
      resolve();
    }
    function abort() {
      clearTimeout(t);
      reject(signal!.reason);
    }
    signal?.addEventListener("abort", abort, { once: true });
  });
}
