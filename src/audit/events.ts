/**
 * `countersign audit events ACTION_ID`: one action's decision path as a timeline a person
 * reads in a terminal. Event data carries agent-written text, so every value is shown
 * with invisible and control characters made visible: an agent must not be able to
 * rewrite an auditor's terminal with escape sequences or hide text with bidi controls.
 *
 * After the verdict, an approval's life (redeemed, its outcome, revoked, and every refused
 * attempt) is in the same timeline as events (GRANT_EVENTS), and its receipts, the signed
 * entries of the log, are listed under the record.
 */
import { sha256B64url } from "../domain/canonical.js";
import { LINE_BREAK_MARK, showInvisible } from "../domain/text.js";

export interface TimelineAction {
  readonly id: string;
  readonly agentId: string;
  readonly requestId: string;
  readonly actionType: string;
  readonly status: string;
  readonly requestedAt: number;
}

export interface TimelineEvent {
  readonly type: string;
  readonly actor: string;
  /** Unix milliseconds. */
  readonly at: number;
  readonly data: Readonly<Record<string, unknown>>;
}

/**
 * The event types written for what happens to an approval after its verdict; each refusal
 * is an event too, with `code` (the HTTP problem code) and `reason` in its data. The
 * events that a receipt backs carry `receipt_seq`; the receipt's JWS stays in the log.
 */
export const GRANT_EVENTS = {
  /** An executor redeemed the approval: data {executor, receipt_seq}. */
  redeemed: "redeemed",
  /** A redemption was refused: data {executor, code, reason}. */
  redeemRefused: "redeem_refused",
  /** An outcome was recorded: data {status, detail?, receipt_seq}; the actor says who reported it. */
  outcomeReported: "outcome_reported",
  /** An outcome report was refused: data {code, reason}. */
  outcomeRefused: "outcome_refused",
  /** The approval was revoked: data {reason_text, receipt_seq}; actor `slack:U...` or `cli`. */
  revoked: "revoked",
  /** A revocation was refused (already redeemed, expired, not allowed): data {code, reason}. */
  revokeRefused: "revoke_refused",
} as const;

/**
 * The event types of "Approve with changes" (SPEC "Changes before approval"): an approver's
 * change, data `{revision, changes: [{pointer, old, new}], patch, sha256, cleared, ...}`,
 * and a refused change, data `{code?, reason, ...}`. `changed` is the same event under the
 * name the first revisions branch wrote.
 */
export const CHANGE_EVENTS = {
  changed: "request_changed",
  changedLegacy: "changed",
  refused: "change_refused",
} as const;

/** A receipt of the action, as stored: the timeline shows what it signs. */
export interface TimelineReceipt {
  readonly seq: number;
  readonly jws: string;
}

export interface TimelineRecord {
  readonly seq: number;
  readonly verdict: string;
  readonly decidedAt: number;
  readonly decisionId: string;
  readonly digest: string;
}

/**
 * Data keys left out of the timeline because they repeat what another line says at
 * length (the route explanation is in `policy check --explain`); the event row keeps them.
 */
const HIDDEN_KEYS: Readonly<Record<string, readonly string[]>> = {
  routed: ["explanation"],
  // A refused redemption may carry what was posted; the record is in the log already.
  [GRANT_EVENTS.redeemRefused]: ["record", "request"],
  // `changes` says the same as the patch, old and new side by side; the patch is in the record.
  [CHANGE_EVENTS.changed]: ["patch"],
  [CHANGE_EVENTS.changedLegacy]: ["patch"],
};

/** One value is cut after this many characters, so a 32 KiB detail cannot bury the timeline. */
const VALUE_LIMIT = 160;

