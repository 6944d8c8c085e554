/**
 * The Store contract, run against both adapters: SQLite (a temporary file) and PostgreSQL
 * (a schema of its own per test, dropped afterwards). The use-cases rely on exactly these
 * behaviours, so both stores must show them, under concurrency too.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { getTableName } from "drizzle-orm";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { drizzle as pgDrizzle } from "drizzle-orm/node-postgres";
import { migrate as pgMigrate } from "drizzle-orm/node-postgres/migrator";
import { type PgTable, getTableConfig as pgTable } from "drizzle-orm/pg-core";
import { type SQLiteTable, getTableConfig as sqliteTable } from "drizzle-orm/sqlite-core";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as pgSchema from "../../db/pg/schema.js";
import * as sqliteSchema from "../../db/schema.js";
import { type Closed, decidedTwice, type Step, type StoreTx } from "../../src/adapters/db/core.js";
import { PG_MIGRATIONS_FOLDER, PostgresStore } from "../../src/adapters/db/postgres.js";
import { GROUP_MAX, MIGRATIONS_FOLDER, openSqlite, SqliteStore } from "../../src/adapters/db/sqlite.js";
import type {
  ActionRow,
  ActionWithVotes,
  AdmitInput,
  Effect,
  NewAction,
  NewEffect,
  Plan,
  RecordSigner,
  Refused,
  Store,
  StoredRecord,
  UnchainedClaims,
} from "../../src/app/ports.js";
import { requestDigest, sha256B64url } from "../../src/domain/canonical.js";
import type { DecisionOutcome } from "../../src/domain/decision.js";
import { type ActionRequest, RejectionError, type Verdict, type Vote } from "../../src/domain/types.js";
import { generateSigningKeyPem, loadSigningKey, signRecord, verifyJws } from "../../src/records/signing.js";

const PG_URL = process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const KEY = loadSigningKey(generateSigningKeyPem());
const SIGNER: RecordSigner = (claims) => ({ jws: signRecord(KEY, claims), kid: KEY.kid });
const T0 = Date.parse("2030-01-07T09:00:00Z");

type OpenedStore = Store & { setSigner(s: RecordSigner): void };

interface Backend {
  readonly name: string;
  /** A fresh, empty, migrated store; `second()` opens another handle on the same data (another process). */
  create(): Promise<{ store: OpenedStore; second(): Promise<OpenedStore>; drop(): Promise<void> }>;
}

const sqlite: Backend = {
  name: "sqlite",
  async create() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-store-"));
    const file = path.join(dir, "store.db");
    const opened: OpenedStore[] = [];
    const open = () => {
      const s = new SqliteStore(file);
      opened.push(s);
      return s;
    };
    return {
      store: open(),
      second: async () => open(),
      async drop() {
        for (const s of opened) await s.close();
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

const postgres: Backend = {
  name: "postgres",
  async create() {
    const schema = `test_${randomUUID().replaceAll("-", "")}`;
    const opened: OpenedStore[] = [];
    const open = async () => {
      const s = await PostgresStore.open(PG_URL, { schema, poolSize: 10 });
      opened.push(s);
      return s;
    };
    return {
      store: await open(),
      second: open,
      async drop() {
        for (const s of opened) await s.close();
        const admin = new pg.Client({ connectionString: PG_URL });
        await admin.connect();
        try {
          await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        } finally {
          await admin.end();
        }
      },
    };
  },
};

// ---------------------------------------------------------------------------
// Builders: plain data shaped as the use-cases shape it.

function request(over: Partial<ActionRequest> = {}): ActionRequest {
  return {
    request_id: `req-${randomUUID()}`,
    agent_id: "billing-agent",
    action: { type: "payments.refund", summary: "Refund order 1234 (EUR 120.00)" },
    risk_class: "high",
    region: "eu",
    purpose: "Customer was charged twice",
    ...over,
  };
}

function newAction(over: Partial<NewAction> & { req?: Partial<ActionRequest> } = {}): NewAction {
  const { req, ...rest } = over;
  const r = request({ ...(rest.agentId ? { agent_id: rest.agentId } : {}), ...req });
  return {
    id: `act_${randomUUID()}`,
    agentId: r.agent_id,
    requestId: r.request_id,
    request: r,
    requestSha256: requestDigest(r),
    actionType: r.action.type,
    riskClass: r.risk_class,
    region: r.region,
    routeName: "eu-high-payments",
    level: 0,
    quorum: 1,
    eligible: null,
    deadlineAt: T0 + 30 * 60_000,
    capAt: null,
    policySha256: "policy-sha",
    requestedAt: T0,
    ...rest,
  };
}

function claims(
  a: Pick<ActionRow, "id" | "agentId" | "requestId" | "request" | "requestSha256" | "region">,
  verdict: Verdict,
  votes: readonly Vote[] = [],
): UnchainedClaims {
  return {
    ver: 1,
    iss: "https://countersign.test",
    sub: a.agentId,
    jti: `dec_${randomUUID()}`,
    iat: Math.floor(T0 / 1000),
    action_id: a.id,
    request_id: a.requestId,
    action_type: a.request.action.type,
    summary: a.request.action.summary,
    action_sha256: a.requestSha256,
    risk_class: "high",
    region: a.region,
    purpose: a.request.purpose,
    systems: [],
    on_behalf_of: null,
    verdict,
    reason_code: verdict === "approved" ? "approvers" : "policy",
    reason_text: `${verdict} in a test`,
    route: { name: "eu-high-payments", quorum: 1, escalation_level: 0 },
    eligible: [],
    votes: [...votes],
    requested_at: new Date(T0).toISOString(),
    decided_at: new Date(T0 + 60_000).toISOString(),
    policy_sha256: "policy-sha",
  };
}

function outcome(verdict: Verdict): DecisionOutcome {
  return {
    verdict,
    reasonCode: verdict === "approved" ? "approvers" : "policy",
    reasonText: `${verdict} in a test`,
  };
}

let jtiCounter = 0;
function admitInput(action: NewAction, over: Partial<AdmitInput> = {}): AdmitInput {
  jtiCounter += 1;
  return {
    action,
    proof: { jti: `jti-${jtiCounter}-${randomUUID()}`, exp: Math.floor(T0 / 1000) + 300 },
    job: null,
    maxPending: 100,
    events: [{ type: "received", actor: `agent:${action.agentId}`, data: { via: "test" } }],
    effects: (a) => [{ kind: "start_level", dedupeKey: `level:${a.id}:0`, payload: { level: 0 } }],
    now: T0,
    ...over,
  };
}

/** A plan that decides the action if it is still pending, as the domain core does. */
function decideIfPending(verdict: Verdict): (a: ActionWithVotes) => Plan | Refused {
  return (a) =>
    a.status !== "pending"
      ? { refused: { code: "already_decided", reason: "already decided" }, events: [] }
      : {
          events: [{ type: "decided", actor: "system", data: { verdict } }],
          effects: [{ kind: "release", dedupeKey: `release:${a.id}` }],
          decision: { outcome: outcome(verdict), claims: claims(a, verdict) },
        };
}

function vote(user: string, v: "approve" | "deny" = "approve", at = T0 + 1000): Vote & { level: number } {
  return { user, team: "T0TEST", vote: v, at: new Date(at).toISOString(), level: 0 };
}

async function rejection(p: Promise<unknown>): Promise<RejectionError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RejectionError) return e;
    throw e;
  }
  throw new Error("expected a RejectionError, but the call succeeded");
}

