/**
 * Redis goes away mid-flow (a private redis-server, killed and restarted; never the
 * machine's shared one). The API says 503 and accepts nothing; votes still count (the
 * database is the truth); accepted work completes when Redis is back; the process does
 * not crash or log in a tight loop.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { eventually, type Harness, request, sleep, startHarness } from "../support/harness.js";
import { type PrivateRedis, startPrivateRedis } from "../support/private-redis.js";

let r: PrivateRedis;
let h: Harness;
let logLines = 0;

beforeAll(async () => {
  r = await startPrivateRedis();
  const sink = new Writable({
    write(_chunk, _enc, done) {
      logLines++;
      done();
    },
  });
  h = await startHarness({
    env: { REDIS_URL: r.url },
    log: pino(
      { level: process.env.OUTAGE_DEBUG ? "debug" : "warn" },
      process.env.OUTAGE_DEBUG ? process.stderr : sink,
    ),
  });
});
afterAll(async () => {
  // Bounded: after Redis came back, closing the harness's queues can wait on commands
  // that never resolve; the test's assertions are already done by then.
  await Promise.race([h?.stop().catch(() => {}), sleep(20_000)]);
  await r?.stop();
}, 60_000);

describe("Redis outage", () => {
  it("answers 503, keeps votes, and completes accepted work when Redis returns", async () => {
    const queued = request({
      region: "us",
      action: { type: "ops.restart", summary: "queued before the outage" },
    });
    const job = await h.submit(queued);
    const queuedCard = await h.card(queued.request_id);
    const viaHttp = await h.api("POST", "/v1/actions", { body: request() });
    expect(viaHttp.status).toBe(201);
    const httpCard = await h.card(viaHttp.json.action_id);

    await r.kill();
    logLines = 0;
    const ready = await fetch(`${h.app.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ redis: "down", database: "ok" });
    const refused = await h.api("POST", "/v1/actions", { body: request() });
    expect(refused.status).toBe(503);
    expect(refused.type).toContain("application/problem+json");
    expect(refused.json.code).toBe("unavailable");

    // Votes during the outage count: the record is issued from the database alone.
    await h.click("U0ALICE", queuedCard, ACTION_IDS.approve);
    await h.click("U0ALICE", httpCard, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "during the outage" });
    await eventually(
      async () => (await h.api("GET", `/v1/actions/${viaHttp.json.action_id}`)).json.status === "denied",
      "the HTTP request to be decided while Redis is down",
    );
    await sleep(3_000);
    // A few lines for an outage, not one per reconnect attempt.
    expect(logLines).toBeLessThan(40);

    await r.start();
    const done = (await job.waitUntilFinished(h.events, 20_000)) as { verdict: string };
    expect(done.verdict).toBe("approved");
    await eventually(async () => (await fetch(`${h.app.url}/readyz`)).status === 200, "readiness to return");
    expect((await h.api("POST", "/v1/actions", { body: request() })).status).toBe(201);
  });
});
