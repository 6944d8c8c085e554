/**
 * The audit export, as a stream of text chunks made from
 * the stored records in seq order. It never holds more than one chunk: an export of a
 * million records runs in the memory of one.
 *
 * Filters decide on the record's signed claims, never on the database's own columns:
 * those are unsigned, and an edited column must not be able to hide a record from an
 * auditor's filtered export. A record the filter leaves out still appears in JSONL as
 * `{seq, record_sha256, omitted: true}`, so `audit verify` sees every seq from 1 and can
 * check each link that is there. `since` and `until` bound `decided_at` the same way:
 * `since` inclusive, `until` exclusive, and records outside are omitted lines, not cut.
 *
 * Receipts (redeemed, outcome, revoked) are entries of the same log. A filter keeps a
 * receipt exactly when it keeps the receipt's decision, judged on that decision's signed
 * claims, so a filtered export shows each approval with everything that happened to it.
 * The CSV stays one row per decision; its last columns say what happened after.
 *
 * A passkey registration (`passkey_registered`) is a receipt about no action. Every export
 * keeps it, whatever the filter: the step-up votes of the decisions it does keep can only
 * be checked against the passkeys registered before them, and a registration says nothing
 * of any action an auditor filtered out. The CSV, one row per decision, leaves them out.
 */

import { decidedRequest } from "../domain/edits.js";
import { type Edit, VERDICTS, type Verdict } from "../domain/types.js";
import { jwsDigest } from "../records/signing.js";
import { csvRow } from "./csv.js";

export type ExportFormat = "jsonl" | "csv";

export interface ExportFilter {
  /** Inclusive lower bound on `decided_at`. */
  readonly since?: Date;
  /** Exclusive upper bound on `decided_at`. */
  readonly until?: Date;
  /** The record's `sub`. */
  readonly agent?: string;
  readonly region?: string;
  readonly verdict?: Verdict;
}

export interface ExportQuery {
  readonly filter: ExportFilter;
  readonly format: ExportFormat;
}

/**
 * An entry of the log as the database holds it: a decision record with the request JSON
 * it covers, or a receipt.
 */
export interface ExportSource {
  readonly seq: number;
  readonly jws: string;
  /** A decision's request; unused for a receipt. */
  readonly requestJson: string | null;
  /**
   * A receipt's decision record (its JWS), so a filter judges the receipt by its decision
   * without the exporter remembering every decision it passed. When a reader leaves it
   * out, the exporter remembers which approvals the filter kept instead (memory grows with
   * the approvals of a filtered export).
   */
  readonly decisionJws?: string | null;
  /**
   * A decision's receipts (their JWS) up to the export's last seq, for the CSV's
   * `redeemed_at`, `outcome` and `revoked_at`: a CSV row is written when its decision is,
   * before the receipts' own places in the log. Left out, those cells are empty.
   */
  readonly receipts?: readonly string[];
}

export interface ExportStats {
  /** Records written in full. */
  records: number;
  /** Records left out by the filter (JSONL omitted lines; CSV skips them). */
  omitted: number;
}

export class ExportError extends Error {
  override readonly name = "ExportError" as const;
}

/**
 * The decoded fields of a decision's JSONL line, in the order they are written; `record`
 * and `request` follow. `kind` is always "decision" (exports made before receipts existed
 * have no `kind`, and verify still reads them).
 */
export const LINE_FIELDS = [
  "seq",
  "kind",
  "decided_at",
  "agent_id",
  "action_type",
  "summary",
  "risk_class",
  "region",
  "verdict",
  "reason_code",
  "reason_text",
  "approvers",
  "action_id",
  "decision_id",
] as const;

/**
 * The CSV columns, in order (docs/audit.md): the line's fields but `kind` (every row is a
 * decision), the record itself, then what happened to an approval after its verdict.
 */
export const CSV_COLUMNS = [
  ...LINE_FIELDS.filter((k): k is Exclude<(typeof LINE_FIELDS)[number], "kind"> => k !== "kind"),
  "record",
  "redeemed_at",
  "outcome",
  "revoked_at",
] as const;

