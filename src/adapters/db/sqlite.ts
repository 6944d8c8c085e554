/**
 * The SQLite store (better-sqlite3 + drizzle for the schema and migrations).
 *
 * Writes are committed in groups (see `write`): every write that arrives within one turn
 * of the event loop runs in one IMMEDIATE transaction, each inside a savepoint of its
 * own, in arrival order, and every caller hears back only after that transaction has
 * committed. IMMEDIATE makes two processes sharing the file serialise on the write lock
 * instead of failing to upgrade a read lock. Record seq/prev are allocated inside the
 * write that issues the record, after every write before it in the group, which is what
 * keeps the log one chain.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { and, asc, desc, eq, gte, inArray, isNull, lte, sql } from "drizzle-orm";
import { type BetterSQLite3Database, drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import * as schema from "../../../db/schema.js";
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
  UnchainedClaims,
  WebhookAttempt,
} from "../../app/ports.js";
import { packagePath } from "../../paths.js";
import { ChainSigner } from "../../records/chain-signer.js";
import { signingKeyOf } from "../../records/signing.js";
import {
  type ActionUpdate,
  type AgentStats,
  agentStats,
  type Closed,
  CoreStore,
  columnsOf,
  type DeferredRecordColumns,
  done,
  type Finish,
  type NewEventRow,
  type NewOutboxRow,
  type OutboxColumns,
  type PasskeyColumns,
  type PasskeyLinkColumns,
  type RecordColumns,
  type RevisionColumns,
  runNow,
  type Step,
  type StoreTx,
  toEffects,
  toEvent,
  type VoteColumns,
  WEBHOOK_ATTEMPT_FIELDS,
  type WriteLeases,
  withVotes,
} from "./core.js";
import { StoreError } from "./errors.js";
import { type ActionColumns, type actionValues, toRow } from "./rows.js";

export const MIGRATIONS_FOLDER = packagePath("db", "migrations");

type Db = BetterSQLite3Database<typeof schema>;

/**
 * The most writes one group commits together. A group is whatever arrived in one turn of
 * the event loop, so this only bounds a burst: how long one transaction holds the write
 * lock, and how many callers one failed commit sends an error.
 */
export const GROUP_MAX = 256;

/**
 * How long a write that can wait (an effect's outcome, see writeSoon) waits for a group to
 * ride with before it commits on its own.
 */
export const SOON_MS = 20;

export function openSqlite(file: string): { db: Db; raw: Database.Database } {
  if (file !== ":memory:") fs.mkdirSync(path.dirname(file), { recursive: true });
  const raw = new Database(file);
  // The pragmas, in one place: WAL lets readers run beside the writer; a busy timeout
  // makes a second process wait for the lock instead of failing at once.
  raw.pragma("journal_mode = WAL");
  raw.pragma("synchronous = NORMAL");
  raw.pragma("foreign_keys = ON");
  raw.pragma("busy_timeout = 5000");
  return { db: drizzle(raw, { schema }), raw };
}

export function migrateSqlite(db: Db): void {
  migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });
}

/** A write waiting in the open group for its commit. */
interface Queued {
  readonly run: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

type Outcome =
  /** `born`: the effects this write leased as written, handed to the receiver after the commit. */
  | { readonly ok: true; readonly value: unknown; readonly born: readonly Effect[] }
  | { readonly ok: false; readonly error: unknown };

export class SqliteStore extends CoreStore implements Store {
  private signer: RecordSigner | null = null;
  /** Signs a group's decisions on a second thread; null: each is signed where it is written. */
  private chainSigner: ChainSigner | null = null;
  /** The statements core.ts runs inside a write. */
  private readonly tx: SqliteTx;
  /** The queries off the hot paths (see prepareQueries). */
  private readonly q: ReturnType<typeof prepareQueries>;
  private readonly db: Db;
  private readonly raw: Database.Database;
  /**
   * Every statement is prepared once and kept: drizzle builds each query anew and
   * better-sqlite3 prepares it again on every call, which profiles of intake and expiry
   * showed as a third of the store's CPU. They run on the same connection, so inside the
   * group's transaction too.
   */
  private readonly statements = new Map<string, Database.Statement>();
  private readTx: ((id: string) => ActionWithVotes | null) & {
    deferred: (id: string) => ActionWithVotes | null;
  };
  /** The open group: writes asked for since the last flush, in arrival order. */
  private queue: Queued[] = [];
  private flushScheduled = false;
  /** Writes that can wait: they join the next group, or form one after SOON_MS. */
  private soon: Queued[] = [];
  private soonTimer: NodeJS.Timeout | null = null;
  /** One group: its transaction, and a savepoint per write (better-sqlite3 nests a transaction as a savepoint). */
  private readonly commitGroup: Database.Transaction<
    (calls: readonly Queued[], isolate: boolean) => Outcome[]
  >;
  private readonly savepoint: (run: () => unknown) => unknown;
  /** Who takes effects leased as written (see handEffectsTo). */
  private receiver: EffectReceiver | null = null;
  /** The effects the write running now has leased as written; null outside a write, or with no receiver. */
  private writeLeases: WriteLeases | null = null;
  /** Slots the receiver has held for this flush's effects, across its attempts. */
  private reserved = 0;

