/**
 * The outbox heartbeat: an effect held by a living runner keeps its short lease for as
 * long as it runs, so a second process never runs it twice; the lease of a runner that
 * stops renewing (a killed process) lapses within one lease, and another takes it over.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, expect, it } from "vitest";
import { SqliteStore } from "../../src/adapters/db/sqlite.js";
import { type EffectOutcome, EffectRunner } from "../../src/app/effects.js";
import type { Effect } from "../../src/app/ports.js";
import { sleep } from "../support/harness.js";

let dir: string;
const opened: { close(): Promise<void> }[] = [];
const runners: EffectRunner[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-heartbeat-"));
});
afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop();
  for (const s of opened.splice(0)) await s.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A process: its own store handle on the shared file, and a runner whose webhook handler takes `ms`. */
function processWith(ms: number, runs: string[], name: string, leaseMs = 300) {
  const store = new SqliteStore(path.join(dir, "store.db"));
  opened.push(store);
  const runner = new EffectRunner(store, pino({ level: "silent" }), Date.now, { pollMs: 50, leaseMs });
  runner.on("webhook", async (_e: Effect): Promise<EffectOutcome> => {
    runs.push(name);
    await sleep(ms);
    return { kind: "done" };
  });
  runners.push(runner);
  return { store, runner };
}

it("holds a slow effect for as long as its runner lives: never run twice", async () => {
  const runs: string[] = [];
  const a = processWith(1_500, runs, "a");
  await a.store.addEffects(null, [{ kind: "webhook", dedupeKey: `w:${randomUUID()}` }], Date.now());
  a.runner.start();
  while (!runs.length) await sleep(10);
  // Another process polls all along: the lease (300 ms) is 5 times shorter than the run.
  const b = processWith(1, runs, "b");
  b.runner.start();
  while ((await a.store.pendingEffectCount()) > 0) await sleep(50);
  expect(runs).toEqual(["a"]);
});

it("lets another process take over within a lease once the holder stops renewing", async () => {
  const runs: string[] = [];
  const store = new SqliteStore(path.join(dir, "store.db"));
  opened.push(store);
  const t = Date.now();
  await store.addEffects(null, [{ kind: "webhook", dedupeKey: `w:${randomUUID()}` }], t);
  // A process that claimed it and died: nothing renews its 300 ms lease.
  expect(await store.claimEffects(t, 10, 300)).toHaveLength(1);
  const b = processWith(1, runs, "b");
  b.runner.start();
  const started = Date.now();
  while (!runs.length) await sleep(10);
  expect(Date.now() - started).toBeLessThan(2_000);
  expect(runs).toEqual(["b"]);
});
