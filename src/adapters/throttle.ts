/**
 * While Redis is away, ioredis and BullMQ report an error on every reconnect attempt.
 * One line per outage (then a reminder with a count every `everyMs`) says the same without
 * filling the disk.
 */
import type { Logger } from "pino";

export function throttledWarn(log: Logger, what: string, everyMs = 30_000): (err: Error | string) => void {
  let last = 0;
  let suppressed = 0;
  return (err) => {
    const now = Date.now();
    if (now - last < everyMs) {
      suppressed++;
      return;
    }
    // The Error itself, so pino keeps its stack and code (a message alone loses both).
    log.warn({ err, suppressed }, what);
    last = now;
    suppressed = 0;
  };
}