/** The whole log, from the records of these actions: gapless from 1, each prev the digest before, each signed by KEY. */
async function expectOneChain(store: Store, actionIds: readonly string[]): Promise<StoredRecord[]> {
  const records = (await Promise.all(actionIds.map((id) => store.getRecord(id))))
    .filter((r): r is StoredRecord => r !== null)
    .sort((a, b) => a.seq - b.seq);
  expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
  let prev: string | null = null;
  for (const r of records) {
    const { payload } = verifyJws(r.jws, [KEY.publicJwk], "decision+jwt");
    expect(payload["seq"]).toBe(r.seq);
    expect(payload["prev"]).toBe(prev);
    expect(payload["action_id"]).toBe(r.actionId);
    expect(r.digest).toBe(sha256B64url(r.jws));
    expect(r.kid).toBe(KEY.kid);
    prev = r.digest;
  }
  return records;
}

// ---------------------------------------------------------------------------

describe.each([sqlite, postgres])("Store contract: $name", (backend) => {
  let store: OpenedStore;
  let second: () => Promise<OpenedStore>;
  let drop: () => Promise<void>;

  beforeEach(async () => {
    const b = await backend.create();
    store = b.store;
    second = b.second;
    drop = b.drop;
    store.setSigner(SIGNER);
  });

  afterEach(async () => {
    await drop();
  });

  describe("admit", () => {
    it("creates a pending action with its events, effects and job", async () => {
      const a = newAction();
      const r = await store.admit(admitInput(a, { job: { key: "q|1|100", id: "1" } }));
      expect(r.kind).toBe("created");
      expect(r.record).toBeNull();
      expect(r.action).toMatchObject({ id: a.id, status: "pending", verdict: null, recordSeq: null });
      expect(r.action.request).toEqual(a.request);
      expect(await store.getActionByRequest(a.agentId, a.requestId)).toEqual(r.action);
      expect((await store.listEvents(a.id)).map((e) => e.type)).toEqual(["received"]);
      expect(await store.findJob("q|1|100")).toEqual({ actionId: a.id });
      const effects = await store.claimEffects(T0, 10, 1000);
      expect(effects.map((e) => e.dedupeKey)).toEqual([`level:${a.id}:0`]);
    });

    it("recognises a repeat of the same request, keeps the first action and spends the repeat's proof", async () => {
      const a = newAction();
      await store.admit(admitInput(a));
      const again = admitInput({ ...a, id: `act_${randomUUID()}` }, { job: { key: "q|2|200", id: "2" } });
      const r = await store.admit(again);
      expect(r.kind).toBe("repeat");
      expect(r.action.id).toBe(a.id);
      expect(await store.findJob("q|2|200")).toEqual({ actionId: a.id });
      expect((await store.listEvents(a.id)).map((e) => e.type)).toEqual(["received", "repeat"]);
      const e = await rejection(store.spendProof(a.agentId, again.proof!, T0));
      expect(e.code).toBe("replayed_proof");
    });

    it("takes up the same job again as a repeat without refusing its already spent proof", async () => {
      // A worker stalled past its queue lock while still running; another took the job up.
      const a = newAction();
      const job = { key: "q|3|300", id: "3" };
      const first = admitInput(a, { job });
      await store.admit(first);
      const r = await store.admit({ ...first, action: { ...a, id: `act_${randomUUID()}` } });
      expect(r.kind).toBe("repeat");
      expect(r.action.id).toBe(a.id);
      // The same proof under another job is still a replay.
      const other = admitInput({ ...a, id: `act_${randomUUID()}` }, { job: { key: "q|4|400", id: "4" } });
      const e = await rejection(store.admit({ ...other, proof: first.proof }));
      expect(e.code).toBe("replayed_proof");
    });

    it("refuses a request_id reused for different content, and spends nothing", async () => {
      const a = newAction();
      await store.admit(admitInput(a));
      const other = newAction({ requestId: a.requestId, req: { request_id: a.requestId, purpose: "else" } });
      const input = admitInput(other);
      const e = await rejection(store.admit(input));
      expect(e.code).toBe("request_id_conflict");
      expect(e.message).toBe(
        `request_id ${a.requestId} was already used by this agent for a different request (action ${a.id})`,
      );
      expect(e.errors).toEqual([{ path: "request_id", message: "already used for different content" }]);
      // Rolled back: the proof of the refused call is still unspent.
      await store.spendProof(other.agentId, input.proof!, T0);
    });

    it("refuses a replayed proof and creates nothing", async () => {
      const first = admitInput(newAction());
      await store.admit(first);
      const b = newAction();
      const e = await rejection(store.admit(admitInput(b, { proof: first.proof })));
      expect(e.code).toBe("replayed_proof");
      expect(e.message).toBe(`proof jti ${first.proof!.jti} was already used by agent ${b.agentId}`);
      expect(await store.getActionByRequest(b.agentId, b.requestId)).toBeNull();
    });

    it("refuses past max_pending, but still admits a request the policy decides at once", async () => {
      for (let i = 0; i < 2; i++) await store.admit(admitInput(newAction(), { maxPending: 2 }));
      const third = newAction();
      const e = await rejection(store.admit(admitInput(third, { maxPending: 2 })));
      expect(e.code).toBe("too_many_pending");
      expect(e.message).toBe("agent billing-agent already has 2 pending requests (max_pending 2)");
      expect(await store.getActionByRequest(third.agentId, third.requestId)).toBeNull();
      const auto = newAction();
      const r = await store.admit(
        admitInput(auto, {
          maxPending: 2,
          decision: { outcome: outcome("approved"), claims: claims(auto, "approved") },
        }),
      );
      expect(r.kind).toBe("created");
      expect(r.action.status).toBe("decided");
    });

    it("issues the record in the same transaction when the policy decides at once", async () => {
      const a = newAction();
      const r = await store.admit(
        admitInput(a, { decision: { outcome: outcome("denied"), claims: claims(a, "denied") } }),
      );
      expect(r.record).toMatchObject({ seq: 1, actionId: a.id });
      expect(r.action).toMatchObject({ status: "decided", verdict: "denied", recordSeq: 1 });
      expect((await store.listEvents(a.id)).map((e) => e.type)).toEqual(["received", "record_issued"]);
      // A repeat answers with the same record.
      const again = await store.admit(admitInput(a));
      expect(again).toMatchObject({ kind: "repeat", record: r.record });
      await expectOneChain(store, [a.id]);
    });

    it("admits one action for the same request sent many times at once; the others are repeats", async () => {
      const a = newAction();
      const results = await Promise.all(
        Array.from({ length: 25 }, () => store.admit(admitInput({ ...a, id: `act_${randomUUID()}` }))),
      );
      expect(results.filter((r) => r.kind === "created")).toHaveLength(1);
      expect(new Set(results.map((r) => r.action.id)).size).toBe(1);
    });

    it("holds max_pending exactly when one agent's requests arrive at once", async () => {
      const settled = await Promise.allSettled(
        Array.from({ length: 25 }, () => store.admit(admitInput(newAction(), { maxPending: 5 }))),
      );
      const created = settled.filter((s) => s.status === "fulfilled");
      const refused = settled.filter(
        (s) => s.status === "rejected" && (s.reason as RejectionError).code === "too_many_pending",
      );
      expect(created).toHaveLength(5);
      expect(refused).toHaveLength(20);
    });
  });

  describe("mutate", () => {
    it("applies a plan: columns, vote, events and effects together", async () => {
      const a = newAction();
      await store.admit(admitInput(a));
      const r = await store.mutate(a.id, T0 + 5, (cur) => {
        expect(cur.votes).toEqual([]);
        return {
          set: { eligible: ["U0ALICE", "U0BOB"], quorum: 2, level: 1, deadlineAt: T0 + 99 },
          vote: { ...vote("U0ALICE"), email: "alice@example.com", comment: "fine" },
          events: [{ type: "vote_cast", actor: "slack:U0ALICE", data: { vote: "approve" } }],
          effects: [{ kind: "thread_note", dedupeKey: `note:${a.id}:vote:U0ALICE` }],
        };
      });
      expect(r.kind).toBe("applied");
      if (r.kind !== "applied") return;
      expect(r.record).toBeNull();
      expect(r.action).toMatchObject({
        eligible: ["U0ALICE", "U0BOB"],
        quorum: 2,
        level: 1,
        deadlineAt: T0 + 99,
      });
      expect(r.action.votes).toEqual([
        { ...vote("U0ALICE"), email: "alice@example.com", comment: "fine", level: 0 },
      ]);
      expect(await store.getAction(a.id)).toEqual(r.action);
      const events = await store.listEvents(a.id);
      expect(events.at(-1)).toMatchObject({
        type: "vote_cast",
        actor: "slack:U0ALICE",
        at: T0 + 5,
        actionId: a.id,
        agentId: a.agentId,
        data: { vote: "approve" },
      });
      const keys = (await store.claimEffects(T0 + 5, 10, 1000)).map((e) => e.dedupeKey);
      expect(keys).toContain(`note:${a.id}:vote:U0ALICE`);
    });

    it("answers reads of many actions asked at once, each with its own votes", async () => {
      const actions = Array.from({ length: 6 }, (_, i) => newAction({ req: { request_id: `many-${i}` } }));
      for (const a of actions) await store.admit(admitInput(a));
      // Votes by different users on every other action, so each read must keep its own.
      for (const [i, a] of actions.entries()) {
        if (i % 2) continue;
        await store.mutate(a.id, T0 + 5, () => ({ vote: vote(`U0V${i}`), events: [], effects: [] }));
      }
      const ids = [...actions.map((a) => a.id), "act_missing", actions[0]!.id];
      const read = await Promise.all(ids.map((id) => store.getAction(id)));
      expect(read.map((a) => a?.id ?? null)).toEqual([...actions.map((a) => a.id), null, actions[0]!.id]);
      expect(read.map((a) => a?.votes.map((v) => v.user) ?? null)).toEqual([
        ["U0V0"],
        [],
        ["U0V2"],
        [],
        ["U0V4"],
        [],
        null,
        ["U0V0"],
      ]);
      expect(read[0]?.votes[0]).toEqual({ ...vote("U0V0"), level: 0 });
    });

    it("keeps a refused plan's events and changes nothing else", async () => {
      const a = newAction();
      await store.admit(admitInput(a));
      const r = await store.mutate(a.id, T0 + 7, () => ({
        refused: { code: "not_an_approver", reason: "not on this level" },
        events: [{ type: "vote_refused", actor: "slack:U0MALLORY" }],
      }));
      expect(r).toMatchObject({ kind: "refused", code: "not_an_approver", reason: "not on this level" });
      expect((await store.getAction(a.id))?.votes).toEqual([]);
      expect((await store.listEvents(a.id)).map((e) => e.type)).toEqual(["received", "vote_refused"]);
    });

    it("answers not_found for an unknown action without calling the plan", async () => {
      let called = false;
      const r = await store.mutate("act_missing", T0, () => {
        called = true;
        return { events: [], effects: [] };
      });
      expect(r).toEqual({ kind: "not_found" });
      expect(called).toBe(false);
    });

    it("issues a signed record chained to the one before, and closes the action", async () => {
      const a = newAction();
      const b = newAction();
      await store.admit(admitInput(a));
      await store.admit(admitInput(b));
      const ra = await store.mutate(a.id, T0 + 60_000, decideIfPending("approved"));
      const rb = await store.mutate(b.id, T0 + 60_000, decideIfPending("denied"));
      if (ra.kind !== "applied" || rb.kind !== "applied") throw new Error("expected both applied");
      expect(ra.record?.seq).toBe(1);
      expect(rb.record?.seq).toBe(2);
      expect(rb.action).toMatchObject({
        status: "decided",
        verdict: "denied",
        reasonCode: "policy",
        decidedAt: T0 + 60_000,
        recordSeq: 2,
      });
      expect(await store.getRecord(b.id)).toEqual(rb.record);
      const records = await expectOneChain(store, [a.id, b.id]);
      expect(records[1]?.decisionId).toBe(rb.record?.decisionId);
      expect((await store.listEvents(b.id)).at(-1)).toMatchObject({
        type: "record_issued",
        data: { seq: 2, verdict: "denied", decision_id: rb.record?.decisionId },
      });
      expect(await store.unreleasedDecided(10)).toEqual([]);
    });

    it("rolls the whole plan back when applying it fails (a decision on a decided action)", async () => {
      const a = newAction();
      await store.admit(admitInput(a));
      await store.mutate(a.id, T0, decideIfPending("approved"));
      await expect(
        store.mutate(a.id, T0, (cur) => ({
          vote: vote("U0BOB"),
          events: [{ type: "vote_cast", actor: "slack:U0BOB" }],
          effects: [{ kind: "dm", dedupeKey: `dm:${a.id}:late` }],
          decision: { outcome: outcome("denied"), claims: claims(cur, "denied") },
        })),
      ).rejects.toThrow(`action ${a.id} is already decided`);
      const after = await store.getAction(a.id);
      expect(after?.votes).toEqual([]);
      expect(after?.verdict).toBe("approved");
      expect((await store.listEvents(a.id)).map((e) => e.type)).not.toContain("vote_cast");
      expect((await store.claimEffects(T0, 50, 1000)).map((e) => e.dedupeKey)).not.toContain(
        `dm:${a.id}:late`,
      );
      await expectOneChain(store, [a.id]);
    });

    it("refuses to close an action that is not pending, and commits nothing of that transaction", async () => {
      // The store's own check of closeAction, as decide() makes it: PostgreSQL sends the
      // close with the statements after it (the COMMIT too), so its refusal must stop the commit.
      const a = newAction();
      await store.admit(admitInput(a));
      const decided = await store.mutate(a.id, T0, decideIfPending("approved"));
      if (decided.kind !== "applied") throw new Error("not decided");
      const transact = (store as unknown as { transact<T>(step: (tx: StoreTx) => Step<T>): Promise<T> })
        .transact;
      const closed: Closed = {
        status: "decided",
        verdict: "denied",
        reasonCode: "policy",
        decidedAt: T0 + 1,
        recordSeq: 9,
      };
      await expect(
        transact.call(store, function* (tx) {
          if (!(yield* tx.closeAction(a.id, closed))) throw decidedTwice(a.id);
          yield* tx.insertEvents([
            { actionId: a.id, agentId: a.agentId, type: "late", actor: "system", at: T0 + 1, dataJson: "{}" },
          ]);
          return true;
        }),
      ).rejects.toThrow(`action ${a.id} was decided twice`);
      expect(await store.getAction(a.id)).toEqual(decided.action);
      expect((await store.listEvents(a.id)).map((e) => e.type)).not.toContain("late");
      await expectOneChain(store, [a.id]);
    });

    it("keeps the log one chain when 200 different actions are decided at once", async () => {
      const actions = Array.from({ length: 200 }, () => newAction());
      for (const a of actions) await store.admit(admitInput(a, { maxPending: 1000 }));
      const results = await Promise.all(
        actions.map((a, i) => store.mutate(a.id, T0 + i, decideIfPending(i % 2 ? "approved" : "denied"))),
      );
      expect(results.every((r) => r.kind === "applied" && r.record !== null)).toBe(true);
      const records = await expectOneChain(
        store,
        actions.map((a) => a.id),
      );
      expect(records).toHaveLength(200);
    });

    it("keeps the log one chain when two store instances (two processes) decide at once", async () => {
      const other = await second();
      other.setSigner(SIGNER);
      const actions = Array.from({ length: 60 }, () => newAction());
      for (const a of actions) await store.admit(admitInput(a));
      await Promise.all(
        actions.map((a, i) => (i % 2 ? store : other).mutate(a.id, T0, decideIfPending("approved"))),
      );
      expect(
        await expectOneChain(
          store,
          actions.map((a) => a.id),
        ),
      ).toHaveLength(60);
    });

    it("runs writes that arrive together each on its own: one that fails undoes only itself", async () => {
      const a = newAction();
      const c = newAction();
      const first = admitInput(a);
      await store.admit(admitInput(c));
      await store.spendProof("billing-agent", { jti: "spent", exp: 2e9 }, T0);
      const replay = newAction();
      // All in one turn of the event loop: SqliteStore commits them as one group.
      const [okAdmit, replayed, decided, spentAgain, event, conflict] = await Promise.allSettled([
        store.admit(first),
        store.admit(admitInput(replay, { proof: { jti: "spent", exp: 2e9 } })),
        store.mutate(c.id, T0 + 60_000, decideIfPending("approved")),
        store.spendProof("billing-agent", { jti: "spent", exp: 2e9 }, T0),
        store.appendEvents(c.id, c.agentId, [{ type: "reminded", actor: "system" }], T0 + 1),
        store.admit(admitInput({ ...c, id: `act_${randomUUID()}`, requestSha256: "other-content" })),
      ]);
      expect(okAdmit.status).toBe("fulfilled");
      expect(decided).toMatchObject({ status: "fulfilled", value: { kind: "applied", record: { seq: 1 } } });
      expect(event.status).toBe("fulfilled");
      for (const [r, code] of [
        [replayed, "replayed_proof"],
        [spentAgain, "replayed_proof"],
        [conflict, "request_id_conflict"],
      ] as const) {
        expect(r.status).toBe("rejected");
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(RejectionError);
        expect(((r as PromiseRejectedResult).reason as RejectionError).code).toBe(code);
      }
      // What failed left nothing; what succeeded beside it is all there.
      expect(await store.getAction(replay.id)).toBeNull();
      expect(await store.listEvents(replay.id)).toEqual([]);
      expect((await store.getAction(a.id))?.status).toBe("pending");
      expect((await store.listEvents(a.id)).map((e) => e.type)).toEqual(["received"]);
      expect((await store.getAction(c.id))?.verdict).toBe("approved");
      // (PostgreSQL runs them side by side, so only SQLite promises this order.)
      expect((await store.listEvents(c.id)).map((e) => e.type).sort()).toEqual([
        "decided",
        "received",
        "record_issued",
        "reminded",
      ]);
      // The next verdict chains on the one committed beside the failures.
      const next = await store.mutate(a.id, T0 + 60_000, decideIfPending("denied"));
      expect(next).toMatchObject({ kind: "applied", record: { seq: 2 } });
      await expectOneChain(store, [a.id, c.id]);
    });

    it("issues exactly one record when one action is decided many times at once", async () => {
      const a = newAction();
      await store.admit(admitInput(a));
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          store.mutate(a.id, T0 + i, decideIfPending(i % 2 ? "approved" : "denied")),
        ),
      );
      expect(results.filter((r) => r.kind === "applied" && r.record)).toHaveLength(1);
      expect(results.filter((r) => r.kind === "refused")).toHaveLength(29);
      await expectOneChain(store, [a.id]);
    });

    it("sees every earlier vote when votes on one action arrive at once (no lost update)", async () => {
      const quorum = 12;
      const a = newAction({ quorum });
      await store.admit(admitInput(a));
      const voters = Array.from({ length: quorum }, (_, i) => `U0V${String(i).padStart(2, "0")}`);
      const results = await Promise.all(
        voters.map((user, i) =>
          store.mutate(a.id, T0 + i, (cur): Plan | Refused => {
            const v = vote(user, "approve", T0 + 1000 + i);
            const votes = [...cur.votes, v];
            return {
              vote: v,
              events: [{ type: "vote_cast", actor: `slack:${user}` }],
              effects: [],
              ...(votes.length >= cur.quorum
                ? {
                    decision: {
                      outcome: outcome("approved"),
                      claims: claims(
                        cur,
                        "approved",
                        votes.map(({ level: _l, ...x }) => x),
                      ),
                    },
                  }
                : {}),
            };
          }),
        ),
      );
      const decided = results.filter((r) => r.kind === "applied" && r.record);
      expect(decided).toHaveLength(1);
      const final = await store.getAction(a.id);
      expect(final?.votes.map((v) => v.user).sort()).toEqual(voters);
      const [record] = await expectOneChain(store, [a.id]);
      const { payload } = verifyJws(record!.jws, [KEY.publicJwk], "decision+jwt");
      expect((payload["votes"] as Vote[]).map((v) => v.user).sort()).toEqual(voters);
    });
  });

  describe("outbox", () => {
    async function seed(n: number, dueAt = T0): Promise<void> {
      const effects: NewEffect[] = Array.from({ length: n }, (_, i) => ({
        kind: "webhook",
        dedupeKey: `fx:${i}`,
        payload: { i },
        dueAt,
      }));
      await store.addEffects(null, effects, T0);
    }

    it("adds an effect once per dedupe key, within one call and across calls", async () => {
      await store.addEffects(
        null,
        [
          { kind: "dm", dedupeKey: "dm:x" },
          { kind: "dm", dedupeKey: "dm:x", payload: { second: true } },
        ],
        T0,
      );
      await store.addEffects(null, [{ kind: "dm", dedupeKey: "dm:x", payload: { third: true } }], T0);
      const claimed = await store.claimEffects(T0, 10, 1000);
      expect(claimed).toHaveLength(1);
      expect(claimed[0]).toMatchObject({
        kind: "dm",
        dedupeKey: "dm:x",
        payload: {},
        attempts: 1,
        createdAt: T0,
      });
      expect(await store.pendingEffectCount()).toBe(1);
    });

    /** An receiver with `slots` slots that never finishes anything: what it was given, and what it holds. */
    function receiver(slots: number) {
      const a = {
        taken: [] as Effect[][],
        held: 0,
        leaseMs: 5_000,
        reserve() {
          if (a.held >= slots) return false;
          a.held++;
          return true;
        },
        settle(born: readonly Effect[], reserved: number) {
          a.held -= reserved;
          if (born.length) a.taken.push([...born]);
        },
      };
      return a;
    }

    it("leases effects due at once to an receiver, hands them over after the commit, and no others", async () => {
      const ad = receiver(100);
      const taken = ad.taken;
      store.handEffectsTo(ad);
      const a = newAction();
      await store.admit(
        admitInput(a, {
          effects: () => [
            { kind: "start_level", dedupeKey: `level:${a.id}`, payload: { level: 0 } },
            { kind: "remind", dedupeKey: `remind:${a.id}`, dueAt: T0 + 60_000 },
            { kind: "timer", dedupeKey: `timer:${a.id}` },
          ],
        }),
      );
      // A duplicate is not written, so not handed over either.
      await store.addEffects(a.id, [{ kind: "start_level", dedupeKey: `level:${a.id}` }], T0);
      // A plan that fails after writing its effect: rolled back, never handed over.
      await store.mutate(a.id, T0, decideIfPending("approved"));
      await expect(
        store.mutate(a.id, T0, (cur) => ({
          events: [],
          effects: [{ kind: "dm", dedupeKey: `dm:${a.id}:late` }],
          decision: { outcome: outcome("denied"), claims: claims(cur, "denied") },
        })),
      ).rejects.toThrow("already decided");
      const keys = taken.flat().map((e) => e.dedupeKey);
      expect(keys.slice(0, 2)).toEqual([`level:${a.id}`, `timer:${a.id}`]);
      expect(keys).not.toContain(`remind:${a.id}`);
      expect(keys).not.toContain(`dm:${a.id}:late`);
      expect(taken[0]![0]).toMatchObject({
        actionId: a.id,
        payload: { level: 0 },
        attempts: 1,
        lease: T0 + 5_000,
      });
      // Leased: no claimer takes them before the lease runs out, and then one does.
      const claimedNow = (await store.claimEffects(T0, 50, 1000)).map((e) => e.dedupeKey);
      expect(claimedNow).not.toContain(`level:${a.id}`);
      const afterLease = (await store.claimEffects(T0 + 5_001, 50, 1000)).map((e) => e.dedupeKey);
      expect(afterLease).toContain(`level:${a.id}`);
      // Stopped: written unleased again.
      store.handEffectsTo(null);
      const before = taken.length;
      await store.addEffects(null, [{ kind: "dm", dedupeKey: "dm:not handed over" }], T0 + 6_000);
      expect(taken.length).toBe(before);
      expect((await store.claimEffects(T0 + 6_000, 50, 1000)).map((e) => e.dedupeKey)).toContain(
        "dm:not handed over",
      );
      // Every slot held was freed: for what was handed over, the duplicate and the rollback.
      expect(ad.held).toBe(0);
    });

    it("writes an effect the receiver has no slot for unleased, for a claim", async () => {
      const ad = receiver(1);
      store.handEffectsTo(ad);
      await store.addEffects(
        null,
        [
          { kind: "dm", dedupeKey: "dm:first" },
          { kind: "dm", dedupeKey: "dm:second" },
        ],
        T0,
      );
      expect(ad.taken.flat().map((e) => e.dedupeKey)).toEqual(["dm:first"]);
      expect(ad.held).toBe(0);
      expect((await store.claimEffects(T0, 50, 1000)).map((e) => e.dedupeKey)).toEqual(["dm:second"]);
    });

    it("never gives one effect to two claimers at once", async () => {
      await seed(120);
      const claimers = Array.from({ length: 8 }, async () => {
        const mine: number[] = [];
        for (;;) {
          const batch = await store.claimEffects(T0, 7, 60_000);
          if (!batch.length) return mine;
          mine.push(...batch.map((e) => e.id));
        }
      });
      const all = (await Promise.all(claimers)).flat();
      expect(all).toHaveLength(120);
      expect(new Set(all).size).toBe(120);
    });

    it("claims only what is due, in due order, and leases it", async () => {
      await store.addEffects(
        "act_x",
        [
          { kind: "dm", dedupeKey: "later", dueAt: T0 + 500 },
          { kind: "dm", dedupeKey: "now-b", dueAt: T0 },
          { kind: "dm", dedupeKey: "now-a", dueAt: T0 - 10 },
        ],
        T0 - 100,
      );
      const first = await store.claimEffects(T0, 10, 1000);
      expect(first.map((e) => e.dedupeKey)).toEqual(["now-b", "now-a"]);
      expect(first[0]?.actionId).toBe("act_x");
      expect(await store.claimEffects(T0 + 100, 10, 1000)).toEqual([]);
      expect((await store.claimEffects(T0 + 500, 10, 1000)).map((e) => e.dedupeKey)).toEqual(["later"]);
    });

    it("takes an effect over once its lease has run out, counting the attempt", async () => {
      await seed(1);
      const [e] = await store.claimEffects(T0, 10, 1000);
      expect(e?.attempts).toBe(1);
      expect(await store.claimEffects(T0 + 1000, 10, 1000)).toEqual([]);
      const [again] = await store.claimEffects(T0 + 1001, 10, 1000);
      expect(again?.id).toBe(e?.id);
      expect(again?.attempts).toBe(2);
    });

    it("completes, retries, defers and kills effects as asked", async () => {
      await seed(4);
      const [a, b, c, d] = await store.claimEffects(T0, 10, 60_000);
      await store.completeEffect(a!.id, a!.lease, T0 + 1);
      await store.retryEffect(b!.id, b!.lease, T0 + 5000, "slack 503");
      await store.deferEffect(c!.id, c!.lease, T0 + 2000);
      await store.killEffect(d!.id, d!.lease, "channel_not_found", T0 + 1);
      expect(await store.pendingEffectCount()).toBe(2);
      expect(await store.claimEffects(T0 + 1999, 10, 1000)).toEqual([]);
      // Deferred: the claim's attempt is taken back, so it counts 1 again, not 2.
      const [c2] = await store.claimEffects(T0 + 2000, 10, 60_000);
      expect([c2!.id, c2!.attempts]).toEqual([c!.id, 1]);
      // Retried: due again at its time, with both attempts counted.
      const [b2] = await store.claimEffects(T0 + 5000, 10, 1000);
      expect([b2!.id, b2!.attempts]).toEqual([b!.id, 2]);
      expect(await store.completeEffect(b2!.id, b2!.lease, T0 + 5001)).toBe(true);
      expect(await store.completeEffect(c2!.id, c2!.lease, T0 + 5001)).toBe(true);
      // Done and dead effects are never claimed again, however late.
      expect(await store.claimEffects(T0 + 999_999, 10, 1000)).toEqual([]);
      expect(await store.pendingEffectCount()).toBe(0);
    });

    it("finishes outcomes given at once each under its own lease; a second outcome for one effect loses", async () => {
      await seed(4);
      const [a, b, c, d] = await store.claimEffects(T0, 10, 60_000);
      const results = await Promise.all([
        store.completeEffect(a!.id, a!.lease, T0 + 1),
        store.retryEffect(b!.id, b!.lease, T0 + 5000, "slack 503"),
        store.deferEffect(c!.id, c!.lease, T0 + 2000),
        store.completeEffect(d!.id, d!.lease + 1, T0 + 1), // not its lease
        store.killEffect(a!.id, a!.lease, "too late", T0 + 1), // a second outcome for a
      ]);
      expect(results).toEqual([true, true, true, false, false]);
      // a is done (not dead), b and c are due again, d is still leased to its claim.
      expect(await store.pendingEffectCount()).toBe(3);
      const again = await store.claimEffects(T0 + 5000, 10, 100_000);
      expect(again.map((e) => [e.id, e.attempts])).toEqual([
        [b!.id, 2],
        [c!.id, 1],
      ]);
      expect((await store.claimEffects(T0 + 60_001, 10, 1000)).map((e) => e.id)).toEqual([d!.id]);
    });

    it("never counts attempts below zero when an unclaimed effect is deferred", async () => {
      await seed(1);
      const [e] = await store.claimEffects(T0, 1, 1000);
      expect(await store.deferEffect(e!.id, e!.lease, T0 + 10)).toBe(true);
      // A second defer under the same (now released) lease changes nothing.
      expect(await store.deferEffect(e!.id, e!.lease, T0 + 10)).toBe(false);
      expect((await store.claimEffects(T0 + 10, 1, 1000))[0]?.attempts).toBe(1);
    });

    it("a process whose lease ran out cannot finish an effect another process took over", async () => {
      await seed(1);
      const [mine] = await store.claimEffects(T0, 1, 1000);
      // The lease runs out; another process claims the effect.
      const [theirs] = await store.claimEffects(T0 + 1001, 1, 60_000);
      expect(theirs?.id).toBe(mine?.id);
      // The first process comes back late: none of its outcomes lands.
      expect(await store.retryEffect(mine!.id, mine!.lease, T0 + 1002, "late")).toBe(false);
      expect(await store.completeEffect(mine!.id, mine!.lease, T0 + 1002)).toBe(false);
      expect(await store.killEffect(mine!.id, mine!.lease, "late", T0 + 1002)).toBe(false);
      // Still leased to the second: no third process can run it meanwhile.
      expect(await store.claimEffects(T0 + 1003, 1, 1000)).toEqual([]);
      expect(await store.completeEffect(theirs!.id, theirs!.lease, T0 + 1004)).toBe(true);
    });
  });

  describe("timers, jobs, cards, proofs, webhooks, keys", () => {
    it("lists pending actions by their next timer (the earlier of deadline and cap)", async () => {
      const a = newAction({ deadlineAt: T0 + 300, capAt: T0 + 100 });
      const b = newAction({ deadlineAt: T0 + 200, capAt: null });
      const c = newAction({ deadlineAt: null, capAt: T0 + 400 });
      const none = newAction({ deadlineAt: null, capAt: null });
      const decided = newAction({ deadlineAt: T0 + 50 });
      for (const x of [a, b, c, none, decided]) await store.admit(admitInput(x));
      await store.mutate(decided.id, T0, decideIfPending("denied"));
      expect(await store.timersDue(T0 + 250, 10)).toEqual([
        { id: a.id, level: 0, at: T0 + 100 },
        { id: b.id, level: 0, at: T0 + 200 },
      ]);
      expect((await store.timersDue(Number.POSITIVE_INFINITY, 10)).map((t) => t.id)).toEqual([
        a.id,
        b.id,
        c.id,
      ]);
      expect(await store.timersDue(Number.POSITIVE_INFINITY, 1)).toHaveLength(1);
    });

    it("moves an action's next timer when its deadline changes, and drops it once decided", async () => {
      const a = newAction({ deadlineAt: T0 + 500, capAt: T0 + 900 });
      const b = newAction({ deadlineAt: T0 + 100, capAt: null });
      const c = newAction({ deadlineAt: null, capAt: T0 + 300 });
      for (const x of [a, b, c]) await store.admit(admitInput(x));
      const due = async (until: number) =>
        (await store.timersDue(until, 10)).map((t) => [t.id, t.level, t.at - T0]);
      expect(await due(T0 + 1000)).toEqual([
        [b.id, 0, 100],
        [c.id, 0, 300],
        [a.id, 0, 500],
      ]);
      const set = (id: string, s: Plan["set"]) =>
        store.mutate(id, T0, () => ({ set: s!, events: [], effects: [] }));
      // Escalation: the next level with a later deadline; the timer moves with it.
      await set(b.id, { level: 1, quorum: 2, deadlineAt: T0 + 2000 });
      // A deadline brought forward, then cleared: the cap is what is left.
      await set(a.id, { deadlineAt: T0 + 50 });
      expect(await due(T0 + 1000)).toEqual([
        [a.id, 0, 50],
        [c.id, 0, 300],
      ]);
      await set(a.id, { deadlineAt: null });
      // A quorum change alone leaves the timer where it was.
      await set(c.id, { quorum: 3 });
      expect(await due(Number.POSITIVE_INFINITY)).toEqual([
        [c.id, 0, 300],
        [a.id, 0, 900],
        [b.id, 1, 2000],
      ]);
      await store.mutate(c.id, T0, decideIfPending("expired"));
      expect(await due(Number.POSITIVE_INFINITY)).toEqual([
        [a.id, 0, 900],
        [b.id, 1, 2000],
      ]);
    });

    it("tracks intake jobs until they are released", async () => {
      const a = newAction();
      await store.admit(admitInput(a, { job: { key: "q|1|1", id: "1" } }));
      await store.admit(admitInput(a, { job: { key: "q|2|2", id: "2" } }));
      expect((await store.unreleasedJobs(a.id)).sort((x, y) => x.key.localeCompare(y.key))).toEqual([
        { key: "q|1|1", id: "1" },
        { key: "q|2|2", id: "2" },
      ]);
      expect(await store.unreleasedDecided(10)).toEqual([]);
      await store.mutate(a.id, T0, decideIfPending("approved"));
      expect(await store.unreleasedDecided(10)).toEqual([a.id]);
      await store.markJobsReleased(["q|1|1"], T0);
      expect(await store.unreleasedJobs(a.id)).toEqual([{ key: "q|2|2", id: "2" }]);
      await store.markJobsReleased(["q|2|2"], T0);
      await store.markJobsReleased([], T0);
      expect(await store.unreleasedDecided(10)).toEqual([]);
      expect(await store.findJob("q|9|9")).toBeNull();
    });

    it("saves one card per action and level: the second save loses", async () => {
      const a = newAction();
      await store.admit(admitInput(a));
      expect(await store.saveCard({ actionId: a.id, level: 1, channel: "C1", ts: "2.0" }, T0)).toBe(true);
      expect(await store.saveCard({ actionId: a.id, level: 0, channel: "C0", ts: "1.0" }, T0)).toBe(true);
      expect(await store.saveCard({ actionId: a.id, level: 0, channel: "C0", ts: "9.9" }, T0)).toBe(false);
      expect(await store.getCards(a.id)).toEqual([
        { actionId: a.id, level: 0, channel: "C0", ts: "1.0" },
        { actionId: a.id, level: 1, channel: "C1", ts: "2.0" },
      ]);
      expect(await store.findCardByMessage("C1", "2.0")).toEqual({
        actionId: a.id,
        level: 1,
        channel: "C1",
        ts: "2.0",
      });
      expect(await store.findCardByMessage("C0", "9.9")).toBeNull();
    });

    it("spends a proof once per agent, and forgets it once it has expired", async () => {
      const exp = Math.floor(T0 / 1000) + 10;
      await store.spendProof("billing-agent", { jti: "j1", exp }, T0);
      await store.spendProof("ops-agent", { jti: "j1", exp }, T0);
      const e = await rejection(store.spendProof("billing-agent", { jti: "j1", exp }, T0));
      expect(e.code).toBe("replayed_proof");
      expect(e.errors).toEqual([{ path: "proof.jti", message: "already used" }]);
      // exp + 60 s of skew later, the jti is gone: no proof that old is accepted upstream anyway.
      await store.spendProof("billing-agent", { jti: "j1", exp: exp + 1000 }, (exp + 60) * 1000);
    });

    it("spends one of many simultaneous uses of one proof", async () => {
      const settled = await Promise.allSettled(
        Array.from({ length: 15 }, () => store.spendProof("billing-agent", { jti: "same", exp: 2e9 }, T0)),
      );
      expect(settled.filter((s) => s.status === "fulfilled")).toHaveLength(1);
    });

    it("keeps webhook attempts in order", async () => {
      const a = newAction();
      await store.admit(admitInput(a));
      const base = { actionId: a.id, webhookId: "dec_1", url: "https://billing.internal/hook" };
      await store.recordWebhookAttempt({
        ...base,
        attempt: 1,
        at: T0,
        status: null,
        durationMs: 12,
        error: "connect ECONNREFUSED",
        address: "10.0.0.1",
      });
      await store.recordWebhookAttempt({
        ...base,
        attempt: 2,
        at: T0 + 5000,
        status: 204,
        durationMs: 30,
        error: null,
        address: null,
      });
      expect(await store.webhookAttempts(a.id)).toEqual([
        {
          ...base,
          attempt: 1,
          at: T0,
          status: null,
          durationMs: 12,
          error: "connect ECONNREFUSED",
          address: "10.0.0.1",
        },
        { ...base, attempt: 2, at: T0 + 5000, status: 204, durationMs: 30, error: null, address: null },
      ]);
    });

    it("keeps every signing key once, oldest first", async () => {
      await store.registerSigningKey("k2", { kid: "k2", x: "b" }, T0 + 1);
      await store.registerSigningKey("k1", { kid: "k1", x: "a" }, T0);
      await store.registerSigningKey("k2", { kid: "k2", x: "changed" }, T0 + 2);
      expect(await store.signingKeys()).toEqual([
        { kid: "k1", publicJwk: { kid: "k1", x: "a" } },
        { kid: "k2", publicJwk: { kid: "k2", x: "b" } },
      ]);
    });

    it("keeps appends asked for at once in order, and one that cannot be written loses only itself", async () => {
      // PostgreSQL writes the appends of one turn in one transaction: each is still kept,
      // in the order asked, and answered after its commit. A NUL in text is refused by
      // PostgreSQL (SQLite keeps it): that append fails, the others are kept, in order.
      const a = newAction();
      await store.admit(admitInput(a));
      const settled = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) =>
          store.appendEvents(
            a.id,
            a.agentId,
            [{ type: "reminded", actor: i === 5 ? "sys\u0000tem" : "system", data: { i } }],
            T0 + i,
          ),
        ),
      );
      expect(settled.filter((_, i) => i !== 5).every((r) => r.status === "fulfilled")).toBe(true);
      const kept = (await store.listEvents(a.id))
        .filter((e) => e.type === "reminded" && e.actor === "system")
        .map((e) => (e.data as { i: number }).i);
      expect(kept).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]);
    });

    it("appends events with or without an action, in order", async () => {
      await store.appendEvents(
        null,
        "billing-agent",
        [{ type: "rejected", actor: "agent:billing-agent" }],
        T0,
      );
      const a = newAction();
      await store.admit(admitInput(a));
      await store.appendEvents(
        a.id,
        a.agentId,
        [
          { type: "card_posted", actor: "system" },
          { type: "reminded", actor: "system", data: { n: 2 } },
        ],
        T0 + 3,
      );
      const events = await store.listEvents(a.id);
      expect(events.map((e) => e.type)).toEqual(["received", "card_posted", "reminded"]);
      expect(events[2]).toMatchObject({ at: T0 + 3, data: { n: 2 } });
      expect(events[1]!.id).toBeLessThan(events[2]!.id);
    });

    it("answers ping, and opens a second handle on the same data", async () => {
      await store.ping();
      const a = newAction();
      await store.admit(admitInput(a));
      const other = await second();
      expect((await other.getAction(a.id))?.id).toBe(a.id);
    });
  });

  describe("App Home reads", () => {
    it("lists what an approver still has to vote on, soonest deadline first", async () => {
      const soon = newAction({ deadlineAt: T0 + 100 });
      const late = newAction({ deadlineAt: T0 + 900 });
      const voted = newAction({ deadlineAt: T0 + 50 });
      const notMine = newAction({ deadlineAt: T0 + 10 });
      for (const x of [late, soon, voted, notMine]) await store.admit(admitInput(x));
      const start = (id: string, eligible: string[]) =>
        store.mutate(id, T0, () => ({ set: { eligible }, events: [], effects: [] }));
      await start(soon.id, ["U0ALICE", "U0BOB"]);
      await start(late.id, ["U0ALICE"]);
      await start(voted.id, ["U0ALICE"]);
      await start(notMine.id, ["U0BOB"]);
      await store.mutate(voted.id, T0, () => ({ vote: vote("U0ALICE"), events: [], effects: [] }));
      expect((await store.pendingForApprover("U0ALICE", 10)).map((x) => x.id)).toEqual([soon.id, late.id]);
      expect((await store.pendingForApprover("U0ALICE", 1)).map((x) => x.id)).toEqual([soon.id]);
      expect(await store.pendingForApprover("U0NOBODY", 10)).toEqual([]);
    });

    it("lists an approver's decided votes and an agent's recent requests, newest first, with stats", async () => {
      const a = newAction({ requestedAt: T0 });
      const b = newAction({ requestedAt: T0 + 10 });
      const c = newAction({ requestedAt: T0 + 20, agentId: "ops-agent" });
      for (const x of [a, b, c]) await store.admit(admitInput(x));
      for (const x of [a, b]) {
        await store.mutate(x.id, T0, (cur) => ({
          vote: vote("U0ALICE"),
          events: [],
          effects: [],
          decision: {
            outcome: outcome(x === a ? "approved" : "denied"),
            claims: {
              ...claims(cur, x === a ? "approved" : "denied"),
              decided_at: new Date(T0 + (x === a ? 5000 : 1000)).toISOString(),
            },
          },
        }));
      }
      const voted = await store.recentlyVotedBy("U0ALICE", 10);
      expect(voted.map((x) => x.id)).toEqual([a.id, b.id]);
      expect(voted[0]?.request).toEqual(a.request);
      expect((await store.recentForAgents(["billing-agent", "ops-agent"], 10)).map((x) => x.id)).toEqual([
        c.id,
        b.id,
        a.id,
      ]);
      expect(await store.recentForAgents([], 10)).toEqual([]);
      expect(await store.agentStats("billing-agent", T0)).toEqual({
        total: 2,
        pending: 0,
        approved: 1,
        denied: 1,
        expired: 0,
        cancelled: 0,
      });
      expect((await store.agentStats("billing-agent", T0 + 5)).total).toBe(1);
      expect(await store.agentStats("ops-agent", T0)).toMatchObject({ total: 1, pending: 1 });
    });
  });
});

