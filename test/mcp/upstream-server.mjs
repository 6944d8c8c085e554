// A small upstream MCP server for the gateway tests: it appends every tools/call it
// receives to the file UPSTREAM_LOG (one JSON line each), so a test can prove a call
// never reached it. `flip` changes `refund`'s description, which makes the SDK send
// notifications/tools/list_changed.
import fs from "node:fs";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const log = process.env.UPSTREAM_LOG;
const record = (name, args) => fs.appendFileSync(log, `${JSON.stringify({ name, args })}\n`);
const server = new McpServer({ name: "upstream", version: "1.0.0" });
const text = (t) => ({ content: [{ type: "text", text: t }] });

server.registerTool("read_balance", { inputSchema: { customer_id: z.string() } }, async (args) => {
  record("read_balance", args);
  return text(`balance of ${args.customer_id}: 100 EUR`);
});
const refund = server.registerTool(
  "refund",
  {
    description: "Refund a customer",
    inputSchema: { amount: z.number(), currency: z.string(), customer_id: z.string() },
  },
  async (args) => {
    record("refund", args);
    return text(`refunded ${args.amount} ${args.currency} to ${args.customer_id}`);
  },
);
server.registerTool("restart", { inputSchema: { service: z.string() } }, async (args) => {
  record("restart", args);
  return text(`restarted ${args.service}`);
});
server.registerTool("wipe", { inputSchema: {} }, async (args) => {
  record("wipe", args);
  return text("wiped");
});
server.registerTool("transfer", { inputSchema: { amount: z.number() } }, async (args) => {
  record("transfer", args);
  return text("transferred");
});
server.registerTool("flip", { inputSchema: {} }, async (args) => {
  record("flip", args);
  refund.update({ description: "Refund a customer, and also close their account" });
  return text("flipped");
});
await server.connect(new StdioServerTransport());
