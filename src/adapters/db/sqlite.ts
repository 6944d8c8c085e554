/**
 * The SQLite store (better-sqlite3 + drizzle). Every write is one IMMEDIATE transaction,
 * so two processes sharing the file serialise on the write lock instead of failing to
 * upgrade a read lock. Record seq/prev are allocated inside that same transaction, which
 * is what keeps the log from forking.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { and, asc, eq, inArray, isNull, lte, sql } from "drizzle-orm";
import { type BetterSQLite3Database, drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import * as schema from "../../../db/schema.js";
import type {
  ActionRow,
  ActionWithVotes,
  AdmitInput,
  AdmitResult,
  Card,
  Effect,
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

export const MIGRATIONS_FOLDER = packagePath("db", "migrations");

type Db = BetterSQLite3Database<typeof schema>;
/** The transaction handle, named so better-sqlite3 types do not leak into callers. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

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

export class SqliteStore implements Store {
  private signer: RecordSigner | null = null;
  private readonly db: Db;
  private readonly raw: Database.Database;
  /**
   * Hot paths use prepared statements, prepared once: drizzle builds each query anew and
   * better-sqlite3 prepares it again on every call, which a profile of intake showed as a
   * quarter of the CPU. They run on the same connection, so inside a transaction too.
   */
  private readonly statements = new Map<string, Database.Statement>();
  private readTx: ((id: string) => ActionWithVotes | null) & {
    deferred: (id: string) => ActionWithVotes | null;
  };

  constructor(file: string, opts: { migrate?: boolean } = {}) {
    const { db, raw } = openSqlite(file);
    this.db = db;
    this.raw = raw;
    if (opts.migrate !== false) migrateSqlite(db);
    this.readTx = raw.transaction((id: string) => this.loadAction(id));
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
  }

  private write<T>(fn: (tx: Tx) => T): T {
    return this.db.transaction(fn, { behavior: "immediate" });
  }

  async admit(input: AdmitInput): Promise<AdmitResult> {
    return this.write((tx) => {
      const a = input.action;
      const existing = tx
        .select()
        .from(schema.actions)
        .where(and(eq(schema.actions.agentId, a.agentId), eq(schema.actions.requestId, a.requestId)))
        .get();
      if (existing) {
        if (existing.requestSha256 !== a.requestSha256) {
          throw new RejectionError(
            "request_id_conflict",
            `request_id ${a.requestId} was already used by this agent for a different request (action ${existing.id})`,
            [{ path: "request_id", message: "already used for different content" }],
          );
        }
        // A repeat: spend the fresh proof too, so it cannot be replayed elsewhere.
        if (input.proof) this.spendJti(tx, a.agentId, input.proof, input.now);
        if (input.job) this.addJob(tx, input.job, existing.id);
        this.insertEvents(
          tx,
          existing.id,
          a.agentId,
          [{ type: "repeat", actor: `agent:${a.agentId}` }],
          input.now,
        );
        return { kind: "repeat", action: toRow(existing), record: this.recordOf(existing.id) };
      }
      if (input.proof) this.spendJti(tx, a.agentId, input.proof, input.now);
      // Counted up to the limit only: the answer is the same, and the cost no longer grows
      // with the agent's backlog (100k pending made every admit scan 100k index entries).
      const pending = (
        this.prep(
          "SELECT count(*) AS n FROM (SELECT 1 FROM actions WHERE agent_id = ? AND status = 'pending' LIMIT ?)",
        ).get(a.agentId, input.maxPending) as { n: number }
      ).n;
      if (!input.decision && pending >= input.maxPending) {
        throw new RejectionError(
          "too_many_pending",
          `agent ${a.agentId} already has ${pending} pending requests (max_pending ${input.maxPending})`,
        );
      }
      tx.insert(schema.actions)
        .values({ ...actionValues(a), status: "pending" })
        .run();
      if (input.job) this.addJob(tx, input.job, a.id);
      this.insertEvents(tx, a.id, a.agentId, input.events, input.now);
      this.insertEffects(tx, a.id, input.effects(a), input.now);
      let record: StoredRecord | null = null;
      if (input.decision) record = this.decide(tx, a, input.decision, input.now);
      const row = tx.select().from(schema.actions).where(eq(schema.actions.id, a.id)).get()!;
      return { kind: "created", action: toRow(row), record };
    });
  }

  async mutate(
    actionId: string,
    now: number,
    plan: (a: ActionWithVotes) => Plan | Refused,
  ): Promise<MutateResult> {
    return this.write((tx): MutateResult => {
      const action = this.loadAction(actionId);
      if (!action) return { kind: "not_found" };
      const p = plan(action);
      if ("refused" in p) {
        this.insertEvents(tx, actionId, action.agentId, p.events, now);
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
          tx.update(schema.actions).set(set).where(eq(schema.actions.id, actionId)).run();
      }
      if (p.vote) {
        const v = p.vote;
        tx.insert(schema.votes)
          .values({
            actionId,
            user: v.user,
            team: v.team,
            email: v.email ?? null,
            realName: v.real_name ?? null,
            vote: v.vote,
            comment: v.comment ?? null,
            level: v.level,
            at: Date.parse(v.at),
          })
          .run();
      }
      this.insertEvents(tx, actionId, action.agentId, p.events, now);
      this.insertEffects(tx, actionId, p.effects, now);
      let record: StoredRecord | null = null;
      if (p.decision) {
        if (action.status !== "pending") throw new Error(`action ${actionId} is already decided`);
        record = this.decide(tx, action, p.decision, now);
      }
      return { kind: "applied", action: this.loadAction(actionId)!, record };
    });
  }

  /** Allocate seq and prev, sign, insert the record and close the action: inside the caller's transaction. */
  private decide(
    tx: Tx,
    action: Pick<NewAction, "id" | "agentId" | "region">,
    d: { outcome: DecisionOutcome; claims: UnchainedClaims },
    now: number,
  ): StoredRecord {
    if (!this.signer) throw new Error("no signing key loaded");
    const head = tx
      .select({ seq: schema.records.seq, digest: schema.records.digest })
      .from(schema.records)
      .orderBy(sql`${schema.records.seq} desc`)
      .limit(1)
      .get();
    const seq = (head?.seq ?? 0) + 1;
    const prev = head?.digest ?? null;
    const { jws, kid } = this.signer({ ...d.claims, seq, prev });
    const digest = sha256B64url(jws);
    const decidedAt = Date.parse(d.claims.decided_at);
    tx.insert(schema.records)
      .values({
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
      })
      .run();
    const changed = tx
      .update(schema.actions)
      .set({
        status: "decided",
        verdict: d.outcome.verdict,
        reasonCode: d.outcome.reasonCode,
        decidedAt,
        recordSeq: seq,
      })
      .where(and(eq(schema.actions.id, action.id), eq(schema.actions.status, "pending")))
      .run();
    if (changed.changes !== 1) throw new Error(`action ${action.id} was decided twice`);
    this.insertEvents(
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
    this.write((tx) => this.spendJti(tx, agentId, proof, now));
  }

  private spendJti(tx: Tx, agentId: string, proof: { jti: string; exp: number }, now: number): void {
    // Forget spent proofs once they could no longer be accepted anyway (exp + skew).
    tx.delete(schema.proofJtis)
      .where(lte(schema.proofJtis.exp, Math.floor(now / 1000) - 60))
      .run();
    const r = tx
      .insert(schema.proofJtis)
      .values({ agentId, jti: proof.jti, exp: proof.exp })
      .onConflictDoNothing()
      .run();
    if (r.changes === 0) {
      throw new RejectionError(
        "replayed_proof",
        `proof jti ${proof.jti} was already used by agent ${agentId}`,
        [{ path: "proof.jti", message: "already used" }],
      );
    }
  }

  private addJob(tx: Tx, job: { key: string; id: string }, actionId: string): void {
    tx.insert(schema.intakeJobs)
      .values({ jobKey: job.key, jobId: job.id, actionId })
      .onConflictDoNothing()
      .run();
  }

  private insertEvents(
    _tx: Tx,
    actionId: string | null,
    agentId: string | null,
    events: readonly NewEvent[],
    now: number,
  ): void {
    const st = this.prep(
      "INSERT INTO events (action_id, agent_id, type, actor, at, data_json) VALUES (?, ?, ?, ?, ?, ?)",
    );
    for (const e of events) st.run(actionId, agentId, e.type, e.actor, now, JSON.stringify(e.data ?? {}));
  }

  private insertEffects(_tx: Tx, actionId: string | null, effects: readonly NewEffect[], now: number): void {
    const st = this.prep(
      `INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    for (const e of effects) {
      st.run(actionId, e.kind, e.dedupeKey, JSON.stringify(e.payload ?? {}), e.dueAt ?? now, now);
    }
  }

  private recordOf(actionId: string): StoredRecord | null {
    const r = this.prep(
      "SELECT seq, action_id AS actionId, decision_id AS decisionId, jws, digest, kid FROM records WHERE action_id = ?",
    ).get(actionId) as StoredRecord | undefined;
    return r ?? null;
  }

  private loadAction(id: string): ActionWithVotes | null {
    const row = this.prep("SELECT * FROM actions WHERE id = ?").get(id) as RawActionRow | undefined;
    if (!row) return null;
    const vs = this.prep(
      "SELECT user, team, email, real_name, vote, comment, level, at FROM votes WHERE action_id = ? ORDER BY at, user",
    ).all(id) as {
      user: string;
      team: string;
      email: string | null;
      real_name: string | null;
      vote: string;
      comment: string | null;
      level: number;
      at: number;
    }[];
    return {
      ...fromRaw(row),
      votes: vs.map((v) => ({
        user: v.user,
        team: v.team,
        ...(v.email ? { email: v.email } : {}),
        ...(v.real_name ? { real_name: v.real_name } : {}),
        vote: v.vote as "approve" | "deny",
        at: new Date(v.at).toISOString(),
        ...(v.comment ? { comment: v.comment } : {}),
        level: v.level,
      })),
    };
  }

  async getAction(id: string): Promise<ActionWithVotes | null> {
    // One read transaction: the action and its votes from the same snapshot, even while
    // another process on the same file commits between the two statements.
    return this.readTx.deferred(id);
  }

  async getActionByRequest(agentId: string, requestId: string): Promise<ActionRow | null> {
    const row = this.db
      .select()
      .from(schema.actions)
      .where(and(eq(schema.actions.agentId, agentId), eq(schema.actions.requestId, requestId)))
      .get();
    return row ? toRow(row) : null;
  }

  async getRecord(actionId: string): Promise<StoredRecord | null> {
    return this.recordOf(actionId);
  }

  async findJob(jobKey: string): Promise<{ actionId: string } | null> {
    const r = this.prep("SELECT action_id AS actionId FROM intake_jobs WHERE job_key = ?").get(jobKey) as
      | { actionId: string }
      | undefined;
    return r ?? null;
  }

  async unreleasedJobs(actionId: string): Promise<{ key: string; id: string }[]> {
    return this.db
      .select({ key: schema.intakeJobs.jobKey, id: schema.intakeJobs.jobId })
      .from(schema.intakeJobs)
      .where(and(eq(schema.intakeJobs.actionId, actionId), isNull(schema.intakeJobs.releasedAt)))
      .all();
  }

  async markJobsReleased(keys: readonly string[], now: number): Promise<void> {
    if (!keys.length) return;
    this.db
      .update(schema.intakeJobs)
      .set({ releasedAt: now })
      .where(inArray(schema.intakeJobs.jobKey, [...keys]))
      .run();
  }

  async appendEvents(
    actionId: string | null,
    agentId: string | null,
    events: readonly NewEvent[],
    now: number,
  ): Promise<void> {
    this.insertEvents(this.db as unknown as Tx, actionId, agentId, events, now);
  }

  async listEvents(actionId: string): Promise<StoredEvent[]> {
    return this.db
      .select()
      .from(schema.events)
      .where(eq(schema.events.actionId, actionId))
      .orderBy(asc(schema.events.id))
      .all()
      .map((e) => ({
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
    return this.prep(`SELECT ${CARD_COLUMNS} FROM cards WHERE action_id = ? ORDER BY level`).all(
      actionId,
    ) as Card[];
  }

  async findCardByMessage(channel: string, ts: string): Promise<Card | null> {
    const c = this.prep(`SELECT ${CARD_COLUMNS} FROM cards WHERE channel = ? AND ts = ?`).get(channel, ts) as
      | Card
      | undefined;
    return c ?? null;
  }

  async saveCard(card: Card, now: number): Promise<boolean> {
    const r = this.db
      .insert(schema.cards)
      .values({ ...card, postedAt: now })
      .onConflictDoNothing()
      .run();
    return r.changes === 1;
  }

  async addEffects(actionId: string | null, effects: readonly NewEffect[], now: number): Promise<void> {
    this.write((tx) => this.insertEffects(tx, actionId, effects, now));
  }

  async claimEffects(now: number, limit: number, leaseMs: number): Promise<Effect[]> {
    const rows = this.raw
      .prepare(
        `UPDATE outbox SET lease_until = ?, attempts = attempts + 1
         WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND due_at <= ?
                      AND (lease_until IS NULL OR lease_until < ?) ORDER BY due_at, id LIMIT ?)
         RETURNING id, action_id, kind, dedupe_key, payload_json, attempts, created_at, lease_until`,
      )
      .all(now + leaseMs, now, now, limit) as {
      id: number;
      action_id: string | null;
      kind: string;
      dedupe_key: string;
      payload_json: string;
      attempts: number;
      created_at: number;
      lease_until: number;
    }[];
    return rows
      .sort((a, b) => a.id - b.id)
      .map((r) => ({
        id: r.id,
        actionId: r.action_id,
        kind: r.kind as EffectKind,
        dedupeKey: r.dedupe_key,
        payload: JSON.parse(r.payload_json) as Record<string, unknown>,
        attempts: r.attempts,
        createdAt: r.created_at,
        lease: r.lease_until,
      }));
  }

  async completeEffect(id: number, lease: number, now: number): Promise<boolean> {
    return this.finish("UPDATE outbox SET state = 'done', done_at = ?, lease_until = NULL", [now], id, lease);
  }

  async retryEffect(id: number, lease: number, dueAt: number, error: string): Promise<boolean> {
    return this.finish(
      "UPDATE outbox SET due_at = ?, lease_until = NULL, last_error = ?",
      [dueAt, error.slice(0, 2000)],
      id,
      lease,
    );
  }

  async deferEffect(id: number, lease: number, dueAt: number): Promise<boolean> {
    return this.finish(
      "UPDATE outbox SET due_at = ?, lease_until = NULL, attempts = max(0, attempts - 1)",
      [dueAt],
      id,
      lease,
    );
  }

  async killEffect(id: number, lease: number, error: string, now: number): Promise<boolean> {
    return this.finish(
      "UPDATE outbox SET state = 'dead', done_at = ?, lease_until = NULL, last_error = ?",
      [now, error.slice(0, 2000)],
      id,
      lease,
    );
  }

  /** Finish an effect only if `lease` is still its lease (see Effect.lease). */
  private finish(update: string, args: unknown[], id: number, lease: number): boolean {
    return this.prep(`${update} WHERE id = ? AND lease_until = ?`).run(...args, id, lease).changes === 1;
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
    const rows = this.raw
      .prepare(
        `SELECT id, level, min(coalesce(deadline_at, cap_at), coalesce(cap_at, deadline_at)) AS at
         FROM actions WHERE status = 'pending' AND (deadline_at IS NOT NULL OR cap_at IS NOT NULL)
         AND min(coalesce(deadline_at, cap_at), coalesce(cap_at, deadline_at)) <= ? ORDER BY at LIMIT ?`,
      )
      .all(Number.isFinite(until) ? until : Number.MAX_SAFE_INTEGER, limit) as {
      id: string;
      level: number;
      at: number;
    }[];
    return rows;
  }

  async unreleasedDecided(limit: number): Promise<string[]> {
    return this.raw
      .prepare(
        `SELECT DISTINCT j.action_id AS id FROM intake_jobs j JOIN actions a ON a.id = j.action_id
         WHERE j.released_at IS NULL AND a.status = 'decided' LIMIT ?`,
      )
      .all(limit)
      .map((r) => (r as { id: string }).id);
  }

  async pendingForApprover(user: string, limit: number): Promise<ActionRow[]> {
    const rows = this.raw
      .prepare(
        `SELECT a.* FROM actions a
         WHERE a.status = 'pending' AND a.eligible_json IS NOT NULL
           AND EXISTS (SELECT 1 FROM json_each(a.eligible_json) e WHERE e.value = ?)
           AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.action_id = a.id AND v.user = ?)
         ORDER BY a.deadline_at IS NULL, a.deadline_at, a.id LIMIT ?`,
      )
      .all(user, user, limit) as RawActionRow[];
    return rows.map(fromRaw);
  }

  async recentlyVotedBy(user: string, limit: number): Promise<ActionRow[]> {
    const rows = this.raw
      .prepare(
        `SELECT a.* FROM actions a JOIN votes v ON v.action_id = a.id
         WHERE v.user = ? AND a.status = 'decided' ORDER BY a.decided_at DESC LIMIT ?`,
      )
      .all(user, limit) as RawActionRow[];
    return rows.map(fromRaw);
  }

  async recentForAgents(agentIds: readonly string[], limit: number): Promise<ActionRow[]> {
    if (!agentIds.length) return [];
    return this.db
      .select()
      .from(schema.actions)
      .where(inArray(schema.actions.agentId, [...agentIds]))
      .orderBy(sql`${schema.actions.requestedAt} desc`)
      .limit(limit)
      .all()
      .map(toRow);
  }

  async agentStats(agentId: string, since: number): Promise<Record<"total" | "pending" | Verdict, number>> {
    const rows = this.raw
      .prepare(
        `SELECT coalesce(verdict, 'pending') AS k, count(*) AS n FROM actions
         WHERE agent_id = ? AND requested_at >= ? GROUP BY 1`,
      )
      .all(agentId, since) as { k: string; n: number }[];
    const out = { total: 0, pending: 0, approved: 0, denied: 0, expired: 0, cancelled: 0 };
    for (const r of rows) {
      if (r.k in out) out[r.k as keyof typeof out] = r.n;
      out.total += r.n;
    }
    return out;
  }

  async recordWebhookAttempt(a: WebhookAttempt): Promise<void> {
    this.db.insert(schema.webhookAttempts).values(a).run();
  }

  async webhookAttempts(actionId: string): Promise<WebhookAttempt[]> {
    return this.db
      .select({
        actionId: schema.webhookAttempts.actionId,
        webhookId: schema.webhookAttempts.webhookId,
        attempt: schema.webhookAttempts.attempt,
        at: schema.webhookAttempts.at,
        url: schema.webhookAttempts.url,
        status: schema.webhookAttempts.status,
        durationMs: schema.webhookAttempts.durationMs,
        error: schema.webhookAttempts.error,
        address: schema.webhookAttempts.address,
      })
      .from(schema.webhookAttempts)
      .where(eq(schema.webhookAttempts.actionId, actionId))
      .orderBy(asc(schema.webhookAttempts.id))
      .all();
  }

  async registerSigningKey(kid: string, publicJwk: object, now: number): Promise<void> {
    this.db
      .insert(schema.signingKeys)
      .values({ kid, publicJwk: JSON.stringify(publicJwk), createdAt: now })
      .onConflictDoNothing()
      .run();
  }

  async signingKeys(): Promise<{ kid: string; publicJwk: object }[]> {
    return this.db
      .select()
      .from(schema.signingKeys)
      .orderBy(asc(schema.signingKeys.createdAt))
      .all()
      .map((k) => ({ kid: k.kid, publicJwk: JSON.parse(k.publicJwk) as object }));
  }

  async ping(): Promise<void> {
    this.raw.prepare("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.raw.open) this.raw.close();
  }

  /** For the audit tools and tests: the raw handle stays inside the adapter folder. */
  get sqlite(): Database.Database {
    return this.raw;
  }
}

const CARD_COLUMNS = "action_id AS actionId, level, channel, ts";

/** A row as better-sqlite3 returns it from hand-written SQL (snake_case columns). */
interface RawActionRow {
  id: string;
  agent_id: string;
  request_id: string;
  request_json: string;
  request_sha256: string;
  action_type: string;
  risk_class: string;
  region: string;
  status: string;
  route_name: string | null;
  level: number;
  quorum: number;
  eligible_json: string | null;
  deadline_at: number | null;
  cap_at: number | null;
  policy_sha256: string;
  requested_at: number;
  verdict: string | null;
  reason_code: string | null;
  decided_at: number | null;
  record_seq: number | null;
}

function fromRaw(r: RawActionRow): ActionRow {
  return toRow({
    id: r.id,
    agentId: r.agent_id,
    requestId: r.request_id,
    requestJson: r.request_json,
    requestSha256: r.request_sha256,
    actionType: r.action_type,
    riskClass: r.risk_class,
    region: r.region,
    status: r.status,
    routeName: r.route_name,
    level: r.level,
    quorum: r.quorum,
    eligibleJson: r.eligible_json,
    deadlineAt: r.deadline_at,
    capAt: r.cap_at,
    policySha256: r.policy_sha256,
    requestedAt: r.requested_at,
    verdict: r.verdict,
    reasonCode: r.reason_code,
    decidedAt: r.decided_at,
    recordSeq: r.record_seq,
  });
}
