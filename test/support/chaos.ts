/**
 * Chaos set-up: Countersign as child processes (killed with SIGKILL, started again) on
 * one SQLite file and one Redis prefix, with the Slack simulator in the test process.
 */

import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { generateKeyFile } from "../../src/adapters/crypto/keyfile.js";
import type { ActionRequest } from "../../src/domain/types.js";
import { mintProof } from "../../src/records/proof.js";
import { SlackApiSim } from "../../src/simulator/slack-api.js";
import { type Child, startChild } from "./child.js";
import {
  APP_TOKEN,
  BILLING_SECRET,
  BOT_TOKEN,
  deleteKeys,
  dropSchema,
  ISSUER,
  OPS_SECRET,
  PG_URL,
  type PolicyKnobs,
  REDIS_URL,
  request,
  SIGNING_SECRET,
  TEAM,
  testPolicy,
  USERS,
} from "./harness.js";

export interface Chaos {
  sim: SlackApiSim;
  queue: Queue;
  events: QueueEvents;
  env: Record<string, string>;
  child(extra?: Record<string, string>): Promise<Child>;
  /** A request on the us-ops route (quorum 1, channel C0USOPS). */
  submit(
    over?: Partial<ActionRequest>,
  ): Promise<{ req: ActionRequest; job: Awaited<ReturnType<Queue["add"]>> }>;
  db(): Database.Database;
  /** On PostgreSQL: the chaos run's own schema. */
  pgSchema: string | null;
  stop(): Promise<void>;
}

export async function startChaos(
  k: PolicyKnobs & {
    env?: Record<string, string>;
    policy?: (yaml: string) => string;
    postgres?: boolean;
    /**
     * The children run in Socket Mode (SLACK_APP_TOKEN): each opens its socket on the
     * simulator, which spreads envelopes over them and re-sends unacked ones as given.
     */
    socketMode?: { ackTimeoutMs?: number; retries?: number };
  } = {},
): Promise<Chaos> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-chaos-"));
  fs.writeFileSync(path.join(dir, "policy.yml"), (k.policy ?? ((y) => y))(testPolicy(k)));
  generateKeyFile(path.join(dir, "signing-key.pem"));
  const sim = await SlackApiSim.start({
    botToken: BOT_TOKEN,
    teamId: TEAM,
    users: USERS,
    usergroups: { S0FIN: ["U0CAROL"] },
    ...(k.socketMode ? { socketMode: { appToken: APP_TOKEN, ...k.socketMode } } : {}),
  });
  const prefix = `test-${randomUUID()}`;
  const dbFile = path.join(dir, "countersign.db");
  const pgSchema = `test_${randomUUID().replace(/-/g, "")}`;
  const env: Record<string, string> = {
    REDIS_URL,
    ...(k.postgres
      ? { DATABASE_URL: PG_URL, DATABASE_SCHEMA: pgSchema, DATABASE_POOL_SIZE: "4" }
      : { DATABASE_URL: `file:${dbFile}` }),
    SLACK_BOT_TOKEN: BOT_TOKEN,
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: sim.url,
    SIGNING_KEY_FILE: path.join(dir, "signing-key.pem"),
    POLICY_FILE: path.join(dir, "policy.yml"),
    QUEUE_PREFIX: prefix,
    BILLING_AGENT_SECRET: BILLING_SECRET,
    BILLING_AGENT_WEBHOOK_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    OPS_AGENT_SECRET: OPS_SECRET,
    SLACK_CHANNEL_RATE: "1000",
    SLACK_CHANNEL_BURST: "1000",
    // A dead process's jobs and effects are taken over within seconds, not the default 30.
    QUEUE_LOCK_MS: "2000",
    OUTBOX_LEASE_MS: "2000",
    LOG_LEVEL: "warn",
    ...(k.socketMode ? { SLACK_APP_TOKEN: APP_TOKEN } : {}),
    ...k.env,
  };
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue("approval-requests", { connection: redis, prefix });
  const events = new QueueEvents("approval-requests", { connection: redis.duplicate(), prefix });
  await events.waitUntilReady();
  const children: Child[] = [];
  const readers: Database.Database[] = [];
  return {
    sim,
    queue,
    events,
    env,
    pgSchema: k.postgres ? pgSchema : null,
    async child(extra = {}) {
      const c = await startChild({ ...env, ...extra });
      children.push(c);
      return c;
    },
    async submit(over = {}) {
      const req = request({
        region: "us",
        action: { type: "ops.restart", summary: "Restart the ledger worker" },
        ...over,
      });
      const proof = await mintProof({
        agentId: "billing-agent",
        audience: ISSUER,
        key: { kind: "hmac", secret: new TextEncoder().encode(BILLING_SECRET) },
        request: req,
      });
      return { req, job: await queue.add("approval", { request: req, proof }) };
    },
    db() {
      const d = new Database(dbFile, { readonly: true });
      readers.push(d);
      return d;
    },
    async stop() {
      for (const r of readers) r.close();
      await Promise.all(children.map((c) => c.stop()));
      await events.close();
      await queue.close();
      await deleteKeys(redis, `${prefix}:*`);
      redis.disconnect();
      await sim.close();
      if (k.postgres) await dropSchema(pgSchema);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
