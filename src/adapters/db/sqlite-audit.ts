/**
 * The audit tools' read side of the SQLite store: records in seq order with the request
 * they cover, the log's head, the published keys, and one action's decision path. The
 * functions are synchronous (tests and benchmarks call them directly); SqliteAuditReader
 * wraps them as the AuditReader port that the CLI and the auditor API use.
 *
 * Everything here only reads. Records are read in pages by seq rather than through one
 * long `.iterate()`: an open iterator keeps the connection busy, and in `serve` the
 * auditor API shares its connection with the store's writers, which would then fail with
 * "connection is busy" for as long as an export streams. A page is read whole and the
 * connection is free again before the page is written out, so memory stays at one page
 * however long the log is.
 */

import Database from "better-sqlite3";
import type { LogHead } from "../../audit/checkpoint.js";
import type { TimelineReceipt } from "../../audit/events.js";
import {
  type ActionRecordRef,
  type ActionSummary,
  type AuditEvent,
  type AuditReader,
  AuditStoreError,
  parseEventData,
} from "../../audit/reader.js";
import { jwsDigest, type PublicJwk } from "../../records/signing.js";

export type AuditDatabase = Database.Database;
export type { ActionRecordRef, ActionSummary, AuditEvent };
export { AuditStoreError };

/** One record as stored, with the request it covers (null if the action row is missing). */
export interface StoredAuditRecord {
  readonly seq: number;
  readonly jws: string;
  readonly requestJson: string | null;
  /** A receipt's decision record (null if it names none in the log); absent for a decision. */
  readonly decisionJws?: string | null;
  /** A decision's receipts up to the page's last seq asked for; absent for a receipt. */
  readonly receipts?: readonly string[];
}

/**
 * Opens the database read-only for the audit commands: an auditor's typo must not
 * create an empty database, and reading must never write.
 */
export function openAuditDatabase(file: string): AuditDatabase {
  let db: AuditDatabase;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (e) {
    throw new AuditStoreError(`cannot open the database at ${file} (DATABASE_URL): ${(e as Error).message}`);
  }
  db.pragma("busy_timeout = 5000");
  const hasRecords = db
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'")
    .get();
  if (!hasRecords) {
    db.close();
    throw new AuditStoreError(
      `${file} has no records table: is DATABASE_URL the right file? (\`countersign migrate\` creates the tables)`,
    );
  }
  return db;
}

/** The highest seq now in the log (0 when empty): an export stops there, so it is one consistent view. */
export function lastSeq(db: AuditDatabase): number {
  const row = db.prepare("SELECT max(seq) AS seq FROM records").get() as { seq: number | null };
  return row.seq ?? 0;
}

/** The log's head: the last seq and the SHA-256 of its JWS text (null for an empty log). */
export function logHead(db: AuditDatabase): LogHead {
  const row = db.prepare("SELECT seq, jws FROM records ORDER BY seq DESC LIMIT 1").get() as
    | { seq: number; jws: string }
    | undefined;
  // The digest is recomputed from the JWS rather than read from its column: a checkpoint
  // must commit to the record text itself.
  return row ? { seq: row.seq, head: jwsDigest(row.jws) } : { seq: 0, head: null };
}

/** Rows read per page; a page of 500 records is about 1 MB with large requests. */
const PAGE_SIZE = 500;

/**
 * Records 1..upTo in seq order, a page (an array in seq order) at a time; see the note at
 * the top. Yields the stored rows as they are; deciding what an export shows is the
 * exporter's job.
 */
export function* recordPages(
  db: AuditDatabase,
  upTo: number,
  pageSize = PAGE_SIZE,
): Generator<readonly StoredAuditRecord[]> {
  // Receipts are entries of the same table: a receipt row brings its decision's JWS (a
  // filter judges it by its decision), a decision row its receipts up to the export's end
  // (the CSV's after-verdict columns), found through the ref index.
  const page = db.prepare(
    `SELECT r.seq AS seq, r.jws AS jws, r.kind AS kind,
            CASE WHEN r.kind = 'decision' THEN a.request_json END AS requestJson,
            d.jws AS decisionJws,
            CASE WHEN r.kind = 'decision' THEN
              (SELECT json_group_array(x.jws) FROM
                (SELECT jws FROM records WHERE ref = r.decision_id AND seq <= @upTo ORDER BY seq) x)
            END AS receiptsJson
     FROM records r LEFT JOIN actions a ON a.id = r.action_id
     LEFT JOIN records d ON r.kind <> 'decision' AND d.decision_id = r.ref
     WHERE r.seq > @after AND r.seq <= @upTo ORDER BY r.seq LIMIT @pageSize`,
  );
  let after = 0;
  for (;;) {
    const raw = page.all({ after, upTo, pageSize }) as {
      seq: number;
      jws: string;
      kind: string;
      requestJson: string | null;
      decisionJws: string | null;
      receiptsJson: string | null;
    }[];
    if (raw.length === 0) return;
    yield raw.map(
      (r): StoredAuditRecord =>
        r.kind === "decision"
          ? {
              seq: r.seq,
              jws: r.jws,
              requestJson: r.requestJson,
              receipts: JSON.parse(r.receiptsJson ?? "[]") as string[],
            }
          : { seq: r.seq, jws: r.jws, requestJson: null, decisionJws: r.decisionJws },
    );
    after = raw[raw.length - 1]!.seq;
  }
}

