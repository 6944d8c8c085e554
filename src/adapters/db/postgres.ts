/**
 * The PostgreSQL store (node-postgres + drizzle), for several instances sharing one
 * database. It keeps SqliteStore's behaviour exactly; where SQLite gets it from one
 * writer at a time, PostgreSQL gets it from locks:
 *
 * - the log: seq allocation, signing and the insert run in one transaction that first
 *   takes a transaction-scoped advisory lock on the log's head, so two deciders never
 *   read the same head (READ COMMITTED gives the statement after the lock a fresh view);
 * - an action: mutate() reads it FOR UPDATE, so two clicks on one card run one after the other;
 * - intake: admit() takes an advisory lock per agent, so the (agent, request_id) dedupe and
 *   the max_pending count hold under concurrency (the unique index is the backstop);
 * - the outbox: claimEffects() leases with FOR UPDATE SKIP LOCKED, so claimers never block
 *   on each other and never take the same effect.
 *
 * Lock order is always agent -> action row -> log head, and nothing waits while holding the
 * log head, so these locks cannot deadlock among themselves.
 */
import { createHash } from "node:crypto";
import {
  and,
  asc,
  desc,
  eq,
  getTableColumns,
  gt,
  gte,
  inArray,
  isNotNull,
  isNull,
  lte,
  sql,
} from "drizzle-orm";
import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import * as schema from "../../../db/pg/schema.js";
import type {
  ActionRow,
  ActionWithVotes,
  Card,
  Effect,
  EffectReceiver,
  NewEvent,
  RecordSigner,
  Store,
  StoredEvent,
  StoredReceipt,
  StoredRecord,
  WebhookAttempt,
} from "../../app/ports.js";
import { packagePath } from "../../paths.js";
import {
  type ActionUpdate,
  type AgentStats,
  agentStats,
  type Closed,
  CoreStore,
  columnsOf,
  decidedTwice,
  done,
  type Finish,
  insertEvents,
  type NewEventRow,
  type NewOutboxRow,
  type OutboxColumns,
  type PasskeyColumns,
  type PasskeyLinkColumns,
  type RecordColumns,
  type RevisionColumns,
  replayedProof,
  runAwaiting,
  type Step,
  type StoreTx,
  toEffect,
  toEffects,
  toEvent,
  type VoteColumns,
  WEBHOOK_ATTEMPT_FIELDS,
  type WriteLeases,
  wait,
  withVotes,
} from "./core.js";
import { StoreError } from "./errors.js";
import { type ActionColumns, type actionValues, toRow } from "./rows.js";

export const PG_MIGRATIONS_FOLDER = packagePath("db", "pg", "migrations");

type Db = NodePgDatabase<typeof schema>;
/** The transaction handle, named so node-postgres types do not leak into callers. */
export type PgTx = Parameters<Parameters<Db["transaction"]>[0]>[0];

export interface PostgresOptions {
  /**
   * A schema of its own (created if missing) instead of the role's default: several
   * deployments, or test runs, can then share one database. Lowercase letters, digits, `_`.
   */
  readonly schema?: string;
  /** Apply db/pg/migrations at open (default true). */
  readonly migrate?: boolean;
  /** Connections this process keeps open (default 10). */
  readonly poolSize?: number;
}

interface Waiting<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (e: unknown) => void;
}

/** Events to append (Store.appendEvents), waiting for this turn's transaction. */
interface PendingAppend extends Waiting<void> {
  readonly actionId: string | null;
  readonly agentId: string | null;
  readonly events: readonly NewEvent[];
  readonly now: number;
}

interface PendingFinish extends Waiting<boolean> {
  readonly id: number;
  readonly lease: number;
  readonly f: Finish;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** A transaction lost a race the database detected; running it again is safe (the plan is pure). */
const RETRYABLE = new Set(["40P01", "40001"]);
const MAX_TRIES = 5;

export class PostgresStore extends CoreStore implements Store {
  private signer: RecordSigner | null = null;
  /** Who takes effects leased as written (see handEffectsTo). */
  private receiver: EffectReceiver | null = null;
  private closed = false;
  /** drizzle over each pooled connection, for statements inside a transaction (see dbOf). */
  private readonly clientDbs = new WeakMap<pg.PoolClient, Db>();
  /** Reads of actions waiting for this turn's statement (see getAction). */
  private gets = new Map<string, Waiting<ActionWithVotes | null>[]>();
  /** Effect outcomes waiting for this turn's statement (see finish), and those being written. */
  private finishes: PendingFinish[] = [];
  /** Events to append waiting for this turn's transaction (see appendEvents). */
  private appends: PendingAppend[] = [];
  /** Writes of batched outcomes and appends in flight, awaited by close(). */
  private readonly finishing = new Set<Promise<void>>();
  /** No SQLite handle here (see OpenedStore). */
  readonly sqlite = null;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly db: Db,
    /** Names this log for its advisory locks: two schemas in one database keep separate logs. */
    private readonly scope: string,
  ) {
    super();
  }

  static async open(url: string, o: PostgresOptions = {}): Promise<PostgresStore> {
    if (o.schema !== undefined && !SCHEMA_NAME.test(o.schema)) {
      throw new Error(
        `PostgreSQL schema "${o.schema}" is not usable: use lowercase letters, digits and _ (at most 63, not starting with a digit)`,
      );
    }
    const pool = new pg.Pool({
      connectionString: url,
      max: o.poolSize ?? 10,
      keepAlive: true,
      // Waiting longer for a connection (a full pool or an unreachable server) only piles
      // up requests; failing lets the caller answer 503 and /readyz report the database.
      connectionTimeoutMillis: 10_000,
      // A startup parameter rather than a SET after connect: every pooled connection has it
      // before its first query, with no window where a query could run in the wrong schema.
      ...(o.schema ? { options: `-c search_path=${o.schema}` } : {}),
    });
    // An idle connection the server dropped must not crash the process: the pool discards
    // it, and the next query opens a new one (or fails, and /readyz says so).
    pool.on("error", () => {});
    const where = describeUrl(url);
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (e) {
      await pool.end().catch(() => {});
      throw new StoreError(`could not connect to PostgreSQL at ${where}: ${causeOf(e).message}`, {
        code: "store_unavailable",
        cause: e,
      });
    }
    let scope: string;
    try {
      scope =
        o.schema ??
        (await client.query<{ s: string | null }>("SELECT current_schema() AS s")).rows[0]?.s ??
        "public";
      // Instances starting together would race to create the schema and apply migrations;
      // a session lock lets one do it while the others wait, then find nothing left to do.
      const key = lockKey(`migrate:${scope}`);
      await client.query("SELECT pg_advisory_lock($1::bigint)", [key]);
      try {
        if (o.schema) await client.query(`CREATE SCHEMA IF NOT EXISTS "${o.schema}"`);
        if (o.migrate !== false) {
          await migrate(drizzle({ client }), {
            migrationsFolder: PG_MIGRATIONS_FOLDER,
            // Beside the tables when a schema is given, so each schema records its own history.
            migrationsSchema: o.schema ?? "drizzle",
          });
        }
      } finally {
        await client.query("SELECT pg_advisory_unlock($1::bigint)", [key]);
      }
    } catch (e) {
      client.release(true);
      await pool.end().catch(() => {});
      throw new StoreError(`could not prepare the PostgreSQL database at ${where}: ${causeOf(e).message}`, {
        code: "store_unavailable",
        cause: e,
      });
    }
    client.release();
    return new PostgresStore(pool, drizzle({ client: pool, schema }), scope);
  }

