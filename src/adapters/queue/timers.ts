/**
 * Durable deadlines. The database holds every deadline (the truth); a BullMQ delayed job
 * fires each one on time, and a sweep of the database catches any timer Redis lost
 * (a Redis without persistence, a flush) or that came due while everything was down.
 * Firing twice, late or early is harmless: the core only acts on a due, current deadline,
 * and the first transaction to commit wins.
 */
import { Queue, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Approvals } from "../../app/approvals.js";
import type { EffectOutcome } from "../../app/effects.js";
import type { Effect, TimerStore } from "../../app/ports.js";
import { throttledWarn } from "../throttle.js";

/** Due deadlines the sweep reads, and expires together, at a time. */
const SWEEP_BATCH = 200;

export interface TimerOptions {
  readonly queue: string;
  readonly prefix: string;
  readonly connection: Redis;
  /** How often the database is swept for due deadlines. */
  readonly sweepMs?: number;
}

export class Timers {
  readonly queue: Queue;
  private worker: Worker | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping = false;

  constructor(
    private readonly approvals: Approvals,
    private readonly store: TimerStore,
    private readonly log: Logger,
    private readonly options: TimerOptions,
  ) {
    this.queue = new Queue(options.queue, { connection: options.connection, prefix: options.prefix });
    this.queue.on("error", throttledWarn(this.log, "timer queue: redis error"));
  }

  start(): void {
    this.worker = new Worker(
      this.options.queue,
      async (job) => {
        const { actionId, level } = job.data as { actionId: string; level: number };
        await this.approvals.deadline(actionId, level);
      },
      { connection: this.options.connection, prefix: this.options.prefix, concurrency: 32 },
    );
    this.worker.on("error", throttledWarn(this.log, "timer worker: redis error"));
    const tick = () => {
      void this.sweep().finally(() => {
        if (this.worker) {
          this.sweepTimer = setTimeout(tick, this.options.sweepMs ?? 1_000);
          this.sweepTimer.unref();
        }
      });
    };
    tick();
  }

  /** Fire every deadline that is due now, straight from the database. */
  async sweep(): Promise<number> {
    if (this.sweeping) return 0;
    this.sweeping = true;
    let fired = 0;
    try {
      for (;;) {
        const due = await this.store.timersDue(Date.now(), SWEEP_BATCH);
        // All of a batch at once, not one after another: their writes then reach the store
        // in the same turn of the event loop, and SqliteStore commits them as one group
        // (one commit for up to 200 expiries instead of one each). The batch bounds it.
        const changed = await Promise.all(
          due.map(
            async (d) => (await this.approvals.deadline(d.id, d.level, { readDue: true })).kind === "applied",
          ),
        );
        fired += changed.filter(Boolean).length;
        // Stop when nothing moved: what is left is not due at its own level yet.
        if (due.length < SWEEP_BATCH || !changed.some(Boolean)) break;
      }
    } catch (err) {
      this.log.error({ err }, "timers: sweep failed");
    } finally {
      this.sweeping = false;
    }
    return fired;
  }

  /** The `timer` effect: make sure a delayed job will fire this deadline. */
  async schedule(e: Effect): Promise<EffectOutcome> {
    const { level, at } = e.payload as { level: number; at: number };
    if (!e.actionId) return { kind: "done" };
    await this.queue.add(
      "deadline",
      { actionId: e.actionId, level },
      {
        // One job per action and level: adding it again (a retried effect) is a no-op.
        jobId: `t-${e.actionId}-${level}`,
        delay: Math.max(0, at - Date.now()),
        removeOnComplete: true,
        removeOnFail: 1000,
        attempts: 5,
        backoff: { type: "exponential", delay: 1000 },
      },
    );
    return { kind: "done" };
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    const w = this.worker;
    this.worker = null;
    await w?.close();
    await this.queue.close();
  }
}
