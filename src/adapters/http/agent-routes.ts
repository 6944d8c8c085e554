/**
 * The agent API: the same gate as the queue, over HTTP. Validation, routing and refusals
 * are the queue's own code (Approvals.submit); this file only authenticates, parses and
 * shapes answers. An agent sees only its own actions: anyone else's are 404.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Approvals } from "../../app/approvals.js";
import { GrantRefusal, type Grants } from "../../app/grants.js";
import type { ActionRow, AgentApiStore, StoredReceipt } from "../../app/ports.js";
import { requestDigest, sha256B64url } from "../../domain/canonical.js";
import { decodeUtf8, parseStrictJson } from "../../domain/json.js";
import { RejectionError } from "../../domain/types.js";
import { decidedRequestOf } from "../../records/decided.js";
import type { VerdictBus } from "../queue/verdicts.js";
import { problem } from "./server.js";

export interface AgentApiDeps {
  readonly store: AgentApiStore;
  readonly approvals: Approvals;
  readonly verdicts: VerdictBus;
  /** Verifies a bearer token like a proof; judged now. */
  readonly verifyToken: (
    token: string,
    o: { expectedAgent?: string; expectedDigest?: string; accept?: "agent" | "executor" | "any" },
  ) => Promise<{ iss: string; jti: string; exp: number; role?: "agent" | "executor" }>;
  /** Redeem and outcome (POST /v1/grants/redeem, /v1/actions/:id/outcome); absent: those routes are not served. */
  readonly grants?: Grants;
  /** Throws when Redis does not answer: nothing is accepted that could not be carried out. */
  readonly redisReady: () => Promise<void>;
}

const EMPTY_DIGEST = sha256B64url("");

