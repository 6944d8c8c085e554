/**
 * Scale (issue 10): the same work on SQLite with one instance, and on PostgreSQL with 1,
 * 2 and 3 instances: real server processes (bench/server.ts) on one Redis queue prefix and
 * one PostgreSQL schema made for the configuration and dropped after it (also on Ctrl-C),
 * sharing one Slack stand-in, as instances behind a load balancer.
 *
 * For each configuration:
 * 1. Intake at full speed: N jobs added at once (addBulk), throughput from the first add
 *    to the last card posted; any instance's worker takes any job.
 * 2. Click -> job completed: M signed Approve clicks, CLICKS_IN_FLIGHT at a time (a closed
 *    loop), sent round-robin to the instances' HTTP ports as a load balancer would, each
 *    timed to its job's 'completed' event on the agent's QueueEvents. Several at once,
 *    not one at a time: one click at a time measures the path (the release measure does),
 *    while capacity is what more instances add.
 *
 * Baselines, in the same run: raw BullMQ add -> no-op worker for the same N jobs, and the
 * raw click path (signed POST -> promote a parked job -> no-op worker) with the same
 * clicks in flight. PostgreSQL rows also say how they compare with SQLite's one instance.
 *
 * On a 2-core machine the instances, Redis, PostgreSQL and the rig share two cores: more
 * instances add event loops, not CPU, and the table shows what that gives here.
 */
import type { Job } from "bullmq";
import pg from "pg";
import type { SimMessage } from "../src/simulator/slack-api.js";
import { intakeRun, type RunResult, rawRun } from "./intake.js";
import { type BenchContext, log, percentile, type Row, row, until } from "./lib.js";
import { closedLoop, completions, rawRelease } from "./release.js";
import { type Card, PG_POOL_SIZE, POSTGRES_URL, startRig } from "./rig.js";
import { benchPolicy, CHANNEL, type Submission } from "./setup.js";

/** Clicks in flight at once, whatever the number of instances, so configurations compare. */
const CLICKS_IN_FLIGHT = 8;
/** Clicks each instance gets before the clock starts, so no JIT warm-up is measured. */
const WARM_CLICKS = 5;

interface Configuration {
  /** Row id part, e.g. "pg2". */
  readonly key: string;
  readonly label: string;
  readonly store: "sqlite" | "postgres";
  readonly instances: number;
}

const CONFIGURATIONS: readonly Configuration[] = [
  { key: "sqlite1", label: "SQLite, 1 instance", store: "sqlite", instances: 1 },
  { key: "pg1", label: "PostgreSQL, 1 instance", store: "postgres", instances: 1 },
  { key: "pg2", label: "PostgreSQL, 2 instances", store: "postgres", instances: 2 },
  { key: "pg3", label: "PostgreSQL, 3 instances", store: "postgres", instances: 3 },
];

/**
 * A quick run takes one configuration, the one that exercises what the others do not:
 * PostgreSQL, several instances, clicks spread over them. SQLite with one instance is
 * the intake and release measures' own setting, and they run in every quick run.
 */
const QUICK = new Set(["pg2"]);

interface Clicks {
  readonly latencies: number[];
  /** Completed per second, from the first click to the last completion. */
  readonly perSecond: number;
  /** The server processes' CPU time per click, all instances together. */
  readonly cpuMs: number;
}

interface Measured {
  readonly intake: RunResult;
  /** The server processes' CPU time per request during the measured intake, all instances together. */
  readonly intakeCpuMs: number;
  readonly clicks: Clicks;
  /** A card as posted, for the raw click path to send a payload of its size. */
  readonly card: SimMessage | undefined;
}

