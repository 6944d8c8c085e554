/**
 * Grants across real `countersign serve` processes: 50 concurrent redemptions of one
 * approval spread over three instances on one PostgreSQL answer 200 exactly once; and on
 * SQLite, a process killed with SIGKILL right after answering 200 loses no redemption.
 */
import { afterAll, describe, expect, it } from "vitest";
import { mintProof } from "../../src/records/proof.js";
import { type Chaos, startChaos } from "../support/chaos.js";
import { EXECUTOR_SECRET, EXECUTORS } from "../support/grants.js";
import { BILLING_SECRET, ISSUER, request } from "../support/harness.js";

const chaoses: Chaos[] = [];
afterAll(async () => {
  for (const c of chaoses) await c.stop();
});

async function token(iss: string, secret: string, body: unknown): Promise<string> {
  return mintProof({
    agentId: iss,
    audience: ISSUER,
    key: { kind: "hmac", secret: new TextEncoder().encode(secret) },
    request: body,
  });
}

async function call(
  url: string,
  method: string,
  body: unknown,
  bearer: string,
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers field by field
): Promise<{ status: number; json: any }> {
  const r = await fetch(url, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

/** An approval decided at once by the policy (low-auto), asked of `base`. */
async function approved(base: string) {
  const req = request({ risk_class: "low", action: { type: "crm.read", summary: "Read customer 3" } });
  const r = await call(`${base}/v1/actions`, "POST", req, await token("billing-agent", BILLING_SECRET, req));
  expect(r.json.verdict).toBe("approved");
  return { body: { record: r.json.record as string, request: req }, actionId: r.json.action_id as string };
}

async function redeem(base: string, body: unknown) {
  return call(`${base}/v1/grants/redeem`, "POST", body, await token("payments-api", EXECUTOR_SECRET, body));
}

describe("grants on several instances", () => {
  it("50 concurrent redemptions over three instances on PostgreSQL: exactly one 200", async () => {
    const c = await startChaos({
      postgres: true,
      extra: EXECUTORS,
      env: { PAYMENTS_EXECUTOR_SECRET: EXECUTOR_SECRET },
    });
    chaoses.push(c);
    const nodes = await Promise.all([c.child(), c.child(), c.child()]);
    const g = await approved(nodes[0]!.url);
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => redeem(nodes[i % 3]!.url, g.body)),
    );
    const ok = answers.filter((a) => a.status === 200);
    expect(ok).toHaveLength(1);
    const others = answers.filter((a) => a.status !== 200);
    expect(new Set(others.map((a) => `${a.status} ${a.json.code}`))).toEqual(
      new Set(["409 already_redeemed"]),
    );
    expect(new Set(others.map((a) => a.json.receipt))).toEqual(new Set([ok[0]!.json.receipt]));
  });

  it("a process killed right after answering 200 loses no redemption (SQLite)", async () => {
    const c = await startChaos({ extra: EXECUTORS, env: { PAYMENTS_EXECUTOR_SECRET: EXECUTOR_SECRET } });
    chaoses.push(c);
    const first = await c.child();
    const g = await approved(first.url);
    const r = await redeem(first.url, g.body);
    expect(r.status).toBe(200);
    await first.kill9();
    const second = await c.child();
    const again = await redeem(second.url, g.body);
    expect(again.status).toBe(409);
    expect(again.json.code).toBe("already_redeemed");
    expect(again.json.receipt).toBe(r.json.receipt);
    const get = await call(
      `${second.url}/v1/actions/${g.actionId}`,
      "GET",
      undefined,
      await mintProof({
        agentId: "billing-agent",
        audience: ISSUER,
        key: { kind: "hmac", secret: new TextEncoder().encode(BILLING_SECRET) },
      }),
    );
    expect(get.json.redeemed_at).toBe(again.json.redeemed_at);
  });
});
