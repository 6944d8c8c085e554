import { describe, expect, it } from "vitest";
import { z } from "zod";
import { requestDigest } from "../../src/domain/canonical.js";
import { ActionRequestSchema, checkRequestAgainstPolicy, validateRequest } from "../../src/domain/request.js";
import { type AgentPolicy, type Policy, RejectionError } from "../../src/domain/types.js";

const FULL = {
  request_id: "refund-2024.11:0042_a",
  agent_id: "billing-agent",
  action: {
    type: "payments.refund",
    summary: "Refund 120 EUR to customer 8812 for a duplicate charge",
    details: { amount: 120, currency: "EUR", lines: [{ sku: "A1", qty: 2 }] },
    systems: ["stripe", "crm"],
  },
  risk_class: "medium",
  region: "eu",
  purpose: "The customer was charged twice on 3 November.",
  on_behalf_of: { slack_user: "U0ANA123", email: "ana@example.com" },
  callback_url: "https://billing.internal/hooks/countersign?x=1",
  timeout_s: 3600,
  context: { ticket: "SUP-1234", links: ["https://tickets.example.com/SUP-1234"] },
};

const MINIMAL = {
  request_id: "r1",
  agent_id: "billing-agent",
  action: { type: "crm.read", summary: "Read customer 8812" },
  risk_class: "low",
  region: "eu",
  purpose: "Answer a support question",
};

type Mutable = Record<string, unknown> & { action: Record<string, unknown> };

/** A deep copy of FULL with `change` applied, so each case breaks exactly one thing. */
function variant(change: (r: Mutable) => void): Mutable {
  const r = structuredClone(FULL) as unknown as Mutable;
  change(r);
  return r;
}

function refusal(input: unknown): RejectionError {
  try {
    validateRequest(input);
  } catch (err) {
    if (err instanceof RejectionError) return err;
    throw err;
  }
  throw new Error("expected the request to be refused");
}

/** The single problem a variant produces: its path and message. */
function onlyProblem(change: (r: Mutable) => void): { path: string; message: string } {
  const err = refusal(variant(change));
  expect(err.code).toBe("invalid_request");
  expect(err.errors).toHaveLength(1);
  return err.errors[0]!;
}

function nestedObject(levels: number): Record<string, unknown> {
  let v: Record<string, unknown> = {};
  for (let i = 1; i < levels; i++) v = { a: v };
  return v;
}

describe("validateRequest: what passes", () => {
  it("returns a fresh object equal to a full valid request, hashing the same", () => {
    const out = validateRequest(FULL);
    expect(out).not.toBe(FULL);
    expect(out).toStrictEqual(FULL);
    expect(requestDigest(out)).toBe(requestDigest(FULL));
  });

  it("adds no defaults to a minimal request", () => {
    const out = validateRequest(MINIMAL);
    expect(out).toStrictEqual(MINIMAL);
    expect(Object.keys(out.action)).toEqual(["type", "summary"]);
    expect(requestDigest(out)).toBe(requestDigest(MINIMAL));
  });

  it("treats optional fields set to undefined as absent, as JSON would", () => {
    const out = validateRequest({
      ...MINIMAL,
      callback_url: undefined,
      action: { ...MINIMAL.action, details: undefined },
    });
    expect(out).toStrictEqual(MINIMAL);
  });

  it("counts lengths in Unicode code points: 300 emoji are a valid summary, 301 are not", () => {
    expect(
      validateRequest(variant((r) => (r.action["summary"] = "😀".repeat(300)))).action.summary,
    ).toHaveLength(600);
    expect(onlyProblem((r) => (r.action["summary"] = "😀".repeat(301)))).toEqual({
      path: "action.summary",
      message: "is 301 characters long; at most 300 are allowed",
    });
  });

  it("accepts the length limits exactly", () => {
    const ok = variant((r) => {
      r["request_id"] = "a".repeat(128);
      r.action["type"] = "a".repeat(128);
      r["purpose"] = "é".repeat(1000);
      r["risk_class"] = "r".repeat(64);
      r.action["systems"] = Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(128, "s"));
      r["timeout_s"] = 60;
    });
    expect(() => validateRequest(ok)).not.toThrow();
    expect(() => validateRequest(variant((r) => (r["timeout_s"] = 604_800)))).not.toThrow();
  });
});

