/**
 * Which route a request takes: the first route, in file order, whose `when` holds. Each
 * route passed over is explained, so `policy check --explain` can say why a request
 * went where it went (or nowhere).
 *
 * Conditions on the request's details fail closed (SPEC "Policy file"): when a route's
 * other conditions hold and one of its `details` comparisons finds its member missing or
 * of another JSON type than its operands, routing stops and the request is refused
 * `invalid_request`. Passing over that route instead would let `"amount": "5000"` slip
 * past "amount over 1000" to a weaker route further down.
 */

import { canonicalJson } from "./canonical.js";
import { jsonType, resolvePointer, withArticle } from "./pointer.js";
import { operandTypes } from "./policy/details.js";
import { actionGlobMatches, effectiveRiskClass } from "./policy.js";
import type { ActionRequest, AgentPolicy, DetailCondition, FieldError, Policy, Route } from "./types.js";
import { RejectionError } from "./types.js";

export interface RouteQuery {
  readonly agent: AgentPolicy;
  readonly action_type: string;
  /** Already raised to the policy's floor (effectiveRiskClass). */
  readonly risk_class: string;
  readonly region: string;
  /**
   * The request's `action.details` (undefined when it has none). Required, not optional,
   * so no caller can forget it: a route with `details` conditions would then refuse
   * every request for a missing member.
   */
  readonly details: Readonly<Record<string, unknown>> | undefined;
}

export interface RouteExplanation {
  readonly route: string;
  readonly matched: boolean;
  /** e.g. "risk_class high not in [low]"; several failed conditions are joined with "; ". */
  readonly because: string;
  /** Set on the last entry when a details condition refused the request (fail closed). */
  readonly refused?: boolean;
}

export interface RouteDecision {
  /** null: no route matched; the request is denied with reason_code no_route. */
  readonly route: Route | null;
  /** One entry per route looked at, in order, ending with the match if there is one. */
  readonly explanation: readonly RouteExplanation[];
}

/** What explainRoute found when a details condition refused the request: the refusal selectRoute throws. */
export interface RouteRefusal {
  readonly route: string;
  readonly pointer: string;
  /** `action.details/amount: route "big-refunds" compares /amount with numbers, but ...`. */
  readonly message: string;
}

const list = (values: readonly string[]): string => `[${values.join(", ")}]`;

/** Every condition of `route.when` against the query: the ones that hold, the ones that fail, the ones that refuse. */
function judge(route: Route, q: RouteQuery): { held: string[]; failed: string[]; refused: RouteRefusal[] } {
  const held: string[] = [];
  const failed: string[] = [];
  const { when } = route;
  const inList = (key: string, value: string, values: readonly string[] | undefined): void => {
    if (values === undefined) return;
    if (values.includes(value)) held.push(`${key} ${value} in ${list(values)}`);
    else failed.push(`${key} ${value} not in ${list(values)}`);
  };
  inList("risk_class", q.risk_class, when.risk_class);
  inList("region", q.region, when.region);
  if (when.action !== undefined) {
    const glob = when.action.find((g) => actionGlobMatches(g, q.action_type));
    if (glob !== undefined) held.push(`action ${q.action_type} matches ${glob}`);
    else failed.push(`action ${q.action_type} matches none of ${list(when.action)}`);
  }
  inList("agent", q.agent.id, when.agent);
  if (when.vendor_managed !== undefined) {
    const text = `agent ${q.agent.id} has vendor_managed ${q.agent.vendor_managed}`;
    if (q.agent.vendor_managed === when.vendor_managed) held.push(text);
    else failed.push(`${text}, route wants ${when.vendor_managed}`);
  }
  const refused: RouteRefusal[] = [];
  for (const [pointer, condition] of Object.entries(when.details ?? {})) {
    const j = judgeDetail(route.name, pointer, condition, q.details);
    if ("refused" in j) refused.push(j.refused);
    else {
      held.push(...j.held);
      failed.push(...j.failed);
    }
  }
  return { held, failed, refused };
}

