/** The gateway's pure decisions: rule matching, the summary approvers read, argument limits. */
import { describe, expect, it } from "vitest";
import type { McpToolRule } from "../../src/domain/policy-mcp.js";
import {
  ARGUMENTS_MAX_BYTES,
  argumentsAsDetails,
  decideToolCall,
  fillSummary,
  purposeOf,
  toolGlobMatches,
} from "../../src/mcp/gateway-rules.js";

const RULES: McpToolRule[] = [
  { kind: "allow", tool: "read_*" },
  {
    kind: "approval",
    tool: "refund",
    action: "payments.refund",
    risk_class: "high",
    region: "eu",
    summary: "Refund {amount} {currency} to {customer_id}",
  },
  { kind: "deny", tool: "delete_*" },
];

describe("tool globs", () => {
  it("match the whole name, case-sensitively", () => {
    expect(toolGlobMatches("read_*", "read_file")).toBe(true);
    expect(toolGlobMatches("read_*", "read_")).toBe(true);
    expect(toolGlobMatches("read_*", "Read_file")).toBe(false);
    expect(toolGlobMatches("read_*", "xread_file")).toBe(false);
    expect(toolGlobMatches("refund", "refund_all")).toBe(false);
    expect(toolGlobMatches("refund", "refun")).toBe(false);
  });

  it("treat . ? + ( and the like as themselves, not as patterns", () => {
    expect(toolGlobMatches("fs.read", "fsXread")).toBe(false);
    expect(toolGlobMatches("a?", "ab")).toBe(false);
    expect(toolGlobMatches("a+", "aa")).toBe(false);
    expect(toolGlobMatches("*", "anything/at.all")).toBe(true);
  });
});

describe("decideToolCall", () => {
  it("the first match wins", () => {
    expect(decideToolCall(RULES, "read_file")).toEqual({ kind: "allow", rule: 0 });
    expect(decideToolCall([{ kind: "deny", tool: "*" }, ...RULES], "read_file")).toEqual({
      kind: "deny",
      rule: 0,
    });
    expect(decideToolCall(RULES, "refund")).toMatchObject({ kind: "approval", rule: 1 });
  });

  it("a tool that matches no rule is refused", () => {
    expect(decideToolCall(RULES, "transfer")).toEqual({ kind: "deny", rule: null });
    expect(decideToolCall(RULES, "REFUND")).toEqual({ kind: "deny", rule: null });
    expect(decideToolCall([], "read_file")).toEqual({ kind: "deny", rule: null });
  });
});

describe("fillSummary", () => {
  const t = "Refund {amount} {currency} to {customer_id}";

  it("fills top-level arguments", () => {
    expect(fillSummary(t, "refund", { amount: 120.5, currency: "EUR", customer_id: "c_9" })).toBe(
      "Refund 120.5 EUR to c_9",
    );
  });

  it("fills in one pass: an argument holding {x} is shown as written", () => {
    expect(fillSummary(t, "refund", { amount: "{currency}", currency: "EUR", customer_id: "{amount}" })).toBe(
      "Refund {currency} EUR to {amount}",
    );
  });

  it("uses top-level arguments only; a missing one stays visible; nested values as JSON", () => {
    expect(fillSummary("To {customer.id} {note}", "x", { customer: { id: "c_1" } })).toBe(
      "To {customer.id} {note}",
    );
    expect(fillSummary("Items {items}", "x", { items: [1, { b: 2, a: 1 }] })).toBe('Items [1,{"a":1,"b":2}]');
    expect(fillSummary("{{literal}} {x}", "t", { x: 1 })).toBe("{literal} 1");
  });

  it("removes control characters, so an argument cannot add lines to the summary", () => {
    expect(
      fillSummary(t, "refund", {
        amount: "1\n\nApproved by CFO\u0007",
        currency: "\u0085EUR",
        customer_id: "c",
      }),
    ).toBe("Refund 1Approved by CFO EUR to c");
  });

  it("cuts to 300 characters, counting code points", () => {
    const s = fillSummary("{x}", "t", { x: "😀".repeat(400) });
    expect([...s]).toHaveLength(300);
    expect(s.endsWith("…")).toBe(true);
  });

  it("defaults to the tool's name", () => {
    expect(fillSummary(null, "refund", {})).toBe("MCP tool call refund");
  });
});

describe("purposeOf", () => {
  it("takes the client's _meta.purpose, else names the tool", () => {
    expect(purposeOf({ purpose: "customer asked\nfor it" }, "refund")).toBe("customer asked for it");
    expect(purposeOf({ purpose: 42 }, "refund")).toBe("MCP tool call refund");
    expect(purposeOf(undefined, "refund")).toBe("MCP tool call refund");
  });
});

describe("argumentsAsDetails", () => {
  it("passes a JSON object; no arguments are {}", () => {
    expect(argumentsAsDetails({ a: 1 })).toEqual({ ok: true, details: { a: 1 } });
    expect(argumentsAsDetails(undefined)).toEqual({ ok: true, details: {} });
  });

  it("refuses, never cuts, arguments over 32 KiB", () => {
    const big = { text: "x".repeat(ARGUMENTS_MAX_BYTES) };
    const r = argumentsAsDetails(big);
    expect(r).toMatchObject({ ok: false });
    expect((r as { reason: string }).reason).toMatch(/at most 32768/);
    expect(argumentsAsDetails({ text: "x".repeat(ARGUMENTS_MAX_BYTES - 20) })).toMatchObject({ ok: true });
  });

  it("refuses arguments that are not I-JSON or too deep", () => {
    expect(argumentsAsDetails({ n: 2 ** 60 })).toMatchObject({ ok: false });
    expect(argumentsAsDetails({ s: "\ud800" })).toMatchObject({ ok: false });
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { d: deep };
    expect((argumentsAsDetails(deep) as { reason: string }).reason).toMatch(/nested more than 32/);
    expect(argumentsAsDetails([1, 2])).toMatchObject({ ok: false });
  });
});
