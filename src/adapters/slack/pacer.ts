/**
 * Slack accepts about one chat.postMessage a second per channel (short bursts pass).
 * A burst of requests to one channel is spread over slots instead of being refused with
 * 429s: an effect that finds no free slot is deferred to a slot reserved for it.
 * Per process: several instances each keep their own pace, and Slack's 429s (honoured
 * with Retry-After) catch the rest.
 */
export class ChannelPacer {
  private readonly interval: number;
  private readonly next = new Map<string, number>();
  private readonly reserved = new Map<string, number>();

  constructor(
    perSecond: number,
    private readonly burst: number,
  ) {
    this.interval = 1000 / perSecond;
  }

  /** Null: go now. A number: come back then (the slot is kept for `key`). */
  take(channel: string, key: string, now: number): number | null {
    const mine = this.reserved.get(key);
    if (mine !== undefined) {
      if (mine <= now) {
        this.reserved.delete(key);
        return null;
      }
      return mine;
    }
    // Credit for idle time, up to `burst` messages at once.
    const free = Math.max(this.next.get(channel) ?? 0, now - (this.burst - 1) * this.interval);
    this.next.set(channel, free + this.interval);
    if (free <= now) return null;
    this.reserved.set(key, free);
    return free;
  }
}
