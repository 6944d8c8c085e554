/**
 * The auditor API: `GET /v1/audit/records` (the export, streamed) and
 * `GET /v1/audit/checkpoint`. Auditors hold one of AUDITOR_TOKENS; no token is 401
 * `unauthenticated`, any other token 403 `forbidden`. With no auditor tokens configured
 * the API is closed: every token is wrong.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { signCheckpoint } from "../../audit/checkpoint.js";
import { exportChunks, parseExportQuery } from "../../audit/export.js";
import type { AuditReader } from "../../audit/reader.js";
import type { SigningKey } from "../../records/signing.js";
import { problem } from "./server.js";

export interface AuditRouteDeps {
  /** The log, on whichever store (see openAuditReader); the routes do not close it. */
  readonly reader: AuditReader;
  readonly auditorTokens: readonly string[];
  readonly signingKey: SigningKey;
  readonly issuer: string;
  /** The clock for checkpoints' `iat`; defaults to the system clock. */
  readonly now?: () => Date;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/**
 * Tokens are compared as SHA-256 digests with timingSafeEqual, against every configured
 * token without stopping at a match: neither the time taken nor an early exit tells a
 * caller how much of a guess was right, or which token it matched.
 */
function tokenChecker(tokens: readonly string[]): (given: string) => boolean {
  const digests = tokens.map(sha256);
  return (given) => {
    const g = sha256(given);
    let ok = false;
    for (const d of digests) ok = timingSafeEqual(g, d) || ok;
    return ok;
  };
}

export function registerAuditRoutes(app: FastifyInstance, deps: AuditRouteDeps): void {
  const isAuditor = tokenChecker(deps.auditorTokens);
  const now = deps.now ?? (() => new Date());

  /** Answers 401/403 and returns false unless the request carries an auditor's token. */
  function authorize(req: FastifyRequest, reply: FastifyReply): boolean {
    const header = req.headers.authorization;
    const m = typeof header === "string" ? /^Bearer[ ]+(\S+)\s*$/i.exec(header) : null;
    if (!m) {
      const p = problem(
        "unauthenticated",
        "the auditor API needs Authorization: Bearer <one of AUDITOR_TOKENS>",
      );
      reply.status(p.status).header("www-authenticate", 'Bearer realm="countersign-audit"');
      reply.type("application/problem+json").send(p.body);
      return false;
    }
    if (!isAuditor(m[1]!)) {
      const p = problem("forbidden", "this token is not an auditor token (AUDITOR_TOKENS)");
      reply.status(p.status).type("application/problem+json").send(p.body);
      return false;
    }
    return true;
  }

  app.get("/v1/audit/records", async (req, reply) => {
    if (!authorize(req, reply)) return reply;
    const parsed = parseExportQuery((req.query ?? {}) as Record<string, unknown>);
    if (!parsed.ok) {
      const p = problem("invalid_request", "the export's query parameters are not valid", parsed.errors);
      return reply.status(p.status).type("application/problem+json").send(p.body);
    }
    const { filter, format } = parsed.query;
    // The export is the log as it was when the request came in; later records wait for
    // the next export, so the file is one consistent prefix of the chain.
    const upTo = await deps.reader.lastSeq();
    const body = Readable.from(exportChunks(deps.reader.records(upTo), { format, filter }), {
      objectMode: false,
    });
    return reply
      .header("cache-control", "no-store")
      .header("x-countersign-last-seq", String(upTo))
      .type(format === "csv" ? "text/csv; charset=utf-8" : "application/jsonl; charset=utf-8")
      .header(
        "content-disposition",
        `attachment; filename="countersign-audit-${upTo}.${format === "csv" ? "csv" : "jsonl"}"`,
      )
      .send(body);
  });

  app.get("/v1/audit/checkpoint", async (req, reply) => {
    if (!authorize(req, reply)) return reply;
    const checkpoint = signCheckpoint(deps.signingKey, deps.issuer, await deps.reader.logHead(), now());
    return reply.header("cache-control", "no-store").send({ checkpoint });
  });
}
