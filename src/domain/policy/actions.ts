/**
 * The policy's action vocabulary: action type globs and risk classes, as the router and
 * the request checks ask about them.
 */
import type { Policy } from "../types.js";

const ACTION_TYPE = /^[a-z0-9_]+(\.[a-z0-9_]+)*$/;
const ACTION_GLOB = /^(\*|[a-z0-9_*]+(\.[a-z0-9_*]+)*)$/;

/** True if `pattern` is a valid action glob: `*`, or dotted lower-case segments that may hold `*`. */
export function isActionGlob(pattern: string): boolean {
  return ACTION_GLOB.test(pattern);
}

const globCache = new Map<string, RegExp>();

function globRegExp(pattern: string): RegExp {
  let re = globCache.get(pattern);
  if (re !== undefined) return re;
  if (pattern === "*") {
    re = ACTION_TYPE;
  } else {
    const segments = pattern.split(".").map((s) => s.replace(/[^a-z0-9_*]/g, "\\$&"));
    const last = segments.length - 1;
    const source = segments
      .map((s, i) =>
        // A whole `*` segment at the end also covers deeper types: `payments.*` is meant
        // to take in `payments.refund.partial`, not only one level down.
        s === "*"
          ? i === last
            ? "[a-z0-9_]+(\\.[a-z0-9_]+)*"
            : "[a-z0-9_]+"
          : s.replaceAll("*", "[a-z0-9_]*"),
      )
      .join("\\.");
    re = new RegExp(`^${source}$`);
  }
  // Patterns come from the policy, so the cache stays small; the bound only guards
  // against a caller feeding it arbitrary input.
  if (globCache.size > 1000) globCache.clear();
  globCache.set(pattern, re);
  return re;
}

/**
 * `*` alone matches every action type; inside a segment `*` matches within that segment
 * (`payments.re*` matches `payments.refund`); a trailing `.*` matches one or more
 * segments (`payments.*` matches `payments.refund` and `payments.refund.partial`).
 * Only well-formed action types (dotted lower-case) ever match.
 */
export function actionGlobMatches(pattern: string, actionType: string): boolean {
  return ACTION_TYPE.test(actionType) && globRegExp(pattern).test(actionType);
}

/** Index of `riskClass` in the policy's rising `risk_classes`; -1 if the policy does not know it. */
export function riskRank(policy: Policy, riskClass: string): number {
  return policy.risk_classes.indexOf(riskClass);
}

/**
 * The risk class the policy treats a request as: the agent's own, raised to the highest
 * `min_risk` of every `actions` entry matching the type. Never lower than requested.
 * Throws on a risk class the policy does not know, so it cannot be quietly mapped onto a known one.
 */
export function effectiveRiskClass(policy: Policy, actionType: string, requested: string): string {
  let rank = riskRank(policy, requested);
  if (rank < 0) {
    throw new Error(
      `unknown risk class "${requested}": the policy's risk_classes are ${policy.risk_classes.join(", ")}`,
    );
  }
  for (const [glob, { min_risk }] of Object.entries(policy.actions)) {
    if (min_risk !== undefined && actionGlobMatches(glob, actionType))
      rank = Math.max(rank, riskRank(policy, min_risk));
  }
  return policy.risk_classes[rank]!;
}

/**
 * The pointers approvers may change in this request: its `action.editable`, unless an
 * `actions` entry matching the type says `editable: false` (any matching entry forbids
 * it, as any matching `min_risk` raises the floor). A request that asks for editable
 * pointers where the policy forbids changes is still accepted, as the policy "can
 * forbid" changes, not refuse requests: it is decided as the agent sent it, with no
 * "Approve with changes". Empty when nothing may change.
 */
export function changesAllowed(
  policy: Policy,
  actionType: string,
  request: { readonly action: { readonly editable?: readonly string[] } },
): readonly string[] {
  const editable = request.action.editable ?? [];
  if (editable.length === 0) return [];
  for (const [glob, settings] of Object.entries(policy.actions)) {
    if (settings.editable === false && actionGlobMatches(glob, actionType)) return [];
  }
  return editable;
}
