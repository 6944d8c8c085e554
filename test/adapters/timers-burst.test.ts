/**
 * In a burst (the sweep working through full batches of due deadlines), a BullMQ firing
 * leaves the deadline to the sweep instead of expiring it a second time; outside a burst
 * the firing expires it as before. Nothing is lost either way: the sweep reads the
 * database again after each full batch.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Timers } from "../../src/adapters/queue/timers.js";
import type { Approvals } from "../../src/app/approvals.js";
import type { TimerStore } from "../../src/app/ports.js";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

describe("timers in a burst", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function rig(dueCount: number) {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const prefix = `test-timers-${randomUUID()}`;
    // The database: dueCount deadlines due; each is expired once, by whoever fires it first.
    const pending = new Set(Array.from({ length: dueCount }, (_, i) => `act_${i}`));
    const fired: { id: string; by: "sweep" | "job" }[] = [];
    let release: () => void = () => {};
    let gate: Promise<void> = Promise.resolve();
    // Calls from the holdFrom-th on wait for the gate.
    let calls = 0;
    let holdFrom = Number.POSITIVE_INFINITY;
    const store = {
      timersDue: async (_until: number, limit: number) =>
        [...pending].slice(0, limit).map((id) => ({ id, level: 0, at: 0 })),
    } as unknown as TimerStore;
    const approvals = {
      deadline: async (id: string, _level: number, opts: { readDue?: boolean } = {}) => {
        if (calls++ >= holdFrom) await gate;
        fired.push({ id, by: opts.readDue ? "sweep" : "job" });
        if (!pending.delete(id)) return { kind: "refused", code: "already_decided", reason: "" };
        return { kind: "applied" };
      },
    } as unknown as Approvals;
    const timers = new Timers(approvals, store, pino({ level: "silent" }), {
      queue: "timers",
      prefix,
      connection: redis,
      sweepMs: 60_000,
    });
    cleanups.push(async () => {
      await timers.stop();
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    });
    return {
      timers,
      pending,
      fired,
      /** The next `after` calls go through; the ones after them wait for release. */
      holdAfter: (after: number) => {
        calls = 0;
        holdFrom = after;
        gate = new Promise((r) => {
          release = r;
        });
      },
      release: () => release(),
    };
  }

  it("a firing during a burst is left to the sweep, which expires it; outside a burst the firing expires it", async () => {
    const r = await rig(450);
    r.timers.start(); // the first sweep, with nothing held, expires all 450 (three batches)
    await expect.poll(() => r.pending.size, { timeout: 10_000 }).toBe(0);
    // A new backlog: 450 due again; hold the sweep inside its second batch (a burst).
    for (let i = 0; i < 450; i++) r.pending.add(`late_${i}`);
    // The first batch of 200 goes through; the second waits, inside the burst.
    r.holdAfter(200);
    const sweep = r.timers.sweep();
    await expect.poll(() => r.fired.filter((f) => f.id.startsWith("late_")).length).toBe(200);
    // In the burst now: a timer firing for a deadline due is left to the sweep.
    r.pending.add("timer_1");
    await r.timers.queue.add("deadline", { actionId: "timer_1", level: 0 }, { jobId: "t-timer_1-0" });
    await expect.poll(() => r.timers.queue.getCompletedCount(), { timeout: 10_000 }).toBe(1);
    expect(r.fired.some((f) => f.id === "timer_1")).toBe(false);
    r.release();
    await sweep;
    // The sweep expired it, and everything else: nothing lost.
    expect(r.pending.size).toBe(0);
    expect(r.fired.filter((f) => f.id === "timer_1").map((f) => f.by)).toEqual(["sweep"]);
    // Outside a burst a firing expires its deadline itself.
    r.pending.add("timer_2");
    await r.timers.queue.add("deadline", { actionId: "timer_2", level: 0 }, { jobId: "t-timer_2-0" });
    await expect
      .poll(() => r.fired.some((f) => f.id === "timer_2" && f.by === "job"), { timeout: 10_000 })
      .toBe(true);
    expect(r.pending.size).toBe(0);
  }, 30_000);
});
