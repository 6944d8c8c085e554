/** An agent's `mcp_tools` rules: what the gateway may pass, must ask about, or refuses. */
import { describe, expect, it } from "vitest";
import { LineCounter, parseDocument } from "yaml";
import { actionGlobMatches } from "../../src/domain/policy.js";
import { mcpNeedsApproval, parseMcpTools, summaryPlaceholders } from "../../src/domain/policy-mcp.js";

/** Parses `yaml` (an agent's map) and validates its mcp_tools as the loader will. */
function check(yaml: string, o: { agentRegions?: string[]; allowed?: string[] } = {}) {
  const lines = new LineCounter();
  const doc = parseDocument(yaml, { lineCounter: lines });
  const node = (doc.contents as { get(k: string, keep: true): unknown }).get("mcp_tools", true);
  return parseMcpTools(node, {
    doc,
    lines,
    path: ["agents", "billing-agent", "mcp_tools"],
    riskClasses: ["low", "medium", "high", "critical"],
    regions: ["eu", "us"],
    agentRegions: o.agentRegions ?? [],
    actionAllowed: (t) => (o.allowed ?? ["payments.*", "crm.read"]).some((g) => actionGlobMatches(g, t)),
  });
}

const messages = (r: ReturnType<typeof check>) => r.problems.map((p) => `${p.line}: ${p.path}: ${p.message}`);

describe("mcp_tools", () => {
  it("reads the documented example: allow, approval with a summary template, deny", () => {
    const r = check(`
mcp_tools:
  - { tool: "read_*", allow: true }
  - { tool: "refund", action: payments.refund, risk_class: high, region: eu,
      summary: "Refund {amount} {currency} to {customer_id}" }
  - { tool: "*", deny: true }
`);
    expect(r.problems).toEqual([]);
    expect(r.rules).toEqual([
      { kind: "allow", tool: "read_*" },
      {
        kind: "approval",
        tool: "refund",
        action: "payments.refund",
        risk_class: "high",
        region: "eu",
        summary: "Refund {amount} {currency} to {customer_id}",
      },
      { kind: "deny", tool: "*" },
    ]);
    expect(mcpNeedsApproval(r.rules)).toBe(true);
  });

  it("an approval rule without a summary gets the default at call time (null)", () => {
    const r = check(`mcp_tools: [{ tool: refund, action: payments.refund, risk_class: high, region: eu }]`);
    expect(r.rules[0]).toMatchObject({ kind: "approval", summary: null });
  });

  it("refuses a typo'd key instead of dropping it (a misspelt deny must not let calls through)", () => {
    const r = check(`
mcp_tools:
  - { tool: "delete_*", dney: true }
`);
    expect(messages(r)).toEqual([
      '3: agents.billing-agent.mcp_tools.0.dney: unknown key "dney"; expected one of tool, allow, deny, action, risk_class, region, summary',
      "3: agents.billing-agent.mcp_tools.0: a rule needs one of allow: true, deny: true, or action: (the action type its calls are approved as)",
    ]);
    expect(r.rules).toEqual([]);
  });

  it("refuses allow: false, two kinds in one rule, and approval keys on an allow rule", () => {
    const r = check(`
mcp_tools:
  - { tool: a, allow: false }
  - { tool: b, allow: true, deny: true }
  - { tool: c, allow: true, risk_class: high }
`);
    expect(messages(r)).toEqual([
      "3: agents.billing-agent.mcp_tools.0.allow: allow must be true (leave it out otherwise), got false",
      "3: agents.billing-agent.mcp_tools.0: a rule needs one of allow: true, deny: true, or action: (the action type its calls are approved as)",
      "4: agents.billing-agent.mcp_tools.1: a rule takes exactly one of allow, deny and action",
      "5: agents.billing-agent.mcp_tools.2.risk_class: risk_class belongs to a rule that needs approval (with action:); an allow rule takes only tool",
    ]);
  });

  it("an approval rule needs a known risk class and region, and an action the agent may ask for", () => {
    const r = check(
      `
mcp_tools:
  - { tool: refund, action: payments.refund, risk_class: extreme, region: mars }
  - { tool: drop, action: infra.drop_db, risk_class: high, region: us }
  - { tool: wipe, action: Infra.Wipe, region: eu }
`,
      { agentRegions: ["eu"] },
    );
    expect(messages(r)).toEqual([
      '3: agents.billing-agent.mcp_tools.0.risk_class: "extreme" is not one of risk_classes (low, medium, high, critical)',
      '3: agents.billing-agent.mcp_tools.0.region: "mars" is not one of the policy\'s regions (eu, us)',
      "4: agents.billing-agent.mcp_tools.1.action: the agent's allowed_actions do not cover infra.drop_db: every call would be refused",
      '4: agents.billing-agent.mcp_tools.1.region: "us" is not one of the agent\'s regions (eu): every call would be refused',
      '5: agents.billing-agent.mcp_tools.2.action: "Infra.Wipe" is not an action type: dotted lower-case, e.g. payments.refund',
      "5: agents.billing-agent.mcp_tools.2.risk_class: risk_class is required with action",
    ]);
    expect(r.rules).toEqual([]);
  });

  it("reports rules that can never match: after a catch-all, or after the same glob", () => {
    const r = check(`
mcp_tools:
  - { tool: "read_*", allow: true }
  - { tool: "read_*", deny: true }
  - { tool: "*", deny: true }
  - { tool: "refund", action: payments.refund, risk_class: high, region: eu }
`);
    expect(messages(r)).toEqual([
      '4: agents.billing-agent.mcp_tools.1.tool: this rule can never match: rule 0 (the same glob "read_*") matches every call it would, and the first match wins',
      '6: agents.billing-agent.mcp_tools.3.tool: this rule can never match: rule 2 (tool "*") matches every call it would, and the first match wins',
    ]);
  });

  it("checks tool globs and summary templates", () => {
    const r = check(`
mcp_tools:
  - { tool: "bad name", deny: true }
  - { tool: refund, action: payments.refund, risk_class: high, region: eu, summary: "Refund {amount" }
  - { tool: refund2, action: payments.refund, risk_class: high, region: eu, summary: "Refund } now" }
`);
    expect(messages(r)).toEqual([
      '3: agents.billing-agent.mcp_tools.0.tool: "bad name" is not a tool glob: 1-128 of letters, digits, _ . / - and * (any run of characters)',
      '4: agents.billing-agent.mcp_tools.1.summary: "{" at character 8 does not open a placeholder like {amount}; write "{{" for a literal brace',
      '5: agents.billing-agent.mcp_tools.2.summary: a lone "}" at character 8; write "}}" for a literal brace',
    ]);
  });

  it("says what it expected when mcp_tools is not a list", () => {
    const r = check("mcp_tools: { tool: x }");
    expect(messages(r)).toEqual([
      "1: agents.billing-agent.mcp_tools: expected a list of tool rules, got a map",
    ]);
  });

  it("summaryPlaceholders: names, and literal braces", () => {
    expect(summaryPlaceholders("Refund {amount} {{not}} {currency}")).toEqual({
      names: ["amount", "currency"],
    });
  });

  it("allow and deny only: no executor needed", () => {
    expect(mcpNeedsApproval(check(`mcp_tools: [{ tool: "*", allow: true }]`).rules)).toBe(false);
  });
});
