/**
 * The store logic both stores share: admit, mutate, the next record's linking (seq, prev,
 * sign), spending a proof's jti, leasing effects at birth, the row mappers and the error
 * texts. Each store supplies only a StoreTx (its statements, inside its own transaction)
 * and what truly differs: SQLite's group commit and savepoints, PostgreSQL's locks and pool.
 *
 * One body of logic serves a synchronous driver (better-sqlite3 inside a transaction, where
 * nothing may wait) and an asynchronous one (node-postgres). So the logic is written as
 * generators: a step that needs the database is `yield* tx.something()`, which returns at
 * once on SQLite and yields a promise on PostgreSQL. `runNow` drives a step that never
 * waits; `runAwaiting` awaits each promise and resumes with its value (or its error).
 */

import type {
  ActionRow,
  ActionWithVotes,
  AdmitInput,
  AdmitResult,
  Effect,
  EffectKind,
  EffectReceiver,
  MutateResult,
  NewAction,
  NewEffect,
  NewEvent,
  PasskeyCredential,
  PasskeyLink,
  Plan,
  ReceiptPlan,
  ReceiptResult,
  ReceiptSigner,
  ReceiptState,
  RecordSigner,
  Refused,
  Revision,
  StoredEvent,
  StoredReceipt,
  StoredRecord,
  UnchainedClaims,
  UnchainedPasskeyClaims,
  WebhookAttempt,
} from "../../app/ports.js";
import { sha256B64url } from "../../domain/canonical.js";
import type { DecisionOutcome } from "../../domain/decision.js";
import {
  type ReceiptClaims,
  RejectionError,
  type StepUpProof,
  type Verdict,
  type Vote,
} from "../../domain/types.js";
import { StoreError } from "./errors.js";
import { type ActionColumns, actionValues, toRow } from "./rows.js";

/** A piece of store logic: runs without waiting on SQLite, yields the driver's promises on PostgreSQL. */
export type Step<T> = Generator<Promise<unknown>, T, unknown>;

/** Wraps an asynchronous driver call as a step. */
export function* wait<T>(p: Promise<T>): Step<T> {
  return (yield p) as T;
}

/** A step whose value is already at hand (every step of a synchronous driver). */
// biome-ignore lint/correctness/useYield: it is a step that never waits, by design
export function* done<T>(value: T): Step<T> {
  return value;
}

/** Runs a step that must not wait (inside a better-sqlite3 transaction, which cannot span an await). */
export function runNow<T>(step: Step<T>): T {
  const r = step.next();
  if (!r.done) throw new StoreError("a synchronous store step tried to wait for a promise");
  return r.value;
}

/** Runs a step, awaiting each promise it yields and resuming it with the value or the error. */
export async function runAwaiting<T>(step: Step<T>): Promise<T> {
  let r = step.next();
  while (!r.done) {
    let value: unknown;
    try {
      value = await r.value;
    } catch (e) {
      r = step.throw(e);
      continue;
    }
    r = step.next(value);
  }
  return r.value;
}

/** The effects one transaction leased as written (see Store.handEffectsTo), and the slots it holds. */
export interface WriteLeases {
  readonly receiver: EffectReceiver;
  born: Effect[];
  reserved: number;
}

export interface VoteColumns {
  user: string;
  team: string;
  email: string | null;
  realName: string | null;
  vote: string;
  comment: string | null;
  /** The vote's StepUpProof as JSON; null when it had none. */
  stepUpJson: string | null;
  level: number;
  at: number;
  revision: number | null;
}

/** A revision of a request after the agent's (table revisions), in both schemas. */
export interface RevisionColumns {
  revision: number;
  requestJson: string;
  requestSha256: string;
  user: string;
  team: string;
  at: number;
  patchJson: string;
  comment: string | null;
}

export interface OutboxColumns {
  id: number;
  actionId: string | null;
  kind: string;
  dedupeKey: string;
  payloadJson: string;
  attempts: number;
  createdAt: number;
  leaseUntil: number | null;
}

export type NewOutboxRow = Omit<OutboxColumns, "id" | "attempts"> & { dueAt: number };

export interface NewEventRow {
  actionId: string | null;
  agentId: string | null;
  type: string;
  actor: string;
  at: number;
  dataJson: string;
}

export interface RecordColumns {
  seq: number;
  /** action_id, agent_id, region and verdict are null for an entry about no action (a passkey). */
  actionId: string | null;
  decisionId: string;
  jws: string;
  digest: string;
  kid: string;
  agentId: string | null;
  region: string | null;
  verdict: string | null;
  decidedAt: number;
  /** decision, or the receipt's kind. */
  kind: string;
  /** A receipt's decision id; null for a decision. */
  ref: string | null;
}

