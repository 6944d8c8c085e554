/**
 * Both stores, each fresh, for use-case tests that run on SQLite and PostgreSQL alike: a
 * SQLite file in a temporary folder, or a PostgreSQL schema of its own; real migrations.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PostgresStore } from "../../src/adapters/db/postgres.js";
import { SqliteStore } from "../../src/adapters/db/sqlite.js";
import type { Directory, ProofCheck, Store } from "../../src/app/ports.js";
import { dropSchema, PG_URL } from "./harness.js";

export interface OpenedStore {
  readonly store: Store;
  /** Closes the store and removes its file or schema. */
  drop(): Promise<void>;
}

export interface StoreBackend {
  readonly name: "sqlite" | "postgres";
  open(): Promise<OpenedStore>;
}

export const STORE_BACKENDS: readonly StoreBackend[] = [
  {
    name: "sqlite",
    async open() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-store-"));
      const store = new SqliteStore(path.join(dir, "store.db"));
      return {
        store,
        async drop() {
          await store.close();
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: "postgres",
    async open() {
      const schema = `test_${randomUUID().replaceAll("-", "")}`;
      const store = await PostgresStore.open(PG_URL, { schema, poolSize: 6 });
      return {
        store,
        async drop() {
          await store.close();
          await dropSchema(schema);
        },
      };
    },
  },
];

/** A directory in which every `U0...` id is a full member of `team` (no guests, no bots, no groups). */
export function membersOf(team: string): Directory {
  return {
    async user(id) {
      return id.startsWith("U0") ? { id, team, isGuest: false, isBot: false, deleted: false } : null;
    },
    async groupMembers() {
      return [];
    },
  };
}

/** For use-case tests that submit with `proofChecked`: a proof check that must never run. */
export const PROOFS_ALREADY_CHECKED: ProofCheck = {
  async verify() {
    throw new Error("the proof should have been checked already");
  },
};
