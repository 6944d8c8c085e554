/**
 * The ports the use-cases depend on. Adapters (SQLite today, PostgreSQL later; BullMQ;
 * Slack) implement them; the use-cases never import an adapter.
 */
import type { DecisionOutcome, Refusal } from "../domain/decision.js";
import type {
  ActionRequest,
  Edit,
  PasskeyRegisteredReceiptClaims,
  PublicJwk,
  ReceiptClaims,
  ReceiptKind,
  RecordClaims,
  UnchainedReceiptClaims,
  Verdict,
  Vote,
} from "../domain/types.js";

export interface ActionRow {
  readonly id: string;
  readonly agentId: string;
  readonly requestId: string;
  readonly request: ActionRequest;
  readonly requestSha256: string;
  readonly actionType: string;
  readonly riskClass: string;
  readonly region: string;
  readonly status: "pending" | "decided";
  readonly routeName: string | null;
  readonly level: number;
  readonly quorum: number;
  readonly eligible: readonly string[] | null;
  readonly deadlineAt: number | null;
  readonly capAt: number | null;
  readonly policySha256: string;
  readonly requestedAt: number;
  readonly verdict: DecisionOutcome["verdict"] | null;
  readonly reasonCode: DecisionOutcome["reasonCode"] | null;
  readonly decidedAt: number | null;
  readonly recordSeq: number | null;
  /** The current revision of the request: 1 is the agent's (`request`); each approver's change adds one. */
  readonly revision: number;
}

/** Revision 2 or later of an action's request: an approver's change (SPEC "Changes before approval"). */
export interface Revision {
  readonly revision: number;
  readonly request: ActionRequest;
  /** requestDigest(request). */
  readonly sha256: string;
  /** Who changed it, when, and the RFC 6902 patch from the revision before. */
  readonly edit: Edit;
  readonly comment?: string;
}

export interface ActionWithVotes extends ActionRow {
  readonly votes: readonly (Vote & { readonly level: number })[];
  /** The approvers' revisions (2, 3, ...) in order; empty while the request is the agent's. */
  readonly revisions: readonly Revision[];
}

/**
 * The request as it stands (as decided, once decided): the newest revision, or the agent's.
 * What the card shows, what the record's action_sha256 covers and what the agent executes.
 */
export function currentRequest(a: Pick<ActionWithVotes, "request" | "requestSha256" | "revisions">): {
  readonly revision: number;
  readonly request: ActionRequest;
  readonly sha256: string;
} {
  const last = a.revisions.at(-1);
  return last
    ? { revision: last.revision, request: last.request, sha256: last.sha256 }
    : { revision: 1, request: a.request, sha256: a.requestSha256 };
}

export interface StoredRecord {
  readonly seq: number;
  readonly actionId: string;
  readonly decisionId: string;
  readonly jws: string;
  readonly digest: string;
  readonly kid: string;
}

/** Every kind of audit event the service writes (the `type` column of events). */
export type EventType =
  | "received"
  | "routed"
  | "repeat"
  | "rejected"
  | "level_started"
  | "escalated"
  | "vote_cast"
  | "vote_refused"
  | "decided"
  | "expired"
  | "cancelled"
  | "record_issued"
  | "card_posted"
  | "reminded"
  | "slack_failed"
  | "webhook_attempt"
  | "webhook_cancelled"
  | "receipt_issued"
  | "redeemed"
  | "redeem_refused"
  | "outcome_reported"
  | "outcome_refused"
  | "revoked"
  | "revoke_refused"
  | "changed"
  | "change_refused"
  | "passkey_registered"
  | "passkey_removed"
  | "step_up_requested"
  | "step_up_refused";

export interface NewEvent {
  readonly type: EventType;
  /** `agent:<id>`, `slack:<user>`, `system`, `timer`, `http:<agent>`. */
  readonly actor: string;
  readonly data?: Readonly<Record<string, unknown>>;
}

/** An event as read back: written by this version or an older one, so its type is any string. */
export interface StoredEvent extends Omit<NewEvent, "type"> {
  readonly type: string;
  readonly id: number;
  readonly actionId: string | null;
  readonly agentId: string | null;
  readonly at: number;
}

export type EffectKind =
  | "start_level"
  | "post_card"
  | "update_card"
  | "thread_note"
  | "dm"
  | "release"
  | "timer"
  | "webhook"
  | "remind";

export interface NewEffect {
  readonly kind: EffectKind;
  /** Unique across the outbox: adding an effect whose key exists is a no-op. */
  readonly dedupeKey: string;
  readonly payload?: Readonly<Record<string, unknown>>;
  readonly dueAt?: number;
}