/** What a plan may change of an action's columns. */
export type ActionUpdate = Partial<
  Pick<ActionColumns, "level" | "quorum" | "deadlineAt" | "eligibleJson" | "revision">
>;

/** The columns that close an action with its verdict. */
/** A decision's columns known before it is signed (see StoreTx.deferRecord). */
export type DeferredRecordColumns = Omit<RecordColumns, "seq" | "decisionId" | "jws" | "digest" | "kid"> & {
  actionId: string;
};

export type Closed = Pick<ActionRow, "status" | "verdict" | "reasonCode" | "decidedAt" | "recordSeq">;

/** The statements one store runs inside one of its transactions. */
export interface StoreTx {
  /** Records are signed inside the transaction that inserts them. */
  readonly signer: RecordSigner | null;
  /** This transaction's effects leased as written; null when no receiver takes them. */
  readonly writeLeases: WriteLeases | null;
  /** Serialises one agent's admissions (PostgreSQL locks; SQLite has one writer already). */
  holdAgent(agentId: string): Step<void>;
  actionByRequest(agentId: string, requestId: string): Step<ActionRow | null>;
  /** Reads an action and its votes; `forUpdate` holds the row until commit. */
  loadAction(id: string, forUpdate: boolean): Step<ActionWithVotes | null>;
  /** How many actions of the agent are pending, counted up to `limit` only. */
  countPending(agentId: string, limit: number): Step<number>;
  insertAction(v: ReturnType<typeof actionValues>): Step<void>;
  updateAction(id: string, set: ActionUpdate): Step<void>;
  insertVote(actionId: string, v: VoteColumns): Step<void>;
  /** Deletes the action's approve votes (a new revision: they approved something else). */
  clearApprovals(actionId: string): Step<void>;
  insertRevision(actionId: string, r: RevisionColumns): Step<void>;
  /** Deletes spent jtis whose exp is at or before `exp`. */
  forgetJtis(exp: number): Step<void>;
  /** False when the (agent, jti) was already spent. */
  insertJti(agentId: string, jti: string, exp: number): Step<boolean>;
  insertJob(job: { readonly key: string; readonly id: string }, actionId: string): Step<void>;
  /** The action a queue job (by its key) was admitted as, if it was. */
  jobAction(jobKey: string): Step<string | null>;
  insertEvents(rows: readonly NewEventRow[]): Step<void>;
  /**
   * Inserts, skipping duplicate dedupe keys; returns the ids of the rows inserted leased, by
   * dedupe key (or none, when the store puts those effects in writeLeases.born itself).
   */
  insertOutbox(rows: readonly NewOutboxRow[]): Step<ReadonlyMap<string, number>>;
  /** The log's newest record, held until commit so that no other decider reads the same head. */
  logHead(): Step<{ seq: number; digest: string } | null>;
  insertRecord(r: RecordColumns): Step<void>;
  /**
   * Optional (SQLite, a group of several writes with a signing worker): take the next seq
   * now and have the decision signed on the second thread and inserted before the
   * transaction commits (src/records/chain-signer.ts). The record returned has its seq;
   * its jws and digest are filled in before the commit. Null: sign here and now.
   */
  deferRecord?(claims: UnchainedClaims, row: DeferredRecordColumns): StoredRecord | null;
  /** Closes a pending action; false when it was not pending. */
  closeAction(id: string, c: Closed): Step<boolean>;
  /** The action's decision record (never a receipt). */
  recordOf(actionId: string): Step<StoredRecord | null>;
  /**
   * The action, held until commit, with its decision record, read together (the record by
   * its primary key, the action's record_seq): what a receipt is judged on. Null when there
   * is no such action.
   */
  actionForReceipt(actionId: string): Step<{ action: ActionRow; record: StoredRecord | null } | null>;
  /** The action's receipts, in log order. */
  receiptsOf(actionId: string): Step<StoredReceipt[]>;

  insertPasskeyLink(l: PasskeyLinkColumns): Step<void>;
  passkeyLink(tokenHash: string): Step<PasskeyLinkColumns | null>;
  /** Sets used_at where the link is unused and unexpired; returns the row, or null. */
  spendPasskeyLink(tokenHash: string, now: number): Step<PasskeyLinkColumns | null>;
  insertPasskey(c: PasskeyColumns): Step<void>;
  passkey(credentialId: string): Step<PasskeyColumns | null>;
  passkeysOf(team: string, user: string): Step<PasskeyColumns[]>;
  /** False when no such credential of that user. */
  deletePasskey(team: string, user: string, credentialId: string): Step<boolean>;
  updatePasskeyCounter(credentialId: string, counter: number): Step<void>;
}