describe("SqliteStore: writes committed in groups", () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-group-"));
    store = new SqliteStore(path.join(dir, "store.db"));
    store.setSigner(SIGNER);
  });
  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("commits the writes of one turn together, and acknowledges none before the commit", async () => {
    const other = new SqliteStore(path.join(dir, "store.db"));
    try {
      const a = newAction();
      const b = newAction();
      await store.admit(admitInput(b));
      let acknowledged = false;
      let seenFromOutside: unknown = "not looked";
      const admitted = store.admit(admitInput(a)).then((r) => {
        acknowledged = true;
        return r;
      });
      const mutated = store.mutate(b.id, T0, (cur) => {
        // Runs after a's admit, in the same transaction: another connection (process)
        // cannot see a yet, and a's caller has not been told it is stored.
        seenFromOutside = other.sqlite.prepare("SELECT id FROM actions WHERE id = ?").get(a.id) ?? null;
        expect(acknowledged).toBe(false);
        return {
          set: { quorum: 2 },
          events: [],
          effects: [],
          vote: { ...vote("U0ALICE"), level: cur.level },
        };
      });
      await Promise.all([admitted, mutated]);
      expect(seenFromOutside).toBeNull();
      expect(acknowledged).toBe(true);
      expect((await other.getAction(a.id))?.id).toBe(a.id);
      expect((await other.getAction(b.id))?.votes.map((v) => v.user)).toEqual(["U0ALICE"]);
    } finally {
      await other.close();
    }
  });

  it("rejects every write of the group when the commit itself fails, and goes on working", async () => {
    const a = newAction();
    const b = newAction();
    const c = newAction();
    await store.admit(admitInput(c));
    const settled = await Promise.allSettled([
      store.admit(admitInput(a)),
      store.mutate(c.id, T0, (cur) => {
        // A deferred foreign key is checked at COMMIT, not when its savepoint is released:
        // this write succeeds inside the group, and the group's commit fails.
        store.sqlite.pragma("defer_foreign_keys = ON");
        store.sqlite
          .prepare(
            "INSERT INTO votes (action_id, user, team, vote, level, at) VALUES (?, 'U0X', 'T', 'approve', 0, 0)",
          )
          .run("act_missing");
        return decideIfPending("approved")(cur);
      }),
      store.admit(
        admitInput(b, { decision: { outcome: outcome("approved"), claims: claims(b, "approved") } }),
      ),
      store.appendEvents(null, "billing-agent", [{ type: "slack_failed", actor: "system" }], T0),
    ]);
    expect(settled.map((s) => s.status)).toEqual(["rejected", "rejected", "rejected", "rejected"]);
    for (const s of settled) expect(String((s as PromiseRejectedResult).reason)).toMatch(/FOREIGN KEY/);
    expect(await store.getAction(a.id)).toBeNull();
    expect(await store.getAction(b.id)).toBeNull();
    expect((await store.getAction(c.id))?.status).toBe("pending");
    expect(await store.getRecord(c.id)).toBeNull();
    expect(
      store.sqlite.prepare("SELECT count(*) AS n FROM events WHERE type = 'slack_failed'").get(),
    ).toEqual({
      n: 0,
    });
    // Nothing half-done was left behind: the next writes commit, and the log starts at 1.
    const r = await store.mutate(c.id, T0, decideIfPending("approved"));
    expect(r).toMatchObject({ kind: "applied", record: { seq: 1 } });
    await expectOneChain(store, [c.id]);
  });

  it("splits a burst larger than a group, and keeps every write and the chain", async () => {
    const n = GROUP_MAX + 44;
    const actions = Array.from({ length: n }, () => newAction());
    const results = await Promise.all(
      actions.map((a) =>
        store.admit(
          admitInput(a, {
            maxPending: 10_000,
            decision: { outcome: outcome("approved"), claims: claims(a, "approved") },
          }),
        ),
      ),
    );
    expect(results.map((r) => r.record?.seq)).toEqual(actions.map((_, i) => i + 1));
    expect(results.every((r) => r.action.status === "decided" && r.action.recordSeq === r.record?.seq)).toBe(
      true,
    );
    expect(
      await expectOneChain(
        store,
        actions.map((a) => a.id),
      ),
    ).toHaveLength(n);
  });
});