export type LineFields = {
  readonly [K in (typeof LINE_FIELDS)[number]]: K extends "seq"
    ? number
    : K extends "kind"
      ? "decision"
      : K extends "approvers"
        ? readonly string[]
        : string;
};

/**
 * What a line shows beside the record, derived from the signed claims only; verify
 * derives them again the same way and compares. `approvers` lists the users who voted
 * approve, in the order of their votes (deny votes are in the record and, with their
 * reason, in `reason_text`).
 */
export function lineFields(claims: Record<string, unknown>): LineFields {
  return lineFieldsAt(claims, claims["seq"] as number);
}

/** lineFields with the given seq (the row's) in its place: no second object to make. */
function lineFieldsAt(claims: Record<string, unknown>, seq: number): LineFields {
  const votes = Array.isArray(claims["votes"]) ? (claims["votes"] as unknown[]) : [];
  const approvers: string[] = [];
  for (const v of votes) {
    if (typeof v === "object" && v !== null && (v as { vote?: unknown }).vote === "approve") {
      approvers.push(String((v as { user?: unknown }).user));
    }
  }
  const s = (k: string): string => {
    const v = claims[k];
    return typeof v === "string" ? v : String(v);
  };
  return {
    seq,
    kind: "decision",
    decided_at: s("decided_at"),
    agent_id: s("sub"),
    action_type: s("action_type"),
    summary: s("summary"),
    risk_class: s("risk_class"),
    region: s("region"),
    verdict: s("verdict"),
    reason_code: s("reason_code"),
    reason_text: s("reason_text"),
    approvers,
    action_id: s("action_id"),
    decision_id: s("jti"),
  };
}

/**
 * Claims of a receipt that its line does not repeat: the chain's own (`ver`, `iss`, `iat`,
 * `seq`, `prev`), and those the line shows under another name (`jti` as `receipt_id`, `sub`
 * as `agent_id`). `decision_sha256` is checked by verify against the decision itself.
 */
const RECEIPT_UNSHOWN = new Set([
  "ver",
  "iss",
  "iat",
  "seq",
  "prev",
  "kind",
  "jti",
  "sub",
  "decision_sha256",
]);

/**
 * What a receipt's line shows beside the receipt, derived from its signed claims only:
 * `kind`, `receipt_id`, `agent_id` (when it is about an agent's action), then every other
 * claim under its own name (`at`, `action_id`, `decision`, `by`, and the kind's own:
 * `status` and `detail`, `reason_text`, ...), so a new kind needs no change here. Verify
 * derives them again the same way and compares.
 */
export function receiptLineFields(claims: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { kind: claims["kind"], receipt_id: claims["jti"] };
  if (claims["sub"] !== undefined) out["agent_id"] = claims["sub"];
  for (const [k, v] of Object.entries(claims)) if (!RECEIPT_UNSHOWN.has(k)) out[k] = v;
  return out;
}

/** A receipt's payload carries `kind`; a decision record's never does. */
export function isReceiptClaims(claims: Record<string, unknown>): boolean {
  return claims["kind"] !== undefined;
}

export function matchesFilter(claims: Record<string, unknown>, f: ExportFilter): boolean {
  if (f.agent !== undefined && claims["sub"] !== f.agent) return false;
  if (f.region !== undefined && claims["region"] !== f.region) return false;
  if (f.verdict !== undefined && claims["verdict"] !== f.verdict) return false;
  if (f.since !== undefined || f.until !== undefined) {
    const at = Date.parse(String(claims["decided_at"]));
    if (Number.isNaN(at)) return false;
    if (f.since !== undefined && at < f.since.getTime()) return false;
    if (f.until !== undefined && at >= f.until.getTime()) return false;
  }
  return true;
}

/** Lines are gathered into chunks of about this size: fewer writes, still constant memory. */
const CHUNK_CHARS = 64 * 1024;

