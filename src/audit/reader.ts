/**
 * The audit tools' read side, as one port with an adapter per store: the CLI's `audit`
 * commands and the auditor API read the log through it, the same on SQLite and on
 * PostgreSQL. Everything here only reads. `openAuditReader` (src/adapters/db/open-audit.ts)
 * picks the adapter.
 */
import type { PublicJwk } from "../records/signing.js";
import type { LogHead } from "./checkpoint.js";
import type { TimelineAction, TimelineEvent, TimelineReceipt, TimelineRecord } from "./events.js";
import type { ExportSource } from "./export.js";

/** What the timeline needs of an action: the audit formatter's own type. */
export type ActionSummary = TimelineAction;

export interface AuditEvent extends TimelineEvent {
  readonly id: number;
}

export type ActionRecordRef = TimelineRecord;

/** The log cannot be read: no such file or server, or no decision log in it. The message says which. */
export class AuditStoreError extends Error {
  override readonly name = "AuditStoreError" as const;
}

export interface AuditReader {
  /** Where the log is, for messages: a file path, or host:port/database (schema) without credentials. */
  readonly where: string;
  /** The highest seq now in the log (0 when empty): an export stops there, so it is one consistent view. */
  lastSeq(): Promise<number>;
  /** The log's head: the last seq and the SHA-256 of its JWS text (null for an empty log). */
  logHead(): Promise<LogHead>;
  /**
   * Records 1..upTo in seq order, with the request each covers, a page at a time: memory
   * stays at one page however long the log is. Pages rather than single records because
   * an async iteration step costs about 0.3 µs, a few per cent of an export's time per
   * record when paid for each one, nothing when paid per page.
   */
  records(upTo: number): AsyncIterable<readonly ExportSource[]>;
  /** Every key that ever signed, as published in the JWKS. */
  publishedKeys(): Promise<PublicJwk[]>;
  findAction(actionId: string): Promise<ActionSummary | null>;
  /** The decision path of one action, in the order it was written. */
  actionEvents(actionId: string): Promise<AuditEvent[]>;
  /** The decision record of the action (never one of its receipts). */
  actionRecord(actionId: string): Promise<ActionRecordRef | null>;
  /**
   * The action's receipts in seq order, for `audit events`. Optional until the store keeps
   * receipts; a reader without it shows none.
   */
  actionReceipts?(actionId: string): Promise<TimelineReceipt[]>;
  /** Releases what the reader opened (a file handle, a connection pool). */
  close(): Promise<void>;
}

/**
 * An event's data as stored (JSON text). An unreadable row is still evidence: it is shown
 * as it is rather than the event hidden.
 */
export function parseEventData(text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : { value: v };
  } catch {
    return { unreadable_data: text };
  }
}
