/**
 * The auditor's side on PostgreSQL: the `audit` commands against a log in a schema of its
 * own (real processes, as an auditor runs them), the reader's one consistent view while
 * decisions keep landing, and the auditor API of a real server on PostgreSQL.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PgAuditReader } from "../../src/adapters/db/pg-audit.js";
import { verifyCheckpoint } from "../../src/audit/checkpoint.js";
import { type ExportSource, exportChunks } from "../../src/audit/export.js";
import { parseJwks, verifyExport } from "../../src/audit/verify.js";
import { generateSigningKeyPem, jwsDigest, loadSigningKey } from "../../src/records/signing.js";
import { waitForJob } from "../../src/sdk/finished.js";
import { type Harness, PG_URL, request, startHarness } from "../support/harness.js";
import { ROOT, runCli } from "./cli-run.js";
import { buildLog, exportText, linesOf, type TestLog } from "./log.js";

const POLICY = path.join(ROOT, "test/fixtures/policies/spec-example.yml");
const PEM = generateSigningKeyPem();
const KEY = loadSigningKey(PEM);

/** The environment for a CLI process reading `log`, signing checkpoints with KEY. */
function cliEnv(log: TestLog): Record<string, string> {
  const keyFile = path.join(log.dir, "signing-key.pem");
  if (!fs.existsSync(keyFile)) fs.writeFileSync(keyFile, PEM, { mode: 0o600 });
  return { ...log.env, SIGNING_KEY_FILE: keyFile, POLICY_FILE: POLICY };
}

/** One statement on the log's schema, as someone with write access to the database would run it. */
async function sql(log: TestLog, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${log.schema}` });
  await client.connect();
  try {
    return await client.query(text, params);
  } finally {
    await client.end();
  }
}

const seqOf = (line: string) => (JSON.parse(line) as { seq: number }).seq;
const upToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("countersign audit on PostgreSQL", () => {
  let log: TestLog;
  let env: Record<string, string>;
  const file = (name: string) => path.join(log.dir, name);

  beforeAll(async () => {
    log = await buildLog(
      [
        {},
        { agent: "crm-agent" },
        { verdict: "denied", reasonText: "not this week" },
        {},
        { agent: "crm-agent" },
      ],
      KEY,
      { postgres: true },
    );
    env = cliEnv(log);
  });
  afterAll(() => log?.cleanup());

  it("exports, and the export verifies against the keys published in the database", async () => {
    const ex = await runCli(["audit", "export", "--out", file("all.jsonl")], env);
    expect(ex).toMatchObject({ code: 0, stdout: "" });
    expect(ex.stderr).toContain(`exported 5 records (0 omitted) to ${file("all.jsonl")}`);
    const lines = linesOf(fs.readFileSync(file("all.jsonl"), "utf8"));
    expect(lines.map(seqOf)).toEqual([1, 2, 3, 4, 5]);

    const v = await runCli(["audit", "verify", file("all.jsonl")], env);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(
      new RegExp(
        `^verified 5 entries \\(5 decisions, 0 receipts, 0 omitted\\), seq 1-5, head [\\w-]{43}; signed by ${KEY.kid} \\(5\\)\\n$`,
      ),
    );
    // Where the keys came from, named without the connection URL's user or password.
    expect(v.stderr).toContain(`key(s) from 127.0.0.1:5432/test (schema ${log.schema})`);
    expect(v.stderr).not.toContain("postgres://");
  });

  it("signs a checkpoint of the head that a verify then matches", async () => {
    const cp = await runCli(["audit", "checkpoint"], env);
    expect(cp).toMatchObject({ code: 0, stderr: "" });
    fs.writeFileSync(file("cp.jws"), cp.stdout);
    const checkpoint = verifyCheckpoint(cp.stdout.trim(), [KEY.publicJwk]);
    const { rows } = await sql(log, "SELECT jws FROM records WHERE seq = 5");
    expect(checkpoint).toMatchObject({ seq: 5, head: jwsDigest(rows[0].jws) });

    await runCli(["audit", "export", "--out", file("c.jsonl")], env);
    const v = await runCli(["audit", "verify", file("c.jsonl"), "--checkpoint", file("cp.jws")], env);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/matches the checkpoint of seq 5 signed/);
  });

  it("prints one action's decision path, ending with its record", async () => {
    const r = await runCli(["audit", "events", log.actionIds[2]!], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/agent:billing-agent\s+received/);
    expect(r.stdout).toMatch(/record seq 3: denied/);
    const unknown = await runCli(["audit", "events", "act_nope"], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(`no action act_nope in 127.0.0.1:5432/test (schema ${log.schema})`);
  });

  it("writes a filtered CSV to stdout", async () => {
    const ex = await runCli(["audit", "export", "--format", "csv", "--verdict", "denied"], env);
    expect(ex.code).toBe(0);
    const rows = ex.stdout.split("\r\n").filter(Boolean);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatch(/^3,.*,denied,approvers,not this week,/);
  });

  it("names what is missing when the schema holds no log, and creates nothing", async () => {
    const schema = `test_audit_missing_${randomUUID().replace(/-/g, "")}`;
    const r = await runCli(["audit", "export"], { ...env, DATABASE_SCHEMA: schema });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(
      `countersign: PostgreSQL at 127.0.0.1:5432/test (schema ${schema}) has no records, actions, events, signing_keys tables: are DATABASE_URL and DATABASE_SCHEMA right? (\`countersign migrate\` creates the tables)`,
    );
    const { rows } = await sql(log, "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1", [
      schema,
    ]);
    expect(rows[0].n).toBe(0);
  });

  it("reads in read-only sessions: even a statement slipped into its pool cannot write", async () => {
    const reader = await PgAuditReader.open(PG_URL, { schema: log.schema! });
    try {
      const pool = (reader as unknown as { pool: pg.Pool }).pool;
      await expect(pool.query("DELETE FROM records WHERE seq = 1")).rejects.toThrow(
        /cannot execute DELETE in a read-only transaction/,
      );
      expect(await reader.lastSeq()).toBe(5);
    } finally {
      await reader.close();
    }
  });
});