export function formatTimeline(
  action: TimelineAction,
  events: readonly TimelineEvent[],
  record: TimelineRecord | null,
  receipts: readonly TimelineReceipt[] = [],
): string {
  const out: string[] = [
    `action ${show(action.id)}: ${show(action.actionType)} by agent ${show(action.agentId)}, request ${show(action.requestId)}`,
    `requested ${iso(action.requestedAt)}, ${events.length} event(s)`,
    "",
  ];
  const actorWidth = Math.min(28, Math.max(5, ...events.map((e) => show(e.actor).length)));
  const typeWidth = Math.min(20, Math.max(4, ...events.map((e) => e.type.length)));
  for (const e of events) {
    const data = formatData(e.data, HIDDEN_KEYS[e.type] ?? []);
    out.push(
      `${iso(e.at)}  ${show(e.actor).padEnd(actorWidth)}  ${show(e.type).padEnd(typeWidth)}${data ? `  ${data}` : ""}`.trimEnd(),
    );
  }
  out.push("");
  out.push(
    record
      ? `record seq ${record.seq}: ${show(record.verdict)}, decided ${iso(record.decidedAt)}, decision ${show(record.decisionId)}, sha256 ${record.digest}`
      : `no record: the action is ${show(action.status)}, without a verdict yet`,
  );
  for (const r of receipts) out.push(receiptLine(r));
  return `${out.join("\n")}\n`;
}

/** `receipt seq 7: redeemed at ... by executor payments-api, sha256 ...`, from the signed claims. */
function receiptLine(r: TimelineReceipt): string {
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(Buffer.from(r.jws.split(".")[1] ?? "", "base64url").toString("utf8")) as Record<
      string,
      unknown
    >;
  } catch {
    return `receipt seq ${r.seq}: unreadable (not a compact JWS with a JSON payload)`;
  }
  const by = typeof c["by"] === "object" && c["by"] !== null ? (c["by"] as Record<string, unknown>) : {};
  const who =
    typeof by["executor"] === "string"
      ? `executor ${show(by["executor"])}`
      : typeof by["agent"] === "string"
        ? `agent ${show(by["agent"])}`
        : by["cli"] === true
          ? "the CLI"
          : typeof by["user"] === "string"
            ? `slack:${show(by["user"])}`
            : "unknown";
  const extra = { status: c["status"], detail: c["detail"], reason_text: c["reason_text"] };
  const data = formatData(extra);
  return `receipt seq ${r.seq}: ${show(String(c["kind"]))} at ${show(String(c["at"]))} by ${who}${data ? `, ${data}` : ""}, sha256 ${sha256B64url(r.jws)}`;
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

/** Data as `key=value` pairs, in the order written; nulls and empty lists are left out. */
export function formatData(data: Readonly<Record<string, unknown>>, hidden: readonly string[] = []): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(data)) {
    if (hidden.includes(k) || v === null || v === undefined) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    const changes = k === "changes" ? memberChanges(v) : null;
    parts.push(changes ?? `${show(k)}=${value(v)}`);
  }
  return parts.join(" ");
}

/**
 * An approver's changes as `/amount: 120 → 80`, each value JSON and cut like any other,
 * agent text made visible; null when `v` is not a list of {pointer, old, new}.
 */
function memberChanges(v: unknown): string | null {
  if (!Array.isArray(v)) return null;
  const out: string[] = [];
  for (const c of v) {
    if (typeof c !== "object" || c === null || typeof (c as { pointer?: unknown }).pointer !== "string")
      return null;
    const { pointer, old, new: next } = c as { pointer: string; old?: unknown; new?: unknown };
    out.push(
      `${show(pointer)}: ${cut(show(JSON.stringify(old) ?? "?"))} → ${cut(show(JSON.stringify(next) ?? "?"))}`,
    );
  }
  return out.join("; ");
}

function value(v: unknown): string {
  let text: string;
  if (typeof v === "string") text = v === "" || /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  else if (Array.isArray(v) && v.every((x) => typeof x === "string" || typeof x === "number"))
    text = v.join(",");
  else text = JSON.stringify(v) ?? String(v);
  return cut(show(text));
}

function cut(shown: string): string {
  return shown.length > VALUE_LIMIT
    ? `${shown.slice(0, VALUE_LIMIT)}…(${shown.length - VALUE_LIMIT} more chars)`
    : shown;
}

/** One line, every hidden or control character visible. */
function show(s: string): string {
  return showInvisible(s).replaceAll("\n", LINE_BREAK_MARK).replaceAll("\t", "[U+0009]");
}
