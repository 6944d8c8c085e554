/**
 * Routing on the request's details (SPEC "Policy file", `when.details`): every operator,
 * RFC 8785 equality, and failing closed, so a member of the wrong type or a missing one
 * refuses the request instead of sliding to a weaker route.
 */
import { describe, expect, it } from "vitest";
import { parsePolicyText as parsePolicy } from "../../src/adapters/policy/load.js";
import { validateRequest } from "../../src/domain/request.js";
import { explainRoute, type RouteQuery, routeRequest, selectRoute } from "../../src/domain/routing.js";
import { type Policy, RejectionError } from "../../src/domain/types.js";

const HEAD = `issuer: https://cs.example.com
slack: { team_id: T0TEAM }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: Europe/Berlin }
  us: { tz: America/New_York }
actions:
  payments.refund: { min_risk: high }
agents:
  billing:
    auth: { hmac_secret_env: BILLING_SECRET }
    allowed_actions: ["payments.*"]
`;
const people = `    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
`;

function policyWith(routes: string): Policy {
  return parsePolicy(`${HEAD}routes:\n${routes}`, "/etc/countersign/policy.yml");
}

function query(
  policy: Policy,
  details: Record<string, unknown> | undefined,
  q: Partial<RouteQuery> = {},
): RouteQuery {
  return {
    agent: policy.agents["billing"]!,
    action_type: "payments.refund",
    risk_class: "high",
    region: "eu",
    details,
    ...q,
  };
}

/** The route's name, "refused: <message>" when it fails closed, or null for no route. */
function routeOf(policy: Policy, details: Record<string, unknown> | undefined, q: Partial<RouteQuery> = {}) {
  try {
    return selectRoute(policy, query(policy, details, q)).route?.name ?? null;
  } catch (e) {
    if (e instanceof RejectionError) return `refused ${e.code}: ${e.message}`;
    throw e;
  }
}

/** One details route `only`, then a catch-all `rest`. */
function oneCondition(condition: string): Policy {
  return policyWith(`  - name: only
    when: { details: { "/x": ${condition} } }
${people}  - name: rest
    when: {}
${people}`);
}

describe("details conditions: every operator", () => {
  it("eq", () => {
    const p = oneCondition("{ eq: full }");
    expect(routeOf(p, { x: "full" })).toBe("only");
    expect(routeOf(p, { x: "partial" })).toBe("rest");
  });

  it("in", () => {
    const p = oneCondition("{ in: [EUR, USD] }");
    expect(routeOf(p, { x: "USD" })).toBe("only");
    expect(routeOf(p, { x: "GBP" })).toBe("rest");
  });

  it("gt, gte, lt, lte at their edges", () => {
    const cases: [string, number, boolean][] = [
      ["gt", 1000, false],
      ["gt", 1000.5, true],
      ["gte", 1000, true],
      ["gte", 999.99, false],
      ["lt", 1000, false],
      ["lt", -5, true],
      ["lte", 1000, true],
      ["lte", 1001, false],
    ];
    for (const [op, value, matches] of cases) {
      const p = oneCondition(`{ ${op}: 1000 }`);
      expect(routeOf(p, { x: value }), `${op} 1000 with ${value}`).toBe(matches ? "only" : "rest");
    }
  });

  it("several operators on one pointer must all hold", () => {
    const p = oneCondition("{ gte: 100, lt: 1000, in: [100, 500, 2000] }");
    expect(routeOf(p, { x: 500 })).toBe("only");
    expect(routeOf(p, { x: 2000 })).toBe("rest"); // in the list, not below 1000
    expect(routeOf(p, { x: 600 })).toBe("rest"); // in range, not in the list
  });

  it("exists true and false, on a member of any type, even null", () => {
    const yes = oneCondition("{ exists: true }");
    const no = oneCondition("{ exists: false }");
    for (const v of ["", 0, false, null, [], {}]) {
      expect(routeOf(yes, { x: v })).toBe("only");
      expect(routeOf(no, { x: v })).toBe("rest");
    }
    expect(routeOf(yes, { y: 1 })).toBe("rest");
    expect(routeOf(no, { y: 1 })).toBe("only");
    expect(routeOf(no, undefined)).toBe("only");
  });

  it("follows nested pointers, array indexes and escaped tokens", () => {
    const p = policyWith(`  - name: deep
    when: { details: { "/order/lines/1/sku": { eq: B-2 }, "/a~1b": { eq: 1 }, "/m~0n": { eq: 2 } } }
${people}`);
    const details = { order: { lines: [{ sku: "A-1" }, { sku: "B-2" }] }, "a/b": 1, "m~n": 2 };
    expect(routeOf(p, details)).toBe("deep");
  });

  it("never reads an inherited member: /constructor on a plain object is missing", () => {
    const p = oneCondition("{ exists: true }");
    expect(
      routeOf(
        policyWith(`  - name: only
    when: { details: { "/constructor": { exists: true } } }
${people}`),
        { x: 1 },
      ),
    ).toBeNull();
    expect(routeOf(p, JSON.parse('{"__proto__": 1}'))).toBe("rest");
  });
});

