/**
 * An agent's `mcp_tools`: which tool calls the MCP gateway passes through, which need an
 * approval (and as what action), and which it refuses. Validated here, on the YAML nodes
 * themselves so each problem keeps its line, with the same `PolicyProblem` shape and the
 * same strictness as the rest of the policy: an unknown key or a rule that could never
 * match is a problem, since a typo in a gate must never quietly let a call through.
 *
 * Rules are tried in order and the first whose `tool` glob matches the whole tool name
 * (case-sensitively) decides; a call that no rule matches is refused. So a rule after a
 * `tool: "*"` rule, or after an identical glob, can never match and is reported.
 *
 * This module is self-contained so the policy loader can call it for each agent:
 * `parseMcpTools(entry.value, { doc, lines, path, ... })` and append its problems.
 */

import { type Document, isAlias, isMap, isPair, isScalar, isSeq, type LineCounter } from "yaml";
import type { McpApprovalRule, McpToolRule } from "./types.js";

/** The policy loader's problem shape (file:line:column: path: message), kept here so this module stands alone. */
export interface PolicyProblem {
  readonly line: number;
  readonly column: number;
  readonly path: string;
  readonly message: string;
}

// The rule types live with the rest of the policy's vocabulary (types.ts), which the agent
// SDK ships: it must not need the YAML library to describe a policy.
export type { McpAllowRule, McpApprovalRule, McpDenyRule, McpToolRule } from "./types.js";

export interface McpToolsContext {
  readonly doc: Document;
  readonly lines: LineCounter;
  /** Where `mcp_tools` sits, e.g. `["agents", "billing-agent", "mcp_tools"]`. */
  readonly path: readonly (string | number)[];
  readonly riskClasses: readonly string[];
  /** The policy's regions. */
  readonly regions: readonly string[];
  /** The agent's own `regions`; empty: any of the policy's. */
  readonly agentRegions: readonly string[];
  /** Whether the agent's `allowed_actions` covers an action type (the policy's glob matcher). */
  readonly actionAllowed: (actionType: string) => boolean;
}

/** MCP tool names: 1-128 of these characters (the MCP spec's recommended set, plus `/`). */
const TOOL_GLOB = /^[A-Za-z0-9_./*-]{1,128}$/;
const ACTION_TYPE = /^[a-z0-9_]+(\.[a-z0-9_]+)*$/;
const SUMMARY_MAX = 300;
const RULE_KEYS = ["tool", "allow", "deny", "action", "risk_class", "region", "summary"] as const;
const APPROVAL_KEYS = ["action", "risk_class", "region", "summary"] as const;

/** True when any rule sends calls for approval: the gateway then needs `--executor`. */
export function mcpNeedsApproval(rules: readonly McpToolRule[]): boolean {
  return rules.some((r) => r.kind === "approval");
}

/**
 * The placeholders of a summary template, or a reason it is malformed. `{name}` takes a
 * top-level argument (letters, digits, `_`, `-`); `{{` and `}}` are literal braces.
 */
export function summaryPlaceholders(template: string): { names: string[] } | { reason: string } {
  const names: string[] = [];
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c === "{" && template[i + 1] === "{") i++;
    else if (c === "}" && template[i + 1] === "}") i++;
    else if (c === "}") return { reason: `a lone "}" at character ${i + 1}; write "}}" for a literal brace` };
    else if (c === "{") {
      const end = template.indexOf("}", i);
      const name = end < 0 ? null : template.slice(i + 1, end);
      if (name === null || !/^[A-Za-z_][A-Za-z0-9_-]*$/.test(name)) {
        return {
          reason: `"{" at character ${i + 1} does not open a placeholder like {amount}; write "{{" for a literal brace`,
        };
      }
      names.push(name);
      i = end;
    }
  }
  return { names };
}

type Seg = string | number;