describe("validateRequest: each rule, with its path", () => {
  const cases: Array<[string, (r: Mutable) => void, string, RegExp]> = [
    ["request_id missing", (r) => delete r["request_id"], "request_id", /^is required$/],
    ["request_id empty", (r) => (r["request_id"] = ""), "request_id", /must not be empty/],
    [
      "request_id over 128",
      (r) => (r["request_id"] = "a".repeat(129)),
      "request_id",
      /129 characters.*at most 128/,
    ],
    [
      "request_id with a slash",
      (r) => (r["request_id"] = "a/b"),
      "request_id",
      /only letters, digits and \. _ : -/,
    ],
    ["request_id a number", (r) => (r["request_id"] = 42), "request_id", /must be a string, not a number/],
    ["agent_id with a space", (r) => (r["agent_id"] = "billing agent"), "agent_id", /only letters/],
    ["action missing", (r) => delete (r as Record<string, unknown>)["action"], "action", /^is required$/],
    [
      "action an array",
      (r) => ((r as Record<string, unknown>)["action"] = []),
      "action",
      /must be an object.*not an array/,
    ],
    [
      "action.type upper-case",
      (r) => (r.action["type"] = "Payments.refund"),
      "action.type",
      /dotted lower-case/,
    ],
    ["action.type empty segment", (r) => (r.action["type"] = "payments..refund"), "action.type", /dotted/],
    ["action.type trailing dot", (r) => (r.action["type"] = "payments."), "action.type", /dotted/],
    ["action.type a glob", (r) => (r.action["type"] = "payments.*"), "action.type", /dotted/],
    ["action.type over 128", (r) => (r.action["type"] = "a".repeat(129)), "action.type", /at most 128/],
    ["summary missing", (r) => delete r.action["summary"], "action.summary", /^is required$/],
    ["summary with \\n", (r) => (r.action["summary"] = "a\nb"), "action.summary", /one line/],
    ["summary with \\r", (r) => (r.action["summary"] = "a\rb"), "action.summary", /one line/],
    ["summary with U+2028", (r) => (r.action["summary"] = "a\u2028b"), "action.summary", /one line/],
    ["summary with U+2029", (r) => (r.action["summary"] = "a\u2029b"), "action.summary", /one line/],
    ["summary blank", (r) => (r.action["summary"] = "   "), "action.summary", /only whitespace/],
    ["details an array", (r) => (r.action["details"] = [1]), "action.details", /JSON object, not an array/],
    ["details null", (r) => (r.action["details"] = null), "action.details", /not null \(leave an optional/],
    [
      "details 33 deep",
      (r) => (r.action["details"] = nestedObject(33)),
      "action.details",
      /more than 32 levels/,
    ],
    ["systems not an array", (r) => (r.action["systems"] = "stripe"), "action.systems", /array of strings/],
    [
      "systems with 21 entries",
      (r) => (r.action["systems"] = Array.from({ length: 21 }, (_, i) => `s${i}`)),
      "action.systems",
      /21 entries; at most 20/,
    ],
    [
      "a system not a string",
      (r) => (r.action["systems"] = ["a", "b", "c", 4]),
      "action.systems.3",
      /string/,
    ],
    ["a system empty", (r) => (r.action["systems"] = ["a", ""]), "action.systems.1", /empty/],
    [
      "a system over 128",
      (r) => (r.action["systems"] = ["x".repeat(129)]),
      "action.systems.0",
      /at most 128/,
    ],
    ["risk_class empty", (r) => (r["risk_class"] = ""), "risk_class", /empty/],
    ["risk_class over 64", (r) => (r["risk_class"] = "h".repeat(65)), "risk_class", /at most 64/],
    ["region missing", (r) => delete r["region"], "region", /required/],
    ["region over 64", (r) => (r["region"] = "e".repeat(65)), "region", /at most 64/],
    [
      "purpose over 1000",
      (r) => (r["purpose"] = "p".repeat(1001)),
      "purpose",
      /1001 characters long; at most 1000/,
    ],
    ["purpose missing", (r) => delete r["purpose"], "purpose", /required/],
    ["on_behalf_of empty", (r) => (r["on_behalf_of"] = {}), "on_behalf_of", /slack_user, email or both/],
    [
      "on_behalf_of.slack_user not a user id",
      (r) => (r["on_behalf_of"] = { slack_user: "C0CHANNEL" }),
      "on_behalf_of.slack_user",
      /Slack user id/,
    ],
    [
      "on_behalf_of.slack_user lower-case",
      (r) => (r["on_behalf_of"] = { slack_user: "u0ana" }),
      "on_behalf_of.slack_user",
      /Slack user id/,
    ],
    [
      "on_behalf_of.email without a domain dot",
      (r) => (r["on_behalf_of"] = { email: "ana@localhost" }),
      "on_behalf_of.email",
      /email address/,
    ],
    [
      "on_behalf_of.email with a space",
      (r) => (r["on_behalf_of"] = { email: "ana maria@example.com" }),
      "on_behalf_of.email",
      /email address/,
    ],
    [
      "callback_url relative",
      (r) => (r["callback_url"] = "/hooks"),
      "callback_url",
      /absolute http or https/,
    ],
    ["callback_url ftp", (r) => (r["callback_url"] = "ftp://billing.internal/x"), "callback_url", /not ftp/],
    [
      "callback_url with userinfo",
      (r) => (r["callback_url"] = "https://user:pw@billing.internal/x"),
      "callback_url",
      /user name or password/,
    ],
    [
      "callback_url with an empty userinfo",
      (r) => (r["callback_url"] = "https://@billing.internal/x"),
      "callback_url",
      /user name or password/,
    ],
    [
      "callback_url with a tab the URL parser would drop",
      (r) => (r["callback_url"] = "https://billing.inter\tnal/x"),
      "callback_url",
      /spaces, control characters or backslashes/,
    ],
    [
      "callback_url with a backslash",
      (r) => (r["callback_url"] = "https://evil.example\\@billing.internal/"),
      "callback_url",
      /backslashes/,
    ],
    [
      "callback_url over 2048",
      (r) => (r["callback_url"] = `https://billing.internal/${"a".repeat(2024)}`),
      "callback_url",
      /2049 characters long; at most 2048/,
    ],
    ["timeout_s 59", (r) => (r["timeout_s"] = 59), "timeout_s", /60 to 604800/],
    ["timeout_s 604801", (r) => (r["timeout_s"] = 604_801), "timeout_s", /60 to 604800/],
    ["timeout_s fractional", (r) => (r["timeout_s"] = 60.5), "timeout_s", /whole number/],
    ["timeout_s a string", (r) => (r["timeout_s"] = "600"), "timeout_s", /whole number/],
    ["timeout_s null", (r) => (r["timeout_s"] = null), "timeout_s", /whole number/],
    ["context an array", (r) => (r["context"] = ["x"]), "context", /JSON object/],
  ];
  for (const [name, change, path, message] of cases) {
    it(`refuses ${name} at ${path}`, () => {
      const problem = onlyProblem(change);
      expect(problem.path).toBe(path);
      expect(problem.message).toMatch(message);
    });
  }

  it("accepts details nested exactly 32 deep", () => {
    expect(() => validateRequest(variant((r) => (r.action["details"] = nestedObject(32))))).not.toThrow();
  });

  it("counts sizes in UTF-8 bytes of the JSON: details at 32768 bytes pass, 32770 do not", () => {
    // {"s":"é...é"} is 8 bytes of syntax plus 2 bytes per é.
    const at = (n: number) => variant((r) => (r.action["details"] = { s: "é".repeat(n) }));
    expect(() => validateRequest(at(16_380))).not.toThrow();
    expect(refusal(at(16_381)).errors).toEqual([
      { path: "action.details", message: "is 32770 bytes as JSON; at most 32768 are allowed" },
    ]);
  });

  it("counts sizes in UTF-8 bytes of the JSON: context at 8192 bytes passes, 8194 does not", () => {
    const at = (n: number) => variant((r) => (r["context"] = { s: "é".repeat(n) }));
    expect(() => validateRequest(at(4092))).not.toThrow();
    expect(refusal(at(4093)).errors).toEqual([
      { path: "context", message: "is 8194 bytes as JSON; at most 8192 are allowed" },
    ]);
  });
});

describe("validateRequest: unknown fields and many problems", () => {
  it("refuses an unknown top-level field, suggesting the likely one", () => {
    expect(onlyProblem((r) => (r["timeout"] = 600))).toEqual({
      path: "timeout",
      message: 'unknown field; did you mean "timeout_s"?',
    });
  });

  it("refuses unknown fields inside action and on_behalf_of", () => {
    expect(onlyProblem((r) => (r.action["detials"] = {}))).toEqual({
      path: "action.detials",
      message: 'unknown field; did you mean "details"?',
    });
    const p = onlyProblem((r) => (r["on_behalf_of"] = { slack_user: "U0ANA123", manager: "U0BOSS" }));
    expect(p).toEqual({
      path: "on_behalf_of.manager",
      message: "unknown field; expected one of: slack_user, email",
    });
  });

  it("collects every problem, naming the first in the message", () => {
    const err = refusal({
      request_id: "",
      agent_id: "billing-agent",
      action: { type: "Bad", summary: "two\nlines", extra: 1 },
      risk_class: "high",
      purpose: "x",
      timeout_s: 1,
    });
    expect(err.errors.map((e) => e.path)).toEqual([
      "request_id",
      "action.extra",
      "action.type",
      "action.summary",
      "region",
      "timeout_s",
    ]);
    expect(err.message).toMatch(
      /^6 problems: request_id: must not be empty; action\.extra: unknown field.*; and 3 more$/,
    );
  });

  it("refuses a request that is not an object", () => {
    for (const input of [null, [], "request", 42]) {
      const err = refusal(input);
      expect(err.errors[0]!.path).toBe("");
      expect(err.message).toMatch(/^1 problem: the request must be a JSON object/);
    }
  });

  it("refuses I-JSON problems inside free-form details and context", () => {
    const err = refusal(
      variant((r) => {
        r.action["details"] = { amount: 2 ** 53, note: "\ud800" };
        r["context"] = { "\udfff": 1 };
      }),
    );
    expect(err.errors.map((e) => e.path)).toEqual([
      "action.details.amount",
      "action.details.note",
      "context.\udfff",
    ]);
  });

  it("refuses a cyclic details object without overflowing the stack", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    const err = refusal(variant((r) => (r.action["details"] = cyclic)));
    expect(err.errors[0]).toEqual({ path: "action.details", message: "is nested more than 32 levels deep" });
  });
});

