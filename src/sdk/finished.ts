/**
 * Waiting for many jobs on one QueueEvents. BullMQ's `job.waitUntilFinished` adds a
 * `closing` listener to the Queue and two listeners to the QueueEvents per job, so an agent
 * with a dozen approvals in flight trips Node's MaxListenersExceededWarning (at 11), a
 * warning that hides real leaks. Here each QueueEvents gets one `completed` and one
 * `failed` listener, and each Queue one `closing` listener, shared by every waiting job
 * through a map keyed by job id; a finished or timed-out wait removes only its map entry.
 */
import type { Job, Queue, QueueEvents } from "bullmq";

interface Waiter {
  readonly queue: Queue;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface Hub {
  readonly waiters: Map<string, Set<Waiter>>;
}

const hubs = new WeakMap<QueueEvents, Hub>();
const closingQueues = new WeakMap<Queue, Set<Hub>>();

function hubFor(events: QueueEvents): Hub {
  let hub = hubs.get(events);
  if (hub) return hub;
  const h: Hub = { waiters: new Map() };
  const settle = (jobId: string, f: (w: Waiter) => void) => {
    const set = h.waiters.get(jobId);
    if (!set) return;
    h.waiters.delete(jobId);
    for (const w of set) f(w);
  };
  events.on("completed", ({ jobId, returnvalue }: { jobId: string; returnvalue: unknown }) =>
    settle(jobId, (w) => w.resolve(returnvalue)),
  );
  events.on("failed", ({ jobId, failedReason }: { jobId: string; failedReason: string }) =>
    settle(jobId, (w) => w.reject(new Error(failedReason))),
  );
  hubs.set(events, h);
  hub = h;
  return hub;
}

/** One `closing` listener per Queue: a closing queue fails the waits of its own jobs. */
function watchClosing(queue: Queue, hub: Hub): void {
  let set = closingQueues.get(queue);
  if (!set) {
    const hubsOfQueue = new Set<Hub>();
    set = hubsOfQueue;
    closingQueues.set(queue, hubsOfQueue);
    // `closing` is emitted by every Queue (BullMQ's own waitUntilFinished listens to it) but is not in its typed events.
    (queue as unknown as NodeJS.EventEmitter).on("closing", (msg: string) => {
      for (const h of hubsOfQueue) {
        for (const [jobId, waiters] of h.waiters) {
          for (const w of waiters) {
            if (w.queue !== queue) continue;
            waiters.delete(w);
            w.reject(new Error(msg || `queue ${queue.name} is closing`));
          }
          if (waiters.size === 0) h.waiters.delete(jobId);
        }
      }
    });
  }
  set.add(hub);
}

/**
 * Resolves with the job's return value, or rejects with its failedReason, as BullMQ's
 * `waitUntilFinished` does; `ttlMs` (if given) rejects with a time-out message first.
 */
export async function waitForJob(
  job: Job,
  queue: Queue,
  events: QueueEvents,
  ttlMs?: number,
): Promise<unknown> {
  const id = job.id;
  if (id === undefined) throw new Error("the job has no id");
  const hub = hubFor(events);
  watchClosing(queue, hub);
  return new Promise<unknown>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const waiter: Waiter = {
      queue,
      resolve: (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      reject: (e) => {
        clearTimeout(timer);
        reject(e);
      },
    };
    const remove = () => {
      const set = hub.waiters.get(id);
      set?.delete(waiter);
      if (set?.size === 0) hub.waiters.delete(id);
    };
    let set = hub.waiters.get(id);
    if (!set) {
      set = new Set();
      hub.waiters.set(id, set);
    }
    set.add(waiter);
    if (ttlMs !== undefined) {
      timer = setTimeout(() => {
        remove();
        reject(new Error(`job ${id} did not finish within ${ttlMs} ms`));
      }, ttlMs);
    }
    // The job may have finished before the listener was there: once the QueueEvents is
    // listening, look at the job itself (an event after this point reaches the map).
    void (async () => {
      try {
        await events.waitUntilReady();
        const state = await job.getState();
        if (state !== "completed" && state !== "failed") return;
        const fresh = await (job.constructor as typeof Job).fromId(queue, id);
        if (!hub.waiters.get(id)?.has(waiter)) return;
        remove();
        if (state === "completed") waiter.resolve(fresh?.returnvalue);
        else waiter.reject(new Error(fresh?.failedReason ?? "the job failed"));
      } catch (e) {
        if (!hub.waiters.get(id)?.has(waiter)) return;
        remove();
        waiter.reject(e instanceof Error ? e : new Error(String(e)));
      }
    })();
  });
}
