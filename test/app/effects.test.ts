/**
 * The outbox runner against a real SQLite store: effects of one action run in the order
 * they were written, independent ones (release, webhook, timer) and other actions' do not
 * wait behind a slow call, no more than `batch` claimed run at once, and effects written
 * while the runner runs are handed to it at their commit (handed over) rather than claimed.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SqliteStore } from "../../src/adapters/db/sqlite.js";
import { type EffectOutcome, EffectRunner } from "../../src/app/effects.js";
import type { Effect, EffectKind, NewAction, NewEffect } from "../../src/app/ports.js";
import { requestDigest } from "../../src/domain/canonical.js";
import type { ActionRequest } from "../../src/domain/types.js";

const T0 = Date.parse("2030-01-07T09:00:00Z");
const KINDS: EffectKind[] = ["post_card", "update_card", "thread_note", "dm", "release", "webhook", "timer"];

let dir: string;
let store: SqliteStore;
let runner: EffectRunner | null;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-effects-"));
  store = new SqliteStore(path.join(dir, "store.db"));
  runner = null;
});

afterEach(async () => {
  await runner?.stop();
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function newAction(): NewAction {
  const r: ActionRequest = {
    request_id: `req-${randomUUID()}`,
    agent_id: "billing-agent",
    action: { type: "payments.refund", summary: "Refund order 1234" },
    risk_class: "high",
    region: "eu",
    purpose: "a test",
  };
  return {
    id: `act_${randomUUID()}`,
    agentId: r.agent_id,
    requestId: r.request_id,
    request: r,
    requestSha256: requestDigest(r),
    actionType: r.action.type,
    riskClass: r.risk_class,
    region: r.region,
    routeName: "r",
    level: 0,
    quorum: 1,
    eligible: null,
    deadlineAt: null,
    capAt: null,
    policySha256: "p",
    requestedAt: T0,
  };
}

/** An action in the store whose outbox holds `effects`, written in this order. */
async function actionWith(
  effects: readonly NewEffect[],
  decision?: Parameters<SqliteStore["admit"]>[0]["decision"],
): Promise<string> {
  const a = newAction();
  await store.admit({
    ...(decision ? { decision } : {}),
    action: a,
    proof: null,
    job: null,
    maxPending: 1000,
    events: [],
    effects: () => effects,
    // Due now, by the runner's clock.
    now: Date.now(),
  });
  return a.id;
}

interface Run {
  readonly key: string;
  readonly start: number;
  end: number;
  /** Whether the lease was still this runner's when the handler started. */
  readonly leaseHeld: boolean;
}

/**
 * Handlers that log each run; an effect whose dedupe key is in `slow` takes that long
 * (the first time only: a run that outlives its lease is run again, and must finish).
 */
