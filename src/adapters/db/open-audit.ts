/**
 * Opens the audit reader for the store the configuration names, as openStore does for
 * the store itself: SQLite for DATABASE_URL=file:..., PostgreSQL for postgres://...
 */
import type { AuditReader } from "../../audit/reader.js";
import type { Config } from "../../config.js";
import type { PgAuditOptions } from "./pg-audit.js";
import { SqliteAuditReader } from "./sqlite-audit.js";

/**
 * The log the configuration names (DATABASE_URL, and DATABASE_SCHEMA on PostgreSQL),
 * opened for reading only (see PgAuditOptions.readOnlySession). Throws AuditStoreError saying what is wrong when the database cannot
 * be opened or holds no decision log.
 */
export async function openAuditReader(
  config: Pick<Config, "databaseKind" | "databasePath" | "databaseSchema">,
  o: Pick<PgAuditOptions, "readOnlySession"> = {},
): Promise<AuditReader> {
  if (config.databaseKind !== "postgres") return SqliteAuditReader.open(config.databasePath);
  // Loaded only when configured, as openStore loads the PostgreSQL store: pg is memory a
  // SQLite installation does not need.
  const { PgAuditReader } = await import("./pg-audit.js");
  return PgAuditReader.open(config.databasePath, {
    ...o,
    ...(config.databaseSchema === undefined ? {} : { schema: config.databaseSchema }),
  });
}
