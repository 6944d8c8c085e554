/**
 * Tells waiting long-polls that an action was decided. A verdict is published on a Redis
 * channel after its transaction commits, so a long-poll held by any instance wakes,
 * whichever instance decided. Waiters re-read the database: the message carries no
 * state of its own, only "look again".
 */
import { EventEmitter } from "node:events";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { throttledWarn } from "../throttle.js";

export class VerdictBus {
  private readonly local = new EventEmitter();
  private sub: Redis | null = null;
  private readonly channel: string;

  constructor(
    private readonly pub: Redis,
    prefix: string,
    private readonly log: Logger,
  ) {
    this.channel = `${prefix}:countersign:verdicts`;
    // Hundreds of long-polls may wait on different actions at once.
    this.local.setMaxListeners(0);
  }

  async start(): Promise<void> {
    this.sub = this.pub.duplicate();
    this.sub.on("error", throttledWarn(this.log, "verdicts: subscriber error"));
    this.sub.on("message", (_ch, actionId: string) => this.local.emit(actionId));
    await this.sub
      .subscribe(this.channel)
      .catch((err) => this.log.warn({ err }, "verdicts: subscribe failed"));
  }

  /** After commit. Wakes local waiters at once; other instances through Redis. */
  decided(actionId: string): void {
    this.local.emit(actionId);
    this.pub.publish(this.channel, actionId).catch((err) => {
      // Other instances' waiters still wake at their wait's end and re-read the database.
      this.log.warn({ err }, "verdicts: publish failed");
    });
  }

  /** Resolves true when a verdict for actionId is announced, false after ms. */
  wait(actionId: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        this.local.off(actionId, onEvent);
        signal?.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const onEvent = () => done(true);
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), ms);
      this.local.on(actionId, onEvent);
      signal?.addEventListener("abort", onAbort);
    });
  }

  async stop(): Promise<void> {
    this.local.removeAllListeners();
    this.sub?.disconnect();
  }
}