describe("details conditions: RFC 8785 equality", () => {
  it("1 and 1.0 are the same number", () => {
    const p = oneCondition("{ eq: 1.0 }");
    expect(routeOf(p, JSON.parse('{"x": 1}'))).toBe("only");
    const q = oneCondition("{ in: [1] }");
    expect(routeOf(q, JSON.parse('{"x": 1.0}'))).toBe("only");
    expect(routeOf(q, JSON.parse('{"x": 1e0}'))).toBe("only");
  });

  it("objects are equal whatever the order of their keys; arrays keep their order", () => {
    const p = oneCondition("{ eq: { b: [1, 2], a: { d: true, c: null } } }");
    expect(routeOf(p, { x: { a: { c: null, d: true }, b: [1, 2] } })).toBe("only");
    expect(routeOf(p, { x: { a: { c: null, d: true }, b: [2, 1] } })).toBe("rest");
    expect(routeOf(p, { x: { a: { c: null, d: true }, b: [1, 2], e: 0 } })).toBe("rest");
  });

  it("a number never equals its text, nor true 1", () => {
    const p = oneCondition('{ in: ["1", true] }');
    expect(routeOf(p, { x: "1" })).toBe("only");
    expect(routeOf(p, { x: true })).toBe("only");
    expect(routeOf(p, { x: 1 })).toMatch(/^refused invalid_request: /);
  });
});