// ---------------------------------------------------------------------------

function agent(overrides: Partial<AgentPolicy> = {}): AgentPolicy {
  return {
    id: "billing-agent",
    owners: { risk: ["U0RISK"] },
    auth: { kind: "hmac", secret_env: "BILLING_AGENT_SECRET" },
    callback_origins: [
      { origin: "https://billing.internal", allow_private: false },
      { origin: "http://127.0.0.1:8080", allow_private: true },
    ],
    allowed_actions: ["payments.*", "crm.read"],
    regions: ["eu"],
    vendor_managed: false,
    max_pending: 20,
    ...overrides,
  };
}

function policy(agents: AgentPolicy[] = [agent()]): Policy {
  return {
    issuer: "https://countersign.example.com",
    slack: { team_id: "T0EXAMPLE" },
    risk_classes: ["low", "medium", "high", "critical"],
    regions: { eu: { tz: "Europe/Berlin" }, us: { tz: "America/New_York" } },
    defaults: { timeout_ms: 1_800_000, on_timeout: "deny", approval_valid_for_ms: 900_000, max_pending: 100 },
    actions: { "payments.refund": { min_risk: "high" }, "payments.*": { min_risk: "medium" } },
    agents: Object.fromEntries(agents.map((a) => [a.id, a])),
    routes: [],
    sha256: "policy-digest",
    file: "/etc/countersign/policy.yml",
  };
}

