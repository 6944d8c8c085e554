/**
 * withApproval given the executor's options redeems through the grants API before the
 * tool body runs. Against a real Countersign: an executor it does not accept (unknown, or
 * a server without the grants API) is refused there, so the body never runs.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { GrantRefused, type JWKS, TransportError, withApproval } from "../../src/sdk/index.js";
import { BILLING_SECRET, type Harness, ISSUER, startHarness } from "../support/harness.js";

let h: Harness;
let jwks: JWKS;

beforeAll(async () => {
  h = await startHarness();
  jwks = (await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json()) as JWKS;
});
afterAll(async () => {
  await h?.stop();
});

it("an approval Countersign will not redeem for this executor never runs the body", async () => {
  const ran: unknown[] = [];
  const requestId = `grants-${Math.random().toString(36).slice(2)}`;
  const refund = withApproval(
    async (a: { order: string; amount: number }) => {
      ran.push(a);
      return "refunded";
    },
    (a) => ({
      type: "payments.refund",
      summary: `Refund ${a.amount} EUR on order ${a.order}`,
      risk_class: "high",
      region: "eu",
      purpose: "The customer was charged twice",
      request_id: requestId,
    }),
    {
      identity: { agentId: "billing-agent", issuer: ISSUER, key: { hmacSecret: BILLING_SECRET } },
      baseUrl: h.app.url,
      jwks,
      timeoutMs: 60_000,
      executor: {
        identity: { executorId: "no-such-executor", issuer: ISSUER, key: { hmacSecret: "x".repeat(40) } },
        baseUrl: h.app.url,
        jwks,
      },
    },
  );
  const call = refund({ order: "C-1", amount: 30 });
  call.catch(() => undefined);
  const card = await h.card(requestId);
  await h.click("U0ALICE", card, ACTION_IDS.approve);
  await h.click("U0BOB", card, ACTION_IDS.approve);
  const err = await call.then(
    () => null,
    (e: unknown) => e,
  );
  // Refused by the grants API (or, on a server without it, its 404): never a TypeError
  // from an executor object that was not wired, and never a run.
  expect(err instanceof GrantRefused || err instanceof TransportError, String(err)).toBe(true);
  expect(ran).toEqual([]);
}, 60_000);
