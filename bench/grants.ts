/**
 * Grants: redemptions per second and their p99, through the use-case and the store
 * (Grants.redeem: the record verified against the log's key, the action held, the receipt
 * signed and chained as the log's next entry, its events and effects written) of approvals
 * already in the log, IN_FLIGHT at once as executors would send them.
 *
 * Baseline, on the same database file in the same run: a raw conditional single-row UPDATE
 * (better-sqlite3, one transaction each, prepared once), the least an executor's own
 * "consume once" store could do.
 */
import { createHash, randomBytes, randomUUID, sign } from "node:crypto";
import path from "node:path";
import { openSqlite, SqliteStore } from "../src/adapters/db/sqlite.js";
import { Grants } from "../src/app/grants.js";
import type { Policy, ReceiptClaims, RecordClaims } from "../src/domain/types.js";
import {
  generateSigningKeyPem,
  loadSigningKey,
  signReceipt,
  signRecord,
  verifyJws,
} from "../src/records/signing.js";
import { ISSUER } from "../test/support/harness.js";
import { type BenchContext, log, percentile, perSecond, type Row, removeDir, row, tempDir } from "./lib.js";
import { verdictFixture } from "./setup.js";

const IN_FLIGHT = 64;
const EXECUTOR = "bench-executor";

const POLICY = {
  issuer: ISSUER,
  agents: {},
  executors: {
    [EXECUTOR]: {
      id: EXECUTOR,
      auth: { kind: "hmac", secret_env: "X" },
      may_redeem: ["payments.*"],
      for_agents: [],
    },
  },
} as unknown as Policy;

async function redeemedReceipt(file: string, actionId: string): Promise<string | null> {
  const { raw: db } = openSqlite(file);
  try {
    const r = db.prepare("SELECT jws FROM records WHERE action_id = ? AND kind = 'redeemed'").get(actionId) as
      | { jws: string }
      | undefined;
    return r?.jws ?? null;
  } finally {
    db.close();
  }
}

/**
 * The raw parts of a redemption on the same file, with none of Countersign's code: the
 * action read with its decision (one statement), its receipts, the log's head; a receipt
 * of the same size signed with the same key and chained; the log entry, two events and two
 * outbox rows inserted, each in one statement; 64 to a transaction, as the group commit
 * does at 64 in flight. Entries are written with kind `bench` (the log keeps one entry of a
 * kind per action, and these approvals were redeemed above).
 */
