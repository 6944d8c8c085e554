/**
 * The real server as a child process, killed with SIGKILL and started again: timers are
 * durable, and two running instances never fire one twice.
 */

import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyFile } from "../../src/adapters/crypto/keyfile.js";
import { mintProof } from "../../src/adapters/crypto/proof.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { SlackApiSim } from "../../src/simulator/slack-api.js";
import { type Child, startChild } from "../support/child.js";
import {
  BILLING_SECRET,
  BOT_TOKEN,
  deleteKeys,
  eventually,
  ISSUER,
  OPS_SECRET,
  REDIS_URL,
  request,
  SIGNING_SECRET,
  TEAM,
  testPolicy,
  USERS,
} from "../support/harness.js";

let dir: string;
let sim: SlackApiSim;
let redis: Redis;
let queue: Queue;
let events: QueueEvents;
let env: Record<string, string>;
const children: Child[] = [];
const prefix = `test-${randomUUID()}`;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-chaos-"));
  fs.writeFileSync(path.join(dir, "policy.yml"), testPolicy({ timeout: "2s", onTimeout: "deny" }));
  generateKeyFile(path.join(dir, "signing-key.pem"));
  sim = await SlackApiSim.start({
    botToken: BOT_TOKEN,
    teamId: TEAM,
    users: USERS,
    usergroups: { S0FIN: ["U0CAROL"] },
  });
  env = {
    REDIS_URL,
    DATABASE_URL: `file:${path.join(dir, "countersign.db")}`,
    SLACK_BOT_TOKEN: BOT_TOKEN,
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: sim.url,
    SIGNING_KEY_FILE: path.join(dir, "signing-key.pem"),
    POLICY_FILE: path.join(dir, "policy.yml"),
    QUEUE_PREFIX: prefix,
    BILLING_AGENT_SECRET: BILLING_SECRET,
    BILLING_AGENT_WEBHOOK_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    OPS_AGENT_SECRET: OPS_SECRET,
    LOG_LEVEL: "warn",
  };
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  queue = new Queue("approval-requests", { connection: redis, prefix });
  events = new QueueEvents("approval-requests", { connection: redis.duplicate(), prefix });
  await events.waitUntilReady();
});

afterAll(async () => {
  await Promise.all(children.map((c) => c.stop()));
  await events?.close();
  await queue?.close();
  if (redis) await deleteKeys(redis, `${prefix}:*`);
  redis?.disconnect();
  await sim?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function child(): Promise<Child> {
  const c = await startChild(env);
  children.push(c);
  return c;
}

async function submit() {
  const req = request({
    region: "us",
    action: { type: "ops.restart", summary: "Restart the ledger worker" },
  });
  const proof = await mintProof({
    agentId: "billing-agent",
    audience: ISSUER,
    key: { kind: "hmac", secret: new TextEncoder().encode(BILLING_SECRET) },
    request: req,
  });
  const job = await queue.add("approval", { request: req, proof });
  return { req, job };
}

function db() {
  // A second reader on the same file, as an operator would open it.
  return import("better-sqlite3").then((m) => new m.default(env.DATABASE_URL!.slice(5), { readonly: true }));
}

describe("durable timers", () => {
  it("a deadline that falls while the process is dead (kill -9) fires when it starts again", async () => {
    const first = await child();
    const { job } = await submit();
    await eventually(async () => h_cardPosted(), "the card to be posted", 15_000);
    await first.kill9();
    await new Promise((r) => setTimeout(r, 2_500)); // the 2 s deadline passes while nothing runs
    const second = await child();
    const r = (await job.waitUntilFinished(events, 15_000)) as { verdict: string; record: string };
    expect(r.verdict).toBe("expired");
    expect((decodeJwt(r.record) as unknown as RecordClaims).reason_code).toBe("timeout");
    await second.stop();
  });

  it("two instances on one database and Redis fire a deadline once: one record, one expiry event", async () => {
    const [a, b] = await Promise.all([child(), child()]);
    const jobs = await Promise.all(Array.from({ length: 10 }, () => submit()));
    const results = (await Promise.all(jobs.map(({ job }) => job.waitUntilFinished(events, 20_000)))) as {
      action_id: string;
      verdict: string;
    }[];
    expect(results.every((r) => r.verdict === "expired")).toBe(true);
    const sqlite = await db();
    for (const r of results) {
      const n = sqlite.prepare("SELECT count(*) AS n FROM records WHERE action_id = ?").get(r.action_id) as {
        n: number;
      };
      const ev = sqlite
        .prepare("SELECT count(*) AS n FROM events WHERE action_id = ? AND type = 'expired'")
        .get(r.action_id) as { n: number };
      expect([n.n, ev.n]).toEqual([1, 1]);
    }
    const seqs = sqlite.prepare("SELECT seq FROM records ORDER BY seq").all() as { seq: number }[];
    expect(seqs.map((s) => s.seq)).toEqual(seqs.map((_, i) => i + 1));
    sqlite.close();
    await Promise.all([a.stop(), b.stop()]);
  });
});

function h_cardPosted(): boolean {
  return sim.messages("C0USOPS").length > 0;
}
