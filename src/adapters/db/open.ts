/**
 * Opens the store the configuration names: SQLite for one host (the embedded default),
 * PostgreSQL for several instances sharing the work. Both run the same use-cases.
 */
import type Database from "better-sqlite3";
import type { ReceiptSigner, Store } from "../../app/ports.js";
import type { Config } from "../../config.js";
import { SqliteStore } from "./sqlite.js";

export interface OpenStoreOptions {
  /** Apply the migrations at open (default true); `countersign migrate` is the same with true. */
  readonly migrate?: boolean;
  /** PostgreSQL only: a schema of its own, created if missing (tests use one per run). */
  readonly schema?: string;
  /** PostgreSQL only: connections this process keeps (default 10). */
  readonly poolSize?: number;
}

/**
 * A store as its opener sees it: the port, and the SQLite handle under it (null on
 * PostgreSQL) for the auditor API's reader, which must share an in-memory database's one
 * connection, and for tests; and where receipts get their signer.
 */
export type OpenedStore = Store & {
  readonly sqlite: Database.Database | null;
  setReceiptSigner(signer: ReceiptSigner): void;
};

export async function openStore(
  config: Pick<Config, "databaseKind" | "databasePath"> &
    Partial<Pick<Config, "databaseSchema" | "databasePoolSize">>,
  o: OpenStoreOptions = {},
): Promise<OpenedStore> {
  if (config.databaseKind === "postgres") {
    const schema = o.schema ?? config.databaseSchema;
    const poolSize = o.poolSize ?? config.databasePoolSize;
    // Loaded only when configured: pg and drizzle's PostgreSQL side are ~15 MB of RSS that a
    // SQLite installation would otherwise carry for nothing.
    const { PostgresStore } = await import("./postgres.js");
    return PostgresStore.open(config.databasePath, {
      ...(o.migrate === undefined ? {} : { migrate: o.migrate }),
      ...(schema === undefined ? {} : { schema }),
      ...(poolSize === undefined ? {} : { poolSize }),
    });
  }
  return new SqliteStore(config.databasePath, o.migrate === undefined ? {} : { migrate: o.migrate });
}
