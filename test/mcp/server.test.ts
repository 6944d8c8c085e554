/**
 * `countersign mcp` as a client sees it: the MCP SDK's own Client over stdio, spawning the
 * real CLI, against a real Countersign (the harness) whose cards are clicked in the Slack
 * simulator. What the server reports as approved must verify with the SDK on our side too.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { ActionRequest } from "../../src/domain/types.js";
import { type JWKS, verify } from "../../src/sdk/index.js";
import { freePort } from "../support/child.js";
import { BILLING_SECRET, eventually, type Harness, ISSUER, startHarness } from "../support/harness.js";

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/countersign.mjs");

let h: Harness;
let jwks: JWKS;
let client: Client;

async function connect(url: string): Promise<Client> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, "mcp", "--agent", "billing-agent"],
    cwd: h.dir,
    env: {
      PATH: process.env.PATH ?? "",
      COUNTERSIGN_FROM_SOURCE: "1",
      COUNTERSIGN_URL: url,
      POLICY_FILE: path.join(h.dir, "policy.yml"),
      BILLING_AGENT_SECRET: BILLING_SECRET,
    },
    stderr: "pipe",
  });
  const c = new Client({ name: "countersign-test", version: "1.0.0" });
  await c.connect(transport);
  return c;
}

function args(o: Partial<Record<string, unknown>> = {}) {
  return {
    request_id: `mcp-test-${Math.random().toString(36).slice(2)}`,
    action_type: "payments.refund",
    summary: "Refund order 1234 (EUR 120.00)",
    details: { order: "1234", amount: 120, currency: "EUR" },
    risk_class: "high",
    region: "eu",
    purpose: "Customer was charged twice for the same order",
    ...o,
  };
}

/** The ActionRequest the server builds from the tool's arguments, to verify records against. */
function asRequest(a: ReturnType<typeof args>): ActionRequest {
  return {
    request_id: a.request_id,
    agent_id: "billing-agent",
    action: { type: a.action_type, summary: a.summary, details: a.details },
    risk_class: a.risk_class,
    region: a.region,
    purpose: a.purpose,
  } as ActionRequest;
}

// biome-ignore lint/suspicious/noExplicitAny: the tests read structuredContent field by field
type Structured = Record<string, any>;

beforeAll(async () => {
  h = await startHarness();
  jwks = (await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json()) as JWKS;
  client = await connect(h.app.url);
}, 60_000);
afterAll(async () => {
  await client?.close();
  await h?.stop();
});

