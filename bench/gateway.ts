/**
 * MCP gateway: the round trip of an allowed (pass-through) tool call through
 * `countersign mcp-gateway` (the real CLI over stdio, its upstream started by it), against
 * the same call made directly to the same upstream server (a second process of it), one
 * call in flight, in the same run. Calls alternate between the two, so the machine's load
 * weighs on both alike. The upstream (bench/mcp-upstream.mjs) answers at once: what is
 * measured is the gateway's hop (one more stdio leg, JSON-RPC parsed and written again,
 * the rule matched, the pinned tool checked), not any work of a tool.
 *
 * Countersign is not reachable here (nothing listens at COUNTERSIGN_URL): a pass-through
 * call never asks it, and the gateway starts without it (it fails closed only for calls
 * that need approval).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { BILLING_SECRET, testPolicy } from "../test/support/harness.js";
import { type BenchContext, log, percentile, type Row, removeDir, row, tempDir } from "./lib.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BIN = path.join(ROOT, "bin", "countersign.mjs");
const UPSTREAM = path.join(ROOT, "bench", "mcp-upstream.mjs");

/** Only the pass-through rule: the gateway needs no executor, and never calls Countersign. */
const RULES = `    mcp_tools:
      - { tool: "read_*", allow: true }
      - { tool: "*", deny: true }
`;

async function connect(command: string, args: string[], env: Record<string, string>): Promise<Client> {
  const client = new Client({ name: "bench", version: "1.0.0" });
  await client.connect(new StdioClientTransport({ command, args, cwd: ROOT, env, stderr: "pipe" }));
  return client;
}

async function call(client: Client, i: number): Promise<number> {
  const t = performance.now();
  const r = (await client.callTool({
    name: "read_balance",
    arguments: { customer_id: `c-${i}` },
  })) as CallToolResult;
  const ms = performance.now() - t;
  const text = (r.content[0] as { text?: string } | undefined)?.text;
  if (r.isError || text !== `balance of c-${i}: 100 EUR`) {
    throw new Error(`benchmark: the call answered ${JSON.stringify(r).slice(0, 300)}`);
  }
  return ms;
}

export async function gateway(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.size(2_000, 100);
  const dir = tempDir("gateway");
  const policyText = testPolicy().replace("    max_pending: 20\n", `    max_pending: 20\n${RULES}`);
  if (!policyText.includes("mcp_tools")) throw new Error("benchmark: the test policy changed shape");
  const policyFile = path.join(dir, "policy.yml");
  fs.writeFileSync(policyFile, policyText);
  const env = { PATH: process.env.PATH ?? "" };
  log(`gateway: ${n} pass-through tool calls through countersign mcp-gateway, alternating with ${n} direct`);
  const clients: Client[] = [];
  try {
    const direct = await connect(process.execPath, [UPSTREAM], env);
    clients.push(direct);
    const gw = await connect(
      process.execPath,
      [BIN, "mcp-gateway", "--agent", "billing-agent", "--", process.execPath, UPSTREAM],
      {
        ...env,
        COUNTERSIGN_URL: "http://127.0.0.1:9",
        POLICY_FILE: policyFile,
        BILLING_AGENT_SECRET: BILLING_SECRET,
      },
    );
    clients.push(gw);
    // Warm-up: both processes' code paths compiled before anything is timed.
    const warm = Math.min(100, Math.max(10, Math.floor(n / 10)));
    for (let i = 0; i < warm; i++) {
      await call(direct, i);
      await call(gw, i);
    }
    const viaGateway: number[] = [];
    const straight: number[] = [];
    for (let i = 0; i < n; i++) {
      // Which goes first alternates too, so neither always follows the other's wake-up.
      if (i % 2 === 0) {
        straight.push(await call(direct, i));
        viaGateway.push(await call(gw, i));
      } else {
        viaGateway.push(await call(gw, i));
        straight.push(await call(direct, i));
      }
    }
    const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    return [
      row({
        id: "gateway.passthrough_p50",
        measure: `MCP tool call round trip through countersign mcp-gateway, allowed (pass-through), p50 (${n} calls, 1 in flight)`,
        unit: "ms",
        value: percentile(viaGateway, 50),
        baseline: percentile(straight, 50),
        baselineOf: "the same call straight to the same upstream MCP server, p50, same run",
      }),
      row({
        id: "gateway.passthrough_p99",
        measure: "the same gateway round trips, p99",
        unit: "ms",
        value: percentile(viaGateway, 99),
        baseline: percentile(straight, 99),
        baselineOf: "the direct calls' p99",
      }),
      row({
        id: "gateway.passthrough_per_second",
        measure: "the same gateway round trips, calls per second one after another",
        unit: "/s",
        value: 1000 / mean(viaGateway),
        baseline: 1000 / mean(straight),
        baselineOf: "direct calls per second, one after another",
      }),
    ];
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    removeDir(dir);
  }
}
