/**
 * Carries out the outbox: effects written in the transaction that decided them, run after
 * the commit. An effect due at once is leased to this process as it is written and handed
 * over after the commit (Store.handEffectsTo), so a card follows its request without a claim
 * in between; the runner also claims what is due when kicked, and polls (retries, effects
 * due later, effects left by a crashed process whose lease ran out).
 *
 * Leases are short (OUTBOX_LEASE_MS, default 8 s) and renewed by a heartbeat, every quarter
 * of a lease (so a process stalled for most of a lease on a loaded machine keeps its work), for as long as this process holds the effect: a slow webhook keeps its lease
 * while its holder lives, and a killed holder's effects (a verdict's release among them)
 * are taken over within one lease of its death rather than after the longest run.
 *
 * At-least-once: an effect that ran but was not marked done runs again after its lease.
 * Handlers make that harmless (cards are keyed on action and level; releases and
 * timers are idempotent; webhooks carry the same id on every attempt).
 */
import { assertNever } from "../domain/errors.js";
import type { Effect, EffectKind, Logger, OutboxStore } from "./ports.js";

export type EffectOutcome =
  | { readonly kind: "done" }
  /** Try again at `at` (a passing fault: Slack 5xx or 429, Redis down, ordering not met yet). */
  | { readonly kind: "retry"; readonly at: number; readonly error: string }
  /** Not yet, and not a failure: wait for a slot (per-channel pacing). Does not count as an attempt. */
  | { readonly kind: "defer"; readonly at: number }
  /** Give up: a permanent fault (channel_not_found, invalid_blocks). Kept for operators; the request still reaches its deadline. */
  | { readonly kind: "dead"; readonly error: string };

export type EffectHandler = (e: Effect) => Promise<EffectOutcome>;

export interface EffectRunnerOptions {
  readonly pollMs?: number;
  readonly leaseMs?: number;
  readonly batch?: number;
  /** Back-off for thrown errors: min(maxBackoffMs, baseBackoffMs * 2^(attempts-1)). */
  readonly baseBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** How far card updates, thread notes and DMs written during a burst are pushed back (HELD_IN_BURSTS); 0 never. */
  readonly holdBackMs?: number;
}

/**
 * Effects that need nothing else of their action to have run first: releasing the
 * agent's job, its webhook, arming a timer. They start at once instead of queueing
 * behind the action's Slack messages, so an agent hears of its verdict without waiting
 * for a card update or a thread note (and a slow Slack call never holds a release).
 * Everything else of one action (a card, its updates, its thread notes, DMs that link
 * to it) runs in the order it was written.
 */
const INDEPENDENT: ReadonlySet<EffectKind> = new Set<EffectKind>(["release", "webhook", "timer"]);

/**
 * What can wait while a burst is carried out: redrawing cards, thread notes and DMs. When
 * 10,000 deadlines expire at once they write a release, a card update and DMs each; held
 * back (written due HOLD_BACK_MS later), they are claimed after the releases instead of
 * taking two slots in three, and their Slack calls no longer compete with the expiries
 * for the event loop. With real Slack, per-channel pacing spreads them out anyway.
 */
const HELD_IN_BURSTS: ReadonlySet<EffectKind> = new Set<EffectKind>(["update_card", "thread_note", "dm"]);

/** A burst: a slot was refused to an effect being written within this long. */
const BURST_WINDOW_MS = 1_000;