  /** Records are signed inside the store's transaction; the key is set once at start. */
  setSigner(signer: RecordSigner): void {
    this.signer = signer;
  }

  /**
   * One transaction, run again when PostgreSQL aborted it for a deadlock or a serialisation
   * failure (e.g. two effect batches sharing dedupe keys in opposite order).
   */
  protected async transact<T>(step: (tx: StoreTx) => Step<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      // The effects this attempt leases at birth (see handEffectsTo): handed over only
      // once it has committed; an attempt rolled back leaves nothing behind but frees its slots.
      // The receiver is fixed for the attempt: the one that held the slots is the one told.
      const receiver = this.receiver;
      const writeLeases: WriteLeases | null = receiver ? { receiver, born: [], reserved: 0 } : null;
      const client = await this.pool.connect();
      // The transaction is begun by its first statement's round trip, not one of its own
      // (see PgStoreTx). Named, not left to the server's default: the log's head is read
      // after its lock is granted, which sees the previous record only at READ COMMITTED.
      const tx = new PgStoreTx(
        this.dbOf(client),
        client,
        this.signer,
        writeLeases,
        this.scope,
        "BEGIN ISOLATION LEVEL READ COMMITTED",
      );
      let broken: Error | undefined;
      try {
        const value = await runAwaiting(step(tx));
        await tx.commit();
        if (writeLeases?.reserved) receiver?.settle(writeLeases.born, writeLeases.reserved);
        return value;
      } catch (caught) {
        if (writeLeases?.reserved) receiver?.settle([], writeLeases.reserved);
        // A statement sent ahead of a drizzle query failed first: its error is the cause.
        // A statement that failed by design (a spent jti, see PgStoreTx) says what it means.
        const e = tx.meaning(tx.failure ?? caught);
        await client.query("ROLLBACK").catch((r: unknown) => {
          broken = r instanceof Error ? r : new Error(String(r));
        });
        const code = causeOf(e).code;
        if (attempt >= MAX_TRIES || !code || !RETRYABLE.has(code)) throw e;
      } finally {
        // A connection whose ROLLBACK failed is closed, not handed to the next transaction.
        client.release(broken);
      }
    }
  }

  /** drizzle over one pooled connection, made once per connection. */
  private dbOf(client: pg.PoolClient): Db {
    let db = this.clientDbs.get(client);
    if (!db) {
      db = drizzle({ client, schema });
      this.clientDbs.set(client, db);
    }
    return db;
  }

  /** Statements outside write(): reads, and writes of one statement that need no transaction. */
  private reader(): PgStoreTx {
    return new PgStoreTx(this.db, this.pool, null, null, this.scope);
  }

  getAction(id: string): Promise<ActionWithVotes | null> {
    // Reads asked for in one turn of the event loop go as one statement (the effects of a
    // burst of requests each read their action): one round trip for all of them, and one
    // snapshot for each action and its votes, so a reader never sees a vote without the
    // state it produced (or the reverse). A read asked for after a commit is sent after it.
    return new Promise((resolve, reject) => {
      const waiting = this.gets.get(id);
      if (waiting) waiting.push({ resolve, reject });
      else this.gets.set(id, [{ resolve, reject }]);
      if (this.gets.size === 1 && !waiting) setImmediate(() => void this.readActions());
    });
  }

  private async readActions(): Promise<void> {
    const batch = this.gets;
    this.gets = new Map();
    try {
      const r = await this.pool.query<RawActionWithVotes>({
        name: "countersign_get_actions",
        text: `${ACTION_WITH_VOTES}a.id = ANY($1::text[])`,
        values: [[...batch.keys()]],
      });
      const found = new Map(r.rows.map((row) => [row.id, row]));
      for (const [id, waiting] of batch) {
        const row = found.get(id);
        const value = row ? actionWithVotes(row) : null;
        for (const w of waiting) w.resolve(value);
      }
    } catch (e) {
      for (const waiting of batch.values()) for (const w of waiting) w.reject(e);
    }
  }

  async getActionByRequest(agentId: string, requestId: string): Promise<ActionRow | null> {
    const [row] = await this.db
      .select()
      .from(schema.actions)
      .where(and(eq(schema.actions.agentId, agentId), eq(schema.actions.requestId, requestId)));
    return row ? toRow(row) : null;
  }

  async getRecord(actionId: string): Promise<StoredRecord | null> {
    return runAwaiting(this.reader().recordOf(actionId));
  }

  async getReceipts(actionId: string): Promise<StoredReceipt[]> {
    return runAwaiting(this.reader().receiptsOf(actionId));
  }

  async findJob(jobKey: string): Promise<{ actionId: string } | null> {
    const r = await this.pool.query<{ actionId: string }>({
      name: "countersign_find_job",
      text: `SELECT action_id AS "actionId" FROM intake_jobs WHERE job_key = $1`,
      values: [jobKey],
    });
    return r.rows[0] ?? null;
  }

  // The three statements below run on every click that decides (the release, the card
  // it clicked): plain SQL, prepared once per connection, like the intake's, rather than
  // built by drizzle each time.

  async unreleasedJobs(actionId: string): Promise<{ key: string; id: string }[]> {
    const r = await this.pool.query<{ key: string; id: string }>({
      name: "countersign_unreleased_jobs",
      text: "SELECT job_key AS key, job_id AS id FROM intake_jobs WHERE action_id = $1 AND released_at IS NULL",
      values: [actionId],
    });
    return r.rows;
  }

  async markJobsReleased(keys: readonly string[], now: number): Promise<void> {
    if (!keys.length) return;
    await this.pool.query({
      name: "countersign_mark_jobs_released",
      text: "UPDATE intake_jobs SET released_at = $1 WHERE job_key = ANY($2::text[])",
      values: [now, [...keys]],
    });
  }

  async listEvents(actionId: string): Promise<StoredEvent[]> {
    const rows = await this.db
      .select()
      .from(schema.events)
      .where(eq(schema.events.actionId, actionId))
      .orderBy(asc(schema.events.id));
    return rows.map(toEvent);
  }

  async getCards(actionId: string): Promise<Card[]> {
    const r = await this.pool.query<Card>({
      name: "countersign_get_cards",
      text: `SELECT action_id AS "actionId", level, channel, ts FROM cards WHERE action_id = $1 ORDER BY level`,
      values: [actionId],
    });
    return r.rows;
  }

  async findCardByMessage(channel: string, ts: string): Promise<Card | null> {
    const r = await this.pool.query<Card>({
      name: "countersign_find_card",
      text: `SELECT action_id AS "actionId", level, channel, ts FROM cards WHERE channel = $1 AND ts = $2 LIMIT 1`,
      values: [channel, ts],
    });
    return r.rows[0] ?? null;
  }

  async saveCard(card: Card, now: number): Promise<boolean> {
    const r = await this.pool.query({
      name: "countersign_save_card",
      text: `INSERT INTO cards (action_id, level, channel, ts, posted_at) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT DO NOTHING RETURNING level`,
      values: [card.actionId, card.level, card.channel, card.ts, now],
    });
    return r.rowCount === 1;
  }

  handEffectsTo(receiver: EffectReceiver | null): void {
    this.receiver = receiver;
  }

  async claimEffects(now: number, limit: number, leaseMs: number): Promise<Effect[]> {
    // SKIP LOCKED: a row another claimer is leasing right now is passed over, not waited
    // for, and the lease condition is checked again on the row as it is when locked.
    // A prepared statement: the pollers of every instance run it twice a second.
    const r = await this.pool.query<
      Omit<OutboxColumns, "id" | "createdAt" | "leaseUntil"> &
        Record<"id" | "createdAt" | "leaseUntil", string>
    >({
      name: "countersign_claim_effects",
      text: `UPDATE outbox SET lease_until = $1::bigint + $2::bigint, attempts = attempts + 1
        WHERE id IN (
          SELECT id FROM outbox
          WHERE state = 'pending' AND due_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
          ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
        RETURNING id, action_id AS "actionId", kind, dedupe_key AS "dedupeKey",
          payload_json AS "payloadJson", attempts, created_at AS "createdAt", lease_until AS "leaseUntil"`,
      values: [now, leaseMs, limit],
    });
    return toEffects(
      r.rows.map((x) => ({
        ...x,
        id: Number(x.id),
        createdAt: Number(x.createdAt),
        leaseUntil: x.leaseUntil === null ? null : Number(x.leaseUntil),
      })),
    );
  }

  async renewEffects(held: readonly { id: number; lease: number }[], lease: number): Promise<number[]> {
    if (!held.length) return [];
    const r = await this.db.execute<{ id: number }>(sql`
      UPDATE outbox o SET lease_until = ${lease}
      FROM unnest(${`{${held.map((h) => h.id).join(",")}}`}::bigint[],
                  ${`{${held.map((h) => h.lease).join(",")}}`}::bigint[]) AS h(id, lease)
      WHERE o.id = h.id AND o.lease_until = h.lease
      RETURNING o.id`);
    return r.rows.map((x) => Number(x.id));
  }

  override appendEvents(
    actionId: string | null,
    agentId: string | null,
    events: readonly NewEvent[],
    now: number,
  ): Promise<void> {
    // Appends asked for in one turn of the event loop share one transaction: each is a
    // commit (a WAL flush) of its own otherwise, and every card posted appends one, so a
    // burst of requests appended as many. Each caller is answered once that transaction
    // has committed, as before; if it fails, each append is tried alone, so one that
    // cannot be written does not take the others with it.
    if (!events.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.appends.push({ actionId, agentId, events, now, resolve, reject });
      if (this.appends.length === 1) setImmediate(() => void this.writeAppends());
    });
  }

  private async writeAppends(): Promise<void> {
    const batch = this.appends;
    this.appends = [];
    const flush = (async () => {
      const all = (tx: StoreTx, some: readonly PendingAppend[]) =>
        (function* () {
          for (const a of some) yield* insertEvents(tx, a.actionId, a.agentId, a.events, a.now);
        })();
      try {
        await this.transact((tx) => all(tx, batch));
        for (const a of batch) a.resolve();
      } catch (e) {
        if (batch.length === 1) {
          batch[0]?.reject(e);
          return;
        }
        // One after the other: the events are kept in the order they were asked for.
        for (const a of batch) {
          await this.transact((tx) => all(tx, [a])).then(
            () => a.resolve(),
            (alone: unknown) => a.reject(alone),
          );
        }
      }
    })();
    this.finishing.add(flush);
    await flush;
    this.finishing.delete(flush);
  }

  /** Finish an effect only if `lease` is still its lease (see Effect.lease). */
  protected finish(id: number, lease: number, f: Finish): Promise<boolean> {
    // Outcomes given in one turn of the event loop are written by one statement: an
    // effect's outcome is the commonest write after a request's own, and a burst of
    // requests finishes many effects at once (SQLite lets them ride its group commit).
    return new Promise((resolve, reject) => {
      this.finishes.push({ id, lease, f, resolve, reject });
      if (this.finishes.length === 1) setImmediate(() => void this.writeFinishes());
    });
  }

  private async writeFinishes(): Promise<void> {
    // One outcome per effect in a statement: a second for the same effect (its lease
    // already cleared by the first) goes in the next one, where it is refused, as before.
    const batch: PendingFinish[] = [];
    const later: PendingFinish[] = [];
    const ids = new Set<number>();
    for (const p of this.finishes) {
      if (ids.has(p.id)) later.push(p);
      else {
        ids.add(p.id);
        batch.push(p);
      }
    }
    this.finishes = later;
    if (later.length) setImmediate(() => void this.writeFinishes());
    const flush = this.finishRows(batch);
    this.finishing.add(flush);
    await flush;
    this.finishing.delete(flush);
  }

  private async finishRows(batch: readonly PendingFinish[]): Promise<void> {
    const values = [
      batch.map((p) => p.id),
      batch.map((p) => p.lease),
      batch.map((p) => p.f.state ?? null),
      batch.map((p) => p.f.doneAt ?? null),
      batch.map((p) => p.f.dueAt ?? null),
      batch.map((p) => p.f.lastError ?? null),
      batch.map((p) => p.f.takeBack === true),
    ];
    for (let attempt = 1; ; attempt++) {
      try {
        // A NULL leaves its column as it is. Rows in id order, so two statements that
        // lock several outbox rows take them in the same order.
        const r = await this.pool.query<{ id: string }>({
          name: "countersign_finish_effects",
          text: `UPDATE outbox o SET lease_until = NULL,
              state = coalesce(f.state, o.state), done_at = coalesce(f.done_at, o.done_at),
              due_at = coalesce(f.due_at, o.due_at), last_error = coalesce(f.last_error, o.last_error),
              attempts = CASE WHEN f.take_back THEN greatest(0, o.attempts - 1) ELSE o.attempts END
            FROM (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[],
                $5::bigint[], $6::text[], $7::boolean[])
                AS u(id, lease, state, done_at, due_at, last_error, take_back) ORDER BY id) f
            WHERE o.id = f.id AND o.lease_until = f.lease RETURNING o.id`,
          values,
        });
        const finished = new Set(r.rows.map((x) => Number(x.id)));
        for (const p of batch) p.resolve(finished.has(p.id));
        return;
      } catch (e) {
        const code = causeOf(e).code;
        if (attempt < MAX_TRIES && code && RETRYABLE.has(code)) continue;
        for (const p of batch) p.reject(e);
        return;
      }
    }
  }

  async pendingEffectCount(dueBy?: number): Promise<number> {
    const due = dueBy === undefined ? undefined : lte(schema.outbox.dueAt, dueBy);
    const [r] = await this.db
      .select({ n: sql<number>`count(*)::int` })
      .from(schema.outbox)
      .where(and(eq(schema.outbox.state, "pending"), due));
    return r?.n ?? 0;
  }

  async timersDue(until: number, limit: number): Promise<{ id: string; level: number; at: number }[]> {
    // timer_at is the pending action's next timer, generated by PostgreSQL from deadline_at
    // and cap_at (db/pg/schema.ts): a range scan of its index, whatever the backlog.
    const r = await this.db.execute<{ id: string; level: number; at: string }>(sql`
      SELECT id, level, timer_at AS at FROM actions
      WHERE timer_at <= ${Number.isFinite(until) ? until : Number.MAX_SAFE_INTEGER}
      ORDER BY timer_at, id LIMIT ${limit}`);
    return r.rows.map((x) => ({ id: x.id, level: x.level, at: Number(x.at) }));
  }

  async unreleasedDecided(limit: number): Promise<string[]> {
    const r = await this.db.execute<{ id: string }>(sql`
      SELECT DISTINCT j.action_id AS id FROM intake_jobs j JOIN actions a ON a.id = j.action_id
      WHERE j.released_at IS NULL AND a.status = 'decided' LIMIT ${limit}`);
    return r.rows.map((x) => x.id);
  }

  // The four reads below order NULLs as SQLite does (first when ascending, last when
  // descending); PostgreSQL's default is the reverse.

  async pendingForApprover(user: string, limit: number): Promise<ActionRow[]> {
    const a = schema.actions;
    const rows = await this.db
      .select()
      .from(a)
      .where(
        and(
          eq(a.status, "pending"),
          isNotNull(a.eligibleJson),
          sql`EXISTS (SELECT 1 FROM jsonb_array_elements_text(${a.eligibleJson}::jsonb) AS e(value) WHERE e.value = ${user})`,
          sql`NOT EXISTS (SELECT 1 FROM votes v WHERE v.action_id = ${a.id} AND v."user" = ${user})`,
        ),
      )
      .orderBy(sql`${a.deadlineAt} ASC NULLS LAST`, asc(a.id))
      .limit(limit);
    return rows.map(toRow);
  }

  async recentlyVotedBy(user: string, limit: number): Promise<ActionRow[]> {
    const a = schema.actions;
    const rows = await this.db
      .select(getTableColumns(a))
      .from(a)
      .innerJoin(schema.votes, eq(schema.votes.actionId, a.id))
      .where(and(eq(schema.votes.user, user), eq(a.status, "decided")))
      .orderBy(sql`${a.decidedAt} DESC NULLS LAST`)
      .limit(limit);
    return rows.map(toRow);
  }

  async recentForAgents(agentIds: readonly string[], limit: number): Promise<ActionRow[]> {
    if (!agentIds.length) return [];
    const rows = await this.db
      .select()
      .from(schema.actions)
      .where(inArray(schema.actions.agentId, [...agentIds]))
      .orderBy(desc(schema.actions.requestedAt))
      .limit(limit);
    return rows.map(toRow);
  }

  async agentStats(agentId: string, since: number): Promise<AgentStats> {
    const a = schema.actions;
    const rows = await this.db
      .select({ k: sql<string>`coalesce(${a.verdict}, 'pending')`, n: sql<number>`count(*)::int` })
      .from(a)
      .where(and(eq(a.agentId, agentId), gte(a.requestedAt, since)))
      .groupBy(sql`1`);
    return agentStats(rows);
  }

  async recordWebhookAttempt(a: WebhookAttempt): Promise<void> {
    await this.db.insert(schema.webhookAttempts).values(a);
  }

  async webhookAttempts(actionId: string): Promise<WebhookAttempt[]> {
    const w = schema.webhookAttempts;
    return this.db
      .select(columnsOf(w, WEBHOOK_ATTEMPT_FIELDS))
      .from(w)
      .where(eq(w.actionId, actionId))
      .orderBy(asc(w.id));
  }

  async registerSigningKey(kid: string, publicJwk: object, now: number): Promise<void> {
    await this.db
      .insert(schema.signingKeys)
      .values({ kid, publicJwk: JSON.stringify(publicJwk), createdAt: now })
      .onConflictDoNothing();
  }

  async signingKeys(): Promise<{ kid: string; publicJwk: object }[]> {
    const rows = await this.db
      .select()
      .from(schema.signingKeys)
      .orderBy(asc(schema.signingKeys.createdAt), asc(schema.signingKeys.kid));
    return rows.map((k) => ({ kid: k.kid, publicJwk: JSON.parse(k.publicJwk) as object }));
  }

  async ping(): Promise<void> {
    await this.pool.query("SELECT 1");
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Outcomes and reads still waiting for their turn are written and read first.
    while (this.finishes.length || this.appends.length || this.gets.size || this.finishing.size) {
      await new Promise((r) => setImmediate(r));
      await Promise.all([...this.finishing]);
    }
    await this.pool.end();
  }
}

