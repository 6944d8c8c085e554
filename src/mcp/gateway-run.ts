/**
 * Starts `countersign mcp-gateway` on stdio. Everything local is settled before the client
 * is answered (the agent and its rules in the policy, its key, the executor's key, the
 * upstream started and its tools pinned), so a misconfigured gateway exits with the reason
 * on stderr. Countersign itself need not be reachable: every call that needs approval is
 * refused until it is (fail closed), while allowed calls pass.
 */
import fs from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { loadPolicyFile } from "../adapters/policy/load.js";
import { mcpNeedsApproval } from "../domain/policy-mcp.js";
import { AgentClient } from "../sdk/client.js";
import type { ExecutorIdentity, ExecutorOptions } from "../sdk/grants.js";
import { createGateway } from "./gateway.js";
import { identityFor, jwksSource, type McpRunOptions, McpSetupError, parseUrl } from "./run.js";

export interface GatewayRunOptions extends McpRunOptions {
  /** The executor that redeems approvals; required when any rule needs approval. */
  executorId?: string;
  /** The executor's Ed25519 private key (PEM), for executors that sign with EdDSA. */
  executorKeyFile?: string;
  /** The upstream server's command and arguments. */
  command: readonly string[];
}

/** The smallest HS256 secret Countersign accepts; a shorter one would only be refused later. */
const MIN_SECRET_BYTES = 32;

function executorIdentity(o: GatewayRunOptions, issuer: string, policy: unknown): ExecutorIdentity {
  const id = o.executorId!;
  if (o.executorKeyFile) {
    return { executorId: id, issuer, key: { privateKeyPem: fs.readFileSync(o.executorKeyFile, "utf8") } };
  }
  const entry = (policy as { executors?: Record<string, { auth?: { kind?: string; secret_env?: string } }> })
    .executors?.[id];
  if (!entry) throw new McpSetupError(`executor ${id} is not in the policy's executors`);
  if (entry.auth?.kind !== "hmac" || !entry.auth.secret_env) {
    throw new McpSetupError(
      `executor ${id} signs with Ed25519: pass its private key with --executor-key FILE`,
    );
  }
  const secret = o.secrets[entry.auth.secret_env];
  if (!secret) {
    throw new McpSetupError(
      `executor "${id}": environment variable ${entry.auth.secret_env} (its HMAC secret) is not set`,
    );
  }
  if (new TextEncoder().encode(secret).length < MIN_SECRET_BYTES) {
    throw new McpSetupError(
      `executor "${id}": the secret in ${entry.auth.secret_env} is shorter than ${MIN_SECRET_BYTES} bytes`,
    );
  }
  return { executorId: id, issuer, key: { hmacSecret: secret } };
}

export async function runGateway(o: GatewayRunOptions): Promise<void> {
  const url = parseUrl(o.url);
  if (o.command.length === 0) {
    throw new McpSetupError("name the upstream MCP server's command after --, e.g. -- node server.js");
  }
  const policy = loadPolicyFile(o.policyFile);
  const identity = identityFor(o);
  const rules = policy.agents[o.agentId]?.mcp_tools ?? [];
  if (mcpNeedsApproval(rules) && o.executorId === undefined) {
    // The gateway redeems every approval it acts on, so that none is used twice: without an
    // executor it could only verify them.
    throw new McpSetupError(
      `agent ${o.agentId}'s mcp_tools send calls for approval: name the executor that redeems them with --executor EXECUTOR_ID`,
    );
  }
  const jwks = jwksSource(url, o.jwksFile);
  const executor: ExecutorOptions | null =
    o.executorId === undefined
      ? null
      : {
          identity: executorIdentity(o, policy.issuer, policy),
          baseUrl: url,
          jwks,
          agents: [o.agentId],
        };
  const agent = new AgentClient({ identity, baseUrl: url, jwks });

  const [command, ...args] = o.command as [string, ...string[]];
  const upstream = new Client({ name: "countersign-mcp-gateway", version: "0.1.0" });
  // The upstream's stderr is the operator's to read; stdout is its protocol with us.
  await upstream.connect(
    new StdioClientTransport({ command, args, env: upstreamEnv(policy), stderr: "inherit" }),
  );
  const { server } = await createGateway({ upstream, rules, agent, executor, url });
  await server.connect(new StdioServerTransport());
  await new Promise<void>((resolve) => {
    server.onclose = () => resolve();
    // Without its upstream the gateway has nothing to forward to: stop, so the client sees it.
    upstream.onclose = () => resolve();
  });
  await upstream.close().catch(() => undefined);
  await server.close().catch(() => undefined);
}

/**
 * The upstream gets the gateway's environment without the secrets that let the gateway
 * ask and redeem: an upstream that could mint the agent's proofs could ask for, and with
 * the executor's, redeem its own approvals.
 */
function upstreamEnv(policy: ReturnType<typeof loadPolicyFile>): Record<string, string> {
  const hidden = new Set<string>();
  for (const agent of Object.values(policy.agents)) {
    if (agent.auth.kind === "hmac") hidden.add(agent.auth.secret_env);
    if (agent.webhook_secret_env) hidden.add(agent.webhook_secret_env);
  }
  const executors = (policy as { executors?: Record<string, { auth?: { secret_env?: string } }> }).executors;
  for (const e of Object.values(executors ?? {})) if (e.auth?.secret_env) hidden.add(e.auth.secret_env);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !hidden.has(k)) env[k] = v;
  }
  return env;
}