export class EffectRunner {
  private handlers = new Map<EffectKind, EffectHandler>();
  private timer: NodeJS.Timeout | null = null;
  private draining: Promise<void> | null = null;
  private again = false;
  private stopped = true;
  private readonly inflight = new Set<Promise<void>>();
  /** The last effect scheduled for each action with effects in flight: the next one waits for it. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Effects claimed or handed over and not yet finished, at most `batch`. */
  private running = 0;
  /** Slots held for effects being written leased to this process, not yet handed over. */
  private reserved = 0;
  /** The last claim was cut short by `batch`: more may be due, claim again when a slot frees. */
  private backlog = false;
  /** When a slot was last refused to an effect being written (see holdBack). */
  private refusedAt: number | null = null;
  private readonly opts: Required<EffectRunnerOptions>;
  /** Each effect held (claimed or handed over, not yet recorded): its lease as last renewed. */
  private readonly leases = new Map<number, number>();
  private heartbeat: NodeJS.Timeout | null = null;
  /** The renewal under way: an outcome is recorded only once it has settled, with the lease it left. */
  private renewing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: OutboxStore,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    opts: EffectRunnerOptions = {},
  ) {
    this.opts = {
      pollMs: opts.pollMs ?? 500,
      leaseMs: opts.leaseMs ?? 8_000,
      batch: opts.batch ?? 64,
      baseBackoffMs: opts.baseBackoffMs ?? 1_000,
      maxBackoffMs: opts.maxBackoffMs ?? 5 * 60_000,
      holdBackMs: opts.holdBackMs ?? 2_000,
    };
  }

  on(kind: EffectKind, handler: EffectHandler): this {
    this.handlers.set(kind, handler);
    return this;
  }

  start(): void {
    this.stopped = false;
    this.store.handEffectsTo({
      leaseMs: this.opts.leaseMs,
      reserve: () => this.reserve(),
      holdBack: (kind) => this.holdBack(kind),
      settle: (born, reserved) => this.settle(born, reserved),
    });
    const tick = () => {
      if (this.stopped) return;
      this.kick();
      this.timer = setTimeout(tick, this.opts.pollMs);
      this.timer.unref();
    };
    tick();
    this.heartbeat = setInterval(() => this.renew(), Math.max(200, Math.floor(this.opts.leaseMs / 4)));
    this.heartbeat.unref();
  }

  /** Renews the lease of every effect this process holds (see the module comment). */
  private renew(): void {
    // Also while stopping: the runs still going keep their leases until they are recorded.
    if (!this.leases.size) return;
    const held = [...this.leases].map(([id, lease]) => ({ id, lease }));
    const lease = this.now() + this.opts.leaseMs;
    this.renewing = this.renewing
      .then(() => this.store.renewEffects(held, lease))
      .then(
        (renewed) => {
          const ok = new Set(renewed);
          for (const h of held) {
            // Recorded meanwhile, or taken over by another process: not ours to renew again.
            if (this.leases.get(h.id) !== h.lease) continue;
            if (ok.has(h.id)) this.leases.set(h.id, lease);
            else this.leases.delete(h.id);
          }
        },
        (err: unknown) => this.log.warn({ err }, "outbox: could not renew leases; retrying at the next beat"),
      );
  }

  /** Run what is due now. Cheap to call often: concurrent kicks fold into one drain. */
  kick(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = this.drain()
      .catch((e) => this.log.error({ err: e }, "outbox: drain failed"))
      .finally(() => {
        this.draining = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /**
   * An effect due at once is being written: take it at birth if a slot is free (counting
   * those already held), so that no more than `batch` run at once however fast they are
   * written (10,000 deadlines expiring together write 30,000). One refused is written
   * unleased and claimed when slots free.
   */
  private reserve(): boolean {
    if (this.stopped || this.running + this.reserved >= this.opts.batch) {
      this.backlog = true;
      this.refusedAt = this.now();
      return false;
    }
    this.reserved++;
    return true;
  }

  /** See HELD_IN_BURSTS: a burst is a slot refused within BURST_WINDOW_MS. */
  private holdBack(kind: EffectKind): number {
    if (!HELD_IN_BURSTS.has(kind) || this.refusedAt === null) return 0;
    return this.now() - this.refusedAt < BURST_WINDOW_MS ? this.opts.holdBackMs : 0;
  }

  /** Effects leased as written, their transaction committed: they start now. */
  private settle(born: readonly Effect[], reserved: number): void {
    this.reserved -= reserved;
    // Stopping: not started here, so the lease runs out and the next process runs them.
    if (!this.stopped) for (const e of born) this.schedule(e);
    // A slot held for a write that rolled back is free again.
    if (this.backlog && this.running <= this.opts.batch / 2) this.kick();
  }

  /**
   * Claims what is due, up to `batch` effects in flight, and starts each without waiting
   * for the others: a slow call (a webhook receiver taking seconds) holds only the effects
   * of its own action, never the rest of the outbox. A freed slot claims again.
   */
  private async drain(): Promise<void> {
    for (;;) {
      const room = this.opts.batch - this.running;
      if (room <= 0) {
        this.backlog = true;
        return;
      }
      const due = await this.store.claimEffects(this.now(), room, this.opts.leaseMs);
      for (const e of due) this.schedule(e);
      this.backlog = due.length === room;
      if (!this.backlog) return;
    }
  }

  /**
   * Runs `e` after the effect scheduled before it for the same action (a card before its
   * update: they were claimed in the order they were written), or at once if it is
   * independent of its action's other effects.
   */
  private schedule(e: Effect): void {
    this.running++;
    this.leases.set(e.id, e.lease);
    const key = INDEPENDENT.has(e.kind) || e.actionId === null ? null : e.actionId;
    const before = key === null ? undefined : this.chains.get(key);
    const run: Promise<void> = (before ?? Promise.resolve())
      .then(() => {
        // It waited behind its action's earlier effects: if its lease ran out meanwhile,
        // another process may hold it now, and running it here would only double the work.
        const lease = this.leases.get(e.id) ?? 0;
        if (lease <= this.now()) {
          this.log.debug(
            { effect: e.kind, action: e.actionId },
            "outbox: lease ran out before the effect started",
          );
          this.leases.delete(e.id);
          return;
        }
        // With the lease as renewed, which is the one its handler may name (a webhook's attempt).
        return this.runOne({ ...e, lease });
      })
      .catch((err: unknown) => this.log.error({ err, effect: e.kind }, "outbox: effect run failed"))
      .finally(() => {
        this.running--;
        this.inflight.delete(run);
        if (key !== null && this.chains.get(key) === run) this.chains.delete(key);
        // Claim again once half the slots are free, not for each one: a claim is a query.
        if (this.backlog && this.running <= this.opts.batch / 2) this.kick();
      });
    if (key !== null) this.chains.set(key, run);
    this.inflight.add(run);
  }

  /**
   * Runs the effect's handler, and records its outcome without making the action's next
   * effect wait for that write: the next one may start once this one has run. A crash
   * before the outcome is written only runs this effect once more (at-least-once).
   */
  private async runOne(e: Effect): Promise<void> {
    const outcome = await this.outcomeOf(e);
    const recording = this.record(e, outcome);
    this.inflight.add(recording);
    void recording.finally(() => this.inflight.delete(recording));
  }

  private async outcomeOf(e: Effect): Promise<EffectOutcome> {
    const handler = this.handlers.get(e.kind);
    let outcome: EffectOutcome;
    if (!handler) {
      outcome = {
        kind: "retry",
        at: this.now() + this.opts.leaseMs,
        error: `no handler for ${e.kind} in this process`,
      };
    } else {
      try {
        outcome = await handler(e);
      } catch (err) {
        const backoff = Math.min(
          this.opts.maxBackoffMs,
          this.opts.baseBackoffMs * 2 ** Math.max(0, e.attempts - 1),
        );
        outcome = { kind: "retry", at: this.now() + backoff, error: errorText(err) };
      }
    }
    return outcome;
  }

  private async record(held: Effect, outcome: EffectOutcome): Promise<void> {
    // The lease as the heartbeat left it; from here on the heartbeat leaves it alone.
    await this.renewing;
    const e = { ...held, lease: this.leases.get(held.id) ?? held.lease };
    this.leases.delete(held.id);
    try {
      let held: boolean;
      switch (outcome.kind) {
        case "done":
          held = await this.store.completeEffect(e.id, e.lease, this.now());
          break;
        case "defer":
          held = await this.store.deferEffect(e.id, e.lease, outcome.at);
          break;
        case "retry":
          this.log.warn(
            { effect: e.kind, action: e.actionId, attempts: e.attempts, error: outcome.error },
            "outbox: effect will be retried",
          );
          held = await this.store.retryEffect(e.id, e.lease, outcome.at, outcome.error);
          break;
        case "dead":
          this.log.error(
            { effect: e.kind, action: e.actionId, error: outcome.error },
            "outbox: effect failed for good",
          );
          held = await this.store.killEffect(e.id, e.lease, outcome.error, this.now());
          break;
        default:
          assertNever(outcome);
      }
      if (!held) {
        // This run outlived its lease and another process took the effect over: the
        // outcome is the new holder's to record.
        this.log.warn(
          { effect: e.kind, action: e.actionId },
          "outbox: lease lost; outcome left to its new holder",
        );
      }
    } catch (err) {
      // The lease will run out and the effect will run again: at-least-once, never lost.
      this.log.error({ err, effect: e.kind }, "outbox: could not record the outcome");
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.store.handEffectsTo(null);
    if (this.timer) clearTimeout(this.timer);
    await this.draining;
    // Runs still going record their outcomes as they end: wait for those writes too.
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.renewing;
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const data = (err as { data?: { error?: string } }).data;
    return data?.error ? `${err.message} (${data.error})` : err.message;
  }
  return String(err);
}