  constructor(file: string, opts: { migrate?: boolean } = {}) {
    super();
    const { db, raw } = openSqlite(file);
    this.db = db;
    this.raw = raw;
    if (opts.migrate !== false) migrateSqlite(db);
    this.tx = new SqliteTx(
      (sqlText) => this.prep(sqlText),
      () => this.signer,
      () => this.writeLeases,
    );
    this.q = prepareQueries(db);
    this.readTx = raw.transaction((id: string) => runNow(this.tx.loadAction(id)));
    this.savepoint = raw.transaction((run: () => unknown) => run());
    this.commitGroup = raw.transaction((calls: readonly Queued[], isolate: boolean) => {
      const outcomes: Outcome[] = [];
      // Decisions are signed on the worker only in a group of several writes run without
      // savepoints: a write undone alone by its savepoint must not leave a record the next
      // one was already chained to. Any failure rolls the whole group back, and it runs
      // again with savepoints, signing here.
      const chain = this.chainSigner;
      this.tx.chain = !isolate && calls.length > 1 && chain?.usable ? chain : null;
      try {
        this.runGroup(calls, isolate, outcomes);
        // Before the COMMIT: every record of the group signed and inserted.
        this.tx.drainChain();
      } finally {
        this.tx.endChain();
      }
      return outcomes;
    });
  }

  private runGroup(calls: readonly Queued[], isolate: boolean, outcomes: Outcome[]): void {
    for (const c of calls) {
      const writeLeases: WriteLeases | null = this.receiver
        ? { receiver: this.receiver, born: [], reserved: 0 }
        : null;
      this.writeLeases = writeLeases;
      try {
        outcomes.push({
          ok: true,
          value: isolate ? this.savepoint(c.run) : c.run(),
          born: writeLeases?.born ?? [],
        });
      } catch (error) {
        // Most errors (a RejectionError, a constraint) undo only this write's savepoint.
        // A few make SQLite roll the whole transaction back (a full disk, an I/O error):
        // then nothing of the group will be committed, and every caller must hear so.
        if (!isolate || !this.raw.inTransaction) throw error;
        outcomes.push({ ok: false, error });
      } finally {
        // Slots held by a write that failed, or by an attempt run again, are freed at the flush's end.
        this.reserved += writeLeases?.reserved ?? 0;
        this.writeLeases = null;
      }
    }
  }

  private prep(sqlText: string): Database.Statement {
    let st = this.statements.get(sqlText);
    if (!st) {
      st = this.raw.prepare(sqlText);
      this.statements.set(sqlText, st);
    }
    return st;
  }

  /** Records are signed inside the store's transaction; the key is set once at start. */
  setSigner(signer: RecordSigner): void {
    this.signer = signer;
    void this.chainSigner?.close();
    // A signer made by recordSigner carries its key: records of a group are then signed on
    // a second thread (see ChainSigner); SIGN_WORKER=off makes a signer without it.
    const key = signingKeyOf(signer);
    this.chainSigner = key ? new ChainSigner(key) : null;
  }

