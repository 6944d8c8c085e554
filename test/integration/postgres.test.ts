/**
 * What only PostgreSQL needs: several decisions committing at once through the whole app,
 * each on its own pooled connection, must still make one gapless chain (the store
 * serialises them on an advisory lock; SQLite has one writer and cannot show this).
 *
 * The rest of the product on PostgreSQL is the whole integration suite, run by the
 * postgres project in vitest.config.ts; the Store contract in test/db runs every method on
 * both stores, and test/chaos/instances.test.ts runs several processes on one database.
 */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RecordClaims } from "../../src/domain/types.js";
import { jwsDigest } from "../../src/records/signing.js";
import { waitForJob } from "../../src/sdk/finished.js";
import { type Harness, request, startHarness, testStore } from "../support/harness.js";

// Run by the postgres project only; the sqlite project would merely repeat it.
describe.skipIf(testStore() !== "postgres")("on PostgreSQL", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("keeps one gapless chain when the app decides many requests at once", async () => {
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const req = request({ risk_class: "low", action: { type: "crm.read", summary: `read ${i}` } });
        // The SDK's shared waiter: forty of BullMQ's own waits would trip MaxListenersExceededWarning.
        await waitForJob(await h.submit(req), h.queue, h.events, 20_000);
      }),
    );
    const rows = await h.sql<{ seq: number; jws: string }>("SELECT seq, jws FROM records ORDER BY seq");
    expect(rows).toHaveLength(40);
    rows.forEach((r, i) => {
      const c = decodeJwt(r.jws) as unknown as RecordClaims;
      expect([r.seq, c.seq]).toEqual([i + 1, i + 1]);
      expect(c.prev).toBe(i === 0 ? null : jwsDigest(rows[i - 1]!.jws));
    });
  });
});