export interface Effect {
  readonly id: number;
  readonly actionId: string | null;
  readonly kind: EffectKind;
  readonly dedupeKey: string;
  readonly payload: Record<string, unknown>;
  readonly attempts: number;
  readonly createdAt: number;
  /**
   * The lease this claim holds (its expiry, ms). Finishing an effect names it: a process
   * whose lease ran out, and whose effect another process took over, changes nothing.
   */
  readonly lease: number;
}

/** Who takes effects leased as written (Store.handEffectsTo): the process's outbox runner. */
export interface EffectReceiver {
  readonly leaseMs: number;
  /** Asked as an effect due at once is written: true holds a slot for it, to be leased here. */
  reserve(): boolean;
  /**
   * Asked as an effect due at once is written: how many ms to push its due time back, so
   * that what can wait (card updates, DMs) is claimed after what cannot (releases) while
   * the receiver is swamped by a burst. 0 (or absent) for none.
   */
  holdBack?(kind: EffectKind): number;
  /**
   * After the commit, or the rollback: `born` are the effects written leased (none if the
   * transaction rolled back), to start now; `reserved` is how many slots were held, all
   * now freed. Must not throw.
   */
  settle(born: readonly Effect[], reserved: number): void;
}

export interface WebhookAttempt {
  readonly actionId: string;
  readonly webhookId: string;
  readonly attempt: number;
  readonly at: number;
  readonly url: string;
  readonly status: number | null;
  readonly durationMs: number;
  readonly error: string | null;
  readonly address: string | null;
}

export interface Card {
  readonly actionId: string;
  readonly level: number;
  readonly channel: string;
  readonly ts: string;
}

/** The record's claims before the log gives it a place. */
export type UnchainedClaims = Omit<RecordClaims, "seq" | "prev">;

export interface Plan {
  /** Columns of the action to change. */
  readonly set?: Partial<Pick<ActionRow, "level" | "quorum" | "eligible" | "deadlineAt">>;
  readonly vote?: Vote & { readonly level: number };
  /**
   * A new revision of the request (the action's revision + 1): written with the action's
   * earlier approvals cleared (they approved something else), before `vote` (the editor's).
   */
  readonly revise?: Revision;
  readonly events: readonly NewEvent[];
  readonly effects: readonly NewEffect[];
  /** A verdict: the store allocates seq and prev, signs and inserts the record in the same transaction. */
  readonly decision?: { readonly outcome: DecisionOutcome; readonly claims: UnchainedClaims };
}

/**
 * Why a change was refused: the decision core's refusals, and the use-cases' own (the
 * action is gone, or there is nothing left to do).
 */
/** Why a redeem, an outcome or a revoke was refused; the HTTP API maps each to its status. */
export type GrantCode =
  | "bad_record"
  | "forbidden"
  | "not_found"
  | "not_approved"
  | "action_mismatch"
  | "already_redeemed"
  | "revoked"
  | "already_revoked"
  | "grant_expired"
  | "outcome_exists"
  | "invalid_request";

/** Why an approver's change was refused (SPEC "Changes before approval"). */
export type ChangeCode =
  | "not_editable"
  | "wrong_type"
  | "no_change"
  | "reroute"
  | "policy_changed"
  | "invalid_change";

export type RefusalCode = Refusal["code"] | GrantCode | ChangeCode | "stale";

export interface Refused {
  /** `pointer`: the member of the request a refused change is about, when it is about one. */
  readonly refused: { readonly code: RefusalCode; readonly reason: string; readonly pointer?: string };
  /** Events to keep even though nothing changed (e.g. a refused vote). */
  readonly events: readonly NewEvent[];
}

export type MutateResult =
  | { readonly kind: "applied"; readonly action: ActionWithVotes; readonly record: StoredRecord | null }
  | {
      readonly kind: "refused";
      readonly code: RefusalCode;
      readonly reason: string;
      readonly action: ActionWithVotes;
      /** The member a refused change is about (see Refused). */
      readonly pointer?: string;
    }
  | { readonly kind: "not_found" };

export interface NewAction
  extends Omit<ActionRow, "status" | "verdict" | "reasonCode" | "decidedAt" | "recordSeq" | "revision"> {}