function policyRefusal(p: Policy, request: object): RejectionError {
  try {
    checkRequestAgainstPolicy(p, validateRequest(request));
  } catch (err) {
    if (err instanceof RejectionError) return err;
    throw err;
  }
  throw new Error("expected the policy to refuse the request");
}

describe("checkRequestAgainstPolicy", () => {
  it("accepts a request the policy allows and returns the agent", () => {
    const { agent: a, riskClass } = checkRequestAgainstPolicy(policy(), validateRequest(MINIMAL));
    expect(a.id).toBe("billing-agent");
    expect(riskClass).toBe("low");
  });

  it("raises the risk class to the actions floor: the highest matching min_risk", () => {
    const p = policy();
    const at = (type: string, risk: string) =>
      checkRequestAgainstPolicy(
        p,
        validateRequest({ ...MINIMAL, risk_class: risk, action: { type, summary: "s" } }),
      ).riskClass;
    expect(at("payments.refund", "low")).toBe("high");
    expect(at("payments.charge", "low")).toBe("medium");
    expect(at("payments.refund.partial", "low")).toBe("medium");
    expect(at("crm.read", "low")).toBe("low");
  });

  it("never lowers the agent's own risk class", () => {
    const r = validateRequest({
      ...MINIMAL,
      risk_class: "critical",
      action: { type: "payments.refund", summary: "s" },
    });
    expect(checkRequestAgainstPolicy(policy(), r).riskClass).toBe("critical");
  });

  it("refuses an agent not in the policy, including names of Object.prototype members", () => {
    for (const id of ["other-agent", "constructor", "__proto__"]) {
      const err = policyRefusal(policy(), { ...MINIMAL, agent_id: id });
      expect(err.code).toBe("unknown_agent");
      expect(err.message).toBe(`agent_id: agent "${id}" is not in the policy`);
    }
  });

  it("refuses an unknown risk class and region as invalid_request, both at once", () => {
    const err = policyRefusal(policy(), { ...MINIMAL, risk_class: "extreme", region: "toString" });
    expect(err.code).toBe("invalid_request");
    expect(err.errors).toEqual([
      {
        path: "risk_class",
        message: 'unknown risk class "extreme"; the policy has: low, medium, high, critical',
      },
      { path: "region", message: 'unknown region "toString"; the policy has: eu, us' },
    ]);
  });

  it("refuses a region the agent may not use", () => {
    const err = policyRefusal(policy(), { ...MINIMAL, region: "us" });
    expect(err.code).toBe("region_not_allowed");
    expect(err.errors[0]!.path).toBe("region");
    expect(err.message).toMatch(/may not ask for region "us"; its regions: eu/);
  });

  it("lets an agent with no regions listed use any of the policy's", () => {
    const p = policy([agent({ regions: [] })]);
    expect(() => checkRequestAgainstPolicy(p, validateRequest({ ...MINIMAL, region: "us" }))).not.toThrow();
  });

  it("refuses an action type that no allowed_actions glob matches", () => {
    const err = policyRefusal(policy(), { ...MINIMAL, action: { type: "crm.write", summary: "s" } });
    expect(err.code).toBe("action_not_allowed");
    expect(err.errors[0]!.path).toBe("action.type");
    expect(err.message).toMatch(/may not ask for "crm.write"; its allowed_actions: payments\.\*, crm\.read/);
    // A glob is not a prefix: "payments.*" does not cover "paymentsx.refund".
    expect(
      policyRefusal(policy(), { ...MINIMAL, action: { type: "paymentsx.refund", summary: "s" } }).code,
    ).toBe("action_not_allowed");
  });

  it("lets `*` allow every action", () => {
    const p = policy([agent({ allowed_actions: ["*"] })]);
    const r = validateRequest({ ...MINIMAL, action: { type: "anything.at.all", summary: "s" } });
    expect(() => checkRequestAgainstPolicy(p, r)).not.toThrow();
  });

  it("accepts a callback whose normalised origin is listed", () => {
    for (const url of [
      "https://billing.internal/hooks",
      "HTTPS://Billing.INTERNAL:443/hooks?a=1",
      "http://127.0.0.1:8080/cb",
    ]) {
      expect(() =>
        checkRequestAgainstPolicy(policy(), validateRequest({ ...MINIMAL, callback_url: url })),
      ).not.toThrow();
    }
  });

  it("refuses a callback to another origin: other host, scheme or port, or a look-alike suffix", () => {
    for (const url of [
      "https://billing.internal.evil.example/hooks",
      "http://billing.internal/hooks",
      "https://billing.internal:8443/hooks",
      "http://127.0.0.1:8081/cb",
      "http://localhost:8080/cb",
    ]) {
      const err = policyRefusal(policy(), { ...MINIMAL, callback_url: url });
      expect(err.code).toBe("callback_not_allowed");
      expect(err.errors[0]!.path).toBe("callback_url");
      expect(err.message).toMatch(/is not one of agent "billing-agent"'s callback_origins/);
    }
  });
});

describe("ActionRequestSchema: the request's shape as data", () => {
  it("gives a JSON Schema for an OpenAPI document, with the limits as written", () => {
    const schema = z.toJSONSchema(ActionRequestSchema) as {
      required: string[];
      additionalProperties: boolean;
      properties: Record<string, Record<string, unknown>>;
    };
    expect(schema.required).toEqual(["request_id", "agent_id", "action", "risk_class", "region", "purpose"]);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties["request_id"]).toMatchObject({ type: "string", minLength: 1, maxLength: 128 });
    expect(schema.properties["timeout_s"]).toMatchObject({ type: "integer", minimum: 60, maximum: 604_800 });
    expect(schema.properties["context"]).toMatchObject({ type: "object" });
  });
});
