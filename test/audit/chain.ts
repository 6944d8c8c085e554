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
import { newId } from "../../src/domain/ids.js";
import type {
  ActionRequest,
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
    const request: ActionRequest = {
      request_id: `req-${i}`,
      agent_id: agent,
      action: { type: "payments.refund", summary: `Refund order ${1000 + i}`, details: { amount: 120 + i } },
      risk_class: "high",
      region,
      purpose: "Customer was charged twice",
    };
    const seq = this.rows.length + 1;
    const actionId = newId("act", t - 30_000, randomBytes);
    const actionSha256 = requestDigest(request);
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
    return { seq, jws, claims };
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