async function measure(
  ctx: BenchContext,
  c: Configuration,
  sizes: { jobs: number; clicks: number },
): Promise<Measured> {
  const rig = await startRig({
    policy: benchPolicy(),
    redisUrl: ctx.redisUrl,
    store: c.store,
    instances: c.instances,
  });
  log(`scale: ${c.label}: started`);
  const done = completions(rig.events);
  try {
    // Warm-up: enough jobs that every instance's worker has taken some.
    const warm = await intakeRun(rig, (ctx.quick ? 20 : 50) * c.instances, null);
    // CPU time, beside the wall clock: on a shared machine the servers may wait for a core,
    // and CPU per request is what another instance (or another core) would have to supply.
    const cpu0 = await rig.cpuMs();
    const { result: intake, jobs } = await intakeRun(rig, sizes.jobs, null);
    const intakeCpuMs = ((await rig.cpuMs()) - cpu0) / sizes.jobs;
    log(`scale: ${c.label}: ${Math.round(intake.throughput)} req/s; clicking`);
    // Every job parked before the first click, as a request waits for its approver.
    const total = warm.jobs.length + jobs.length;
    await until(
      async () => (await rig.queue.getDelayedCount()) >= total,
      `${c.label}: every job to park`,
      60_000,
    );
    // Jobs carry request ids, cards action ids: join them through the database.
    const requestOf = await rig.requestIds();
    const cardOf = new Map<string, Card>();
    for (const card of rig.cards.values()) {
      const r = requestOf.get(card.actionId);
      if (r) cardOf.set(r, card);
    }
    const target = (j: Job) => {
      const card = cardOf.get((j.data as Submission).request.request_id);
      if (!card) throw new Error(`benchmark: ${c.label}: no card for job ${j.id}`);
      return { card, jobId: j.id! };
    };
    const click = async (j: Job, instance: number): Promise<{ t0: number; at: number }> => {
      const { card, jobId } = target(j);
      const t0 = Date.now();
      const r = await rig.approve(card, instance);
      if (r.status !== 200) {
        throw new Error(
          `benchmark: ${c.label}: the click on ${card.actionId} (instance ${instance}) was answered ${r.status}: ${r.body}`,
        );
      }
      return { t0, at: await done.wait(jobId, 30_000) };
    };
    const warmJobs = warm.jobs.slice(0, WARM_CLICKS * c.instances);
    await closedLoop(warmJobs.length, CLICKS_IN_FLIGHT, async (i) => {
      await click(warmJobs[i]!, i % c.instances);
    });
    const clicked = jobs.slice(0, sizes.clicks);
    const cpu1 = await rig.cpuMs();
    const latencies: number[] = [];
    let first = Number.POSITIVE_INFINITY;
    let last = 0;
    await closedLoop(clicked.length, CLICKS_IN_FLIGHT, async (i) => {
      // Round-robin over the instances' ports, as a load balancer spreads Slack's requests.
      const { t0, at } = await click(clicked[i]!, i % c.instances);
      latencies.push(at - t0);
      first = Math.min(first, t0);
      last = Math.max(last, at);
    });
    const clickCpuMs = ((await rig.cpuMs()) - cpu1) / clicked.length;
    return {
      intake,
      intakeCpuMs,
      clicks: {
        latencies,
        perSecond: (latencies.length * 1000) / Math.max(1, last - first),
        cpuMs: clickCpuMs,
      },
      card: rig.sim.messages(CHANNEL).find((m) => !m.thread_ts),
    };
  } finally {
    done.close();
    await rig.stop();
  }
}

/**
 * The quick set, or all; BENCH_SCALE_ONLY=pg1,pg3 picks some (to profile one without the
 * others' wait).
 */
function chosen(ctx: BenchContext): Configuration[] {
  const only = process.env.BENCH_SCALE_ONLY;
  if (!only) return CONFIGURATIONS.filter((c) => !ctx.quick || QUICK.has(c.key));
  const keys = only.split(",").map((k) => k.trim());
  const unknown = keys.filter((k) => !CONFIGURATIONS.some((c) => c.key === k));
  if (unknown.length)
    throw new Error(
      `BENCH_SCALE_ONLY: no configuration ${unknown.join(", ")}; they are ${CONFIGURATIONS.map((c) => c.key).join(", ")}`,
    );
  return CONFIGURATIONS.filter((c) => keys.includes(c.key));
}

