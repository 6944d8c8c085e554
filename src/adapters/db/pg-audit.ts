/**
 * The audit tools' read side of the PostgreSQL store: the AuditReader port over a small
 * pool of its own (node-postgres, plain SQL: these are a handful of fixed reads, and the
 * export's hot loop wants rows as arrays, not mapped objects).
 *
 * Only SELECTs, and for the CLI read-only at the connection too: its sessions start with
 * `default_transaction_read_only`, so nothing an auditor runs can write, whatever the
 * role may do. `serve` leaves that startup parameter out (see `readOnlySession`). The
 * pool is its own, not the store's, so an auditor's long export never holds a
 * connection the deciders need.
 *
 * An export is the log up to lastSeq taken at its start, read in pages by seq, one
 * statement per page rather than one long transaction (which would hold back vacuum for
 * as long as a slow client reads). That is still one consistent view: records are never
 * changed once written, and the store commits them in seq order (the log head's lock is
 * held until commit), so once seq N is visible every record up to N is, and stays so.
 */
import pg from "pg";
import type { LogHead } from "../../audit/checkpoint.js";
import type { TimelineReceipt } from "../../audit/events.js";
import type { ExportSource } from "../../audit/export.js";
import {
  type ActionRecordRef,
  type ActionSummary,
  type AuditEvent,
  type AuditReader,
  AuditStoreError,
  parseEventData,
} from "../../audit/reader.js";
import { jwsDigest, type PublicJwk } from "../../records/signing.js";
import { describeUrl } from "./postgres.js";

export interface PgAuditOptions {
  /** The schema the store's tables are in (DATABASE_SCHEMA); default: the server's search_path. */
  readonly schema?: string;
  /** Rows per page of an export (default 1000). */
  readonly pageSize?: number;
  /** Connections to keep (default 2: one page in flight while the next is asked for). */
  readonly poolSize?: number;
  /**
   * Start every session with `default_transaction_read_only=on` (default true). `serve`
   * passes false: PgBouncer refuses or drops startup parameters, and the server must
   * connect wherever its store does (docs/deploy.md "PgBouncer").
   */
  readonly readOnlySession?: boolean;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/**
 * A page of 1000 records is 2 MB with large requests; fewer round trips than SQLite's 500,
 * which pays no network latency per page.
 */
const PAGE_SIZE = 1000;
/** The tables the audit tools read; a missing one means the wrong database or schema. */
const TABLES = ["records", "actions", "events", "signing_keys"] as const;

export class PgAuditReader implements AuditReader {
  private constructor(
    private readonly pool: pg.Pool,
    readonly where: string,
    private readonly pageSize: number,
  ) {}

  /**
   * Connects and checks that the log's tables are there. Throws AuditStoreError naming the
   * server (never the password) and what is missing.
   */
  static async open(url: string, o: PgAuditOptions = {}): Promise<PgAuditReader> {
    if (o.schema !== undefined && !SCHEMA_NAME.test(o.schema)) {
      throw new AuditStoreError(
        `DATABASE_SCHEMA "${o.schema}" is not a PostgreSQL schema name: lowercase letters, digits and _`,
      );
    }
    const where = `${describeUrl(url)}${o.schema ? ` (schema ${o.schema})` : ""}`;
    const settings: string[] = [];
    if (o.readOnlySession !== false) settings.push("-c default_transaction_read_only=on");
    if (o.schema) settings.push(`-c search_path=${o.schema}`);
    const pool = new pg.Pool({
      connectionString: url,
      max: o.poolSize ?? 2,
      connectionTimeoutMillis: 10_000,
      // Startup parameters, as the store sets its search_path: each pooled session has them
      // before its first statement.
      ...(settings.length > 0 ? { options: settings.join(" ") } : {}),
    });
    // An idle connection the server dropped is discarded; the next query opens another.
    pool.on("error", () => {});
    try {
      const { rows } = await pool.query<{ name: string; present: boolean }>(
        "SELECT t AS name, to_regclass(t) IS NOT NULL AS present FROM unnest($1::text[]) AS t",
        [TABLES],
      );
      const missing = rows.filter((r) => !r.present).map((r) => r.name);
      if (missing.length > 0) {
        throw new AuditStoreError(
          `PostgreSQL at ${where} has no ${missing.join(", ")} table${missing.length > 1 ? "s" : ""}: are DATABASE_URL and DATABASE_SCHEMA right? (\`countersign migrate\` creates the tables)`,
        );
      }
    } catch (e) {
      await pool.end().catch(() => {});
      if (e instanceof AuditStoreError) throw e;
      throw new AuditStoreError(`cannot read the PostgreSQL database at ${where}: ${(e as Error).message}`);
    }
    return new PgAuditReader(pool, where, o.pageSize ?? PAGE_SIZE);
  }

  async lastSeq(): Promise<number> {
    const { rows } = await this.pool.query<{ seq: string | null }>("SELECT max(seq) AS seq FROM records");
    return Number(rows[0]?.seq ?? 0);
  }

