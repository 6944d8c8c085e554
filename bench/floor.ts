/**
 * The intake floor, in a process of its own (as the server is): the raw building blocks
 * one request needs, with no Countersign code on the path. A BullMQ worker of the intake
 * worker's concurrency takes each job, writes its rows in one better-sqlite3 transaction
 * (the action, the spent proof, the job link, two events, two effects: what admitting a
 * pending request writes), posts one card through @slack/web-api's WebClient to the Slack
 * stand-in, and parks the job (moveToDelayed + DelayedError, as src/adapters/queue/intake.ts
 * does). What it leaves out: verifying the proof, validating and routing the request, the
 * outbox's own bookkeeping, the card's rendering (a card from the product run is sent as is).
 *
 * argv[2] is a JSON FloorSpec. The parent (bench/intake.ts) adds the jobs and times the
 * stand-in's answers; this process only answers "ready" and "stopped" over IPC.
 */
import { randomUUID } from "node:crypto";
import { webApi } from "@slack/bolt";
import { DelayedError, type Job, Worker } from "bullmq";
import { Redis } from "ioredis";
import { openSqlite, SqliteStore } from "../src/adapters/db/sqlite.js";

export interface FloorSpec {
  readonly redisUrl: string;
  readonly prefix: string;
  readonly queue: string;
  readonly concurrency: number;
  readonly dbFile: string;
  readonly slackUrl: string;
  readonly botToken: string;
  readonly channel: string;
  /** A card as the product posted it: the same text and blocks, so the same bytes go over HTTP. */
  readonly card: { readonly text: string; readonly blocks: unknown[] };
}

export type FromFloor =
  | { readonly type: "ready" }
  /** User + system CPU time of this process so far, in microseconds. */
  | { readonly type: "cpu"; readonly micros: number }
  | { readonly type: "stopped" }
  | { readonly type: "error"; readonly message: string };

function send(m: FromFloor): void {
  process.send?.(m);
}

interface JobData {
  readonly request: {
    readonly request_id: string;
    readonly agent_id: string;
    readonly action: { readonly type: string };
    readonly risk_class: string;
    readonly region: string;
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "") as FloorSpec;
  // The real schema and pragmas; the store's constructor applies the migrations and steps aside.
  await new SqliteStore(spec.dbFile).close();
  const { raw: db } = openSqlite(spec.dbFile);
  const insAction = db.prepare(
    `INSERT INTO actions (id, agent_id, request_id, request_json, request_sha256, action_type, risk_class,
       region, status, route_name, level, quorum, eligible_json, deadline_at, cap_at, policy_sha256, requested_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 'bench', 0, 1, '["U0ALICE","U0BOB"]', ?, NULL, ?, ?)`,
  );
  const insJti = db.prepare("INSERT INTO proof_jtis (agent_id, jti, exp) VALUES (?, ?, ?)");
  const insJob = db.prepare("INSERT INTO intake_jobs (job_key, job_id, action_id) VALUES (?, ?, ?)");
  const insEvent = db.prepare(
    "INSERT INTO events (action_id, agent_id, type, actor, at, data_json) VALUES (?, ?, ?, ?, ?, ?)",
  );
  const insEffect = db.prepare(
    "INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
  );
  const admit = db.transaction((job: Job, actionId: string, now: number) => {
    const r = (job.data as JobData).request;
    insAction.run(
      actionId,
      r.agent_id,
      r.request_id,
      JSON.stringify(r),
      "x".repeat(43),
      r.action.type,
      r.risk_class,
      r.region,
      now + 30 * 60_000,
      "0".repeat(43),
      now,
    );
    insJti.run(r.agent_id, randomUUID(), Math.floor(now / 1000) + 300);
    insJob.run(`${spec.queue}|${job.id}|${job.timestamp}`, String(job.id), actionId);
    const data = JSON.stringify({ via: "queue", request_id: r.request_id, job_id: job.id });
    insEvent.run(actionId, r.agent_id, "received", `agent:${r.agent_id}`, now, data);
    insEvent.run(actionId, r.agent_id, "routed", "system", now, '{"route":"bench","level":0}');
    insEffect.run(actionId, "start_level", `start:${actionId}:0`, '{"level":0}', now, now);
    insEffect.run(actionId, "post_card", `card:${actionId}:0`, '{"level":0}', now, now);
  });
  // As the product's client: no retry loop of its own (src/adapters/slack/bolt.ts).
  const client = new webApi.WebClient(spec.botToken, {
    slackApiUrl: spec.slackUrl,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
  });
  const connection = new Redis(spec.redisUrl, { maxRetriesPerRequest: null });
  const worker = new Worker(
    spec.queue,
    async (job, token) => {
      // The parent knows each card by the job's request id, as it knows the product's by the database.
      const actionId = `act_floor_${(job.data as JobData).request.request_id}`;
      admit.immediate(job, actionId, Date.now());
      await client.chat.postMessage({
        channel: spec.channel,
        text: spec.card.text,
        blocks: spec.card.blocks as never,
        unfurl_links: false,
        unfurl_media: false,
        metadata: { event_type: "countersign_card", event_payload: { action_id: actionId, level: 0 } },
      });
      await job.moveToDelayed(Date.now() + 10 * 60_000, token);
      throw new DelayedError();
    },
    { connection, prefix: spec.prefix, concurrency: spec.concurrency },
  );
  worker.on("error", (e) => process.stderr.write(`floor worker: ${e.message}\n`));
  await worker.waitUntilReady();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await worker.close();
    connection.disconnect();
    db.close();
    send({ type: "stopped" });
    process.exit(0);
  };
  process.on("message", (m: { type?: string }) => {
    if (m.type === "cpu") {
      const u = process.cpuUsage();
      send({ type: "cpu", micros: u.user + u.system });
    } else if (m.type === "stop") void stop();
  });
  process.on("disconnect", () => void stop());
  send({ type: "ready" });
}

main().catch((e: unknown) => {
  send({ type: "error", message: (e as Error).stack ?? String(e) });
  process.exit(1);
});