  /**
   * Group commit. One commit costs 0.1-0.2 ms on this kind of disk, more than the rest of
   * a verdict's writes, and a request made six of them: with one commit per write, SQLite
   * alone capped verdicts near 5k/s, while the same rows at 100 per transaction reached
   * 15k/s (docs/performance.md). So `fn` does not run at once: it joins the writes asked
   * for in this turn of the event loop, and the group runs on the next turn
   * (setImmediate) as one transaction, in arrival order. A write that throws rejects
   * alone and the others go on (see commitOptimistically: the group is then run again with
   * a savepoint per write). Each promise settles only after the COMMIT: nothing is acknowledged before it
   * is durable, and if the commit fails every write of the group rejects.
   *
   * Reads do not wait for a group: they see what is committed, and a caller that awaits
   * its write before reading sees it.
   */
  private write<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run: fn, resolve: resolve as (value: unknown) => void, reject });
      this.scheduleFlush();
    });
  }

  /**
   * A write nobody waits on to go on (an effect's outcome: the runner has already moved to
   * the next effect, and a crash before it commits only runs the effect once more). It
   * rides with the next group instead of costing a commit of its own, which at a steady
   * 200 requests a second was three of a request's seven commits; with no group within
   * SOON_MS, it commits on its own.
   */
  private writeSoon<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.soon.push({ run: fn, resolve: resolve as (value: unknown) => void, reject });
      this.soonTimer ??= setTimeout(() => {
        this.soonTimer = null;
        this.scheduleFlush();
      }, SOON_MS);
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Commit the open group (up to GROUP_MAX writes; the rest form the next group, a turn later). */
  private flush(): void {
    this.flushScheduled = false;
    const calls = this.queue.splice(0, GROUP_MAX);
    // Writes that can wait fill what room is left, behind the ones that cannot.
    if (this.soon.length && calls.length < GROUP_MAX) {
      calls.push(...this.soon.splice(0, GROUP_MAX - calls.length));
      if (!this.soon.length && this.soonTimer) {
        clearTimeout(this.soonTimer);
        this.soonTimer = null;
      }
    }
    if (this.queue.length || (this.soon.length && !this.soonTimer)) this.scheduleFlush();
    if (!calls.length) return;
    let outcomes: Outcome[];
    try {
      if (!this.raw.open) throw new StoreError("the SQLite store is closed", { code: "store_unavailable" });
      outcomes = this.commitOptimistically(calls);
    } catch (error) {
      this.settleWriteLeases([]);
      for (const c of calls) c.reject(error);
      return;
    }
    // Committed: the effects leased as written can start, before their writers hear back.
    this.settleWriteLeases(outcomes.flatMap((o) => (o.ok ? o.born : [])));
    calls.forEach((c, i) => {
      const o = outcomes[i]!;
      if (o.ok) c.resolve(o.value);
      else c.reject(o.error);
    });
  }

  /**
   * A savepoint per write costs about a third of a group's time (releasing one copies its
   * pages). Writes rarely fail (a replayed proof, a duplicate request), so a group runs
   * first without savepoints; only if a write throws is the whole transaction rolled back
   * and the group run again with one savepoint per write, so that the failure stays its
   * own. Running a write twice is safe: its plan is pure and its signature deterministic
   * (PostgresStore already reruns plans after a deadlock). A single write needs no
   * savepoint: its failure is the group's.
   */
  private commitOptimistically(calls: readonly Queued[]): Outcome[] {
    if (calls.length === 1) return this.commitGroup.immediate(calls, false);
    try {
      return this.commitGroup.immediate(calls, false);
    } catch {
      return this.commitGroup.immediate(calls, true);
    }
  }

  protected transact<T>(step: (tx: StoreTx) => Step<T>): Promise<T> {
    return this.write(() => runNow(step(this.tx)));
  }

  /** Hands the receiver what this flush leased as written and committed, and frees its slots. */
  private settleWriteLeases(born: readonly Effect[]): void {
    const reserved = this.reserved;
    this.reserved = 0;
    if (reserved) this.receiver?.settle(born, reserved);
  }

  async getAction(id: string): Promise<ActionWithVotes | null> {
    // One read transaction: the action and its votes from the same snapshot, even while
    // another process on the same file commits between the two statements.
    return this.readTx.deferred(id);
  }

  async getActionByRequest(agentId: string, requestId: string): Promise<ActionRow | null> {
    return runNow(this.tx.actionByRequest(agentId, requestId));
  }

  async getRecord(actionId: string): Promise<StoredRecord | null> {
    return runNow(this.tx.recordOf(actionId));
  }

  async getReceipts(actionId: string): Promise<StoredReceipt[]> {
    return runNow(this.tx.receiptsOf(actionId));
  }

  async findJob(jobKey: string): Promise<{ actionId: string } | null> {
    return this.q.findJob.get({ jobKey }) ?? null;
  }

  async unreleasedJobs(actionId: string): Promise<{ key: string; id: string }[]> {
    return this.q.unreleasedJobs.all({ actionId });
  }

  async markJobsReleased(keys: readonly string[], now: number): Promise<void> {
    if (!keys.length) return;
    return this.write(() => {
      for (const jobKey of keys) this.q.releaseJob.run({ now, jobKey });
    });
  }

  async listEvents(actionId: string): Promise<StoredEvent[]> {
    return this.q.listEvents.all({ actionId }).map(toEvent);
  }

  async getCards(actionId: string): Promise<Card[]> {
    return this.q.cards.all({ actionId });
  }

  async findCardByMessage(channel: string, ts: string): Promise<Card | null> {
    return this.q.cardByMessage.get({ channel, ts }) ?? null;
  }

  async saveCard(card: Card, now: number): Promise<boolean> {
    return this.write(() => this.q.saveCard.run({ ...card, now }).changes === 1);
  }

  handEffectsTo(receiver: EffectReceiver | null): void {
    this.receiver = receiver;
  }

  async claimEffects(now: number, limit: number, leaseMs: number): Promise<Effect[]> {
    const rows = await this.write(
      () =>
        this.prep(
          `UPDATE outbox SET lease_until = ?, attempts = attempts + 1
           WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND due_at <= ?
                        AND (lease_until IS NULL OR lease_until < ?) ORDER BY due_at, id LIMIT ?)
           RETURNING ${OUTBOX_COLUMNS}`,
        ).all(now + leaseMs, now, now, limit) as OutboxColumns[],
    );
    return toEffects(rows);
  }

  async renewEffects(held: readonly { id: number; lease: number }[], lease: number): Promise<number[]> {
    if (!held.length) return [];
    return this.write(() => {
      const renew = this.prep("UPDATE outbox SET lease_until = ? WHERE id = ? AND lease_until = ?");
      return held.filter((h) => renew.run(lease, h.id, h.lease).changes === 1).map((h) => h.id);
    });
  }

  /** Finish an effect only if `lease` is still its lease (see Effect.lease). */
  protected finish(id: number, lease: number, f: Finish): Promise<boolean> {
    const set = ["lease_until = NULL"];
    // Positional parameters (see POSITIONAL), in the order of the SET list.
    const values: unknown[] = [];
    const column = (c: string, v: unknown) => {
      set.push(`${c} = ?`);
      values.push(v);
    };
    if (f.state !== undefined) column("state", f.state);
    if (f.doneAt !== undefined) column("done_at", f.doneAt);
    if (f.dueAt !== undefined) column("due_at", f.dueAt);
    if (f.lastError !== undefined) column("last_error", f.lastError);
    if (f.takeBack) set.push("attempts = max(0, attempts - 1)");
    // One statement per kind of finish (four), each prepared once.
    const st = this.prep(`UPDATE outbox SET ${set.join(", ")} WHERE id = ? AND lease_until = ?`);
    return this.writeSoon(() => st.run(...values, id, lease).changes === 1);
  }

  async pendingEffectCount(dueBy?: number): Promise<number> {
    const due = dueBy === undefined ? undefined : lte(schema.outbox.dueAt, dueBy);
    return (
      this.db
        .select({ n: sql<number>`count(*)` })
        .from(schema.outbox)
        .where(and(eq(schema.outbox.state, "pending"), due))
        .get()?.n ?? 0
    );
  }

  async timersDue(until: number, limit: number): Promise<{ id: string; level: number; at: number }[]> {
    // timer_at is the pending action's next timer, kept by SQLite itself (a generated
    // column, see db/schema.ts), so this is a range scan of its index: the cost follows
    // what is due, not how much is pending.
    return this.prep(
      `SELECT id, level, timer_at AS at FROM actions INDEXED BY actions_timer
       WHERE timer_at <= ? ORDER BY timer_at, id LIMIT ?`,
    ).all(Number.isFinite(until) ? until : Number.MAX_SAFE_INTEGER, limit) as {
      id: string;
      level: number;
      at: number;
    }[];
  }

  async unreleasedDecided(limit: number): Promise<string[]> {
    return this.prep(
      `SELECT DISTINCT j.action_id AS id FROM intake_jobs j JOIN actions a ON a.id = j.action_id
       WHERE j.released_at IS NULL AND a.status = 'decided' LIMIT ?`,
    )
      .all(limit)
      .map((r) => (r as { id: string }).id);
  }

  async pendingForApprover(user: string, limit: number): Promise<ActionRow[]> {
    const rows = this.prep(
      `SELECT ${ACTION_COLUMNS} FROM actions
       WHERE status = 'pending' AND eligible_json IS NOT NULL
         AND EXISTS (SELECT 1 FROM json_each(eligible_json) e WHERE e.value = ?)
         AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.action_id = actions.id AND v.user = ?)
       ORDER BY deadline_at IS NULL, deadline_at, id LIMIT ?`,
    ).all(user, user, limit) as ActionColumns[];
    return rows.map(toRow);
  }

  async recentlyVotedBy(user: string, limit: number): Promise<ActionRow[]> {
    const rows = this.prep(
      `SELECT ${ACTION_COLUMNS} FROM actions JOIN votes v ON v.action_id = actions.id
       WHERE v.user = ? AND actions.status = 'decided' ORDER BY actions.decided_at DESC LIMIT ?`,
    ).all(user, limit) as ActionColumns[];
    return rows.map(toRow);
  }

  async recentForAgents(agentIds: readonly string[], limit: number): Promise<ActionRow[]> {
    if (!agentIds.length) return [];
    return this.db
      .select()
      .from(schema.actions)
      .where(inArray(schema.actions.agentId, [...agentIds]))
      .orderBy(desc(schema.actions.requestedAt))
      .limit(limit)
      .all()
      .map(toRow);
  }

  async agentStats(agentId: string, since: number): Promise<AgentStats> {
    return agentStats(this.q.agentStats.all({ agentId, since }));
  }

  async recordWebhookAttempt(a: WebhookAttempt): Promise<void> {
    return this.write(() => {
      this.q.webhookAttempt.run({ ...a });
    });
  }

  async webhookAttempts(actionId: string): Promise<WebhookAttempt[]> {
    return this.q.webhookAttempts.all({ actionId });
  }

  async registerSigningKey(kid: string, publicJwk: object, now: number): Promise<void> {
    return this.write(() => {
      this.q.signingKey.run({ kid, publicJwk: JSON.stringify(publicJwk), now });
    });
  }

  async signingKeys(): Promise<{ kid: string; publicJwk: object }[]> {
    return this.q.signingKeys
      .all()
      .map((k) => ({ kid: k.kid, publicJwk: JSON.parse(k.publicJwk) as object }));
  }

  async ping(): Promise<void> {
    this.prep("SELECT 1").get();
  }

  async close(): Promise<void> {
    // Writes already asked for are committed (or rejected) before the file closes, so a
    // graceful stop loses nothing a caller is still waiting on.
    while (this.queue.length || this.soon.length) this.flush();
    if (this.soonTimer) clearTimeout(this.soonTimer);
    this.soonTimer = null;
    if (this.raw.open) this.raw.close();
    await this.chainSigner?.close();
  }

  /** For the audit tools and tests: the raw handle stays inside the adapter folder. */
  get sqlite(): Database.Database {
    return this.raw;
  }
}