function formatPath(path: readonly Seg[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number" || /^[A-Za-z0-9_-]+$/.test(seg)) out += `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out.startsWith(".") ? out.slice(1) : out;
}

function describe(node: unknown): string {
  if (node === null || node === undefined) return "nothing";
  if (isMap(node)) return "a map";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return "nothing";
    if (typeof v === "string") return `the text ${JSON.stringify(v)}`;
    return typeof v === "number" || typeof v === "boolean" ? String(v) : `a ${typeof v}`;
  }
  return "an unexpected value";
}

/** Validates an agent's `mcp_tools` node and returns its rules (only the valid ones) and every problem. */
export function parseMcpTools(
  raw: unknown,
  ctx: McpToolsContext,
): { rules: McpToolRule[]; problems: PolicyProblem[] } {
  const problems: PolicyProblem[] = [];
  const deref = (n: unknown) => (isAlias(n) ? n.resolve(ctx.doc) : n);
  const report = (node: unknown, path: readonly Seg[], message: string, fallback?: unknown) => {
    const range = (x: unknown) =>
      typeof x === "object" && x !== null && "range" in x
        ? (x as { range?: readonly number[] | null }).range?.[0]
        : undefined;
    const offset = range(node) ?? range(fallback);
    const pos = offset === undefined ? { line: 1, col: 1 } : ctx.lines.linePos(offset);
    problems.push({ line: pos.line, column: pos.col, path: formatPath(path), message });
  };

  const rules: McpToolRule[] = [];
  const list = deref(raw);
  if (!isSeq(list)) {
    report(list, ctx.path, `expected a list of tool rules, got ${describe(list)}`, raw);
    return { rules, problems };
  }
  /** The index of the first rule with each glob, to find rules that can never match. */
  const seen = new Map<string, number>();
  let catchAll: number | null = null;

  list.items.forEach((itemRaw, i) => {
    const path = [...ctx.path, i];
    const item = deref(itemRaw);
    if (!isMap(item)) {
      report(
        item,
        path,
        `expected a tool rule (a map like { tool: "read_*", allow: true }), got ${describe(item)}`,
        itemRaw,
      );
      return;
    }
    const entries = new Map<string, { keyNode: unknown; value: unknown }>();
    for (const pair of item.items) {
      if (!isPair(pair)) continue;
      const keyNode = deref(pair.key);
      const key = isScalar(keyNode) ? String(keyNode.value) : "";
      if (!(RULE_KEYS as readonly string[]).includes(key)) {
        report(
          keyNode,
          [...path, key],
          `unknown key "${key}"; expected one of ${RULE_KEYS.join(", ")}`,
          item,
        );
      } else if (!entries.has(key)) entries.set(key, { keyNode, value: deref(pair.value) });
    }
    const text = (key: string): string | undefined => {
      const e = entries.get(key);
      if (e === undefined) return undefined;
      if (!isScalar(e.value) || typeof e.value.value !== "string" || e.value.value === "") {
        report(e.value, [...path, key], `expected text, got ${describe(e.value)}`, e.keyNode);
        return undefined;
      }
      return e.value.value;
    };
    const ok = problems.length;

    const tool = text("tool");
    if (!entries.has("tool"))
      report(item, [...path, "tool"], "tool is required: the tool name or a glob like read_*");
    else if (tool !== undefined && !TOOL_GLOB.test(tool)) {
      report(
        entries.get("tool")!.value,
        [...path, "tool"],
        `"${tool}" is not a tool glob: 1-128 of letters, digits, _ . / - and * (any run of characters)`,
      );
    }

    const flags: ("allow" | "deny")[] = [];
    for (const key of ["allow", "deny"] as const) {
      const e = entries.get(key);
      if (e === undefined) continue;
      if (!isScalar(e.value) || e.value.value !== true) {
        report(
          e.value,
          [...path, key],
          `${key} must be true (leave it out otherwise), got ${describe(e.value)}`,
          e.keyNode,
        );
      } else flags.push(key);
    }
    const approvalKeys = APPROVAL_KEYS.filter((k) => entries.has(k));
    const kinds = flags.length + (entries.has("action") ? 1 : 0);
    if (kinds !== 1) {
      report(
        item,
        path,
        kinds === 0
          ? "a rule needs one of allow: true, deny: true, or action: (the action type its calls are approved as)"
          : "a rule takes exactly one of allow, deny and action",
      );
    } else if (flags.length === 1 && approvalKeys.length > 0) {
      report(
        entries.get(approvalKeys[0]!)!.keyNode,
        [...path, approvalKeys[0]!],
        `${approvalKeys.join(", ")} ${approvalKeys.length === 1 ? "belongs" : "belong"} to a rule that needs approval (with action:); ${flags[0] === "allow" ? "an allow" : "a deny"} rule takes only tool`,
      );
    }

    let approval: McpApprovalRule | null = null;
    if (entries.has("action") && flags.length === 0) {
      const action = text("action");
      if (action !== undefined && !ACTION_TYPE.test(action)) {
        report(
          entries.get("action")!.value,
          [...path, "action"],
          `"${action}" is not an action type: dotted lower-case, e.g. payments.refund`,
        );
      } else if (action !== undefined && action.length > 128) {
        report(
          entries.get("action")!.value,
          [...path, "action"],
          "an action type has at most 128 characters",
        );
      } else if (action !== undefined && !ctx.actionAllowed(action)) {
        report(
          entries.get("action")!.value,
          [...path, "action"],
          `the agent's allowed_actions do not cover ${action}: every call would be refused`,
        );
      }
      const risk = text("risk_class");
      if (!entries.has("risk_class"))
        report(item, [...path, "risk_class"], "risk_class is required with action");
      else if (risk !== undefined && !ctx.riskClasses.includes(risk)) {
        report(
          entries.get("risk_class")!.value,
          [...path, "risk_class"],
          `"${risk}" is not one of risk_classes (${ctx.riskClasses.join(", ")})`,
        );
      }
      const region = text("region");
      if (!entries.has("region")) report(item, [...path, "region"], "region is required with action");
      else if (region !== undefined && !ctx.regions.includes(region)) {
        report(
          entries.get("region")!.value,
          [...path, "region"],
          `"${region}" is not one of the policy's regions (${ctx.regions.join(", ")})`,
        );
      } else if (region !== undefined && ctx.agentRegions.length > 0 && !ctx.agentRegions.includes(region)) {
        report(
          entries.get("region")!.value,
          [...path, "region"],
          `"${region}" is not one of the agent's regions (${ctx.agentRegions.join(", ")}): every call would be refused`,
        );
      }
      const summary = entries.has("summary") ? text("summary") : null;
      if (typeof summary === "string") {
        const placeholders = summaryPlaceholders(summary);
        if ("reason" in placeholders)
          report(entries.get("summary")!.value, [...path, "summary"], placeholders.reason);
        else if ([...summary].length > SUMMARY_MAX) {
          report(
            entries.get("summary")!.value,
            [...path, "summary"],
            `at most ${SUMMARY_MAX} characters (a summary is one line)`,
          );
        } else if (/[\p{Cc}]/u.test(summary)) {
          report(
            entries.get("summary")!.value,
            [...path, "summary"],
            "a summary is one line, without control characters",
          );
        }
      }
      if (action !== undefined && risk !== undefined && region !== undefined && summary !== undefined) {
        approval = { kind: "approval", tool: tool ?? "", action, risk_class: risk, region, summary };
      }
    }

    if (tool !== undefined && TOOL_GLOB.test(tool)) {
      const earlier = catchAll ?? seen.get(tool);
      if (earlier !== undefined) {
        report(
          entries.get("tool")!.value,
          [...path, "tool"],
          `this rule can never match: rule ${earlier} (${catchAll !== null ? 'tool "*"' : `the same glob "${tool}"`}) matches every call it would, and the first match wins`,
        );
      }
      if (!seen.has(tool)) seen.set(tool, i);
      if (tool.replaceAll("*", "") === "" && catchAll === null) catchAll = i;
    }
    if (problems.length !== ok || tool === undefined) return;
    if (approval) rules.push({ ...approval, tool });
    else if (flags[0] === "allow") rules.push({ kind: "allow", tool });
    else if (flags[0] === "deny") rules.push({ kind: "deny", tool });
  });
  return { rules, problems };
}
