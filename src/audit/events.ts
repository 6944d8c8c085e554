/**
 * `countersign audit events ACTION_ID`: one action's decision path as a timeline a person
 * reads in a terminal. Event data carries agent-written text, so every value is shown
 * with invisible and control characters made visible: an agent must not be able to
 * rewrite an auditor's terminal with escape sequences or hide text with bidi controls.
 */
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
};

/** One value is cut after this many characters, so a 32 KiB detail cannot bury the timeline. */
const VALUE_LIMIT = 160;

export function formatTimeline(
  action: TimelineAction,
  events: readonly TimelineEvent[],
  record: TimelineRecord | null,
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
  return `${out.join("\n")}\n`;
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
    parts.push(`${show(k)}=${value(v)}`);
  }
  return parts.join(" ");
}

function value(v: unknown): string {
  let text: string;
  if (typeof v === "string") text = v === "" || /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  else if (Array.isArray(v) && v.every((x) => typeof x === "string" || typeof x === "number"))
    text = v.join(",");
  else text = JSON.stringify(v) ?? String(v);
  const shown = show(text);
  return shown.length > VALUE_LIMIT
    ? `${shown.slice(0, VALUE_LIMIT)}…(${shown.length - VALUE_LIMIT} more chars)`
    : shown;
}

/** One line, every hidden or control character visible. */
function show(s: string): string {
  return showInvisible(s).replaceAll("\n", LINE_BREAK_MARK).replaceAll("\t", "[U+0009]");
}