export interface ExportOptions {
  readonly format: ExportFormat;
  readonly filter: ExportFilter;
  /** Filled in as the export runs. */
  readonly stats?: ExportStats;
  /** Called with the last seq written, about every 1000 records. */
  readonly onProgress?: (seq: number) => void;
}

/**
 * The export as text chunks, lazily: each chunk is made only when the consumer asks for
 * it, so a slow reader (an HTTP client, a pipe) holds back the database reads. Records
 * come in pages (arrays in seq order), as the audit reader reads them.
 */
export async function* exportChunks(
  pages: AsyncIterable<readonly ExportSource[]> | Iterable<readonly ExportSource[]>,
  opts: ExportOptions,
): AsyncGenerator<string> {
  const formatter = new ExportFormatter(opts, opts.stats);
  let chunk = exportHeader(opts.format);
  for await (const page of pages) {
    for (const r of page) {
      chunk += formatter.entry(r);
      if (opts.onProgress && r.seq % 1000 === 0) opts.onProgress(r.seq);
      if (chunk.length >= CHUNK_CHARS) {
        yield chunk;
        chunk = "";
      }
    }
  }
  if (chunk.length > 0) yield chunk;
}

/** What an export starts with before its first entry: the CSV's header row, nothing for JSONL. */
export function exportHeader(format: ExportFormat): string {
  return format === "csv" ? csvRow(CSV_COLUMNS) : "";
}

/**
 * Turns the log's entries, given in seq order, into the export's text one entry at a
 * time, counting into `stats`. It holds what the filter needs across entries (the
 * approvals it kept, for receipts whose reader gave no decisionJws), so one formatter
 * must see every entry of an export, in order. exportChunks runs one in the caller's
 * thread; export-parallel.ts runs one in a worker thread.
 */
export class ExportFormatter {
  private readonly csv: boolean;
  private readonly filter: ExportFilter;
  private readonly filtered: boolean;
  /** Approvals the filter kept, by decision id, for receipts whose reader gave no decisionJws. */
  private readonly keptApprovals = new Set<string>();

  constructor(
    query: ExportQuery,
    readonly stats: ExportStats = { records: 0, omitted: 0 },
  ) {
    this.csv = query.format === "csv";
    const f = query.filter;
    this.filter = f;
    this.filtered =
      f.agent !== undefined ||
      f.region !== undefined ||
      f.verdict !== undefined ||
      f.since !== undefined ||
      f.until !== undefined;
  }

  /** The export's text for one entry (empty for a receipt in the CSV or an entry the CSV leaves out). */
  entry(r: ExportSource): string {
    const { csv, filter: f, filtered, stats } = this;
    const claims = decodePayload(r);
    const receipt = isReceiptClaims(claims);
    let keep: boolean;
    if (!receipt) {
      keep = matchesFilter(claims, f);
      if (keep && filtered && r.decisionJws === undefined && claims["verdict"] === "approved") {
        this.keptApprovals.add(String(claims["jti"]));
      }
    } else if (!filtered || claims["kind"] === "passkey_registered") {
      keep = true;
    } else if (typeof r.decisionJws === "string") {
      const decision = decodePayload({ seq: r.seq, jws: r.decisionJws, requestJson: null });
      keep = decision["jti"] === claims["decision"] && matchesFilter(decision, f);
    } else {
      keep = this.keptApprovals.has(String(claims["decision"]));
    }
    if (keep) {
      stats.records++;
      // The CSV is one row per decision: a receipt shows in its decision's row.
      if (receipt) return csv ? "" : receiptLine(r, claims);
      return csv ? csvLine(r, claims) : jsonLine(r, claims);
    }
    stats.omitted++;
    // The digest is base64url: nothing in it needs escaping.
    return csv ? "" : `{"seq":${r.seq},"record_sha256":"${jwsDigest(r.jws)}","omitted":true}\n`;
  }
}

/**
 * The record's claims: its payload only. The header, the signature and the parts'
 * alphabet are verify's to check (export shows what is stored; verify judges it), so
 * export skips what decodeJws does beside decoding the payload.
 */
