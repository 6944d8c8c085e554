/**
 * The real server as a child process, killed with SIGKILL and started again: timers are
 * durable, and two running instances never fire one twice.
 */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RecordClaims } from "../../src/domain/types.js";
import { waitForJob } from "../../src/sdk/finished.js";
import { type Chaos, startChaos } from "../support/chaos.js";
import { eventually } from "../support/harness.js";

let c: Chaos;
beforeAll(async () => {
  c = await startChaos({ timeout: "2s", onTimeout: "deny" });
});
afterAll(async () => {
  await c?.stop();
});

describe("durable timers", () => {
  it("a deadline that falls while the process is dead (kill -9) fires when it starts again", async () => {
    const first = await c.child();
    const { job } = await c.submit();
    await eventually(async () => c.sim.messages("C0USOPS").length > 0, "the card to be posted", 15_000);
    await first.kill9();
    await new Promise((r) => setTimeout(r, 2_500)); // the 2 s deadline passes while nothing runs
    const second = await c.child();
    const r = (await job.waitUntilFinished(c.events, 15_000)) as { verdict: string; record: string };
    expect(r.verdict).toBe("expired");
    expect((decodeJwt(r.record) as unknown as RecordClaims).reason_code).toBe("timeout");
    await second.stop();
  });

  it("two instances on one database and Redis fire a deadline once: one record, one expiry event", async () => {
    const [a, b] = await Promise.all([c.child(), c.child()]);
    const jobs = await Promise.all(Array.from({ length: 10 }, () => c.submit()));
    const results = (await Promise.all(
      jobs.map(({ job }) => waitForJob(job, c.queue, c.events, 20_000)),
    )) as {
      action_id: string;
      verdict: string;
    }[];
    expect(results.every((r) => r.verdict === "expired")).toBe(true);
    const sqlite = c.db();
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
    await Promise.all([a.stop(), b.stop()]);
  });
});
