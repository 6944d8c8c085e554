/**
 * `countersign mcp-gateway` as a client sees it: the MCP SDK's own Client over stdio,
 * spawning the real CLI, which starts a small upstream MCP server (upstream-server.mjs)
 * that records every call it receives; a real Countersign (the harness) whose cards are
 * clicked in the Slack simulator. The upstream's log is the proof of what got through.
 */
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { type CallToolResult, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { GATEWAY_CANCEL_NOTE } from "../../src/mcp/gateway.js";
import type { JWKS } from "../../src/sdk/index.js";
import { verifyDecision } from "../../src/sdk/index.js";
import { freePort } from "../support/child.js";
import { mrkdwnTexts } from "../support/corpus.js";
import {
  BILLING_SECRET,
  eventually,
  type Harness,
  ISSUER,
  startHarness,
  testPolicy,
} from "../support/harness.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(HERE, "../../bin/countersign.mjs");
const UPSTREAM = path.resolve(HERE, "upstream-server.mjs");

const RULES = `    mcp_tools:
      - { tool: "read_*", allow: true }
      - { tool: refund, action: payments.refund, risk_class: high, region: eu, summary: "Refund {amount} {currency} to {customer_id}" }
      - { tool: restart, action: ops.restart, risk_class: high, region: us }
      - { tool: flip, allow: true }
      - { tool: wipe, deny: true }
`;

/** The executor the gateway redeems as: it may redeem every action the rules ask about. */
const GATEWAY_EXECUTOR_SECRET = "gateway-executor-secret-that-is-at-least-32-bytes";
const EXECUTORS = `
executors:
  gateway-exec:
    auth: { hmac_secret_env: GATEWAY_EXECUTOR_SECRET }
    may_redeem: ["payments.*", "ops.*", "crm.*"]
`;

function policy(): string {
  const text = testPolicy({ extra: EXECUTORS })
    .replace("    max_pending: 20\n", `    max_pending: 20\n${RULES}`)
    // us-ops decides restart calls: it expires in seconds, so "expired" is quick to see.
    .replace(/(name: us-ops[\s\S]*?timeout: )30m/, "$13s");
  if (!text.includes("mcp_tools") || !text.includes("timeout: 3s"))
    throw new Error("the test policy changed shape");
  return text;
}

let h: Harness;
let jwks: JWKS;

interface Gateway {
  client: Client;
  /** The upstream's calls so far. */
  calls(): { name: string; args: Record<string, unknown> }[];
  close(): Promise<void>;
}
const open: Gateway[] = [];

/** What every gateway process is started with: where Countersign is, the policy, the secrets. */
function gatewayEnv(url: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "",
    COUNTERSIGN_FROM_SOURCE: "1",
    COUNTERSIGN_URL: url,
    POLICY_FILE: path.join(h.dir, "policy.yml"),
    BILLING_AGENT_SECRET: BILLING_SECRET,
    GATEWAY_EXECUTOR_SECRET,
  };
}

/** A gateway started with `args` that is expected to stop at start: its exit and output. */
function startOnly(args: string[]) {
  return spawnSync(
    process.execPath,
    [BIN, "mcp-gateway", "--agent", "billing-agent", ...args, "--", process.execPath, UPSTREAM],
    { env: gatewayEnv(h.app.url), encoding: "utf8", timeout: 30_000 },
  );
}

async function gateway(url: string, extraArgs: string[] = []): Promise<Gateway> {
  const log = path.join(h.dir, `upstream-${Math.random().toString(36).slice(2)}.jsonl`);
  fs.writeFileSync(log, "");
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [
      BIN,
      "mcp-gateway",
      "--agent",
      "billing-agent",
      "--executor",
      "gateway-exec",
      ...extraArgs,
      "--",
      process.execPath,
      UPSTREAM,
    ],
    cwd: path.resolve(HERE, "../.."),
    env: { ...gatewayEnv(url), UPSTREAM_LOG: log },
    stderr: "pipe",
  });
  const client = new Client({ name: "gateway-test", version: "1.0.0" });
  await client.connect(transport);
  const g: Gateway = {
    client,
    calls: () =>
      fs
        .readFileSync(log, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
    close: () => client.close(),
  };
  open.push(g);
  return g;
}

/** Calls a tool through the gateway and learns the action id from its progress messages. */
function callGated(g: Gateway, name: string, args: Record<string, unknown>, signal?: AbortSignal) {
  let actionId: string | null = null;
  const progress: number[] = [];
  const result = g.client
    .callTool({ name, arguments: args }, undefined, {
      onprogress: (p) => {
        progress.push(p.progress);
        const m = /act_[A-Za-z0-9_-]+/.exec((p as { message?: string }).message ?? "");
        if (m) actionId = m[0];
      },
      resetTimeoutOnProgress: true,
      timeout: 60_000,
      ...(signal ? { signal } : {}),
    })
    .then((r) => r as CallToolResult);
  return {
    result,
    progress,
    actionId: () => eventually(async () => actionId, `the gateway's action id for ${name}`, 20_000),
  };
}