/** Records 1..upTo in seq order, one by one (read page by page as recordPages does). */
export function* recordsInOrder(
  db: AuditDatabase,
  upTo: number,
  pageSize = PAGE_SIZE,
): Generator<StoredAuditRecord> {
  for (const rows of recordPages(db, upTo, pageSize)) yield* rows;
}

/** Every key that ever signed, as published in the JWKS. */
export function publishedKeys(db: AuditDatabase): PublicJwk[] {
  const rows = db.prepare("SELECT kid, public_jwk FROM signing_keys ORDER BY created_at").all() as {
    kid: string;
    public_jwk: string;
  }[];
  return rows.map((r) => JSON.parse(r.public_jwk) as PublicJwk);
}

/** One action, for the timeline (null when there is no such action). */
export function findAction(db: AuditDatabase, actionId: string): ActionSummary | null {
  const row = db
    .prepare(
      `SELECT id, agent_id AS agentId, request_id AS requestId, action_type AS actionType,
              status, requested_at AS requestedAt
       FROM actions WHERE id = ?`,
    )
    .get(actionId) as ActionSummary | undefined;
  return row ?? null;
}

/** The decision path of one action, in the order it was written. */
export function actionEvents(db: AuditDatabase, actionId: string): AuditEvent[] {
  const rows = db
    .prepare("SELECT id, type, actor, at, data_json AS dataJson FROM events WHERE action_id = ? ORDER BY id")
    .all(actionId) as { id: number; type: string; actor: string; at: number; dataJson: string }[];
  return rows.map((r) => ({
    id: r.id,
    type: r.type,
    actor: r.actor,
    at: r.at,
    data: parseEventData(r.dataJson),
  }));
}

export function actionRecord(db: AuditDatabase, actionId: string): ActionRecordRef | null {
  const row = db
    .prepare(
      `SELECT seq, verdict, decided_at AS decidedAt, decision_id AS decisionId, jws
       FROM records WHERE action_id = ? AND kind = 'decision'`,
    )
    .get(actionId) as (Omit<ActionRecordRef, "digest"> & { jws: string }) | undefined;
  if (!row) return null;
  const { jws, ...rest } = row;
  return { ...rest, digest: jwsDigest(jws) };
}

/** The action's receipts in seq order, for `audit events`. */
export function actionReceipts(db: AuditDatabase, actionId: string): TimelineReceipt[] {
  return db
    .prepare("SELECT seq, jws FROM records WHERE action_id = ? AND kind <> 'decision' ORDER BY seq")
    .all(actionId) as TimelineReceipt[];
}

/**
 * The AuditReader port over a SQLite connection: either one it opened itself, read-only
 * (the CLI), or the store's own connection in `serve`, which it then leaves open at close
 * (an in-memory database has no other connection to read it through).
 */
export class SqliteAuditReader implements AuditReader {
  constructor(
    private readonly db: AuditDatabase,
    readonly where: string,
    private readonly owned: boolean,
    private readonly pageSize = PAGE_SIZE,
  ) {}

  /** Opens the file read-only (see openAuditDatabase). */
  static open(file: string): SqliteAuditReader {
    return new SqliteAuditReader(openAuditDatabase(file), file, true);
  }

  async lastSeq(): Promise<number> {
    return lastSeq(this.db);
  }

  async logHead(): Promise<LogHead> {
    return logHead(this.db);
  }

  async *records(upTo: number): AsyncGenerator<readonly StoredAuditRecord[]> {
    yield* recordPages(this.db, upTo, this.pageSize);
  }

  async publishedKeys(): Promise<PublicJwk[]> {
    return publishedKeys(this.db);
  }

  async findAction(actionId: string): Promise<ActionSummary | null> {
    return findAction(this.db, actionId);
  }

  async actionEvents(actionId: string): Promise<AuditEvent[]> {
    return actionEvents(this.db, actionId);
  }

  async actionRecord(actionId: string): Promise<ActionRecordRef | null> {
    return actionRecord(this.db, actionId);
  }

  async actionReceipts(actionId: string): Promise<TimelineReceipt[]> {
    return actionReceipts(this.db, actionId);
  }

  async close(): Promise<void> {
    if (this.owned && this.db.open) this.db.close();
  }
}
