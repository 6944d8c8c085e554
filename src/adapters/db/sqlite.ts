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
import { and, asc, eq, inArray, lte, sql } from "drizzle-orm";
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
  /** `born`: the effects this write leased at birth, handed to the adopter after the commit. */
  | { readonly ok: true; readonly value: unknown; readonly born: readonly Effect[] }
  | { readonly ok: false; readonly error: unknown };

export class SqliteStore implements Store {
  private signer: RecordSigner | null = null;
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
  /** Who takes effects leased at birth (see adoptEffects). */
  private adopter: EffectAdopter | null = null;
  /** The effects the write running now has leased at birth. */
  private born: Effect[] = [];
  /** Slots the adopter has held for this flush's effects, across its attempts. */
  private reserved = 0;

  constructor(file: string, opts: { migrate?: boolean } = {}) {
    const { db, raw } = openSqlite(file);
    this.db = db;
    this.raw = raw;
    if (opts.migrate !== false) migrateSqlite(db);
    this.readTx = raw.transaction((id: string) => this.loadAction(id));
    this.savepoint = raw.transaction((run: () => unknown) => run());
    this.commitGroup = raw.transaction((calls: readonly Queued[], isolate: boolean) => {
      const outcomes: Outcome[] = [];
      for (const c of calls) {
        this.born = [];
        if (!isolate) {
          outcomes.push({ ok: true, value: c.run(), born: this.born });
          continue;
        }
        try {
          outcomes.push({ ok: true, value: this.savepoint(c.run), born: this.born });
        } catch (error) {
          // Most errors (a RejectionError, a constraint) undo only this write's savepoint.
          // A few make SQLite roll the whole transaction back (a full disk, an I/O error):
          // then nothing of the group will be committed, and every caller must hear so.
          if (!this.raw.inTransaction) throw error;
          outcomes.push({ ok: false, error });
        }
      }
      return outcomes;
    });
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
      if (!this.raw.open) throw new Error("the SQLite store is closed");
      outcomes = this.commitOptimistically(calls);
    } catch (error) {
      this.settleBirths([]);
      for (const c of calls) c.reject(error);
      return;
    }
    // Committed: the effects leased at birth can start, before their writers hear back.
    this.settleBirths(outcomes.flatMap((o) => (o.ok ? o.born : [])));
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

