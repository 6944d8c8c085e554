// The upstream MCP server of the gateway measure (bench/gateway.ts): one tool that answers
// at once and does nothing else, so a round trip through it is all protocol and process.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const server = new McpServer({ name: "bench-upstream", version: "1.0.0" });
server.registerTool("read_balance", { inputSchema: { customer_id: z.string() } }, async (args) => ({
  content: [{ type: "text", text: `balance of ${args.customer_id}: 100 EUR` }],
}));
await server.connect(new StdioServerTransport());