describe("details conditions fail closed", () => {
  // The SPEC's shape: a strong route for big refunds above a weaker one for all refunds.
  const policy = policyWith(`  - name: big-refunds
    when: { action: ["payments.refund"], details: { "/amount": { gt: 1000 }, "/currency": { in: [EUR, USD] } } }
${people}  - name: refunds
    when: { action: ["payments.refund"] }
${people}  - name: everything-else
    when: {}
${people}`);

  it("takes the strong route for a big refund and the weaker one for a small one", () => {
    expect(routeOf(policy, { amount: 5000, currency: "EUR" })).toBe("big-refunds");
    expect(routeOf(policy, { amount: 500, currency: "EUR" })).toBe("refunds");
    expect(routeOf(policy, { amount: 5000, currency: "GBP" })).toBe("refunds");
  });

  it('refuses "amount": "5000": it can never reach the weaker refunds route', () => {
    expect(routeOf(policy, { amount: "5000", currency: "EUR" })).toBe(
      'refused invalid_request: action.details/amount: route "big-refunds" compares /amount with numbers, but the request has a string ("5000")',
    );
  });

  it("refuses a missing member, null, a boolean and an object", () => {
    expect(routeOf(policy, { currency: "EUR" })).toBe(
      'refused invalid_request: action.details/amount: route "big-refunds" compares /amount with numbers, but the request has no such member',
    );
    expect(routeOf(policy, undefined)).toMatch(
      /compares \/amount with numbers, but the request has no details$/,
    );
    expect(routeOf(policy, { amount: null, currency: "EUR" })).toMatch(/but the request has null \(null\)$/);
    expect(routeOf(policy, { amount: true, currency: "EUR" })).toMatch(
      /but the request has a boolean \(true\)$/,
    );
    expect(routeOf(policy, { amount: { v: 5000 }, currency: "EUR" })).toMatch(
      /but the request has an object \(\{"v":5000\}\)$/,
    );
    expect(routeOf(policy, { amount: 5000, currency: 978 })).toBe(
      'refused invalid_request: action.details/currency: route "big-refunds" compares /currency with strings, but the request has a number (978)',
    );
  });

  it("the refusal names the field in its errors, as other invalid_request refusals do", () => {
    let err: unknown;
    try {
      selectRoute(policy, query(policy, { amount: "5000", currency: "EUR" }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RejectionError);
    const r = err as RejectionError;
    expect(r.failedReason).toBe(
      'rejected: invalid_request: action.details/amount: route "big-refunds" compares /amount with numbers, but the request has a string ("5000")',
    );
    expect(r.errors).toEqual([
      {
        path: "action.details/amount",
        message: 'route "big-refunds" compares /amount with numbers, but the request has a string ("5000")',
      },
    ]);
  });

  it("does not refuse when another key already rules the route out", () => {
    // Not a refund: big-refunds is passed over whatever the amount is.
    expect(routeOf(policy, { amount: "5000" }, { action_type: "payments.payout" })).toBe("everything-else");
    const d = explainRoute(policy, query(policy, { amount: "5000" }, { action_type: "payments.payout" }));
    expect(d.refusal).toBeUndefined();
    expect(d.explanation[0]).toEqual({
      route: "big-refunds",
      matched: false,
      because:
        'action payments.payout matches none of [payments.refund]; action.details/amount: route "big-refunds" compares /amount with numbers, but the request has a string ("5000"); action.details/currency: route "big-refunds" compares /currency with strings, but the request has no such member',
    });
  });

  it("does not refuse on a route after the one that matched", () => {
    const p = policyWith(`  - name: first
    when: { region: [eu] }
${people}  - name: big
    when: { details: { "/amount": { gt: 1000 } } }
${people}`);
    expect(routeOf(p, { amount: "oops" })).toBe("first");
    expect(routeOf(p, { amount: "oops" }, { region: "us" })).toMatch(
      /^refused invalid_request: action.details\/amount: route "big"/,
    );
  });

  it("a member among in's types that is not a number fails gt instead of refusing", () => {
    const p = oneCondition("{ in: [none, 5, 50], gt: 10 }");
    expect(routeOf(p, { x: 50 })).toBe("only");
    expect(routeOf(p, { x: "none" })).toBe("rest");
    expect(routeOf(p, { x: true })).toMatch(
      /compares \/x with strings or numbers, but the request has a boolean/,
    );
  });

  it("eq: null compares with null: another type refuses", () => {
    const p = oneCondition("{ eq: null }");
    expect(routeOf(p, { x: null })).toBe("only");
    expect(routeOf(p, { x: 0 })).toMatch(/compares \/x with null, but the request has a number \(0\)$/);
  });

  it("exists beside a comparison does not soften fail closed: a missing member still refuses", () => {
    const p = oneCondition("{ exists: true, gt: 10 }");
    expect(routeOf(p, { x: 11 })).toBe("only");
    expect(routeOf(p, { y: 1 })).toMatch(/but the request has no such member$/);
  });
});

describe("the explanation says which condition held or failed", () => {
  const policy = policyWith(`  - name: big-refunds
    when: { action: ["payments.refund"], details: { "/amount": { gt: 1000 }, "/currency": { in: [EUR, USD] }, "/note": { exists: false } } }
${people}  - name: rest
    when: {}
${people}`);

  it("names each failed condition with the request's value", () => {
    const d = explainRoute(policy, query(policy, { amount: 500, currency: "GBP", note: "hi" }));
    expect(d.explanation).toEqual([
      {
        route: "big-refunds",
        matched: false,
        because:
          'details /amount 500 not > 1000; details /currency "GBP" not in ["EUR", "USD"]; details /note exists, route wants it absent',
      },
      { route: "rest", matched: true, because: "when is empty: matches every request" },
    ]);
  });

  it("names each held condition on a match", () => {
    const d = explainRoute(policy, query(policy, { amount: 5000, currency: "EUR" }));
    expect(d.route?.name).toBe("big-refunds");
    expect(d.explanation).toEqual([
      {
        route: "big-refunds",
        matched: true,
        because:
          'action payments.refund matches payments.refund; details /amount 5000 > 1000; details /currency "EUR" in ["EUR", "USD"]; details /note is absent',
      },
    ]);
  });

  it("marks the route that refused and stops there", () => {
    const d = explainRoute(policy, query(policy, { amount: "5000", currency: "EUR" }));
    expect(d.route).toBeNull();
    expect(d.refusal).toEqual({
      route: "big-refunds",
      pointer: "/amount",
      message:
        'action.details/amount: route "big-refunds" compares /amount with numbers, but the request has a string ("5000")',
    });
    expect(d.explanation).toHaveLength(1);
    expect(d.explanation[0]).toMatchObject({ route: "big-refunds", matched: false, refused: true });
  });

  it("cuts a long value short", () => {
    const d = explainRoute(policy, query(policy, { amount: 5, currency: "x".repeat(500) }));
    expect(d.explanation[0]!.because).toContain(`details /currency "${"x".repeat(56)}... not in`);
  });
});

describe("routeRequest: what a revision is routed with", () => {
  const policy = policyWith(`  - name: big
    when: { risk_class: [high], details: { "/amount": { gt: 1000 } } }
${people}  - name: rest
    when: {}
${people}`);
  const request = (amount: unknown) =>
    validateRequest({
      request_id: "r1",
      agent_id: "billing",
      action: { type: "payments.refund", summary: "Refund", details: { amount } },
      risk_class: "low",
      region: "eu",
      purpose: "test",
    });

  it("raises the risk class to the policy's floor and passes the details", () => {
    // risk_class low is raised to high by actions.payments.refund, so "big" can match.
    expect(routeRequest(policy, policy.agents["billing"]!, request(5000)).route?.name).toBe("big");
    expect(routeRequest(policy, policy.agents["billing"]!, request(5)).route?.name).toBe("rest");
    expect(() => routeRequest(policy, policy.agents["billing"]!, request("5000"))).toThrow(
      /action\.details\/amount: route "big" compares \/amount with numbers/,
    );
  });
});