describe("a tampered PostgreSQL log", () => {
  let log: TestLog;
  let env: Record<string, string>;
  const file = (name: string) => path.join(log.dir, name);

  beforeAll(async () => {
    log = await buildLog([{}, {}, {}, {}], KEY, { postgres: true });
    env = cliEnv(log);
  });
  afterAll(() => log?.cleanup());

  it("an edited request row: verify exits 1 at that seq", async () => {
    const id = log.actionIds[1]!;
    const before = (await sql(log, "SELECT request_json FROM actions WHERE id = $1", [id])).rows[0]
      .request_json as string;
    expect(before).toContain('"amount":"120.00"');
    await sql(log, "UPDATE actions SET request_json = $2 WHERE id = $1", [
      id,
      before.replace('"amount":"120.00"', '"amount":"999.00"'),
    ]);
    try {
      expect((await runCli(["audit", "export", "--out", file("t.jsonl")], env)).code).toBe(0);
      const v = await runCli(["audit", "verify", file("t.jsonl")], env);
      expect(v.code).toBe(1);
      expect(v.stdout).toMatch(
        /^verification FAILED at seq 2, line 2: edited_claim: the request for seq 2 hashes to [\w-]+, but the record signed action_sha256 [\w-]+: the request was edited\n$/,
      );
    } finally {
      await sql(log, "UPDATE actions SET request_json = $2 WHERE id = $1", [id, before]);
    }
  });

  it("a deleted record: verify exits 1 naming it dropped", async () => {
    await sql(log, "DELETE FROM records WHERE seq = 3");
    expect((await runCli(["audit", "export", "--out", file("d.jsonl")], env)).code).toBe(0);
    const v = await runCli(["audit", "verify", file("d.jsonl")], env);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/^verification FAILED at seq 3, line 3: record_dropped: seq 3 is missing/);
  });
});