  async admit(input: AdmitInput): Promise<AdmitResult> {
    return this.write((): AdmitResult => {
      const a = input.action;
      const existing = this.prep("SELECT * FROM actions WHERE agent_id = ? AND request_id = ?").get(
        a.agentId,
        a.requestId,
      ) as RawActionRow | undefined;
      if (existing) {
        if (existing.request_sha256 !== a.requestSha256) {
          throw new RejectionError(
            "request_id_conflict",
            `request_id ${a.requestId} was already used by this agent for a different request (action ${existing.id})`,
            [{ path: "request_id", message: "already used for different content" }],
          );
        }
        // A repeat: spend the fresh proof too, so it cannot be replayed elsewhere.
        if (input.proof) this.spendJti(a.agentId, input.proof, input.now);
        if (input.job) this.addJob(input.job, existing.id);
        this.insertEvents(
          existing.id,
          a.agentId,
          [{ type: "repeat", actor: `agent:${a.agentId}` }],
          input.now,
        );
        return { kind: "repeat", action: fromRaw(existing), record: this.recordOf(existing.id) };
      }
      if (input.proof) this.spendJti(a.agentId, input.proof, input.now);
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
      const v = actionValues(a);
      this.prep(
        `INSERT INTO actions (id, agent_id, request_id, request_json, request_sha256, action_type, risk_class,
           region, status, route_name, level, quorum, eligible_json, deadline_at, cap_at, policy_sha256, requested_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        v.id,
        v.agentId,
        v.requestId,
        v.requestJson,
        v.requestSha256,
        v.actionType,
        v.riskClass,
        v.region,
        v.routeName,
        v.level,
        v.quorum,
        v.eligibleJson,
        v.deadlineAt,
        v.capAt,
        v.policySha256,
        v.requestedAt,
      );
      if (input.job) this.addJob(input.job, a.id);
      this.insertEvents(a.id, a.agentId, input.events, input.now);
      this.insertEffects(a.id, input.effects(a), input.now);
      // The row is what was just inserted (and closed, when decided at once): no need to read it back.
      const action = toRow({ ...v, verdict: null, reasonCode: null, decidedAt: null, recordSeq: null });
      if (!input.decision) return { kind: "created", action, record: null };
      const { record, closed } = this.decide(a, input.decision, input.now);
      return { kind: "created", action: { ...action, ...closed }, record };
    });
  }

  async mutate(
    actionId: string,
    now: number,
    plan: (a: ActionWithVotes) => Plan | Refused,
  ): Promise<MutateResult> {
    return this.write((): MutateResult => {
      const action = this.loadAction(actionId);
      if (!action) return { kind: "not_found" };
      const p = plan(action);
      if ("refused" in p) {
        this.insertEvents(actionId, action.agentId, p.events, now);
        return { kind: "refused", code: p.refused.code, reason: p.refused.reason, action };
      }
      if (p.set) {
        const s = p.set;
        const set: [column: string, value: unknown][] = [];
        if (s.level !== undefined) set.push(["level", s.level]);
        if (s.quorum !== undefined) set.push(["quorum", s.quorum]);
        if (s.deadlineAt !== undefined) set.push(["deadline_at", s.deadlineAt]);
        if (s.eligible !== undefined)
          set.push(["eligible_json", s.eligible === null ? null : JSON.stringify(s.eligible)]);
        // One statement per combination of columns (at most 15), each prepared once.
        if (set.length)
          this.prep(`UPDATE actions SET ${set.map(([c]) => `${c} = ?`).join(", ")} WHERE id = ?`).run(
            ...set.map(([, v]) => v),
            actionId,
          );
      }
      if (p.vote) {
        const v = p.vote;
        this.prep(
          `INSERT INTO votes (action_id, user, team, email, real_name, vote, comment, level, at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          actionId,
          v.user,
          v.team,
          v.email ?? null,
          v.real_name ?? null,
          v.vote,
          v.comment ?? null,
          v.level,
          Date.parse(v.at),
        );
      }
      this.insertEvents(actionId, action.agentId, p.events, now);
      this.insertEffects(actionId, p.effects, now);
      let record: StoredRecord | null = null;
      if (p.decision) {
        if (action.status !== "pending") throw new Error(`action ${actionId} is already decided`);
        record = this.decide(action, p.decision, now).record;
      }
      return { kind: "applied", action: this.loadAction(actionId)!, record };
    });
  }

