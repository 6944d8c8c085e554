/**
 * The product set up for measuring: a policy with one approval route and agents enough
 * for 100k pending requests within ordinary limits, agent proofs minted ahead of the
 * clock, and the settings that differ from production, each with its reason.
 */
import { randomBytes } from "node:crypto";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { NewAction, UnchainedClaims } from "../src/app/ports.js";
import { requestDigest } from "../src/domain/canonical.js";
import type { DecisionOutcome } from "../src/domain/decision.js";
import { newId } from "../src/domain/ids.js";
import type { ActionRequest } from "../src/domain/types.js";
import { mintProof } from "../src/records/proof.js";
import { BILLING_SECRET, ISSUER, request, TEAM } from "../test/support/harness.js";
import { deleteKeys, releasePrefix } from "./lib.js";

export interface BenchPolicy {
  /** Level 0 timeout, e.g. "30m". */
  readonly timeout?: string;
  /**
   * Business hours in UTC that open at `open` (HH:MM) for one minute: every request that
   * arrives before then starts its clock at the same instant, so all its deadlines fall
   * due together.
   */
  readonly opensAt?: string;
  /** A webhook receiver the agent may call back (loopback, so allow_private). */
  readonly callbackOrigin?: string;
}

export const CHANNEL = "C0BENCH";

/**
 * 100,000 pending requests are spread over this many agents (1,000 each), with
 * max_pending AGENT_LIMIT (some headroom): a pending limit is per agent, and one agent
 * with a limit of 100k would measure a configuration nobody runs (the pending check
 * counts up to the limit).
 */
export const AGENTS = 100;
const AGENT_LIMIT = 1_200;

export function agentId(i: number): string {
  return `bench-agent-${i % AGENTS}`;
}

/** AGENTS agents sharing one secret, one route, quorum 1: a click by U0ALICE decides. */
export function benchPolicy(p: BenchPolicy = {}): string {
  const hours = p.opensAt
    ? `\n    business_hours: { days: [mon, tue, wed, thu, fri, sat, sun], start: "${p.opensAt}", end: "${minuteAfter(p.opensAt)}" }`
    : "";
  const callback = p.callbackOrigin
    ? `, webhook_secret_env: BILLING_AGENT_WEBHOOK_SECRET, callback_origins: [{ origin: "${p.callbackOrigin}", allow_private: true }]`
    : "";
  const agents = Array.from(
    { length: AGENTS },
    (_, i) =>
      `  ${agentId(i)}: { owners: { technical: U0TECH }, auth: { hmac_secret_env: BILLING_AGENT_SECRET }, ` +
      `allowed_actions: ["payments.*"], regions: [eu], max_pending: ${AGENT_LIMIT}${callback} }`,
  ).join("\n");
  return `
issuer: ${ISSUER}
slack: { team_id: ${TEAM} }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: UTC }
defaults: { timeout: 30m, on_timeout: deny, approval_valid_for: 15m, max_pending: 100 }
agents:
${agents}
routes:
  - name: bench
    when: { action: ["payments.*"] }
    approvers: { users: [U0ALICE, U0BOB] }
    channel: ${CHANNEL}
    quorum: 1
    timeout: ${p.timeout ?? "30m"}
    on_timeout: deny${hours}
`;
}