/*
 * The statements of PostgresStore's writes, for the shared store logic (core.ts). Where
 * SQLite has one writer, these take the locks that give the same behaviour (see the top).
 *
 * Round trips, not SQL, are what a PostgreSQL request costs here: each statement is a
 * socket write and a wait for the answer (node-postgres sends one query at a time), and a
 * profile of intake spent half its busy time in those writes and in drizzle building the
 * SQL. So the hot statements are plain SQL, and the statements whose answer the logic
 * does not need (BEGIN, a lock, an insert that returns nothing) wait in `ahead` and travel
 * with the next statement that has an answer, or with the COMMIT: several statements in
 * one simple-protocol message, run by the server one after the other, each with its own
 * snapshot (READ COMMITTED), so a read sent after a lock in the same message still sees
 * what the lock's previous holder committed. The simple protocol carries no parameters:
 * values are written as literals by `lit` (node-postgres' escapeLiteral).
 *
 * A statement waiting in `ahead` that fails is reported by the statement it travels with
 * (the transaction is rolled back either way, and the error is the first statement's).
 * Where the logic checks an answer (a jti already spent, an action no longer pending),
 * the statement is written to fail when the check would, so it too can travel ahead,
 * even with the COMMIT, which then never runs (see PgStoreTx.meanings).
 */

