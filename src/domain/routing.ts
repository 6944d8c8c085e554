/**
 * Which route a request takes: the first route, in file order, whose `when` holds. Each
 * route passed over is explained, so `policy check --explain` can say why a request
 * went where it went (or nowhere).
 */

import { actionGlobMatches } from "./policy.js";
import type { AgentPolicy, Policy, Route } from "./types.js";

export interface RouteQuery {
  readonly agent: AgentPolicy;
  readonly action_type: string;
  /** Already raised to the policy's floor (effectiveRiskClass). */
  readonly risk_class: string;
  readonly region: string;
}

export interface RouteExplanation {
  readonly route: string;
  readonly matched: boolean;
  /** e.g. "risk_class high not in [low]"; several failed conditions are joined with "; ". */
  readonly because: string;
}

export interface RouteDecision {
  /** null: no route matched; the request is denied with reason_code no_route. */
  readonly route: Route | null;
  /** One entry per route looked at, in order, ending with the match if there is one. */
  readonly explanation: readonly RouteExplanation[];
}

const list = (values: readonly string[]): string => `[${values.join(", ")}]`;

/** Every condition of `route.when` against the query: the ones that hold and the ones that fail. */
function judge(route: Route, q: RouteQuery): { held: string[]; failed: string[] } {
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
  return { held, failed };
}

/** The first route whose conditions all hold; a condition left out of `when` holds for any value. */
export function selectRoute(policy: Policy, q: RouteQuery): RouteDecision {
  const explanation: RouteExplanation[] = [];
  for (const route of policy.routes) {
    const { held, failed } = judge(route, q);
    if (failed.length === 0) {
      const because = held.length === 0 ? "when is empty: matches every request" : held.join("; ");
      explanation.push({ route: route.name, matched: true, because });
      return { route, explanation };
    }
    explanation.push({ route: route.name, matched: false, because: failed.join("; ") });
  }
  return { route: null, explanation };
}
