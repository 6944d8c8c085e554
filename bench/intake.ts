/**
 * Intake: jobs added to the queue, each routed, persisted and its card posted to the
 * Slack stand-in. Throughput at full speed, and job added -> card posted at 200 req/s and
 * at full speed. Baseline: the same jobs added the same way into a no-op BullMQ worker on
 * the same Redis, with the intake worker's concurrency.
 *
 * The floor, beside them: the raw parts one request needs with no Countersign code
 * (bench/floor.ts: park the job, one SQLite transaction, one chat.postMessage), the same
 * jobs added the same way. It says what fraction of raw BullMQ the parts alone reach,
 * and so what share of the gap is Countersign's own.
 */
import { fork } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type Job, Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { SlackApiSim, type SlackCall } from "../src/simulator/slack-api.js";
import { BOT_TOKEN, TEAM, USERS } from "../test/support/harness.js";
import type { FloorSpec, FromFloor } from "./floor.js";
import {
  type BenchContext,
  childMessage,
  log,
  newPrefix,
  percentile,
  postedCardAction,
  type Row,
  removeDir,
  row,
  sleep,
  tempDir,
  trackChild,
  until,
} from "./lib.js";
import { type Rig, startRig } from "./rig.js";
import { benchPolicy, CHANNEL, dropPrefix, type Submission, submissions } from "./setup.js";

/** How errors name the floor process. */
const FLOOR_NAME = "benchmark: the floor process";

/** The intake worker's concurrency in src/adapters/queue/intake.ts. */
const CONCURRENCY = 64;
const RATE = 200;
const FLOOR = path.join(path.dirname(fileURLToPath(import.meta.url)), "floor.ts");

export interface RunResult {
  readonly n: number;
  /** Completed per second, from the first add to the last completion. */
  readonly throughput: number;
  /** Jobs added per second, as achieved. */
  readonly addRate: number;
  readonly p50: number;
  readonly p99: number;
}

