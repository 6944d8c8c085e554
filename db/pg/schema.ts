/**
 * Countersign's tables on PostgreSQL (drizzle pg-core): the same tables, columns and
 * meanings as the SQLite schema in ../schema.ts, which documents each of them. Keep the
 * two in step; the store contract test runs one suite against both.
 *
 * Times are unix milliseconds in `bigint` (a JS number: exact up to 2^53); JSON stays
 * `text`, so a request is kept byte for byte as validated (jsonb would reorder its keys).
 * Tables carry no schema name: the store's search_path places them, so several
 * deployments (or test runs) can share one database in separate schemas.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  index,
  integer,
  pgTable,
  primaryKey,
  text,
  uniqueIndex,
} from "drizzle-orm/pg-core";

const ms = (name: string) => bigint(name, { mode: "number" });

export const actions = pgTable(
  "actions",
  {
    id: text("id").primaryKey(),
    agentId: text("agent_id").notNull(),
    requestId: text("request_id").notNull(),
    requestJson: text("request_json").notNull(),
    requestSha256: text("request_sha256").notNull(),
    actionType: text("action_type").notNull(),
    riskClass: text("risk_class").notNull(),
    region: text("region").notNull(),
    /** pending | decided */
    status: text("status").notNull(),
    routeName: text("route_name"),
    level: integer("level").notNull().default(0),
    quorum: integer("quorum").notNull().default(0),
    eligibleJson: text("eligible_json"),
    deadlineAt: ms("deadline_at"),
    capAt: ms("cap_at"),
    policySha256: text("policy_sha256").notNull(),
    requestedAt: ms("requested_at").notNull(),
    verdict: text("verdict"),
    reasonCode: text("reason_code"),
    decidedAt: ms("decided_at"),
    recordSeq: bigint("record_seq", { mode: "number" }),
    /** The current revision of the request: 1 is the agent's; approvers' changes add one each (table revisions). */
    revision: integer("revision").notNull().default(1),
    /** The pending action's next timer, generated from deadline_at and cap_at (see ../schema.ts). least() skips NULLs. */
    timerAt: ms("timer_at").generatedAlwaysAs(
      sql`CASE WHEN status = 'pending' THEN least(deadline_at, cap_at) END`,
    ),
  },
  (t) => [
    uniqueIndex("actions_agent_request").on(t.agentId, t.requestId),
    index("actions_status_deadline").on(t.status, t.deadlineAt),
    index("actions_agent_status").on(t.agentId, t.status),
    index("actions_timer").on(t.timerAt, t.id),
  ],
);

export const votes = pgTable(
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
    /** The StepUpProof (JSON) that confirmed an approval at a step-up level; null otherwise. */
    stepUpJson: text("step_up_json"),
    level: integer("level").notNull(),
    at: ms("at").notNull(),
    /** The revision the vote was cast for (null in rows older than revisions). */
    revision: integer("revision"),
  },
  (t) => [primaryKey({ columns: [t.actionId, t.user] })],
);

/**
 * An approver's change before approval (SPEC "Changes before approval"): revision 2 and
 * later of an action's request, each with who made it and the RFC 6902 patch from the
 * revision before. Revision 1 is the agent's request (actions.request_json). Append-only.
 */
export const revisions = pgTable(
  "revisions",
  {
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    revision: integer("revision").notNull(),
    /** The request of this revision; its RFC 8785 form hashes to requestSha256. */
    requestJson: text("request_json").notNull(),
    requestSha256: text("request_sha256").notNull(),
    user: text("user").notNull(),
    team: text("team").notNull(),
    at: ms("at").notNull(),
    /** JSON array of RFC 6902 operations turning the previous revision into this one. */
    patchJson: text("patch_json").notNull(),
    comment: text("comment"),
  },
  (t) => [primaryKey({ columns: [t.actionId, t.revision] })],
);

export const events = pgTable(
  "events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    actionId: text("action_id"),
    agentId: text("agent_id"),
    type: text("type").notNull(),
    actor: text("actor").notNull(),
    at: ms("at").notNull(),
    dataJson: text("data_json").notNull().default("{}"),
  },
  (t) => [index("events_action").on(t.actionId, t.id)],
);

/** The one hash-chained log. The store serialises seq allocation on an advisory lock. */
export const records = pgTable(
  "records",
  {
    seq: bigint("seq", { mode: "number" }).primaryKey(),
    /** Null for an entry about no action (a `passkey_registered` receipt). */
    actionId: text("action_id").references(() => actions.id),
    decisionId: text("decision_id").notNull(),
    jws: text("jws").notNull(),
    digest: text("digest").notNull(),
    kid: text("kid").notNull(),
    /** agent_id, region, verdict: null, like action_id, for an entry about no action. */
    agentId: text("agent_id"),
    region: text("region"),
    verdict: text("verdict"),
    decidedAt: ms("decided_at").notNull(),
    /**
     * decision | redeemed | outcome | revoked. Receipts are entries of the same log: they
     * take the next seq and chain by prev like a decision. A receipt row's decision_id is
     * the receipt's own id, `ref` the decision it is about, verdict and decided_at the
     * decision's verdict and the receipt's time.
     */
    kind: text("kind").notNull().default("decision"),
    ref: text("ref"),
  },
  (t) => [
    // At most one entry of each kind per action: "redeemed exactly once" (and one
    // outcome, one revocation) is a fact the database keeps, whatever the code does.
    uniqueIndex("records_action_kind").on(t.actionId, t.kind),
    index("records_ref").on(t.ref),
    uniqueIndex("records_decision").on(t.decisionId),
    index("records_decided_at").on(t.decidedAt),
  ],
);

