/**
 * Release: from a signed click on a card to the agent's job completed (BullMQ's
 * 'completed' event, as an agent's QueueEvents sees it), and to the webhook received.
 * Clicks go one at a time, each waiting for its job, so the numbers are the path's own
 * latency rather than a queue's.
 *
 * Baseline: the same building blocks without Countersign in between: a signed form POST
 * of a card's size to a bare HTTP server that checks the signature and promotes a parked
 * (delayed) job into a no-op worker, timed to the same 'completed' event.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Job, Queue, QueueEvents, Worker } from "bullmq";
import { Redis } from "ioredis";
import { sendSigned } from "../src/simulator/interactions.js";
import type { SimMessage } from "../src/simulator/slack-api.js";
import { SIGNING_SECRET } from "../test/support/harness.js";
import { type BenchContext, log, newPrefix, percentile, type Row, row, sleep, until } from "./lib.js";
import { type Rig, startRig } from "./rig.js";
import { benchPolicy, CHANNEL, dropPrefix, type Submission, submissions } from "./setup.js";

interface Latencies {
  readonly complete: number[];
  readonly webhook: number[];
}

/** A receiver for the agent's webhooks: arrival time by action id. */
async function webhookReceiver(): Promise<{
  origin: string;
  at: Map<string, number>;
  close(): Promise<void>;
}> {
  const at = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const now = Date.now();
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { data?: { action_id?: string } };
        if (body.data?.action_id) at.set(body.data.action_id, now);
      } catch {
        // Not ours to judge here: the latency is only taken for well-formed deliveries.
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    at,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

async function product(
  ctx: BenchContext,
  n: number,
): Promise<{ lat: Latencies; wired: boolean; sample: SimMessage | undefined }> {
  const hooks = await webhookReceiver();
  // The agent may always call back here; requests ask for it only when the outbox can send it.
  const rig: Rig = await startRig({
    policy: benchPolicy({ callbackOrigin: hooks.origin }),
    redisUrl: ctx.redisUrl,
  });
  const wired = rig.webhookWired;
  const completedAt = new Map<string, number>();
  const onCompleted = ({ jobId }: { jobId: string }) => completedAt.set(jobId, Date.now());
  rig.events.on("completed", onCompleted);
  try {
    const warm = 10;
    const subs = await submissions(n + warm, wired ? { callback_url: `${hooks.origin}/hook` } : {});
    const jobs = await rig.queue.addBulk(subs.map((s) => ({ name: "approval", data: s })));
    await until(() => rig.cards.size >= subs.length, `cards for ${subs.length} requests`, 60_000 + n * 50);
    // Let the intake settle: every job parked in the delayed set before the first click.
    await until(async () => (await rig.queue.getDelayedCount()) >= subs.length, "every job to park", 30_000);
    const jobOf = new Map(jobs.map((j) => [(j.data as Submission).request.request_id, j.id!]));
    const requestOf = rig.db().prepare("SELECT request_id AS r FROM actions WHERE id = ?");
    const lat: Latencies = { complete: [], webhook: [] };
    let i = 0;
    for (const card of rig.cards.values()) {
      const rid = (requestOf.get(card.actionId) as { r: string }).r;
      const jobId = jobOf.get(rid)!;
      const t0 = Date.now();
      const r = await rig.approve(card);
      if (r.status !== 200)
        throw new Error(`benchmark: the click on ${card.actionId} was answered ${r.status}: ${r.body}`);
      await until(() => completedAt.has(jobId), `job ${jobId} to complete after its click`, 15_000);
      if (wired) await until(() => hooks.at.has(card.actionId), `the webhook for ${card.actionId}`, 15_000);
      if (i++ >= warm) {
        lat.complete.push(completedAt.get(jobId)! - t0);
        if (wired) lat.webhook.push(hooks.at.get(card.actionId)! - t0);
      }
      // A pause between clicks keeps each one's outbox work from overlapping the next.
      await sleep(10);
    }
    // A card (not a thread note): the raw baseline posts a payload of its size.
    return { lat, wired, sample: rig.sim.messages(CHANNEL).find((m) => !m.thread_ts) };
  } finally {
    rig.events.off("completed", onCompleted);
    await rig.stop();
    await hooks.close();
  }
}

/**
 * Waits for BullMQ 'completed' events by job id, by event rather than by polling, so
 * several clicks in flight are not held up by a poll interval: the time each job
 * completed, as the agent's QueueEvents saw it.
 */
export function completions(events: QueueEvents): {
  wait(jobId: string, ms: number): Promise<number>;
  close(): void;
} {
  const at = new Map<string, number>();
  const waiting = new Map<string, (t: number) => void>();
  const onCompleted = ({ jobId }: { jobId: string }) => {
    const t = Date.now();
    at.set(jobId, t);
    waiting.get(jobId)?.(t);
  };
  events.on("completed", onCompleted);
  return {
    wait(jobId, ms) {
      const seen = at.get(jobId);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(jobId);
          reject(new Error(`benchmark: job ${jobId} did not complete within ${ms} ms of its click`));
        }, ms);
        waiting.set(jobId, (t) => {
          clearTimeout(timer);
          waiting.delete(jobId);
          resolve(t);
        });
      });
    },
    close() {
      events.off("completed", onCompleted);
    },
  };
}

