/**
 * The measuring rig, in the runner's process: the Slack stand-in, the agent's side of
 * the queue (adds, QueueEvents), signed clicks, and a read-only view of the database;
 * the server runs in a child process (bench/server.ts). This is test/support/harness.ts
 * with the server moved out, so that the stand-in's and the load generator's work is not
 * counted as Countersign's.
 */
import { type ChildProcess, fork } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { generateKeyFile } from "../src/adapters/crypto/keyfile.js";
import { ACTION_IDS } from "../src/adapters/slack/blocks.js";
import { SlackApiSim, type SlackCall } from "../src/simulator/slack-api.js";
import { BILLING_SECRET, BOT_TOKEN, SIGNING_SECRET, TEAM, USERS } from "../test/support/harness.js";
import { deleteKeys, newPrefix, releasePrefix, removeDir, tempDir, trackChild } from "./lib.js";
import type { FromServer, ServerSpec, ToServer } from "./server.js";
import { UNPACED_ENV } from "./setup.js";

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), "server.ts");
export const INTAKE_QUEUE = "approval-requests";
const TIMERS_QUEUE = "countersign-timers";

export interface RigOptions {
  readonly policy: string;
  readonly redisUrl: string;
  /** Production defaults (500 ms outbox poll, 1 s timer sweep) unless given. */
  readonly pollMs?: number;
  readonly sweepMs?: number;
  readonly env?: Record<string, string>;
}

export interface Card {
  readonly actionId: string;
  readonly channel: string;
  readonly ts: string;
  /** When the stand-in answered chat.postMessage, ms since the epoch. */
  readonly at: number;
}

export interface Rig {
  readonly sim: SlackApiSim;
  readonly queue: Queue;
  readonly events: QueueEvents;
  readonly redis: Redis;
  readonly prefix: string;
  readonly dir: string;
  readonly url: string;
  readonly webhookWired: boolean;
  /** Cards posted so far, by action id. */
  readonly cards: ReadonlyMap<string, Card>;
  /** The server's database, read-only (WAL lets it read beside the server's writes). */
  db(): Database.Database;
  /** The server's memory as it is, or (gc) after a full garbage collection. */
  rss(o?: { gc?: boolean }): Promise<{ rss: number; heapUsed: number }>;
  /** U0ALICE clicks Approve on a card: a real block_actions request, signed. */
  approve(card: Card): Promise<{ status: number; body: string }>;
  stop(): Promise<void>;
}

/** Lines of the server's stderr kept for the error message if it dies. */
const TAIL_LINES = 40;