describe("migrating a database that has pending requests", () => {
  /** A copy of a migrations folder that stops after its first `keep` migrations: the database as an older release left it. */
  function olderMigrations(folder: string, keep: number): string {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-migrations-"));
    fs.cpSync(folder, out, { recursive: true });
    const journalFile = path.join(out, "meta", "_journal.json");
    const journal = JSON.parse(fs.readFileSync(journalFile, "utf8")) as { entries: unknown[] };
    expect(journal.entries.length).toBeGreaterThan(keep);
    journal.entries = journal.entries.slice(0, keep);
    fs.writeFileSync(journalFile, JSON.stringify(journal));
    return out;
  }

  /** Pending rows as the old schema holds them (no timer_at), plus one decided. */
  const rows = [
    { id: "act_deadline", deadline: T0 + 200, cap: null, status: "pending" },
    { id: "act_cap_first", deadline: T0 + 900, cap: T0 + 100, status: "pending" },
    { id: "act_cap_only", deadline: null, cap: T0 + 300, status: "pending" },
    { id: "act_no_timer", deadline: null, cap: null, status: "pending" },
    { id: "act_decided", deadline: T0 + 50, cap: null, status: "decided" },
  ];
  const INSERT = `INSERT INTO actions (id, agent_id, request_id, request_json, request_sha256, action_type,
      risk_class, region, status, level, quorum, deadline_at, cap_at, policy_sha256, requested_at)
    VALUES ($1, 'billing-agent', $2, '{}', 'sha', 'payments.refund', 'high', 'eu', $3, 0, 1, $4, $5, 'p', ${T0})`;
  const expected = [
    { id: "act_cap_first", level: 0, at: T0 + 100 },
    { id: "act_deadline", level: 0, at: T0 + 200 },
    { id: "act_cap_only", level: 0, at: T0 + 300 },
  ];

  it("SQLite: finds the timers of requests stored before timer_at existed", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-migrate-"));
    const old = olderMigrations(MIGRATIONS_FOLDER, 2);
    try {
      const file = path.join(dir, "store.db");
      const { db, raw } = openSqlite(file);
      migrate(db, { migrationsFolder: old });
      expect(
        raw.prepare("SELECT name FROM pragma_table_xinfo('actions') WHERE name = 'timer_at'").get(),
      ).toBe(undefined);
      const ins = raw.prepare(INSERT.replace(/\$\d/g, "?"));
      for (const r of rows) ins.run(r.id, r.id, r.status, r.deadline, r.cap);
      raw.close();
      const store = new SqliteStore(file);
      try {
        expect(await store.timersDue(T0 + 1000, 10)).toEqual(expected);
        const plan = store.sqlite
          .prepare(
            "EXPLAIN QUERY PLAN SELECT id FROM actions WHERE timer_at <= ? ORDER BY timer_at, id LIMIT 5",
          )
          .all(T0) as { detail: string }[];
        expect(plan.map((p) => p.detail).join("\n")).toMatch(/USING (COVERING )?INDEX actions_timer/);
      } finally {
        await store.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(old, { recursive: true, force: true });
    }
  });

  it("PostgreSQL: finds the timers of requests stored before timer_at existed", async () => {
    const schema = `test_${randomUUID().replaceAll("-", "")}`;
    const old = olderMigrations(PG_MIGRATIONS_FOLDER, 1);
    const admin = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA "${schema}"`);
      await pgMigrate(pgDrizzle({ client: admin }), { migrationsFolder: old, migrationsSchema: schema });
      for (const r of rows) await admin.query(INSERT, [r.id, r.id, r.status, r.deadline, r.cap]);
      const store = await PostgresStore.open(PG_URL, { schema, poolSize: 2 });
      try {
        expect(await store.timersDue(T0 + 1000, 10)).toEqual(expected);
      } finally {
        await store.close();
      }
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
      fs.rmSync(old, { recursive: true, force: true });
    }
  });
});

describe("PostgresStore.open", () => {
  it("refuses a schema name it would have to quote, saying which", async () => {
    await expect(PostgresStore.open(PG_URL, { schema: "Bad-Name" })).rejects.toThrow(
      'PostgreSQL schema "Bad-Name" is not usable',
    );
  });

  it("says where it could not connect, without the password", async () => {
    const e = await PostgresStore.open("postgres://postgres:s3cret@127.0.0.1:1/test").catch((x: Error) => x);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).message).toMatch(/^could not connect to PostgreSQL at 127\.0\.0\.1:1\/test: /);
    expect((e as Error).message).not.toContain("s3cret");
  });

  it("lets several instances start at once on a fresh schema: one migrates, all work", async () => {
    const schema = `test_${randomUUID().replaceAll("-", "")}`;
    const opened = await Promise.allSettled(
      Array.from({ length: 4 }, () => PostgresStore.open(PG_URL, { schema, poolSize: 2 })),
    );
    const stores = opened.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
    try {
      expect(opened.filter((o) => o.status === "rejected")).toEqual([]);
      for (const s of stores) await s.ping();
      await stores[0]!.registerSigningKey("k", {}, T0);
      expect(await stores[3]!.signingKeys()).toHaveLength(1);
    } finally {
      for (const s of stores) await s.close();
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });
});

describe("the two schemas", () => {
  it("have the same tables, columns, nullability and indexes, so neither store drifts", () => {
    interface Col {
      name: string;
      notNull: boolean;
      primary: boolean;
    }
    const shape = (t: {
      name: string;
      columns: Col[];
      indexes: { config: { name?: string; unique: boolean } }[];
      primaryKeys: { columns: Col[] }[];
      foreignKeys: { reference(): { columns: Col[]; foreignColumns: Col[]; foreignTable: object } }[];
    }) => ({
      table: t.name,
      columns: t.columns
        .map((c) => `${c.name}${c.notNull ? " not null" : ""}${c.primary ? " pk" : ""}`)
        .sort(),
      indexes: t.indexes.map((i) => `${i.config.name}${i.config.unique ? " unique" : ""}`).sort(),
      primaryKeys: t.primaryKeys.map((k) => k.columns.map((c) => c.name).join(",")),
      foreignKeys: t.foreignKeys
        .map((f) => {
          const r = f.reference();
          const to = getTableName(r.foreignTable as Parameters<typeof getTableName>[0]);
          return `${r.columns.map((c) => c.name)} -> ${to}(${r.foreignColumns.map((c) => c.name)})`;
        })
        .sort(),
    });
    const names = Object.keys(sqliteSchema).sort();
    expect(Object.keys(pgSchema).sort()).toEqual(names);
    for (const name of names) {
      const lite = sqliteTable((sqliteSchema as unknown as Record<string, SQLiteTable>)[name]!);
      const post = pgTable((pgSchema as unknown as Record<string, PgTable>)[name]!);
      expect(shape(post)).toEqual(shape(lite));
    }
  });
});