/**
 * Runs `n` tasks with `inFlight` of them running at any time (a closed loop: each worker
 * starts its next task when its last one is done), in task order.
 */
export async function closedLoop(
  n: number,
  inFlight: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(n, inFlight) }, worker));
}

/**
 * The raw path: signed POST -> verify -> promote a delayed job -> no-op worker ->
 * 'completed'. One click at a time (as the release measure goes), or `inFlight` at once.
 */
export async function rawRelease(
  ctx: BenchContext,
  n: number,
  sample: SimMessage | undefined,
  inFlight = 1,
): Promise<number[]> {
  const redis = new Redis(ctx.redisUrl, { maxRetriesPerRequest: null });
  const prefix = newPrefix();
  const name = "raw-release";
  const queue = new Queue(name, { connection: redis, prefix });
  const eventsConnection = redis.duplicate();
  const events = new QueueEvents(name, { connection: eventsConnection, prefix });
  const worker = new Worker(name, async () => ({ ok: true }), { connection: redis, prefix, concurrency: 64 });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const ts = String(req.headers["x-slack-request-timestamp"]);
      const want = Buffer.from(
        `v0=${createHmac("sha256", SIGNING_SECRET).update(`v0:${ts}:${body}`).digest("hex")}`,
      );
      const got = Buffer.from(String(req.headers["x-slack-signature"]));
      if (want.length !== got.length || !timingSafeEqual(want, got)) {
        res.writeHead(401).end();
        return;
      }
      const payload = JSON.parse(new URLSearchParams(body).get("payload") ?? "{}") as { job?: string };
      void Job.fromId(queue, payload.job ?? "")
        .then((job) => job?.promote())
        .then(() => res.writeHead(200).end());
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
  const done = completions(events);
  try {
    await events.waitUntilReady();
    await worker.waitUntilReady();
    const warm = 10;
    const subs = await submissions(n + warm);
    const jobs = await queue.addBulk(
      subs.map((s) => ({ name: "approval", data: s, opts: { delay: 3_600_000 } })),
    );
    const click = async (job: Job): Promise<number> => {
      const t0 = Date.now();
      const r = await sendSigned(
        "interaction",
        { type: "block_actions", job: job.id, message: sample ?? {} },
        { url, signingSecret: SIGNING_SECRET },
      );
      if (r.status !== 200) throw new Error(`benchmark: the raw release server answered ${r.status}`);
      return (await done.wait(job.id!, 15_000)) - t0;
    };
    for (const job of jobs.slice(0, warm)) await click(job);
    const out: number[] = [];
    const measured = jobs.slice(warm);
    await closedLoop(measured.length, inFlight, async (i) => {
      out.push(await click(measured[i]!));
      // One at a time, a pause between clicks, as the product's release measure has.
      if (inFlight === 1) await sleep(10);
    });
    return out;
  } finally {
    done.close();
    await new Promise<void>((r) => server.close(() => r()));
    await worker.close();
    await events.close();
    eventsConnection.disconnect();
    await queue.close();
    await dropPrefix(redis, prefix, [name]);
    redis.disconnect();
  }
}

export async function release(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.size(300, 30);
  log(`release: ${n} clicks, one at a time`);
  const p = await product(ctx, n);
  log("release: raw baseline (signed POST -> promote -> no-op worker)");
  const base = await rawRelease(ctx, n, p.sample);
  const what = "signed POST -> promote -> no-op worker";
  const rows = [
    row({
      id: "release.complete_p50",
      measure: `click -> job completed, p50 (${n} clicks)`,
      unit: "ms",
      value: percentile(p.lat.complete, 50),
      baseline: percentile(base, 50),
      baselineOf: what,
    }),
    row({
      id: "release.complete_p99",
      measure: "click -> job completed, p99",
      unit: "ms",
      value: percentile(p.lat.complete, 99),
      baseline: percentile(base, 99),
      baselineOf: what,
      target: { kind: "max", v: 30 },
    }),
  ];
  const notWired = "webhooks not wired";
  for (const q of [50, 99] as const) {
    rows.push(
      row({
        id: `release.webhook_p${q}`,
        measure: `click -> webhook received, p${q}`,
        unit: "ms",
        value: p.wired ? percentile(p.lat.webhook, q) : null,
        baseline: percentile(base, q),
        baselineOf: what,
        ...(p.wired ? {} : { note: notWired }),
      }),
    );
  }
  return rows;
}
