/**
 * `countersign demo --socket-mode`, without a browser: the demo's app opens its socket on
 * the simulator, and the page's own endpoints (what the browser calls) approve a request
 * and run /approvals over it. Needs the shared Redis (a fresh queue prefix).
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { ActionRequest } from "../../src/domain/types.js";
import { type Demo, startDemo } from "../../src/simulator/demo.js";
import { DemoAgent } from "../../src/simulator/demo-agent.js";
import { deleteKeys, eventually, REDIS_URL } from "../support/harness.js";

let dir: string;
let demo: Demo;
let agent: DemoAgent;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-demo-socket-"));
  demo = await startDemo({
    dataDir: dir,
    pagePort: 0,
    redisUrl: REDIS_URL,
    queuePrefix: `test-${randomUUID()}`,
    log: pino({ level: "silent" }),
    pollMs: 50,
    sweepMs: 100,
    socketMode: true,
  });
  agent = await DemoAgent.start({
    redisUrl: REDIS_URL,
    prefix: demo.queuePrefix,
    issuer: demo.issuer,
    secrets: demo.agentSecrets,
    appUrl: demo.appUrl,
    print: () => {},
  });
});

afterAll(async () => {
  await agent?.stop();
  await demo?.stop();
  // The demo's queues leave their keys (meta, events, ids) behind: the shared Redis keeps none.
  const redis = new Redis(REDIS_URL);
  if (demo) await deleteKeys(redis, `${demo.queuePrefix}:*`);
  redis.disconnect();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** POST to the page as the browser does (same origin, JSON). */
async function page(endpoint: string, body: unknown): Promise<{ status: number; body: string }> {
  const res = await fetch(new URL(endpoint, demo.pageUrl), {
    method: "POST",
    headers: { "content-type": "application/json", origin: demo.pageUrl.replace(/\/$/, "") },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { status: number; body: string };
  expect(res.status, JSON.stringify(json)).toBe(200);
  return json;
}

describe("the demo in Socket Mode", () => {
  it("connects over the socket and never writes the app token into secrets.json", async () => {
    expect(demo.mode).toBe("socket");
    await demo.sim.socket!.waitForConnection();
    expect(fs.readFileSync(demo.files.secretsFile, "utf8")).not.toContain("xapp-");
  });

  it("the page's clicks and /approvals go over the socket and come back from the ack", async () => {
    const request: ActionRequest = {
      request_id: `sock-${randomUUID()}`,
      agent_id: "infra-agent",
      action: { type: "infra.restart", summary: "Restart the cache tier (socket demo)" },
      risk_class: "medium",
      region: "eu",
      purpose: "Memory leak after the last deploy",
    } as ActionRequest;
    const job = await agent.submit(request);
    const card = await eventually(
      async () =>
        demo.sim
          .messages()
          .find((m) => JSON.stringify(m.blocks ?? []).includes("Restart the cache tier (socket demo)")),
      "the card",
      20_000,
    );
    const before = demo.sim.socket!.envelopes.length;
    const list = await page("/page/command", { user: "U0SRE00001", text: "/approvals" });
    expect(list.body).toContain("Restart the cache tier (socket demo)");
    for (const user of ["U0SRE00001", "U0SRE00002"]) {
      const r = await page("/page/click", {
        user,
        channel: card.channel,
        ts: card.ts,
        actionId: ACTION_IDS.approve,
      });
      expect(r.status).toBe(200);
    }
    const sent = demo.sim.socket!.envelopes.slice(before);
    expect(sent.map((e) => e.type)).toEqual(["slash_commands", "interactive", "interactive"]);
    expect(sent.every((e) => e.ack !== undefined)).toBe(true);
    const outcome = await agent.outcome(job, request, 20_000);
    expect(outcome.claims.verdict).toBe("approved");
  });
});
