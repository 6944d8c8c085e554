/**
 * Builds a log of decisions and receipts in memory, signed and chained for real (each
 * entry takes the next seq, and prev is the SHA-256 of the entry before), as the store
 * will once it writes receipts. A test can build a log that breaks the rules of what may
 * happen to an approval and still has valid signatures and links: the case where only
 * `audit verify`'s rules stand between a buggy or tampered server and the auditor.
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { ExportSource } from "../../src/audit/export.js";
import { requestDigest } from "../../src/domain/canonical.js";
import { diffRequest } from "../../src/domain/edits.js";
import { newId } from "../../src/domain/ids.js";
import type {
  ActionRequest,
  Edit,
  PublicJwk,
  ReceiptClaims,
  RecordClaims,
  UnchainedReceiptClaims,
  Verdict,
  Vote,
} from "../../src/domain/types.js";
import { jwsDigest, type SigningKey, signReceipt, signRecord } from "../../src/records/signing.js";

export const CHAIN_ISSUER = "https://countersign.test";
/** Decisions are made a minute apart from here; receipts a second after the entry before. */
const START = Date.UTC(2025, 2, 1, 10, 0, 0);

export interface Decided {
  readonly seq: number;
  readonly jws: string;
  readonly claims: RecordClaims;
  /** The agent's request, as the store keeps it. */
  readonly request?: ActionRequest;
  /** The request as decided (the agent's, or its last revision). */
  readonly decided?: ActionRequest;
}

interface Stored {
  seq: number;
  jws: string;
  requestJson: string | null;
  decisionJws?: string;
  receipts?: string[];
}

export interface DecisionOptions {
  readonly verdict?: Verdict;
  readonly agent?: string;
  readonly region?: string;
  /** How long the approval is valid after its decision, in ms (default 15 minutes). */
  readonly validForMs?: number;
  /** The record's route.escalation_level (default 0). */
  readonly escalationLevel?: number;
  /** The votes, made from what they must name (default: U0ALICE's one vote). */
  readonly votes?: (subject: { action_id: string; action_sha256: string; seq: number }) => Vote[];
  /**
   * Approvers changed the request ("Approve with changes"): each value is the amount of
   * one revision, in order. The request is then editable at /amount and /note, and the
   * record carries original_sha256 and one edit per revision (a diff of whole requests).
   */
  readonly amounts?: readonly number[];
}

/** The kind-specific part of a receipt: the rest is filled in from the decision it names. */
export type ReceiptPart =
  | { kind: "redeemed"; by: { executor: string } }
  | {
      kind: "outcome";
      by: { agent: string } | { executor: string };
      status: "succeeded" | "failed";
      detail?: string;
    }
  | { kind: "revoked"; by: { user: string; team: string } | { cli: true }; reason_text: string };

export class TestChain {
  private readonly rows: Stored[] = [];
  private clock = START;
  private n = 0;

  constructor(private readonly key: SigningKey) {}

  private get prev(): string | null {
    const last = this.rows.at(-1);
    return last ? jwsDigest(last.jws) : null;
  }

