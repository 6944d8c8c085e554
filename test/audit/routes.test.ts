import Database from "better-sqlite3";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AuditDatabase,
  lastSeq,
  logHead,
  publishedKeys,
  recordsInOrder,
  SqliteAuditReader,
} from "../../src/adapters/db/sqlite-audit.js";
import { registerAuditRoutes } from "../../src/adapters/http/audit-routes.js";
import { verifyCheckpoint } from "../../src/audit/checkpoint.js";
import { verifyExport } from "../../src/audit/verify.js";
import { buildLog, ISSUER, linesOf, newKey, type TestLog } from "./log.js";

const TOKEN = "auditor-token-0123456789abcdef";
const KEY = newKey();

let log: TestLog;
let db: AuditDatabase;
let app: FastifyInstance;

beforeAll(async () => {
  log = await buildLog(
    Array.from({ length: 7 }, (_, i) => ({ verdict: i === 3 ? ("denied" as const) : ("approved" as const) })),
    KEY,
  );
  // The route gets a writable connection in `serve` (the store's); so does the test.
  db = new Database(log.file);
  app = Fastify();
  registerAuditRoutes(app, {
    reader: new SqliteAuditReader(db, log.file, false),
    auditorTokens: ["another-auditor-token", TOKEN],
    signingKey: KEY,
    issuer: ISSUER,
    now: () => new Date("2025-04-01T00:00:00Z"),
  });
  await app.ready();
});
afterAll(async () => {
  await app.close();
  db.close();
  log.cleanup();
});

const auth = { authorization: `Bearer ${TOKEN}` };

describe("auditor API authentication", () => {
  it("without a token: 401 unauthenticated, as problem+json", async () => {
    for (const url of ["/v1/audit/records", "/v1/audit/checkpoint"]) {
      const res = await app.inject({ url });
      expect(res.statusCode).toBe(401);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.headers["www-authenticate"]).toMatch(/^Bearer/);
      expect(res.json()).toMatchObject({
        status: 401,
        code: "unauthenticated",
        type: expect.any(String),
        title: expect.any(String),
      });
    }
  });

  it("another scheme is no token: 401", async () => {
    const res = await app.inject({ url: "/v1/audit/records", headers: { authorization: `Basic ${TOKEN}` } });
    expect(res.statusCode).toBe(401);
  });

  it("a wrong token, even a prefix of the right one: 403 forbidden", async () => {
    for (const token of ["nope", TOKEN.slice(0, -1), `${TOKEN}x`]) {
      const res = await app.inject({
        url: "/v1/audit/records",
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({ status: 403, code: "forbidden" });
    }
  });

  it("with no auditor tokens configured, every token is refused", async () => {
    const closed = Fastify();
    registerAuditRoutes(closed, {
      reader: new SqliteAuditReader(db, log.file, false),
      auditorTokens: [],
      signingKey: KEY,
      issuer: ISSUER,
    });
    const res = await closed.inject({ url: "/v1/audit/checkpoint", headers: { authorization: "Bearer " } });
    expect(res.statusCode).toBe(401);
    const res2 = await closed.inject({ url: "/v1/audit/checkpoint", headers: auth });
    expect(res2.statusCode).toBe(403);
    await closed.close();
  });
});

describe("GET /v1/audit/records", () => {
  it("streams the JSONL export, which verifies against the JWKS", async () => {
    const res = await app.inject({ url: "/v1/audit/records", headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^application\/jsonl/);
    expect(res.headers["cache-control"]).toBe("no-store");
    expect(linesOf(res.body)).toHaveLength(7);
    expect(await verifyExport([res.body], { jwks: publishedKeys(db) })).toMatchObject({
      ok: true,
      records: 7,
    });
  });

  it("takes the same filters as the CLI; left-out records are omitted lines", async () => {
    const res = await app.inject({ url: "/v1/audit/records?verdict=denied", headers: auth });
    expect(res.statusCode).toBe(200);
    const lines = linesOf(res.body).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => !l["omitted"]).map((l) => l["seq"])).toEqual([4]);
    expect(await verifyExport([res.body], { jwks: [KEY.publicJwk] })).toMatchObject({
      ok: true,
      records: 1,
      omitted: 6,
    });
  });

  it("answers CSV with format=csv", async () => {
    const res = await app.inject({ url: "/v1/audit/records?format=csv&agent=billing-agent", headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/csv/);
    expect(res.body.split("\r\n")[0]).toBe(
      "seq,decided_at,agent_id,action_type,summary,risk_class,region,verdict,reason_code,reason_text,approvers,action_id,decision_id,record,redeemed_at,outcome,revoked_at",
    );
    expect(res.body.split("\r\n").filter(Boolean)).toHaveLength(8);
  });

  it("refuses bad filters with 400 invalid_request naming each parameter", async () => {
    const res = await app.inject({
      url: "/v1/audit/records?verdict=maybe&since=yesterday&format=xml&agent=a&agent=b",
      headers: auth,
    });
    expect(res.statusCode).toBe(400);
    const body = res.json() as { code: string; errors: { path: string }[] };
    expect(body.code).toBe("invalid_request");
    expect(body.errors.map((e) => e.path).sort()).toEqual(["agent", "format", "since", "verdict"]);
  });

  it("an export in progress leaves the shared connection free for the store's writes", () => {
    const rows = recordsInOrder(db, lastSeq(db), 2);
    expect(rows.next().value).toMatchObject({ seq: 1 });
    // With one long iterator open this would throw "This database connection is busy".
    expect(() =>
      db
        .prepare(
          "INSERT INTO events (action_id, agent_id, type, actor, at, data_json) VALUES (NULL, NULL, 'probe', 'test', 0, '{}')",
        )
        .run(),
    ).not.toThrow();
    expect([...rows].map((r) => r.seq)).toEqual([2, 3, 4, 5, 6, 7]);
  });
});

describe("GET /v1/audit/checkpoint", () => {
  it("returns a fresh signed checkpoint of the head", async () => {
    const res = await app.inject({ url: "/v1/audit/checkpoint", headers: auth });
    expect(res.statusCode).toBe(200);
    const { checkpoint } = res.json() as { checkpoint: string };
    const cp = verifyCheckpoint(checkpoint, [KEY.publicJwk]);
    expect(cp).toEqual({
      ver: 1,
      iss: ISSUER,
      seq: 7,
      head: logHead(db).head,
      iat: Date.UTC(2025, 3, 1) / 1000,
    });
  });
});
