/**
 * Fault injection: queued per method, each fault used for a number of calls, so a test
 * can make Slack rate-limit, fail, stall or drop the connection at a chosen call.
 */
import type { Obj } from "./state.js";
import type { SlackFault } from "./types.js";

export interface FaultAnswer {
  status: number;
  body: Obj;
  headers?: Record<string, string>;
}

export class FaultQueues {
  private readonly queues = new Map<string, { fault: SlackFault; remaining: number }[]>();

  add(method: string, fault: SlackFault, times: number): void {
    const queue = this.queues.get(method) ?? [];
    queue.push({ fault, remaining: times });
    this.queues.set(method, queue);
  }

  /** The fault for this call of `method`, if one is queued; counts it as used. */
  take(method: string): SlackFault | undefined {
    const queue = this.queues.get(method);
    const head = queue?.[0];
    if (!queue || !head) return undefined;
    head.remaining -= 1;
    if (head.remaining <= 0) queue.shift();
    return head.fault;
  }
}

/** Whether the fault changes the answer (rather than only delaying or dropping it). */
export function isFailing(fault: SlackFault | undefined): fault is SlackFault {
  return fault !== undefined && (fault.status !== undefined || fault.error !== undefined);
}

/** The answer Slack gives for a fault: 429 with Retry-After, a 5xx, or `{ok: false}` at 200. */
export function faultAnswer(fault: SlackFault): FaultAnswer {
  const status = fault.status ?? (fault.error === "ratelimited" ? 429 : 200);
  if (status === 429) {
    return {
      status,
      body: { ok: false, error: fault.error ?? "ratelimited" },
      headers: { "retry-after": String(fault.retryAfter ?? 1) },
    };
  }
  return {
    status,
    body: { ok: false, error: fault.error ?? (status >= 500 ? "internal_error" : "fatal_error") },
  };
}