async function postgresVersion(): Promise<string> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  try {
    await client.connect();
    return (
      (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ??
      "unknown"
    );
  } catch (e) {
    throw new Error(
      `cannot reach PostgreSQL for the scale measure (set TEST_POSTGRES_URL): ${(e as Error).message}`,
    );
  } finally {
    await client.end().catch(() => {});
  }
}

export async function scale(ctx: BenchContext): Promise<Row[]> {
  const sizes = { jobs: ctx.size(5_000, 60), clicks: ctx.size(600, 16) };
  const configurations = chosen(ctx);
  const version = configurations.some((c) => c.store === "postgres") ? await postgresVersion() : "not used";
  ctx.note(
    `scale: PostgreSQL ${version}, ${configurations.map((c) => c.label).join("; ")}; ` +
      `each instance a server process with a pool of ${PG_POOL_SIZE} connections; clicks ${CLICKS_IN_FLIGHT} in flight, ` +
      "round-robin over the instances; every instance, Redis, PostgreSQL and the rig share this machine's cores",
  );
  const results = new Map<string, Measured>();
  for (const c of configurations) {
    log(`scale: ${c.label}: ${sizes.jobs} jobs at full speed, then ${sizes.clicks} clicks`);
    results.set(c.key, await measure(ctx, c, sizes));
  }
  log("scale: raw baselines (BullMQ add -> no-op worker; signed POST -> promote -> no-op worker)");
  const rawIntake = await rawRun(ctx, sizes.jobs, null);
  const sample = [...results.values()].find((m) => m.card)?.card;
  const rawClicks = await rawRelease(ctx, sizes.clicks, sample, CLICKS_IN_FLIGHT);
  const reference = results.get("sqlite1");
  const rows: Row[] = [];
  for (const c of configurations) {
    const m = results.get(c.key)!;
    // PostgreSQL rows beside SQLite's one instance, the embedded default they replace.
    const vsSqlite = (value: number | null, ref: number | null | undefined, what: string) =>
      c.key === "sqlite1" || value === null || !ref
        ? null
        : `${(value / ref).toFixed(2)}x SQLite 1 instance's ${what}`;
    const join = (...parts: (string | null)[]) => parts.filter(Boolean).join("; ");
    const p50 = percentile(m.clicks.latencies, 50);
    const p99 = percentile(m.clicks.latencies, 99);
    rows.push(
      row({
        id: `scale.${c.key}.intake`,
        measure: `scale: intake throughput, full speed, ${c.label} (${sizes.jobs} jobs)`,
        unit: "req/s",
        value: m.intake.throughput,
        baseline: rawIntake.throughput,
        baselineOf: "raw BullMQ add -> no-op worker",
        note: join(
          `added -> card posted p99 ${Math.round(m.intake.p99)} ms`,
          `servers' CPU ${m.intakeCpuMs.toFixed(1)} ms/request`,
          vsSqlite(m.intake.throughput, reference?.intake.throughput, "throughput"),
        ),
      }),
      row({
        id: `scale.${c.key}.click_p50`,
        measure: `scale: click -> job completed, p50, ${c.label} (${sizes.clicks} clicks, ${CLICKS_IN_FLIGHT} in flight)`,
        unit: "ms",
        value: p50,
        baseline: percentile(rawClicks, 50),
        baselineOf: `raw signed POST -> promote -> no-op worker, ${CLICKS_IN_FLIGHT} in flight`,
        note: join(
          `${Math.round(m.clicks.perSecond)} clicks/s completed`,
          `servers' CPU ${m.clicks.cpuMs.toFixed(1)} ms/click`,
          vsSqlite(m.clicks.perSecond, reference?.clicks.perSecond, "clicks/s"),
        ),
      }),
      row({
        id: `scale.${c.key}.click_p99`,
        measure: `scale: click -> job completed, p99, ${c.label}`,
        unit: "ms",
        value: p99,
        baseline: percentile(rawClicks, 99),
        baselineOf: `raw signed POST -> promote -> no-op worker, ${CLICKS_IN_FLIGHT} in flight`,
        note: join(vsSqlite(p99, percentile(reference?.clicks.latencies ?? [], 99), "p99")),
      }),
    );
  }
  return rows;
}
