/**
 * Export and verify: records per second to export the log as JSONL (`countersign audit
 * export --out FILE`, the same function) and to verify that file offline (`audit verify`,
 * the same function). The log is built first, straight into the real schema, with real
 * signatures and a real chain, so verify must pass for the numbers to count.
 *
 * Baselines: raw Ed25519 verification (node:crypto) of the same records; for export, the
 * same rows read page by page and written out as they are stored, without decoding.
 */
import { createPublicKey, verify as edVerify } from "node:crypto";
import { once } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { openSqlite, SqliteStore } from "../src/adapters/db/sqlite.js";
import { openAuditDatabase, recordsInOrder, SqliteAuditReader } from "../src/adapters/db/sqlite-audit.js";
import { verifyExport } from "../src/audit/verify.js";
import { exportToFileOrStdout } from "../src/cli/audit.js";
import { sha256B64url } from "../src/domain/canonical.js";
import {
  generateSigningKeyPem,
  loadSigningKey,
  type SigningKey,
  signRecord,
} from "../src/records/signing.js";
import { type BenchContext, log, perSecond, type Row, removeDir, row, tempDir } from "./lib.js";
import { rawActionValues, verdictFixture } from "./setup.js";

/** Records per write transaction while building the log (building is not measured). */
const BUILD_BATCH = 5_000;
/** Raw verification is timed on at most this many records: its rate does not depend on the count. */
const RAW_VERIFY_SAMPLE = 100_000;

