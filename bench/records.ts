/**
 * Records: verdicts signed, chained and persisted per second through the store
 * (SqliteStore.admit of requests the policy decides at once: the transaction reads the
 * log's head, signs, inserts the record and closes the action). Inputs are built before
 * the clock starts, so the measure is the store's alone. Taken two ways: one admit at a
 * time (each awaited before the next), and IN_FLIGHT admits in flight at once, as when
 * many verdicts are decided together (a burst of clicks, a sweep of deadlines): a store
 * that commits concurrent writes together can only show it under the second.
 *
 * Baselines, on the same disk: raw node:crypto Ed25519 signing of the same JWS signing
 * input, and raw better-sqlite3 writes of the same rows into the same schema (one
 * transaction per verdict, the store's pragmas, statements prepared once).
 */
import { randomUUID, sign } from "node:crypto";
import path from "node:path";
import { openSqlite, SqliteStore } from "../src/adapters/db/sqlite.js";
import { decisionEffects } from "../src/app/approvals.js";
import type { AdmitInput } from "../src/app/ports.js";
import { sha256B64url } from "../src/domain/canonical.js";
import {
  generateSigningKeyPem,
  loadSigningKey,
  recordSigner,
  type SigningKey,
  signRecord,
} from "../src/records/signing.js";
import { type BenchContext, log, perSecond, type Row, removeDir, row, tempDir } from "./lib.js";
import { rawActionValues, verdictFixture } from "./setup.js";

/** The JWS signing input (`header.payload`) of a typical record. */
function signingInput(key: SigningKey): Buffer {
  const f = verdictFixture(new Date());
  const jws = signRecord(key, { ...f.claims, seq: 123_456, prev: "x".repeat(43) });
  return Buffer.from(jws.slice(0, jws.lastIndexOf(".")), "utf8");
}

export function rawSigning(key: SigningKey, n: number): number {
  const input = signingInput(key);
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += sign(null, input, key.privateKey).length;
  const t1 = process.hrtime.bigint();
  if (sink !== n * 64) throw new Error("benchmark: Ed25519 signatures are not 64 bytes");
  return perSecond(n, t0, t1);
}

/**
 * What admit writes for a verdict decided at once, into the real schema (migrations and
 * pragmas of the store): the action, the spent jti, 3 events, 2 effects, the log's head
 * read, the record, the action closed. Raw statements prepared once; the JWS is signed
 * beforehand, since signing is the other baseline.
 */
export async function rawInserts(key: SigningKey, n: number, perTransaction = 1): Promise<number> {
  const dir = tempDir("records");
  try {
    const file = path.join(dir, "raw.db");
    // The store's constructor applies the migrations; then it steps aside.
    await new SqliteStore(file).close();
    const { raw: db } = openSqlite(file);
    const fixtures = Array.from({ length: n }, () => verdictFixture(new Date()));
    const jws = signRecord(key, { ...fixtures[0]!.claims, seq: 1, prev: null });
    const digest = sha256B64url(jws);
    const insAction = db.prepare(
      `INSERT INTO actions (id, agent_id, request_id, request_json, request_sha256, action_type, risk_class,
         region, status, route_name, level, quorum, eligible_json, deadline_at, cap_at, policy_sha256, requested_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, 0, 1, ?, ?, NULL, ?, ?)`,
    );
    const insJti = db.prepare("INSERT INTO proof_jtis (agent_id, jti, exp) VALUES (?, ?, ?)");
    const insEvent = db.prepare(
      "INSERT INTO events (action_id, agent_id, type, actor, at, data_json) VALUES (?, ?, ?, ?, ?, ?)",
    );
    const insEffect = db.prepare(
      "INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at) VALUES (?, ?, ?, '{}', ?, ?)",
    );
    const head = db.prepare("SELECT seq, digest FROM records ORDER BY seq DESC LIMIT 1");
    const insRecord = db.prepare(
      `INSERT INTO records (seq, action_id, decision_id, jws, digest, kid, agent_id, region, verdict, decided_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'approved', ?)`,
    );
    const close = db.prepare(
      "UPDATE actions SET status = 'decided', verdict = 'approved', reason_code = 'approvers', decided_at = ?, record_seq = ? WHERE id = ? AND status = 'pending'",
    );
    const data = JSON.stringify({ via: "queue", request_id: "req-x", job_id: null, jti: randomUUID() });
    const now = Date.now();
    const one = (i: number) => {
      const { action: a, claims } = fixtures[i]!;
      insAction.run(...rawActionValues(a));
      insJti.run(a.agentId, randomUUID(), 0);
      for (const type of ["received", "routed", "record_issued"])
        insEvent.run(a.id, a.agentId, type, "system", now, data);
      insEffect.run(a.id, "release", `release:${a.id}`, now, now);
      insEffect.run(a.id, "update_card", `update:${a.id}`, now, now);
      const h = head.get() as { seq: number; digest: string } | undefined;
      const seq = (h?.seq ?? 0) + 1;
      insRecord.run(seq, a.id, claims.jti, jws, digest, key.kid, a.agentId, a.region, now);
      close.run(now, seq, a.id);
    };
    const batch = db.transaction((from: number) => {
      for (let i = from; i < Math.min(n, from + perTransaction); i++) one(i);
    });
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i += perTransaction) batch.immediate(i);
    const t1 = process.hrtime.bigint();
    db.close();
    return perSecond(n, t0, t1);
  } finally {
    removeDir(dir);
  }
}

