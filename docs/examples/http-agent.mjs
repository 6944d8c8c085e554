// http-agent.mjs: ask before a refund, over the HTTP API, with plain Node 20.
// Run with: node http-agent.mjs   (after: npm install @countersign/sdk)
//
// COUNTERSIGN_URL is where the API is served (the SDK's baseUrl); COUNTERSIGN_ISSUER is the
// policy's `issuer`, the name records are signed under (the proof's aud, the record's iss).
// The two are often the same text, and need not be.
import { randomUUID } from "node:crypto";
import { Denied, Rejected, requestApproval, TransportError, WaitTimeout } from "@countersign/sdk";

const baseUrl = process.env.COUNTERSIGN_URL ?? "http://127.0.0.1:3000";
const issuer = process.env.COUNTERSIGN_ISSUER ?? "https://countersign.example.com";
// Fetching the keys from the server you ask trusts that server; in production pin a copy.
const jwks = await (await fetch(`${baseUrl}/.well-known/jwks.json`)).json();

const request = {
  // Your idempotency key: one per action you mean to take. Sending the same id with other
  // content is refused (request_id_conflict), so never reuse one for a different refund.
  request_id: `refund-order-1042-${randomUUID()}`,
  agent_id: "billing-agent",
  action: { type: "payments.refund", summary: "Refund EUR 120.00 to order 1042", details: { amount: 120 } },
  risk_class: "high",
  region: "eu",
  purpose: "The customer was charged twice for the same order",
};

try {
  const handle = await requestApproval(request, {
    identity: {
      agentId: "billing-agent",
      issuer,
      key: { hmacSecret: process.env.BILLING_AGENT_SECRET ?? "" },
    },
    transport: { kind: "http", baseUrl },
    jwks,
  });
  console.log(`asked: action ${handle.actionId}`);
  for (;;) {
    try {
      const { claims } = await handle.verdict({ timeoutMs: 10 * 60_000 });
      console.log(`approved: action ${claims.action_id} by ${claims.votes.map((v) => v.user).join(", ")}`);
      break; // act now, once, before claims.valid_until
    } catch (e) {
      if (e instanceof WaitTimeout) continue; // still pending: wait again
      throw e;
    }
  }
} catch (e) {
  if (e instanceof Denied) console.log(`denied: ${e.reasonText}`);
  else if (e instanceof Rejected) console.log(`refused (${e.code}): ${e.message}`);
  else if (e instanceof TransportError) console.log(`could not ask: ${e.message}`, e.cause ?? "");
  else throw e;
  process.exitCode = 1;
}
