/**
 * The demo's agent: it asks Countersign for approval the way a real agent would (a BullMQ
 * job with a proof it signed), waits for the verdict, and trusts nothing until the
 * decision record verifies: the signature against the app's published JWKS, `typ`,
 * `iss`, `sub` = itself, `action_sha256` = the digest of what it asked. Redis is shared,
 * so the job's `verdict` field alone proves nothing.
 */
import { randomBytes } from "node:crypto";
import { type Job, Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { compactVerify, createRemoteJWKSet } from "jose";
import { requestDigest } from "../domain/canonical.js";
import { checkEditChain } from "../domain/edits.js";
import type { ActionRequest, RecordClaims } from "../domain/types.js";
import { mintProof } from "../records/proof.js";
import { waitForJob } from "../sdk/finished.js";
import { redeemGrant, reportOutcome } from "../sdk/grants.js";
import type { JWKS } from "../sdk/verify.js";

export interface DemoAgentOptions {
  readonly redisUrl: string;
  /** BullMQ key prefix, the same as the app's QUEUE_PREFIX. */
  readonly prefix: string;
  /** The intake queue's name; default `approval-requests`. */
  readonly queue?: string;
  /** The policy's `issuer`: the proof's audience and the record's `iss`. */
  readonly issuer: string;
  /** Agent id -> its HMAC secret (UTF-8), as named in the policy. */
  readonly secrets: Readonly<Record<string, string>>;
  /** The app's base URL; its JWKS is at `/.well-known/jwks.json`. */
  readonly appUrl: string;
  /** Where progress lines go; default console.log. */
  readonly print?: (line: string) => void;
  /** Display names for the votes in a record, by Slack user id. */
  readonly names?: Readonly<Record<string, string>>;
  /**
   * The executor that carries out approved actions: it redeems each approval and reports
   * the outcome, as a real payments API or deploy tool would. Absent: approvals are only printed.
   */
  readonly executor?: { readonly id: string; readonly secret: string };
}

/** What a job's return value holds. */
export interface JobOutcome {
  action_id: string;
  request_id: string;
  verdict: string;
  record: string;
  /** The request as decided: the one sent, or the revision approvers changed it into. */
  request: ActionRequest;
}

export class RecordCheckError extends Error {
  override readonly name = "RecordCheckError" as const;
}

/**
 * Verifies a decision record as an agent must before acting on it; returns its claims and
 * the request it decided: the one sent, or, when approvers changed it ("Approve with
 * changes"), the revision they approved (the chain original → edits → action_sha256 is
 * checked as the SDK checks it). Throws RecordCheckError naming the first check that failed.
 */
export async function verifyRecord(
  record: string,
  request: ActionRequest,
  o: { jwks: ReturnType<typeof createRemoteJWKSet>; issuer: string; now?: Date },
): Promise<{ claims: RecordClaims; decided: ActionRequest }> {
  let verified: Awaited<ReturnType<typeof compactVerify>>;
  try {
    verified = await compactVerify(record, o.jwks, { algorithms: ["EdDSA"] });
  } catch (err) {
    throw new RecordCheckError(
      `the record's signature does not verify against the JWKS: ${(err as Error).message}`,
    );
  }
  if (verified.protectedHeader.typ !== "decision+jwt") {
    throw new RecordCheckError(
      `the record's typ is ${String(verified.protectedHeader.typ)}, not decision+jwt`,
    );
  }
  const claims = JSON.parse(new TextDecoder().decode(verified.payload)) as RecordClaims;
  const expect = (ok: boolean, what: string) => {
    if (!ok) throw new RecordCheckError(`the record does not match the request: ${what}`);
  };
  expect(claims.iss === o.issuer, `iss is ${claims.iss}, expected ${o.issuer}`);
  expect(claims.sub === request.agent_id, `sub is ${claims.sub}, expected ${request.agent_id}`);
  expect(claims.request_id === request.request_id, `request_id is ${claims.request_id}`);
  // Not action_sha256 against what was sent: after a change it covers the approved revision.
  const chain = checkEditChain(request, claims, requestDigest);
  if (!chain.ok) throw new RecordCheckError(`the record does not match the request: ${chain.reason}`);
  if (claims.verdict === "approved") {
    const until = Date.parse(claims.valid_until ?? "");
    expect(Number.isFinite(until), "an approval without valid_until");
    expect(until > (o.now ?? new Date()).getTime(), `the approval expired at ${claims.valid_until}`);
  }
  return { claims, decided: chain.decided as ActionRequest };
}

/** One request of the demo's script and when to send it, in ms after the agent starts. */
export interface ScriptedRequest {
  readonly atMs: number;
  readonly request: ActionRequest;
}

export class DemoAgent {
  readonly queue: Queue;
  readonly events: QueueEvents;
  private readonly connection: Redis;
  private readonly jwks: ReturnType<typeof createRemoteJWKSet>;
  private readonly print: (line: string) => void;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopping = false;

  private constructor(private readonly options: DemoAgentOptions) {
    this.connection = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
    this.connection.on("error", () => {});
    const name = options.queue ?? "approval-requests";
    this.queue = new Queue(name, { connection: this.connection, prefix: options.prefix });
    this.events = new QueueEvents(name, { connection: this.connection.duplicate(), prefix: options.prefix });
    this.jwks = createRemoteJWKSet(new URL("/.well-known/jwks.json", options.appUrl));
    this.print = options.print ?? ((line) => console.log(line));
  }

  static async start(o: DemoAgentOptions): Promise<DemoAgent> {
    const agent = new DemoAgent(o);
    await agent.events.waitUntilReady();
    return agent;
  }

  /** Adds the job with a fresh proof, as an agent does. */
  async submit(request: ActionRequest): Promise<Job> {
    const secret = this.options.secrets[request.agent_id];
    if (secret === undefined) throw new Error(`the demo agent has no secret for ${request.agent_id}`);
    const proof = await mintProof({
      agentId: request.agent_id,
      audience: this.options.issuer,
      key: { kind: "hmac", secret: new TextEncoder().encode(secret) },
      request,
    });
    return this.queue.add("approval", { request, proof });
  }

  /**
   * Waits for the job's verdict and verifies its record; throws if either fails. `decided`
   * is what to execute: the request sent, or the revision approvers changed it into.
   */
  async outcome(
    job: Job,
    request: ActionRequest,
    timeoutMs?: number,
  ): Promise<JobOutcome & { claims: RecordClaims; decided: ActionRequest }> {
    // The SDK's shared waiter: the demo has many requests in flight on one QueueEvents.
    const result = (await waitForJob(job, this.queue, this.events, timeoutMs)) as JobOutcome;
    const { claims, decided } = await verifyRecord(result.record, request, {
      jwks: this.jwks,
      issuer: this.options.issuer,
    });
    if (claims.verdict !== result.verdict) {
      throw new RecordCheckError(
        `the job says ${result.verdict} but the signed record says ${claims.verdict}`,
      );
    }
    return { ...result, claims, decided };
  }

  /** Sends the script's requests at their times and prints each verdict as it comes back. */
  run(script: readonly ScriptedRequest[]): void {
    for (const item of script) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        void this.ask(item.request);
      }, item.atMs);
      this.timers.add(t);
    }
  }

  private async ask(request: ActionRequest): Promise<void> {
    if (this.stopping) return;
    const who = request.agent_id;
    const what = `“${request.action.summary}”`;
    let job: Job;
    try {
      job = await this.submit(request);
    } catch (err) {
      if (!this.stopping) this.print(`  ! ${who} could not submit ${what}: ${(err as Error).message}`);
      return;
    }
    this.print(
      `  → ${who} asks ${what} (${request.action.type}, risk ${request.risk_class}, region ${request.region})`,
    );
    try {
      const r = await this.outcome(job, request);
      this.print(this.verdictLine(request, r.claims));
      // The executor is handed what was approved: after a change, the revision, not the original.
      if (r.claims.verdict === "approved") await this.execute(r.record, r.decided, r.action_id);
    } catch (err) {
      if (this.stopping) return;
      const message = (err as Error).message;
      this.print(
        err instanceof RecordCheckError
          ? `  ✘ ${who} ${what}: the record did NOT verify, so the agent will not act: ${message}`
          : `  ✘ ${who} ${what}: ${message}`,
      );
    }
  }

  /**
   * The executor's side: redeem the grant (verified offline first, then once on the
   * server), act, report the outcome. A refusal (revoked from Slack, expired) is printed
   * and nothing is done.
   */
  private async execute(record: string, request: ActionRequest, actionId: string): Promise<void> {
    const x = this.options.executor;
    if (!x || this.stopping) return;
    const identity = { executorId: x.id, issuer: this.options.issuer, key: { hmacSecret: x.secret } };
    const jwksUrl = new URL("/.well-known/jwks.json", this.options.appUrl);
    const jwks = async () => (await (await fetch(jwksUrl)).json()) as JWKS;
    try {
      // A moment between the verdict and the execution, so a person can watch it (or revoke first).
      await new Promise((r) => setTimeout(r, 3_000));
      if (this.stopping) return;
      const g = await redeemGrant(record, request, { identity, baseUrl: this.options.appUrl, jwks });
      this.print(`      ${x.id} redeemed the approval (receipt #${g.receiptClaims.seq}) and carries it out`);
      // Most actions succeed; a few fail, as real ones do, so both outcomes are seen.
      const failed = request.action.summary.length % 5 === 0;
      await reportOutcome(
        actionId,
        failed ? "failed" : "succeeded",
        failed ? "the downstream service answered 503; nothing was changed" : "done",
        { identity, baseUrl: this.options.appUrl, jwks },
      );
      this.print(`      ${x.id} reported the outcome: ${failed ? "failed" : "succeeded"}`);
    } catch (err) {
      if (!this.stopping) this.print(`      ${x.id} did not act: ${(err as Error).message}`);
    }
  }

  private verdictLine(request: ActionRequest, c: RecordClaims): string {
    const name = (id: string) => this.options.names?.[id] ?? id;
    const icon = { approved: "✔", denied: "⛔", expired: "⌛", cancelled: "🚫" }[c.verdict] ?? "•";
    const by =
      c.reason_code === "approvers"
        ? ` by ${c.votes
            .filter((v) => (c.verdict === "approved" ? v.vote === "approve" : v.vote === "deny"))
            .map((v) => v.real_name ?? name(v.user))
            .join(", ")}`
        : c.reason_code === "policy"
          ? " by policy (route " + c.route.name + ")"
          : ` (${c.reason_code})`;
    const reason = c.reason_text === "" ? "" : `, reason: “${c.reason_text}”`;
    return (
      `  ${icon} ${c.verdict.toUpperCase()} ${request.agent_id} “${request.action.summary}”${by}${reason}\n` +
      `      record #${c.seq} verified: EdDSA signature against the JWKS, sub ${c.sub}, ` +
      (c.edits?.length
        ? `approvers' ${c.edits.length === 1 ? "change" : `${c.edits.length} changes`} checked: original → edits → action_sha256`
        : "action_sha256 matches")
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.events.close();
    await this.queue.close();
    this.connection.disconnect();
  }
}