/** Admits in flight at once in the concurrent run. */
const IN_FLIGHT = 256;

export async function throughStore(key: SigningKey, n: number, inFlight = 1): Promise<number> {
  const dir = tempDir("records");
  const store = new SqliteStore(path.join(dir, "countersign.db"));
  try {
    await store.registerSigningKey(key.kid, key.publicJwk, Date.now());
    // As the server does (src/main.ts): a signer that carries its key signs on a second thread.
    store.setSigner(recordSigner(key));
    const now = Date.now();
    const inputs: AdmitInput[] = Array.from({ length: n }, () => {
      const f = verdictFixture(new Date(now));
      return {
        action: f.action,
        proof: { jti: randomUUID(), exp: Math.floor(now / 1000) + 300 },
        job: null,
        maxPending: 1_000_000,
        events: [
          {
            type: "received",
            actor: `agent:${f.action.agentId}`,
            data: { via: "queue", request_id: f.action.requestId },
          },
          { type: "routed", actor: "system", data: { route: "bench", auto: "approve" } },
        ],
        effects: (a) => decisionEffects(a, f.action.request),
        decision: { outcome: f.outcome, claims: f.claims },
        now,
      };
    });
    let next = 0;
    // Each lane admits its next input once its last one is done: inFlight admits at a time.
    const lane = async () => {
      while (next < n) {
        const r = await store.admit(inputs[next++]!);
        if (r.kind !== "created" || !r.record)
          throw new Error(`benchmark: admit returned ${r.kind} without a record`);
      }
    };
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: Math.min(n, inFlight) }, lane));
    const t1 = process.hrtime.bigint();
    // However the writes were grouped, the log must be n records, gapless, each once.
    const head = store.sqlite.prepare("SELECT max(seq) AS last, count(*) AS n FROM records").get() as {
      last: number;
      n: number;
    };
    if (head.n !== n || head.last !== n)
      throw new Error(`benchmark: expected records 1..${n} in the log, found ${head.n} up to ${head.last}`);
    return perSecond(n, t0, t1);
  } finally {
    await store.close();
    removeDir(dir);
  }
}

export async function records(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.size(20_000, 2_000);
  const key = loadSigningKey(generateSigningKeyPem());
  log(
    `records: ${n} verdicts through the store, ${IN_FLIGHT} in flight and one at a time, then raw signing and raw inserts`,
  );
  // A short warm-up of each, so the JIT is not measured.
  await throughStore(key, 200);
  await throughStore(key, 2 * IN_FLIGHT, IN_FLIGHT);
  rawSigning(key, 500);
  await rawInserts(key, 200);
  const concurrent = await throughStore(key, n, IN_FLIGHT);
  const sequential = await throughStore(key, n);
  const signing = rawSigning(key, n);
  const inserts = await rawInserts(key, n);
  const grouped = await rawInserts(key, n, 100);
  const rawSqlite = "raw better-sqlite3: same rows and schema, 1 tx per verdict";
  return [
    row({
      id: "records.per_second",
      measure: `signed + chained + persisted verdicts (store.admit, ${n}, ${IN_FLIGHT} in flight)`,
      unit: "/s",
      value: concurrent,
      baseline: signing,
      baselineOf: "raw Ed25519 signing",
      target: { kind: "ratio_min", x: 0.5 },
    }),
    row({
      id: "records.vs_inserts",
      measure: `the same (${IN_FLIGHT} in flight), against raw SQLite`,
      unit: "/s",
      value: concurrent,
      baseline: inserts,
      baselineOf: rawSqlite,
    }),
    row({
      id: "records.sequential",
      measure: `signed + chained + persisted verdicts (store.admit, ${n}, one at a time)`,
      unit: "/s",
      value: sequential,
      baseline: signing,
      baselineOf: "raw Ed25519 signing",
    }),
    row({
      id: "records.sequential_vs_inserts",
      measure: "the same (one at a time), against raw SQLite",
      unit: "/s",
      value: sequential,
      baseline: inserts,
      baselineOf: rawSqlite,
    }),
    row({
      id: "records.grouped_inserts",
      measure: "(reference) raw SQLite, 100 verdicts per transaction",
      unit: "/s",
      value: grouped,
      baseline: inserts,
      baselineOf: "1 verdict per transaction",
      note: "what grouping commits would allow",
    }),
    row({
      id: "records.vs_floor",
      measure: `signed + chained + persisted verdicts (store.admit, ${IN_FLIGHT} in flight), against the one-thread floor`,
      unit: "/s",
      value: concurrent,
      baseline: 1 / (1 / signing + 1 / grouped),
      baselineOf: "raw signing, then raw SQLite at 100 per transaction, one thread",
      target: { kind: "ratio_min", x: 0.8 },
    }),
    row({
      id: "records.raw_parts",
      measure: "(reference) raw signing, then raw SQLite at 100 per transaction, one thread",
      unit: "/s",
      // Each verdict is signed (its prev is the digest of the record before it, so in
      // chain order) and written: the two raw rates one after the other on one thread.
      value: 1 / (1 / signing + 1 / grouped),
      baseline: signing,
      baselineOf: "raw Ed25519 signing",
      note: "the raw parts of a verdict with nothing else: the most one thread can sign and store",
    }),
  ];
}
