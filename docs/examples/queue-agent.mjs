// queue-agent.mjs: ask on Countersign's BullMQ queue. Run with: node queue-agent.mjs
import { randomUUID } from "node:crypto";
import { Denied, requestApproval } from "@countersign/sdk";
import { Queue, QueueEvents } from "bullmq";

const connection = { url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" };
const prefix = process.env.QUEUE_PREFIX ?? "bull"; // Countersign's QUEUE_PREFIX and INTAKE_QUEUE
const queue = new Queue("approval-requests", { connection, prefix });
const queueEvents = new QueueEvents("approval-requests", { connection, prefix });
const jwks = JSON.parse(process.env.COUNTERSIGN_JWKS ?? "{}"); // pinned: Redis is shared, only the signature counts
const request = {
  request_id: `restart-billing-${randomUUID()}`, // one id per action you mean to take
  agent_id: "billing-agent",
  action: { type: "ops.restart", summary: "Restart the billing service", details: { service: "billing" } },
  risk_class: "high",
  region: "us",
  purpose: "The billing service stopped answering health checks",
};
const identity = {
  agentId: "billing-agent",
  issuer: process.env.COUNTERSIGN_ISSUER ?? "https://countersign.example.com", // the policy's issuer
  key: { hmacSecret: process.env.BILLING_AGENT_SECRET ?? "" },
};
try {
  const handle = await requestApproval(request, {
    identity,
    transport: { kind: "queue", queue, queueEvents },
    jwks,
  });
  const { claims } = await handle.verdict(); // resolves only for a verified approval
  console.log(`approved: action ${claims.action_id}, valid until ${claims.valid_until}`);
} catch (e) {
  if (!(e instanceof Denied)) throw e; // Expired, Cancelled, Rejected, InvalidRecord, TransportError
  console.log(`denied: ${e.reasonText}`);
} finally {
  await queueEvents.close();
  await queue.close();
}
