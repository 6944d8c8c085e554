/**
 * kill -9 around the Socket Mode ack, with real `countersign serve` processes: killed the
 * instant the simulator reads an ack, every acked vote is already in the record; killed
 * after an envelope went out but before its ack, the simulator re-sends it to the next
 * process and the vote counts once. On SQLite (one instance, restarted) and on PostgreSQL
 * (three instances, envelopes spread over their sockets).
 */
import { decodeJwt } from "jose";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { RecordClaims } from "../../src/domain/types.js";
import type { EnvelopeRecord, SocketEnvelope } from "../../src/simulator/socket-mode.js";
import { type Chaos, startChaos } from "../support/chaos.js";
import type { Child } from "../support/child.js";
import { eventually, PG_URL, USERS } from "../support/harness.js";

const alice = USERS.find((u) => u.id === "U0ALICE")!;
const clicker = { id: alice.id, team_id: alice.team_id, name: alice.name };
// Re-sends every 3 s for up to a minute: long enough for a fresh process to start on a
// loaded machine and open its socket.
const SOCKET = { ackTimeoutMs: 3000, retries: 20 };

/** Reads what a test needs from either store, with `?` placeholders. */
type Query = <T>(sql: string, ...args: unknown[]) => Promise<T[]>;

interface Setup {
  c: Chaos;
  q: Query;
  close(): Promise<void>;
}

async function sqliteSetup(): Promise<Setup> {
  const c = await startChaos({ socketMode: SOCKET });
  return {
    c,
    q: async <T>(sql: string, ...args: unknown[]) =>
      c
        .db()
        .prepare(sql)
        .all(...args) as T[],
    close: () => c.stop(),
  };
}

async function postgresSetup(): Promise<Setup> {
  const c = await startChaos({ postgres: true, socketMode: SOCKET });
  const db = new pg.Client({ connectionString: PG_URL });
  await db.connect();
  await db.query(`SET search_path TO "${c.pgSchema}"`);
  return {
    c,
    q: async <T>(sql: string, ...args: unknown[]) => {
      let n = 0;
      return (
        await db.query(
          sql.replace(/\?/g, () => `$${++n}`),
          args,
        )
      ).rows as T[];
    },
    close: async () => {
      await db.end();
      await c.stop();
    },
  };
}

async function died(child: Child) {
  await eventually(
    async () => child.proc.exitCode !== null || child.proc.signalCode !== null,
    "the process to die",
    20_000,
  );
}

/** Submits n requests on the us-ops route (quorum 1) and waits for their cards. */
async function cards(s: Setup, n: number, label: string) {
  const subs = [];
  for (let i = 0; i < n; i++)
    subs.push(await s.c.submit({ action: { type: "ops.restart", summary: `${label} ${i}` } }));
  const out = [];
  for (const sub of subs) {
    const card = await eventually(
      async () =>
        (
          await s.q<{ action_id: string; channel: string; ts: string }>(
            "SELECT c.action_id, c.channel, c.ts FROM cards c JOIN actions a ON a.id = c.action_id WHERE a.request_id = ?",
            sub.req.request_id,
          )
        )[0],
      `the card for ${sub.req.request_id}`,
      30_000,
    );
    out.push({ ...card, job: sub.job });
  }
  return out;
}

async function votesOf(s: Setup, actionId: string): Promise<number> {
  const [row] = await s.q<{ n: number | string }>(
    "SELECT count(*) AS n FROM votes WHERE action_id = ?",
    actionId,
  );
  return Number(row!.n);
}

async function recordOf(s: Setup, actionId: string): Promise<RecordClaims> {
  const rows = await eventually(
    async () => {
      const r = await s.q<{ jws: string }>("SELECT jws FROM records WHERE action_id = ?", actionId);
      return r.length > 0 ? r : null;
    },
    `the record of ${actionId}`,
    30_000,
  );
  expect(rows).toHaveLength(1);
  return decodeJwt(rows[0]!.jws) as unknown as RecordClaims;
}