export const signingKeys = pgTable("signing_keys", {
  kid: text("kid").primaryKey(),
  publicJwk: text("public_jwk").notNull(),
  createdAt: ms("created_at").notNull(),
});

export const proofJtis = pgTable(
  "proof_jtis",
  {
    agentId: text("agent_id").notNull(),
    jti: text("jti").notNull(),
    /** Unix seconds, as in the proof. */
    exp: bigint("exp", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.agentId, t.jti] }), index("proof_jtis_exp").on(t.exp)],
);

export const intakeJobs = pgTable(
  "intake_jobs",
  {
    jobKey: text("job_key").primaryKey(),
    jobId: text("job_id").notNull(),
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    releasedAt: ms("released_at"),
  },
  (t) => [index("intake_jobs_action").on(t.actionId)],
);

export const cards = pgTable(
  "cards",
  {
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    level: integer("level").notNull(),
    channel: text("channel").notNull(),
    ts: text("ts").notNull(),
    postedAt: ms("posted_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.actionId, t.level] }), index("cards_message").on(t.channel, t.ts)],
);

export const outbox = pgTable(
  "outbox",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    actionId: text("action_id"),
    kind: text("kind").notNull(),
    dedupeKey: text("dedupe_key").notNull(),
    payloadJson: text("payload_json").notNull().default("{}"),
    /** pending | done | dead */
    state: text("state").notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    dueAt: ms("due_at").notNull(),
    leaseUntil: ms("lease_until"),
    lastError: text("last_error"),
    createdAt: ms("created_at").notNull(),
    doneAt: ms("done_at"),
  },
  (t) => [
    uniqueIndex("outbox_dedupe").on(t.dedupeKey),
    index("outbox_due").on(t.state, t.dueAt).where(sql`state = 'pending'`),
  ],
);

export const webhookAttempts = pgTable(
  "webhook_attempts",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    actionId: text("action_id")
      .notNull()
      .references(() => actions.id),
    webhookId: text("webhook_id").notNull(),
    attempt: integer("attempt").notNull(),
    at: ms("at").notNull(),
    url: text("url").notNull(),
    status: integer("status"),
    durationMs: integer("duration_ms").notNull(),
    error: text("error"),
    address: text("address"),
  },
  (t) => [index("webhook_attempts_action").on(t.actionId, t.id)],
);

/**
 * Passkeys (SPEC "Step-up"): WebAuthn credentials of Slack users, registered through a
 * one-time link. The public key is kept as the authenticator gave it (COSE, for the
 * ceremony library) and as a JWK (what the log's `passkey_registered` entry carries).
 */
export const passkeyCredentials = pgTable(
  "passkey_credentials",
  {
    /** base64url, as WebAuthn names it. */
    credentialId: text("credential_id").primaryKey(),
    team: text("team").notNull(),
    user: text("user").notNull(),
    /** base64url of the COSE_Key bytes. */
    publicKeyCose: text("public_key_cose").notNull(),
    publicKeyJwk: text("public_key_jwk").notNull(),
    /** The authenticator's signature counter as last seen (0 for authenticators without one). */
    counter: ms("counter").notNull().default(0),
    label: text("label").notNull(),
    /** JSON array of the transports the browser reported. */
    transportsJson: text("transports_json").notNull().default("[]"),
    createdAt: ms("created_at").notNull(),
  },
  (t) => [index("passkey_credentials_user").on(t.team, t.user)],
);

/**
 * One-time links to the passkey pages: `register` (10 minutes) and `approve` (5 minutes,
 * for one action, level and revision). Only the SHA-256 of the link's token is kept, so
 * the table cannot be read back into working links. Redeemed once (`used_at`), atomically.
 */
export const passkeyLinks = pgTable(
  "passkey_links",
  {
    /** base64url SHA-256 of the token in the link. */
    tokenHash: text("token_hash").primaryKey(),
    /** register | approve */
    purpose: text("purpose").notNull(),
    team: text("team").notNull(),
    user: text("user").notNull(),
    actionId: text("action_id"),
    level: integer("level"),
    /** The digest of the revision the page shows (what the approval is for). */
    actionSha256: text("action_sha256"),
    revision: integer("revision"),
    /** The comment of "Approve with comment", cast with the vote once the passkey confirms it. */
    comment: text("comment"),
    /** Issued by the server, single-use with the link: part of the WebAuthn challenge. */
    nonce: text("nonce").notNull(),
    createdAt: ms("created_at").notNull(),
    expiresAt: ms("expires_at").notNull(),
    usedAt: ms("used_at"),
  },
  (t) => [index("passkey_links_expires").on(t.expiresAt)],
);
