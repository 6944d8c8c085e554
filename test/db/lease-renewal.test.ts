/**
 * Outbox leases renewed by their holder's heartbeat (Store.renewEffects), on both stores:
 * a renewed lease holds the effect past its first expiry, a stale lease renews nothing,
 * and the outcome is recorded under the lease as renewed.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type OpenedStore, openStore } from "../../src/adapters/db/open.js";
import { loadConfig } from "../../src/config.js";
import { dropSchema, PG_URL } from "../support/harness.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function open(kind: "sqlite" | "postgres"): Promise<OpenedStore> {
  if (kind === "sqlite") {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-lease-"));
    const store = await openStore(loadConfig({ DATABASE_URL: `file:${path.join(dir, "c.db")}` }, dir));
    cleanups.push(async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    return store;
  }
  const schema = `test_${randomUUID().replace(/-/g, "")}`;
  const store = await openStore(loadConfig({ DATABASE_URL: PG_URL, DATABASE_SCHEMA: schema }), { schema });
  cleanups.push(async () => {
    await store.close();
    await dropSchema(schema);
  });
  return store;
}

describe.each(["sqlite", "postgres"] as const)("lease renewal on %s", (kind) => {
  it("holds a renewed effect past its first lease; a stale lease renews and finishes nothing", async () => {
    const store = await open(kind);
    const t = Date.now();
    await store.addEffects(null, [{ kind: "webhook", dedupeKey: `w:${randomUUID()}` }], t);
    const [e] = await store.claimEffects(t, 10, 1_000);
    expect(e).toBeDefined();
    const renewed = t + 10_000;
    expect(await store.renewEffects([{ id: e!.id, lease: e!.lease }], renewed)).toEqual([e!.id]);
    // Past the first lease, before the renewed one: nobody else may claim it.
    expect(await store.claimEffects(t + 2_000, 10, 1_000)).toEqual([]);
    // The old lease is no longer the effect's: it renews nothing and finishes nothing.
    expect(await store.renewEffects([{ id: e!.id, lease: e!.lease }], t + 20_000)).toEqual([]);
    expect(await store.completeEffect(e!.id, e!.lease, t)).toBe(false);
    expect(await store.completeEffect(e!.id, renewed, t)).toBe(true);
    expect(await store.pendingEffectCount()).toBe(0);
  });

  it("lets another process take over an effect whose holder stopped renewing", async () => {
    const store = await open(kind);
    const t = Date.now();
    await store.addEffects(null, [{ kind: "webhook", dedupeKey: `w:${randomUUID()}` }], t);
    const [e] = await store.claimEffects(t, 10, 1_000);
    const [again] = await store.claimEffects(t + 1_001, 10, 1_000);
    expect(again?.id).toBe(e!.id);
    expect(await store.renewEffects([{ id: e!.id, lease: e!.lease }], t + 5_000)).toEqual([]);
  });
});