/** A passkey_links row, named as both schemas name it. */
export type PasskeyLinkColumns = {
  -readonly [K in keyof PasskeyLink]: PasskeyLink[K];
};

/** A passkey_credentials row, named as both schemas name it. */
export interface PasskeyColumns {
  credentialId: string;
  team: string;
  user: string;
  publicKeyCose: string;
  publicKeyJwk: string;
  counter: number;
  label: string;
  transportsJson: string;
  createdAt: number;
}

export function passkeyColumns(c: PasskeyCredential): PasskeyColumns {
  return {
    credentialId: c.credentialId,
    team: c.team,
    user: c.user,
    publicKeyCose: c.publicKeyCose,
    publicKeyJwk: JSON.stringify(c.publicKey),
    counter: c.counter,
    label: c.label,
    transportsJson: JSON.stringify(c.transports),
    createdAt: c.createdAt,
  };
}

export function toPasskey(c: PasskeyColumns): PasskeyCredential {
  return {
    credentialId: c.credentialId,
    team: c.team,
    user: c.user,
    publicKeyCose: c.publicKeyCose,
    publicKey: JSON.parse(c.publicKeyJwk) as PasskeyCredential["publicKey"],
    counter: Number(c.counter),
    label: c.label,
    transports: JSON.parse(c.transportsJson) as string[],
    createdAt: Number(c.createdAt),
  };
}

function toLink(l: PasskeyLinkColumns): PasskeyLink {
  return {
    ...l,
    purpose: l.purpose as PasskeyLink["purpose"],
    createdAt: Number(l.createdAt),
    expiresAt: Number(l.expiresAt),
    usedAt: l.usedAt === null ? null : Number(l.usedAt),
  };
}

/**
 * Store a credential and append its `passkey_registered` receipt as the log's next entry,
 * in the caller's transaction: an entry about no action (null action, agent, region,
 * verdict), chained by seq and prev like every other.
 */
export function* registerPasskey(
  tx: StoreTx,
  signer: ReceiptSigner | null,
  credential: PasskeyCredential,
  claims: UnchainedPasskeyClaims,
  now: number,
): Step<{ seq: number; jws: string }> {
  if (!signer) throw new StoreError("no receipt signing key loaded");
  if (yield* tx.passkey(credential.credentialId))
    throw new StoreError(`passkey ${credential.credentialId} is already registered`, {
      code: "passkey_exists",
    });
  yield* tx.insertPasskey(passkeyColumns(credential));
  const head = yield* tx.logHead();
  const seq = (head?.seq ?? 0) + 1;
  const prev = head?.digest ?? null;
  const { jws, kid } = signer({ ...claims, seq, prev });
  yield* tx.insertRecord({
    seq,
    actionId: null,
    decisionId: claims.jti,
    jws,
    digest: sha256B64url(jws),
    kid,
    agentId: null,
    region: null,
    verdict: null,
    decidedAt: Date.parse(claims.at),
    kind: claims.kind,
    ref: null,
  });
  yield* insertEvents(
    tx,
    null,
    null,
    [
      {
        type: "passkey_registered",
        actor: `slack:${credential.user}`,
        data: { seq, receipt_id: claims.jti, credential_id: credential.credentialId, team: credential.team },
      },
    ],
    now,
  );
  // Announced to its owner by DM, through the outbox: committed with the registration, so a
  // crash right after cannot lose the one message that tells a person of a key they did not add.
  yield* insertEffects(
    tx,
    null,
    [
      {
        kind: "dm",
        dedupeKey: `dm:passkey:${credential.credentialId}`,
        payload: { to: credential.user, why: "passkey_registered", label: credential.label },
      },
    ],
    now,
  );
  return { seq, jws };
}

/** The passkey methods of the Store, the same on every store over its transactions. */
function passkeyMethods(transact: <T>(step: (tx: StoreTx) => Step<T>) => Promise<T>) {
  return {
    savePasskeyLink: (link: PasskeyLink) => transact((tx) => tx.insertPasskeyLink({ ...link })),
    getPasskeyLink: (tokenHash: string) =>
      transact(function* (tx) {
        const l = yield* tx.passkeyLink(tokenHash);
        return l ? toLink(l) : null;
      }),
    redeemPasskeyLink: (tokenHash: string, now: number) =>
      transact(function* (tx) {
        const l = yield* tx.spendPasskeyLink(tokenHash, now);
        return l ? toLink(l) : null;
      }),
    passkeysOf: (team: string, user: string) =>
      transact(function* (tx) {
        return (yield* tx.passkeysOf(team, user)).map(toPasskey);
      }),
    getPasskey: (credentialId: string) =>
      transact(function* (tx) {
        const c = yield* tx.passkey(credentialId);
        return c ? toPasskey(c) : null;
      }),
    removePasskey: (team: string, user: string, credentialId: string, now: number) =>
      transact(function* (tx) {
        if (!(yield* tx.deletePasskey(team, user, credentialId))) return false;
        yield* insertEvents(
          tx,
          null,
          null,
          [{ type: "passkey_removed", actor: `slack:${user}`, data: { team, credential_id: credentialId } }],
          now,
        );
        return true;
      }),
    setPasskeyCounter: (credentialId: string, counter: number) =>
      transact((tx) => tx.updatePasskeyCounter(credentialId, counter)),
  };
}

