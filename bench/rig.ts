/**
 * The measuring rig, in the runner's process: the Slack stand-in, the agent's side of
 * the queue (adds, QueueEvents), signed clicks, and a read-only view of the database;
 * the server runs in a child process (bench/server.ts), or several on one PostgreSQL
 * schema and one queue prefix, as instances behind a load balancer. This is
 * test/support/harness.ts with the server moved out, so that the stand-in's and the load
 * generator's work is not counted as Countersign's.
 */
import { type ChildProcess, fork } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { compiledFor } from "../bin/compiled.mjs";
import { generateKeyFile } from "../src/adapters/crypto/keyfile.js";
import { ACTION_IDS } from "../src/adapters/slack/blocks.js";
import { SlackApiSim, type SlackCall } from "../src/simulator/slack-api.js";
import { BILLING_SECRET, BOT_TOKEN, PG_URL, SIGNING_SECRET, TEAM, USERS } from "../test/support/harness.js";
import {
  childMessage,
  deleteKeys,
  dropSchema,
  newPrefix,
  newSchema,
  postedCardAction,
  releasePrefix,
  removeDir,
  tempDir,
  trackChild,
} from "./lib.js";
import type { FromServer, ServerSpec, ToServer } from "./server.js";
import { UNPACED_ENV } from "./setup.js";

/**
 * The server as `npm install` built it (dist/bench/server.js, plain JavaScript, as the
 * product runs), or its source under tsx when the build is missing or stale. tsx's loader
 * costs about 60 MB of RSS and start-up time that a deployment does not pay.
 */
export const COMPILED_SERVER = compiledFor("bench/server.ts");
const SERVER = COMPILED_SERVER ?? path.join(path.dirname(fileURLToPath(import.meta.url)), "server.ts");
export const INTAKE_QUEUE = "approval-requests";
const TIMERS_QUEUE = "countersign-timers";
/** The PostgreSQL the scaling measure runs on (TEST_POSTGRES_URL, as the test suite). */
export const POSTGRES_URL = PG_URL;
/**
 * Connections per server process on PostgreSQL: the product's default (DATABASE_POOL_SIZE,
 * 10), so the bench measures what a deployment runs; 3 instances x 10 stay well below
 * PostgreSQL's default max_connections (100). A PostgreSQL request waits on round trips,
 * not CPU, so the pool bounds its throughput: BENCH_PG_POOL_SIZE=5 gives the figures of
 * earlier runs (5 until issue 22's second round).
 */
export const PG_POOL_SIZE = Number(process.env.BENCH_PG_POOL_SIZE ?? 10);

export interface RigOptions {
  readonly policy: string;
  readonly redisUrl: string;
  /** Production defaults (500 ms outbox poll, 1 s timer sweep) unless given. */
  readonly pollMs?: number;
  readonly sweepMs?: number;
  readonly env?: Record<string, string>;
  /** sqlite (default): one server on a file; postgres: a schema of this run, dropped at stop. */
  readonly store?: "sqlite" | "postgres";
  /** Server processes sharing the store, the Redis prefix and the stand-in (default 1; SQLite: 1 only). */
  readonly instances?: number;
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
  /** The first instance's base URL. */
  readonly url: string;
  /** Every instance's base URL, in start order. */
  readonly urls: readonly string[];
  readonly webhookWired: boolean;
  /** Cards posted so far, by action id. */
  readonly cards: ReadonlyMap<string, Card>;
  /** The server's SQLite database, read-only (WAL lets it read beside the server's writes). */
  db(): Database.Database;
  /** Each action's request id, from the database (either store): jobs carry request ids, cards action ids. */
  requestIds(): Promise<Map<string, string>>;
  /** The first server's memory as it is, or (gc) after a full garbage collection. */
  rss(o?: { gc?: boolean }): Promise<{ rss: number; heapUsed: number; detail: string }>;
  /** CPU time the server processes have used since they started, all instances together, in ms. */
  cpuMs(): Promise<number>;
  /** U0ALICE clicks Approve on a card: a real block_actions request, signed, sent to one instance (default the first). */
  approve(card: Card, instance?: number): Promise<{ status: number; body: string }>;
  stop(): Promise<void>;
}