export function registerAgentRoutes(app: FastifyInstance, d: AgentApiDeps): void {
  // Bodies arrive as text so the I-JSON rules (duplicate names, lone surrogates, big
  // integers) are checked by our own parser, identically for every agent.
  // Only JSON is accepted: a body in any other type is refused with 415 before anything
  // reads it (fastify would otherwise hand text/plain through as a string).
  app.removeContentTypeParser("text/plain");
  app.addContentTypeParser("*", (req, _payload, done) => {
    const type = String(req.headers["content-type"] ?? "none");
    done(
      Object.assign(new Error(`content-type ${type} is not supported: send application/json`), {
        statusCode: 415,
      }),
    );
  });
  // As bytes, not as a string: a string would already have had bytes that are not UTF-8
  // silently replaced, and the replacement characters would then be hashed and shown.
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body, done) => {
    const bytes = body as Buffer;
    if (bytes.length === 0) return done(null, undefined);
    try {
      done(null, parseStrictJson(decodeUtf8(bytes)));
    } catch (e) {
      done(e as Error, undefined);
    }
  });

  async function bearer(
    req: FastifyRequest,
    o: { expectedAgent?: string; expectedDigest?: string; accept?: "agent" | "executor" | "any" },
  ) {
    const h = req.headers.authorization;
    const m = typeof h === "string" ? /^Bearer\s+(\S+)$/i.exec(h) : null;
    if (!m)
      throw new ApiProblem("unauthenticated", "send Authorization: Bearer <JWT> signed with the agent's key");
    return d.verifyToken(m[1]!, o);
  }

  app.post("/v1/actions", async (req, reply) => {
    const body = req.body as unknown;
    const agentId =
      body && typeof body === "object" && typeof (body as { agent_id?: unknown }).agent_id === "string"
        ? (body as { agent_id: string }).agent_id
        : undefined;
    const claims = await bearer(req, {
      ...(agentId ? { expectedAgent: agentId } : {}),
      expectedDigest: requestDigest(body ?? null),
    });
    await readyOr503(d.redisReady);
    const r = await d.approvals.submit({
      request: body,
      proof: "",
      judgedAt: new Date(),
      via: "http",
      proofChecked: { jti: claims.jti, exp: claims.exp, agentId: claims.iss },
    });
    const rec = r.record ?? (r.action.status === "decided" ? await d.store.getRecord(r.action.id) : null);
    return reply.status(r.repeat ? 200 : 201).send(view(r.action, rec?.jws ?? null));
  });

  app.get<{ Params: { id: string }; Querystring: { wait?: string } }>(
    "/v1/actions/:id",
    async (req, reply) => {
      // A read has no body: its token signs the empty string's digest, so a token minted
      // for another call (a POST's) is no key to this one.
      const claims = await bearer(req, { expectedDigest: EMPTY_DIGEST });
      // No wait at all is a plain read; `?wait=0` is refused with the rest, so the answer
      // and its error text state one range, 1 to 60 (docs/agents.md).
      const raw = req.query.wait;
      const wait = raw === undefined ? 0 : /^[0-9]{1,2}$/.test(raw) ? Number(raw) : Number.NaN;
      if (raw !== undefined && !(wait >= 1 && wait <= 60)) {
        throw new RejectionError(
          "invalid_request",
          `wait must be a whole number of seconds from 1 to 60, not ${JSON.stringify(String(raw).slice(0, 20))}; leave it out to answer at once`,
          [{ path: "wait", message: "a whole number of seconds from 1 to 60" }],
        );
      }
      // Each token works once, reads included (docs/agents.md): a GET token copied from a
      // log or a proxy cannot be used again to watch the action.
      await d.approvals.acceptProof(claims.iss, claims);
      let a = await own(req.params.id, claims.iss);
      if (a.status === "pending" && wait > 0) {
        const abort = new AbortController();
        req.raw.on("close", () => abort.abort());
        const until = Date.now() + wait * 1000;
        // Woken by the verdict itself (VerdictBus), not by a polling loop; the loop only
        // re-arms after a wake-up that was not for a final verdict (e.g. escalation).
        while (a.status === "pending" && Date.now() < until && !abort.signal.aborted) {
          await d.verdicts.wait(a.id, until - Date.now(), abort.signal);
          a = await own(req.params.id, claims.iss);
        }
      }
      const rec = a.status === "decided" ? await d.store.getRecord(a.id) : null;
      const receipts = a.verdict === "approved" ? await d.store.getReceipts(a.id) : [];
      return reply.send({ ...view(a, rec?.jws ?? null), ...after(receipts) });
    },
  );

  const grants = d.grants;
  if (grants) {
    app.post("/v1/grants/redeem", async (req, reply) => {
      let claims: Awaited<ReturnType<typeof bearer>>;
      try {
        claims = await bearer(req, { expectedDigest: bodyDigest(req.body), accept: "any" });
        await grants.acceptProof(claims.iss, claims);
      } catch (e) {
        // This entry point is for executors: an unknown signer is an unknown executor.
        const err =
          e instanceof RejectionError && e.code === "unknown_agent"
            ? new RejectionError("unknown_executor", e.message.replace("agent", "executor"))
            : e;
        // A refused authentication is a refused redemption too, and kept as one.
        if (err instanceof RejectionError || err instanceof ApiProblem) {
          await grants.refuseAtEntry(null, "http", err.code, err.message);
        }
        throw err;
      }
      if (claims.role !== "executor") {
        const reason = `${claims.iss} is an agent: only an executor named in the policy may redeem an approval`;
        await grants.refuseAtEntry(claims.iss, `agent:${claims.iss}`, "forbidden", reason);
        throw new GrantRefusal("forbidden", reason);
      }
      const r = await grants.redeem(claims.iss, req.body);
      return reply.status(200).send({ receipt: r.receipt.jws, action_id: r.actionId });
    });

    app.post<{ Params: { id: string } }>("/v1/actions/:id/outcome", async (req, reply) => {
      const claims = await bearer(req, { expectedDigest: bodyDigest(req.body), accept: "any" });
      await grants.acceptProof(claims.iss, claims);
      const by = claims.role === "executor" ? { executor: claims.iss } : { agent: claims.iss };
      const r = await grants.outcome(req.params.id, by, req.body);
      return reply.status(201).send({ receipt: r.jws });
    });
  }

  app.post<{ Params: { id: string } }>("/v1/actions/:id/cancel", async (req, reply) => {
    const body = (req.body ?? {}) as { note?: unknown };
    if (
      typeof body !== "object" ||
      Array.isArray(body) ||
      (body.note !== undefined && typeof body.note !== "string")
    ) {
      throw new RejectionError("invalid_request", "the body must be {note?: string}", [
        { path: "note", message: "a string" },
      ]);
    }
    const extra = Object.keys(body).filter((k) => k !== "note");
    if (extra.length) {
      throw new RejectionError(
        "invalid_request",
        `unknown field ${extra[0]}`,
        extra.map((k) => ({ path: k, message: "unknown field" })),
      );
    }
    const note = typeof body.note === "string" ? body.note.slice(0, 1000) : "";
    const claims = await bearer(req, {
      expectedDigest: req.body === undefined ? EMPTY_DIGEST : requestDigest(req.body),
    });
    await own(req.params.id, claims.iss);
    await d.approvals.acceptProof(claims.iss, claims);
    const r = await d.approvals.cancel(req.params.id, claims.iss, note);
    if (r.kind === "not_found") throw notFound();
    if (r.kind === "refused") {
      if (r.code === "not_found") throw notFound();
      const a = r.action;
      const rec = await d.store.getRecord(a.id);
      const p = problem("request_id_conflict", `action ${a.id} was already decided: ${a.verdict}`);
      return reply
        .status(409)
        .type("application/problem+json")
        .send({ ...p.body, code: "already_decided", title: "already decided", ...view(a, rec?.jws ?? null) });
    }
    return reply.send(view(r.action, r.record?.jws ?? null));
  });

  async function own(id: string, agentId: string): Promise<ActionRow> {
    const a = await d.store.getAction(id);
    if (!a || a.agentId !== agentId) throw notFound();
    return a;
  }
}