/** Something node-postgres can run a query on: a pool, or one connection. */
type Queryable = Pick<pg.Pool, "query"> | pg.PoolClient;

/** The actions columns, named as ActionColumns names them (bigints come back as strings). */
const ACTION_SELECT = `a.id, a.agent_id AS "agentId", a.request_id AS "requestId",
  a.request_json AS "requestJson", a.request_sha256 AS "requestSha256",
  a.action_type AS "actionType", a.risk_class AS "riskClass", a.region, a.status,
  a.route_name AS "routeName", a.level, a.quorum, a.eligible_json AS "eligibleJson",
  a.deadline_at AS "deadlineAt", a.cap_at AS "capAt", a.policy_sha256 AS "policySha256",
  a.requested_at AS "requestedAt", a.verdict, a.reason_code AS "reasonCode",
  a.decided_at AS "decidedAt", a.record_seq AS "recordSeq", a.revision`;

/** An action's votes in the order the core counts them, as VoteColumns. */
const VOTES_SELECT = `SELECT "user", team, email, real_name AS "realName", vote, comment,
  step_up_json AS "stepUpJson", level, at, revision
  FROM votes WHERE action_id = `;

/** An action's revisions (approvers' changes), as RevisionColumns. */
const REVISIONS_SELECT = `SELECT revision, request_json AS "requestJson", request_sha256 AS "requestSha256",
  "user", team, at, patch_json AS "patchJson", comment FROM revisions WHERE action_id = `;

