/**
 * The HTTP entry point: health, JWKS, metrics and the Slack endpoint (later the agent and
 * auditor APIs). Routes parse and answer; the work is in the use-cases. Errors are
 * RFC 9457 problem+json, mapped in one place.
 */

import fs from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import Fastify, { type FastifyInstance } from "fastify";
import { type GrantCode, GrantRefusal } from "../../app/grants.js";
import type { Store } from "../../app/ports.js";
import { type RejectionCode, RejectionError } from "../../domain/types.js";
import { packagePath } from "../../paths.js";
import { openApiDocument } from "./openapi.js";

export interface HttpDeps {
  readonly store: Store;
  /** Registers further route groups (the agent API, the auditor API) on the app. */
  readonly routes?: readonly ((app: FastifyInstance) => void)[];
  readonly slackListener: ((req: IncomingMessage, res: ServerResponse) => void) | null;
  readonly redisPing: () => Promise<void>;
  readonly metrics: () => Promise<string>;
}

const STATUS: Record<
  RejectionCode | GrantCode | "unauthenticated" | "forbidden" | "not_found" | "unavailable" | "too_large",
  number
> = {
  invalid_request: 400,
  region_not_allowed: 400,
  callback_not_allowed: 400,
  unauthenticated: 401,
  bad_proof: 401,
  proof_expired: 401,
  replayed_proof: 401,
  unknown_agent: 401,
  unknown_executor: 401,
  bad_record: 400,
  not_approved: 409,
  action_mismatch: 409,
  already_redeemed: 409,
  outcome_exists: 409,
  revoked: 409,
  already_revoked: 409,
  grant_expired: 410,
  action_not_allowed: 403,
  forbidden: 403,
  not_found: 404,
  request_id_conflict: 409,
  too_large: 413,
  too_many_pending: 429,
  unavailable: 503,
};

export function problem(
  code: keyof typeof STATUS,
  detail: string,
  errors: readonly { path: string; message: string }[] = [],
) {
  const status = STATUS[code];
  return {
    status,
    body: {
      type: `https://countersign.dev/problems/${code.replace(/_/g, "-")}`,
      title: code.replace(/_/g, " "),
      status,
      detail,
      code,
      ...(errors.length ? { errors } : {}),
    },
  };
}

export function buildHttp(deps: HttpDeps): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    // Slack's endpoint is served by Bolt's own receiver, on the raw request, before fastify
    // reads the body: its signature check needs the exact bytes.
    serverFactory: (handler) =>
      http.createServer((req, res) => {
        if (deps.slackListener && req.url?.split("?")[0] === "/slack/events") {
          // Bolt refuses requests signed over 5 minutes ago; one dated over 5 minutes ahead
          // is refused too, so a signature made in advance cannot be saved for later.
          const ts = Number(req.headers["x-slack-request-timestamp"]);
          if (Number.isFinite(ts) && ts * 1000 - Date.now() > 5 * 60_000) {
            res.writeHead(401).end();
            return;
          }
          return deps.slackListener(req, res);
        }
        handler(req, res);
      }),
  });

  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof Error && err.name === "ApiProblem") {
      const p = problem((err as unknown as { code: keyof typeof STATUS }).code, err.message);
      return reply.status(p.status).type("application/problem+json").send(p.body);
    }
    if (err instanceof GrantRefusal) {
      const p = problem(err.code, err.message);
      return reply
        .status(p.status)
        .type("application/problem+json")
        .send({ ...p.body, ...err.extra });
    }
    if (err instanceof RejectionError) {
      const p = problem(err.code, err.message, err.errors);
      return reply.status(p.status).type("application/problem+json").send(p.body);
    }
    const e = err as { statusCode?: number; code?: string; message: string };
    if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      const p = problem("too_large", "the body is over 64 KiB");
      return reply.status(413).type("application/problem+json").send(p.body);
    }
    if (e.statusCode && e.statusCode < 500) {
      const p = problem("invalid_request", e.message);
      return reply
        .status(e.statusCode)
        .type("application/problem+json")
        .send({ ...p.body, status: e.statusCode });
    }
    // Never pass database or library text to a client.
    app.log.error(err);
    const p = problem("unavailable", "the service could not complete the request; try again");
    return reply.status(503).type("application/problem+json").send(p.body);
  });

  app.get("/healthz", async () => ({ ok: true }));

  app.get("/readyz", async (_req, reply) => {
    const checks = await Promise.allSettled([withTimeout(deps.redisPing(), 1000), deps.store.ping()]);
    const [redis, db] = checks.map((c) => (c.status === "fulfilled" ? "ok" : "down"));
    const ok = redis === "ok" && db === "ok";
    return reply.status(ok ? 200 : 503).send({ ok, redis, database: db });
  });

  app.get("/.well-known/jwks.json", async (_req, reply) => {
    const keys = await deps.store.signingKeys();
    return reply.header("cache-control", "public, max-age=300").send({ keys: keys.map((k) => k.publicJwk) });
  });

  // Built once: the schemas do not change while the process runs.
  const openapi = openApiDocument(packageVersion());
  app.get("/openapi.json", async (_req, reply) =>
    reply.header("cache-control", "public, max-age=300").send(openapi),
  );

  app.get("/metrics", async (_req, reply) =>
    reply.type("text/plain; version=0.0.4").send(await deps.metrics()),
  );

  for (const register of deps.routes ?? []) register(app);
  return app;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(packagePath("package.json"), "utf8")) as { version: string }).version;
}