describe("an export on PostgreSQL while decisions keep landing", () => {
  let log: TestLog;
  beforeAll(async () => {
    log = await buildLog([{}, {}, {}, {}, {}, {}, { agent: "crm-agent" }], KEY, { postgres: true });
  });
  afterAll(() => log?.cleanup());

  it("is the log up to the head at its start: a prefix of the chain, which verifies", async () => {
    const reader = await PgAuditReader.open(PG_URL, { schema: log.schema!, pageSize: 2 });
    try {
      const upTo = await reader.lastSeq();
      expect(upTo).toBe(7);
      // Two more records are decided after each page is read, so every later page is
      // read from a log that has grown since the export began.
      async function* landing(): AsyncGenerator<readonly ExportSource[]> {
        for await (const page of reader.records(upTo)) {
          yield page;
          await log.append([{}, { agent: "crm-agent" }]);
        }
      }
      let text = "";
      for await (const chunk of exportChunks(landing(), { format: "jsonl", filter: {} })) text += chunk;

      const after = await reader.lastSeq();
      expect(after).toBeGreaterThanOrEqual(upTo + 6);
      expect(linesOf(text).map(seqOf)).toEqual(upToN(upTo));
      const jwks = await reader.publishedKeys();
      expect(await verifyExport([text], { jwks })).toMatchObject({ ok: true, records: upTo, lastSeq: upTo });

      // The records decided meanwhile continue the same chain: the next export has them all.
      const next = await exportText(reader);
      expect(linesOf(next).map(seqOf)).toEqual(upToN(after));
      expect(next.startsWith(text)).toBe(true);
      expect(await verifyExport([next], { jwks })).toMatchObject({ ok: true, records: after });
    } finally {
      await reader.close();
    }
  });
});

describe("the auditor API on a PostgreSQL server", () => {
  const TOKEN = "auditor-token-for-postgres-0123456789";
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ postgres: true, env: { AUDITOR_TOKENS: TOKEN } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  const decide = (n: number, tag: string) =>
    Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const req = request({ risk_class: "low", action: { type: "crm.read", summary: `${tag} ${i}` } });
        // The SDK's shared waiter: thirty of BullMQ's own waits would trip MaxListenersExceededWarning.
        await waitForJob(await h.submit(req), h.queue, h.events, 20_000);
      }),
    );

  async function get(url: string): Promise<Response> {
    return fetch(`${h.app.url}${url}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  }

  it("streams a verifiable export and a checkpoint, while decisions keep landing", async () => {
    await decide(10, "before");
    const more = decide(30, "during");
    const res = await get("/v1/audit/records");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/jsonl/);
    const upTo = Number(res.headers.get("x-countersign-last-seq"));
    const body = await res.text();
    await more;

    expect(upTo).toBeGreaterThanOrEqual(10);
    expect(linesOf(body).map(seqOf)).toEqual(upToN(upTo));
    const jwks = parseJwks(await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json(), "the JWKS");
    expect(await verifyExport([body], { jwks })).toMatchObject({ ok: true, records: upTo, lastSeq: upTo });

    const cp = await get("/v1/audit/checkpoint");
    expect(cp.status).toBe(200);
    const checkpoint = verifyCheckpoint(((await cp.json()) as { checkpoint: string }).checkpoint, jwks);
    expect(checkpoint.seq).toBe(40);
    const all = linesOf(await (await get("/v1/audit/records")).text());
    expect(all).toHaveLength(40);
    expect(checkpoint.head).toBe(jwsDigest((JSON.parse(all[39]!) as { record: string }).record));
  });

  it("answers CSV, and refuses a caller without an auditor token", async () => {
    const csv = await get("/v1/audit/records?format=csv&verdict=approved");
    expect(csv.status).toBe(200);
    expect((await csv.text()).split("\r\n").filter(Boolean).length).toBeGreaterThan(1);
    const anonymous = await fetch(`${h.app.url}/v1/audit/records`);
    expect(anonymous.status).toBe(401);
  });
});