/** A problem that is not a rejection of a request (auth, not found, unavailable). */
export class ApiProblem extends Error {
  override readonly name = "ApiProblem" as const;
  constructor(
    readonly code: Parameters<typeof problem>[0],
    message: string,
  ) {
    super(message);
  }
}

function notFound(): ApiProblem {
  return new ApiProblem("not_found", "no such action for this agent");
}

async function readyOr503(ready: () => Promise<void>): Promise<void> {
  try {
    await ready();
  } catch {
    throw new ApiProblem(
      "unavailable",
      "the queue (Redis) is not reachable; nothing was accepted, try again",
    );
  }
}

function bodyDigest(body: unknown): string {
  return body === undefined ? EMPTY_DIGEST : requestDigest(body);
}

/** What happened to an approval after its verdict, as GET shows it. */
function after(receipts: readonly StoredReceipt[]) {
  const at = (kind: StoredReceipt["kind"]) => {
    const r = receipts.find((x) => x.kind === kind);
    return r ? new Date(r.at).toISOString() : undefined;
  };
  const redeemed = at("redeemed");
  const revoked = at("revoked");
  return { ...(redeemed ? { redeemed_at: redeemed } : {}), ...(revoked ? { revoked_at: revoked } : {}) };
}

function view(a: ActionRow, record: string | null) {
  return {
    action_id: a.id,
    request_id: a.requestId,
    status: a.status === "pending" ? "pending" : a.verdict,
    ...(a.verdict ? { verdict: a.verdict } : {}),
    ...(record ? { record } : {}),
    // The request as decided (the agent's own, or the revision approvers changed it to):
    // what the agent executes, and what its record's action_sha256 covers.
    ...(a.status === "decided" && record ? { request: decidedRequestOf(a.request, record) } : {}),
    route: a.routeName,
    deadline: a.deadlineAt ? new Date(a.deadlineAt).toISOString() : null,
    created_at: new Date(a.requestedAt).toISOString(),
    ...(a.decidedAt ? { decided_at: new Date(a.decidedAt).toISOString() } : {}),
  };
}

export type { FastifyReply };
