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
  lt,
  lte,
  ne,
  or,
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
  type Finish,
  type NewEventRow,
  type NewOutboxRow,
  type PasskeyColumns,
  type PasskeyLinkColumns,
  type RecordColumns,
  runAwaiting,
  type Step,
  type StoreTx,
  toEffects,
  toEvent,
  type VoteColumns,
  WEBHOOK_ATTEMPT_FIELDS,
  type WriteLeases,
  wait,
  withVotes,
} from "./core.js";
import { StoreError } from "./errors.js";
import { type actionValues, toRow } from "./rows.js";

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

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** A transaction lost a race the database detected; running it again is safe (the plan is pure). */
const RETRYABLE = new Set(["40P01", "40001"]);
const MAX_TRIES = 5;

export class PostgresStore extends CoreStore implements Store {
  private signer: RecordSigner | null = null;
  /** Who takes effects leased as written (see handEffectsTo). */
  private receiver: EffectReceiver | null = null;
  private closed = false;
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
      try {
        // Named, not left to the server's default: the log's head is read after its lock is
        // granted, which sees the previous record only at READ COMMITTED.
        const value = await this.db.transaction(
          (tx) => runAwaiting(step(new PgStoreTx(tx, this.signer, writeLeases, this.scope))),
          { isolationLevel: "read committed" },
        );
        if (writeLeases?.reserved) receiver?.settle(writeLeases.born, writeLeases.reserved);
        return value;
      } catch (e) {
        if (writeLeases?.reserved) receiver?.settle([], writeLeases.reserved);
        const code = causeOf(e).code;
        if (attempt >= MAX_TRIES || !code || !RETRYABLE.has(code)) throw e;
      }
    }
  }

  /** Statements outside write(): reads, and writes of one statement that need no transaction. */
  private reader(handle: PgTx | Db = this.db): PgStoreTx {
    return new PgStoreTx(handle, null, null, this.scope);
  }

  async getAction(id: string): Promise<ActionWithVotes | null> {
    // One snapshot for the action and its votes, so a reader never sees a vote without
    // the state it produced (or the reverse).
    return this.db.transaction((tx) => runAwaiting(this.reader(tx).loadAction(id, false)), {
      isolationLevel: "repeatable read",
      accessMode: "read only",
    });
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
    const [r] = await this.db
      .select({ actionId: schema.intakeJobs.actionId })
      .from(schema.intakeJobs)
      .where(eq(schema.intakeJobs.jobKey, jobKey));
    return r ?? null;
  }

  async unreleasedJobs(actionId: string): Promise<{ key: string; id: string }[]> {
    return this.db
      .select({ key: schema.intakeJobs.jobKey, id: schema.intakeJobs.jobId })
      .from(schema.intakeJobs)
      .where(and(eq(schema.intakeJobs.actionId, actionId), isNull(schema.intakeJobs.releasedAt)));
  }

  async markJobsReleased(keys: readonly string[], now: number): Promise<void> {
    if (!keys.length) return;
    await this.db
      .update(schema.intakeJobs)
      .set({ releasedAt: now })
      .where(inArray(schema.intakeJobs.jobKey, [...keys]));
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
    return this.db
      .select(CARD_COLUMNS)
      .from(schema.cards)
      .where(eq(schema.cards.actionId, actionId))
      .orderBy(asc(schema.cards.level));
  }

  async findCardByMessage(channel: string, ts: string): Promise<Card | null> {
    const [c] = await this.db
      .select(CARD_COLUMNS)
      .from(schema.cards)
      .where(and(eq(schema.cards.channel, channel), eq(schema.cards.ts, ts)))
      .limit(1);
    return c ?? null;
  }

  async saveCard(card: Card, now: number): Promise<boolean> {
    const r = await this.db
      .insert(schema.cards)
      .values({ ...card, postedAt: now })
      .onConflictDoNothing()
      .returning({ level: schema.cards.level });
    return r.length === 1;
  }

  handEffectsTo(receiver: EffectReceiver | null): void {
    this.receiver = receiver;
  }

  async claimEffects(now: number, limit: number, leaseMs: number): Promise<Effect[]> {
    const o = schema.outbox;
    // SKIP LOCKED: a row another claimer is leasing right now is passed over, not waited
    // for, and the lease condition is checked again on the row as it is when locked.
    const due = this.db
      .select({ id: o.id })
      .from(o)
      .where(and(eq(o.state, "pending"), lte(o.dueAt, now), or(isNull(o.leaseUntil), lt(o.leaseUntil, now))))
      .orderBy(asc(o.dueAt), asc(o.id))
      .limit(limit)
      .for("update", { skipLocked: true });
    const rows = await this.db
      .update(o)
      .set({ leaseUntil: now + leaseMs, attempts: sql`${o.attempts} + 1` })
      .where(inArray(o.id, due))
      .returning({
        id: o.id,
        actionId: o.actionId,
        kind: o.kind,
        dedupeKey: o.dedupeKey,
        payloadJson: o.payloadJson,
        attempts: o.attempts,
        createdAt: o.createdAt,
        leaseUntil: o.leaseUntil,
      });
    return toEffects(rows);
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

  /** Finish an effect only if `lease` is still its lease (see Effect.lease). */
  protected async finish(id: number, lease: number, f: Finish): Promise<boolean> {
    const { takeBack, ...values } = f;
    const rows = await this.db
      .update(schema.outbox)
      .set({
        ...values,
        leaseUntil: null,
        ...(takeBack ? { attempts: sql`greatest(0, ${schema.outbox.attempts} - 1)` } : {}),
      })
      .where(and(eq(schema.outbox.id, id), eq(schema.outbox.leaseUntil, lease)))
      .returning({ id: schema.outbox.id });
    return rows.length === 1;
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
    await this.pool.end();
  }
}