function minuteAfter(hhmm: string): string {
  const m = Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5)) + 1;
  return m >= 24 * 60
    ? "24:00"
    : `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
}

/**
 * Environment beside the harness's: the per-channel pacing of chat.postMessage (Slack's
 * one message a second) is opened up, since the stand-in has no such limit and the
 * measures are of Countersign's own work. With real Slack, one channel takes about one
 * card a second whatever Countersign does.
 */
export const UNPACED_ENV: Readonly<Record<string, string>> = {
  SLACK_CHANNEL_RATE: "1000",
  SLACK_CHANNEL_BURST: "1000",
};

const hmac = { kind: "hmac" as const, secret: new TextEncoder().encode(BILLING_SECRET) };

export interface Submission {
  readonly request: ActionRequest;
  readonly proof: string;
}

/**
 * Requests with their proofs. Proofs live at most 5 minutes from minting, so callers mint
 * a batch just before adding it.
 */
let nextAgent = 0;

/** Requests from the agents in turn, so each agent's share of the pending stays even. */
export async function submissions(n: number, over: Partial<ActionRequest> = {}): Promise<Submission[]> {
  const out: Submission[] = [];
  for (let i = 0; i < n; i++) {
    const agent = agentId(nextAgent++);
    const req = { ...request({ agent_id: agent }), ...over } as ActionRequest;
    out.push({
      request: req,
      proof: await mintProof({
        agentId: agent,
        audience: ISSUER,
        key: hmac,
        request: req,
        ttlSeconds: 300,
      }),
    });
  }
  return out;
}

/** Removes a queue's keys under a prefix of ours (never the shared Redis as a whole). */
export async function dropPrefix(redis: Redis, prefix: string, queues: readonly string[]): Promise<void> {
  for (const name of queues) {
    const q = new Queue(name, { connection: redis, prefix });
    await q.obliterate({ force: true }).catch(() => {});
    await q.close();
  }
  await deleteKeys(redis, `${prefix}:*`);
  releasePrefix(prefix);
}

/** A decided action as the store holds it: the row, and its record's claims before seq and prev. */
export interface VerdictFixture {
  readonly action: NewAction;
  readonly claims: UnchainedClaims;
  readonly outcome: DecisionOutcome;
}

/**
 * The action columns both raw baselines write (records, audit), in their statements'
 * order: id, agent_id, request_id, request_json, request_sha256, action_type, risk_class,
 * region, route_name, eligible_json, deadline_at, policy_sha256, requested_at.
 */
export function rawActionValues(a: NewAction): (string | number | null)[] {
  return [
    a.id,
    a.agentId,
    a.requestId,
    JSON.stringify(a.request),
    a.requestSha256,
    a.actionType,
    a.riskClass,
    a.region,
    a.routeName,
    JSON.stringify(a.eligible),
    a.deadlineAt,
    a.policySha256,
    a.requestedAt,
  ];
}

/**
 * An approved refund with one vote: the typical record's shape and size, built the way
 * Approvals builds it (src/app/approvals.ts `claims`), without the Slack round trips.
 */
export function verdictFixture(now: Date, policySha256 = "0".repeat(43)): VerdictFixture {
  const req = request({ region: "eu" });
  const t = now.getTime();
  const action: NewAction = {
    id: newId("act", t, randomBytes),
    agentId: req.agent_id,
    requestId: req.request_id,
    request: req,
    requestSha256: requestDigest(req),
    actionType: req.action.type,
    riskClass: req.risk_class,
    region: req.region,
    routeName: "bench",
    level: 0,
    quorum: 1,
    eligible: ["U0ALICE", "U0BOB"],
    deadlineAt: t + 30 * 60_000,
    capAt: null,
    policySha256,
    requestedAt: t - 60_000,
  };
  const outcome: DecisionOutcome = { verdict: "approved", reasonCode: "approvers", reasonText: "" };
  const decidedAt = new Date(Math.floor(t / 1000) * 1000);
  const claims: UnchainedClaims = {
    ver: 1,
    iss: ISSUER,
    sub: action.agentId,
    jti: newId("dec", t, randomBytes),
    iat: Math.floor(t / 1000),
    action_id: action.id,
    request_id: action.requestId,
    action_type: req.action.type,
    summary: req.action.summary,
    action_sha256: action.requestSha256,
    risk_class: action.riskClass,
    region: action.region,
    purpose: req.purpose,
    systems: req.action.systems ?? [],
    on_behalf_of: null,
    verdict: outcome.verdict,
    reason_code: outcome.reasonCode,
    reason_text: outcome.reasonText,
    route: { name: action.routeName, quorum: action.quorum, escalation_level: 0 },
    eligible: action.eligible ?? [],
    votes: [
      {
        user: "U0ALICE",
        team: TEAM,
        email: "alice@example.com",
        real_name: "Alice Approver",
        vote: "approve",
        at: new Date(t - 1000).toISOString(),
      },
    ],
    requested_at: new Date(action.requestedAt).toISOString(),
    decided_at: decidedAt.toISOString(),
    valid_until: new Date(decidedAt.getTime() + 15 * 60_000).toISOString(),
    policy_sha256: policySha256,
  };
  return { action, claims, outcome };
}