describe("countersign mcp", () => {
  it("lists request_approval and get_approval with their input schemas", async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(["get_approval", "request_approval"]);
    const ra = tools.find((t) => t.name === "request_approval")!;
    expect(ra.inputSchema.required).toEqual(
      expect.arrayContaining(["action_type", "summary", "risk_class", "region", "purpose"]),
    );
    expect(ra.outputSchema).toBeDefined();
  });

  it("approved: sends progress while it waits, then answers a record that verifies", async () => {
    const a = args();
    const progress: { progress: number; total?: number }[] = [];
    const call = client.callTool({ name: "request_approval", arguments: { ...a, wait_s: 120 } }, undefined, {
      onprogress: (p) => progress.push(p),
      resetTimeoutOnProgress: true,
      timeout: 60_000,
    });
    const card = await h.card(a.request_id);
    // Two notifications prove they repeat while the request is pending (one at once, one per 5 s).
    await eventually(async () => progress.length >= 2, "two progress notifications", 30_000);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await h.click("U0BOB", card, ACTION_IDS.approve);
    const r = (await call) as CallToolResult;
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as Structured;
    expect(s).toMatchObject({ action_id: card.actionId, status: "approved", verdict: "approved" });
    expect(s.request).toEqual(asRequest(a));
    expect(JSON.parse((r.content[0] as { text: string }).text)).toEqual(s);
    expect((await verify(s.record, jwks, asRequest(a), ISSUER)).verdict).toBe("approved");
    expect(progress[1]!.progress).toBeGreaterThan(progress[0]!.progress);
    expect(progress[0]!.total).toBe(120);

    // get_approval answers the same decision for the action id, in this or any session.
    const g = (await client.callTool({
      name: "get_approval",
      arguments: { action_id: card.actionId },
    })) as CallToolResult;
    expect(g.structuredContent).toMatchObject({ status: "approved", record: s.record });
  });

  it("denied: the approver's reason, not a tool error", async () => {
    const a = args();
    const call = client.callTool({ name: "request_approval", arguments: { ...a, wait_s: 60 } });
    const card = await h.card(a.request_id);
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "amount exceeds the order" });
    const r = (await call) as CallToolResult;
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as Structured;
    expect(s).toMatchObject({ status: "denied", verdict: "denied", reason_text: "amount exceeds the order" });
    expect((await verify(s.record, jwks, asRequest(a), ISSUER)).verdict).toBe("denied");
  });

  it("answers pending after wait_s, and get_approval waits for the verdict", async () => {
    const a = args();
    const r = (await client.callTool({
      name: "request_approval",
      arguments: { ...a, wait_s: 0 },
    })) as CallToolResult;
    const s = r.structuredContent as Structured;
    expect(s.status).toBe("pending");
    expect(s.action_id).toMatch(/^act_/);
    const call = client.callTool({ name: "get_approval", arguments: { action_id: s.action_id, wait_s: 60 } });
    const card = await h.card(s.action_id);
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "not today" });
    expect(((await call) as CallToolResult).structuredContent).toMatchObject({
      status: "denied",
      reason_text: "not today",
    });
  });

  it("a client's notifications/cancelled cancels the request: status cancelled, a signed record", async () => {
    const a = args();
    const abort = new AbortController();
    const call = client
      .callTool({ name: "request_approval", arguments: { ...a, wait_s: 120 } }, undefined, {
        signal: abort.signal,
      })
      .catch((e: unknown) => e);
    const card = await h.card(a.request_id);
    abort.abort("the user gave up");
    expect(await call).toBeInstanceOf(Error);
    const got = await eventually(
      async () => {
        const g = await h.api("GET", `/v1/actions/${card.actionId}`);
        return g.json.status === "cancelled" ? g.json : null;
      },
      "the action cancelled",
      20_000,
    );
    const claims = await verify(got.record, jwks, asRequest(a), ISSUER);
    expect(claims).toMatchObject({ verdict: "cancelled", reason_code: "cancelled" });
    expect(claims.reason_text).toMatch(/MCP client.*cancelled/);
  });

  it("a request Countersign refuses is a tool error naming the code", async () => {
    const r = (await client.callTool({
      name: "request_approval",
      arguments: args({ action_type: "infra.delete", summary: "nope" }),
    })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect((r.content[0] as { text: string }).text).toMatch(/refused the request \(action_not_allowed/);
  });

  it("Countersign unreachable: a clear tool error, nothing approved", async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const c = await connect(down);
    try {
      const r = (await c.callTool({ name: "request_approval", arguments: args() })) as CallToolResult;
      expect(r.isError).toBe(true);
      expect(r.structuredContent).toBeUndefined();
      const text = (r.content[0] as { text: string }).text;
      expect(text).toContain(`Countersign at ${down} could not be reached`);
      expect(text).toMatch(/ECONNREFUSED/);
      expect(text).toContain("do not act");
    } finally {
      await c.close();
    }
  });

  it("a misconfigured server exits at once with the reason, before speaking MCP", () => {
    const r = spawnSync(process.execPath, [BIN, "mcp", "--agent", "nobody"], {
      cwd: h.dir,
      env: {
        PATH: process.env.PATH ?? "",
        COUNTERSIGN_FROM_SOURCE: "1",
        COUNTERSIGN_URL: h.app.url,
        POLICY_FILE: path.join(h.dir, "policy.yml"),
      },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("agent nobody is not in");
  });
});