/**
 * The statements of PostgresStore's writes, for the shared store logic (core.ts). Where
 * SQLite has one writer, these take the locks that give the same behaviour (see the top).
 */
const CARD_COLUMNS = {
  actionId: schema.cards.actionId,
  level: schema.cards.level,
  channel: schema.cards.channel,
  ts: schema.cards.ts,
};

class PgStoreTx implements StoreTx {
  constructor(
    private readonly tx: PgTx | Db,
    readonly signer: RecordSigner | null,
    readonly writeLeases: WriteLeases | null,
    /** Names this log for its advisory locks. */
    private readonly scope: string,
  ) {}

  private *lock(name: string): Step<void> {
    yield* wait(
      this.tx.execute(sql`SELECT pg_advisory_xact_lock(${lockKey(`${name}:${this.scope}`)}::bigint)`),
    );
  }

  *holdAgent(agentId: string): Step<void> {
    // Serialises one agent's admissions, so a repeat always sees the first and the
    // pending count is exact; other agents are not held up.
    yield* this.lock(`agent:${agentId}`);
  }

  *actionByRequest(agentId: string, requestId: string): Step<ActionRow | null> {
    const [row] = yield* wait(
      this.tx
        .select()
        .from(schema.actions)
        .where(and(eq(schema.actions.agentId, agentId), eq(schema.actions.requestId, requestId)))
        .limit(1),
    );
    return row ? toRow(row) : null;
  }

  *loadAction(id: string, forUpdate: boolean): Step<ActionWithVotes | null> {
    const q = this.tx.select().from(schema.actions).where(eq(schema.actions.id, id));
    const [row] = yield* wait(forUpdate ? q.for("update") : q.execute());
    if (!row) return null;
    const votes = yield* wait(
      this.tx
        .select()
        .from(schema.votes)
        .where(eq(schema.votes.actionId, id))
        .orderBy(asc(schema.votes.at), asc(schema.votes.user)),
    );
    return withVotes(row, votes);
  }

  *countPending(agentId: string, limit: number): Step<number> {
    const bounded = this.tx
      .select({ one: sql`1` })
      .from(schema.actions)
      .where(and(eq(schema.actions.agentId, agentId), eq(schema.actions.status, "pending")))
      .limit(limit)
      .as("bounded");
    const [count] = yield* wait(this.tx.select({ n: sql<number>`count(*)::int` }).from(bounded));
    return count?.n ?? 0;
  }

  *insertAction(v: ReturnType<typeof actionValues>): Step<void> {
    yield* wait(this.tx.insert(schema.actions).values(v));
  }

