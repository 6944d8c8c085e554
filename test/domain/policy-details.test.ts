/**
 * `when.details` and `actions.<type>.editable` in the policy file: what parses, and every
 * problem `policy check` reports with its line.
 */
import { describe, expect, it } from "vitest";
import { parsePolicyText as parsePolicy } from "../../src/adapters/policy/load.js";
import { changesAllowed, PolicyError, type PolicyProblem } from "../../src/domain/policy.js";

const FILE = "/etc/countersign/policy.yml";
const HEAD = `issuer: https://cs.example.com
slack: { team_id: T0TEAM }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: Europe/Berlin }
agents:
  billing:
    auth: { hmac_secret_env: BILLING_SECRET }
    allowed_actions: ["payments.*"]
`;

/** A policy whose one route has `details:` followed by `conditions` (indented by the caller). */
function withDetails(conditions: string, extra = ""): string {
  return `${HEAD}${extra}routes:
  - name: big-refunds
    when:
      action: ["payments.refund"]
      details:
${conditions}    approvers: { users: [U0CFO] }
    channel: C0APPROVALS
`;
}

function problemsOf(text: string): PolicyProblem[] {
  try {
    parsePolicy(text, FILE);
  } catch (err) {
    if (err instanceof PolicyError) return [...err.problems];
    throw err;
  }
  throw new Error("expected the policy to be refused, but it parsed");
}

function lineOf(text: string, marker: string): number {
  const lines = text.split("\n");
  const found = lines.findIndex((l) => l.includes(marker));
  if (found < 0) throw new Error(`test bug: no line holds ${marker}`);
  return found + 1;
}

/** Exactly one problem, at the line holding `marker`, with that path and message part. */
function expectOnlyProblem(text: string, marker: string, path: string, message: string): void {
  const problems = problemsOf(text);
  expect(problems).toEqual([
    {
      line: lineOf(text, marker),
      column: expect.any(Number),
      path,
      message: expect.stringContaining(message),
    },
  ]);
}

describe("when.details: what parses", () => {
  it("reads every operator, several on one pointer, with values as JSON", () => {
    const p = parsePolicy(
      withDetails(`        "/amount": { gt: 1000, lte: 1000000 }
        "/currency": { in: [EUR, USD] }
        "/kind": { eq: full }
        "/meta": { eq: { a: 1, b: [true, null] } }
        "/note": { exists: false }
        "/count": { gte: 1, lt: 10, in: [1, 2, 3] }
        "/a~1b/c~0d": { exists: true }
`),
      FILE,
    );
    expect(p.routes[0]!.when.details).toEqual({
      "/amount": { gt: 1000, lte: 1_000_000 },
      "/currency": { in: ["EUR", "USD"] },
      "/kind": { eq: "full" },
      "/meta": { eq: { a: 1, b: [true, null] } },
      "/note": { exists: false },
      "/count": { gte: 1, lt: 10, in: [1, 2, 3] },
      "/a~1b/c~0d": { exists: true },
    });
    expect(p.routes[0]!.when.action).toEqual(["payments.refund"]);
  });

  it("keeps a YAML text that looks like a number as text: eq: '1000' compares strings", () => {
    const p = parsePolicy(withDetails(`        "/code": { eq: "1000" }\n`), FILE);
    expect(p.routes[0]!.when.details).toEqual({ "/code": { eq: "1000" } });
  });

  it("accepts the SPEC's big-refunds route written in flow style", () => {
    const text = `${HEAD}routes:
  - name: big-refunds
    when: { action: ["payments.refund"], details: { "/amount": { gt: 1000 }, "/currency": { in: [EUR, USD] } } }
    approvers: { users: [U0CFO] }
    channel: C0APPROVALS
`;
    expect(parsePolicy(text, FILE).routes[0]!.when.details).toEqual({
      "/amount": { gt: 1000 },
      "/currency": { in: ["EUR", "USD"] },
    });
  });
});