  /** Allocate seq and prev, sign, insert the record and close the action: inside the caller's savepoint. */
  private decide(
    action: Pick<NewAction, "id" | "agentId" | "region">,
    d: { outcome: DecisionOutcome; claims: UnchainedClaims },
    now: number,
  ): {
    record: StoredRecord;
    closed: Pick<ActionRow, "status" | "verdict" | "reasonCode" | "decidedAt" | "recordSeq">;
  } {
    if (!this.signer) throw new Error("no signing key loaded");
    const head = this.prep("SELECT seq, digest FROM records ORDER BY seq DESC LIMIT 1").get() as
      | { seq: number; digest: string }
      | undefined;
    const seq = (head?.seq ?? 0) + 1;
    const prev = head?.digest ?? null;
    const { jws, kid } = this.signer({ ...d.claims, seq, prev });
    const digest = sha256B64url(jws);
    const decidedAt = Date.parse(d.claims.decided_at);
    this.prep(
      `INSERT INTO records (seq, action_id, decision_id, jws, digest, kid, agent_id, region, verdict, decided_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      seq,
      action.id,
      d.claims.jti,
      jws,
      digest,
      kid,
      action.agentId,
      action.region,
      d.outcome.verdict,
      decidedAt,
    );
    const changed = this.prep(
      `UPDATE actions SET status = 'decided', verdict = ?, reason_code = ?, decided_at = ?, record_seq = ?
       WHERE id = ? AND status = 'pending'`,
    ).run(d.outcome.verdict, d.outcome.reasonCode, decidedAt, seq, action.id);
    if (changed.changes !== 1) throw new Error(`action ${action.id} was decided twice`);
    this.insertEvents(
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
    return {
      record: { seq, actionId: action.id, decisionId: d.claims.jti, jws, digest, kid },
      closed: {
        status: "decided",
        verdict: d.outcome.verdict,
        reasonCode: d.outcome.reasonCode,
        decidedAt,
        recordSeq: seq,
      },
    };
  }

  async spendProof(agentId: string, proof: { jti: string; exp: number }, now: number): Promise<void> {
    return this.write(() => this.spendJti(agentId, proof, now));
  }

  private spendJti(agentId: string, proof: { jti: string; exp: number }, now: number): void {
    // Forget spent proofs once they could no longer be accepted anyway (exp + skew).
    this.prep("DELETE FROM proof_jtis WHERE exp <= ?").run(Math.floor(now / 1000) - 60);
    const r = this.prep(
      "INSERT INTO proof_jtis (agent_id, jti, exp) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    ).run(agentId, proof.jti, proof.exp);
    if (r.changes === 0) {
      throw new RejectionError(
        "replayed_proof",
        `proof jti ${proof.jti} was already used by agent ${agentId}`,
        [{ path: "proof.jti", message: "already used" }],
      );
    }
  }

  private addJob(job: { key: string; id: string }, actionId: string): void {
    this.prep(
      "INSERT INTO intake_jobs (job_key, job_id, action_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    ).run(job.key, job.id, actionId);
  }

  private insertEvents(
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

  /** Hands the adopter what this flush leased at birth and committed, and frees its slots. */
  private settleBirths(born: readonly Effect[]): void {
    const reserved = this.reserved;
    this.reserved = 0;
    if (reserved) this.adopter?.settle(born, reserved);
  }

  private insertEffects(actionId: string | null, effects: readonly NewEffect[], now: number): void {
    const st = this.prep(
      `INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    );
    // Due at once, with an adopter: written leased (its first attempt), and handed over
    // after the commit. A duplicate (its key already in the outbox) returns no row.
    const leased = this.prep(
      `INSERT INTO outbox (action_id, kind, dedupe_key, payload_json, due_at, created_at, lease_until, attempts)
       VALUES (?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT DO NOTHING RETURNING id`,
    );
    for (const e of effects) {
      const payload = e.payload ?? {};
      const dueAt = e.dueAt ?? now;
      if (!this.adopter || dueAt > now || !this.adopter.reserve()) {
        st.run(actionId, e.kind, e.dedupeKey, JSON.stringify(payload), dueAt, now);
        continue;
      }
      this.reserved++;
      const lease = now + this.adopter.leaseMs;
      const row = leased.get(actionId, e.kind, e.dedupeKey, JSON.stringify(payload), dueAt, now, lease) as
        | { id: number }
        | undefined;
      if (row) {
        this.born.push({
          id: row.id,
          actionId,
          kind: e.kind,
          dedupeKey: e.dedupeKey,
          payload: { ...payload },
          attempts: 1,
          createdAt: now,
          lease,
        });
      }
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
    const row = this.prep("SELECT * FROM actions WHERE agent_id = ? AND request_id = ?").get(
      agentId,
      requestId,
    ) as RawActionRow | undefined;
    return row ? fromRaw(row) : null;
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
    return this.prep(
      "SELECT job_key AS key, job_id AS id FROM intake_jobs WHERE action_id = ? AND released_at IS NULL",
    ).all(actionId) as { key: string; id: string }[];
  }

  async markJobsReleased(keys: readonly string[], now: number): Promise<void> {
    if (!keys.length) return;
    return this.write(() => {
      const st = this.prep("UPDATE intake_jobs SET released_at = ? WHERE job_key = ?");
      for (const k of keys) st.run(now, k);
    });
  }

  async appendEvents(
    actionId: string | null,
    agentId: string | null,
    events: readonly NewEvent[],
    now: number,
  ): Promise<void> {
    return this.write(() => this.insertEvents(actionId, agentId, events, now));
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
    return this.write(
      () =>
        this.prep(
          "INSERT INTO cards (action_id, level, channel, ts, posted_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ).run(card.actionId, card.level, card.channel, card.ts, now).changes === 1,
    );
  }

  async addEffects(actionId: string | null, effects: readonly NewEffect[], now: number): Promise<void> {
    return this.write(() => this.insertEffects(actionId, effects, now));
  }

  adoptEffects(adopter: EffectAdopter | null): void {
    this.adopter = adopter;
  }

  async claimEffects(now: number, limit: number, leaseMs: number): Promise<Effect[]> {
    const rows = await this.write(
      () =>
        this.prep(
          `UPDATE outbox SET lease_until = ?, attempts = attempts + 1
           WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND due_at <= ?
                        AND (lease_until IS NULL OR lease_until < ?) ORDER BY due_at, id LIMIT ?)
           RETURNING id, action_id, kind, dedupe_key, payload_json, attempts, created_at, lease_until`,
        ).all(now + leaseMs, now, now, limit) as {
          id: number;
          action_id: string | null;
          kind: string;
          dedupe_key: string;
          payload_json: string;
          attempts: number;
          created_at: number;
          lease_until: number;
        }[],
    );
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

  async renewEffects(held: readonly { id: number; lease: number }[], lease: number): Promise<number[]> {
    if (!held.length) return [];
    return this.write(() => {
      const renew = this.prep("UPDATE outbox SET lease_until = ? WHERE id = ? AND lease_until = ?");
      return held.filter((h) => renew.run(lease, h.id, h.lease).changes === 1).map((h) => h.id);
    });
  }

  async completeEffect(id: number, lease: number, now: number): Promise<boolean> {
    return this.finish(
      "UPDATE outbox SET state = 'done', done_at = ?, lease_until = NULL WHERE id = ? AND lease_until = ?",
      [now],
      id,
      lease,
    );
  }

  async retryEffect(id: number, lease: number, dueAt: number, error: string): Promise<boolean> {
    return this.finish(
      "UPDATE outbox SET due_at = ?, lease_until = NULL, last_error = ? WHERE id = ? AND lease_until = ?",
      [dueAt, error.slice(0, 2000)],
      id,
      lease,
    );
  }

  async deferEffect(id: number, lease: number, dueAt: number): Promise<boolean> {
    return this.finish(
      "UPDATE outbox SET due_at = ?, lease_until = NULL, attempts = max(0, attempts - 1) WHERE id = ? AND lease_until = ?",
      [dueAt],
      id,
      lease,
    );
  }

  async killEffect(id: number, lease: number, error: string, now: number): Promise<boolean> {
    return this.finish(
      "UPDATE outbox SET state = 'dead', done_at = ?, lease_until = NULL, last_error = ? WHERE id = ? AND lease_until = ?",
      [now, error.slice(0, 2000)],
      id,
      lease,
    );
  }

  /** Finish an effect only if `lease` is still its lease (see Effect.lease). */
  private finish(update: string, args: unknown[], id: number, lease: number): Promise<boolean> {
    return this.writeSoon(() => this.prep(update).run(...args, id, lease).changes === 1);
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
      `SELECT a.* FROM actions a
       WHERE a.status = 'pending' AND a.eligible_json IS NOT NULL
         AND EXISTS (SELECT 1 FROM json_each(a.eligible_json) e WHERE e.value = ?)
         AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.action_id = a.id AND v.user = ?)
       ORDER BY a.deadline_at IS NULL, a.deadline_at, a.id LIMIT ?`,
    ).all(user, user, limit) as RawActionRow[];
    return rows.map(fromRaw);
  }

  async recentlyVotedBy(user: string, limit: number): Promise<ActionRow[]> {
    const rows = this.prep(
      `SELECT a.* FROM actions a JOIN votes v ON v.action_id = a.id
       WHERE v.user = ? AND a.status = 'decided' ORDER BY a.decided_at DESC LIMIT ?`,
    ).all(user, limit) as RawActionRow[];
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
    const rows = this.prep(
      `SELECT coalesce(verdict, 'pending') AS k, count(*) AS n FROM actions
       WHERE agent_id = ? AND requested_at >= ? GROUP BY 1`,
    ).all(agentId, since) as { k: string; n: number }[];
    const out = { total: 0, pending: 0, approved: 0, denied: 0, expired: 0, cancelled: 0 };
    for (const r of rows) {
      if (r.k in out) out[r.k as keyof typeof out] = r.n;
      out.total += r.n;
    }
    return out;
  }

  async recordWebhookAttempt(a: WebhookAttempt): Promise<void> {
    return this.write(() => {
      this.prep(
        `INSERT INTO webhook_attempts (action_id, webhook_id, attempt, at, url, status, duration_ms, error, address)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(a.actionId, a.webhookId, a.attempt, a.at, a.url, a.status, a.durationMs, a.error, a.address);
    });
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
    return this.write(() => {
      this.prep(
        "INSERT INTO signing_keys (kid, public_jwk, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
      ).run(kid, JSON.stringify(publicJwk), now);
    });
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
    this.prep("SELECT 1").get();
  }

  async close(): Promise<void> {
    // Writes already asked for are committed (or rejected) before the file closes, so a
    // graceful stop loses nothing a caller is still waiting on.
    while (this.queue.length || this.soon.length) this.flush();
    if (this.soonTimer) clearTimeout(this.soonTimer);
    this.soonTimer = null;
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