/** A value as the explanation shows it: canonical JSON, cut short (details may be large). */
function show(value: unknown): string {
  const text = canonicalJson(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const SYMBOL = { gt: ">", gte: ">=", lt: "<", lte: "<=" } as const;

function judgeDetail(
  route: string,
  pointer: string,
  c: DetailCondition,
  details: Readonly<Record<string, unknown>> | undefined,
): { held: string[]; failed: string[] } | { refused: RouteRefusal } {
  const held: string[] = [];
  const failed: string[] = [];
  const member = details === undefined ? { found: false as const } : resolvePointer(details, pointer);
  const types = operandTypes(c);
  const refuse = (has: string): { refused: RouteRefusal } => {
    const wants = [...types].map((t) => (t === "null" ? "null" : `${t}s`)).join(" or ");
    return {
      refused: {
        route,
        pointer,
        message: `action.details${pointer}: route "${route}" compares ${pointer} with ${wants}, but the request has ${has}`,
      },
    };
  };
  if (c.exists !== undefined) {
    const text = `details ${pointer}`;
    if (member.found === c.exists) held.push(`${text} ${c.exists ? "exists" : "is absent"}`);
    else
      failed.push(`${text} ${member.found ? "exists, route wants it absent" : "is absent, route wants it"}`);
  }
  if (types.size === 0) return { held, failed };
  if (!member.found) return refuse(details === undefined ? "no details" : "no such member");
  const value = member.value;
  const type = jsonType(value);
  if (!types.has(type)) return refuse(`${withArticle(type)} (${show(value)})`);

  const shown = show(value);
  const check = (ok: boolean, yes: string, no: string): void => {
    (ok ? held : failed).push(`details ${pointer} ${shown} ${ok ? yes : no}`);
  };
  if (c.eq !== undefined) {
    const eq = show(c.eq);
    check(canonicalJson(value) === canonicalJson(c.eq), `= ${eq}`, `!= ${eq}`);
  }
  if (c.in !== undefined) {
    const canonical = canonicalJson(value);
    const list = `[${c.in.map(show).join(", ")}]`;
    check(
      c.in.some((v) => canonicalJson(v) === canonical),
      `in ${list}`,
      `not in ${list}`,
    );
  }
  for (const op of ["gt", "gte", "lt", "lte"] as const) {
    const bound = c[op];
    if (bound === undefined) continue;
    // A member of another type than every operand refused above; one that is among `in`'s
    // or `eq`'s types but not a number fails the comparison rather than refusing.
    const ok =
      typeof value === "number" &&
      (op === "gt"
        ? value > bound
        : op === "gte"
          ? value >= bound
          : op === "lt"
            ? value < bound
            : value <= bound);
    check(ok, `${SYMBOL[op]} ${bound}`, `not ${SYMBOL[op]} ${bound}`);
  }
  return { held, failed };
}

/**
 * The route decision without throwing: what `policy check --explain` shows. `refusal` is
 * set when a details condition refused the request; `route` is then null and the last
 * explanation entry (marked `refused`) is the route that refused it.
 */
export function explainRoute(
  policy: Policy,
  q: RouteQuery,
): RouteDecision & { readonly refusal?: RouteRefusal } {
  const explanation: RouteExplanation[] = [];
  for (const route of policy.routes) {
    const { held, failed, refused } = judge(route, q);
    const otherKeysHold = failed.length === 0;
    if (otherKeysHold && refused.length > 0) {
      const because = refused.map((x) => x.message).join("; ");
      explanation.push({ route: route.name, matched: false, refused: true, because });
      return { route: null, explanation, refusal: refused[0]! };
    }
    if (failed.length === 0) {
      const because = held.length === 0 ? "when is empty: matches every request" : held.join("; ");
      explanation.push({ route: route.name, matched: true, because });
      return { route, explanation };
    }
    // Another key already rules the route out: a details member of the wrong type is then
    // only part of the explanation, never a refusal.
    const because = [...failed, ...refused.map((x) => x.message)].join("; ");
    explanation.push({ route: route.name, matched: false, because });
  }
  return { route: null, explanation };
}

/**
 * The first route whose conditions all hold; a condition left out of `when` holds for any
 * value. Throws RejectionError `invalid_request` when a details condition fails closed
 * (its FieldErrors name `action.details<pointer>`), before anything is stored.
 */
export function selectRoute(policy: Policy, q: RouteQuery): RouteDecision {
  const { refusal, ...decision } = explainRoute(policy, q);
  if (refusal !== undefined) throw detailsRefusal(refusal);
  return decision;
}

export function detailsRefusal(refusal: RouteRefusal): RejectionError {
  const path = `action.details${refusal.pointer}`;
  const errors: FieldError[] = [{ path, message: refusal.message.slice(path.length + 2) }];
  return new RejectionError("invalid_request", refusal.message, errors);
}

/**
 * Routes a whole request for `agent` (already judged by checkRequestAgainstPolicy): the
 * risk class raised to the policy's floor, the details passed along. What a revision of a
 * request is routed with again (SPEC "Changes before approval").
 */
export function routeRequest(policy: Policy, agent: AgentPolicy, request: ActionRequest): RouteDecision {
  return selectRoute(policy, {
    agent,
    action_type: request.action.type,
    risk_class: effectiveRiskClass(policy, request.action.type, request.risk_class),
    region: request.region,
    details: request.action.details,
  });
}
