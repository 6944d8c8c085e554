/**
 * Audit export and verify at scale (a script, not a test):
 *
 *   node --import tsx bench/export-memory.ts [RECORDS]      (default 100000)
 *
 * Builds RECORDS signed, chained records in a temp SQLite file (rows written directly,
 * signed with signRecord, as the store would), then runs `audit export` (JSONL and CSV)
 * and `audit verify` each in a fresh child process, sampling that process's RSS, and
 * prints peak RSS and records per second. A fresh process per phase keeps the build's
 * heap out of the numbers; RSS is sampled every 10 ms together with how far the phase
 * got, so a growth with the log's size would show as a rising series, not one peak.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { migrateSqlite, openSqlite } from "../src/adapters/db/sqlite.js";
import { SqliteAuditReader } from "../src/adapters/db/sqlite-audit.js";
import { parseExportQuery } from "../src/audit/export.js";
import { verifyExport } from "../src/audit/verify.js";
import { exportToFileOrStdout } from "../src/cli/audit.js";
import { requestDigest } from "../src/domain/canonical.js";
import type { RecordClaims } from "../src/domain/types.js";
import { generateSigningKeyPem, jwsDigest, loadSigningKey, signRecord } from "../src/records/signing.js";

const SELF = fileURLToPath(import.meta.url);

interface PhaseResult {
  readonly phase: string;
  readonly records: number;
  readonly seconds: number;
  readonly recordsPerSecond: number;
  readonly rssStartMb: number;
  readonly rssPeakMb: number;
  /** RSS at about 25, 50, 75 and 100 % of the phase. */
  readonly rssAtQuartersMb: number[];
  readonly bytes: number;
}

const mb = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10;

