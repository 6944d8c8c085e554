/**
 * The intake on BullMQ. A job is accepted (or refused) once, then parks in BullMQ's
 * delayed set until its verdict exists: it holds no worker slot, so thousands can wait.
 * The verdict's `release` effect promotes it; the worker then sees the verdict in the
 * database and completes the job with the record.
 */
import { DelayedError, type Job, Queue, UnrecoverableError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Approvals } from "../../app/approvals.js";
import type { EffectOutcome } from "../../app/effects.js";
import type { Effect, IntakeStore } from "../../app/ports.js";
import { type ActionRequest, RejectionError } from "../../domain/types.js";
import { decidedRequestOf } from "../../records/decided.js";
import { throttledWarn } from "../throttle.js";

export interface IntakeResult {
  action_id: string;
  request_id: string;
  verdict: string;
  record: string;
  /** The request as decided: the one the record's action_sha256 covers. */
  request: ActionRequest;
}

/** Job ids restart when Redis is emptied; the add time keeps a key from naming two jobs. */
export function jobKey(queue: string, job: Pick<Job, "id" | "timestamp">): string {
  return `${queue}|${job.id}|${job.timestamp}`;
}

export interface IntakeOptions {
  readonly queue: string;
  readonly prefix: string;
  readonly connection: Redis;
  readonly concurrency?: number;
  /** How long a parked job sleeps before it looks again by itself, should a release be missed. */
  readonly safetyNetMs?: number;
  /**
   * BullMQ lock: how soon a job held by a dead process is taken over (renewed at half; the
   * stalled check runs every half lock, so a dead holder's job is back within 1.5 locks).
   */
  readonly lockMs?: number;
}

export class Intake {
  private worker: Worker | null = null;
  readonly queue: Queue;

  constructor(
    private readonly approvals: Approvals,
    private readonly store: IntakeStore,
    private readonly log: Logger,
    private readonly options: IntakeOptions,
  ) {
    this.queue = new Queue(options.queue, { connection: options.connection, prefix: options.prefix });
    this.queue.on("error", throttledWarn(this.log, "intake queue: redis error"));
  }

  start(): void {
    this.worker = new Worker(this.options.queue, (job, token) => this.process(job, token), {
      connection: this.options.connection,
      prefix: this.options.prefix,
      concurrency: this.options.concurrency ?? 64,
      lockDuration: this.options.lockMs ?? 6_000,
      stalledInterval: Math.max(500, Math.floor((this.options.lockMs ?? 6_000) / 2)),
      // A stalled job (its holder killed, or a loop blocked past the short lock) goes back to
      // wait and is taken up again, however often: process() is idempotent (the job's key
      // finds its action). BullMQ's default of 1 would fail a job that stalled twice with
      // "job stalled more than allowable limit", which is not a refusal: the agent must
      // only ever see a failure with a `rejected:` reason.
      maxStalledCount: Number.MAX_SAFE_INTEGER,
      // A parked job is promoted, not retried: failures here are refusals, which never retry.
      autorun: true,
    });
    this.worker.on("error", throttledWarn(this.log, "intake worker: redis error"));
  }

  private async process(job: Job, token?: string): Promise<IntakeResult> {
    const key = jobKey(this.options.queue, job);
    let actionId = (await this.store.findJob(key))?.actionId;
    if (!actionId) {
      const data = job.data as unknown;
      const { request, proof } =
        typeof data === "object" && data !== null && !Array.isArray(data)
          ? (data as { request?: unknown; proof?: unknown })
          : {};
      try {
        if (typeof data !== "object" || data === null || Array.isArray(data)) {
          const e = new RejectionError("invalid_request", "job data must be an object {request, proof}");
          await this.approvals.recordRejection(e, undefined, "queue");
          throw e;
        }
        if (typeof proof !== "string") {
          const e = new RejectionError(
            "bad_proof",
            "job data has no proof: expected {request, proof: <JWT>}",
            [{ path: "proof", message: "required" }],
          );
          await this.approvals.recordRejection(e, request, "queue");
          throw e;
        }
        const r = await this.approvals.submit({
          request,
          proof,
          judgedAt: new Date(job.timestamp),
          via: "queue",
          job: { key, id: String(job.id) },
        });
        actionId = r.action.id;
      } catch (e) {
        if (e instanceof RejectionError) throw new UnrecoverableError(e.failedReason);
        // A passing fault (database busy, a crash of ours): try again shortly without
        // failing the job, since agents add jobs with BullMQ's default of one attempt.
        this.log.error({ err: e, job: job.id }, "intake: could not process a job; it will be retried");
        await job.moveToDelayed(Date.now() + 2_000, token);
        throw new DelayedError();
      }
    }
    const done = await this.finished(actionId, key);
    if (done) return done;
    await job.moveToDelayed(Date.now() + (this.options.safetyNetMs ?? 10 * 60_000), token);
    // The verdict may have committed between the look above and the move: its release
    // found the job active and could not promote it. Look once more now that it is parked.
    if (await this.finished(actionId, null)) await job.promote();
    throw new DelayedError();
  }

  private async finished(actionId: string, key: string | null): Promise<IntakeResult | null> {
    const a = await this.store.getAction(actionId);
    if (a?.status !== "decided") return null;
    const rec = await this.store.getRecord(actionId);
    if (!rec) return null;
    if (key) await this.store.markJobsReleased([key], Date.now());
    return {
      action_id: a.id,
      request_id: a.requestId,
      verdict: a.verdict!,
      record: rec.jws,
      // The request as decided: the agent's own, or the revision approvers changed it to.
      request: decidedRequestOf(a.request, rec.jws),
    };
  }

  /** The `release` effect: wake every job waiting for this action's verdict. */
  async release(e: Effect): Promise<EffectOutcome> {
    if (e.actionId) await this.releaseAction(e.actionId);
    return { kind: "done" };
  }

  /**
   * At start: the verdicts committed but not yet released (a process killed between its
   * commit and its release) are released now, rather than when the dead process's lease
   * on their `release` effect runs out. Releasing twice is harmless. Returns how many.
   */
  async releaseUnreleased(): Promise<number> {
    let n = 0;
    for (let round = 0; round < 1_000; round++) {
      const ids = await this.store.unreleasedDecided(100);
      for (const id of ids) await this.releaseAction(id);
      n += ids.length;
      if (ids.length < 100) break;
    }
    return n;
  }

  private async releaseAction(actionId: string): Promise<void> {
    const jobs = await this.store.unreleasedJobs(actionId);
    const released: string[] = [];
    for (const j of jobs) {
      const job = await this.queue.getJob(j.id);
      if (!job || jobKey(this.options.queue, job) !== j.key) {
        released.push(j.key); // gone (removed, or Redis emptied): nobody left to tell
        continue;
      }
      const st = await job.getState();
      if (st === "delayed") await job.promote();
      released.push(j.key);
    }
    await this.store.markJobsReleased(released, Date.now());
  }

  async stop(): Promise<void> {
    await this.worker?.close();
    await this.queue.close();
  }
}
