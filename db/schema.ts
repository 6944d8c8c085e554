/**
 * Countersign's tables (SQLite, through drizzle). The database is the source of truth:
 * timers, cards and releases are rebuilt from it at start. Records and events are
 * append-only; the product never updates or deletes them.
 *
 * Times are unix milliseconds (integer) unless a column says otherwise.
 */
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

export const actions = sqliteTable(
  "actions",
  {
    id: text("id").primaryKey(),
    agentId: text("agent_id").notNull(),
    requestId: text("request_id").notNull(),
    /** The request exactly as validated; its RFC 8785 form hashes to requestSha256. */
    requestJson: text("request_json").notNull(),
    requestSha256: text("request_sha256").notNull(),
    actionType: text("action_type").notNull(),
    /** As the policy made it (never lower than asked). */
    riskClass: text("risk_class").notNull(),
    region: text("region").notNull(),
    /** pending | decided */
    status: text("status").notNull(),
    routeName: text("route_name"),
    /** Current 0-based escalation level. */
    level: integer("level").notNull().default(0),
    quorum: integer("quorum").notNull().default(0),
    /** JSON array of the current level's eligible Slack user ids; null until the level has started. */
    eligibleJson: text("eligible_json"),
    /** The current level's deadline; moves on escalation. */
    deadlineAt: integer("deadline_at"),
    /** The wall-clock cap from timeout_s, over all levels. */
    capAt: integer("cap_at"),
    policySha256: text("policy_sha256").notNull(),
    requestedAt: integer("requested_at").notNull(),
    verdict: text("verdict"),
    reasonCode: text("reason_code"),
    decidedAt: integer("decided_at"),
    recordSeq: integer("record_seq"),
  },
  (t) => [
    uniqueIndex("actions_agent_request").on(t.agentId, t.requestId),
    index("actions_status_deadline").on(t.status, t.deadlineAt),
    index("actions_agent_status").on(t.agentId, t.status),
  ],
);

export const votes = sqliteTable(
  "votes",
  {
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    user: text("user").notNull(),
    team: text("team").notNull(),
    email: text("email"),
    realName: text("real_name"),
    vote: text("vote").notNull(),
    comment: text("comment"),
    level: integer("level").notNull(),
    at: integer("at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.actionId, t.user] })],
);

/** The decision path: every step, with time, actor and data. Append-only. */
export const events = sqliteTable(
  "events",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    actionId: text("action_id"),
    agentId: text("agent_id"),
    type: text("type").notNull(),
    actor: text("actor").notNull(),
    at: integer("at").notNull(),
    dataJson: text("data_json").notNull().default("{}"),
  },
  (t) => [index("events_action").on(t.actionId, t.id)],
);

/** The one hash-chained log. `seq` is allocated in the same transaction that signs and inserts. */
export const records = sqliteTable(
  "records",
  {
    seq: integer("seq").primaryKey(),
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    decisionId: text("decision_id").notNull(),
    jws: text("jws").notNull(),
    /** base64url SHA-256 of jws: the next record's `prev`. */
    digest: text("digest").notNull(),
    kid: text("kid").notNull(),
    agentId: text("agent_id").notNull(),
    region: text("region").notNull(),
    verdict: text("verdict").notNull(),
    decidedAt: integer("decided_at").notNull(),
  },
  (t) => [
    uniqueIndex("records_action").on(t.actionId),
    uniqueIndex("records_decision").on(t.decisionId),
    index("records_decided_at").on(t.decidedAt),
  ],
);

/** Every public key that ever signed, so old records keep verifying after a rotation. */
export const signingKeys = sqliteTable("signing_keys", {
  kid: text("kid").primaryKey(),
  publicJwk: text("public_jwk").notNull(),
  createdAt: integer("created_at").notNull(),
});

/** Used proof ids, kept until their `exp` has passed, shared by every process on this database. */
export const proofJtis = sqliteTable(
  "proof_jtis",
  {
    agentId: text("agent_id").notNull(),
    jti: text("jti").notNull(),
    exp: integer("exp").notNull(),
  },
  (t) => [primaryKey({ columns: [t.agentId, t.jti] }), index("proof_jtis_exp").on(t.exp)],
);

/** Queue jobs waiting for an action's verdict (the original and any repeats). */
export const intakeJobs = sqliteTable(
  "intake_jobs",
  {
    /** `${queue}|${jobId}|${job.timestamp}`: job ids restart if Redis is emptied; the timestamp keeps keys unique. */
    jobKey: text("job_key").primaryKey(),
    jobId: text("job_id").notNull(),
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    releasedAt: integer("released_at"),
  },
  (t) => [index("intake_jobs_action").on(t.actionId)],
);

/** One approval card per action and level, keyed so a repeat never posts a second. */
export const cards = sqliteTable(
  "cards",
  {
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    level: integer("level").notNull(),
    channel: text("channel").notNull(),
    ts: text("ts").notNull(),
    postedAt: integer("posted_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.actionId, t.level] }), index("cards_message").on(t.channel, t.ts)],
);

/**
 * The outbox: every effect on the outside world (Slack posts, job releases, webhooks) is
 * written in the transaction that decided it, then carried out after the commit. A crash
 * between the two leaves the row here, and it is carried out at the next start.
 */
export const outbox = sqliteTable(
  "outbox",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    actionId: text("action_id"),
    kind: text("kind").notNull(),
    /** A stable key: the same effect is never queued twice (e.g. `card:act_x:0`). */
    dedupeKey: text("dedupe_key").notNull(),
    payloadJson: text("payload_json").notNull().default("{}"),
    /** pending | done | dead */
    state: text("state").notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    dueAt: integer("due_at").notNull(),
    /** Who holds it and until when: another process takes it over only after the lease ends. */
    leaseUntil: integer("lease_until"),
    lastError: text("last_error"),
    createdAt: integer("created_at").notNull(),
    doneAt: integer("done_at"),
  },
  (t) => [
    uniqueIndex("outbox_dedupe").on(t.dedupeKey),
    index("outbox_due").on(t.state, t.dueAt).where(sql`state = 'pending'`),
  ],
);

/** Every webhook delivery attempt: time, status, duration, error. Append-only. */
export const webhookAttempts = sqliteTable(
  "webhook_attempts",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    /** The `webhook-id` header: the decision id, the same on every attempt. */
    webhookId: text("webhook_id").notNull(),
    attempt: integer("attempt").notNull(),
    at: integer("at").notNull(),
    url: text("url").notNull(),
    status: integer("status"),
    durationMs: integer("duration_ms").notNull(),
    error: text("error"),
    address: text("address"),
  },
  (t) => [index("webhook_attempts_action").on(t.actionId, t.id)],
);