export interface AdmitInput {
  readonly action: NewAction;
  readonly proof: { readonly jti: string; readonly exp: number } | null;
  readonly job: { readonly key: string; readonly id: string } | null;
  readonly maxPending: number;
  readonly events: readonly NewEvent[];
  readonly effects: (action: NewAction) => readonly NewEffect[];
  /** Set when the policy decides at once (an `auto:` route, or no route). */
  readonly decision?: { readonly outcome: DecisionOutcome; readonly claims: UnchainedClaims };
  readonly now: number;
}

export type AdmitResult =
  | { readonly kind: "created"; readonly action: ActionRow; readonly record: StoredRecord | null }
  | { readonly kind: "repeat"; readonly action: ActionRow; readonly record: StoredRecord | null };

/** A receipt as the log keeps it (an entry of `records` whose kind is not decision). */
export interface StoredReceipt {
  readonly seq: number;
  readonly kind: ReceiptKind;
  readonly actionId: string;
  /** The receipt's own id (its jti). */
  readonly receiptId: string;
  readonly jws: string;
  /** When it was committed (ms); the receipt's `at`. */
  readonly at: number;
}

/** What the log holds about one action when a receipt is asked for. */
export interface ReceiptState {
  readonly action: ActionRow;
  /** The decision record; null while pending. */
  readonly record: StoredRecord | null;
  readonly receipts: readonly StoredReceipt[];
  /** The time judged: read inside the transaction, after its locks, so it is the commit's. */
  readonly now: number;
}

export interface ReceiptPlan {
  readonly claims: UnchainedReceiptClaims;
  readonly events: readonly NewEvent[];
  /** Effects of the receipt once it has its place (a webhook carries its JWS). */
  readonly effects: (receipt: StoredReceipt) => readonly NewEffect[];
}

export type ReceiptResult =
  | { readonly kind: "appended"; readonly receipt: StoredReceipt; readonly state: ReceiptState }
  | {
      readonly kind: "refused";
      readonly code: string;
      readonly reason: string;
      readonly state: ReceiptState;
    }
  | { readonly kind: "not_found" };

/** Signs a receipt's claims inside the store's transaction, like RecordSigner. */
export type ReceiptSigner = (claims: ReceiptClaims) => { jws: string; kid: string };

/** Signs a record's claims; called inside the store's transaction, so it must be synchronous and fast. */
export type RecordSigner = (claims: RecordClaims) => { jws: string; kid: string };

/**
 * Every write is atomic and settles only once it is durable. A store may commit writes
 * that arrive together in one transaction (SqliteStore does), each still all-or-nothing
 * on its own, in arrival order; so callers that can go on side by side (a batch of due
 * deadlines) should not await one write before asking for the next.
 */
export interface Store extends PasskeyStore {
  /** Records are signed inside the store's transaction; the key is set at start and on rotation. */
  setSigner(signer: RecordSigner): void;
  /**
   * Accept a new request, or recognise a repeat, atomically: the proof's jti is spent,
   * (agent, request_id) deduplicated, the pending limit checked, the action inserted with
   * its events and effects, and the record issued when the policy decided at once.
   * Throws RejectionError for replayed_proof, request_id_conflict, too_many_pending.
   */
  admit(input: AdmitInput): Promise<AdmitResult>;
  /** Read the action, let `decide` (pure, synchronous) plan a change, apply it: one transaction. */
  mutate(
    actionId: string,
    now: number,
    decide: (a: ActionWithVotes) => Plan | Refused,
  ): Promise<MutateResult>;

  /** Spend a proof's jti (POST calls other than submit); throws RejectionError replayed_proof if already spent. */
  spendProof(agentId: string, proof: { jti: string; exp: number }, now: number): Promise<void>;
  getAction(id: string): Promise<ActionWithVotes | null>;
  getActionByRequest(agentId: string, requestId: string): Promise<ActionRow | null>;
  getRecord(actionId: string): Promise<StoredRecord | null>;
  /**
   * Read the action, its decision and its receipts, let `plan` (pure, synchronous) decide,
   * and append the receipt as the log's next entry: one transaction, which holds the action
   * so that a redeem, an outcome and a revoke of one approval commit one after another.
   */
  appendReceipt(actionId: string, plan: (s: ReceiptState) => ReceiptPlan | Refused): Promise<ReceiptResult>;
  /** The action's receipts in log order. */
  getReceipts(actionId: string): Promise<StoredReceipt[]>;
  findJob(jobKey: string): Promise<{ actionId: string } | null>;
  unreleasedJobs(actionId: string): Promise<{ key: string; id: string }[]>;
  markJobsReleased(keys: readonly string[], now: number): Promise<void>;