/** How errors name a server process. */
const SERVER_NAME = "the benchmark server";

/** Lines of the server's stderr kept for the error message if it dies. */
const TAIL_LINES = 40;

interface Server {
  readonly child: ChildProcess;
  readonly tail: string[];
}

/** Forks one server process; its stderr goes to ours, its last lines are kept for errors. */
function forkServer(spec: ServerSpec): Server {
  const profileDir = process.env.BENCH_CPU_PROF_DIR;
  const child = fork(SERVER, [JSON.stringify(spec)], {
    execArgv: [
      ...(COMPILED_SERVER ? [] : ["--import", "tsx"]),
      // Only called when asked, after the as-is sample: what the server retains, without its garbage.
      "--expose-gc",
      ...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(profileDir)}`] : []),
      // Node or V8 flags for the server alone, e.g. --trace-gc (space-separated).
      ...(process.env.BENCH_SERVER_ARGS?.split(/\s+/).filter(Boolean) ?? []),
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
  return { child, tail };
}

/** Stops one server: asked first, killed if it has not exited within 30 s. */
async function stopServer(s: Server): Promise<void> {
  const { child } = s;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  send(child, { type: "stop" });
  const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  await exited;
  clearTimeout(killer);
}

export async function startRig(o: RigOptions): Promise<Rig> {
  const store = o.store ?? "sqlite";
  const instances = o.instances ?? 1;
  if (!Number.isInteger(instances) || instances < 1)
    throw new Error(`benchmark rig: instances must be a whole number >= 1, got ${instances}`);
  // Several processes on one SQLite file would measure lock waits, not a deployment anyone runs.
  if (store === "sqlite" && instances > 1)
    throw new Error(`benchmark rig: SQLite runs one instance; use store "postgres" for ${instances}`);
  const dir = tempDir("server");
  const policyFile = path.join(dir, "policy.yml");
  fs.writeFileSync(policyFile, o.policy);
  const keyFile = path.join(dir, "signing-key.pem");
  generateKeyFile(keyFile);
  const dbFile = path.join(dir, "countersign.db");
  const schema = store === "postgres" ? newSchema(POSTGRES_URL) : null;
  const sim = await SlackApiSim.start({ botToken: BOT_TOKEN, teamId: TEAM, users: USERS });
  const cards = new Map<string, Card>();
  const unsubscribe = sim.subscribe((c: SlackCall) => {
    const actionId = postedCardAction(c);
    if (actionId) {
      cards.set(actionId, {
        actionId,
        channel: String(c.response.channel),
        ts: String(c.response.ts),
        at: c.at,
      });
    }
    // The stand-in keeps every call for tests to inspect; at 100k requests that log alone
    // would be gigabytes in this process. Cards are taken from the stream instead.
    sim.calls.length = 0;
  });
  const prefix = newPrefix();
  const spec: ServerSpec = {
    env: {
      REDIS_URL: o.redisUrl,
      ...(schema
        ? { DATABASE_URL: POSTGRES_URL, DATABASE_SCHEMA: schema, DATABASE_POOL_SIZE: String(PG_POOL_SIZE) }
        : { DATABASE_URL: `file:${dbFile}` }),
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
      // Passed through for A/B runs of the outbox's hold-back (docs/performance.md).
      ...(process.env.OUTBOX_HOLD_BACK_MS ? { OUTBOX_HOLD_BACK_MS: process.env.OUTBOX_HOLD_BACK_MS } : {}),
      // And of serve's heap setting (HEAP_GROWING_PERCENT=0: V8's own) and the signing thread.
      ...(process.env.HEAP_GROWING_PERCENT ? { HEAP_GROWING_PERCENT: process.env.HEAP_GROWING_PERCENT } : {}),
      ...(process.env.SIGN_WORKER ? { SIGN_WORKER: process.env.SIGN_WORKER } : {}),
      ...o.env,
    },
    ...(o.pollMs ? { pollMs: o.pollMs } : {}),
    ...(o.sweepMs ? { sweepMs: o.sweepMs } : {}),
  };
  const redis = new Redis(o.redisUrl, { maxRetriesPerRequest: null });
  // All at once: the store serialises their migrations (an advisory lock on PostgreSQL).
  const servers = Array.from({ length: instances }, () => forkServer(spec));
  let ready: Extract<FromServer, { type: "ready" }>[];
  try {
    ready = await Promise.all(
      servers.map((s) => childMessage<FromServer, "ready">(s.child, "ready", 60_000, SERVER_NAME, s.tail)),
    );
  } catch (e) {
    for (const s of servers) s.child.kill("SIGKILL");
    await Promise.all(
      servers.map((s) =>
        s.child.exitCode === null && s.child.signalCode === null ? exitOf(s.child) : undefined,
      ),
    );
    unsubscribe();
    await sim.close();
    await deleteKeys(redis, `${prefix}:*`);
    releasePrefix(prefix);
    redis.disconnect();
    if (schema) await dropSchema(POSTGRES_URL, schema);
    removeDir(dir);
    throw e;
  }
  const queue = new Queue(INTAKE_QUEUE, { connection: redis, prefix });
  // QueueEvents leaves a connection it was given open on close(): ours to disconnect.
  const eventsConnection = redis.duplicate();
  const events = new QueueEvents(INTAKE_QUEUE, { connection: eventsConnection, prefix });
  await events.waitUntilReady();
  let db: Database.Database | null = null;
  let pgClient: pg.Client | null = null;
  let stopped = false;
  const urls = ready.map((r) => r.url);
  const sqliteDb = () => {
    if (schema) throw new Error("benchmark rig: db() reads the SQLite file; on PostgreSQL use requestIds()");
    db ??= new Database(dbFile, { readonly: true, fileMustExist: true });
    return db;
  };

  return {
    sim,
    queue,
    events,
    redis,
    prefix,
    dir,
    url: urls[0]!,
    urls,
    webhookWired: ready.every((r) => r.webhookWired),
    cards,
    db: sqliteDb,
    async requestIds() {
      let rows: { id: string; r: string }[];
      if (schema) {
        if (!pgClient) {
          pgClient = new pg.Client({ connectionString: POSTGRES_URL });
          await pgClient.connect();
        }
        rows = (
          await pgClient.query<{ id: string; r: string }>(
            `SELECT id, request_id AS r FROM "${schema}".actions`,
          )
        ).rows;
      } else {
        rows = sqliteDb().prepare("SELECT id, request_id AS r FROM actions").all() as {
          id: string;
          r: string;
        }[];
      }
      return new Map(rows.map((x) => [x.id, x.r]));
    },
    async rss(o = {}) {
      const s = servers[0]!;
      const r = childMessage<FromServer, "rss">(s.child, "rss", 10_000, SERVER_NAME, s.tail);
      send(s.child, { type: "rss", ...(o.gc ? { gc: true } : {}) });
      const m = await r;
      return { rss: m.rss, heapUsed: m.heapUsed, detail: m.detail };
    },
    async cpuMs() {
      const each = await Promise.all(
        servers.map(async (s) => {
          const r = childMessage<FromServer, "cpu">(s.child, "cpu", 10_000, SERVER_NAME, s.tail);
          send(s.child, { type: "cpu" });
          return (await r).micros;
        }),
      );
      return each.reduce((a, b) => a + b, 0) / 1000;
    },
    approve(card, instance = 0) {
      const url = urls[instance];
      if (url === undefined)
        throw new Error(`benchmark rig: no instance ${instance} (${urls.length} running)`);
      const alice = USERS.find((u) => u.id === "U0ALICE")!;
      return sim.click({
        user: { id: alice.id, team_id: alice.team_id, name: alice.name },
        channel: card.channel,
        ts: card.ts,
        actionId: ACTION_IDS.approve,
        appUrl: `${url}/slack/events`,
        signingSecret: SIGNING_SECRET,
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(servers.map(stopServer));
      db?.close();
      await pgClient?.end();
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
      if (schema) await dropSchema(POSTGRES_URL, schema);
      removeDir(dir);
    },
  };
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((r) => child.once("exit", () => r()));
}

function send(child: ChildProcess, m: ToServer): void {
  // A server that has died cannot take the message; childMessage's exit handler says so, with
  // its last output, rather than an unhandled IPC error here.
  if (child.connected) child.send(m, () => {});
}