const text = (r: CallToolResult) => (r.content[0] as { text: string }).text;

beforeAll(async () => {
  h = await startHarness({ policy: policy(), env: { GATEWAY_EXECUTOR_SECRET } });
  jwks = (await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json()) as JWKS;
}, 60_000);
afterAll(async () => {
  for (const g of open) await g.close().catch(() => undefined);
  await h?.stop();
});

describe("countersign mcp-gateway", () => {
  it("lists the upstream's tools unchanged, and passes an allowed call straight through", async () => {
    const g = await gateway(h.app.url);
    const direct = new Client({ name: "direct", version: "1.0.0" });
    await direct.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [UPSTREAM],
        env: { PATH: process.env.PATH ?? "", UPSTREAM_LOG: path.join(h.dir, "direct.jsonl") },
        stderr: "pipe",
      }),
    );
    try {
      expect((await g.client.listTools()).tools).toEqual((await direct.listTools()).tools);
    } finally {
      await direct.close();
    }
    const r = (await g.client.callTool({
      name: "read_balance",
      arguments: { customer_id: "c-1" },
    })) as CallToolResult;
    expect(r.isError).toBeFalsy();
    expect(text(r)).toBe("balance of c-1: 100 EUR");
    expect(g.calls()).toEqual([{ name: "read_balance", args: { customer_id: "c-1" } }]);
  });

  it("approved: forwarded exactly once, progress while waiting, the summary's arguments shown as text", async () => {
    const g = await gateway(h.app.url);
    const args = {
      amount: 120,
      currency: "EUR",
      customer_id: "<!channel> <https://evil.example|click> *c-9*",
    };
    const call = callGated(g, "refund", args);
    const actionId = await call.actionId();
    const card = await h.card(actionId);
    const msg = h.sim.messages("C0EUAPPROVALS").find((m) => m.ts === card.ts)!;
    const interpreted = [...mrkdwnTexts(msg.blocks), msg.text].join("\n");
    expect(interpreted).not.toContain("<!channel>");
    expect(interpreted).not.toContain("<https://evil");
    expect(interpreted).toContain("&lt;!channel&gt;");
    expect(JSON.stringify(msg.blocks)).toContain("Refund 120 EUR to");
    // Two notifications prove they repeat while the call waits (one at once, one per 5 s).
    await eventually(async () => call.progress.length >= 2, "two progress notifications", 30_000);
    expect(g.calls()).toEqual([]);
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await h.click("U0BOB", card, ACTION_IDS.approve);
    const r = await call.result;
    expect(r.isError).toBeFalsy();
    expect(text(r)).toBe(`refunded 120 EUR to ${args.customer_id}`);
    expect(g.calls()).toEqual([{ name: "refund", args }]);
    expect(r._meta?.["countersign/action_id"]).toBe(actionId);
    const got = await h.api("GET", `/v1/actions/${actionId}`);
    expect(got.json.request.action).toMatchObject({
      summary: `Refund 120 EUR to ${args.customer_id}`,
      details: args,
    });
    const claims = await verifyDecision(r._meta?.["countersign/record"] as string, {
      jwks,
      request: got.json.request,
      agentId: "billing-agent",
      issuer: ISSUER,
    });
    expect(claims.verdict).toBe("approved");
    // Redeemed as the executor before it was forwarded, and its outcome reported: both are
    // receipts in the log, so the approval is used, once, on the record.
    expect(got.json.redeemed_at).toEqual(expect.any(String));
    await eventually(async () => {
      const kinds = await h.sql<{ kind: string }>(
        "SELECT kind FROM records WHERE action_id = ? ORDER BY seq",
        actionId,
      );
      return kinds.map((k) => k.kind).join(",") === "decision,redeemed,outcome";
    }, "the redemption and the outcome in the log");
    // The same call again is a new call: it asks again, and nothing runs meanwhile.
    const again = callGated(g, "refund", args);
    const second = await again.actionId();
    expect(second).not.toBe(actionId);
    const card2 = await h.card(second);
    await h.click("U0ALICE", card2, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "once is enough" });
    expect((await again.result).isError).toBe(true);
    expect(g.calls()).toHaveLength(1);
  }, 90_000);

  it("denied: a tool error with the approver's reason; the upstream never sees the call", async () => {
    const g = await gateway(h.app.url);
    const call = callGated(g, "refund", { amount: 5, currency: "EUR", customer_id: "c-2" });
    const card = await h.card(await call.actionId());
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "amount exceeds the order" });
    const r = await call.result;
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/was denied \(approvers\): amount exceeds the order/);
    expect(g.calls()).toEqual([]);
  }, 60_000);

  it("expired: a tool error; the upstream never sees the call", async () => {
    const g = await gateway(h.app.url);
    const call = callGated(g, "restart", { service: "billing" });
    const r = await call.result;
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/was expired/);
    expect(r._meta?.["countersign/verdict"]).toBe("expired");
    expect(g.calls()).toEqual([]);
  }, 60_000);

  it("refuses a denied tool, a tool no rule matches, a name not byte-equal to a pinned tool, and arguments it cannot send", async () => {
    const g = await gateway(h.app.url);
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ["wipe", {}, /the policy refuses tool "wipe"/],
      ["transfer", { amount: 1 }, /no mcp_tools rule of agent billing-agent covers tool "transfer"/],
      ["Refund", { amount: 1 }, /not one of the upstream's tools/],
      ["read_balance ", { customer_id: "x" }, /not one of the upstream's tools/],
      ["refund", { amount: 1, currency: "EUR", customer_id: "x".repeat(40_000) }, /at most 32768/],
    ];
    for (const [name, args, why] of cases) {
      const r = (await g.client.callTool({ name, arguments: args })) as CallToolResult;
      expect(r.isError, name).toBe(true);
      expect(text(r), name).toMatch(why);
    }
    expect(g.calls()).toEqual([]);
  });

  it("Countersign unreachable: it starts, refuses every gated call, still passes allowed ones", async () => {
    const g = await gateway(`http://127.0.0.1:${await freePort()}`);
    const r = (await g.client.callTool({
      name: "refund",
      arguments: { amount: 1, currency: "EUR", customer_id: "c-3" },
    })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/could not be reached.*ECONNREFUSED/);
    const ok = (await g.client.callTool({
      name: "read_balance",
      arguments: { customer_id: "c-3" },
    })) as CallToolResult;
    expect(ok.isError).toBeFalsy();
    expect(g.calls().map((c) => c.name)).toEqual(["read_balance"]);
  });

  it("a client's notifications/cancelled cancels the request: status cancelled, a signed record", async () => {
    const g = await gateway(h.app.url);
    const abort = new AbortController();
    const call = callGated(g, "refund", { amount: 7, currency: "EUR", customer_id: "c-4" }, abort.signal);
    call.result.catch(() => undefined);
    const actionId = await call.actionId();
    await h.card(actionId);
    abort.abort("the user gave up");
    await expect(call.result).rejects.toBeInstanceOf(Error);
    const got = await eventually(
      async () => {
        const a = await h.api("GET", `/v1/actions/${actionId}`);
        return a.json.status === "cancelled" ? a.json : null;
      },
      "the action cancelled",
      20_000,
    );
    const claims = await verifyDecision(got.record, {
      jwks,
      request: got.request,
      agentId: "billing-agent",
      issuer: ISSUER,
    });
    expect(claims).toMatchObject({
      verdict: "cancelled",
      reason_code: "cancelled",
      reason_text: GATEWAY_CANCEL_NOTE,
    });
    expect(g.calls()).toEqual([]);
  }, 60_000);

  it("with --executor, an approval Countersign will not redeem is never forwarded", async () => {
    const keyFile = path.join(h.dir, "executor.pem");
    fs.writeFileSync(
      keyFile,
      generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }) as string,
    );
    const g = await gateway(h.app.url, ["--executor", "no-such-executor", "--executor-key", keyFile]);
    const call = callGated(g, "refund", { amount: 9, currency: "EUR", customer_id: "c-6" });
    const card = await h.card(await call.actionId());
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await h.click("U0BOB", card, ACTION_IDS.approve);
    const r = await call.result;
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/could not be redeemed/);
    expect(g.calls()).toEqual([]);
  }, 60_000);

  it("rules that need approval and no --executor stop the gateway at start, with the reason", () => {
    const r = startOnly([]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("name the executor that redeems them with --executor");
  });

  it("an --executor the policy does not name stops the gateway at start, with the reason", () => {
    const r = startOnly(["--executor", "nobody"]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("executor nobody is not in the policy's executors");
  });

  it("a tool the upstream changes after start is refused until restart", async () => {
    const g = await gateway(h.app.url);
    const changed = new Promise<void>((resolve) =>
      g.client.setNotificationHandler(ToolListChangedNotificationSchema, async () => resolve()),
    );
    expect(
      ((await g.client.callTool({ name: "flip", arguments: {} })) as CallToolResult).isError,
    ).toBeFalsy();
    await changed;
    const r = (await g.client.callTool({
      name: "refund",
      arguments: { amount: 1, currency: "EUR", customer_id: "c-5" },
    })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/changed tool "refund" after the gateway started/);
    expect((await g.client.listTools()).tools.map((t) => t.name)).not.toContain("refund");
    expect(g.calls().map((c) => c.name)).toEqual(["flip"]);
  });
});
