/**
 * Starts `countersign mcp` on stdio. Everything it needs is settled before the transport
 * starts (the agent in the policy, its key, where Countersign is), so a misconfigured
 * server exits with the reason on stderr instead of answering every call with an error.
 * Countersign itself need not be reachable at start: each call says so when it is not.
 */
import fs from "node:fs";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { loadAgentKeys, loadPolicyFile } from "../adapters/policy/load.js";
import { AgentClient } from "../sdk/client.js";
import type { AgentIdentity, JWKS } from "../sdk/index.js";
import { createMcpServer } from "./server.js";

export interface McpRunOptions {
  agentId: string;
  /** The agent's Ed25519 private key (PEM), for agents that sign with EdDSA. */
  keyFile?: string;
  /** A pinned JWKS file; default: Countersign's /.well-known/jwks.json, fetched at each verification. */
  jwksFile?: string;
  /** Countersign's base URL (COUNTERSIGN_URL). */
  url: string;
  policyFile: string;
  /** The environment, for the agent's HMAC secret (the variable its policy entry names). */
  secrets: Readonly<Record<string, string | undefined>>;
}

export class McpSetupError extends Error {
  override readonly name = "McpSetupError" as const;
}

export function identityFor(o: McpRunOptions): AgentIdentity {
  const policy = loadPolicyFile(o.policyFile);
  const agent = policy.agents[o.agentId];
  if (!agent) throw new McpSetupError(`agent ${o.agentId} is not in ${policy.file}`);
  if (o.keyFile) {
    return {
      agentId: o.agentId,
      issuer: policy.issuer,
      key: { privateKeyPem: fs.readFileSync(o.keyFile, "utf8") },
    };
  }
  if (agent.auth.kind !== "hmac") {
    throw new McpSetupError(`agent ${o.agentId} signs with Ed25519: pass its private key with --key FILE`);
  }
  // loadAgentKeys names the variable and checks the secret's length, as the server does.
  const k = loadAgentKeys({ ...policy, agents: { [o.agentId]: agent } }, o.secrets).get(o.agentId);
  if (k?.kind !== "hmac") throw new McpSetupError(`no HMAC secret for ${o.agentId}`);
  return {
    agentId: o.agentId,
    issuer: policy.issuer,
    key: { hmacSecret: new TextDecoder().decode(k.secret) },
  };
}

export function parseUrl(text: string | undefined): string {
  if (!text) throw new McpSetupError("set COUNTERSIGN_URL (or --url) to where Countersign serves its API");
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new McpSetupError(`COUNTERSIGN_URL ${JSON.stringify(text)} is not a URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new McpSetupError(`COUNTERSIGN_URL must be http(s), not ${u.protocol}`);
  }
  return u.toString().replace(/\/+$/, "");
}

/** The keys records are checked against: a pinned JWKS file, or Countersign's own, fetched at each check. */
export function jwksSource(url: string, jwksFile: string | undefined): JWKS | (() => Promise<JWKS>) {
  if (jwksFile) return JSON.parse(fs.readFileSync(jwksFile, "utf8")) as JWKS;
  return async () => {
    const r = await fetch(`${url}/.well-known/jwks.json`, { signal: AbortSignal.timeout(10_000) });
    if (!r.ok) throw new Error(`GET ${url}/.well-known/jwks.json answered ${r.status}`);
    return (await r.json()) as JWKS;
  };
}

export async function runMcp(o: McpRunOptions): Promise<void> {
  const url = parseUrl(o.url);
  const identity = identityFor(o);
  const jwks = jwksSource(url, o.jwksFile);
  const client = new AgentClient({ identity, baseUrl: url, jwks });
  const server = createMcpServer({ client, url });
  const transport = new StdioServerTransport();
  await server.connect(transport);
  // The transport's own onclose belongs to the protocol layer; the server's is ours.
  await new Promise<void>((resolve) => {
    server.server.onclose = () => resolve();
  });
}