/** The actions table's columns in the one row shape both stores map (see rows.ts). */
/** The SQL name of each of the actions table's columns. */
const ACTION_COLUMN_NAMES = {
  id: "id",
  agentId: "agent_id",
  requestId: "request_id",
  requestJson: "request_json",
  requestSha256: "request_sha256",
  actionType: "action_type",
  riskClass: "risk_class",
  region: "region",
  status: "status",
  routeName: "route_name",
  level: "level",
  quorum: "quorum",
  eligibleJson: "eligible_json",
  deadlineAt: "deadline_at",
  capAt: "cap_at",
  policySha256: "policy_sha256",
  requestedAt: "requested_at",
  verdict: "verdict",
  reasonCode: "reason_code",
  decidedAt: "decided_at",
  recordSeq: "record_seq",
  revision: "revision",
} as const satisfies Record<keyof ActionColumns, string>;

const ACTION_COLUMNS = Object.entries(ACTION_COLUMN_NAMES)
  .map(([name, column]) => `actions.${column} AS ${name}`)
  .join(", ");

const OUTBOX_COLUMNS = `id, action_id AS actionId, kind, dedupe_key AS dedupeKey, payload_json AS payloadJson,
  attempts, created_at AS createdAt, lease_until AS leaseUntil`;

/**
 * The queries off the hot paths, prepared once through drizzle (typed by the schema). The
 * hot paths of intake, votes and the outbox stay raw prepared statements: drizzle maps
 * every row it returns through its column list, which showed in profiles there.
 */
