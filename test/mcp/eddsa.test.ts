/** `countersign mcp --key FILE`: an agent that signs its proofs with its own Ed25519 key. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { makeEdAgent } from "../support/corpus.js";
import { type Harness, startHarness, testPolicy } from "../support/harness.js";

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/countersign.mjs");
const keys = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-mcp-ed-"));
const ed = makeEdAgent("key-agent", keys);
const privateKeyFile = path.join(keys, "key-agent.pem");
fs.writeFileSync(privateKeyFile, ed.privatePem);

let h: Harness;
let client: Client;

beforeAll(async () => {
  h = await startHarness({
    policy: testPolicy().replace(
      "agents:\n",
      `agents:
  key-agent:
    owners: { technical: U0TECH }
    auth: { public_key_file: ${JSON.stringify(ed.publicKeyFile)} }
    allowed_actions: ["ops.*"]
`,
    ),
  });
  client = new Client({ name: "countersign-test", version: "1.0.0" });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [BIN, "mcp", "--agent", "key-agent", "--key", privateKeyFile],
      cwd: h.dir,
      env: {
        PATH: process.env.PATH ?? "",
        COUNTERSIGN_FROM_SOURCE: "1",
        COUNTERSIGN_URL: h.app.url,
        POLICY_FILE: path.join(h.dir, "policy.yml"),
        // No HMAC secrets: the server needs only its own agent's key, the one --key names.
      },
      stderr: "pipe",
    }),
  );
}, 60_000);
afterAll(async () => {
  await client?.close();
  await h?.stop();
  fs.rmSync(keys, { recursive: true, force: true });
});

it("asks as an EdDSA agent and reports the verified approval", async () => {
  const requestId = `mcp-ed-${Date.now()}`;
  const call = client.callTool({
    name: "request_approval",
    arguments: {
      request_id: requestId,
      action_type: "ops.restart",
      summary: "Restart the billing workers",
      risk_class: "medium",
      region: "us",
      purpose: "They stopped taking jobs",
      wait_s: 60,
    },
  });
  const actionId = await eventuallyAction(requestId);
  const card = await h.card(actionId);
  await h.click("U0ALICE", card, ACTION_IDS.approve);
  const r = (await call) as CallToolResult;
  expect(r.isError).toBeFalsy();
  expect(r.structuredContent).toMatchObject({ action_id: actionId, status: "approved" });
});

async function eventuallyAction(requestId: string): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const a = await h.app.store.getActionByRequest("key-agent", requestId);
    if (a) return a.id;
    if (Date.now() > deadline) throw new Error(`no action for ${requestId}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