  appendEvents(
    actionId: string | null,
    agentId: string | null,
    events: readonly NewEvent[],
    now: number,
  ): Promise<void>;
  listEvents(actionId: string): Promise<StoredEvent[]>;

  getCards(actionId: string): Promise<Card[]>;
  findCardByMessage(channel: string, ts: string): Promise<Card | null>;
  /** Returns false when a card for that action and level was already saved (another process won). */
  saveCard(card: Card, now: number): Promise<boolean>;

  addEffects(actionId: string | null, effects: readonly NewEffect[], now: number): Promise<void>;
  /**
   * Lease effects to this process as they are written. From now on an effect due at once,
   * if `receiver.reserve()` agrees, is inserted already leased for `leaseMs` (its first
   * attempt counted) and, once its transaction has committed, handed to `receiver.settle`
   * in the order written, so it starts without waiting for a claim (a claim is a write of
   * its own, and a turn of the loop). Effects due later, or refused a slot, are claimed as
   * before; so is one whose receiver never finishes it, once its lease has run out. `null`
   * stops it (a process shutting down).
   */
  handEffectsTo(receiver: EffectReceiver | null): void;
  /** Lease up to `limit` due effects for `leaseMs`; another process takes an effect over only after its lease. */
  claimEffects(now: number, limit: number, leaseMs: number): Promise<Effect[]>;
  /**
   * The heartbeat of a living holder: moves each effect's lease from `held.lease` to
   * `lease`, where it is still `held.lease`. Leases are short and renewed while their
   * holder lives, so a killed process's effects are taken over within a lease, not
   * after the longest an effect could run. Returns the ids renewed (the others were
   * taken over, or finished).
   */
  renewEffects(held: readonly { id: number; lease: number }[], lease: number): Promise<number[]>;
  /** These four return false, changing nothing, when `lease` is no longer the effect's lease. */
  completeEffect(id: number, lease: number, now: number): Promise<boolean>;
  retryEffect(id: number, lease: number, dueAt: number, error: string): Promise<boolean>;
  /** Put off without counting an attempt (the claim counted one; this takes it back). */
  deferEffect(id: number, lease: number, dueAt: number): Promise<boolean>;
  killEffect(id: number, lease: number, error: string, now: number): Promise<boolean>;
  /** Effects not yet carried out; with `dueBy`, only those due by then (a reminder due later is not "stuck"). */
  pendingEffectCount(dueBy?: number): Promise<number>;

  /** Pending actions whose next timer is at or before `until` (all with a timer when until is +Infinity). */
  timersDue(until: number, limit: number): Promise<{ id: string; level: number; at: number }[]>;
  /** Decided actions with jobs not yet released. */
  unreleasedDecided(limit: number): Promise<string[]>;

  /** Pending actions whose current level lists `user` as eligible and who has not voted, soonest deadline first. */
  pendingForApprover(user: string, limit: number): Promise<ActionRow[]>;
  /** Decided actions `user` voted on, newest first. */
  recentlyVotedBy(user: string, limit: number): Promise<ActionRow[]>;
  /** The newest actions of these agents, any status. */
  recentForAgents(agentIds: readonly string[], limit: number): Promise<ActionRow[]>;
  /** How an agent's requests since `since` ended (and how many still wait). */
  agentStats(agentId: string, since: number): Promise<Record<"total" | "pending" | Verdict, number>>;

  recordWebhookAttempt(a: WebhookAttempt): Promise<void>;
  webhookAttempts(actionId: string): Promise<WebhookAttempt[]>;