function decodePayload(r: ExportSource): Record<string, unknown> {
  const jws = r.jws;
  const a = typeof jws === "string" ? jws.indexOf(".") : -1;
  const b = a > 0 ? jws.indexOf(".", a + 1) : -1;
  if (b <= a + 1 || b === jws.length - 1 || jws.indexOf(".", b + 1) !== -1) {
    throw new ExportError(
      `record seq ${r.seq} in the database is not a readable JWS: expected three non-empty parts separated by dots`,
    );
  }
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(jws.slice(a + 1, b), "base64url").toString("utf8"));
  } catch {
    throw new ExportError(
      `record seq ${r.seq} in the database is not a readable JWS: its payload is not base64url-encoded JSON`,
    );
  }
  if (typeof claims !== "object" || claims === null || Array.isArray(claims)) {
    throw new ExportError(
      `record seq ${r.seq} in the database is not a readable JWS: its payload is not a JSON object`,
    );
  }
  return claims as Record<string, unknown>;
}

/**
 * One JSONL line, built as text in the order JSON.stringify of the line object would
 * write it (seq, LINE_FIELDS, record, request), with each value JSON.stringify-ed: the
 * same bytes as before, at a fraction of the cost of parsing the request and stringifying
 * the whole line (the 1.3 KB JWS included).
 *
 * The request goes in as the stored text: the store wrote it with JSON.stringify of the
 * validated request, so it is already the JSON that stringifying it again would give.
 * Export does not parse it (verify does, and checks its digest against the signed
 * action_sha256); it only makes sure the text cannot break out of its line.
 */
function jsonLine(r: ExportSource, claims: Record<string, unknown>): string {
  const request = r.requestJson;
  if (request === null) {
    throw new ExportError(`record seq ${r.seq} has no stored request (its action row is missing)`);
  }
  if (
    request.charCodeAt(0) !== 0x7b ||
    request.charCodeAt(request.length - 1) !== 0x7d ||
    request.includes("\n") ||
    request.includes("\r")
  ) {
    throw new ExportError(`record seq ${r.seq}: the stored request is not a one-line JSON object`);
  }
  // seq comes from the database row, everything else from the signed claims: verify
  // then catches a row whose place in the log differs from what was signed. The fields
  // are one object stringified at once (lineFields keeps LINE_FIELDS' order), which
  // costs less than a JSON.stringify call per field; its closing brace is cut off.
  const fields = JSON.stringify(lineFieldsAt(claims, r.seq));
  // A compact JWS has nothing to escape: checking that costs half of stringifying 1.4 KB.
  const record = NOT_COMPACT.test(r.jws) ? JSON.stringify(r.jws) : `"${r.jws}"`;
  if (claims["edits"] !== undefined) {
    // Approvers changed the request: `request` is the decided revision (what action_sha256
    // covers), replayed from the stored original and the signed edits; `original_request`
    // is the agent's own (what original_sha256 covers). Rare, so parsed here.
    let decided: string;
    try {
      decided = JSON.stringify(
        decidedRequest(JSON.parse(request) as unknown, { edits: claims["edits"] as Edit[] }),
      );
    } catch (e) {
      throw new ExportError(
        `record seq ${r.seq}: its edits do not apply to the stored request: ${(e as Error).message}`,
      );
    }
    return `${fields.slice(0, -1)},"record":${record},"request":${decided},"original_request":${request}}\n`;
  }
  return `${fields.slice(0, -1)},"record":${record},"request":${request}}\n`;
}

/** A character a compact JWS never holds (decodePayload has already checked its three parts). */
const NOT_COMPACT = /[^A-Za-z0-9_.-]/;

/** A receipt's line: `{seq, kind, receipt_id, agent_id, at, action_id, decision, by, ..., receipt}`. */
function receiptLine(r: ExportSource, claims: Record<string, unknown>): string {
  // seq from the row, as for decisions: verify catches a row moved from its signed place.
  return `${JSON.stringify({ seq: r.seq, ...receiptLineFields(claims), receipt: r.jws })}\n`;
}

