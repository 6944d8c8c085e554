/**
 * The demo's executor: an approval the demo agent receives is redeemed by the demo
 * executor and its outcome reported, so the card shows the whole life of an approval.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Demo, startDemo } from "../../src/simulator/demo.js";
import { DemoAgent, demoScript } from "../../src/simulator/demo-agent.js";
import { deleteKeys, eventually, REDIS_URL } from "../support/harness.js";

let dir: string;
let demo: Demo;
let agent: DemoAgent;
const lines: string[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-demo-grants-"));
  demo = await startDemo({
    dataDir: dir,
    pagePort: 0,
    redisUrl: REDIS_URL,
    queuePrefix: `test-${randomUUID()}`,
    log: pino({ level: "silent" }),
    pollMs: 50,
    sweepMs: 100,
  });
  agent = await DemoAgent.start({
    redisUrl: REDIS_URL,
    prefix: demo.queuePrefix,
    issuer: demo.issuer,
    secrets: demo.agentSecrets,
    appUrl: demo.appUrl,
    print: (l) => lines.push(l),
    ...(demo.executor ? { executor: demo.executor } : {}),
  });
});
afterAll(async () => {
  await agent?.stop();
  await demo?.stop();
  const redis = new Redis(REDIS_URL);
  if (demo) await deleteKeys(redis, `${demo.queuePrefix}:*`);
  redis.disconnect();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("the demo executor", () => {
  it("redeems each approval the demo agent gets and reports its outcome", async () => {
    expect(demo.executor?.id).toBe("demo-executor");
    const item = demoScript({ requester: "U0REQ00001", requesterEmail: "marta@demo.invalid" }).find(
      (s) => s.request.risk_class === "low",
    )!;
    agent.run([{ atMs: 0, request: item.request }]);
    const actionId = await eventually(
      async () =>
        (await demo.app.store.getActionByRequest(item.request.agent_id, item.request.request_id))?.id,
      "the action",
    );
    const receipts = await eventually(
      async () => {
        const r = await demo.app.store.getReceipts(actionId);
        return r.length === 2 && r;
      },
      "a redeemed and an outcome receipt",
      20_000,
    );
    expect(receipts.map((r) => r.kind)).toEqual(["redeemed", "outcome"]);
    expect(lines.some((l) => l.includes("demo-executor redeemed the approval"))).toBe(true);
  });
});