/**
 * The Store methods that are the same on every store once it can run a step in one of its
 * write transactions (`transact`) and finish an effect (`finish`).
 */
export abstract class CoreStore {
  /** Runs `step` in one write transaction; settles once it has committed. */
  protected abstract transact<T>(step: (tx: StoreTx) => Step<T>): Promise<T>;
  /** Finishes an effect only if `lease` is still its lease (see Effect.lease). */
  protected abstract finish(id: number, lease: number, f: Finish): Promise<boolean>;
  private receiptSigner: ReceiptSigner | null = null;

  /** Receipts are signed inside the store's transaction, like records; the key is set once at start. */
  setReceiptSigner(signer: ReceiptSigner): void {
    this.receiptSigner = signer;
  }

  appendReceipt(actionId: string, plan: (s: ReceiptState) => ReceiptPlan | Refused): Promise<ReceiptResult> {
    return this.transact((tx) => appendReceipt(tx, this.receiptSigner, actionId, plan));
  }

  admit(input: AdmitInput): Promise<AdmitResult> {
    return this.transact((tx) => admit(tx, input));
  }

  private readonly passkeys = passkeyMethods((step) => this.transact(step));

  savePasskeyLink(link: PasskeyLink): Promise<void> {
    return this.passkeys.savePasskeyLink(link);
  }

  getPasskeyLink(tokenHash: string): Promise<PasskeyLink | null> {
    return this.passkeys.getPasskeyLink(tokenHash);
  }

  redeemPasskeyLink(tokenHash: string, now: number): Promise<PasskeyLink | null> {
    return this.passkeys.redeemPasskeyLink(tokenHash, now);
  }

  passkeysOf(team: string, user: string): Promise<PasskeyCredential[]> {
    return this.passkeys.passkeysOf(team, user);
  }

  getPasskey(credentialId: string): Promise<PasskeyCredential | null> {
    return this.passkeys.getPasskey(credentialId);
  }

  registerPasskey(
    credential: PasskeyCredential,
    claims: UnchainedPasskeyClaims,
    now: number,
  ): Promise<{ seq: number; jws: string }> {
    return this.transact((tx) => registerPasskey(tx, this.receiptSigner, credential, claims, now));
  }

  removePasskey(team: string, user: string, credentialId: string, now: number): Promise<boolean> {
    return this.passkeys.removePasskey(team, user, credentialId, now);
  }

  setPasskeyCounter(credentialId: string, counter: number): Promise<void> {
    return this.passkeys.setPasskeyCounter(credentialId, counter);
  }

  mutate(actionId: string, now: number, plan: (a: ActionWithVotes) => Plan | Refused): Promise<MutateResult> {
    return this.transact((tx) => mutate(tx, actionId, now, plan));
  }

  spendProof(agentId: string, proof: { jti: string; exp: number }, now: number): Promise<void> {
    return this.transact((tx) => spendJti(tx, agentId, proof, now));
  }

  appendEvents(
    actionId: string | null,
    agentId: string | null,
    events: readonly NewEvent[],
    now: number,
  ): Promise<void> {
    return this.transact((tx) => insertEvents(tx, actionId, agentId, events, now));
  }

  addEffects(actionId: string | null, effects: readonly NewEffect[], now: number): Promise<void> {
    return this.transact((tx) => insertEffects(tx, actionId, effects, now));
  }

  completeEffect(id: number, lease: number, now: number): Promise<boolean> {
    return this.finish(id, lease, finishing.complete(now));
  }

  retryEffect(id: number, lease: number, dueAt: number, error: string): Promise<boolean> {
    return this.finish(id, lease, finishing.retry(dueAt, error));
  }

  deferEffect(id: number, lease: number, dueAt: number): Promise<boolean> {
    return this.finish(id, lease, finishing.defer(dueAt));
  }

  killEffect(id: number, lease: number, error: string, now: number): Promise<boolean> {
    return this.finish(id, lease, finishing.kill(error, now));
  }
}