function rawParts(
  db: ReturnType<typeof openSqlite>["raw"],
  key: ReturnType<typeof loadSigningKey>,
  list: readonly { id: string }[],
  warm: number,
): number {
  const read = db.prepare(
    `SELECT a.*, r.jws AS rjws, r.digest AS rdigest, r.decision_id AS rdec FROM actions a
     LEFT JOIN records r ON r.seq = a.record_seq WHERE a.id = ?`,
  );
  const receipts = db.prepare(
    "SELECT seq, kind, jws FROM records WHERE action_id = ? AND kind <> 'decision'",
  );
  const head = db.prepare("SELECT seq, digest FROM records ORDER BY seq DESC LIMIT 1");
  const entry = db.prepare(
    `INSERT INTO records (seq, action_id, decision_id, jws, digest, kid, agent_id, region, verdict, decided_at, kind, ref)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'approved', ?, 'bench', ?)`,
  );
  const events = db.prepare(
    "INSERT INTO events (action_id, agent_id, type, actor, at, data_json) VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?)",
  );
  const outbox = db.prepare(
    `INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at)
     VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
  );
  const one = (id: string) => {
    const a = read.get(id) as {
      agent_id: string;
      region: string;
      rjws: string;
      rdigest: string;
      rdec: string;
    };
    receipts.all(id);
    const h = head.get() as { seq: number; digest: string };
    const now = Date.now();
    const seq = h.seq + 1;
    const jti = `rct_${randomUUID()}`;
    const jws = signReceipt(key, {
      ver: 1,
      iss: ISSUER,
      sub: a.agent_id,
      jti,
      iat: Math.floor(now / 1000),
      seq,
      prev: h.digest,
      kind: "redeemed",
      action_id: id,
      decision: a.rdec,
      decision_sha256: a.rdigest,
      at: new Date(now).toISOString(),
      by: { executor: EXECUTOR },
    } as unknown as ReceiptClaims);
    const digest = createHash("sha256").update(jws).digest("base64url");
    entry.run(seq, id, jti, jws, digest, key.kid, a.agent_id, a.region, now, a.rdec);
    events.run(
      ...[id, a.agent_id, "redeemed", `executor:${EXECUTOR}`, now, JSON.stringify({ executor: EXECUTOR })],
      ...[
        id,
        a.agent_id,
        "receipt_issued",
        "system",
        now,
        JSON.stringify({ seq, receipt_id: jti, kind: "redeemed" }),
      ],
    );
    outbox.run(
      ...[
        id,
        "thread_note",
        `bench-note:${id}`,
        JSON.stringify({ level: 0, note: "redeemed", receipt_seq: seq }),
      ],
      ...[now, now],
      ...[id, "update_card", `bench-update:${id}`, "{}", now, now],
    );
  };
  const group = db.transaction((ids: readonly string[]) => {
    for (const id of ids) one(id);
  });
  const run = (ids: readonly string[]) => {
    for (let i = 0; i < ids.length; i += IN_FLIGHT) group.immediate(ids.slice(i, i + IN_FLIGHT));
  };
  const ids = list.map((b) => b.id);
  run(ids.slice(0, warm));
  const t0 = process.hrtime.bigint();
  run(ids.slice(warm));
  const t1 = process.hrtime.bigint();
  return perSecond(ids.length - warm, t0, t1);
}

export async function grants(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.size(10_000, 1_000);
  const key = loadSigningKey(generateSigningKeyPem());
  const dir = tempDir("grants");
  const file = path.join(dir, "countersign.db");
  log(`grants: ${n} approvals redeemed (${IN_FLIGHT} in flight), then ${n} raw conditional UPDATEs`);
  const store = new SqliteStore(file);
  try {
    await store.registerSigningKey(key.kid, key.publicJwk, Date.now());
    store.setSigner((claims) => ({ jws: signRecord(key, claims), kid: key.kid }));
    store.setReceiptSigner((claims) => ({ jws: signReceipt(key, claims), kid: key.kid }));
    const now = Date.now();
    const bodies = await Promise.all(
      Array.from({ length: n }, async () => {
        const f = verdictFixture(new Date(now));
        const r = await store.admit({
          action: f.action,
          proof: { jti: randomUUID(), exp: Math.floor(now / 1000) + 300 },
          job: null,
          maxPending: 1_000_000,
          events: [],
          effects: () => [],
          decision: { outcome: f.outcome, claims: f.claims },
          now,
        });
        return { record: r.record!.jws, request: f.action.request, id: f.action.id };
      }),
    );
    const g = new Grants({
      store,
      policy: POLICY,
      random: randomBytes,
      verifyRecord: async (jws) =>
        verifyJws(jws, [key.publicJwk], "decision+jwt").payload as unknown as RecordClaims,
    });
    const redeemAll = async (list: typeof bodies) => {
      const latencies: number[] = [];
      let next = 0;
      const lane = async () => {
        while (next < list.length) {
          const b = list[next++]!;
          const t = performance.now();
          await g.redeem(EXECUTOR, { record: b.record, request: b.request });
          latencies.push(performance.now() - t);
        }
      };
      const t0 = process.hrtime.bigint();
      await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
      const t1 = process.hrtime.bigint();
      return { rate: perSecond(list.length, t0, t1), p99: percentile(latencies, 99) };
    };
    // Warm-up on a slice, measured on the rest: each approval redeems once only.
    const warm = Math.min(200, Math.floor(n / 10));
    await redeemAll(bodies.slice(0, warm));
    const measured = bodies.slice(warm);
    const redeem = await redeemAll(measured);
    const count = store.sqlite.prepare("SELECT count(*) AS n FROM records WHERE kind = 'redeemed'").get() as {
      n: number;
    };
    if (count.n !== n) throw new Error(`benchmark: expected ${n} redeemed receipts, found ${count.n}`);
    await store.close();

    // The raw baseline, on the same file: consume-once as one conditional UPDATE per row.
    const { raw: db } = openSqlite(file);
    db.exec("ALTER TABLE actions ADD COLUMN bench_used INTEGER");
    const use = db.prepare("UPDATE actions SET bench_used = 1 WHERE id = ? AND bench_used IS NULL");
    const rawLatencies: number[] = [];
    for (const b of bodies.slice(0, warm)) use.run(b.id);
    const t0 = process.hrtime.bigint();
    for (const b of measured) {
      const t = performance.now();
      if (use.run(b.id).changes !== 1) throw new Error("benchmark: a raw UPDATE consumed nothing");
      rawLatencies.push(performance.now() - t);
    }
    const t1 = process.hrtime.bigint();
    const raw = perSecond(measured.length, t0, t1);
    const parts = rawParts(db, key, bodies, warm);
    db.close();
    // The ceiling of any redemption that signs its receipt on this thread: Ed25519 alone.
    const receipt = (await redeemedReceipt(file, bodies[0]!.id)) ?? "";
    const input = Buffer.from(receipt.slice(0, receipt.lastIndexOf(".")), "utf8");
    const s0 = process.hrtime.bigint();
    for (let i = 0; i < measured.length; i++) sign(null, input, key.privateKey);
    const s1 = process.hrtime.bigint();
    const signing = perSecond(measured.length, s0, s1);
    return [
      row({
        id: "grants.redeem_per_second",
        measure: `redemptions (Grants.redeem through the SQLite store, ${measured.length}, ${IN_FLIGHT} in flight)`,
        unit: "/s",
        value: redeem.rate,
        baseline: raw,
        baselineOf: "raw conditional single-row UPDATE, 1 tx each, same file",
        target: { kind: "ratio_min", x: 0.5 },
      }),
      row({
        id: "grants.redeem_p99",
        measure: `redemption latency p99 (${IN_FLIGHT} in flight)`,
        unit: "ms",
        value: redeem.p99,
        baseline: percentile(rawLatencies, 99),
        baselineOf: "raw conditional UPDATE p99",
      }),
      row({
        id: "grants.raw_parts",
        measure:
          "(reference) the raw parts of a redemption: the same reads, a signed chained entry, 2 events and 2 outbox rows, 64 per transaction, no Countersign code",
        unit: "/s",
        value: parts,
        baseline: raw,
        baselineOf: "raw conditional single-row UPDATE, 1 tx each, same file",
        note: "the most a redemption that writes what the log needs could reach here",
      }),
      row({
        id: "grants.redeem_vs_signing",
        measure: "(reference) the same redemptions, against raw Ed25519 signing of a receipt",
        unit: "/s",
        value: redeem.rate,
        baseline: signing,
        baselineOf: "raw Ed25519 signing, one thread",
        note: "each redemption signs its receipt in its transaction; the rest of its cost is the store's write",
      }),
    ];
  } finally {
    await store.close().catch(() => {});
    removeDir(dir);
  }
}
