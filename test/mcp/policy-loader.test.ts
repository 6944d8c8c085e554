/** `mcp_tools` read by the real policy loader and by `countersign policy check`, lines included. */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { PolicyError, parsePolicy } from "../../src/domain/policy.js";
import { testPolicy } from "../support/harness.js";

/** The test policy with `rules` (YAML list lines, indented 6) as billing-agent's mcp_tools. */
function withTools(rules: string): string {
  const text = testPolicy().replace("    max_pending: 20\n", `    max_pending: 20\n    mcp_tools:\n${rules}`);
  if (!text.includes("mcp_tools")) throw new Error("the test policy changed shape: no place for mcp_tools");
  return text;
}

const parse = (text: string) => parsePolicy(text, "/p/policy.yml", (w) => w);

function problems(text: string): string[] {
  try {
    parse(text);
  } catch (e) {
    if (e instanceof PolicyError) return e.message.split("\n");
    throw e;
  }
  return [];
}

describe("mcp_tools in the policy loader", () => {
  it("reads an agent's rules in order; an agent without them has none", () => {
    const p = parse(
      withTools(`      - { tool: "read_*", allow: true }
      - { tool: refund, action: payments.refund, risk_class: high, region: eu, summary: "Refund {amount}" }
      - { tool: "*", deny: true }
`),
    );
    expect(p.agents["billing-agent"]!.mcp_tools).toEqual([
      { kind: "allow", tool: "read_*" },
      {
        kind: "approval",
        tool: "refund",
        action: "payments.refund",
        risk_class: "high",
        region: "eu",
        summary: "Refund {amount}",
      },
      { kind: "deny", tool: "*" },
    ]);
    expect(p.agents["ops-agent"]!.mcp_tools ?? []).toEqual([]);
  });

  it("reports a rule the agent could never use, and a typo'd key, at their lines", () => {
    const text = withTools(`      - { tool: deploy, action: deploy.prod, risk_class: high, region: eu }
      - { tool: refund, action: payments.refund, risk_class: high, region: mars }
      - { tool: "*", dney: true }
`);
    const line = (needle: string) => text.split("\n").findIndex((l) => l.includes(needle)) + 1;
    const out = problems(text);
    expect(out).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          new RegExp(
            `^/p/policy.yml:${line("deploy.prod")}:\\d+: agents.billing-agent.mcp_tools.0.action: the agent's allowed_actions do not cover deploy.prod`,
          ),
        ),
        expect.stringMatching(
          new RegExp(
            `^/p/policy.yml:${line("mars")}:\\d+: agents.billing-agent.mcp_tools.1.region: "mars" is not one of the policy's regions`,
          ),
        ),
        expect.stringMatching(
          new RegExp(
            `^/p/policy.yml:${line("dney")}:\\d+: agents.billing-agent.mcp_tools.2.dney: unknown key "dney"`,
          ),
        ),
      ]),
    );
  });

  it("`countersign policy check` validates mcp_tools and names the line", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-mcp-policy-"));
    try {
      const file = path.join(dir, "policy.yml");
      const text =
        withTools(`      - { tool: refund, action: payments.refund, risk_class: extreme, region: eu }
`);
      fs.writeFileSync(file, text);
      const line = text.split("\n").findIndex((l) => l.includes("extreme")) + 1;
      const r = await promisify(execFile)(
        process.execPath,
        ["bin/countersign.mjs", "policy", "check", file],
        {
          env: { ...process.env, LOG_LEVEL: "silent" },
          timeout: 60_000,
        },
      ).then(
        () => ({ code: 0, stderr: "" }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `${file}:${line}:\\d+: agents.billing-agent.mcp_tools.0.risk_class: "extreme" is not one of risk_classes`,
        ),
      );
      fs.writeFileSync(file, withTools(`      - { tool: "read_*", allow: true }\n`));
      const ok = await promisify(execFile)(
        process.execPath,
        ["bin/countersign.mjs", "policy", "check", file],
        {
          env: { ...process.env, LOG_LEVEL: "silent" },
          timeout: 60_000,
        },
      );
      expect(ok.stdout).toMatch(/ok/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