/**
 * An action with its votes in one statement (one snapshot, one round trip). Only for reads
 * that take no lock: a statement's subquery keeps the snapshot taken before a lock wait.
 */
const ACTION_WITH_VOTES = `SELECT ${ACTION_SELECT}, (SELECT coalesce(json_agg(json_build_object(
    'user', v."user", 'team', v.team, 'email', v.email, 'realName', v.real_name, 'vote', v.vote,
    'comment', v.comment, 'stepUpJson', v.step_up_json, 'level', v.level, 'at', v.at, 'revision', v.revision) ORDER BY v.at, v."user"), '[]'::json)
    FROM votes v WHERE v.action_id = a.id) AS votes,
  CASE WHEN a.revision > 1 THEN (SELECT json_agg(json_build_object(
    'revision', r.revision, 'requestJson', r.request_json, 'requestSha256', r.request_sha256,
    'user', r."user", 'team', r.team, 'at', r.at, 'patchJson', r.patch_json, 'comment', r.comment)
    ORDER BY r.revision) FROM revisions r WHERE r.action_id = a.id) END AS revisions
  FROM actions a WHERE `;

type RawAction = Omit<ActionColumns, "deadlineAt" | "capAt" | "requestedAt" | "decidedAt" | "recordSeq"> &
  Record<"deadlineAt" | "capAt" | "requestedAt" | "decidedAt" | "recordSeq", string | number | null>;

const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

function actionColumns(r: RawAction): ActionColumns {
  return {
    ...r,
    deadlineAt: num(r.deadlineAt),
    capAt: num(r.capAt),
    requestedAt: Number(r.requestedAt),
    decidedAt: num(r.decidedAt),
    recordSeq: num(r.recordSeq),
  };
}

/** A row of ACTION_WITH_VOTES: the votes, and the revisions when there are any, as JSON. */
type RawActionWithVotes = RawAction & {
  votes: VoteColumns[];
  revisions: (RevisionColumns & { at: number | string })[] | null;
};

function actionWithVotes(row: RawActionWithVotes): ActionWithVotes {
  const { votes, revisions, ...action } = row;
  return withVotes(
    actionColumns(action),
    votes.map(voteColumnsOf),
    (revisions ?? []).map((r) => ({ ...r, at: Number(r.at) })),
  );
}

function voteColumnsOf(v: VoteColumns & { at: number | string }): VoteColumns {
  return { ...v, at: Number(v.at) };
}

/** A value as an SQL literal, for statements sent by the simple protocol (see above). */
function lit(v: string | number | boolean | null): string {
  if (v === null) return "NULL";
  if (typeof v === "boolean") return v ? "TRUE" : "FALSE";
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new StoreError(`not a whole number the store can keep: ${v}`);
    return String(v);
  }
  return pg.escapeLiteral(v);
}

/** `(a, b, c)` of literals. */
const tuple = (values: readonly (string | number | boolean | null)[]): string =>
  `(${values.map(lit).join(", ")})`;

/**
 * A statement waiting to be sent with the next one (see above). `onAnswer` takes its answer
 * when that message returns, before the caller is resumed: an answer the logic needs
 * only after commit (the ids of effects leased at birth) costs no round trip of its own.
 */
interface Ahead {
  readonly text: string;
  readonly onAnswer?: (r: pg.QueryResult) => void;
}

class PgStoreTx implements StoreTx {
  /** Statements whose answer is not needed now, sent with the next one that has one (see above). */
  private ahead: Ahead[] = [];
  /** The first failure of statements sent ahead of a drizzle query (see `tx`). */
  failure: unknown = undefined;
  /**
   * What a statement sent ahead means when it fails by design: a check the logic would
   * have made on its answer is made by the database instead, as an error that stops the
   * rest of the message (and so the COMMIT travelling with it), and is told here as the
   * error the logic throws (see insertJti, closeAction).
   */
  private readonly meanings: ((e: Error & { code?: string; table?: string }) => Error | undefined)[] = [];