/** Writes `m` decided actions and their chained, signed records. */
export async function buildLog(file: string, key: SigningKey, m: number): Promise<void> {
  const store = new SqliteStore(file);
  await store.registerSigningKey(key.kid, key.publicJwk, Date.now());
  await store.close();
  const { raw: db } = openSqlite(file);
  try {
    const insAction = db.prepare(
      `INSERT INTO actions (id, agent_id, request_id, request_json, request_sha256, action_type, risk_class,
         region, status, route_name, level, quorum, eligible_json, deadline_at, policy_sha256, requested_at,
         verdict, reason_code, decided_at, record_seq)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'decided', ?, 0, 1, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insRecord = db.prepare(
      `INSERT INTO records (seq, action_id, decision_id, jws, digest, kid, agent_id, region, verdict, decided_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    let prev: string | null = null;
    const t = Date.now() - m * 1000;
    const batch = db.transaction((from: number) => {
      for (let seq = from; seq < Math.min(m + 1, from + BUILD_BATCH); seq++) {
        const { action: a, claims, outcome } = verdictFixture(new Date(t + seq * 1000));
        const jws = signRecord(key, { ...claims, seq, prev });
        const digest = sha256B64url(jws);
        const decidedAt = Date.parse(claims.decided_at);
        insAction.run(...rawActionValues(a), outcome.verdict, outcome.reasonCode, decidedAt, seq);
        insRecord.run(
          seq,
          a.id,
          claims.jti,
          jws,
          digest,
          key.kid,
          a.agentId,
          a.region,
          outcome.verdict,
          decidedAt,
        );
        prev = digest;
      }
    });
    for (let from = 1; from <= m; from += BUILD_BATCH) {
      batch.immediate(from);
      if ((from - 1) % 100_000 === 0 && from > 1) log(`audit: built ${from - 1} of ${m} records`);
    }
  } finally {
    db.close();
  }
}

/** A writable that keeps nothing: the export's notes and progress have nowhere to go here. */
function discard(): Writable {
  return new Writable({
    write(_chunk, _enc, cb) {
      cb();
    },
  });
}

/** The export's I/O floor: the same pages of rows, written as stored. */
export async function rawCopy(dbFile: string, out: string, m: number): Promise<number> {
  const db = openAuditDatabase(dbFile);
  // The same 1 MB buffer as the export's file (src/cli/audit.ts), so both overlap making
  // the next chunk with writing this one alike.
  const file = fs.createWriteStream(out, { highWaterMark: 1 << 20 });
  const t0 = process.hrtime.bigint();
  let chunk = "";
  let n = 0;
  for (const r of recordsInOrder(db, m)) {
    chunk += `${r.seq}\t${r.jws}\t${r.requestJson}\n`;
    n++;
    if (chunk.length >= 64 * 1024) {
      if (!file.write(chunk)) await once(file, "drain");
      chunk = "";
    }
  }
  file.end(chunk);
  await finished(file);
  const t1 = process.hrtime.bigint();
  db.close();
  if (n !== m) throw new Error(`benchmark: the raw copy read ${n} records, expected ${m}`);
  return perSecond(m, t0, t1);
}

function rawVerify(dbFile: string, key: SigningKey, m: number): number {
  const db = openAuditDatabase(dbFile);
  const inputs: { data: Buffer; sig: Buffer }[] = [];
  try {
    for (const r of recordsInOrder(db, Math.min(m, RAW_VERIFY_SAMPLE))) {
      const dot = r.jws.lastIndexOf(".");
      inputs.push({
        data: Buffer.from(r.jws.slice(0, dot), "utf8"),
        sig: Buffer.from(r.jws.slice(dot + 1), "base64url"),
      });
    }
  } finally {
    db.close();
  }
  // As verifyJws holds it: a public KeyObject, imported once.
  const pub = createPublicKey(key.privateKey);
  let ok = 0;
  const t0 = process.hrtime.bigint();
  for (const x of inputs) if (edVerify(null, x.data, pub, x.sig)) ok++;
  const t1 = process.hrtime.bigint();
  if (ok !== inputs.length)
    throw new Error(`benchmark: ${inputs.length - ok} records failed raw verification`);
  return perSecond(inputs.length, t0, t1);
}

export async function audit(ctx: BenchContext): Promise<Row[]> {
  const m = ctx.size(1_000_000, 3_000);
  const dir = tempDir("audit");
  try {
    const key = loadSigningKey(generateSigningKeyPem());
    const dbFile = path.join(dir, "countersign.db");
    log(`audit: building a log of ${m} signed, chained records`);
    await buildLog(dbFile, key, m);

    log("audit: export (audit export --out)");
    const out = path.join(dir, "export.jsonl");
    const reader = SqliteAuditReader.open(dbFile);
    const t0 = process.hrtime.bigint();
    const stats = await exportToFileOrStdout(reader, { filter: {}, format: "jsonl" }, out, {
      stdout: discard(),
      stderr: discard(),
    });
    const t1 = process.hrtime.bigint();
    await reader.close();
    if (stats.records !== m)
      throw new Error(`benchmark: the export wrote ${stats.records} records, expected ${m}`);
    const exportRate = perSecond(m, t0, t1);
    const megabytes = fs.statSync(out).size / 2 ** 20;

    log("audit: verify (audit verify)");
    const t2 = process.hrtime.bigint();
    const report = await verifyExport(
      fs.createReadStream(out, { encoding: "utf8", highWaterMark: 1 << 20 }),
      {
        jwks: [key.publicJwk],
      },
    );
    const t3 = process.hrtime.bigint();
    if (!report.ok)
      throw new Error(`benchmark: the export did not verify: ${report.reason}: ${report.message}`);
    if (report.records !== m)
      throw new Error(`benchmark: verify checked ${report.records} records, expected ${m}`);
    const verifyRate = perSecond(m, t2, t3);

    log("audit: raw baselines");
    const copyRate = await rawCopy(dbFile, path.join(dir, "raw.txt"), m);
    const rawVerifyRate = rawVerify(dbFile, key, m);
    return [
      row({
        id: "audit.export",
        measure: `export JSONL (${m.toLocaleString("en-US")} records, ${megabytes.toFixed(0)} MB)`,
        unit: "records/s",
        value: exportRate,
        baseline: copyRate,
        baselineOf: "raw read + write of the stored rows",
        target: { kind: "ratio_min", x: 0.8 },
      }),
      row({
        id: "audit.verify",
        measure: "verify the export",
        unit: "records/s",
        value: verifyRate,
        baseline: rawVerifyRate,
        baselineOf: "raw Ed25519 verify",
        target: { kind: "ratio_min", x: 0.7 },
      }),
    ];
  } finally {
    removeDir(dir);
  }
}
