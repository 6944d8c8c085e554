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
  gte,
  inArray,
  isNotNull,
  isNull,
  lt,
  lte,
  or,
  type SQL,
  sql,
} from "drizzle-orm";
import { drizzle, type NodePgDatabase } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import * as schema from "../../../db/pg/schema.js";
import type {
  ActionRow,
  ActionWithVotes,
  AdmitInput,
  AdmitResult,
  Card,
  Effect,
  EffectAdopter,
  EffectKind,
  MutateResult,
  NewAction,
  NewEffect,
  NewEvent,
  Plan,
  RecordSigner,
  Refused,
  Store,
  StoredEvent,
  StoredRecord,
  UnchainedClaims,
  WebhookAttempt,
} from "../../app/ports.js";
import { sha256B64url } from "../../domain/canonical.js";
import type { DecisionOutcome } from "../../domain/decision.js";
import { RejectionError, type Verdict } from "../../domain/types.js";
import { packagePath } from "../../paths.js";
import { actionValues, toRow } from "./rows.js";

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

/** What finishing an effect may change; attempts may be an SQL expression. */
type OutboxSet = {
  [K in keyof typeof schema.outbox.$inferInsert]?: (typeof schema.outbox.$inferInsert)[K] | SQL;
};

export class PostgresStore implements Store {
  private signer: RecordSigner | null = null;
  /** Who takes effects leased at birth (see adoptEffects). */
  private adopter: EffectAdopter | null = null;
  /** Each open transaction's effects leased at birth, and the adopter's slots it holds. */
  private readonly births = new WeakMap<
    PgTx,
    { adopter: EffectAdopter | null; born: Effect[]; reserved: number }
  >();
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly db: Db,
    /** Names this log for its advisory locks: two schemas in one database keep separate logs. */
    private readonly scope: string,
  ) {}

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
      throw new Error(`could not connect to PostgreSQL at ${where}: ${causeOf(e).message}`);
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
      throw new Error(`could not prepare the PostgreSQL database at ${where}: ${causeOf(e).message}`);
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
  private async write<T>(fn: (tx: PgTx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      // The effects this attempt leases at birth (see adoptEffects): handed over only
      // once it has committed; an attempt rolled back leaves nothing behind but frees its slots.
      // The adopter is fixed for the attempt: the one that held the slots is the one told.
      const adopter = this.adopter;
      const births = { adopter, born: [] as Effect[], reserved: 0 };
      try {
        // Named, not left to the server's default: the log's head is read after its lock is
        // granted, which sees the previous record only at READ COMMITTED.
        const value = await this.db.transaction(
          (tx) => {
            this.births.set(tx, births);
            return fn(tx);
          },
          { isolationLevel: "read committed" },
        );
        if (births.reserved) adopter?.settle(births.born, births.reserved);
        return value;
      } catch (e) {
        if (births.reserved) adopter?.settle([], births.reserved);
        const code = (causeOf(e) as { code?: string }).code;
        if (attempt >= MAX_TRIES || !code || !RETRYABLE.has(code)) throw e;
      }
    }
  }

  private async lock(tx: PgTx, name: string): Promise<void> {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${lockKey(`${name}:${this.scope}`)}::bigint)`);
  }

  async admit(input: AdmitInput): Promise<AdmitResult> {
    return this.write(async (tx): Promise<AdmitResult> => {
      const a = input.action;
      // Serialises one agent's admissions, so a repeat always sees the first and the
      // pending count is exact; other agents are not held up.
      await this.lock(tx, `agent:${a.agentId}`);
      const [existing] = await tx
        .select()
        .from(schema.actions)
        .where(and(eq(schema.actions.agentId, a.agentId), eq(schema.actions.requestId, a.requestId)))
        .limit(1);
      if (existing) {
        if (existing.requestSha256 !== a.requestSha256) {
          throw new RejectionError(
            "request_id_conflict",
            `request_id ${a.requestId} was already used by this agent for a different request (action ${existing.id})`,
            [{ path: "request_id", message: "already used for different content" }],
          );
        }
        // A repeat: spend the fresh proof too, so it cannot be replayed elsewhere.
        if (input.proof) await this.spendJti(tx, a.agentId, input.proof, input.now);
        if (input.job) await this.addJob(tx, input.job, existing.id);
        await this.insertEvents(
          tx,
          existing.id,
          a.agentId,
          [{ type: "repeat", actor: `agent:${a.agentId}` }],
          input.now,
        );
        return { kind: "repeat", action: toRow(existing), record: await this.recordOf(tx, existing.id) };
      }
      if (input.proof) await this.spendJti(tx, a.agentId, input.proof, input.now);
      // Counted up to the limit only: the same answer, at a cost that does not grow with
      // the agent's backlog.
      const bounded = tx
        .select({ one: sql`1` })
        .from(schema.actions)
        .where(and(eq(schema.actions.agentId, a.agentId), eq(schema.actions.status, "pending")))
        .limit(input.maxPending)
        .as("bounded");
      const [count] = await tx.select({ n: sql<number>`count(*)::int` }).from(bounded);
      const pending = count?.n ?? 0;
      if (!input.decision && pending >= input.maxPending) {
        throw new RejectionError(
          "too_many_pending",
          `agent ${a.agentId} already has ${pending} pending requests (max_pending ${input.maxPending})`,
        );
      }
      await tx.insert(schema.actions).values({ ...actionValues(a), status: "pending" });
      if (input.job) await this.addJob(tx, input.job, a.id);
      await this.insertEvents(tx, a.id, a.agentId, input.events, input.now);
      await this.insertEffects(tx, a.id, input.effects(a), input.now);
      let record: StoredRecord | null = null;
      if (input.decision) record = await this.decide(tx, a, input.decision, input.now);
      const [row] = await tx.select().from(schema.actions).where(eq(schema.actions.id, a.id));
      return { kind: "created", action: toRow(row!), record };
    });
  }

  async mutate(
    actionId: string,
    now: number,
    plan: (a: ActionWithVotes) => Plan | Refused,
  ): Promise<MutateResult> {
    return this.write(async (tx): Promise<MutateResult> => {
      const action = await this.loadAction(tx, actionId, true);
      if (!action) return { kind: "not_found" };
      const p = plan(action);
      if ("refused" in p) {
        await this.insertEvents(tx, actionId, action.agentId, p.events, now);
        return { kind: "refused", code: p.refused.code, reason: p.refused.reason, action };
      }
      if (p.set) {
        const set: Partial<typeof schema.actions.$inferInsert> = {};
        if (p.set.level !== undefined) set.level = p.set.level;
        if (p.set.quorum !== undefined) set.quorum = p.set.quorum;
        if (p.set.deadlineAt !== undefined) set.deadlineAt = p.set.deadlineAt;
        if (p.set.eligible !== undefined)
          set.eligibleJson = p.set.eligible === null ? null : JSON.stringify(p.set.eligible);
        if (Object.keys(set).length)
          await tx.update(schema.actions).set(set).where(eq(schema.actions.id, actionId));
      }
      if (p.vote) {
        const v = p.vote;
        await tx.insert(schema.votes).values({
          actionId,
          user: v.user,
          team: v.team,
          email: v.email ?? null,
          realName: v.real_name ?? null,
          vote: v.vote,
          comment: v.comment ?? null,
          level: v.level,
          at: Date.parse(v.at),
        });
      }
      await this.insertEvents(tx, actionId, action.agentId, p.events, now);
      await this.insertEffects(tx, actionId, p.effects, now);
      let record: StoredRecord | null = null;
      if (p.decision) {
        if (action.status !== "pending") throw new Error(`action ${actionId} is already decided`);
        record = await this.decide(tx, action, p.decision, now);
      }
      return { kind: "applied", action: (await this.loadAction(tx, actionId, false))!, record };
    });
  }

  /** Allocate seq and prev, sign, insert the record and close the action: inside the caller's transaction. */
  private async decide(
    tx: PgTx,
    action: Pick<NewAction, "id" | "agentId" | "region">,
    d: { outcome: DecisionOutcome; claims: UnchainedClaims },
    now: number,
  ): Promise<StoredRecord> {
    if (!this.signer) throw new Error("no signing key loaded");
    // Held until commit: the next decider reads the head only after this record is visible.
    // Taken last in the transaction, so the log is held only for the few statements below.
    await this.lock(tx, "log");
    const [head] = await tx
      .select({ seq: schema.records.seq, digest: schema.records.digest })
      .from(schema.records)
      .orderBy(desc(schema.records.seq))
      .limit(1);
    const seq = (head?.seq ?? 0) + 1;
    const prev = head?.digest ?? null;
    const { jws, kid } = this.signer({ ...d.claims, seq, prev });
    const digest = sha256B64url(jws);
    const decidedAt = Date.parse(d.claims.decided_at);
    await tx.insert(schema.records).values({
      seq,
      actionId: action.id,
      decisionId: d.claims.jti,
      jws,
      digest,
      kid,
      agentId: action.agentId,
      region: action.region,
      verdict: d.outcome.verdict,
      decidedAt,
    });
    const changed = await tx
      .update(schema.actions)
      .set({
        status: "decided",
        verdict: d.outcome.verdict,
        reasonCode: d.outcome.reasonCode,
        decidedAt,
        recordSeq: seq,
      })
      .where(and(eq(schema.actions.id, action.id), eq(schema.actions.status, "pending")))
      .returning({ id: schema.actions.id });
    if (changed.length !== 1) throw new Error(`action ${action.id} was decided twice`);
    await this.insertEvents(
      tx,
      action.id,
      action.agentId,
      [
        {
          type: "record_issued",
          actor: "system",
          data: { seq, decision_id: d.claims.jti, verdict: d.outcome.verdict },
        },
      ],
      now,
    );
    return { seq, actionId: action.id, decisionId: d.claims.jti, jws, digest, kid };
  }

  async spendProof(agentId: string, proof: { jti: string; exp: number }, now: number): Promise<void> {
    await this.write((tx) => this.spendJti(tx, agentId, proof, now));
  }

  private async spendJti(
    tx: PgTx,
    agentId: string,
    proof: { jti: string; exp: number },
    now: number,
  ): Promise<void> {
    // Forget spent proofs once they could no longer be accepted anyway (exp + skew). Rows
    // another transaction is already deleting are skipped: waiting on them would only
    // serialise unrelated agents, and waits in varying order could deadlock.
    await tx.execute(sql`
      DELETE FROM proof_jtis WHERE (agent_id, jti) IN (
        SELECT agent_id, jti FROM proof_jtis WHERE exp <= ${Math.floor(now / 1000) - 60}
        FOR UPDATE SKIP LOCKED)`);
    const inserted = await tx
      .insert(schema.proofJtis)
      .values({ agentId, jti: proof.jti, exp: proof.exp })
      .onConflictDoNothing()
      .returning({ jti: schema.proofJtis.jti });
    if (inserted.length === 0) {
      throw new RejectionError(
        "replayed_proof",
        `proof jti ${proof.jti} was already used by agent ${agentId}`,
        [{ path: "proof.jti", message: "already used" }],
      );
    }
  }

  private async addJob(tx: PgTx, job: { key: string; id: string }, actionId: string): Promise<void> {
    await tx
      .insert(schema.intakeJobs)
      .values({ jobKey: job.key, jobId: job.id, actionId })
      .onConflictDoNothing();
  }

  private async insertEvents(
    tx: PgTx | Db,
    actionId: string | null,
    agentId: string | null,
    events: readonly NewEvent[],
    now: number,
  ): Promise<void> {
    if (!events.length) return;
    await tx.insert(schema.events).values(
      events.map((e) => ({
        actionId,
        agentId,
        type: e.type,
        actor: e.actor,
        at: now,
        dataJson: JSON.stringify(e.data ?? {}),
      })),
    );
  }

  private async insertEffects(
    tx: PgTx,
    actionId: string | null,
    effects: readonly NewEffect[],
    now: number,
  ): Promise<void> {
    if (!effects.length) return;
    const births = this.births.get(tx);
    const adopter = births?.adopter ?? null;
    // Due at once, with an adopter that has a slot: written leased (its first attempt),
    // handed over after the commit by write(). A duplicate (its key already in the outbox)
    // returns no row.
    const lease = adopter && births ? now + adopter.leaseMs : null;
    const values = effects.map((e) => {
      const dueAt = e.dueAt ?? now;
      const adopt = lease !== null && dueAt <= now && adopter!.reserve();
      if (adopt) births!.reserved++;
      return {
        actionId,
        kind: e.kind,
        dedupeKey: e.dedupeKey,
        payloadJson: JSON.stringify(e.payload ?? {}),
        dueAt,
        createdAt: now,
        ...(adopt ? { leaseUntil: lease, attempts: 1 } : {}),
      };
    });
    const rows = await tx.insert(schema.outbox).values(values).onConflictDoNothing().returning({
      id: schema.outbox.id,
      dedupeKey: schema.outbox.dedupeKey,
      leaseUntil: schema.outbox.leaseUntil,
    });
    if (lease === null || !births) return;
    const ids = new Map(rows.filter((r) => r.leaseUntil === lease).map((r) => [r.dedupeKey, r.id]));
    for (const e of effects) {
      const id = ids.get(e.dedupeKey);
      if (id === undefined) continue;
      births.born.push({
        id,
        actionId,
        kind: e.kind,
        dedupeKey: e.dedupeKey,
        payload: { ...(e.payload ?? {}) },
        attempts: 1,
        createdAt: now,
        lease,
      });
    }
  }

  private async recordOf(tx: PgTx | Db, actionId: string): Promise<StoredRecord | null> {
    const [r] = await tx.select().from(schema.records).where(eq(schema.records.actionId, actionId));
    return r
      ? {
          seq: r.seq,
          actionId: r.actionId,
          decisionId: r.decisionId,
          jws: r.jws,
          digest: r.digest,
          kid: r.kid,
        }
      : null;
  }

  private async loadAction(tx: PgTx, id: string, forUpdate: boolean): Promise<ActionWithVotes | null> {
    const q = tx.select().from(schema.actions).where(eq(schema.actions.id, id));
    const [row] = forUpdate ? await q.for("update") : await q;
    if (!row) return null;
    const vs = await tx
      .select()
      .from(schema.votes)
      .where(eq(schema.votes.actionId, id))
      .orderBy(asc(schema.votes.at), asc(schema.votes.user));
    return {
      ...toRow(row),
      votes: vs.map((v) => ({
        user: v.user,
        team: v.team,
        ...(v.email ? { email: v.email } : {}),
        ...(v.realName ? { real_name: v.realName } : {}),
        vote: v.vote as "approve" | "deny",
        at: new Date(v.at).toISOString(),
        ...(v.comment ? { comment: v.comment } : {}),
        level: v.level,
      })),
    };
  }

  async getAction(id: string): Promise<ActionWithVotes | null> {
    // One snapshot for the action and its votes, so a reader never sees a vote without
    // the state it produced (or the reverse).
    return this.db.transaction((tx) => this.loadAction(tx, id, false), {
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
    return this.recordOf(this.db, actionId);
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

  async appendEvents(
    actionId: string | null,
    agentId: string | null,
    events: readonly NewEvent[],
    now: number,
  ): Promise<void> {
    await this.insertEvents(this.db, actionId, agentId, events, now);
  }

  async listEvents(actionId: string): Promise<StoredEvent[]> {
    const rows = await this.db
      .select()
      .from(schema.events)
      .where(eq(schema.events.actionId, actionId))
      .orderBy(asc(schema.events.id));
    return rows.map((e) => ({
      id: e.id,
      actionId: e.actionId,
      agentId: e.agentId,
      type: e.type,
      actor: e.actor,
      at: e.at,
      data: JSON.parse(e.dataJson) as Record<string, unknown>,
    }));
  }

  async getCards(actionId: string): Promise<Card[]> {
    return this.db
      .select({
        actionId: schema.cards.actionId,
        level: schema.cards.level,
        channel: schema.cards.channel,
        ts: schema.cards.ts,
      })
      .from(schema.cards)
      .where(eq(schema.cards.actionId, actionId))
      .orderBy(asc(schema.cards.level));
  }

  async findCardByMessage(channel: string, ts: string): Promise<Card | null> {
    const [c] = await this.db
      .select({
        actionId: schema.cards.actionId,
        level: schema.cards.level,
        channel: schema.cards.channel,
        ts: schema.cards.ts,
      })
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

  async addEffects(actionId: string | null, effects: readonly NewEffect[], now: number): Promise<void> {
    await this.write((tx) => this.insertEffects(tx, actionId, effects, now));
  }

  adoptEffects(adopter: EffectAdopter | null): void {
    this.adopter = adopter;
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
    return rows
      .sort((a, b) => a.id - b.id)
      .map((r) => ({
        id: r.id,
        actionId: r.actionId,
        kind: r.kind as EffectKind,
        dedupeKey: r.dedupeKey,
        payload: JSON.parse(r.payloadJson) as Record<string, unknown>,
        attempts: r.attempts,
        createdAt: r.createdAt,
        lease: r.leaseUntil!,
      }));
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

  async completeEffect(id: number, lease: number, now: number): Promise<boolean> {
    return this.finishEffect(id, lease, { state: "done", doneAt: now, leaseUntil: null });
  }

  async retryEffect(id: number, lease: number, dueAt: number, error: string): Promise<boolean> {
    return this.finishEffect(id, lease, { dueAt, leaseUntil: null, lastError: error.slice(0, 2000) });
  }

  async deferEffect(id: number, lease: number, dueAt: number): Promise<boolean> {
    return this.finishEffect(id, lease, {
      dueAt,
      leaseUntil: null,
      attempts: sql`greatest(0, ${schema.outbox.attempts} - 1)`,
    });
  }

  async killEffect(id: number, lease: number, error: string, now: number): Promise<boolean> {
    return this.finishEffect(id, lease, {
      state: "dead",
      doneAt: now,
      leaseUntil: null,
      lastError: error.slice(0, 2000),
    });
  }

  private async finishEffect(id: number, lease: number, set: OutboxSet): Promise<boolean> {
    const rows = await this.db
      .update(schema.outbox)
      .set(set)
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

  async agentStats(agentId: string, since: number): Promise<Record<"total" | "pending" | Verdict, number>> {
    const a = schema.actions;
    const rows = await this.db
      .select({ k: sql<string>`coalesce(${a.verdict}, 'pending')`, n: sql<number>`count(*)::int` })
      .from(a)
      .where(and(eq(a.agentId, agentId), gte(a.requestedAt, since)))
      .groupBy(sql`1`);
    const out = { total: 0, pending: 0, approved: 0, denied: 0, expired: 0, cancelled: 0 };
    for (const r of rows) {
      if (r.k in out) out[r.k as keyof typeof out] = r.n;
      out.total += r.n;
    }
    return out;
  }

  async recordWebhookAttempt(a: WebhookAttempt): Promise<void> {
    await this.db.insert(schema.webhookAttempts).values(a);
  }

  async webhookAttempts(actionId: string): Promise<WebhookAttempt[]> {
    const w = schema.webhookAttempts;
    return this.db
      .select({
        actionId: w.actionId,
        webhookId: w.webhookId,
        attempt: w.attempt,
        at: w.at,
        url: w.url,
        status: w.status,
        durationMs: w.durationMs,
        error: w.error,
        address: w.address,
      })
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
