/**
 * `countersign init`: what a new installation needs before `serve`, in one step. A
 * commented starter policy that passes `policy check` as written (so the README's steps
 * run in order), a .env with freshly generated secrets, and the record-signing key.
 *
 * It never overwrites: an existing policy, .env or key may hold the only copy of a secret
 * or of the key that old records verify against, so when any of them exists nothing is
 * written and the error names each one.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { generateKeyFile } from "../adapters/crypto/keyfile.js";
import { packagePath } from "../paths.js";

/** The starter agent's variables, named in the starter policy and filled in the .env. */
const AGENT_SECRET_ENV = "EXAMPLE_AGENT_SECRET";
const AGENT_WEBHOOK_SECRET_ENV = "EXAMPLE_AGENT_WEBHOOK_SECRET";

export class InitRefused extends Error {
  override readonly name = "InitRefused" as const;
}

/** An agent's HMAC secret: 32 random bytes (HS256 needs at least 32), as base64url text. */
export function agentSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** A Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes. */
export function webhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

export function starterPolicy(): string {
  return `# Countersign's policy: who approves which agent actions. Written by \`countersign init\`.
# Replace the example Slack ids (T..., U..., C..., S...) with your workspace's, then run
# \`npx countersign policy check\`: it prints every problem with its line and column.
# Slack ids: a user's profile, "..." menu, "Copy member ID"; a channel's details, at the bottom.

# Records say they were issued by this name; agents check it. Your service's URL is a good one.
issuer: https://countersign.example.com
slack: { team_id: T0EXAMPLE }              # votes from other workspaces are refused
risk_classes: [low, medium, high, critical]   # in rising order
regions:                                   # the region's time zone runs business hours
  eu: { tz: Europe/Berlin }
  us: { tz: America/New_York }
# Durations: 90s, 30m, 4h, 2d. Nothing is ever approved by silence: a deadline denies or escalates.
defaults: { timeout: 30m, on_timeout: deny, approval_valid_for: 15m, max_pending: 100 }
actions:                                   # a floor under the agent's own risk class
  payments.refund: { min_risk: high }

agents:
  example-agent:
    owners: { technical: U0EXAMPLEOWNER }  # routes can name owners by role
    auth: { hmac_secret_env: ${AGENT_SECRET_ENV} }   # or { public_key_file: keys/agent.pub.pem }
    webhook_secret_env: ${AGENT_WEBHOOK_SECRET_ENV}  # signs callbacks (whsec_..., see .env)
    callback_origins: [https://agent.example.com]   # where its callback_url may point
    allowed_actions: ["payments.*", "crm.read"]
    max_pending: 20

routes:                                    # first match wins; no match: denied (no_route)
  # Low-risk reads need nobody: approved by the policy itself, still signed and logged.
  - name: low-risk-reads
    when: { risk_class: [low], action: ["crm.read"] }
    auto: approve
  # Payments need two of the listed people; after 30 minutes the CFO is asked.
  # Votes carry over an escalation and count towards the next level's quorum.
  # step_up: passkey on the route (or on one escalation level) has each approval there
  # confirmed with the approver's own passkey; it needs PUBLIC_URL in .env.
  - name: payments
    when: { action: ["payments.*"] }
    approvers: { users: [U0EXAMPLEALICE, U0EXAMPLEBOB], owners: [technical] }
    channel: C0EXAMPLEAPPROVALS
    quorum: 2
    timeout: 30m
    on_timeout: escalate                   # deny | escalate
    escalation:
      - { approvers: { users: [U0EXAMPLECFO] }, quorum: 1, timeout: 15m }
`;
}

/**
 * The .env: .env.example with its comments, the generated secrets filled in, and the
 * starter agent's two variables added after it.
 */
export function starterEnv(): string {
  const example = fs.readFileSync(packagePath(".env.example"), "utf8");
  const auditorToken = randomBytes(24).toString("base64url");
  const filled = example.replace(/^AUDITOR_TOKENS=.*$/m, `AUDITOR_TOKENS=${auditorToken}`);
  return `${filled.trimEnd()}

# The starter policy's agent (written by \`countersign init\`): its HMAC secret (the agent
# signs its proofs with it; give it to the agent) and its webhook secret (callbacks are
# signed with it; the agent verifies them). \`npx countersign agent secret\` prints new ones.
${AGENT_SECRET_ENV}=${agentSecret()}
${AGENT_WEBHOOK_SECRET_ENV}=${webhookSecret()}
`;
}

export interface InitResult {
  readonly written: readonly string[];
}

/** Writes policy.yml, .env and data/signing-key.pem under `dir`, or nothing if any exists. */
export function runInit(dir: string): InitResult {
  const files = {
    policy: path.join(dir, "policy.yml"),
    env: path.join(dir, ".env"),
    key: path.join(dir, "data", "signing-key.pem"),
  };
  const existing = Object.values(files).filter((f) => fs.existsSync(f));
  if (existing.length > 0) {
    throw new InitRefused(
      `not overwriting ${existing.join(", ")}: nothing was written (move ${existing.length > 1 ? "them" : "it"} away to start afresh)`,
    );
  }
  // wx: a file that appeared since the check above is still never overwritten.
  fs.writeFileSync(files.policy, starterPolicy(), { flag: "wx" });
  // The .env holds secrets: readable by its owner only.
  fs.writeFileSync(files.env, starterEnv(), { flag: "wx", mode: 0o600 });
  generateKeyFile(files.key);
  return { written: [files.policy, files.env, files.key] };
}