  constructor(
    /** drizzle over the same connection, for statements written with it. */
    private readonly handle: PgTx | Db,
    /** Where the plain statements run: the transaction's connection, or the pool for reads. */
    private readonly conn: Queryable,
    readonly signer: RecordSigner | null,
    readonly writeLeases: WriteLeases | null,
    /** Names this log for its advisory locks. */
    private readonly scope: string,
    /** Opens the transaction: sent with the first statement. */
    begin: string | null = null,
  ) {
    if (begin) this.ahead.push({ text: begin });
  }

  /** The error the logic would have thrown for a check made by the database, else `e`. */
  meaning(e: unknown): unknown {
    const cause = causeOf(e);
    for (const m of this.meanings) {
      const meant = m(cause);
      if (meant) return meant;
    }
    return e;
  }

  /** Takes what waits ahead, to be sent now. */
  private takeAhead(): Ahead[] {
    const sent = this.ahead;
    this.ahead = [];
    return sent;
  }

  /** Gives each statement sent ahead its answer (the results of a message, in order). */
  private answer(sent: readonly Ahead[], r: pg.QueryResult | pg.QueryResult[]): pg.QueryResult[] {
    const results = Array.isArray(r) ? r : [r];
    for (const [i, a] of sent.entries()) {
      const result = results[i];
      if (a.onAnswer && result) a.onAnswer(result);
    }
    return results;
  }

  /**
   * drizzle, for statements written with it. What waits in `ahead` is sent first, on the
   * same connection (node-postgres runs a connection's queries in the order given).
   */
  get tx(): PgTx | Db {
    if (this.ahead.length) {
      const sent = this.takeAhead();
      (
        this.conn.query(sent.map((a) => a.text).join(";\n")) as Promise<pg.QueryResult | pg.QueryResult[]>
      ).then(
        (r) => void this.answer(sent, r),
        (e: unknown) => {
          this.failure ??= e;
        },
      );
    }
    return this.handle;
  }

  /** A statement whose answer is not needed now: sent with the next one (see above). */
  private later(text: string): Step<void> {
    this.ahead.push({ text });
    return done(undefined);
  }

  /** Sends what waits ahead and `texts` in one round trip; the results of `texts`. */
  private *send(...texts: string[]): Step<pg.QueryResult[]> {
    const sent = this.takeAhead();
    const all = sent.length ? [...sent.map((a) => a.text), ...texts] : texts;
    const r = (yield* wait(this.conn.query(all.join(";\n")))) as pg.QueryResult | pg.QueryResult[];
    const results = this.answer(sent, r);
    return results.slice(results.length - texts.length);
  }

  /** The rows of one statement, sent with what waits ahead. */
  private *rows<R>(text: string): Step<R[]> {
    const [r] = yield* this.send(text);
    return (r?.rows ?? []) as R[];
  }

  /** Ends the transaction with what still waits ahead, in one round trip. */
  async commit(): Promise<void> {
    // A statement sent ahead of a drizzle query failed: nothing of this transaction commits.
    if (this.failure !== undefined) throw this.failure;
    const sent = this.takeAhead();
    this.answer(sent, await this.conn.query([...sent.map((a) => a.text), "COMMIT"].join(";\n")));
  }

  private lock(name: string): string {
    return `SELECT pg_advisory_xact_lock(${lockKey(`${name}:${this.scope}`)}::bigint)`;
  }

  holdAgent(agentId: string): Step<void> {
    // Serialises one agent's admissions, so a repeat always sees the first and the
    // pending count is exact; other agents are not held up. Sent with the duplicate check
    // that follows it, which runs once the lock is granted, on a fresh snapshot.
    return this.later(this.lock(`agent:${agentId}`));
  }

  *actionByRequest(agentId: string, requestId: string): Step<ActionRow | null> {
    const [row] = yield* this.rows<RawAction>(
      `SELECT ${ACTION_SELECT} FROM actions a WHERE a.agent_id = ${lit(agentId)} AND a.request_id = ${lit(requestId)} LIMIT 1`,
    );
    return row ? toRow(actionColumns(row)) : null;
  }

  *loadAction(id: string, forUpdate: boolean): Step<ActionWithVotes | null> {
    if (!forUpdate) {
      const [row] = yield* this.rows<RawActionWithVotes>(`${ACTION_WITH_VOTES}a.id = ${lit(id)}`);
      return row ? actionWithVotes(row) : null;
    }
    // The votes are read by a second statement, after the row's lock is granted: its
    // snapshot then holds the votes of the click that held the lock before this one.
    const [a, v] = yield* this.send(
      `SELECT ${ACTION_SELECT} FROM actions a WHERE a.id = ${lit(id)} FOR UPDATE`,
      `${VOTES_SELECT}${lit(id)} ORDER BY at, "user"`,
    );
    const row = a?.rows[0] as RawAction | undefined;
    if (!row) return null;
    // Read only when approvers changed the request: most actions never have a revision.
    const revisions =
      row.revision > 1
        ? yield* this.rows<RevisionColumns & { at: number | string }>(
            `${REVISIONS_SELECT}${lit(id)} ORDER BY revision`,
          )
        : [];
    return withVotes(
      actionColumns(row),
      (v?.rows ?? []).map(voteColumnsOf),
      revisions.map((r) => ({ ...r, at: Number(r.at) })),
    );
  }

  *countPending(agentId: string, limit: number): Step<number> {
    const [r] = yield* this.rows<{ n: number }>(
      `SELECT count(*)::int AS n FROM (SELECT 1 FROM actions WHERE agent_id = ${lit(agentId)} AND status = 'pending' LIMIT ${lit(limit)}) bounded`,
    );
    return r?.n ?? 0;
  }

  insertAction(v: ReturnType<typeof actionValues>): Step<void> {
    return this.later(`INSERT INTO actions (id, agent_id, request_id, request_json, request_sha256,
      action_type, risk_class, region, status, route_name, level, quorum, eligible_json,
      deadline_at, cap_at, policy_sha256, requested_at) VALUES ${tuple([
        v.id,
        v.agentId,
        v.requestId,
        v.requestJson,
        v.requestSha256,
        v.actionType,
        v.riskClass,
        v.region,
        v.status,
        v.routeName,
        v.level,
        v.quorum,
        v.eligibleJson,
        v.deadlineAt,
        v.capAt,
        v.policySha256,
        v.requestedAt,
      ])}`);
  }