  registerSigningKey(kid: string, publicJwk: object, now: number): Promise<void>;
  signingKeys(): Promise<{ kid: string; publicJwk: object }[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A WebAuthn credential of one Slack user (SPEC "Step-up"). */
export interface PasskeyCredential {
  /** base64url. */
  readonly credentialId: string;
  readonly team: string;
  readonly user: string;
  /** base64url of the COSE_Key bytes, as the authenticator gave them. */
  readonly publicKeyCose: string;
  readonly publicKey: PublicJwk;
  readonly counter: number;
  readonly label: string;
  readonly transports: readonly string[];
  readonly createdAt: number;
}

/** A one-time link to a passkey page; only the token's hash is stored. */
export interface PasskeyLink {
  /** base64url SHA-256 of the link's token. */
  readonly tokenHash: string;
  readonly purpose: "register" | "approve";
  readonly team: string;
  readonly user: string;
  /** For `approve`: the action, its level and the digest (and revision) the page shows. */
  readonly actionId: string | null;
  readonly level: number | null;
  readonly actionSha256: string | null;
  readonly revision: number | null;
  /** The comment of "Approve with comment", cast with the vote. */
  readonly comment: string | null;
  /** base64url, issued by the server; single-use with the link. */
  readonly nonce: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly usedAt: number | null;
}

/** A passkey_registered receipt's claims before the log gives it a place. */
export type UnchainedPasskeyClaims = Omit<PasskeyRegisteredReceiptClaims, "seq" | "prev">;

/** Passkeys and their one-time links (SPEC "Step-up"), on every store. */
export interface PasskeyStore {
  savePasskeyLink(link: PasskeyLink): Promise<void>;
  /** The link as stored, used or not, expired or not (the page says which). */
  getPasskeyLink(tokenHash: string): Promise<PasskeyLink | null>;
  /**
   * Spend a link: atomically marks it used if it is unused and unexpired at `now`, and
   * returns it; null when it was used already (by this or a concurrent request), expired
   * or unknown. Exactly one of any number of concurrent redemptions gets the link.
   */
  redeemPasskeyLink(tokenHash: string, now: number): Promise<PasskeyLink | null>;
  passkeysOf(team: string, user: string): Promise<PasskeyCredential[]>;
  getPasskey(credentialId: string): Promise<PasskeyCredential | null>;
  /**
   * Store a new credential and append its `passkey_registered` receipt as the log's next
   * entry, in one transaction. Throws StoreError `passkey_exists` when the credential id
   * is already registered.
   */
  registerPasskey(
    credential: PasskeyCredential,
    claims: UnchainedPasskeyClaims,
    now: number,
  ): Promise<{ readonly seq: number; readonly jws: string }>;
  /** Removes one of the user's own credentials, with a `passkey_removed` event; false if it is not theirs. */
  removePasskey(team: string, user: string, credentialId: string, now: number): Promise<boolean>;
  /** The authenticator's signature counter after a verified assertion. */
  setPasskeyCounter(credentialId: string, counter: number): Promise<void>;
}

/** What the approval use-cases need of the store. */
export type ApprovalStore = Pick<
  Store,
  "admit" | "mutate" | "getAction" | "appendEvents" | "spendProof" | "addEffects"
>;

/** What the outbox runner needs of the store. */
export type OutboxStore = Pick<
  Store,
  | "handEffectsTo"
  | "claimEffects"
  | "renewEffects"
  | "completeEffect"
  | "retryEffect"
  | "deferEffect"
  | "killEffect"
>;

/** What the timer loop needs of the store. */
export type TimerStore = Pick<Store, "timersDue">;

/** What the queue intake needs of the store. */
export type IntakeStore = Pick<
  Store,
  "findJob" | "getAction" | "getRecord" | "unreleasedJobs" | "unreleasedDecided" | "markJobsReleased"
>;

/** What the Slack effects (cards, notes) need of the store. */
export type SlackEffectStore = Pick<
  Store,
  "getAction" | "getRecord" | "getReceipts" | "getCards" | "saveCard" | "appendEvents"
>;

/** What the Slack entry point (clicks, App Home) reads. */
export type SlackAppStore = Pick<
  Store,
  | "getAction"
  | "getCards"
  | "findCardByMessage"
  | "pendingForApprover"
  | "recentlyVotedBy"
  | "recentForAgents"
  | "agentStats"
>;

/** What webhook delivery needs of the store. */
export type WebhookStore = Pick<
  Store,
  "getAction" | "getRecord" | "getReceipts" | "recordWebhookAttempt" | "appendEvents"
>;

/** What the agent API reads (its writes go through Approvals and Grants). */
export type AgentApiStore = Pick<Store, "getAction" | "getRecord" | "getReceipts">;

export interface DirectoryUser {
  readonly id: string;
  readonly team: string;
  readonly isGuest: boolean;
  readonly isBot: boolean;
  readonly deleted: boolean;
  readonly email?: string;
  readonly realName?: string;
}

/** Who people are: Slack's users.info and usergroups.users.list, behind a port. */
export interface Directory {
  user(id: string): Promise<DirectoryUser | null>;
  groupMembers(groupId: string): Promise<readonly string[]>;
}

export interface ProofCheck {
  /** Verifies the agent's proof; throws RejectionError. Returns jti and exp (unix s). */
  verify(
    token: string,
    o: { agentId: string; digest: string; judgedAt: Date },
  ): Promise<{ jti: string; exp: number }>;
}

/**
 * The logging the use-cases need, shaped as pino's (which implements it): an object
 * first, so an Error goes under `err` and keeps its stack, then the message.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