/** The CSV's last three cells: when it was redeemed, the reported outcome, when it was revoked. */
function afterVerdict(r: ExportSource): [string, string, string] {
  let redeemed = "";
  let outcome = "";
  let revoked = "";
  for (const jws of r.receipts ?? []) {
    const c = decodePayload({ seq: r.seq, jws, requestJson: null });
    const at = typeof c["at"] === "string" ? c["at"] : "";
    // The first of each kind: the log never holds two (verify refuses a second), and an
    // export shows what is stored without judging it.
    if (c["kind"] === "redeemed" && redeemed === "") redeemed = at;
    else if (c["kind"] === "outcome" && outcome === "") outcome = String(c["status"]);
    else if (c["kind"] === "revoked" && revoked === "") revoked = at;
  }
  return [redeemed, outcome, revoked];
}

function csvLine(r: ExportSource, claims: Record<string, unknown>): string {
  const f = lineFields(claims);
  return csvRow([
    r.seq,
    f.decided_at,
    f.agent_id,
    f.action_type,
    f.summary,
    f.risk_class,
    f.region,
    f.verdict,
    f.reason_code,
    f.reason_text,
    f.approvers.join(" "),
    f.action_id,
    f.decision_id,
    r.jws,
    ...afterVerdict(r),
  ]);
}

// ---------------------------------------------------------------------------
// Parsing the filters, shared by the CLI options and the HTTP query string.

export interface QueryProblem {
  readonly path: string;
  readonly message: string;
}

export type ParsedQuery = { ok: true; query: ExportQuery } | { ok: false; errors: QueryProblem[] };

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

/**
 * Reads `since`, `until`, `agent`, `region`, `verdict` and `format` from strings (CLI
 * options or a query string). Times are ISO 8601: a date (`2025-01-31`, midnight UTC) or
 * a date-time with `Z` or an offset; a time without a zone is refused, since the
 * auditor's and the server's local times may differ.
 */
export function parseExportQuery(raw: Readonly<Record<string, unknown>>): ParsedQuery {
  const errors: QueryProblem[] = [];
  const one = (name: string): string | undefined => {
    const v = raw[name];
    if (v === undefined) return undefined;
    if (typeof v !== "string") {
      errors.push({ path: name, message: "give it once, as a single value" });
      return undefined;
    }
    if (v === "" || v.length > 200) {
      errors.push({ path: name, message: v === "" ? "is empty" : "is longer than 200 characters" });
      return undefined;
    }
    return v;
  };
  const time = (name: string): Date | undefined => {
    const v = one(name);
    if (v === undefined) return undefined;
    const ms = ISO_TIME.test(v) ? Date.parse(v) : Number.NaN;
    if (Number.isNaN(ms)) {
      errors.push({
        path: name,
        message: `${JSON.stringify(v)} is not an ISO 8601 date (2025-01-31) or date-time with a zone (2025-01-31T09:00:00Z)`,
      });
      return undefined;
    }
    return new Date(ms);
  };
  const since = time("since");
  const until = time("until");
  if (since && until && since.getTime() >= until.getTime()) {
    errors.push({ path: "until", message: "must be later than since (since is inclusive, until exclusive)" });
  }
  const agent = one("agent");
  const region = one("region");
  const verdict = one("verdict");
  if (verdict !== undefined && !VERDICTS.includes(verdict as Verdict)) {
    errors.push({ path: "verdict", message: `must be one of ${VERDICTS.join(", ")}` });
  }
  const format = one("format") ?? "jsonl";
  if (format !== "jsonl" && format !== "csv")
    errors.push({ path: "format", message: "must be jsonl or csv" });
  if (errors.length > 0) return { ok: false, errors };
  const filter: { -readonly [K in keyof ExportFilter]: ExportFilter[K] } = {};
  if (since) filter.since = since;
  if (until) filter.until = until;
  if (agent !== undefined) filter.agent = agent;
  if (region !== undefined) filter.region = region;
  if (verdict !== undefined) filter.verdict = verdict as Verdict;
  return { ok: true, query: { filter, format: format as ExportFormat } };
}