describe("when.details: problems with their lines", () => {
  it("refuses a pointer that does not start with /", () => {
    const text = withDetails(`        "amount": { gt: 1000 }\n`);
    expectOnlyProblem(text, `"amount"`, "routes.0.when.details.amount", 'it must start with "/"');
  });

  it("refuses a ~ that is not ~0 or ~1", () => {
    const text = withDetails(`        "/a~2b": { gt: 1000 }\n`);
    expectOnlyProblem(text, `"/a~2b"`, 'routes.0.when.details["/a~2b"]', '"~" not followed by 0 or 1');
  });

  it("refuses an unknown operator, naming the ones there are", () => {
    const text = withDetails(`        "/amount": { greater: 1000 }\n`);
    expectOnlyProblem(
      text,
      "greater",
      'routes.0.when.details["/amount"].greater',
      'unknown key "greater"; a condition\'s operators are eq, in, gt, gte, lt, lte, exists',
    );
  });

  it("refuses an empty condition and an empty details map", () => {
    expectOnlyProblem(
      withDetails(`        "/amount": {}\n`),
      `"/amount"`,
      'routes.0.when.details["/amount"]',
      "an empty condition holds for anything",
    );
    const empty = `${HEAD}routes:
  - name: r
    when: { details: {} }
    approvers: { users: [U0CFO] }
    channel: C0APPROVALS
`;
    expectOnlyProblem(
      empty,
      "details: {}",
      "routes.0.when.details",
      "an empty details map adds no condition",
    );
  });

  it("refuses a condition that is not a map", () => {
    const text = withDetails(`        "/amount": 1000\n`);
    expectOnlyProblem(text, `"/amount"`, 'routes.0.when.details["/amount"]', "got the number 1000");
  });

  it("refuses gt/gte/lt/lte on anything but a number", () => {
    const text = withDetails(`        "/amount": { gt: "1000" }
        "/b": { lte: [1] }
        "/c": { lt: .inf }
`);
    const problems = problemsOf(text);
    expect(problems.map((p) => [p.line, p.path, p.message])).toEqual([
      [
        lineOf(text, `"/amount"`),
        'routes.0.when.details["/amount"].gt',
        'gt compares numbers; expected a number, got the text "1000"',
      ],
      [
        lineOf(text, `"/b"`),
        'routes.0.when.details["/b"].lte',
        "lte compares numbers; expected a number, got a list",
      ],
      [
        lineOf(text, `"/c"`),
        'routes.0.when.details["/c"].lt',
        "lt compares numbers; expected a number, got the number Infinity",
      ],
    ]);
  });

  it("refuses an empty in list and an in that is not a list", () => {
    expectOnlyProblem(
      withDetails(`        "/currency": { in: [] }\n`),
      `"/currency"`,
      'routes.0.when.details["/currency"].in',
      "an empty in list matches nothing",
    );
    expectOnlyProblem(
      withDetails(`        "/currency": { in: EUR }\n`),
      `"/currency"`,
      'routes.0.when.details["/currency"].in',
      'expected the values the member may have (a list), got the text "EUR"',
    );
  });

  it("refuses exists that is not true or false", () => {
    expectOnlyProblem(
      withDetails(`        "/note": { exists: yes }\n`),
      `"/note"`,
      'routes.0.when.details["/note"].exists',
      'expected true or false, got the text "yes"',
    );
  });

  it("refuses an eq value JSON cannot carry, at its own line", () => {
    const text = withDetails(`        "/x":
          eq:
            a: .nan
`);
    expectOnlyProblem(text, "a: .nan", 'routes.0.when.details["/x"].eq.a', "JSON has no infinities or NaN");
  });

  it("refuses conditions that can never hold", () => {
    const cases: [string, string][] = [
      [`{ gt: 10, lt: 5 }`, "no number is > 10 and < 5"],
      [`{ gte: 5, lt: 5 }`, "no number is >= 5 and < 5"],
      [`{ exists: false, eq: 1 }`, "exists: false wants the member absent, but eq compare its value"],
      [`{ eq: EUR, in: [USD] }`, 'eq "EUR" is not one of the in values'],
      [`{ eq: big, gt: 1 }`, "eq is a string but gt compare numbers"],
      [`{ in: [a, b], lt: 1 }`, "in lists no number but lt compare numbers"],
      [`{ eq: 3, gt: 5 }`, "eq 3 is not > 5"],
    ];
    for (const [condition, message] of cases) {
      const text = withDetails(`        "/x": ${condition}\n`);
      expectOnlyProblem(
        text,
        `"/x"`,
        'routes.0.when.details["/x"]',
        `this condition can never hold: ${message}`,
      );
    }
    // A closed range of one number is fine.
    expect(parsePolicy(withDetails(`        "/x": { gte: 5, lte: 5 }\n`), FILE).routes).toHaveLength(1);
  });

  it("reports every bad condition at once", () => {
    const text = withDetails(`        "nope": { gt: 1 }
        "/ok": { gt: 1 }
        "/bad": { between: [1, 2] }
`);
    expect(problemsOf(text).map((p) => p.line)).toEqual([lineOf(text, `"nope"`), lineOf(text, `"/bad"`)]);
  });
});