function build(file: string, n: number): void {
  const { raw, db } = openSqlite(file);
  migrateSqlite(db);
  const key = loadSigningKey(generateSigningKeyPem());
  raw
    .prepare("INSERT INTO signing_keys (kid, public_jwk, created_at) VALUES (?, ?, ?)")
    .run(key.kid, JSON.stringify(key.publicJwk), 0);
  const insAction = raw.prepare(
    `INSERT INTO actions (id, agent_id, request_id, request_json, request_sha256, action_type, risk_class, region,
       status, route_name, level, quorum, policy_sha256, requested_at, verdict, reason_code, decided_at, record_seq)
     VALUES (?, ?, ?, ?, ?, 'payments.refund', 'high', ?, 'decided', 'eu-high-payments', 0, 2, 'policy', ?, ?, 'approvers', ?, ?)`,
  );
  const insRecord = raw.prepare(
    `INSERT INTO records (seq, action_id, decision_id, jws, digest, kid, agent_id, region, verdict, decided_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const t0 = Date.UTC(2025, 0, 1);
  let prev: string | null = null;
  const batch = raw.transaction((from: number, to: number) => {
    for (let seq = from; seq <= to; seq++) {
      const agent = seq % 3 === 0 ? "crm-agent" : "billing-agent";
      const region = seq % 2 === 0 ? "eu" : "us";
      const verdict = seq % 7 === 0 ? "denied" : "approved";
      const at = t0 + seq * 1000;
      const request = {
        request_id: `req-${seq}`,
        agent_id: agent,
        action: {
          type: "payments.refund",
          summary: `Refund order ${seq} (EUR ${(seq % 500) + 0.5})`,
          details: {
            order: seq,
            customer: `cus_${seq.toString(36)}`,
            lines: [{ sku: "A-1", qty: 2 }],
            note: "x".repeat(200),
          },
          systems: ["stripe", "zendesk"],
        },
        risk_class: "high",
        region,
        purpose: "Customer was charged twice for the same order",
      };
      const actionId = `act_${seq.toString().padStart(12, "0")}`;
      const claims: RecordClaims = {
        ver: 1,
        iss: "https://countersign.bench",
        sub: agent,
        jti: `dec_${seq.toString().padStart(12, "0")}`,
        iat: Math.floor(at / 1000),
        action_id: actionId,
        request_id: request.request_id,
        action_type: request.action.type,
        summary: request.action.summary,
        action_sha256: requestDigest(request),
        risk_class: "high",
        region,
        purpose: request.purpose,
        systems: request.action.systems,
        on_behalf_of: null,
        verdict,
        reason_code: "approvers",
        reason_text: verdict === "denied" ? "not without a ticket" : "",
        route: { name: "eu-high-payments", quorum: 2, escalation_level: 0 },
        eligible: ["U0ALICE", "U0BOB", "U0RISK"],
        votes: [
          { user: "U0ALICE", team: "T0", vote: "approve", at: new Date(at - 5000).toISOString() },
          {
            user: "U0BOB",
            team: "T0",
            vote: verdict === "denied" ? "deny" : "approve",
            at: new Date(at).toISOString(),
          },
        ],
        requested_at: new Date(at - 60_000).toISOString(),
        decided_at: new Date(at).toISOString(),
        policy_sha256: "policy",
        seq,
        prev,
      };
      const jws = signRecord(key, claims);
      const digest = jwsDigest(jws);
      insAction.run(
        actionId,
        agent,
        request.request_id,
        JSON.stringify(request),
        claims.action_sha256,
        region,
        at - 60_000,
        verdict,
        at,
        seq,
      );
      insRecord.run(seq, actionId, claims.jti, jws, digest, key.kid, agent, region, verdict, at);
      prev = digest;
    }
  });
  for (let from = 1; from <= n; from += 10_000) batch(from, Math.min(n, from + 9_999));
  raw.close();
}

/**
 * Samples this process's RSS every 10 ms beside `progress()` (bytes done so far); once the
 * total is known, the RSS at each quarter of the work is read off the samples.
 */
function sampler(progress: () => number): {
  stop(total: number): { peak: number; quarters: number[]; start: number };
} {
  const start = process.memoryUsage.rss();
  const samples: [number, number][] = [];
  const timer = setInterval(() => samples.push([progress(), process.memoryUsage.rss()]), 10);
  return {
    stop(total) {
      clearInterval(timer);
      samples.push([total, process.memoryUsage.rss()]);
      const peak = Math.max(start, ...samples.map(([, rss]) => rss));
      const quarters = [1, 2, 3, 4].map((q) => {
        const at = samples.find(([done]) => done >= (q / 4) * total);
        return (at ?? samples.at(-1)!)[1];
      });
      return { peak, quarters, start };
    },
  };
}

async function child(phase: string, dbFile: string, out: string): Promise<PhaseResult> {
  const reader = SqliteAuditReader.open(dbFile);
  const total = await reader.lastSeq();
  const t = performance.now();
  if (phase === "export-jsonl" || phase === "export-csv") {
    const parsed = parseExportQuery({ format: phase === "export-csv" ? "csv" : "jsonl" });
    if (!parsed.ok) throw new Error("bad query");
    const partial = `${out}.partial`;
    const s = sampler(() => (fs.existsSync(partial) ? fs.statSync(partial).size : 0));
    const quiet = { write: () => true, isTTY: false } as unknown as NodeJS.WriteStream;
    const stats = await exportToFileOrStdout(reader, parsed.query, out, {
      stdout: process.stdout,
      stderr: quiet,
    });
    const seconds = (performance.now() - t) / 1000;
    const bytes = fs.statSync(out).size;
    const m = s.stop(bytes);
    await reader.close();
    if (stats.records !== total) throw new Error(`exported ${stats.records} of ${total} records`);
    return result(phase, stats.records, seconds, m, bytes);
  }
  const jwks = await reader.publishedKeys();
  await reader.close();
  const size = fs.statSync(out).size;
  const stream = fs.createReadStream(out, { encoding: "utf8", highWaterMark: 1 << 20 });
  const s = sampler(() => stream.bytesRead);
  const report = await verifyExport(stream, { jwks });
  const m = s.stop(size);
  if (!report.ok) throw new Error(`verify failed: ${report.message}`);
  return result(phase, report.records, (performance.now() - t) / 1000, m, size);
}

function result(
  phase: string,
  records: number,
  seconds: number,
  m: { peak: number; quarters: number[]; start: number },
  bytes: number,
): PhaseResult {
  return {
    phase,
    records,
    seconds: Math.round(seconds * 100) / 100,
    recordsPerSecond: Math.round(records / seconds),
    rssStartMb: mb(m.start),
    rssPeakMb: mb(m.peak),
    rssAtQuartersMb: m.quarters.map(mb),
    bytes,
  };
}

function runChild(phase: string, dbFile: string, out: string): PhaseResult {
  const text = execFileSync(process.execPath, ["--import", "tsx", SELF, "--child", phase, dbFile, out], {
    encoding: "utf8",
    maxBuffer: 1024 * 1024,
  });
  return JSON.parse(text.trim().split("\n").at(-1)!) as PhaseResult;
}

/** Builds `n` records and measures export (JSONL, CSV) and verify; the results, one per phase. */
export function runExportBench(n: number): PhaseResult[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-export-bench-"));
  try {
    const dbFile = path.join(dir, "countersign.db");
    const t = performance.now();
    build(dbFile, n);
    console.error(`built ${n} records in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const jsonl = path.join(dir, "export.jsonl");
    return [
      runChild("export-jsonl", dbFile, jsonl),
      runChild("export-csv", dbFile, path.join(dir, "export.csv")),
      runChild("verify", dbFile, jsonl),
    ];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const argv = process.argv.slice(2);
if (process.argv[1] === SELF && argv[0] === "--child") {
  const [, phase, dbFile, out] = argv as [string, string, string, string];
  console.log(JSON.stringify(await child(phase, dbFile, out)));
} else if (process.argv[1] === SELF) {
  const n = argv[0] ? Number(argv[0]) : 100_000;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`RECORDS must be a whole number, not ${argv[0]}`);
  console.log(`node ${process.version}, ${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}, ${n} records`);
  console.log("phase         records/s   seconds   MB out   RSS start  RSS at 25/50/75/100 %      peak");
  for (const r of runExportBench(n)) {
    console.log(
      `${r.phase.padEnd(12)} ${String(r.recordsPerSecond).padStart(10)} ${r.seconds.toFixed(2).padStart(9)} ${mb(r.bytes).toFixed(1).padStart(8)} ${r.rssStartMb.toFixed(1).padStart(10)}  ${r.rssAtQuartersMb
        .map((x) => x.toFixed(1))
        .join(" / ")
        .padEnd(24)} ${r.rssPeakMb.toFixed(1).padStart(8)}`,
    );
  }
}
