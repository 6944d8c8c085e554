/**
 * Pending at scale, with the server in a process of its own (bench/server.ts) so its RSS
 * is its own:
 *
 * 1. The server's RSS once N requests wait for a verdict (each routed, its card posted,
 *    its job parked in BullMQ's delayed set, its deadline timer scheduled). Baseline: the
 *    same server's RSS at rest, before the first request.
 * 2. How late K deadlines expire when they all fall due at once: lateness is the
 *    'expired' event's time minus the deadline stored on the action. To make the
 *    deadlines one instant, the route's business hours open at a minute boundary after
 *    the last request is in, and the level's timeout is 1 s of working time. Baseline: K
 *    raw BullMQ delayed jobs due at one instant, into a no-op worker with the timer
 *    worker's concurrency.
 */
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { generateSigningKeyPem, loadSigningKey } from "../src/records/signing.js";
import { type BenchContext, log, newPrefix, percentile, type Row, row, sleep, until } from "./lib.js";
import { rawInserts, rawSigning } from "./records.js";
import { type Rig, startRig } from "./rig.js";
import { benchPolicy, dropPrefix, submissions } from "./setup.js";

/** The timer worker's concurrency in src/adapters/queue/timers.ts. */
const TIMER_CONCURRENCY = 32;
/** Jobs added per addBulk; proofs are minted just before, as they live 5 minutes. */
const CHUNK = 1_000;
const MB = 2 ** 20;

async function submitAll(rig: Rig, n: number, what: string): Promise<void> {
  for (let i = 0; i < n; i += CHUNK) {
    const subs = await submissions(Math.min(CHUNK, n - i));
    await rig.queue.addBulk(subs.map((s) => ({ name: "approval", data: s })));
    // Keep the queue's backlog bounded, so proofs are never minted long before they are read.
    await until(() => rig.cards.size >= i - 5 * CHUNK, `${what}: cards to keep up`, 600_000);
    if (i > 0 && i % (10 * CHUNK) === 0) log(`pending: ${what}: ${i} added, ${rig.cards.size} cards posted`);
  }
}

async function rssAtScale(
  ctx: BenchContext,
  n: number,
): Promise<{
  idle: number;
  loaded: number;
  heap: number;
  afterGc: { rss: number; heapUsed: number };
  rate: number;
}> {
  const rig = await startRig({ policy: benchPolicy(), redisUrl: ctx.redisUrl });
  try {
    await sleep(1_000);
    const rest = await rig.rss();
    log(`pending: server at rest: ${(rest.rss / MB).toFixed(0)} MB: ${rest.detail}`);
    const idle = rest.rss;
    const t0 = Date.now();
    await submitAll(rig, n, `${n} pending`);
    await until(() => rig.cards.size >= n, `${n} cards`, 120_000 + n * 20);
    await until(async () => (await rig.queue.getDelayedCount()) >= n, `${n} parked jobs`, 120_000);
    const rate = (n * 1000) / (Date.now() - t0);
    // A moment for the last effects and the allocator to settle, as on a server left alone.
    await sleep(3_000);
    const m = await rig.rss();
    const afterGc = await rig.rss({ gc: true });
    log(`pending: server with ${n} pending: ${(m.rss / MB).toFixed(0)} MB: ${m.detail}`);
    log(`pending: the same after a full GC: ${(afterGc.rss / MB).toFixed(0)} MB: ${afterGc.detail}`);
    return { idle, loaded: m.rss, heap: m.heapUsed, afterGc, rate };
  } finally {
    await rig.stop();
  }
}

/** The next UTC minute boundary at least `aheadMs` from now, as "HH:MM". */
function minuteAfter(aheadMs: number): { hhmm: string; at: number } {
  const at = Math.ceil((Date.now() + aheadMs) / 60_000) * 60_000;
  const d = new Date(at);
  return {
    hhmm: `${String(d.getUTCHours()).padStart(2, "0")}:${String(d.getUTCMinutes()).padStart(2, "0")}`,
    at,
  };
}

interface Lateness {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** max - min of the deadlines: 0 when they truly fell due at once. */
  readonly spread: number;
}

async function expiryLateness(ctx: BenchContext, k: number, intakeRate: number | null): Promise<Lateness> {
  // Quick runs cannot wait for a minute boundary: their deadlines are 3 s after each
  // request instead, spread over the intake, which the spread column shows.
  let policy: string;
  let opensAt: number | null = null;
  if (ctx.quick) policy = benchPolicy({ timeout: "3s" });
  else {
    // Without the RSS half to measure it, BENCH_PENDING_RATE says what intake to expect (req/s).
    const rate = intakeRate ?? Number(process.env.BENCH_PENDING_RATE ?? 150);
    const expectedMs = (k * 1000) / Math.max(10, rate * 0.6);
    const o = minuteAfter(expectedMs + 20_000);
    opensAt = o.at;
    policy = benchPolicy({ timeout: "1s", opensAt: o.hhmm });
    log(`pending: ${k} deadlines will fall due at ${new Date(o.at + 1000).toISOString()}`);
  }
  const rig = await startRig({ policy, redisUrl: ctx.redisUrl });
  try {
    await submitAll(rig, k, `${k} deadlines`);
    const db = rig.db();
    const decided = db.prepare("SELECT count(*) AS n FROM actions WHERE status = 'decided'");
    const waitMs = (opensAt ? Math.max(0, opensAt - Date.now()) : 0) + 120_000 + k * 10;
    await until(() => (decided.get() as { n: number }).n >= k, `${k} deadlines to expire`, waitMs);
    const rows = db
      .prepare(
        `SELECT a.deadline_at AS deadline, a.requested_at AS requested, e.at AS expired
         FROM actions a JOIN events e ON e.action_id = a.id AND e.type = 'expired'`,
      )
      .all() as { deadline: number; requested: number; expired: number }[];
    if (rows.length !== k)
      throw new Error(`benchmark: ${rows.length} of ${k} requests expired; the rest were decided otherwise`);
    if (opensAt !== null) {
      const late = rows.filter((r) => r.requested >= opensAt).length;
      if (late)
        ctx.note(
          `${late} of ${k} requests were admitted after the hours opened; their deadlines are their own`,
        );
    }
    const lateness = rows.map((r) => r.expired - r.deadline);
    const deadlines = rows.map((r) => r.deadline);
    return {
      p50: percentile(lateness, 50)!,
      p99: percentile(lateness, 99)!,
      max: Math.max(...lateness),
      spread: Math.max(...deadlines) - Math.min(...deadlines),
    };
  } finally {
    await rig.stop();
  }
}

