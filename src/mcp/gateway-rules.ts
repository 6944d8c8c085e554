/**
 * The MCP gateway's decisions that need no I/O: which `mcp_tools` rule a call falls under,
 * the summary approvers see, the purpose, and whether the call's arguments can be sent as
 * an ActionRequest's `details` at all. Pure, so the rules that keep a gated call from
 * slipping through are tested on their own, without an upstream server or Countersign.
 */
import { canonicalJson } from "../domain/canonical.js";
import { iJsonProblems } from "../domain/json.js";
import type { McpToolRule } from "../domain/policy-mcp.js";

/** The action's summary is one line of at most 300 characters. */
export const SUMMARY_MAX = 300;
export const PURPOSE_MAX = 1000;
/** `details` limits: the arguments are refused past them, never cut (a cut call is another call). */
export const ARGUMENTS_MAX_BYTES = 32 * 1024;
export const ARGUMENTS_MAX_DEPTH = 32;

/**
 * A tool glob matches the whole name, case-sensitively; `*` matches any run of characters
 * (none included). Nothing else is special: `.` and `?` are themselves.
 */
export function toolGlobMatches(glob: string, name: string): boolean {
  const source = glob
    .split("*")
    .map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, "\\$&"))
    .join("[\\s\\S]*");
  return new RegExp(`^${source}$`, "u").test(name);
}

/** What the gateway does with a call. A call that no rule matches is refused. */
export type ToolDecision =
  | { kind: "allow"; rule: number }
  | { kind: "deny"; rule: number | null }
  | { kind: "approval"; rule: number; match: Extract<McpToolRule, { kind: "approval" }> };

/** The first rule whose glob matches the tool's name decides. */
export function decideToolCall(rules: readonly McpToolRule[], toolName: string): ToolDecision {
  for (const [i, r] of rules.entries()) {
    if (!toolGlobMatches(r.tool, toolName)) continue;
    if (r.kind === "approval") return { kind: "approval", rule: i, match: r };
    return { kind: r.kind, rule: i };
  }
  return { kind: "deny", rule: null };
}

// C0 and C1 controls (newlines and tabs included): a summary is one line, and a purpose
// has no business moving the cursor.
const CONTROL = /\p{Cc}/gu;

/** Cuts to `max` code points, ending in an ellipsis when anything was cut. */
function cut(s: string, max: number): string {
  const cps = [...s];
  return cps.length <= max ? s : `${cps.slice(0, max - 1).join("")}…`;
}

function argumentText(v: unknown): string {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return canonicalJson(v);
}

/**
 * Fills `{name}` from the call's top-level argument `name` in one pass: a value that itself
 * holds `{other}` stays as written, never filled in turn. `{{` and `}}` are literal braces;
 * a placeholder with no such argument stays visible as `{name}`. Control characters are
 * removed and the result is cut to 300 characters. No template: "MCP tool call <tool>".
 */
export function fillSummary(
  template: string | null,
  toolName: string,
  args: Readonly<Record<string, unknown>>,
): string {
  if (template === null) return cut(`MCP tool call ${toolName}`.replace(CONTROL, ""), SUMMARY_MAX);
  const filled = template.replace(
    /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_-]*)\}/g,
    (m, name: string | undefined) => {
      if (m === "{{") return "{";
      if (m === "}}") return "}";
      return name !== undefined && Object.hasOwn(args, name) ? argumentText(args[name]) : m;
    },
  );
  return cut(filled.replace(CONTROL, ""), SUMMARY_MAX);
}

/** The purpose the client gave in the call's `_meta.purpose`, else "MCP tool call <tool>". */
export function purposeOf(meta: Readonly<Record<string, unknown>> | undefined, toolName: string): string {
  const given = meta?.["purpose"];
  const text = typeof given === "string" ? given.replace(CONTROL, " ").trim() : "";
  return cut(text === "" ? `MCP tool call ${toolName}` : text, PURPOSE_MAX);
}

function depthOf(v: unknown, limit: number): number {
  if (typeof v !== "object" || v === null) return 0;
  if (limit < 0) return 1;
  let deepest = 0;
  for (const x of Array.isArray(v) ? v : Object.values(v)) {
    deepest = Math.max(deepest, depthOf(x, limit - 1));
    if (deepest > limit) break;
  }
  return deepest + 1;
}

/**
 * The call's arguments as an ActionRequest's `details`, or why they cannot be: not a JSON
 * object, not I-JSON (lone surrogates, unsafe integers), nested more than 32 deep, or over
 * 32 KiB as UTF-8 JSON. The gateway refuses such a call; it never cuts one to fit.
 */
export function argumentsAsDetails(
  args: unknown,
): { ok: true; details: Record<string, unknown> } | { ok: false; reason: string } {
  const value = args === undefined ? {} : args;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: "the arguments are not a JSON object" };
  }
  if (depthOf(value, ARGUMENTS_MAX_DEPTH) > ARGUMENTS_MAX_DEPTH) {
    return { ok: false, reason: `the arguments are nested more than ${ARGUMENTS_MAX_DEPTH} levels deep` };
  }
  const problems = iJsonProblems(value, "arguments");
  if (problems.length > 0) {
    return {
      ok: false,
      reason: `the arguments are not I-JSON: ${problems[0]!.path}: ${problems[0]!.message}`,
    };
  }
  const bytes = Buffer.byteLength(JSON.stringify(value), "utf8");
  if (bytes > ARGUMENTS_MAX_BYTES) {
    return {
      ok: false,
      reason: `the arguments are ${bytes} bytes as JSON; at most ${ARGUMENTS_MAX_BYTES} can be sent for approval`,
    };
  }
  return { ok: true, details: value as Record<string, unknown> };
}
