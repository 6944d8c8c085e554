/**
 * A real Countersign for integration tests: real Redis (a fresh queue prefix per
 * harness, removed afterwards), a real database with the real migrations, and Slack
 * reached over HTTP through the simulator's Web API. Clicks are real signed requests.
 *
 * The database is a SQLite file, or on PostgreSQL a schema of its own (dropped at stop).
 * COUNTERSIGN_TEST_STORE=postgres makes PostgreSQL the default, so the same suite runs on
 * both stores (vitest.config.ts runs test/integration once per store).
 */

import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Job, Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { type Logger, pino } from "pino";
import { generateKeyFile } from "../../src/adapters/crypto/keyfile.js";
import { loadConfig } from "../../src/config.js";
import type { ActionRequest } from "../../src/domain/types.js";
import { type Countersign, startCountersign } from "../../src/main.js";
import { mintProof } from "../../src/records/proof.js";
import { type AppTarget, type SimUser, SlackApiSim } from "../../src/simulator/slack-api.js";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
export const TEAM = "T0TEST";
export const BOT_TOKEN = "xoxb-test-token";
export const SIGNING_SECRET = "test-signing-secret-0123456789abcdef";
/** The app-level token a Socket Mode harness runs with. */
export const APP_TOKEN = "xapp-1-A0SIMAPP001-test-app-token";
export const BILLING_SECRET = "billing-agent-secret-that-is-at-least-32-bytes";
export const ISSUER = "https://countersign.test";
export const OPS_SECRET = "ops-agent-secret-that-is-also-at-least-32-bytes";

export const USERS: SimUser[] = [
  { id: "U0ALICE", team_id: TEAM, name: "alice", real_name: "Alice Approver", email: "alice@example.com" },
  { id: "U0BOB", team_id: TEAM, name: "bob", real_name: "Bob Approver", email: "bob@example.com" },
  { id: "U0CAROL", team_id: TEAM, name: "carol", real_name: "Carol Group" },
  { id: "U0CFO", team_id: TEAM, name: "cfo", real_name: "Chief Financial" },
  { id: "U0RISK", team_id: TEAM, name: "risk", real_name: "Risk Owner" },
  { id: "U0BIZ", team_id: TEAM, name: "biz", real_name: "Business Owner" },
  { id: "U0TECH", team_id: TEAM, name: "tech", real_name: "Tech Owner" },
  { id: "U0REQ", team_id: TEAM, name: "req", real_name: "Requester" },
  { id: "U0GUEST", team_id: TEAM, name: "guest", real_name: "A Guest", is_restricted: true },
  { id: "U0OUTSIDE", team_id: "T0OTHER", name: "outsider", real_name: "Slack Connect Outsider" },
  { id: "U0MALLORY", team_id: TEAM, name: "mallory", real_name: "Not An Approver" },
];

export interface PolicyKnobs {
  /** Level 0 timeout of the default route, e.g. "30m" or "2s". */
  timeout?: string;
  escalationTimeout?: string;
  onTimeout?: "deny" | "escalate";
  quorum?: number;
  extra?: string;
}

export function testPolicy(k: PolicyKnobs = {}): string {
  return `
issuer: ${ISSUER}
slack: { team_id: ${TEAM} }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: Europe/Berlin }
  us: { tz: America/New_York }
defaults: { timeout: 30m, on_timeout: deny, approval_valid_for: 15m, max_pending: 100 }
actions:
  payments.refund: { min_risk: high }
agents:
  billing-agent:
    owners: { business: U0BIZ, technical: U0TECH, risk: U0RISK }
    auth: { hmac_secret_env: BILLING_AGENT_SECRET }
    webhook_secret_env: BILLING_AGENT_WEBHOOK_SECRET
    callback_origins: [https://billing.internal]
    allowed_actions: ["payments.*", "crm.read", "ops.*"]
    regions: [eu, us]
    max_pending: 20
  ops-agent:
    owners: { technical: U0TECH }
    auth: { hmac_secret_env: OPS_AGENT_SECRET }
    allowed_actions: ["ops.*"]
routes:
  - name: low-auto
    when: { risk_class: [low], action: ["crm.read"] }
    auto: approve
  - name: eu-high-payments
    when: { risk_class: [high, critical], region: [eu], action: ["payments.*"] }
    approvers: { users: [U0ALICE, U0BOB, U0GUEST, U0OUTSIDE, U0REQ], groups: [S0FIN], owners: [risk] }
    channel: C0EUAPPROVALS
    quorum: ${k.quorum ?? 2}
    timeout: ${k.timeout ?? "30m"}
    on_timeout: ${k.onTimeout ?? "escalate"}
    escalation:
      - { approvers: { users: [U0CFO] }, quorum: 1, timeout: ${k.escalationTimeout ?? "15m"} }
  - name: us-ops
    when: { region: [us], action: ["ops.*"] }
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0USOPS
    quorum: 1
    timeout: ${k.timeout ?? "30m"}
${k.extra ?? ""}`;
}