function prepareQueries(db: Db) {
  const p = sql.placeholder;
  const { cards, intakeJobs, events, webhookAttempts, signingKeys, actions } = schema;
  const cardColumns = {
    actionId: cards.actionId,
    level: cards.level,
    channel: cards.channel,
    ts: cards.ts,
  };
  return {
    findJob: db
      .select({ actionId: intakeJobs.actionId })
      .from(intakeJobs)
      .where(eq(intakeJobs.jobKey, p("jobKey")))
      .prepare(),
    unreleasedJobs: db
      .select({ key: intakeJobs.jobKey, id: intakeJobs.jobId })
      .from(intakeJobs)
      .where(and(eq(intakeJobs.actionId, p("actionId")), isNull(intakeJobs.releasedAt)))
      .prepare(),
    releaseJob: db
      .update(intakeJobs)
      .set({ releasedAt: sql`${p("now")}` })
      .where(eq(intakeJobs.jobKey, p("jobKey")))
      .prepare(),
    listEvents: db
      .select()
      .from(events)
      .where(eq(events.actionId, p("actionId")))
      .orderBy(asc(events.id))
      .prepare(),
    cards: db
      .select(cardColumns)
      .from(cards)
      .where(eq(cards.actionId, p("actionId")))
      .orderBy(asc(cards.level))
      .prepare(),
    cardByMessage: db
      .select(cardColumns)
      .from(cards)
      .where(and(eq(cards.channel, p("channel")), eq(cards.ts, p("ts"))))
      .limit(1)
      .prepare(),
    saveCard: db
      .insert(cards)
      .values({
        actionId: p("actionId"),
        level: p("level"),
        channel: p("channel"),
        ts: p("ts"),
        postedAt: p("now"),
      })
      .onConflictDoNothing()
      .prepare(),
    agentStats: db
      .select({ k: sql<string>`coalesce(${actions.verdict}, 'pending')`, n: sql<number>`count(*)` })
      .from(actions)
      .where(and(eq(actions.agentId, p("agentId")), gte(actions.requestedAt, p("since"))))
      .groupBy(sql`1`)
      .prepare(),
    webhookAttempt: db
      .insert(webhookAttempts)
      .values({
        actionId: p("actionId"),
        webhookId: p("webhookId"),
        attempt: p("attempt"),
        at: p("at"),
        url: p("url"),
        status: p("status"),
        durationMs: p("durationMs"),
        error: p("error"),
        address: p("address"),
      })
      .prepare(),
    webhookAttempts: db
      .select(columnsOf(webhookAttempts, WEBHOOK_ATTEMPT_FIELDS))
      .from(webhookAttempts)
      .where(eq(webhookAttempts.actionId, p("actionId")))
      .orderBy(asc(webhookAttempts.id))
      .prepare(),
    signingKey: db
      .insert(signingKeys)
      .values({ kid: p("kid"), publicJwk: p("publicJwk"), createdAt: p("now") })
      .onConflictDoNothing()
      .prepare(),
    signingKeys: db.select().from(signingKeys).orderBy(asc(signingKeys.createdAt)).prepare(),
  };
}

/** At most this many rows per multi-row INSERT: one prepared statement per row count up to it. */
const ROWS_PER_INSERT = 16;

/** `(?, ?, ...), (...)`: `rows` groups of `columns` placeholders. */
function placeholders(rows: number, columns: number): string {
  const one = `(${Array.from({ length: columns }, () => "?").join(", ")})`;
  return Array.from({ length: rows }, () => one).join(", ");
}

/**
 * A multi-row INSERT's text for each row count 1..ROWS_PER_INSERT, built once. The texts
 * of the hot statements are constants: a text built per call (a template with a
 * substitution) is a new string, hashed in full and flattened for every statement-cache
 * lookup, which showed in the profile of a burst of verdicts (docs/performance.md).
 */
function insertTexts(head: string, tail = ""): readonly string[] {
  return Array.from({ length: ROWS_PER_INSERT + 1 }, (_, n) => `${head} VALUES ${placeholders(n, 6)}${tail}`);
}

const INSERT_EVENTS = insertTexts("INSERT INTO events (action_id, agent_id, type, actor, at, data_json)");
const INSERT_OUTBOX = insertTexts(
  "INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at)",
  " ON CONFLICT DO NOTHING",
);
const ACTION_BY_REQUEST = `SELECT ${ACTION_COLUMNS} FROM actions WHERE agent_id = ? AND request_id = ?`;
const ACTION_BY_ID = `SELECT ${ACTION_COLUMNS} FROM actions WHERE id = ?`;

/**
 * The statements of SqliteStore's writes, for the shared store logic (core.ts). They run
 * inside the group's transaction, on its one connection: nothing here waits.
 *
 * POSITIONAL: the hot statements bind `?` parameters, not `@name`: better-sqlite3 looks
 * each named parameter up on the object it is given, which measured twice the cost of
 * the insert itself for a ten-column row (docs/performance.md, records).
 */