async function rawLateness(ctx: BenchContext, k: number): Promise<Lateness> {
  const redis = new Redis(ctx.redisUrl, { maxRetriesPerRequest: null });
  const prefix = newPrefix();
  const name = "raw-timers";
  const queue = new Queue(name, { connection: redis, prefix });
  const lateness: number[] = [];
  const worker = new Worker(
    name,
    async (job) => {
      lateness.push(Date.now() - (job.timestamp + (job.opts.delay ?? 0)));
    },
    { connection: redis, prefix, concurrency: TIMER_CONCURRENCY },
  );
  try {
    await worker.waitUntilReady();
    const due = Date.now() + 5_000 + k / 2;
    for (let i = 0; i < k; i += CHUNK) {
      const now = Date.now();
      await queue.addBulk(
        Array.from({ length: Math.min(CHUNK, k - i) }, (_, j) => ({
          name: "deadline",
          data: { actionId: `act_${i + j}`, level: 0 },
          opts: { delay: due - now, timestamp: now, removeOnComplete: true },
        })),
      );
    }
    if (Date.now() >= due) throw new Error("benchmark: raw timers were still being added when they fell due");
    await until(() => lateness.length >= k, `${k} raw timers`, 120_000 + k * 10);
    return {
      p50: percentile(lateness, 50)!,
      p99: percentile(lateness, 99)!,
      max: Math.max(...lateness),
      spread: 0,
    };
  } finally {
    await worker.close();
    await queue.close();
    await dropPrefix(redis, prefix, [name]);
    redis.disconnect();
  }
}

/**
 * The least time one thread needs to expire k requests at once, with nothing found, fired
 * or released: each verdict signed in chain order and the rows written 100 per
 * transaction (the records measure's raw parts, at this k).
 */
async function expiryFloorMs(k: number): Promise<number> {
  const key = loadSigningKey(generateSigningKeyPem());
  rawSigning(key, 500);
  await rawInserts(key, 200, 100);
  return (k / rawSigning(key, k) + k / (await rawInserts(key, k, 100))) * 1000;
}

export async function pending(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.size(100_000, 2_000);
  const k = ctx.size(10_000, 500);
  // BENCH_PENDING_PARTS=expiry (or rss) takes one half alone, for profiling either.
  const parts = process.env.BENCH_PENDING_PARTS?.split(",") ?? ["rss", "expiry"];
  const rows: Row[] = [];
  let rate: number | null = null;
  if (parts.includes("rss")) {
    log(`pending: RSS with ${n} pending requests`);
    const rss = await rssAtScale(ctx, n);
    rate = rss.rate;
    rows.push(
      row({
        id: "pending.rss",
        measure: `server RSS with ${n.toLocaleString("en-US")} pending`,
        unit: "MB",
        value: rss.loaded / MB,
        baseline: rss.idle / MB,
        baselineOf: "the same server at rest",
        target: { kind: "max", v: 250 },
        note:
          `heap ${(rss.heap / MB).toFixed(0)} MB; after a full GC ${(rss.afterGc.rss / MB).toFixed(0)} MB, ` +
          `heap ${(rss.afterGc.heapUsed / MB).toFixed(0)} MB; intake ${rss.rate.toFixed(0)} req/s on the way`,
      }),
    );
  }
  if (!parts.includes("expiry")) return rows;
  log(`pending: ${k} deadlines due at once`);
  const late = await expiryLateness(ctx, k, rate);
  log("pending: raw BullMQ delayed-job baseline");
  const base = await rawLateness(ctx, k);
  log("pending: the one-thread floor of the expiries (sign, then write at 100 per transaction)");
  const floorMs = await expiryFloorMs(k);
  return [
    ...rows,
    row({
      id: "pending.lateness_p50",
      measure: `expiry lateness, p50 (${k.toLocaleString("en-US")} due at once)`,
      unit: "ms",
      value: late.p50,
      baseline: base.p50,
      baselineOf: "raw BullMQ delayed jobs, one instant",
      note: `deadlines spread over ${late.spread} ms`,
    }),
    row({
      id: "pending.lateness_p99",
      measure: "expiry lateness, p99",
      unit: "ms",
      value: late.p99,
      baseline: base.p99,
      baselineOf: "raw BullMQ delayed jobs, one instant",
      target: { kind: "max", v: 1000 },
      note: `max ${late.max} ms`,
    }),
    row({
      id: "pending.lateness_p99_vs_floor",
      measure: "expiry lateness, p99, against the one-thread floor",
      unit: "ms",
      value: late.p99,
      baseline: floorMs,
      baselineOf: `${k.toLocaleString("en-US")} verdicts signed, then written 100 per transaction, one thread`,
      target: { kind: "ratio_max", x: 1.5 },
    }),
  ];
}
