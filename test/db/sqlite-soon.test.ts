/**
 * SqliteStore's writes that can wait: an effect's outcome does not cost a commit of its
 * own but rides with the next group, commits on its own after SOON_MS when no group
 * comes, and is never lost on close. Read through a second connection, as another process
 * (or a crash) would see the file.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SOON_MS, SqliteStore } from "../../src/adapters/db/sqlite.js";

const T0 = Date.parse("2030-01-07T09:00:00Z");

let dir: string;
let file: string;
let store: SqliteStore;
let reader: Database.Database;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-soon-"));
  file = path.join(dir, "store.db");
  store = new SqliteStore(file);
  reader = new Database(file, { readonly: true });
});

afterEach(async () => {
  reader.close();
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The effect's state as committed to the file. */
function committedState(id: number): string {
  return (reader.prepare("SELECT state FROM outbox WHERE id = ?").get(id) as { state: string }).state;
}

async function claimedEffect(key: string): Promise<{ id: number; lease: number }> {
  await store.addEffects(null, [{ kind: "dm", dedupeKey: key }], T0);
  const [e] = await store.claimEffects(T0, 1, 60_000);
  return e!;
}

const turn = () => new Promise((r) => setImmediate(r));

describe("SqliteStore: an effect's outcome rides with the next group", () => {
  it("waits for another write to commit with, instead of committing on its own", async () => {
    const e = await claimedEffect("dm:ride");
    const done = store.completeEffect(e.id, e.lease, T0 + 1);
    // Several turns of the loop later, well inside SOON_MS: not committed yet.
    for (let i = 0; i < 3; i++) await turn();
    expect(committedState(e.id)).toBe("pending");
    // A write that cannot wait takes it along in its transaction.
    await store.addEffects(null, [{ kind: "dm", dedupeKey: "dm:other" }], T0);
    expect(committedState(e.id)).toBe("done");
    expect(await done).toBe(true);
  });

  it("commits on its own after SOON_MS when no other write comes", async () => {
    const e = await claimedEffect("dm:alone");
    const t = performance.now();
    expect(await store.completeEffect(e.id, e.lease, T0 + 1)).toBe(true);
    expect(performance.now() - t).toBeGreaterThanOrEqual(SOON_MS - 2);
    expect(committedState(e.id)).toBe("done");
  });

  it("is committed by close(), not dropped", async () => {
    const e = await claimedEffect("dm:closing");
    const done = store.completeEffect(e.id, e.lease, T0 + 1);
    await store.close();
    expect(await done).toBe(true);
    expect(committedState(e.id)).toBe("done");
  });
});