class SqliteTx implements StoreTx {
  /** The last bound forgetJtis deleted up to (see there). */
  private forgotten: number | null = null;
  /** Set by SqliteStore while a group signs its decisions on the worker (see deferRecord). */
  chain: ChainSigner | null = null;
  /** The group's decisions posted to the worker and not yet inserted, in seq order. */
  private deferred: {
    record: { -readonly [K in keyof StoredRecord]: StoredRecord[K] };
    columns: DeferredRecordColumns;
  }[] = [];
  /** The seq the next deferred decision takes. */
  private nextSeq = 0;

  constructor(
    private readonly prep: (sqlText: string) => Database.Statement,
    private readonly currentSigner: () => RecordSigner | null,
    private readonly currentWriteLeases: () => WriteLeases | null,
  ) {}

  get signer(): RecordSigner | null {
    return this.currentSigner();
  }

  get writeLeases(): WriteLeases | null {
    return this.currentWriteLeases();
  }

  holdAgent(): Step<void> {
    // One writer at a time already: the group's IMMEDIATE transaction holds the file's write lock.
    return done(undefined);
  }

  actionByRequest(agentId: string, requestId: string): Step<ActionRow | null> {
    const row = this.prep(ACTION_BY_REQUEST).get(agentId, requestId) as ActionColumns | undefined;
    return done(row ? toRow(row) : null);
  }

  loadAction(id: string, _forUpdate = false): Step<ActionWithVotes | null> {
    // A write holds the whole file, so there is nothing to lock row by row.
    const row = this.prep(ACTION_BY_ID).get(id) as ActionColumns | undefined;
    if (!row) return done(null);
    return done(
      withVotes(
        row,
        this.prep(
          "SELECT user, team, email, real_name AS realName, vote, comment, step_up_json AS stepUpJson, level, at, revision FROM votes WHERE action_id = ? ORDER BY at, user",
        ).all(id) as VoteColumns[],
        // Read only when approvers changed the request: most actions never have a revision.
        row.revision > 1
          ? (this.prep(
              `SELECT revision, request_json AS requestJson, request_sha256 AS requestSha256, user, team, at,
                 patch_json AS patchJson, comment FROM revisions WHERE action_id = ? ORDER BY revision`,
            ).all(id) as RevisionColumns[])
          : [],
      ),
    );
  }

  countPending(agentId: string, limit: number): Step<number> {
    return done(
      (
        this.prep(
          "SELECT count(*) AS n FROM (SELECT 1 FROM actions WHERE agent_id = ? AND status = 'pending' LIMIT ?)",
        ).get(agentId, limit) as { n: number }
      ).n,
    );
  }

  insertAction(v: ReturnType<typeof actionValues>): Step<void> {
    this.prep(
      `INSERT INTO actions (id, agent_id, request_id, request_json, request_sha256, action_type, risk_class,
         region, status, route_name, level, quorum, eligible_json, deadline_at, cap_at, policy_sha256, requested_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
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
    );
    return done(undefined);
  }

  updateAction(id: string, set: ActionUpdate): Step<void> {
    const columns = Object.keys(set) as (keyof ActionUpdate)[];
    // One statement per combination of columns (at most 15), each prepared once.
    this.prep(
      `UPDATE actions SET ${columns.map((c) => `${ACTION_COLUMN_NAMES[c]} = ?`).join(", ")} WHERE id = ?`,
    ).run(...columns.map((c) => set[c]), id);
    return done(undefined);
  }

  insertVote(actionId: string, v: VoteColumns): Step<void> {
    this.prep(
      `INSERT INTO votes (action_id, user, team, email, real_name, vote, comment, step_up_json, level, at, revision)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
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
    );
    return done(undefined);
  }

  clearApprovals(actionId: string): Step<void> {
    this.prep("DELETE FROM votes WHERE action_id = ? AND vote = 'approve'").run(actionId);
    return done(undefined);
  }

  insertRevision(actionId: string, r: RevisionColumns): Step<void> {
    this.prep(
      `INSERT INTO revisions (action_id, revision, request_json, request_sha256, user, team, at, patch_json, comment)
       VALUES (@actionId, @revision, @requestJson, @requestSha256, @user, @team, @at, @patchJson, @comment)`,
    ).run({ ...r, actionId });
    return done(undefined);
  }

  forgetJtis(exp: number): Step<void> {
    // The bound moves once a second: a second delete with the same bound finds nothing
    // new, so it runs once per bound (per group, in a burst), not once per proof. Should
    // its transaction roll back, the next second's delete takes what this one left.
    if (exp === this.forgotten) return done(undefined);
    this.prep("DELETE FROM proof_jtis WHERE exp <= ?").run(exp);
    this.forgotten = exp;
    return done(undefined);
  }

  insertJti(agentId: string, jti: string, exp: number): Step<boolean> {
    return done(
      this.prep("INSERT INTO proof_jtis (agent_id, jti, exp) VALUES (?, ?, ?) ON CONFLICT DO NOTHING").run(
        agentId,
        jti,
        exp,
      ).changes === 1,
    );
  }

  jobAction(jobKey: string): Step<string | null> {
    const row = this.prep("SELECT action_id AS actionId FROM intake_jobs WHERE job_key = ?").get(jobKey) as
      | { actionId: string }
      | undefined;
    return done(row?.actionId ?? null);
  }