  *updateAction(id: string, set: ActionUpdate): Step<void> {
    yield* wait(this.tx.update(schema.actions).set(set).where(eq(schema.actions.id, id)));
  }

  *insertVote(actionId: string, v: VoteColumns): Step<void> {
    yield* wait(this.tx.insert(schema.votes).values({ ...v, actionId }));
  }

  *forgetJtis(exp: number): Step<void> {
    // Rows another transaction is already deleting are skipped: waiting on them would only
    // serialise unrelated agents, and waits in varying order could deadlock.
    yield* wait(
      this.tx.execute(sql`
        DELETE FROM proof_jtis WHERE (agent_id, jti) IN (
          SELECT agent_id, jti FROM proof_jtis WHERE exp <= ${exp} FOR UPDATE SKIP LOCKED)`),
    );
  }

  *insertJti(agentId: string, jti: string, exp: number): Step<boolean> {
    const inserted = yield* wait(
      this.tx
        .insert(schema.proofJtis)
        .values({ agentId, jti, exp })
        .onConflictDoNothing()
        .returning({ jti: schema.proofJtis.jti }),
    );
    return inserted.length === 1;
  }

  *insertJob(job: { readonly key: string; readonly id: string }, actionId: string): Step<void> {
    yield* wait(
      this.tx
        .insert(schema.intakeJobs)
        .values({ jobKey: job.key, jobId: job.id, actionId })
        .onConflictDoNothing(),
    );
  }

  *insertEvents(rows: readonly NewEventRow[]): Step<void> {
    yield* wait(this.tx.insert(schema.events).values([...rows]));
  }

  *insertOutbox(rows: readonly NewOutboxRow[]): Step<ReadonlyMap<string, number>> {
    const inserted = yield* wait(
      this.tx
        .insert(schema.outbox)
        .values(rows.map((r) => (r.leaseUntil === null ? r : { ...r, attempts: 1 })))
        .onConflictDoNothing()
        .returning({
          id: schema.outbox.id,
          dedupeKey: schema.outbox.dedupeKey,
          leaseUntil: schema.outbox.leaseUntil,
        }),
    );
    return new Map(inserted.filter((r) => r.leaseUntil !== null).map((r) => [r.dedupeKey, r.id]));
  }

  *logHead(): Step<{ seq: number; digest: string } | null> {
    // Held until commit: the next decider reads the head only after this record is visible.
    // Taken last in the transaction, so the log is held only for the few statements that follow.
    yield* this.lock("log");
    const [head] = yield* wait(
      this.tx
        .select({ seq: schema.records.seq, digest: schema.records.digest })
        .from(schema.records)
        .orderBy(desc(schema.records.seq))
        .limit(1),
    );
    return head ?? null;
  }

  *insertRecord(r: RecordColumns): Step<void> {
    yield* wait(this.tx.insert(schema.records).values(r));
  }

  *closeAction(id: string, c: Closed): Step<boolean> {
    const changed = yield* wait(
      this.tx
        .update(schema.actions)
        .set(c)
        .where(and(eq(schema.actions.id, id), eq(schema.actions.status, "pending")))
        .returning({ id: schema.actions.id }),
    );
    return changed.length === 1;
  }

  *recordOf(actionId: string): Step<StoredRecord | null> {
    const [r] = yield* wait(
      this.tx
        .select({
          seq: schema.records.seq,
          actionId: schema.records.actionId,
          decisionId: schema.records.decisionId,
          jws: schema.records.jws,
          digest: schema.records.digest,
          kid: schema.records.kid,
        })
        .from(schema.records)
        .where(and(eq(schema.records.actionId, actionId), eq(schema.records.kind, "decision"))),
    );
    return r ? { ...r, actionId } : null;
  }

  *receiptsOf(actionId: string): Step<StoredReceipt[]> {
    const rows = yield* wait(
      this.tx
        .select({
          seq: schema.records.seq,
          kind: schema.records.kind,
          actionId: schema.records.actionId,
          receiptId: schema.records.decisionId,
          jws: schema.records.jws,
          at: schema.records.decidedAt,
        })
        .from(schema.records)
        .where(and(eq(schema.records.actionId, actionId), ne(schema.records.kind, "decision")))
        .orderBy(asc(schema.records.seq)),
    );
    return rows as StoredReceipt[];
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
