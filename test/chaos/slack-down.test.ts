/**
 * Slack unreachable when the service starts: it must serve (health, readiness, the agent
 * API) and survive Slack traffic it cannot authorize, not crash on Bolt's auth.test.
 */

import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyFile } from "../../src/adapters/crypto/keyfile.js";
import { blockActionsPayload, sendSigned } from "../../src/simulator/interactions.js";
import { type Child, freePort, startChild } from "../support/child.js";
import {
  BILLING_SECRET,
  deleteKeys,
  OPS_SECRET,
  REDIS_URL,
  SIGNING_SECRET,
  sleep,
  testPolicy,
} from "../support/harness.js";

let dir: string;
let child: Child;
const prefix = `test-${randomUUID()}`;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-slackdown-"));
  fs.writeFileSync(path.join(dir, "policy.yml"), testPolicy());
  generateKeyFile(path.join(dir, "key.pem"));
  // A port nothing listens on: every Slack call fails to connect.
  const dead = await freePort();
  child = await startChild({
    REDIS_URL,
    DATABASE_URL: `file:${path.join(dir, "cs.db")}`,
    SLACK_BOT_TOKEN: "xoxb-unreachable",
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: `http://127.0.0.1:${dead}/api/`,
    SIGNING_KEY_FILE: path.join(dir, "key.pem"),
    POLICY_FILE: path.join(dir, "policy.yml"),
    QUEUE_PREFIX: prefix,
    BILLING_AGENT_SECRET: BILLING_SECRET,
    BILLING_AGENT_WEBHOOK_SECRET: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    OPS_AGENT_SECRET: OPS_SECRET,
    LOG_LEVEL: "error",
  });
});
afterAll(async () => {
  await child?.stop();
  // The server's queues leave their keys (meta, events, ids) behind: the shared Redis keeps none.
  const redis = new Redis(REDIS_URL);
  await deleteKeys(redis, `${prefix}:*`);
  redis.disconnect();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("Slack unreachable at start", () => {
  it("keeps serving and survives a click it cannot authorize", async () => {
    await sleep(1_500);
    expect((await fetch(`${child.url}/healthz`)).status).toBe(200);
    const payload = blockActionsPayload({
      user: { id: "U0ALICE", team_id: "T0TEST", name: "alice" },
      message: { channel: "C0USOPS", ts: "1.000100", text: "", blocks: [], edits: 0 },
      actionId: "cs_approve",
      value: "act_x|0",
      triggerId: "t",
    } as never);
    await sendSigned("interaction", payload, {
      url: `${child.url}/slack/events`,
      signingSecret: SIGNING_SECRET,
    }).catch(() => null);
    await sleep(1_000);
    expect(child.proc.exitCode).toBeNull();
    expect((await fetch(`${child.url}/healthz`)).status).toBe(200);
  });
});