/** Accept a new request or recognise a repeat (Store.admit), in the caller's transaction. */
export function* admit(tx: StoreTx, input: AdmitInput): Step<AdmitResult> {
  const a = input.action;
  yield* tx.holdAgent(a.agentId);
  const existing = yield* tx.actionByRequest(a.agentId, a.requestId);
  if (existing) {
    if (existing.requestSha256 !== a.requestSha256) {
      throw new RejectionError(
        "request_id_conflict",
        `request_id ${a.requestId} was already used by this agent for a different request (action ${existing.id})`,
        [{ path: "request_id", message: "already used for different content" }],
      );
    }
    // A repeat: spend the fresh proof too, so it cannot be replayed elsewhere. Unless it is
    // the very job that admitted the action, taken up again (a worker stalled past its lock
    // while still running, and another took the job): its proof was spent by that first
    // admission, and spending it again would refuse the agent's own request.
    const sameJob = input.job !== null && (yield* tx.jobAction(input.job.key)) === existing.id;
    if (input.proof && !sameJob) yield* spendJti(tx, a.agentId, input.proof, input.now);
    if (input.job) yield* tx.insertJob(input.job, existing.id);
    yield* insertEvents(
      tx,
      existing.id,
      a.agentId,
      [{ type: "repeat", actor: `agent:${a.agentId}` }],
      input.now,
    );
    return { kind: "repeat", action: existing, record: yield* tx.recordOf(existing.id) };
  }
  if (input.proof) yield* spendJti(tx, a.agentId, input.proof, input.now);
  // A request decided at once never waits, so the limit on waiting ones does not apply
  // and is not counted (a statement less for every verdict of a burst of auto-approvals).
  if (!input.decision) {
    // Counted up to the limit only: the answer is the same, and the cost no longer grows
    // with the agent's backlog (100k pending made every admit scan 100k index entries).
    const pending = yield* tx.countPending(a.agentId, input.maxPending);
    if (pending >= input.maxPending) {
      throw new RejectionError(
        "too_many_pending",
        `agent ${a.agentId} already has ${pending} pending requests (max_pending ${input.maxPending})`,
      );
    }
  }
  const v = actionValues(a);
  yield* tx.insertAction(v);
  if (input.job) yield* tx.insertJob(input.job, a.id);
  yield* insertEvents(tx, a.id, a.agentId, input.events, input.now);
  yield* insertEffects(tx, a.id, input.effects(a), input.now);
  // The row is what was just inserted (and closed, when decided at once): no need to read
  // it back, nor to parse the request JSON just written from the request at hand.
  const action: ActionRow = {
    ...toRow({
      ...v,
      requestJson: "null",
      verdict: null,
      reasonCode: null,
      decidedAt: null,
      recordSeq: null,
      revision: 1,
    }),
    request: a.request,
  };
  if (!input.decision) return { kind: "created", action, record: null };
  const { record, closed } = yield* decide(tx, a, input.decision, input.now);
  return { kind: "created", action: { ...action, ...closed }, record };
}

/** Read the action, let `plan` decide, apply it (Store.mutate), in the caller's transaction. */
export function* mutate(
  tx: StoreTx,
  actionId: string,
  now: number,
  plan: (a: ActionWithVotes) => Plan | Refused,
): Step<MutateResult> {
  const action = yield* tx.loadAction(actionId, true);
  if (!action) return { kind: "not_found" };
  const p = plan(action);
  if ("refused" in p) {
    yield* insertEvents(tx, actionId, action.agentId, p.events, now);
    const { code, reason, pointer } = p.refused;
    return { kind: "refused", code, reason, action, ...(pointer !== undefined ? { pointer } : {}) };
  }
  if (p.set) {
    const set: ActionUpdate = {};
    if (p.set.level !== undefined) set.level = p.set.level;
    if (p.set.quorum !== undefined) set.quorum = p.set.quorum;
    if (p.set.deadlineAt !== undefined) set.deadlineAt = p.set.deadlineAt;
    if (p.set.eligible !== undefined)
      set.eligibleJson = p.set.eligible === null ? null : JSON.stringify(p.set.eligible);
    if (Object.keys(set).length) yield* tx.updateAction(actionId, set);
  }
  if (p.revise) {
    // The plan was made from this transaction's read, so the revision it names is the next one;
    // the primary key (action, revision) refuses a second writer of the same revision anyway.
    if (p.revise.revision !== action.revision + 1)
      throw new StoreError(
        `action ${actionId} is at revision ${action.revision}, not ${p.revise.revision - 1}`,
      );
    yield* tx.clearApprovals(actionId);
    yield* tx.insertRevision(actionId, revisionColumns(p.revise));
    yield* tx.updateAction(actionId, { revision: p.revise.revision });
  }
  const vote = p.vote ? voteColumns(p.vote) : null;
  if (vote) yield* tx.insertVote(actionId, vote);
  yield* insertEvents(tx, actionId, action.agentId, p.events, now);
  yield* insertEffects(tx, actionId, p.effects, now);
  let record: StoredRecord | null = null;
  let closed: Closed | null = null;
  if (p.decision) {
    if (action.status !== "pending") throw new StoreError(`action ${actionId} is already decided`);
    ({ record, closed } = yield* decide(tx, action, p.decision, now));
  }
  // A revision cleared the earlier approvals (they approved something else).
  const kept = p.revise ? action.votes.filter((v) => v.vote !== "approve") : action.votes;
  // The action as it now stands, from what was read and what was written (the row is held
  // until commit), rather than read back: a storm of 10,000 expiries read and parsed every
  // request a second time for this.
  const after: ActionWithVotes = {
    ...action,
    ...(p.set?.level !== undefined ? { level: p.set.level } : {}),
    ...(p.set?.quorum !== undefined ? { quorum: p.set.quorum } : {}),
    ...(p.set?.deadlineAt !== undefined ? { deadlineAt: p.set.deadlineAt } : {}),
    ...(p.set?.eligible !== undefined
      ? { eligible: p.set.eligible === null ? null : [...p.set.eligible] }
      : {}),
    ...(closed ?? {}),
    ...(p.revise ? { revision: p.revise.revision, revisions: [...action.revisions, p.revise] } : {}),
    votes: vote ? [...kept, toVote(vote)].sort(byVoteOrder) : kept,
  };
  return { kind: "applied", action: after, record };
}