  decision(o: DecisionOptions = {}): Decided {
    const i = this.n++;
    this.clock = START + i * 60_000 + 1000;
    const t = this.clock;
    const agent = o.agent ?? "billing-agent";
    const region = o.region ?? "eu";
    const verdict = o.verdict ?? "approved";
    const revisable = o.amounts !== undefined;
    const request = {
      request_id: `req-${i}`,
      agent_id: agent,
      action: {
        type: "payments.refund",
        summary: `Refund order ${1000 + i}`,
        details: revisable ? { amount: 120 + i, note: "as asked" } : { amount: 120 + i },
        ...(revisable ? { editable: ["/amount", "/note"] } : {}),
      },
      risk_class: "high",
      region,
      purpose: "Customer was charged twice",
    } as ActionRequest;
    let decided = request;
    const edits: Edit[] = [];
    for (const [k, amount] of (o.amounts ?? []).entries()) {
      const next = structuredClone(decided) as ActionRequest & {
        action: { details: Record<string, unknown> };
      };
      next.action.details["amount"] = amount;
      next.action.details["note"] = `revision ${k + 2}`;
      edits.push({
        user: "U0ALICE",
        team: "T0TEST",
        at: new Date(t - 10_000 + k).toISOString(),
        patch: diffRequest(decided, next),
      });
      decided = next;
    }
    const seq = this.rows.length + 1;
    const actionId = newId("act", t - 30_000, randomBytes);
    const actionSha256 = requestDigest(decided);
    const claims: RecordClaims = {
      ver: 1,
      iss: CHAIN_ISSUER,
      sub: agent,
      jti: newId("dec", t, randomBytes),
      iat: Math.floor(t / 1000),
      action_id: actionId,
      request_id: request.request_id,
      action_type: request.action.type,
      summary: request.action.summary,
      action_sha256: actionSha256,
      ...(revisable ? { original_sha256: requestDigest(request), edits } : {}),
      risk_class: "high",
      region,
      purpose: request.purpose,
      systems: [],
      on_behalf_of: null,
      verdict,
      reason_code: "approvers",
      reason_text: "",
      route: { name: "eu-high-payments", quorum: 1, escalation_level: o.escalationLevel ?? 0 },
      eligible: ["U0ALICE"],
      votes: o.votes
        ? o.votes({ action_id: actionId, action_sha256: actionSha256, seq })
        : [
            {
              user: "U0ALICE",
              team: "T0TEST",
              vote: verdict === "denied" ? "deny" : "approve",
              at: new Date(t).toISOString(),
            },
          ],
      requested_at: new Date(t - 30_000).toISOString(),
      decided_at: new Date(t).toISOString(),
      ...(verdict === "approved"
        ? { valid_until: new Date(t + (o.validForMs ?? 15 * 60_000)).toISOString() }
        : {}),
      policy_sha256: "policy-sha",
      seq,
      prev: this.prev,
    };
    const jws = signRecord(this.key, claims);
    this.rows.push({ seq, jws, requestJson: JSON.stringify(request), receipts: [] });
    return { seq, jws, claims, request, decided };
  }

  /**
   * A receipt about `d`, one second after the entry before unless `at` is given.
   * `override` replaces any claim after the rest is filled in (to build a wrong one).
   */
  receipt(
    d: Decided,
    part: ReceiptPart,
    o: { at?: string; override?: Record<string, unknown> } = {},
  ): string {
    this.clock += 1000;
    const at = o.at ?? new Date(this.clock).toISOString();
    const seq = this.rows.length + 1;
    const unchained = {
      ver: 1,
      iss: CHAIN_ISSUER,
      sub: d.claims.sub,
      jti: `rct_${randomUUID()}`,
      iat: Math.floor(Date.parse(at) / 1000),
      action_id: d.claims.action_id,
      decision: d.claims.jti,
      decision_sha256: jwsDigest(d.jws),
      at,
      ...part,
    } as UnchainedReceiptClaims;
    const claims = { ...unchained, seq, prev: this.prev, ...o.override } as ReceiptClaims;
    const jws = signReceipt(this.key, claims);
    this.rows.push({ seq, jws, requestJson: null, decisionJws: d.jws });
    this.rows.find((r) => r.seq === d.seq)?.receipts?.push(jws);
    return jws;
  }

  /**
   * A `passkey_registered` entry: `user` (of `team`) registered this credential. About no
   * action, so the reader joins no decision to it. `override` replaces any claim.
   */
  passkey(
    credential: { readonly credentialId: string; readonly publicJwk: PublicJwk },
    user = "U0ALICE",
    o: { team?: string; override?: Record<string, unknown> } = {},
  ): string {
    this.clock += 1000;
    const at = new Date(this.clock).toISOString();
    const seq = this.rows.length + 1;
    const claims = {
      ver: 1,
      iss: CHAIN_ISSUER,
      jti: `rct_${randomUUID()}`,
      iat: Math.floor(this.clock / 1000),
      at,
      kind: "passkey_registered",
      user,
      team: o.team ?? "T0TEST",
      credential_id: credential.credentialId,
      public_key: credential.publicJwk,
      seq,
      prev: this.prev,
      ...o.override,
    } as ReceiptClaims;
    const jws = signReceipt(this.key, claims);
    this.rows.push({ seq, jws, requestJson: null });
    return jws;
  }

  /**
   * The entries as an audit reader gives them. `joined` false leaves out what the reader
   * adds by joining (a receipt's decision, a decision's receipts), as today's readers do.
   */
  sources(joined = true): ExportSource[] {
    return this.rows.map((r) =>
      joined
        ? {
            seq: r.seq,
            jws: r.jws,
            requestJson: r.requestJson,
            decisionJws: r.decisionJws ?? null,
            receipts: r.receipts ?? [],
          }
        : { seq: r.seq, jws: r.jws, requestJson: r.requestJson },
    );
  }
}
