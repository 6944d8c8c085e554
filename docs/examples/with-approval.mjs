// with-approval.mjs: a tool function that runs only after people approved this very call.
// Run with: node with-approval.mjs   (pass `refund` as any framework's tool `execute`)
import { withApproval } from "@countersign/sdk";

const baseUrl = process.env.COUNTERSIGN_URL ?? "http://127.0.0.1:3000";
const issuer = process.env.COUNTERSIGN_ISSUER ?? "https://countersign.example.com";

async function refundOrder({ order, amount, currency }) {
  return `refunded ${amount} ${currency} on order ${order}`; // the real refund goes here
}

const refund = withApproval(
  refundOrder,
  // What approvers see; the arguments themselves become the request's details.
  (a) => ({
    type: "payments.refund",
    summary: `Refund ${a.amount} ${a.currency} on order ${a.order}`,
    risk_class: "high",
    region: "eu",
    purpose: "The customer was charged twice",
  }),
  {
    identity: {
      agentId: "billing-agent",
      issuer,
      key: { hmacSecret: process.env.BILLING_AGENT_SECRET ?? "" },
    },
    baseUrl,
    jwks: async () => (await fetch(`${baseUrl}/.well-known/jwks.json`)).json(),
    timeoutMs: 10 * 60_000,
  },
);

// Approved: refundOrder's result. Denied, expired, cancelled or still pending: a
// NotApprovedResult whose `message` tells the model why, and refundOrder never ran.
const result = await refund({ order: "1042", amount: 120, currency: "EUR" });
console.log(typeof result === "string" ? result : `not done: ${result.message}`);