/** The order loadAction reads votes in: by time, then user (SQL `ORDER BY at, user`). */
function byVoteOrder(a: { at: string; user: string }, b: { at: string; user: string }): number {
  const d = Date.parse(a.at) - Date.parse(b.at);
  if (d !== 0) return d;
  return a.user < b.user ? -1 : a.user > b.user ? 1 : 0;
}

/**
 * Allocate seq and prev, sign, insert the record and close the action, in the caller's
 * transaction. The head is read after every write before it in that transaction (and, on
 * PostgreSQL, under the log's lock), which is what keeps the log one chain.
 */
export function* decide(
  tx: StoreTx,
  action: Pick<NewAction, "id" | "agentId" | "region">,
  d: { readonly outcome: DecisionOutcome; readonly claims: UnchainedClaims },
  now: number,
): Step<{ record: StoredRecord; closed: Closed }> {
  if (!tx.signer) throw new StoreError("no signing key loaded");
  const decidedAt = Date.parse(d.claims.decided_at);
  const columns: DeferredRecordColumns = {
    actionId: action.id,
    agentId: action.agentId,
    region: action.region,
    verdict: d.outcome.verdict,
    decidedAt,
    kind: "decision",
    ref: null,
  };
  let record = tx.deferRecord?.(d.claims, columns) ?? null;
  if (!record) {
    const head = yield* tx.logHead();
    const seq = (head?.seq ?? 0) + 1;
    const prev = head?.digest ?? null;
    const { jws, kid } = tx.signer({ ...d.claims, seq, prev });
    record = { seq, actionId: action.id, decisionId: d.claims.jti, jws, digest: sha256B64url(jws), kid };
    yield* tx.insertRecord({ ...record, ...columns });
  }
  const seq = record.seq;
  const closed: Closed = {
    status: "decided",
    verdict: d.outcome.verdict,
    reasonCode: d.outcome.reasonCode,
    decidedAt,
    recordSeq: seq,
  };
  if (!(yield* tx.closeAction(action.id, closed))) throw decidedTwice(action.id);
  yield* insertEvents(
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
  return { record, closed };
}

/**
 * Append a receipt (Store.appendReceipt), in the caller's transaction. The action is read
 * held (PostgreSQL: FOR UPDATE; SQLite: the one writer), so the receipts the plan sees are
 * all there are until this commits: of a redeem and a revoke racing, the first to commit
 * wins and the second is refused by its plan. The unique (action_id, kind) of the log
 * refuses a second of a kind even if a plan were wrong.
 */
export function* appendReceipt(
  tx: StoreTx,
  signer: ReceiptSigner | null,
  actionId: string,
  plan: (s: ReceiptState) => ReceiptPlan | Refused,
): Step<ReceiptResult> {
  const held = yield* tx.actionForReceipt(actionId);
  if (!held) return { kind: "not_found" };
  const { action, record } = held;
  const receipts = yield* tx.receiptsOf(actionId);
  // Judged after the lock, so a grant's expiry is checked against this commit, not the request's arrival.
  const now = Date.now();
  const state: ReceiptState = { action, record, receipts, now };
  const p = plan(state);
  if ("refused" in p) {
    yield* insertEvents(tx, actionId, action.agentId, p.events, now);
    return { kind: "refused", code: p.refused.code, reason: p.refused.reason, state };
  }
  if (!signer) throw new StoreError("no receipt signing key loaded");
  if (!record) throw new StoreError(`action ${actionId} has no decision to take a receipt`);
  const head = yield* tx.logHead();
  const seq = (head?.seq ?? 0) + 1;
  const prev = head?.digest ?? null;
  const { jws, kid } = signer({ ...p.claims, seq, prev } as ReceiptClaims);
  const at = Date.parse(p.claims.at);
  const receipt: StoredReceipt = { seq, kind: p.claims.kind, actionId, receiptId: p.claims.jti, jws, at };
  yield* tx.insertRecord({
    seq,
    actionId,
    decisionId: p.claims.jti,
    jws,
    digest: sha256B64url(jws),
    kid,
    agentId: action.agentId,
    region: action.region,
    verdict: action.verdict ?? "approved",
    decidedAt: at,
    kind: p.claims.kind,
    ref: record.decisionId,
  });
  yield* insertEvents(
    tx,
    actionId,
    action.agentId,
    [
      ...p.events,
      {
        type: "receipt_issued",
        actor: "system",
        data: { seq, receipt_id: p.claims.jti, kind: p.claims.kind },
      },
    ],
    now,
  );
  yield* insertEffects(tx, actionId, p.effects(receipt), now);
  return { kind: "appended", receipt, state };
}

/** Spend a proof's jti; a second spend throws RejectionError replayed_proof. */
export function* spendJti(
  tx: StoreTx,
  agentId: string,
  proof: { readonly jti: string; readonly exp: number },
  now: number,
): Step<void> {
  // Forget spent proofs once they could no longer be accepted anyway (exp + skew).
  yield* tx.forgetJtis(Math.floor(now / 1000) - 60);
  if (!(yield* tx.insertJti(agentId, proof.jti, proof.exp))) throw replayedProof(agentId, proof.jti);
}

/**
 * The error of a second spend of a jti. Exported for a store that learns the insert's
 * answer later in the transaction (PostgreSQL sends it with the next statement).
 */
export function replayedProof(agentId: string, jti: string): RejectionError {
  return new RejectionError("replayed_proof", `proof jti ${jti} was already used by agent ${agentId}`, [
    { path: "proof.jti", message: "already used" },
  ]);
}

/** The error of closing an action that was not pending (see replayedProof: the same use). */
export function decidedTwice(actionId: string): StoreError {
  return new StoreError(`action ${actionId} was decided twice`);
}

export function* insertEvents(
  tx: StoreTx,
  actionId: string | null,
  agentId: string | null,
  events: readonly NewEvent[],
  now: number,
): Step<void> {
  if (!events.length) return;
  yield* tx.insertEvents(
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

/**
 * Queue effects. Due at once, with an receiver that grants a slot: written leased (its
 * first attempt counted), and handed to the receiver once the transaction has committed.
 * A duplicate (its key already in the outbox) is skipped, and so is not born.
 */
export function* insertEffects(
  tx: StoreTx,
  actionId: string | null,
  effects: readonly NewEffect[],
  now: number,
): Step<void> {
  if (!effects.length) return;
  const writeLeases = tx.writeLeases;
  const lease = writeLeases ? now + writeLeases.receiver.leaseMs : null;
  const rows = effects.map((e): NewOutboxRow => {
    const dueAt = e.dueAt ?? now + (writeLeases?.receiver.holdBack?.(e.kind) ?? 0);
    const handOver = writeLeases !== null && dueAt <= now && writeLeases.receiver.reserve();
    if (handOver) writeLeases.reserved++;
    return {
      actionId,
      kind: e.kind,
      dedupeKey: e.dedupeKey,
      payloadJson: JSON.stringify(e.payload ?? {}),
      dueAt,
      createdAt: now,
      leaseUntil: handOver ? lease : null,
    };
  });
  const leased = yield* tx.insertOutbox(rows);
  if (!writeLeases || lease === null || !leased.size) return;
  for (const e of effects) {
    const id = leased.get(e.dedupeKey);
    if (id === undefined) continue;
    writeLeases.born.push({
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

export function revisionColumns(r: Revision): RevisionColumns {
  return {
    revision: r.revision,
    requestJson: JSON.stringify(r.request),
    requestSha256: r.sha256,
    user: r.edit.user,
    team: r.edit.team,
    at: Date.parse(r.edit.at),
    patchJson: JSON.stringify(r.edit.patch),
    comment: r.comment ?? null,
  };
}

export function toRevision(r: RevisionColumns): Revision {
  return {
    revision: r.revision,
    request: JSON.parse(r.requestJson),
    sha256: r.requestSha256,
    edit: { user: r.user, team: r.team, at: new Date(r.at).toISOString(), patch: JSON.parse(r.patchJson) },
    ...(r.comment ? { comment: r.comment } : {}),
  };
}

export function voteColumns(v: Vote & { readonly level: number }): VoteColumns {
  return {
    user: v.user,
    team: v.team,
    email: v.email ?? null,
    realName: v.real_name ?? null,
    vote: v.vote,
    comment: v.comment ?? null,
    stepUpJson: v.step_up ? JSON.stringify(v.step_up) : null,
    level: v.level,
    at: Date.parse(v.at),
    revision: v.revision ?? null,
  };
}

export function toVote(v: VoteColumns): Vote & { readonly level: number } {
  return {
    user: v.user,
    team: v.team,
    ...(v.email ? { email: v.email } : {}),
    ...(v.realName ? { real_name: v.realName } : {}),
    vote: v.vote as Vote["vote"],
    at: new Date(v.at).toISOString(),
    ...(v.comment ? { comment: v.comment } : {}),
    ...(v.revision !== null ? { revision: v.revision } : {}),
    ...(v.stepUpJson ? { step_up: JSON.parse(v.stepUpJson) as StepUpProof } : {}),
    level: v.level,
  };
}

export function withVotes(
  row: ActionColumns,
  votes: readonly VoteColumns[],
  revisions: readonly RevisionColumns[] = [],
): ActionWithVotes {
  return {
    ...toRow(row),
    votes: votes.map(toVote),
    revisions: [...revisions].sort((a, b) => a.revision - b.revision).map(toRevision),
  };
}

/** A claimed effect; `leaseUntil` is set by the claim. */
export function toEffect(r: OutboxColumns): Effect {
  return {
    id: r.id,
    actionId: r.actionId,
    kind: r.kind as EffectKind,
    dedupeKey: r.dedupeKey,
    payload: JSON.parse(r.payloadJson) as Record<string, unknown>,
    attempts: r.attempts,
    createdAt: r.createdAt,
    lease: r.leaseUntil ?? 0,
  };
}

/** Claimed effects in the order they were written. */
export function toEffects(rows: readonly OutboxColumns[]): Effect[] {
  return [...rows].sort((a, b) => a.id - b.id).map(toEffect);
}

/**
 * What finishing a leased effect changes in its outbox row (the lease is always cleared).
 * `takeBack` returns the attempt its claim counted (never below zero).
 */
export interface Finish {
  readonly state?: "done" | "dead";
  readonly doneAt?: number;
  readonly dueAt?: number;
  readonly lastError?: string;
  readonly takeBack?: true;
}

/** An error as the outbox keeps it: long enough to read, short enough to keep every row small. */
function lastError(error: string): string {
  return error.slice(0, 2000);
}

export const finishing = {
  complete: (now: number): Finish => ({ state: "done", doneAt: now }),
  retry: (dueAt: number, error: string): Finish => ({ dueAt, lastError: lastError(error) }),
  defer: (dueAt: number): Finish => ({ dueAt, takeBack: true }),
  kill: (error: string, now: number): Finish => ({ state: "dead", doneAt: now, lastError: lastError(error) }),
};

/** The columns of a webhook attempt, named as WebhookAttempt names them in both schemas. */
export const WEBHOOK_ATTEMPT_FIELDS = [
  "actionId",
  "webhookId",
  "attempt",
  "at",
  "url",
  "status",
  "durationMs",
  "error",
  "address",
] as const satisfies readonly (keyof WebhookAttempt)[];

/** A selection of a table's columns by name (drizzle's `select({...})` argument). */
export function columnsOf<T, K extends keyof T>(table: T, names: readonly K[]): Pick<T, K> {
  return Object.fromEntries(names.map((n) => [n, table[n]])) as Pick<T, K>;
}

export type AgentStats = Record<"total" | "pending" | Verdict, number>;

/** Folds (verdict or 'pending', count) rows into an agent's stats. */
export function agentStats(rows: readonly { k: string; n: number }[]): AgentStats {
  const out: AgentStats = { total: 0, pending: 0, approved: 0, denied: 0, expired: 0, cancelled: 0 };
  for (const r of rows) {
    if (r.k in out) out[r.k as keyof AgentStats] = r.n;
    out.total += r.n;
  }
  return out;
}

export interface EventColumns extends NewEventRow {
  id: number;
}

export function toEvent(e: EventColumns): StoredEvent {
  return {
    id: e.id,
    actionId: e.actionId,
    agentId: e.agentId,
    type: e.type,
    actor: e.actor,
    at: e.at,
    data: JSON.parse(e.dataJson) as Record<string, unknown>,
  };
}