/** Adds every submission, at `rate` per second or (null) as fast as addBulk goes. */
export async function addAll(queue: Queue, subs: readonly Submission[], rate: number | null): Promise<Job[]> {
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

export function summarise(jobs: readonly Job[], doneAt: ReadonlyMap<string, number>): RunResult {
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
export async function rawRun(ctx: BenchContext, n: number, rate: number | null): Promise<RunResult> {
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

/**
 * Adds n jobs to the rig's server(s), at `rate` or at full speed, and waits for every
 * card: throughput and job added -> card posted, timed by the stand-in's answer to
 * chat.postMessage. The jobs come back for callers that go on to click their cards.
 */
export async function intakeRun(
  rig: Rig,
  n: number,
  rate: number | null,
): Promise<{ result: RunResult; jobs: Job[] }> {
  const before = rig.cards.size;
  const subs = await submissions(n);
  const jobs = await addAll(rig.queue, subs, rate);
  await until(() => rig.cards.size >= before + n, `cards for ${n} requests`, 60_000 + n * 50);
  // Jobs carry request ids, cards action ids: the database joins them once the clock has stopped.
  const requestOf = await rig.requestIds();
  const cardAt = new Map<string, number>();
  for (const c of rig.cards.values()) {
    const r = requestOf.get(c.actionId);
    if (r) cardAt.set(r, c.at);
  }
  const doneAt = new Map<string, number>();
  for (const j of jobs) {
    const at = cardAt.get((j.data as Submission).request.request_id);
    if (at !== undefined) doneAt.set(j.id!, at);
  }
  return { result: summarise(jobs, doneAt), jobs };
}

/** Countersign: a warm-up, then the paced run and the full-speed run on one server. */
async function productRuns(
  ctx: BenchContext,
  sizes: { fixed: number; full: number },
): Promise<{ fixed: RunResult; full: RunResult; cpuMs: number; card: FloorSpec["card"] }> {
  const rig = await startRig({ policy: benchPolicy(), redisUrl: ctx.redisUrl });
  try {
    await intakeRun(rig, 50, null);
    const fixed = (await intakeRun(rig, sizes.fixed, RATE)).result;
    const cpu0 = await rig.cpuMs();
    const full = (await intakeRun(rig, sizes.full, null)).result;
    // The server's CPU per request, to set beside the floor's: a shared machine moves
    // the rates, much less the CPU each request costs.
    const cpuMs = ((await rig.cpuMs()) - cpu0) / sizes.full;
    const m = rig.sim.messages(CHANNEL).find((x) => !x.thread_ts);
    if (!m?.blocks)
      throw new Error("benchmark: the product posted no card with blocks to copy for the floor");
    return { fixed, full, cpuMs, card: { text: m.text, blocks: m.blocks } };
  } finally {
    await rig.stop();
  }
}

/**
 * The floor (bench/floor.ts) in a process of its own, the stand-in here as for the
 * product: a warm-up, then n jobs at full speed, timed to each card's post.
 */
async function floorRun(
  ctx: BenchContext,
  sizes: { fixed: number; full: number },
  card: FloorSpec["card"],
): Promise<{ fixed: RunResult; result: RunResult; floorCpuMs: number; standInCpuMs: number }> {
  const dir = tempDir("floor");
  const redis = new Redis(ctx.redisUrl, { maxRetriesPerRequest: null });
  const prefix = newPrefix();
  const name = "floor-intake";
  const sim = await SlackApiSim.start({ botToken: BOT_TOKEN, teamId: TEAM, users: USERS });
  const postedAt = new Map<string, number>();
  const unsubscribe = sim.subscribe((c: SlackCall) => {
    const id = postedCardAction(c);
    if (id) postedAt.set(id, c.at);
    sim.calls.length = 0;
  });
  const spec: FloorSpec = {
    redisUrl: ctx.redisUrl,
    prefix,
    queue: name,
    concurrency: CONCURRENCY,
    dbFile: path.join(dir, "floor.db"),
    slackUrl: sim.url,
    botToken: BOT_TOKEN,
    channel: CHANNEL,
    card,
  };
  const child = fork(FLOOR, [JSON.stringify(spec)], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  trackChild(child);
  const queue = new Queue(name, { connection: redis, prefix });
  try {
    await childMessage<FromFloor, "ready">(child, "ready", 60_000, FLOOR_NAME);
    const run = async (count: number, rate: number | null) => {
      const jobs = await addAll(queue, await submissions(count), rate);
      const actionOf = (j: Job) => `act_floor_${(j.data as Submission).request.request_id}`;
      await until(
        () => jobs.every((j) => postedAt.has(actionOf(j))),
        `${count} floor cards`,
        60_000 + count * 50,
      );
      return summarise(jobs, new Map(jobs.map((j) => [j.id!, postedAt.get(actionOf(j))!])));
    };
    await run(50, null);
    // Paced as the product's run is: the latency the raw parts alone have at this rate.
    const fixed = await run(sizes.fixed, RATE);
    // CPU per request of the floor's process and of this one (the stand-in, the adds): on
    // a shared machine it shows whether the floor is its own limit or the stand-in's.
    const cpu = async () => {
      const reply = childMessage<FromFloor, "cpu">(child, "cpu", 10_000, FLOOR_NAME);
      if (child.connected) child.send({ type: "cpu" });
      const own = process.cpuUsage();
      return { floor: (await reply).micros / 1000, here: (own.user + own.system) / 1000 };
    };
    const before = await cpu();
    const result = await run(sizes.full, null);
    const after = await cpu();
    return {
      fixed,
      result,
      floorCpuMs: (after.floor - before.floor) / sizes.full,
      standInCpuMs: (after.here - before.here) / sizes.full,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const stopped = new Promise<void>((r) => child.once("exit", () => r()));
      if (child.connected) child.send({ type: "stop" }, () => {});
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await stopped;
      clearTimeout(killer);
    }
    unsubscribe();
    await sim.close();
    await queue.close();
    await dropPrefix(redis, prefix, [name]);
    redis.disconnect();
    removeDir(dir);
  }
}

export async function intake(ctx: BenchContext): Promise<Row[]> {
  const sizes = { fixed: ctx.size(4_000, 200), full: ctx.size(5_000, 300) };
  log(`intake: Countersign, ${sizes.fixed} jobs at ${RATE}/s then ${sizes.full} at full speed`);
  const product = await productRuns(ctx, sizes);
  log("intake: raw BullMQ baseline");
  const rawFixed = await rawRun(ctx, sizes.fixed, RATE);
  const rawFull = await rawRun(ctx, sizes.full, null);
  log("intake: the floor (park + one SQLite transaction + one chat.postMessage, no Countersign code)");
  const floor = await floorRun(ctx, sizes, product.card);
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
      note: `server CPU ${p.cpuMs.toFixed(1)} ms/request`,
    }),
    row({
      id: "intake.floor",
      measure: `(floor) the raw parts of one request, full speed (${sizes.full} jobs)`,
      unit: "req/s",
      value: floor.result.throughput,
      baseline: rawFull.throughput,
      baselineOf: base,
      note:
        "BullMQ park + 1 SQLite tx of 7 rows + 1 chat.postMessage, no Countersign code; " +
        `CPU ${floor.floorCpuMs.toFixed(1)} ms/request, the stand-in's process ${floor.standInCpuMs.toFixed(1)} ms`,
    }),
    row({
      id: "intake.vs_floor",
      measure: "intake throughput against the floor",
      unit: "req/s",
      value: p.full.throughput,
      baseline: floor.result.throughput,
      baselineOf: "the floor: the raw parts alone",
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
      id: "intake.card_p99_fixed_vs_floor",
      measure: `job added -> card posted, p99 at ${RATE} req/s, against the floor`,
      unit: "ms",
      value: p.fixed.p99,
      baseline: floor.fixed.p99,
      baselineOf: `the floor at ${RATE} req/s (p50 ${floor.fixed.p50} ms): the raw parts alone`,
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