export function request(
  over: Omit<Partial<ActionRequest>, "action"> & { action?: Partial<ActionRequest["action"]> } = {},
): ActionRequest {
  const { action, ...rest } = over;
  return {
    request_id: `req-${randomUUID()}`,
    agent_id: "billing-agent",
    action: { type: "payments.refund", summary: "Refund order 1234 (EUR 120.00)", ...action },
    risk_class: "high",
    region: "eu",
    purpose: "Customer was charged twice for the same order",
    ...rest,
  } as ActionRequest;
}

export interface Harness {
  app: Countersign;
  sim: SlackApiSim;
  queue: Queue;
  events: QueueEvents;
  redis: Redis;
  prefix: string;
  dir: string;
  /** Which store this harness runs on. */
  storeKind: StoreKind;
  /** On PostgreSQL: the harness's own schema. */
  pgSchema: string | null;
  /** The environment that points a `countersign` CLI process at this harness's database. */
  dbEnv: Record<string, string>;
  /**
   * Reads the app's database directly, on either store: `?` placeholders, the same SQL for
   * both (the schemas share table and column names). Integer columns and counts come back
   * as numbers on both (node-postgres would give int8 as a string).
   */
  sql<T = Record<string, unknown>>(text: string, ...params: unknown[]): Promise<T[]>;
  slackUrl: string;
  /**
   * Where the simulator sends what a person does: the signed Request URL, or in Socket
   * Mode nothing (the simulator then uses the app's socket). Spread it into sim calls.
   */
  target: AppTarget;
  proof(
    req: unknown,
    o?: { now?: Date; jti?: string; ttlSeconds?: number; agentId?: string },
  ): Promise<string>;
  /** Call the HTTP API as an agent (a fresh bearer token bound to the body unless given; null sends none). */
  api(
    method: string,
    path: string,
    o?: { body?: unknown; token?: string | null; agentId?: string },
    // biome-ignore lint/suspicious/noExplicitAny: tests read API answers field by field
  ): Promise<{ status: number; type: string; json: any }>;
  submit(req: unknown, o?: { proof?: string }): Promise<Job>;
  /**
   * Wait until the card for an action (at a level) is posted; returns channel and ts.
   * `ms` bounds the wait (default 10 s); a test posting hundreds at once gives more.
   */
  card(
    actionIdOrRequestId: string,
    level?: number,
    ms?: number,
  ): Promise<{ channel: string; ts: string; actionId: string }>;
  actionIdOf(requestId: string, ms?: number): Promise<string>;
  click(
    user: string,
    card: { channel: string; ts: string },
    actionId: string,
  ): Promise<{ status: number; body: string }>;
  submitModal(user: string, values: Record<string, string>): Promise<{ status: number; body: string }>;
  stop(): Promise<void>;
}