  async logHead(): Promise<LogHead> {
    const { rows } = await this.pool.query<{ seq: string; jws: string }>(
      "SELECT seq, jws FROM records ORDER BY seq DESC LIMIT 1",
    );
    const row = rows[0];
    // Recomputed from the JWS rather than read from the digest column: a checkpoint must
    // commit to the record text itself.
    return row ? { seq: Number(row.seq), head: jwsDigest(row.jws) } : { seq: 0, head: null };
  }

  async *records(upTo: number): AsyncGenerator<readonly ExportSource[]> {
    let after = 0;
    let next = upTo > 0 ? this.page(after, upTo) : null;
    try {
      while (next) {
        const rows = await next;
        if (rows.length === 0) return;
        after = rows[rows.length - 1]!.seq;
        // The next page is asked for before this one is handed out: the server reads it
        // while the exporter formats this one. At most one page waits, so memory stays at two.
        next = rows.length === this.pageSize && after < upTo ? this.page(after, upTo) : null;
        yield rows;
      }
    } finally {
      // A consumer that stops early (a client hung up) leaves a page in flight: its
      // outcome no longer matters, and must not surface as an unhandled rejection.
      next?.catch(() => {});
    }
  }

  private async page(after: number, upTo: number): Promise<ExportSource[]> {
    // Unnamed, like every statement of the store: a named prepared statement breaks behind
    // PgBouncer's transaction pooling, and planning once per 1000 rows costs nothing.
    // Receipts are entries of the same table: a receipt row brings its decision's JWS (a
    // filter judges it by its decision), a decision row its receipts up to the export's
    // end (the CSV's after-verdict columns), found through the ref index.
    const res = await this.pool.query<
      [string, string, string, string | null, string | null, string[] | null]
    >({
      text: `SELECT r.seq, r.jws, r.kind,
                    CASE WHEN r.kind = 'decision' THEN a.request_json END,
                    d.jws,
                    CASE WHEN r.kind = 'decision' THEN
                      (SELECT array_agg(x.jws ORDER BY x.seq) FROM records x WHERE x.ref = r.decision_id AND x.seq <= $2)
                    END
             FROM records r LEFT JOIN actions a ON a.id = r.action_id
             LEFT JOIN records d ON r.kind <> 'decision' AND d.decision_id = r.ref
             WHERE r.seq > $1 AND r.seq <= $2 ORDER BY r.seq LIMIT $3`,
      values: [after, upTo, this.pageSize],
      rowMode: "array",
    });
    const out: ExportSource[] = new Array(res.rows.length);
    for (let i = 0; i < res.rows.length; i++) {
      const [seq, jws, kind, requestJson, decisionJws, receipts] = res.rows[i]!;
      // bigint arrives as text: exact, and every seq is far below 2^53.
      out[i] =
        kind === "decision"
          ? { seq: Number(seq), jws, requestJson, receipts: receipts ?? [] }
          : { seq: Number(seq), jws, requestJson: null, decisionJws };
    }
    return out;
  }

  async publishedKeys(): Promise<PublicJwk[]> {
    const { rows } = await this.pool.query<{ public_jwk: string }>(
      "SELECT public_jwk FROM signing_keys ORDER BY created_at, kid",
    );
    return rows.map((r) => JSON.parse(r.public_jwk) as PublicJwk);
  }

  async findAction(actionId: string): Promise<ActionSummary | null> {
    const { rows } = await this.pool.query<{
      id: string;
      agentId: string;
      requestId: string;
      actionType: string;
      status: string;
      requestedAt: string;
    }>(
      `SELECT id, agent_id AS "agentId", request_id AS "requestId", action_type AS "actionType",
              status, requested_at AS "requestedAt"
       FROM actions WHERE id = $1`,
      [actionId],
    );
    const r = rows[0];
    return r ? { ...r, requestedAt: Number(r.requestedAt) } : null;
  }

  async actionEvents(actionId: string): Promise<AuditEvent[]> {
    const { rows } = await this.pool.query<{
      id: string;
      type: string;
      actor: string;
      at: string;
      data_json: string;
    }>("SELECT id, type, actor, at, data_json FROM events WHERE action_id = $1 ORDER BY id", [actionId]);
    return rows.map((r) => ({
      id: Number(r.id),
      type: r.type,
      actor: r.actor,
      at: Number(r.at),
      data: parseEventData(r.data_json),
    }));
  }

  async actionRecord(actionId: string): Promise<ActionRecordRef | null> {
    const { rows } = await this.pool.query<{
      seq: string;
      verdict: string;
      decided_at: string;
      decision_id: string;
      jws: string;
    }>(
      "SELECT seq, verdict, decided_at, decision_id, jws FROM records WHERE action_id = $1 AND kind = 'decision'",
      [actionId],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      seq: Number(r.seq),
      verdict: r.verdict,
      decidedAt: Number(r.decided_at),
      decisionId: r.decision_id,
      digest: jwsDigest(r.jws),
    };
  }

  async actionReceipts(actionId: string): Promise<TimelineReceipt[]> {
    const { rows } = await this.pool.query<{ seq: string; jws: string }>(
      "SELECT seq, jws FROM records WHERE action_id = $1 AND kind <> 'decision' ORDER BY seq",
      [actionId],
    );
    return rows.map((r) => ({ seq: Number(r.seq), jws: r.jws }));
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