export async function startRig(o: RigOptions): Promise<Rig> {
  const dir = tempDir("server");
  const policyFile = path.join(dir, "policy.yml");
  fs.writeFileSync(policyFile, o.policy);
  const keyFile = path.join(dir, "signing-key.pem");
  generateKeyFile(keyFile);
  const dbFile = path.join(dir, "countersign.db");
  const sim = await SlackApiSim.start({ botToken: BOT_TOKEN, teamId: TEAM, users: USERS });
  const cards = new Map<string, Card>();
  const unsubscribe = sim.subscribe((c: SlackCall) => {
    if (c.method === "chat.postMessage" && c.response.ok === true) {
      const md = c.args.metadata as { event_payload?: { action_id?: string } } | undefined;
      const actionId = md?.event_payload?.action_id;
      if (actionId) {
        cards.set(actionId, {
          actionId,
          channel: String(c.response.channel),
          ts: String(c.response.ts),
          at: c.at,
        });
      }
    }
    // The stand-in keeps every call for tests to inspect; at 100k requests that log alone
    // would be gigabytes in this process. Cards are taken from the stream instead.
    sim.calls.length = 0;
  });
  const prefix = newPrefix();
  const spec: ServerSpec = {
    env: {
      REDIS_URL: o.redisUrl,
      DATABASE_URL: `file:${dbFile}`,
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: sim.url,
      SIGNING_KEY_FILE: keyFile,
      POLICY_FILE: policyFile,
      HOST: "127.0.0.1",
      PORT: "0",
      QUEUE_PREFIX: prefix,
      BILLING_AGENT_SECRET: BILLING_SECRET,
      BILLING_AGENT_WEBHOOK_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "error",
      ...UNPACED_ENV,
      ...o.env,
    },
    ...(o.pollMs ? { pollMs: o.pollMs } : {}),
    ...(o.sweepMs ? { sweepMs: o.sweepMs } : {}),
  };
  const profileDir = process.env.BENCH_CPU_PROF_DIR;
  const child = fork(SERVER, [JSON.stringify(spec)], {
    execArgv: [
      "--import",
      "tsx",
      // Only called when asked, after the as-is sample: what the server retains, without its garbage.
      "--expose-gc",
      ...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(profileDir)}`] : []),
    ],
    stdio: ["ignore", "inherit", "pipe", "ipc"],
  });
  trackChild(child);
  const tail: string[] = [];
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    process.stderr.write(d);
    tail.push(...d.split("\n"));
    tail.splice(0, Math.max(0, tail.length - TAIL_LINES));
  });
  const redis = new Redis(o.redisUrl, { maxRetriesPerRequest: null });
  let ready: Extract<FromServer, { type: "ready" }>;
  try {
    ready = await waitFor(child, "ready", 60_000, tail);
  } catch (e) {
    child.kill("SIGKILL");
    unsubscribe();
    await sim.close();
    await deleteKeys(redis, `${prefix}:*`);
    releasePrefix(prefix);
    redis.disconnect();
    removeDir(dir);
    throw e;
  }
  const queue = new Queue(INTAKE_QUEUE, { connection: redis, prefix });
  // QueueEvents leaves a connection it was given open on close(): ours to disconnect.
  const eventsConnection = redis.duplicate();
  const events = new QueueEvents(INTAKE_QUEUE, { connection: eventsConnection, prefix });
  await events.waitUntilReady();
  let db: Database.Database | null = null;
  let stopped = false;

  return {
    sim,
    queue,
    events,
    redis,
    prefix,
    dir,
    url: ready.url,
    webhookWired: ready.webhookWired,
    cards,
    db() {
      db ??= new Database(dbFile, { readonly: true, fileMustExist: true });
      return db;
    },
    async rss(o = {}) {
      const r = waitFor(child, "rss", 10_000, tail);
      send(child, { type: "rss", ...(o.gc ? { gc: true } : {}) });
      const m = await r;
      return { rss: m.rss, heapUsed: m.heapUsed };
    },
    approve(card) {
      const alice = USERS.find((u) => u.id === "U0ALICE")!;
      return sim.click({
        user: { id: alice.id, team_id: alice.team_id, name: alice.name },
        channel: card.channel,
        ts: card.ts,
        actionId: ACTION_IDS.approve,
        appUrl: `${ready.url}/slack/events`,
        signingSecret: SIGNING_SECRET,
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((r) => child.once("exit", () => r()));
        send(child, { type: "stop" });
        const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
        await exited;
        clearTimeout(killer);
      }
      db?.close();
      unsubscribe();
      await events.close();
      eventsConnection.disconnect();
      await queue.close();
      for (const name of [INTAKE_QUEUE, TIMERS_QUEUE]) {
        const q = new Queue(name, { connection: redis, prefix });
        await q.obliterate({ force: true }).catch(() => {});
        await q.close();
      }
      await deleteKeys(redis, `${prefix}:*`);
      releasePrefix(prefix);
      redis.disconnect();
      await sim.close();
      removeDir(dir);
    },
  };
}

function send(child: ChildProcess, m: ToServer): void {
  // A server that has died cannot take the message; waitFor's exit handler says so, with
  // its last output, rather than an unhandled IPC error here.
  if (child.connected) child.send(m, () => {});
}

function waitFor<K extends FromServer["type"]>(
  child: ChildProcess,
  type: K,
  ms: number,
  tail: readonly string[],
): Promise<Extract<FromServer, { type: K }>> {
  return new Promise((resolve, reject) => {
    const done = (f: () => void) => {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
      f();
    };
    const onMessage = (m: FromServer) => {
      if (m.type === "error") done(() => reject(new Error(`the benchmark server failed: ${m.message}`)));
      else if (m.type === type) done(() => resolve(m as Extract<FromServer, { type: K }>));
    };
    const onExit = (code: number | null) =>
      done(() =>
        reject(new Error(`the benchmark server exited (${code}) before "${type}":\n${tail.join("\n")}`)),
      );
    const timer = setTimeout(
      () =>
        done(() =>
          reject(new Error(`the benchmark server sent no "${type}" within ${ms} ms:\n${tail.join("\n")}`)),
        ),
      ms,
    );
    child.on("message", onMessage);
    child.on("exit", onExit);
  });
}