  updateAction(id: string, set: ActionUpdate): Step<void> {
    const cols: string[] = [];
    if (set.level !== undefined) cols.push(`level = ${lit(set.level)}`);
    if (set.quorum !== undefined) cols.push(`quorum = ${lit(set.quorum)}`);
    if (set.deadlineAt !== undefined) cols.push(`deadline_at = ${lit(set.deadlineAt)}`);
    if (set.eligibleJson !== undefined) cols.push(`eligible_json = ${lit(set.eligibleJson)}`);
    if (set.revision !== undefined) cols.push(`revision = ${lit(set.revision)}`);
    if (!cols.length) return done(undefined);
    return this.later(`UPDATE actions SET ${cols.join(", ")} WHERE id = ${lit(id)}`);
  }

  insertVote(actionId: string, v: VoteColumns): Step<void> {
    return this.later(
      `INSERT INTO votes (action_id, "user", team, email, real_name, vote, comment, step_up_json, level, at, revision) VALUES ${tuple(
        [
          actionId,
          v.user,
          v.team,
          v.email,
          v.realName,
          v.vote,
          v.comment,
          v.stepUpJson,
          v.level,
          v.at,
          v.revision,
        ],
      )}`,
    );
  }

  clearApprovals(actionId: string): Step<void> {
    return this.later(`DELETE FROM votes WHERE action_id = ${lit(actionId)} AND vote = 'approve'`);
  }

  insertRevision(actionId: string, r: RevisionColumns): Step<void> {
    return this.later(
      `INSERT INTO revisions (action_id, revision, request_json, request_sha256, "user", team, at, patch_json, comment) VALUES ${tuple(
        [actionId, r.revision, r.requestJson, r.requestSha256, r.user, r.team, r.at, r.patchJson, r.comment],
      )}`,
    );
  }

  forgetJtis(exp: number): Step<void> {
    // Rows another transaction is already deleting are skipped: waiting on them would only
    // serialise unrelated agents, and waits in varying order could deadlock. Sent with
    // the jti's insert that follows it.
    return this.later(`DELETE FROM proof_jtis WHERE (agent_id, jti) IN (
      SELECT agent_id, jti FROM proof_jtis WHERE exp <= ${lit(exp)} FOR UPDATE SKIP LOCKED)`);
  }

  insertJti(agentId: string, jti: string, exp: number): Step<boolean> {
    // Sent with the next statement (the pending count, on a new request), not on its own:
    // a spent jti fails the insert on the primary key, which stops the rest of the message
    // (the COMMIT too, if it travels with it) and is told as the replay it means. A second
    // spender waits for the first's commit, as ON CONFLICT would.
    this.meanings.push((e) =>
      e.code === "23505" && e.table === "proof_jtis" ? replayedProof(agentId, jti) : undefined,
    );
    this.ahead.push({
      text: `INSERT INTO proof_jtis (agent_id, jti, exp) VALUES ${tuple([agentId, jti, exp])}`,
    });
    return done(true);
  }

  *jobAction(jobKey: string): Step<string | null> {
    const [row] = yield* this.rows<{ actionId: string }>(
      `SELECT action_id AS "actionId" FROM intake_jobs WHERE job_key = ${lit(jobKey)}`,
    );
    return row?.actionId ?? null;
  }

  insertJob(job: { readonly key: string; readonly id: string }, actionId: string): Step<void> {
    return this.later(
      `INSERT INTO intake_jobs (job_key, job_id, action_id) VALUES ${tuple([job.key, job.id, actionId])} ON CONFLICT DO NOTHING`,
    );
  }

  insertEvents(rows: readonly NewEventRow[]): Step<void> {
    if (!rows.length) return done(undefined);
    return this.later(
      `INSERT INTO events (action_id, agent_id, type, actor, at, data_json) VALUES ${rows
        .map((r) => tuple([r.actionId, r.agentId, r.type, r.actor, r.at, r.dataJson]))
        .join(", ")}`,
    );
  }

  insertOutbox(rows: readonly NewOutboxRow[]): Step<ReadonlyMap<string, number>> {
    if (!rows.length) return done(new Map());
    // The ids of rows written leased are needed only once the transaction has committed
    // (they are handed to the receiver then): so the insert is sent with the next
    // statement or the COMMIT, and its answer makes the effects born leased here, as
    // insertEffects would from the map (which is left empty). A row written leased counts
    // its first attempt (see insertEffects).
    const leases = this.writeLeases;
    this.ahead.push({
      text: `INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at, lease_until, attempts)
       VALUES ${rows
         .map((r) =>
           tuple([
             r.actionId,
             r.kind,
             r.dedupeKey,
             r.payloadJson,
             r.dueAt,
             r.createdAt,
             r.leaseUntil,
             r.leaseUntil === null ? 0 : 1,
           ]),
         )
         .join(", ")}
       ON CONFLICT DO NOTHING
       RETURNING id, dedupe_key AS "dedupeKey", lease_until IS NOT NULL AS leased`,
      onAnswer: (r) => {
        if (!leases) return;
        const leased = new Map(
          (r.rows as { id: string; dedupeKey: string; leased: boolean }[])
            .filter((x) => x.leased)
            .map((x) => [x.dedupeKey, Number(x.id)]),
        );
        for (const row of rows) {
          const id = leased.get(row.dedupeKey);
          if (id !== undefined && row.leaseUntil !== null)
            leases.born.push(toEffect({ ...row, id, attempts: 1 }));
        }
      },
    });
    return done(new Map());
  }

  *logHead(): Step<{ seq: number; digest: string } | null> {
    // Held until commit: the next decider reads the head only after this record is visible.
    // Taken last in the transaction, so the log is held only for the few statements that
    // follow. The head is read by the statement after the lock, on a fresh snapshot.
    this.ahead.push({ text: this.lock("log") });
    const [head] = yield* this.rows<{ seq: string; digest: string }>(
      "SELECT seq, digest FROM records ORDER BY seq DESC LIMIT 1",
    );
    return head ? { seq: Number(head.seq), digest: head.digest } : null;
  }

  insertRecord(r: RecordColumns): Step<void> {
    return this.later(
      `INSERT INTO records (seq, action_id, decision_id, jws, digest, kid, agent_id, region, verdict,
        decided_at, kind, ref) VALUES ${tuple([
          r.seq,
          r.actionId,
          r.decisionId,
          r.jws,
          r.digest,
          r.kid,
          r.agentId,
          r.region,
          r.verdict,
          r.decidedAt,
          r.kind,
          r.ref,
        ])}`,
    );
  }