function startRunner(
  slow: Record<string, number>,
  batch = 64,
  leaseMs = 30_000,
  pollMs = 20,
  holdBackMs?: number,
): Run[] {
  const runs: Run[] = [];
  const t0 = performance.now();
  runner = new EffectRunner(store, pino({ level: "silent" }), Date.now, {
    batch,
    pollMs,
    leaseMs,
    ...(holdBackMs !== undefined ? { holdBackMs } : {}),
  });
  for (const kind of KINDS) {
    runner.on(kind, async (e: Effect): Promise<EffectOutcome> => {
      const run: Run = {
        key: e.dedupeKey,
        start: performance.now() - t0,
        end: 0,
        leaseHeld: e.lease > Date.now(),
      };
      runs.push(run);
      const ms = slow[e.dedupeKey] ?? 1;
      delete slow[e.dedupeKey];
      await new Promise((r) => setTimeout(r, ms));
      run.end = performance.now() - t0;
      return { kind: "done" };
    });
  }
  runner.start();
  return runs;
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const stop = Date.now() + ms;
  while (!check()) {
    if (Date.now() > stop) throw new Error("timed out waiting for the outbox");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Every effect marked done. The store commits writes in groups a turn after they are asked
 * for, so the last completion lands a little after its handler returned: wait for it.
 */
async function allDone(): Promise<void> {
  const stop = Date.now() + 5_000;
  while ((await store.pendingEffectCount()) > 0) {
    if (Date.now() > stop) throw new Error(`${await store.pendingEffectCount()} effects still pending`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("EffectRunner", () => {
  it("runs one action's Slack effects in order, and lets its release and other actions pass a slow one", async () => {
    const a = await actionWith([
      { kind: "post_card", dedupeKey: "a:card" },
      { kind: "thread_note", dedupeKey: "a:note" },
      { kind: "release", dedupeKey: "a:release" },
      { kind: "webhook", dedupeKey: "a:webhook" },
      { kind: "update_card", dedupeKey: "a:update" },
    ]);
    await actionWith([{ kind: "post_card", dedupeKey: "b:card" }]);
    const runs = startRunner({ "a:card": 300 });
    await until(() => runs.filter((r) => r.end > 0).length === 6);
    const at = (k: string) => runs.find((r) => r.key === k)!;

    // In order within the action: the note and the update wait for the card.
    expect(at("a:note").start).toBeGreaterThanOrEqual(at("a:card").end);
    expect(at("a:update").start).toBeGreaterThanOrEqual(at("a:note").end);
    // Not held by the slow card: the release, the webhook and the other action's card.
    for (const k of ["a:release", "a:webhook", "b:card"]) expect(at(k).end).toBeLessThan(at("a:card").end);
    await allDone();
    expect(a).toMatch(/^act_/);
  });

  it("keeps at most `batch` effects in flight, and claims the rest as slots free", async () => {
    for (let i = 0; i < 10; i++) {
      await actionWith([{ kind: "post_card", dedupeKey: `card:${i}` }]);
    }
    const slow = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`card:${i}`, 40]));
    const runs = startRunner(slow, 3);
    await until(() => runs.filter((r) => r.end > 0).length === 10);
    // At any run's start, no more than 3 were running (counting itself).
    for (const r of runs) {
      const overlapping = runs.filter((o) => o.start <= r.start && (o.end === 0 || o.end > r.start));
      expect(overlapping.length).toBeLessThanOrEqual(3);
    }
    // And it did use the slots: ten 40 ms effects three at a time take well under 10 x 40 ms.
    const last = Math.max(...runs.map((r) => r.end));
    const first = Math.min(...runs.map((r) => r.start));
    expect(last - first).toBeLessThan(400);
    await allDone();
  });

  it("does not start an effect whose lease ran out while it waited behind its action's slow one", async () => {
    await actionWith([
      { kind: "post_card", dedupeKey: "c:card" },
      { kind: "thread_note", dedupeKey: "c:note" },
    ]);
    // The card outlives the 150 ms lease, so the note behind it loses its lease too.
    const runs = startRunner({ "c:card": 400 }, 64, 150);
    await allDone();
    const notes = runs.filter((r) => r.key === "c:note");
    expect(notes.length).toBeGreaterThanOrEqual(1);
    // Every run began while its lease was held: the note was put back, not run late.
    expect(runs.filter((r) => !r.leaseHeld)).toEqual([]);
    const firstCard = runs.find((r) => r.key === "c:card")!;
    for (const n of notes) expect(n.start).toBeGreaterThanOrEqual(firstCard.end);
  });

  it("starts an effect written while it runs at its commit, with no claim and no poll", async () => {
    // A poll an hour away, and nothing kicks the runner: only handover can start these.
    const runs = startRunner({}, 64, 30_000, 3_600_000);
    await new Promise((r) => setTimeout(r, 50));
    const later = Date.now() + 60_000;
    await actionWith([
      { kind: "post_card", dedupeKey: "d:card" },
      { kind: "thread_note", dedupeKey: "d:note" },
      { kind: "dm", dedupeKey: "d:later", dueAt: later },
    ]);
    await until(() => runs.filter((r) => r.end > 0).length === 2, 2_000);
    expect(runs.map((r) => r.key)).toEqual(["d:card", "d:note"]);
    expect(runs.every((r) => r.leaseHeld)).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    // The one due later was not leased: a claim at its time takes it at once.
    await runner!.stop();
    runner = null;
    const due = await store.claimEffects(later, 10, 1_000);
    expect(due.map((e) => e.dedupeKey)).toEqual(["d:later"]);
    expect(due[0]!.attempts).toBe(1);
  });

  it("keeps handed over effects within `batch` too, leaving the rest to be claimed as slots free", async () => {
    const slow = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`f:${i}`, 40]));
    const runs = startRunner(slow, 3);
    await new Promise((r) => setTimeout(r, 50));
    // Ten effects due at once, each of its own action, written in one group.
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => actionWith([{ kind: "post_card", dedupeKey: `f:${i}` }])),
    );
    await until(() => runs.filter((r) => r.end > 0).length === 10);
    for (const r of runs) {
      const overlapping = runs.filter((o) => o.start <= r.start && (o.end === 0 || o.end > r.start));
      expect(overlapping.length).toBeLessThanOrEqual(3);
    }
    await allDone();
  });

  it("holds card updates and DMs back behind the releases while a burst fills its slots", async () => {
    const runs = startRunner({}, 2, 30_000, 20, 400);
    await new Promise((r) => setTimeout(r, 50));
    // Twenty verdicts at once, as a storm of expiries writes them: each a release, a card
    // update and a DM, in one group; two slots.
    const t = Date.now();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        actionWith([
          { kind: "release", dedupeKey: `release:${i}` },
          { kind: "update_card", dedupeKey: `update:${i}` },
          { kind: "dm", dedupeKey: `dm:${i}` },
        ]),
      ),
    );
    const held = store.sqlite
      .prepare("SELECT dedupe_key AS k, due_at AS due FROM outbox WHERE kind <> 'release'")
      .all() as { k: string; due: number }[];
    // The first writes found slots free; once they were full, what can wait was written due later.
    const late = held.filter((h) => h.due >= t + 400);
    expect(late.length).toBeGreaterThanOrEqual(30);
    await until(() => runs.length === 60, 10_000);
    const releases = runs.filter((r) => r.key.startsWith("release:"));
    const lastRelease = Math.max(...releases.map((r) => r.start));
    const lateRuns = runs.filter((r) => late.some((h) => h.k === r.key));
    // Every release ran before any held update or DM started.
    expect(Math.min(...lateRuns.map((r) => r.start))).toBeGreaterThan(lastRelease);
    await allDone();
  });

  it("does not hold anything back when slots are free, or when told not to", async () => {
    const runs = startRunner({}, 64, 30_000, 20, 0);
    await new Promise((r) => setTimeout(r, 50));
    const t = Date.now();
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        actionWith([
          { kind: "release", dedupeKey: `release:${i}` },
          { kind: "update_card", dedupeKey: `update:${i}` },
        ]),
      ),
    );
    const due = store.sqlite.prepare("SELECT max(due_at) AS d FROM outbox").get() as { d: number };
    expect(due.d).toBeLessThan(t + 400);
    await until(() => runs.length === 80, 10_000);
    await allDone();
  });

  it("hands over only what committed, and nothing once stopped", async () => {
    const runs = startRunner({}, 64, 30_000, 3_600_000);
    await new Promise((r) => setTimeout(r, 50));
    // Two writes in one group; one fails after writing its effect (no signing key for its
    // immediate verdict), so its savepoint, and its effect, are rolled back.
    const failing = actionWith([{ kind: "post_card", dedupeKey: "e:rolled-back" }], {
      outcome: { verdict: "denied", reasonCode: "policy", reasonText: "denied by policy" },
      claims: {} as never,
    });
    const [ok, bad] = await Promise.allSettled([
      actionWith([{ kind: "post_card", dedupeKey: "e:committed" }]),
      failing,
    ]);
    expect(ok.status).toBe("fulfilled");
    expect(bad.status).toBe("rejected");
    await until(() => runs.some((r) => r.key === "e:committed" && r.end > 0), 2_000);
    await new Promise((r) => setTimeout(r, 100));
    expect(runs.map((r) => r.key)).toEqual(["e:committed"]);
    await allDone();

    // Stopped: a write is no longer leased to this process, so the next one claims it at once.
    await runner!.stop();
    runner = null;
    await actionWith([{ kind: "post_card", dedupeKey: "e:after-stop" }]);
    const due = await store.claimEffects(Date.now(), 10, 1_000);
    expect(due.map((e) => e.dedupeKey)).toEqual(["e:after-stop"]);
  });
});