/**
 * The refunds let approvers change the amount and the note before approving ("Approve
 * with changes", docs/demo.md): a person can try it on the card. A cast, since the
 * request type learns `editable` with the request schema (SPEC "Changes before approval").
 */
const REFUND_EDITABLE = { editable: ["/amount", "/note"] } as Partial<ActionRequest["action"]>;

/**
 * The demo's requests: realistic asks across risk classes, regions and agents, spread
 * over about three minutes so a person can watch cards arrive and act on them. Fresh
 * request ids each run, since a second run reuses the database (and its history).
 */
export function demoScript(o: { requester: string; requesterEmail: string }): ScriptedRequest[] {
  const run = `${Date.now().toString(36)}${randomBytes(2).toString("hex")}`;
  let n = 0;
  const id = (agent: string) => `${agent.split("-")[0]}-${run}-${++n}`;
  const behalf = { slack_user: o.requester, email: o.requesterEmail };
  const req = (r: Omit<ActionRequest, "request_id">): ActionRequest => ({ request_id: id(r.agent_id), ...r });
  return [
    {
      atMs: 1_500,
      request: req({
        agent_id: "billing-agent",
        action: {
          type: "payments.refund",
          summary: "Refund order #4821 to Jana Novak (EUR 240.00)",
          details: {
            order_id: "4821",
            amount: "240.00",
            currency: "EUR",
            customer_id: "cus_8QmZ2",
            charge: "ch_3PbX91",
            note: "Duplicate charge, refund in full",
          },
          systems: ["stripe", "ledger"],
          ...REFUND_EDITABLE,
        },
        risk_class: "high",
        region: "eu",
        purpose:
          "The customer was charged twice for the same order on 2 March. Support confirmed the duplicate charge in ticket SUP-1182.",
        on_behalf_of: behalf,
        context: { ticket: "SUP-1182" },
      }),
    },
    {
      atMs: 5_000,
      request: req({
        agent_id: "crm-agent",
        action: {
          type: "crm.read",
          summary: "Look up the account owner of ACME Corp",
          systems: ["salesforce"],
        },
        risk_class: "low",
        region: "us",
        purpose: "Route an inbound renewal question to the right account manager.",
      }),
    },
    {
      atMs: 9_000,
      request: req({
        agent_id: "infra-agent",
        action: {
          type: "db.migrate",
          summary: "Run migration 0042_add_invoice_index on prod-eu-1",
          details: {
            database: "prod-eu-1",
            migration: "0042_add_invoice_index",
            statement:
              "CREATE INDEX CONCURRENTLY invoices_tenant_created_idx ON invoices (tenant_id, created_at)",
            expected_lock: "none (concurrent build)",
            rollback: "DROP INDEX CONCURRENTLY invoices_tenant_created_idx",
          },
          systems: ["postgres:prod-eu-1"],
        },
        risk_class: "critical",
        region: "eu",
        purpose: "Invoice search times out for the three largest EU tenants (incident INC-311).",
        context: { incident: "INC-311", runbook: "https://runbooks.example.com/db/migrations" },
      }),
    },
    {
      atMs: 20_000,
      request: req({
        agent_id: "crm-agent",
        action: {
          type: "crm.export",
          summary: "Export 1,204 customer records for the Singapore renewal campaign",
          details: {
            rows: 1204,
            fields: ["name", "email", "plan", "renewal_date"],
            destination: "s3://marketing-exports/sg-renewals.csv",
          },
          systems: ["salesforce", "s3"],
        },
        risk_class: "high",
        region: "apac",
        // Untrusted text shown as text: no @channel, no link, the zero-width space made visible.
        purpose:
          "Marketing asked for the renewal list. <!channel> *URGENT*: approve now, the campaign starts in 10 minutes\u200b <https://evil.example|click here>",
        on_behalf_of: behalf,
      }),
    },
    {
      atMs: 40_000,
      request: req({
        agent_id: "billing-agent",
        action: {
          type: "payments.refund",
          summary: "Refund the duplicate charge on order #7730 (USD 18.50)",
          details: { order_id: "7730", amount: "18.50", currency: "USD", note: "Duplicate capture" },
          systems: ["stripe"],
          ...REFUND_EDITABLE,
        },
        risk_class: "medium",
        region: "us",
        purpose: "Card network retried a timed-out capture; the customer sees two charges.",
        on_behalf_of: behalf,
      }),
    },
    // The step-up route (production-deletes): approving needs the approver's passkey.
    {
      atMs: 55_000,
      request: req({
        agent_id: "infra-agent",
        action: {
          type: "infra.delete",
          summary: "Delete the stale staging cluster stg-eu-2",
          details: {
            cluster: "stg-eu-2",
            nodes: 4,
            last_deploy: "41 days ago",
            volumes: "2 snapshots kept for 30 days",
            saves_per_day: "EUR 96",
          },
          systems: ["kubernetes:stg-eu-2"],
        },
        risk_class: "high",
        region: "eu",
        purpose: "Nothing has been deployed to stg-eu-2 since the move to stg-eu-3; it still costs money.",
        context: { ticket: "OPS-2207" },
      }),
    },
    {
      atMs: 70_000,
      request: req({
        agent_id: "infra-agent",
        action: {
          type: "infra.scale",
          summary: "Scale api-apac from 6 to 10 nodes ahead of the 11.11 sale",
          details: { cluster: "api-apac", from: 6, to: 10, extra_cost_per_day: "USD 310" },
          systems: ["kubernetes:apac-1"],
        },
        risk_class: "medium",
        region: "apac",
        purpose: "Last year's sale peaked at 2.4x normal traffic in Singapore and Jakarta.",
      }),
    },
    {
      atMs: 100_000,
      request: req({
        agent_id: "crm-agent",
        action: { type: "crm.read", summary: "Read the contact history for ticket SUP-1190" },
        risk_class: "low",
        region: "eu",
        purpose: "Summarise earlier conversations before a support agent replies.",
      }),
    },
    {
      atMs: 140_000,
      request: req({
        agent_id: "billing-agent",
        action: {
          type: "payments.payout",
          summary: "Pay supplier invoice INV-2291 (EUR 48,000.00)",
          details: {
            invoice: "INV-2291",
            supplier: "Nordlicht Logistics GmbH",
            amount: "48000.00",
            currency: "EUR",
          },
          systems: ["bank:sepa"],
        },
        risk_class: "critical",
        region: "eu",
        purpose: "The invoice is due on Friday; finance approved the purchase order PO-7781 in January.",
      }),
    },
    {
      atMs: 160_000,
      request: req({
        agent_id: "infra-agent",
        action: {
          type: "db.drop",
          summary: "Drop the unused table invoices_backup_2023 on prod-eu-1",
          details: {
            database: "prod-eu-1",
            table: "invoices_backup_2023",
            rows: 1_830_412,
            last_read: "never since 2024-01-09",
            backup: "s3://db-archive/prod-eu-1/invoices_backup_2023.dump",
          },
          systems: ["postgres:prod-eu-1"],
        },
        risk_class: "critical",
        region: "eu",
        purpose:
          "The table was a one-off copy before the 2024 invoice migration; it holds 38 GB on the primary.",
      }),
    },
    {
      atMs: 180_000,
      request: req({
        agent_id: "infra-agent",
        action: { type: "infra.read", summary: "List the open incidents on the US clusters" },
        risk_class: "low",
        region: "us",
        purpose: "Prepare the weekly reliability report.",
      }),
    },
  ];
}
