/**
 * Intake: jobs added to the queue, each routed, persisted and its card posted to the
 * Slack stand-in. Throughput at full speed, and job added -> card posted at 200 req/s and
 * at full speed. Baseline: the same jobs added the same way into a no-op BullMQ worker on
 * the same Redis, with the intake worker's concurrency.
 */
import { type Job, Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { type BenchContext, log, newPrefix, percentile, type Row, row, sleep, until } from "./lib.js";
import { startRig } from "./rig.js";
import { benchPolicy, dropPrefix, type Submission, submissions } from "./setup.js";

/** The intake worker's concurrency in src/adapters/queue/intake.ts. */
const CONCURRENCY = 64;
const RATE = 200;

interface RunResult {
  readonly n: number;
  /** Completed per second, from the first add to the last completion. */
  readonly throughput: number;
  /** Jobs added per second, as achieved. */
  readonly addRate: number;
  readonly p50: number;
  readonly p99: number;
}

/** Adds every submission, at `rate` per second or (null) as fast as addBulk goes. */
async function addAll(queue: Queue, subs: readonly Submission[], rate: number | null): Promise<Job[]> {
  if (rate === null) {
    const jobs: Job[] = [];
    for (let i = 0; i < subs.length; i += 500) {
      const batch = subs.slice(i, i + 500).map((s) => ({ name: "approval", data: s }));
      jobs.push(...(await queue.addBulk(batch)));
    }
    return jobs;
  }
  // Paced against the start time, so a late timer is followed by catching up, not by drift.
  const pending: Promise<Job>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < subs.length; i++) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait > 1) await sleep(wait);
    pending.push(queue.add("approval", subs[i]));
  }
  return Promise.all(pending);
}

function summarise(jobs: readonly Job[], doneAt: ReadonlyMap<string, number>): RunResult {
  const latencies: number[] = [];
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  let lastAdd = 0;
  for (const j of jobs) {
    const at = doneAt.get(j.id!);
    if (at === undefined) throw new Error(`benchmark: job ${j.id} has no completion time`);
    latencies.push(at - j.timestamp);
    first = Math.min(first, j.timestamp);
    lastAdd = Math.max(lastAdd, j.timestamp);
    last = Math.max(last, at);
  }
  return {
    n: jobs.length,
    throughput: (jobs.length * 1000) / Math.max(1, last - first),
    addRate: (jobs.length * 1000) / Math.max(1, lastAdd - first),
    p50: percentile(latencies, 50)!,
    p99: percentile(latencies, 99)!,
  };
}

/** Raw BullMQ: the same payloads into a worker that does nothing. */
async function rawRun(ctx: BenchContext, n: number, rate: number | null): Promise<RunResult> {
  const redis = new Redis(ctx.redisUrl, { maxRetriesPerRequest: null });
  const prefix = newPrefix();
  const name = "raw-intake";
  const doneAt = new Map<string, number>();
  const queue = new Queue(name, { connection: redis, prefix });
  const worker = new Worker(
    name,
    async (job) => {
      doneAt.set(job.id!, Date.now());
    },
    { connection: redis, prefix, concurrency: CONCURRENCY },
  );
  try {
    await worker.waitUntilReady();
    const warm = await addAll(queue, await submissions(50), null);
    await until(() => warm.every((j) => doneAt.has(j.id!)), "the raw worker's warm-up jobs", 30_000);
    const subs = await submissions(n);
    const jobs = await addAll(queue, subs, rate);
    await until(() => jobs.every((j) => doneAt.has(j.id!)), `${n} raw jobs`, 60_000 + n * 20);
    return summarise(jobs, doneAt);
  } finally {
    await worker.close();
    await queue.close();
    await dropPrefix(redis, prefix, [name]);
    redis.disconnect();
  }
}

/** Countersign: card posted for every job, timed by the stand-in's answer to chat.postMessage. */
async function productRuns(
  ctx: BenchContext,
  sizes: { fixed: number; full: number },
): Promise<{ fixed: RunResult; full: RunResult }> {
  const rig = await startRig({ policy: benchPolicy(), redisUrl: ctx.redisUrl });
  let seen = 0;
  const run = async (n: number, rate: number | null): Promise<RunResult> => {
    const subs = await submissions(n);
    const jobs = await addAll(rig.queue, subs, rate);
    await until(() => rig.cards.size >= seen + n, `cards for ${n} requests`, 60_000 + n * 50);
    seen += n;
    // Jobs carry request ids, cards action ids: the database joins them once the clock has stopped.
    const requestOf = rig.db().prepare("SELECT request_id AS r FROM actions WHERE id = ?");
    const cardAt = new Map<string, number>();
    for (const c of rig.cards.values()) {
      const r = requestOf.get(c.actionId) as { r: string } | undefined;
      if (r) cardAt.set(r.r, c.at);
    }
    const doneAt = new Map<string, number>();
    for (const j of jobs) {
      const at = cardAt.get((j.data as Submission).request.request_id);
      if (at !== undefined) doneAt.set(j.id!, at);
    }
    return summarise(jobs, doneAt);
  };
  try {
    await run(50, null);
    const fixed = await run(sizes.fixed, RATE);
    const full = await run(sizes.full, null);
    return { fixed, full };
  } finally {
    await rig.stop();
  }
}

export async function intake(ctx: BenchContext): Promise<Row[]> {
  const sizes = { fixed: ctx.size(4_000, 200), full: ctx.size(5_000, 300) };
  log(`intake: Countersign, ${sizes.fixed} jobs at ${RATE}/s then ${sizes.full} at full speed`);
  const product = await productRuns(ctx, sizes);
  log("intake: raw BullMQ baseline");
  const rawFixed = await rawRun(ctx, sizes.fixed, RATE);
  const rawFull = await rawRun(ctx, sizes.full, null);
  const p = product;
  const base = "raw BullMQ add -> no-op worker";
  return [
    row({
      id: "intake.throughput",
      measure: `intake throughput, full speed (${sizes.full} jobs)`,
      unit: "req/s",
      value: p.full.throughput,
      baseline: rawFull.throughput,
      baselineOf: base,
      target: { kind: "ratio_min", x: 0.5 },
    }),
    row({
      id: "intake.card_p50_fixed",
      measure: `job added -> card posted, p50 at ${RATE} req/s (${sizes.fixed} jobs)`,
      unit: "ms",
      value: p.fixed.p50,
      baseline: rawFixed.p50,
      baselineOf: "added -> processed",
    }),
    row({
      id: "intake.card_p99_fixed",
      measure: `job added -> card posted, p99 at ${RATE} req/s`,
      unit: "ms",
      value: p.fixed.p99,
      baseline: rawFixed.p99,
      baselineOf: "added -> processed",
      target: { kind: "max", v: 20 },
      note: `achieved add rate ${p.fixed.addRate.toFixed(0)}/s`,
    }),
    row({
      id: "intake.card_p50_full",
      measure: "job added -> card posted, p50 at full speed",
      unit: "ms",
      value: p.full.p50,
      baseline: rawFull.p50,
      baselineOf: "added -> processed",
    }),
    row({
      id: "intake.card_p99_full",
      measure: "job added -> card posted, p99 at full speed",
      unit: "ms",
      value: p.full.p99,
      baseline: rawFull.p99,
      baselineOf: "added -> processed",
      note: "queueing: every job is added at once",
    }),
  ];
}
