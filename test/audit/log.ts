/**
 * Builds a real decision log for the audit tests: a temp SQLite file, or a PostgreSQL
 * schema of its own, with the real migrations; records issued through the store's admit
 * (so seq, prev, signing and the request row are exactly what production writes), any
 * signing key per record.
 */

import { randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PostgresStore } from "../../src/adapters/db/postgres.js";
import { SqliteStore } from "../../src/adapters/db/sqlite.js";
import {
  type AuditDatabase,
  lastSeq,
  openAuditDatabase,
  recordPages,
} from "../../src/adapters/db/sqlite-audit.js";
import type { UnchainedClaims } from "../../src/app/ports.js";
import { exportChunks, parseExportQuery } from "../../src/audit/export.js";
import type { AuditReader } from "../../src/audit/reader.js";
import { requestDigest } from "../../src/domain/canonical.js";
import { newId } from "../../src/domain/ids.js";
import type { ActionRequest, ReasonCode, Verdict, Vote } from "../../src/domain/types.js";
import {
  generateSigningKeyPem,
  loadSigningKey,
  type SigningKey,
  signRecord,
} from "../../src/records/signing.js";
import { dropSchema, PG_URL } from "../support/harness.js";

export const ISSUER = "https://countersign.test";

export function newKey(): SigningKey {
  return loadSigningKey(generateSigningKeyPem());
}

export interface Entry {
  readonly agent?: string;
  readonly region?: string;
  readonly verdict?: Verdict;
  /** ISO time; defaults to one minute per record from 2025-03-01T10:00Z. */
  readonly decidedAt?: string;
  readonly summary?: string;
  readonly reasonText?: string;
  readonly votes?: readonly Vote[];
  readonly details?: Record<string, unknown>;
  /** The key that signs this record (a rotation is a change of key between entries). */
  readonly key?: SigningKey;
}

export interface TestLog {
  readonly dir: string;
  /** SQLite: the database file ("" on PostgreSQL). */
  readonly file: string;
  /** PostgreSQL: the log's own schema (null on SQLite). */
  readonly schema: string | null;
  /** DATABASE_URL (and DATABASE_SCHEMA) that point a process at this log. */
  readonly env: Readonly<Record<string, string>>;
  readonly keys: SigningKey[];
  readonly actionIds: string[];
  /** SQLite only: the file, opened read-only. */
  open(): AuditDatabase;
  /** Issues more records after the ones built, through a store of its own (closed at cleanup). */
  append(entries: readonly Entry[]): Promise<string[]>;
  cleanup(): Promise<void>;
}

const REASON: Record<Verdict, ReasonCode> = {
  approved: "approvers",
  denied: "approvers",
  expired: "timeout",
  cancelled: "cancelled",
};

export interface LogOptions {
  /** Build the log on PostgreSQL (PG_URL), in a schema of its own dropped at cleanup. */
  readonly postgres?: boolean;
}

type LogStore = SqliteStore | PostgresStore;