  closeAction(id: string, c: Closed): Step<boolean> {
    // Sent with the next statement or the COMMIT, not on its own: the log's lock is held
    // from the head's read to the commit, so a round trip less here is one less for every
    // decider waiting. An action that was not pending fails the statement (a division by
    // zero rows changed), which stops the rest of the message, COMMIT included, and is
    // told as the error the logic throws (the action is held or was inserted by this
    // transaction, so this is a defect, never a race).
    this.meanings.push((e) => (e.code === "22012" ? decidedTwice(id) : undefined));
    this.ahead.push({
      text: `WITH closed AS (UPDATE actions SET status = ${lit(c.status)}, verdict = ${lit(c.verdict)},
        reason_code = ${lit(c.reasonCode)}, decided_at = ${lit(c.decidedAt)}, record_seq = ${lit(c.recordSeq)}
       WHERE id = ${lit(id)} AND status = 'pending' RETURNING 1)
      SELECT 1 / (SELECT count(*)::int FROM closed) AS closed`,
    });
    return done(true);
  }

  *recordOf(actionId: string): Step<StoredRecord | null> {
    const [r] = yield* this.rows<StoredRecord & { seq: string }>(
      `SELECT seq, action_id AS "actionId", decision_id AS "decisionId", jws, digest, kid
       FROM records WHERE action_id = ${lit(actionId)} AND kind = 'decision'`,
    );
    return r ? { ...r, seq: Number(r.seq) } : null;
  }

  *actionForReceipt(actionId: string): Step<{ action: ActionRow; record: StoredRecord | null } | null> {
    // One round trip: the action held FOR UPDATE with its decision found by primary key
    // (record_seq), instead of the action, its votes and the record by action_id.
    const [row] = yield* wait(
      this.tx
        .select({
          action: schema.actions,
          record: {
            seq: schema.records.seq,
            actionId: schema.records.actionId,
            decisionId: schema.records.decisionId,
            jws: schema.records.jws,
            digest: schema.records.digest,
            kid: schema.records.kid,
          },
        })
        .from(schema.actions)
        .leftJoin(
          schema.records,
          and(eq(schema.records.seq, schema.actions.recordSeq), eq(schema.records.kind, "decision")),
        )
        .where(eq(schema.actions.id, actionId))
        .for("update", { of: schema.actions }),
    );
    if (!row) return null;
    const action = toRow(row.action);
    if (row.record) return { action, record: { ...row.record, actionId } };
    // Decided with no record_seq (not written so today): find the record by action.
    return { action, record: action.status === "decided" ? yield* this.recordOf(actionId) : null };
  }

  *receiptsOf(actionId: string): Step<StoredReceipt[]> {
    const rows = yield* this.rows<StoredReceipt & { seq: string; at: string }>(
      `SELECT seq, kind, action_id AS "actionId", decision_id AS "receiptId", jws, decided_at AS at
       FROM records WHERE action_id = ${lit(actionId)} AND kind <> 'decision' ORDER BY seq`,
    );
    return rows.map((r) => ({ ...r, seq: Number(r.seq), at: Number(r.at) }));
  }

  *insertPasskeyLink(l: PasskeyLinkColumns): Step<void> {
    yield* wait(this.tx.insert(schema.passkeyLinks).values(l));
  }

  *passkeyLink(tokenHash: string): Step<PasskeyLinkColumns | null> {
    const [l] = yield* wait(
      this.tx.select().from(schema.passkeyLinks).where(eq(schema.passkeyLinks.tokenHash, tokenHash)),
    );
    return (l as PasskeyLinkColumns | undefined) ?? null;
  }

  *spendPasskeyLink(tokenHash: string, now: number): Step<PasskeyLinkColumns | null> {
    // One UPDATE with its condition: of concurrent redemptions, the row lock lets one
    // through and the others re-check `used_at IS NULL` and find nothing.
    const [l] = yield* wait(
      this.tx
        .update(schema.passkeyLinks)
        .set({ usedAt: now })
        .where(
          and(
            eq(schema.passkeyLinks.tokenHash, tokenHash),
            isNull(schema.passkeyLinks.usedAt),
            gt(schema.passkeyLinks.expiresAt, now),
          ),
        )
        .returning(),
    );
    return (l as PasskeyLinkColumns | undefined) ?? null;
  }

  *insertPasskey(c: PasskeyColumns): Step<void> {
    yield* wait(this.tx.insert(schema.passkeyCredentials).values(c));
  }

  *passkey(credentialId: string): Step<PasskeyColumns | null> {
    const [c] = yield* wait(
      this.tx
        .select()
        .from(schema.passkeyCredentials)
        .where(eq(schema.passkeyCredentials.credentialId, credentialId)),
    );
    return c ?? null;
  }

  *passkeysOf(team: string, user: string): Step<PasskeyColumns[]> {
    return yield* wait(
      this.tx
        .select()
        .from(schema.passkeyCredentials)
        .where(and(eq(schema.passkeyCredentials.team, team), eq(schema.passkeyCredentials.user, user)))
        .orderBy(asc(schema.passkeyCredentials.createdAt), asc(schema.passkeyCredentials.credentialId)),
    );
  }

  *deletePasskey(team: string, user: string, credentialId: string): Step<boolean> {
    const rows = yield* wait(
      this.tx
        .delete(schema.passkeyCredentials)
        .where(
          and(
            eq(schema.passkeyCredentials.credentialId, credentialId),
            eq(schema.passkeyCredentials.team, team),
            eq(schema.passkeyCredentials.user, user),
          ),
        )
        .returning({ id: schema.passkeyCredentials.credentialId }),
    );
    return rows.length === 1;
  }

  *updatePasskeyCounter(credentialId: string, counter: number): Step<void> {
    yield* wait(
      this.tx
        .update(schema.passkeyCredentials)
        .set({ counter })
        .where(eq(schema.passkeyCredentials.credentialId, credentialId)),
    );
  }
}

/**
 * A 64-bit advisory lock key for a name. Computed here rather than with the server's
 * hash functions so the key is the same on every PostgreSQL version and easy to find in
 * pg_locks (objid/classid are its halves).
 */
function lockKey(name: string): string {
  const h = createHash("sha256").update(`countersign:${name}`).digest();
  return h.readBigInt64BE(0).toString();
}

/** drizzle wraps driver errors; the driver's own error carries PostgreSQL's code. */
function causeOf(e: unknown): Error & { code?: string } {
  let cur = e;
  while (cur instanceof Error && cur.cause instanceof Error) cur = cur.cause;
  return cur instanceof Error ? cur : new Error(String(e));
}

/** host:port/database of a connection URL, without user or password, for error messages. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || "5432"}${u.pathname}`;
  } catch {
    return "the configured DATABASE_URL (it is not a valid URL)";
  }
}