  insertJob(job: { readonly key: string; readonly id: string }, actionId: string): Step<void> {
    this.prep(
      "INSERT INTO intake_jobs (job_key, job_id, action_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    ).run(job.key, job.id, actionId);
    return done(undefined);
  }

  insertEvents(rows: readonly NewEventRow[]): Step<void> {
    // Rows of one write go in one statement (a receipt writes two): each statement run
    // costs about as much again as the row it inserts.
    for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
      const end = Math.min(rows.length, i + ROWS_PER_INSERT);
      const values: unknown[] = [];
      for (let j = i; j < end; j++) {
        const r = rows[j] as NewEventRow;
        values.push(r.actionId, r.agentId, r.type, r.actor, r.at, r.dataJson);
      }
      this.prep(INSERT_EVENTS[end - i] as string).run(values);
    }
    return done(undefined);
  }

  insertOutbox(rows: readonly NewOutboxRow[]): Step<ReadonlyMap<string, number>> {
    const plain = this.prep(
      `INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    const leased = this.prep(
      `INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at, lease_until, attempts)
       VALUES (?, ?, ?, ?, ?, ?, ?, 1)
       ON CONFLICT DO NOTHING RETURNING id`,
    );
    const ids = new Map<string, number>();
    // Rows nobody has leased go in one statement (a receipt's thread note and card update);
    // a leased row needs its own id back.
    const unleased = rows.filter((r) => r.leaseUntil === null);
    if (unleased.length === 1) {
      const r = unleased[0] as NewOutboxRow;
      plain.run(r.actionId, r.kind, r.dedupeKey, r.payloadJson, r.dueAt, r.createdAt);
    } else if (unleased.length > 1) {
      for (let i = 0; i < unleased.length; i += ROWS_PER_INSERT) {
        const end = Math.min(unleased.length, i + ROWS_PER_INSERT);
        const values: unknown[] = [];
        for (let j = i; j < end; j++) {
          const r = unleased[j] as NewOutboxRow;
          values.push(r.actionId, r.kind, r.dedupeKey, r.payloadJson, r.dueAt, r.createdAt);
        }
        this.prep(INSERT_OUTBOX[end - i] as string).run(values);
      }
    }
    for (const r of rows) {
      if (r.leaseUntil === null) continue;
      const row = leased.get(
        r.actionId,
        r.kind,
        r.dedupeKey,
        r.payloadJson,
        r.dueAt,
        r.createdAt,
        r.leaseUntil,
      ) as { id: number } | undefined;
      if (row) ids.set(r.dedupeKey, row.id);
    }
    return done(ids);
  }

  /** The group is over (committed or rolled back): what the worker still signs for it is dropped. */
  endChain(): void {
    this.chain = null;
    this.deferred = [];
  }

  deferRecord(claims: UnchainedClaims, columns: DeferredRecordColumns): StoredRecord | null {
    const chain = this.chain;
    if (!chain) return null;
    if (!this.deferred.length) {
      const head = this.readHead();
      this.nextSeq = (head?.seq ?? 0) + 1;
      chain.begin(head?.digest ?? null);
    }
    const seq = this.nextSeq;
    // Claims it cannot hand over are signed in place (decide reads the head, which first
    // inserts what the worker has signed).
    if (!chain.post(claims, seq)) return null;
    this.nextSeq++;
    const record = {
      seq,
      actionId: columns.actionId,
      decisionId: claims.jti,
      jws: "",
      digest: "",
      kid: chain.kid,
    };
    this.deferred.push({ record, columns });
    return record;
  }

  /**
   * Waits for the worker's signatures of the deferred decisions and inserts them. Runs
   * before the group commits, and before anything in it reads the log (the head, a
   * record, a receipt), so every read sees the log as if each record had been signed
   * where it was written. Throws if the worker fails: the group then rolls back.
   */
  drainChain(): void {
    const chain = this.chain;
    if (!chain || !this.deferred.length) return;
    const pending = this.deferred;
    this.deferred = [];
    const signed = chain.collect();
    if (signed.length !== pending.length)
      throw new StoreError(`the signing worker returned ${signed.length} of ${pending.length} records`);
    for (let i = 0; i < pending.length; i++) {
      const { record, columns } = pending[i] as (typeof pending)[number];
      const s = signed[i] as (typeof signed)[number];
      if (s.seq !== record.seq)
        throw new StoreError(`the signing worker signed seq ${s.seq} for ${record.seq}`);
      record.jws = s.jws;
      record.digest = s.digest;
      runNow(this.insertRecord({ ...record, ...columns }));
    }
  }

  logHead(): Step<{ seq: number; digest: string } | null> {
    this.drainChain();
    return done(this.readHead());
  }

  private readHead(): { seq: number; digest: string } | null {
    const head = this.prep("SELECT seq, digest FROM records ORDER BY seq DESC LIMIT 1").get() as
      | { seq: number; digest: string }
      | undefined;
    return head ?? null;
  }

  insertRecord(r: RecordColumns): Step<void> {
    this.prep(
      `INSERT INTO records (seq, action_id, decision_id, jws, digest, kid, agent_id, region, verdict, decided_at, kind, ref)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
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
    );
    return done(undefined);
  }

  closeAction(id: string, c: Closed): Step<boolean> {
    return done(
      this.prep(
        `UPDATE actions SET status = ?, verdict = ?, reason_code = ?, decided_at = ?, record_seq = ?
         WHERE id = ? AND status = 'pending'`,
      ).run(c.status, c.verdict, c.reasonCode, c.decidedAt, c.recordSeq, id).changes === 1,
    );
  }

  recordOf(actionId: string): Step<StoredRecord | null> {
    this.drainChain();
    const r = this.prep(
      "SELECT seq, action_id AS actionId, decision_id AS decisionId, jws, digest, kid FROM records WHERE action_id = ? AND kind = 'decision'",
    ).get(actionId) as StoredRecord | undefined;
    return done(r ?? null);
  }

  actionForReceipt(actionId: string): Step<{ action: ActionRow; record: StoredRecord | null } | null> {
    this.drainChain();
    // One statement: a redemption's reads were the action, its votes (a receipt needs none)
    // and the decision found again by action_id; the record is one primary-key step away.
    const row = this.prep(
      `SELECT ${ACTION_COLUMNS}, records.seq AS rSeq, records.decision_id AS rDecisionId, records.jws AS rJws,
         records.digest AS rDigest, records.kid AS rKid
       FROM actions LEFT JOIN records ON records.seq = actions.record_seq AND records.kind = 'decision'
       WHERE actions.id = ?`,
    ).get(actionId) as
      | (ActionColumns & {
          rSeq: number | null;
          rDecisionId: string;
          rJws: string;
          rDigest: string;
          rKid: string;
        })
      | undefined;
    if (!row) return done(null);
    const action = toRow(row);
    if (row.rSeq === null) {
      // Decided with no record_seq (not written so today): find the record by action.
      return done({ action, record: action.status === "decided" ? runNow(this.recordOf(actionId)) : null });
    }
    return done({
      action,
      record: {
        seq: row.rSeq,
        actionId,
        decisionId: row.rDecisionId,
        jws: row.rJws,
        digest: row.rDigest,
        kid: row.rKid,
      },
    });
  }

  receiptsOf(actionId: string): Step<StoredReceipt[]> {
    this.drainChain();
    return done(
      this.prep(
        `SELECT seq, kind, action_id AS actionId, decision_id AS receiptId, jws, decided_at AS at FROM records
         WHERE action_id = ? AND kind <> 'decision' ORDER BY seq`,
      ).all(actionId) as StoredReceipt[],
    );
  }

  insertPasskeyLink(l: PasskeyLinkColumns): Step<void> {
    this.prep(
      `INSERT INTO passkey_links (token_hash, purpose, team, user, action_id, level, action_sha256, revision, comment, nonce,
         created_at, expires_at, used_at)
       VALUES (@tokenHash, @purpose, @team, @user, @actionId, @level, @actionSha256, @revision, @comment, @nonce,
         @createdAt, @expiresAt, @usedAt)`,
    ).run(l);
    return done(undefined);
  }

  passkeyLink(tokenHash: string): Step<PasskeyLinkColumns | null> {
    return done(
      (this.prep(`SELECT ${LINK_COLUMNS} FROM passkey_links WHERE token_hash = ?`).get(tokenHash) as
        | PasskeyLinkColumns
        | undefined) ?? null,
    );
  }

  spendPasskeyLink(tokenHash: string, now: number): Step<PasskeyLinkColumns | null> {
    return done(
      (this.prep(
        `UPDATE passkey_links SET used_at = @now WHERE token_hash = @tokenHash AND used_at IS NULL AND expires_at > @now
         RETURNING ${LINK_COLUMNS}`,
      ).get({ tokenHash, now }) as PasskeyLinkColumns | undefined) ?? null,
    );
  }

  insertPasskey(c: PasskeyColumns): Step<void> {
    this.prep(
      `INSERT INTO passkey_credentials (credential_id, team, user, public_key_cose, public_key_jwk, counter, label,
         transports_json, created_at)
       VALUES (@credentialId, @team, @user, @publicKeyCose, @publicKeyJwk, @counter, @label, @transportsJson, @createdAt)`,
    ).run(c);
    return done(undefined);
  }

  passkey(credentialId: string): Step<PasskeyColumns | null> {
    return done(
      (this.prep(`SELECT ${PASSKEY_COLUMNS} FROM passkey_credentials WHERE credential_id = ?`).get(
        credentialId,
      ) as PasskeyColumns | undefined) ?? null,
    );
  }

  passkeysOf(team: string, user: string): Step<PasskeyColumns[]> {
    return done(
      this.prep(
        `SELECT ${PASSKEY_COLUMNS} FROM passkey_credentials WHERE team = ? AND user = ? ORDER BY created_at, credential_id`,
      ).all(team, user) as PasskeyColumns[],
    );
  }

  deletePasskey(team: string, user: string, credentialId: string): Step<boolean> {
    return done(
      this.prep("DELETE FROM passkey_credentials WHERE credential_id = ? AND team = ? AND user = ?").run(
        credentialId,
        team,
        user,
      ).changes === 1,
    );
  }

  updatePasskeyCounter(credentialId: string, counter: number): Step<void> {
    this.prep("UPDATE passkey_credentials SET counter = ? WHERE credential_id = ?").run(
      counter,
      credentialId,
    );
    return done(undefined);
  }
}

const LINK_COLUMNS = `token_hash AS tokenHash, purpose, team, user, action_id AS actionId, level,
  action_sha256 AS actionSha256, revision, comment, nonce, created_at AS createdAt, expires_at AS expiresAt, used_at AS usedAt`;

const PASSKEY_COLUMNS = `credential_id AS credentialId, team, user, public_key_cose AS publicKeyCose,
  public_key_jwk AS publicKeyJwk, counter, label, transports_json AS transportsJson, created_at AS createdAt`;