describe.each([
  ["SQLite, one instance", sqliteSetup, 1],
  ["PostgreSQL, three instances", postgresSetup, 3],
] as const)("Socket Mode under kill -9: %s", (_name, setup, instances) => {
  let s: Setup;
  /** Live instances by the number of the socket connection each opened. */
  const byConnection = new Map<number, Child>();
  const offs: (() => void)[] = [];

  /** Starts one instance and waits for its socket, so the newest connection is its own. */
  async function startNode(): Promise<Child> {
    const socket = s.c.sim.socket!;
    const before = socket.acceptedConnections;
    const child = await s.c.child();
    await eventually(async () => socket.acceptedConnections > before, "the new instance's socket", 30_000);
    byConnection.set(before + 1, child);
    return child;
  }

  beforeAll(async () => {
    s = await setup();
    for (let i = 0; i < instances; i++) await startNode();
  }, 120_000);
  afterEach(async () => {
    for (const off of offs.splice(0)) off();
    // A test that failed half-way leaves the next one its full set of live instances.
    for (const [k, n] of byConnection)
      if (n.proc.exitCode !== null || n.proc.signalCode !== null) byConnection.delete(k);
    while (byConnection.size < instances) await startNode();
  }, 120_000);
  afterAll(async () => {
    await s?.close();
  });

  it("kill -9 the instant an ack is read: every acked vote is already committed", async () => {
    const socket = s.c.sim.socket!;
    for (const card of await cards(s, 2, "kill after ack")) {
      let killed: { child: Child; connection: number } | undefined;
      offs.push(
        socket.onAck((r: EnvelopeRecord) => {
          if (killed || r.payload.type !== "block_actions") return;
          // The process that sent the ack dies before the simulator even answers the click.
          const child = byConnection.get(r.ackedOn ?? 0);
          if (!child) return;
          killed = { child, connection: r.ackedOn! };
          child.proc.kill("SIGKILL");
        }),
      );
      const r = await s.c.sim.click({
        user: clicker,
        channel: card.channel,
        ts: card.ts,
        actionId: ACTION_IDS.approve,
      });
      offs.pop()?.();
      expect(r.status).toBe(200);
      expect(killed).toBeDefined();
      await died(killed!.child);
      byConnection.delete(killed!.connection);
      // What Slack was told is in the database, with the process that said it gone.
      expect(await votesOf(s, card.action_id)).toBe(1);
      await startNode();
      const claims = await recordOf(s, card.action_id);
      expect(claims.verdict).toBe("approved");
      expect(claims.votes.map((v) => v.user)).toEqual(["U0ALICE"]);
    }
  }, 240_000);

  it("kill -9 after an envelope went out, before its ack: the re-send reaches a live instance and counts once", async () => {
    const socket = s.c.sim.socket!;
    for (const card of await cards(s, 1, "kill before ack")) {
      const sent: SocketEnvelope[] = [];
      offs.push(
        socket.onSend((e: SocketEnvelope) => {
          if (e.payload.type !== "block_actions") return;
          sent.push(e);
          // Which socket carries a send is not visible here, so every instance dies at
          // the first one: nothing is left to ack it, and only a re-send can count.
          if (sent.length === 1) for (const n of byConnection.values()) n.proc.kill("SIGKILL");
        }),
      );
      const clicked = s.c.sim.click({
        user: clicker,
        channel: card.channel,
        ts: card.ts,
        actionId: ACTION_IDS.approve,
      });
      await eventually(async () => sent.length > 0, "the first send");
      for (const n of byConnection.values()) await died(n);
      byConnection.clear();
      for (let i = 0; i < instances; i++) await startNode();
      const r = await clicked;
      offs.pop()?.();
      expect(r.status).toBe(200);
      expect(sent.length).toBeGreaterThanOrEqual(2);
      // Attempts that found no socket open count too, as Slack's retry numbers do.
      expect(sent.at(-1)!.retry_attempt).toBeGreaterThanOrEqual(sent.length - 1);
      expect(sent.at(-1)!.retry_reason).toBe("timeout");
      expect(await votesOf(s, card.action_id)).toBe(1);
      const claims = await recordOf(s, card.action_id);
      expect(claims.votes.map((v) => v.user)).toEqual(["U0ALICE"]);
    }
  }, 300_000);
});
