/**
 * An agent with many approvals in flight on one QueueEvents: no MaxListenersExceededWarning
 * (BullMQ's waitUntilFinished adds listeners per job; the SDK shares one), and every
 * verdict still reaches its own handle.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { type JWKS, requestApproval } from "../../src/sdk/index.js";
import { BILLING_SECRET, type Harness, ISSUER, request, startHarness } from "../support/harness.js";

let h: Harness;
let jwks: JWKS;
const identity = { agentId: "billing-agent", issuer: ISSUER, key: { hmacSecret: BILLING_SECRET } };

beforeAll(async () => {
  h = await startHarness();
  jwks = (await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json()) as JWKS;
});
afterAll(async () => {
  await h?.stop();
});

describe("SDK: many approvals at once on the queue", () => {
  it("waits for 15 verdicts at once without a MaxListenersExceededWarning", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => {
      if (w.name === "MaxListenersExceededWarning") warnings.push(w);
    };
    process.on("warning", onWarning);
    try {
      const reqs = Array.from({ length: 15 }, (_, i) =>
        request({ region: "us", action: { type: "ops.restart", summary: `Restart worker ${i}` } }),
      );
      const handles = await Promise.all(
        reqs.map((req) =>
          requestApproval(req, {
            identity,
            transport: { kind: "queue", queue: h.queue, queueEvents: h.events },
            jwks,
          }),
        ),
      );
      const verdicts = handles.map((x) => x.verdict({ timeoutMs: 60_000 }));
      for (const req of reqs) {
        const card = await h.card(req.request_id, 0, 30_000);
        await h.click("U0ALICE", card, ACTION_IDS.approve);
      }
      const done = await Promise.all(verdicts);
      expect(done.map((d) => d.claims.request_id)).toEqual(reqs.map((r) => r.request_id));
      // A warning is emitted on the next tick after the listener that tripped it.
      await new Promise((r) => setTimeout(r, 100));
      expect(warnings.map((w) => w.message)).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  }, 120_000);

  it("a wait that times out leaves the job pending and can be taken up again", async () => {
    const req = request({ region: "us", action: { type: "ops.restart", summary: "Restart later" } });
    const handle = await requestApproval(req, {
      identity,
      transport: { kind: "queue", queue: h.queue, queueEvents: h.events },
      jwks,
    });
    const err = await handle.verdict({ timeoutMs: 300 }).catch((e: Error) => e);
    expect((err as Error).name).toBe("WaitTimeout");
    const card = await h.card(req.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    expect((await handle.verdict({ timeoutMs: 30_000 })).verdict).toBe("approved");
    // Finished before this wait began: answered from the job itself.
    expect((await handle.verdict({ timeoutMs: 30_000 })).verdict).toBe("approved");
  }, 60_000);
});