export async function buildLog(
  entries: readonly Entry[],
  defaultKey: SigningKey = newKey(),
  o: LogOptions = {},
): Promise<TestLog> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-audit-"));
  const file = o.postgres ? "" : path.join(dir, "countersign.db");
  const schema = o.postgres ? `test_audit_${randomUUID().replace(/-/g, "")}` : null;
  const open = async (): Promise<LogStore> =>
    schema ? PostgresStore.open(PG_URL, { schema, poolSize: 2 }) : new SqliteStore(file);
  const keys: SigningKey[] = [];
  const actionIds: string[] = [];
  let writer: LogStore | null = null;

  async function issue(store: LogStore, more: readonly Entry[]): Promise<string[]> {
    const ids: string[] = [];
    for (const e of more) {
      // The index (request_id, default time) is taken and the slot filled before any
      // await, so appends running side by side never share one.
      const i = actionIds.push("") - 1;
      const key = e.key ?? defaultKey;
      if (!keys.includes(key)) {
        keys.push(key);
        await store.registerSigningKey(key.kid, key.publicJwk, keys.length);
      }
      store.setSigner((claims) => ({ jws: signRecord(key, claims), kid: key.kid }));
      const decided = new Date(e.decidedAt ?? Date.UTC(2025, 2, 1, 10, i, 0));
      const t = decided.getTime();
      const agent = e.agent ?? "billing-agent";
      const region = e.region ?? "eu";
      const verdict = e.verdict ?? "approved";
      const request: ActionRequest = {
        request_id: `req-${i}`,
        agent_id: agent,
        action: {
          type: "payments.refund",
          summary: e.summary ?? `Refund order ${1000 + i}`,
          details: e.details ?? { order: 1000 + i, amount: "120.00", note: "café ☕ \u202e" },
        },
        risk_class: "high",
        region,
        purpose: "Customer was charged twice",
      };
      const id = newId("act", t - 60_000, randomBytes);
      const votes = e.votes ?? [
        {
          user: "U0ALICE",
          team: "T0TEST",
          vote: verdict === "denied" ? "deny" : "approve",
          at: decided.toISOString(),
        },
      ];
      const claims: UnchainedClaims = {
        ver: 1,
        iss: ISSUER,
        sub: agent,
        jti: newId("dec", t, randomBytes),
        iat: Math.floor(t / 1000),
        action_id: id,
        request_id: request.request_id,
        action_type: request.action.type,
        summary: request.action.summary,
        action_sha256: requestDigest(request),
        risk_class: "high",
        region,
        purpose: request.purpose,
        systems: [],
        on_behalf_of: null,
        verdict,
        reason_code: REASON[verdict],
        reason_text: e.reasonText ?? "",
        route: { name: "eu-high-payments", quorum: 1, escalation_level: 0 },
        eligible: ["U0ALICE", "U0BOB"],
        votes,
        requested_at: new Date(t - 60_000).toISOString(),
        decided_at: decided.toISOString(),
        policy_sha256: "policy-sha",
      };
      actionIds[i] = id;
      ids.push(id);
      await store.admit({
        action: {
          id,
          agentId: agent,
          requestId: request.request_id,
          request,
          requestSha256: claims.action_sha256,
          actionType: request.action.type,
          riskClass: "high",
          region,
          routeName: "eu-high-payments",
          level: 0,
          quorum: 1,
          eligible: null,
          deadlineAt: null,
          capAt: null,
          policySha256: "policy-sha",
          requestedAt: t - 60_000,
        },
        proof: null,
        job: null,
        maxPending: 1_000_000,
        events: [
          {
            type: "received",
            actor: `agent:${agent}`,
            data: { via: "queue", request_id: request.request_id },
          },
        ],
        effects: () => [],
        decision: {
          outcome: { verdict, reasonCode: REASON[verdict], reasonText: e.reasonText ?? "" },
          claims,
        },
        now: t,
      });
    }
    return ids;
  }

  const store = await open();
  try {
    await issue(store, entries);
  } finally {
    await store.close();
  }
  return {
    dir,
    file,
    schema,
    env: schema ? { DATABASE_URL: PG_URL, DATABASE_SCHEMA: schema } : { DATABASE_URL: `file:${file}` },
    keys,
    actionIds,
    open: () => {
      if (schema) throw new Error("open() reads SQLite; this log is on PostgreSQL");
      return openAuditDatabase(file);
    },
    async append(more) {
      writer ??= await open();
      return issue(writer, more);
    },
    async cleanup() {
      await writer?.close();
      if (schema) await dropSchema(schema);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The whole export as text, as `audit export` would write it with these options: from a
 * SQLite connection (read in pages of 3, so paging is exercised) or any audit reader.
 */
export async function exportText(
  source: AuditDatabase | AuditReader,
  options: Record<string, string> = {},
): Promise<string> {
  const parsed = parseExportQuery(options);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  const pages =
    "records" in source ? source.records(await source.lastSeq()) : recordPages(source, lastSeq(source), 3);
  let text = "";
  for await (const chunk of exportChunks(pages, parsed.query)) text += chunk;
  return text;
}

export function linesOf(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}
