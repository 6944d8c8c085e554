/**
 * Recovery time after kill -9, with the default leases and locks (issue 19): after a
 * restart, a verdict committed just before the kill is released within 10 s, and work the
 * dead process held (its intake job, the effects leased to it) is taken up within 15 s.
 * Times are measured from the moment the new process is ready; the margins are generous
 * for a loaded machine, but well under the 30 s the old leases and locks took.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { type Chaos, startChaos } from "../support/chaos.js";
import type { Child } from "../support/child.js";
import { eventually, SIGNING_SECRET, USERS } from "../support/harness.js";

let c: Chaos;
beforeAll(async () => {
  // The defaults, not the chaos set-up's short ones: what is measured is the product's.
  c = await startChaos({ env: { QUEUE_LOCK_MS: "", OUTBOX_LEASE_MS: "" } });
});
afterAll(async () => {
  await c?.stop();
});

const alice = USERS.find((u) => u.id === "U0ALICE")!;

async function died(child: Child) {
  await eventually(
    async () => child.proc.exitCode !== null || child.proc.signalCode !== null,
    "the process to die",
    30_000,
  );
}

function row<T>(sql: string, ...args: unknown[]): T | undefined {
  return c
    .db()
    .prepare(sql)
    .get(...args) as T | undefined;
}

describe("recovery time after kill -9 (default leases and locks)", () => {
  it("releases a verdict committed just before the kill within 10 s of the restart", async () => {
    const a = await c.child({ CRASH_POINT: "after_record" });
    const { req, job } = await c.submit();
    const id = await eventually(
      async () => row<{ id: string }>("SELECT id FROM actions WHERE request_id = ?", req.request_id)?.id,
      "the action",
      30_000,
    );
    const card = await eventually(
      async () =>
        row<{ channel: string; ts: string }>("SELECT channel, ts FROM cards WHERE action_id = ?", id),
      "the card",
      30_000,
    );
    await c.sim
      .click({
        user: { id: alice.id, team_id: alice.team_id, name: alice.name },
        channel: card.channel,
        ts: card.ts,
        actionId: ACTION_IDS.approve,
        appUrl: `${a.url}/slack/events`,
        signingSecret: SIGNING_SECRET,
      })
      .catch(() => {}); // the process dies before it answers
    await died(a);
    expect(row<{ n: number }>("SELECT count(*) AS n FROM records WHERE action_id = ?", id)?.n).toBe(1);
    const b = await c.child();
    const ready = Date.now();
    const r = (await job.waitUntilFinished(c.events, 30_000)) as { verdict: string };
    const ms = Date.now() - ready;
    console.info(`recovery: verdict released ${ms} ms after the restart was ready`);
    expect(r.verdict).toBe("approved");
    expect(ms).toBeLessThan(10_000);
    await b.stop();
  }, 90_000);

  it("takes up the intake job and the effects the dead process held within 15 s of the restart", async () => {
    const a = await c.child({ CRASH_POINT: "after_intake" });
    const { req, job } = await c.submit();
    await died(a);
    // The dead process held the job (BullMQ lock) and its first effects (outbox lease).
    expect(await job.getState()).toBe("active");
    const id = row<{ id: string }>("SELECT id FROM actions WHERE request_id = ?", req.request_id)?.id;
    expect(id).toBeDefined();
    const b = await c.child();
    const ready = Date.now();
    await eventually(
      async () => row("SELECT 1 FROM cards WHERE action_id = ?", id),
      "the card, posted by the new process",
      30_000,
    );
    const cardMs = Date.now() - ready;
    await eventually(async () => (await job.getState()) === "delayed", "the job taken up and parked", 30_000);
    const jobMs = Date.now() - ready;
    console.info(`recovery: card posted after ${cardMs} ms, job taken up after ${jobMs} ms`);
    expect(cardMs).toBeLessThan(15_000);
    expect(jobMs).toBeLessThan(15_000);
    await b.stop();
  }, 90_000);
});
