/**
 * Three real `countersign serve` processes on one Redis and one PostgreSQL: requests and
 * clicks spread over all three, one killed with SIGKILL mid-way. Every request ends with
 * exactly one record, the chain is gapless and linked, and no deadline fires twice.
 */
import { decodeJwt } from "jose";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { jwsDigest } from "../../src/records/signing.js";
import { waitForJob } from "../../src/sdk/finished.js";
import { type Chaos, startChaos } from "../support/chaos.js";
import type { Child } from "../support/child.js";
import { eventually, PG_URL, SIGNING_SECRET, USERS } from "../support/harness.js";

const N = Number(process.env.INSTANCES_REQUESTS ?? 240);
let c: Chaos;
let db: pg.Client;

beforeAll(async () => {
  // max_pending raised so one agent can hold the whole run; a short deadline so a share of
  // the requests (those nobody clicks) expire through the timers.
  c = await startChaos({
    postgres: true,
    timeout: "15s",
    onTimeout: "deny",
    policy: (y) => y.replace("max_pending: 20", `max_pending: ${N + 50}`),
  });
  db = new pg.Client({ connectionString: PG_URL });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await c?.stop();
});

async function q<T>(sql: string, args: unknown[] = []): Promise<T[]> {
  return (await db.query(sql.replaceAll("$S", `"${c.pgSchema}"`), args)).rows as T[];
}

describe("three instances on PostgreSQL", () => {
  it("share the work, survive losing one, and never fork the log or fire a timer twice", async () => {
    const nodes: Child[] = await Promise.all([c.child(), c.child(), c.child()]);
    const subs = [];
    for (let i = 0; i < N; i++)
      subs.push(await c.submit({ action: { type: "ops.restart", summary: `multi ${i}` } }));
    // Every request reaches a card, or a verdict first (a deadline can pass before a card
    // is out, and then no card is posted).
    await eventually(
      async () => {
        const [row] = await q<{ n: string }>(
          `SELECT count(*) AS n FROM $S.actions a
           WHERE a.status = 'decided' OR EXISTS (SELECT 1 FROM $S.cards c WHERE c.action_id = a.id)`,
        );
        return Number(row!.n) >= N;
      },
      "every request to reach a card or a verdict",
      60_000,
    );
    const cards = await q<{ action_id: string; channel: string; ts: string }>(
      "SELECT c.action_id, c.channel, c.ts FROM $S.cards c JOIN $S.actions a ON a.id = c.action_id WHERE a.status = 'pending'",
    );
    const alice = USERS.find((u) => u.id === "U0ALICE")!;
    // Two thirds get a click, sent round-robin to the three instances; the third
    // instance dies after the first half of the clicks.
    const clicked = cards.filter((_, i) => i % 3 !== 0);
    for (let i = 0; i < clicked.length; i++) {
      if (i === Math.floor(clicked.length / 2)) await nodes[2]!.kill9();
      const target = i >= Math.floor(clicked.length / 2) ? nodes[i % 2]! : nodes[i % 3]!;
      const card = clicked[i]!;
      await c.sim
        .click({
          user: { id: alice.id, team_id: alice.team_id, name: alice.name },
          channel: card.channel,
          ts: card.ts,
          actionId: ACTION_IDS.approve,
          appUrl: `${target.url}/slack/events`,
          signingSecret: SIGNING_SECRET,
        })
        .catch(() => {});
    }
    const results = (await Promise.all(subs.map((s) => waitForJob(s.job, c.queue, c.events, 60_000)))) as {
      verdict: string;
    }[];
    // A click can lose its race with the deadline; every request still ends approved or expired.
    expect(results.filter((r) => r.verdict === "approved").length).toBeGreaterThan(clicked.length / 2);
    expect(results.every((r) => r.verdict === "approved" || r.verdict === "expired")).toBe(true);

    const perAction = await q<{ action_id: string; n: string }>(
      "SELECT action_id, count(*) AS n FROM $S.records GROUP BY action_id HAVING count(*) <> 1",
    );
    expect(perAction).toEqual([]);
    expect(Number((await q<{ n: string }>("SELECT count(*) AS n FROM $S.records"))[0]!.n)).toBe(N);
    const expiredTwice = await q(
      "SELECT action_id FROM $S.events WHERE type = 'expired' GROUP BY action_id HAVING count(*) > 1",
    );
    expect(expiredTwice).toEqual([]);
    const chain = await q<{ seq: string; jws: string }>("SELECT seq, jws FROM $S.records ORDER BY seq");
    chain.forEach((r, i) => {
      const claims = decodeJwt(r.jws) as unknown as RecordClaims;
      expect(claims.seq).toBe(i + 1);
      expect(claims.prev).toBe(i === 0 ? null : jwsDigest(chain[i - 1]!.jws));
    });
    const doubleCards = await q("SELECT action_id FROM $S.cards GROUP BY action_id HAVING count(*) > 1");
    expect(doubleCards).toEqual([]);
    await Promise.all([nodes[0]!.stop(), nodes[1]!.stop()]);
  }, 180_000);
});