describe("actions.<type>.editable", () => {
  const routes = `routes:
  - name: all
    when: {}
    approvers: { users: [U0A] }
    channel: C0APPROVALS
`;
  const policy = (actions: string) => parsePolicy(`${HEAD}actions:\n${actions}${routes}`, FILE);
  const request = (editable?: string[]) => ({ action: { ...(editable && { editable }) } });

  it("reads editable beside min_risk, or alone", () => {
    const p = policy(`  payments.refund: { min_risk: high, editable: false }
  payments.*: { editable: true }
  crm.read: { min_risk: low }
`);
    expect(p.actions).toEqual({
      "payments.refund": { min_risk: "high", editable: false },
      "payments.*": { editable: true },
      "crm.read": { min_risk: "low" },
    });
  });

  it("refuses an editable that is not a boolean and an empty entry", () => {
    const text = `${HEAD}actions:
  payments.refund: { editable: "no" }
  payments.payout: {}
${routes}`;
    const problems = problemsOf(text);
    expect(problems.map((p) => [p.line, p.path, p.message])).toEqual([
      [
        lineOf(text, "payments.refund"),
        'actions["payments.refund"].editable',
        'expected true or false, got the text "no"',
      ],
      [
        lineOf(text, "payments.payout"),
        'actions["payments.payout"]',
        "give min_risk, editable or both; an empty entry changes nothing",
      ],
    ]);
  });

  it("changesAllowed: the request's pointers, unless a matching entry forbids changes", () => {
    const p = policy(`  payments.refund: { editable: false }
  payments.*: { min_risk: medium }
`);
    expect(changesAllowed(p, "payments.payout", request(["/amount", "/note"]))).toEqual(["/amount", "/note"]);
    expect(changesAllowed(p, "payments.refund", request(["/amount"]))).toEqual([]);
    expect(changesAllowed(p, "payments.payout", request())).toEqual([]);
    // A forbidding glob wins over a more specific entry that allows it: any match forbids.
    const q = policy(`  payments.*: { editable: false }
  payments.refund: { editable: true }
`);
    expect(changesAllowed(q, "payments.refund", request(["/amount"]))).toEqual([]);
    expect(changesAllowed(q, "crm.read", request(["/amount"]))).toEqual(["/amount"]);
  });

  it("an entry with only editable sets no risk floor", () => {
    const p = policy(`  payments.refund: { editable: false }\n`);
    expect(p.actions["payments.refund"]!.min_risk).toBeUndefined();
  });
});

describe("the README's policy example", () => {
  it("parses, with its details route and an action that forbids changes", async () => {
    const { readFileSync } = await import("node:fs");
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("\n## The policy file\n"));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)![1]!;
    const p = parsePolicy(yaml, FILE);
    const big = p.routes.find((r) => r.name === "big-refunds");
    expect(big?.when.details).toEqual({ "/amount": { gt: 1000 }, "/currency": { in: ["EUR", "USD"] } });
    expect(p.actions["payments.payout"]).toEqual({ editable: false });
    expect(changesAllowed(p, "payments.payout", { action: { editable: ["/amount"] } })).toEqual([]);
  });
});
