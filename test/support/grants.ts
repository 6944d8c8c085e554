/** Executors in the test policy, and calls signed as one: shared by the grants tests. */
import { expect } from "vitest";
import { mintProof } from "../../src/records/proof.js";
import { type Harness, ISSUER, request, startHarness, testPolicy } from "./harness.js";

export const EXECUTOR_SECRET = "payments-executor-secret-at-least-32-bytes-long";
export const EXECUTORS = `
executors:
  payments-api:
    auth: { hmac_secret_env: PAYMENTS_EXECUTOR_SECRET }
    may_redeem: ["payments.*", "crm.*"]
    for_agents: [billing-agent]
  deploy-tool:
    auth: { hmac_secret_env: PAYMENTS_EXECUTOR_SECRET }
    may_redeem: ["ops.*"]
`;

export function grantsHarness(o: { validFor?: string } = {}): Promise<Harness> {
  let policy = testPolicy({ extra: EXECUTORS });
  if (o.validFor) policy = policy.replace("approval_valid_for: 15m", `approval_valid_for: ${o.validFor}`);
  return startHarness({ policy, env: { PAYMENTS_EXECUTOR_SECRET: EXECUTOR_SECRET } });
}

/** A POST signed by an executor (or an agent, with `agent`), its proof bound to the body. */
export async function post(
  h: Harness,
  path: string,
  body: unknown,
  o: { executor?: string; agent?: string } = {},
  // biome-ignore lint/suspicious/noExplicitAny: tests read answers field by field
): Promise<{ status: number; json: any }> {
  const token = o.agent
    ? await h.proof(body, { agentId: o.agent })
    : await mintProof({
        agentId: o.executor ?? "payments-api",
        audience: ISSUER,
        key: { kind: "hmac", secret: new TextEncoder().encode(EXECUTOR_SECRET) },
        request: body,
      });
  const r = await fetch(`${h.app.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

/** An approval decided at once by the policy (the low-auto route): its record and request. */
export async function approved(h: Harness): Promise<{ record: string; request: unknown; actionId: string }> {
  const req = request({ risk_class: "low", action: { type: "crm.read", summary: "Read customer 7" } });
  const r = await h.api("POST", "/v1/actions", { body: req });
  expect(r.json.verdict).toBe("approved");
  return { record: r.json.record, request: req, actionId: r.json.action_id };
}