export async function startHarness(
  k: PolicyKnobs & {
    policy?: string;
    env?: Record<string, string>;
    log?: Logger;
    /**
     * Run on PostgreSQL (a schema of its own, dropped at stop) or on a SQLite file.
     * Default: the store COUNTERSIGN_TEST_STORE names, else SQLite.
     */
    postgres?: boolean;
    /**
     * Run the app in Socket Mode (SLACK_APP_TOKEN set): the simulator's socket carries
     * clicks, submissions and commands, with its ack window and re-sends as given.
     */
    socketMode?: boolean | { ackTimeoutMs?: number; retries?: number };
  } = {},
): Promise<Harness> {
  const onPostgres = k.postgres ?? testStore() === "postgres";
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-test-"));
  const policyFile = path.join(dir, "policy.yml");
  fs.writeFileSync(policyFile, k.policy ?? testPolicy(k));
  const keyFile = path.join(dir, "signing-key.pem");
  // A harness that fails to start removes what it made so far: no countersign-test-* folder,
  // no Slack stand-in, no PostgreSQL schema is left behind by a failed test file.
  let sim: SlackApiSim | undefined;
  let app: Countersign;
  const prefix = `test-${randomUUID()}`;
  const pgSchema = `test_${randomUUID().replace(/-/g, "")}`;
  const dbEnv: Record<string, string> = onPostgres
    ? { DATABASE_URL: PG_URL, DATABASE_SCHEMA: pgSchema, DATABASE_POOL_SIZE: "5" }
    : { DATABASE_URL: `file:${path.join(dir, "countersign.db")}` };
  try {
    generateKeyFile(keyFile);
    sim = await SlackApiSim.start({
      botToken: BOT_TOKEN,
      teamId: TEAM,
      users: USERS,
      usergroups: { S0FIN: ["U0CAROL"] },
      ...(k.socketMode
        ? { socketMode: { appToken: APP_TOKEN, ...(typeof k.socketMode === "object" ? k.socketMode : {}) } }
        : {}),
    });
    const config = loadConfig({
      REDIS_URL,
      ...dbEnv,
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: sim.url,
      SIGNING_KEY_FILE: keyFile,
      POLICY_FILE: policyFile,
      HOST: "127.0.0.1",
      PORT: "0",
      QUEUE_PREFIX: prefix,
      BILLING_AGENT_SECRET: BILLING_SECRET,
      OPS_AGENT_SECRET: OPS_SECRET,
      BILLING_AGENT_WEBHOOK_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
      // Tests post in bursts; the pacing test sets its own rate.
      SLACK_CHANNEL_RATE: "1000",
      SLACK_CHANNEL_BURST: "1000",
      ...(k.socketMode ? { SLACK_APP_TOKEN: APP_TOKEN } : {}),
      ...k.env,
    });
    app = await startCountersign(config, {
      pollMs: 50,
      sweepMs: 100,
      keyCheckMs: 100,
      log: k.log ?? pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    });
  } catch (e) {
    await sim?.close().catch(() => {});
    if (onPostgres) await dropSchema(pgSchema).catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const redis = new Redis(k.env?.REDIS_URL ?? REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue("approval-requests", { connection: redis, prefix });
  const eventsConnection = redis.duplicate();
  const events = new QueueEvents("approval-requests", { connection: eventsConnection, prefix });
  // The test's own clients: a Redis outage test must not drown in their reconnect errors.
  redis.on("error", () => {});
  eventsConnection.on("error", () => {});
  queue.on("error", () => {});
  events.on("error", () => {});
  await events.waitUntilReady();
  const slackUrl = `${app.url}/slack/events`;
  const target: AppTarget = k.socketMode ? {} : { appUrl: slackUrl, signingSecret: SIGNING_SECRET };
  let lastTrigger: { user: string } | null = null;
  // The test's own connection for h.sql on PostgreSQL, opened on first use.
  let pgPool: pg.Pool | null = null;

  const h: Harness = {
    app,
    sim,
    queue,
    events,
    redis,
    prefix,
    dir,
    storeKind: onPostgres ? "postgres" : "sqlite",
    pgSchema: onPostgres ? pgSchema : null,
    dbEnv,
    async sql<T>(text: string, ...params: unknown[]): Promise<T[]> {
      if (!onPostgres) return app.sqlite!.prepare(text).all(...params) as T[];
      pgPool ??= testPool(pgSchema);
      // Each `?` becomes $1, $2...: the tests' SQL has no `?` inside its literals.
      let n = 0;
      const { rows } = await pgPool.query(
        text.replace(/\?/g, () => `$${++n}`),
        params,
      );
      return rows as T[];
    },
    slackUrl,
    target,
    proof: (req, o = {}) => {
      const agentId = o.agentId ?? (req as ActionRequest | undefined)?.agent_id ?? "billing-agent";
      const secret = agentId === "ops-agent" ? OPS_SECRET : BILLING_SECRET;
      return mintProof({
        agentId,
        audience: ISSUER,
        key: { kind: "hmac", secret: new TextEncoder().encode(secret) },
        ...(req === undefined ? {} : { request: req }),
        ...(o.now ? { now: o.now } : {}),
        ...(o.jti ? { jti: o.jti } : {}),
        ...(o.ttlSeconds ? { ttlSeconds: o.ttlSeconds } : {}),
      });
    },
    async api(method, path, o = {}) {
      const body =
        o.body === undefined ? undefined : typeof o.body === "string" ? o.body : JSON.stringify(o.body);
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (o.token !== null) {
        headers.authorization = `Bearer ${
          o.token ??
          (await h.proof(
            o.body !== undefined && typeof o.body !== "string" ? o.body : undefined,
            o.agentId ? { agentId: o.agentId } : {},
          ))
        }`;
      }
      const r = await fetch(`${app.url}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
      });
      const text = await r.text();
      return {
        status: r.status,
        type: r.headers.get("content-type") ?? "",
        json: text ? JSON.parse(text) : null,
      };
    },
    async submit(req, o = {}) {
      return queue.add("approval", { request: req, proof: o.proof ?? (await h.proof(req)) });
    },
    async actionIdOf(requestId, ms = 10_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const a = await app.store.getActionByRequest("billing-agent", requestId);
        if (a) return a.id;
        if (Date.now() > deadline) throw new Error(`no action for request ${requestId}`);
        await sleep(20);
      }
    },
    async card(idOrRequest, level = 0, ms = 10_000) {
      const deadline = Date.now() + ms;
      const actionId = idOrRequest.startsWith("act_") ? idOrRequest : await h.actionIdOf(idOrRequest, ms);
      for (;;) {
        const c = (await app.store.getCards(actionId)).find((x) => x.level === level);
        if (c) return { channel: c.channel, ts: c.ts, actionId };
        if (Date.now() > deadline) throw new Error(`no card for ${actionId} at level ${level}`);
        await sleep(20);
      }
    },
    async click(user, card, actionId) {
      const u = USERS.find((x) => x.id === user)!;
      lastTrigger = { user };
      return sim.click({
        user: { id: u.id, team_id: u.team_id, name: u.name },
        channel: card.channel,
        ts: card.ts,
        actionId,
        ...target,
      });
    },
    async submitModal(user, values) {
      const u = USERS.find((x) => x.id === user)!;
      const view = await eventually(
        async () =>
          [...sim.views()].reverse().find((v) => v.user === user && v.kind === "modal" && !v.closed),
        `an open modal for ${user} (last click by ${lastTrigger?.user})`,
      );
      const vals: Record<string, Record<string, { type: string; value: string }>> = {};
      for (const [k, v] of Object.entries(values)) vals[k] = { [k]: { type: "plain_text_input", value: v } };
      return sim.submitView({
        user: { id: u.id, team_id: u.team_id, name: u.name },
        viewId: view.id,
        values: vals,
        ...target,
      });
    },
    async stop() {
      await app.stop();
      await events.close();
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
      await deleteKeys(redis, `${prefix}:*`);
      redis.disconnect();
      await sim.close();
      await pgPool?.end();
      if (onPostgres) await dropSchema(pgSchema);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

export const PG_URL = process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

export type StoreKind = "sqlite" | "postgres";

/** The store a harness uses when a test does not say: COUNTERSIGN_TEST_STORE, else SQLite. */
export function testStore(): StoreKind {
  const v = process.env.COUNTERSIGN_TEST_STORE;
  if (v === undefined || v === "" || v === "sqlite") return "sqlite";
  if (v === "postgres") return "postgres";
  throw new Error(`COUNTERSIGN_TEST_STORE must be "sqlite" or "postgres", not ${JSON.stringify(v)}`);
}

/**
 * A small pool on one test schema for reads the tests make themselves. int8 (counts,
 * seq, bigserial ids, unix-ms times) is parsed as a number, as SQLite gives it: every
 * such value here stays far below 2^53.
 */
function testPool(schema: string): pg.Pool {
  return new pg.Pool({
    connectionString: PG_URL,
    max: 2,
    options: `-c search_path=${schema}`,
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === pg.types.builtins.INT8
          ? (v: string) => Number(v)
          : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
    },
  });
}

export async function dropSchema(schema: string, url = PG_URL): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

export async function deleteKeys(redis: Redis, pattern: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 500);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== "0");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function eventually<T>(
  fn: () => Promise<T | null | undefined | false>,
  what: string,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}
