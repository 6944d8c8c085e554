/**
 * `countersign mcp-gateway`: an MCP server that stands between an MCP client and an
 * upstream MCP server, and lets a gated tool call through only with a verified, redeemed
 * approval (docs/mcp.md, "The gateway"). The agent's model never holds the approval: the
 * gateway asks, waits, verifies the record, redeems it and forwards the call itself, so a
 * model that forgets to ask, or asks for one thing and calls another, gets nothing past it.
 *
 * It fails closed at every step:
 * - the tools are pinned at start (their definitions as first listed); a name that is not
 *   byte-equal to a pinned tool, or a tool whose definition the upstream changed since
 *   (a tools/list_changed makes it list again), is refused until the gateway restarts, so
 *   an upstream cannot swap a harmless tool's meaning after it was reviewed;
 * - a call no `mcp_tools` rule matches is refused;
 * - Countersign unreachable, a refused request, a record that does not verify, a verdict
 *   other than approved, a redemption refused: a tool error, and the upstream never sees
 *   the call.
 *
 * The decisions that need no I/O (which rule, the summary, the purpose, whether the
 * arguments can be sent at all) are in gateway-rules.ts and tested there.
 */
import { randomUUID } from "node:crypto";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  type CallToolRequest,
  CallToolRequestSchema,
  type CallToolResult,
  CallToolResultSchema,
  ListToolsRequestSchema,
  type Tool,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { canonicalJson } from "../domain/canonical.js";
import type { McpToolRule } from "../domain/policy-mcp.js";
import type { ActionRequest } from "../domain/types.js";
import type { ActionAnswer, AgentClient, Settled } from "../sdk/client.js";
import { InvalidRecord, Rejected, TransportError } from "../sdk/errors.js";
import { type ExecutorOptions, type RedeemedGrant, redeemGrant, reportOutcome } from "../sdk/grants.js";
import { argumentsAsDetails, decideToolCall, fillSummary, purposeOf } from "./gateway-rules.js";
import { type Extra, startProgress } from "./progress.js";

/** How long a gated call waits for people before it is refused (the request stays pending). Default 1 hour. */
export const DEFAULT_APPROVAL_WAIT_MS = 60 * 60_000;
/** Progress at least every 10 s keeps clients that reset their timeout on progress waiting; 5 s leaves room. */
export const PROGRESS_EVERY_MS = 5_000;
/** A forwarded call's own limit at the upstream, reset by the upstream's progress. */
const UPSTREAM_TIMEOUT_MS = 10 * 60_000;

export const GATEWAY_CANCEL_NOTE =
  "cancelled by the MCP client (notifications/cancelled) while the gateway waited for approval";

export interface GatewayOptions {
  /** Connected to the upstream server. */
  upstream: Client;
  /** The agent's `mcp_tools`, in order. */
  rules: readonly McpToolRule[];
  /** Asks Countersign as the agent. */
  agent: AgentClient;
  /**
   * Redeems each approval before the call is forwarded and reports its outcome. Null only
   * when no rule needs approval, or when the operator runs without redemption (then an
   * approval's single use rests on this process alone).
   */
  executor: ExecutorOptions | null;
  /** Where Countersign is, for messages. */
  url: string;
  /** Default 1 hour. */
  approvalWaitMs?: number;
  /** Default 5 s. */
  progressEveryMs?: number;
  log?: (line: string) => void;
  version?: string;
}

/** The gateway's view of the upstream's tools: pinned at start, marked when changed. */
export interface PinnedTools {
  readonly pinned: ReadonlyMap<string, { tool: Tool; canonical: string }>;
  /** Pinned tools whose definition changed (or that disappeared) since start. */
  readonly changed: ReadonlySet<string>;
}

async function listAll(upstream: Client): Promise<Tool[]> {
  const tools: Tool[] = [];
  let cursor: string | undefined;
  do {
    const page = await upstream.listTools(cursor === undefined ? {} : { cursor });
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return tools;
}

export async function createGateway(o: GatewayOptions): Promise<{ server: Server; tools: PinnedTools }> {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const every = o.progressEveryMs ?? PROGRESS_EVERY_MS;
  const waitMs = o.approvalWaitMs ?? DEFAULT_APPROVAL_WAIT_MS;
  const { upstream, agent } = o;

  const pinned = new Map<string, { tool: Tool; canonical: string }>();
  const changed = new Set<string>();
  for (const tool of await listAll(upstream)) {
    // A name listed twice is ambiguous: which definition would a call reach? Neither.
    if (pinned.has(tool.name)) {
      log(`countersign mcp-gateway: the upstream lists tool ${JSON.stringify(tool.name)} twice; refusing it`);
      changed.add(tool.name);
    }
    pinned.set(tool.name, { tool, canonical: canonicalJson(tool) });
  }

  const server = new Server(
    { name: "countersign-mcp-gateway", version: o.version ?? "0.1.0" },
    { capabilities: { tools: { listChanged: true } } },
  );

  upstream.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    let now: Tool[];
    try {
      now = await listAll(upstream);
    } catch (e) {
      log(`countersign mcp-gateway: listing the upstream's tools again failed: ${(e as Error).message}`);
      return;
    }
    const current = new Map(now.map((t) => [t.name, canonicalJson(t)]));
    for (const [name, p] of pinned) {
      if (current.get(name) !== p.canonical && !changed.has(name)) {
        changed.add(name);
        log(
          `countersign mcp-gateway: the upstream changed tool ${JSON.stringify(name)}; it is refused until the gateway restarts`,
        );
      }
    }
    await server.sendToolListChanged().catch(() => undefined);
  });

  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    // Unchanged, as first listed: a changed tool is gone from the list until a restart.
    tools: [...pinned.values()].filter((p) => !changed.has(p.tool.name)).map((p) => p.tool),
  }));

  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const name = req.params.name;
    if (!pinned.has(name)) {
      return refused(`tool ${JSON.stringify(name)} is not one of the upstream's tools as listed at start`);
    }
    if (changed.has(name)) {
      return refused(
        `the upstream changed tool ${JSON.stringify(name)} after the gateway started; it is refused until the gateway restarts and its new definition is reviewed`,
      );
    }
    const decision = decideToolCall(o.rules, name);
    if (decision.kind === "allow") return forward(req.params, extra, undefined);
    if (decision.kind === "deny") {
      return refused(
        decision.rule === null
          ? `no mcp_tools rule of agent ${agent.agentId} covers tool ${JSON.stringify(name)}, so the call is refused`
          : `the policy refuses tool ${JSON.stringify(name)} for agent ${agent.agentId} (mcp_tools rule ${decision.rule})`,
      );
    }
    return gated(req.params, extra, decision.match);
  });

  async function forward(
    params: CallToolRequest["params"],
    extra: Extra,
    meta: Record<string, unknown> | undefined,
  ): Promise<CallToolResult> {
    const progressToken = extra._meta?.progressToken;
    const r = (await upstream.callTool(params, CallToolResultSchema, {
      signal: extra.signal,
      timeout: UPSTREAM_TIMEOUT_MS,
      resetTimeoutOnProgress: true,
      ...(progressToken === undefined
        ? {}
        : {
            onprogress: (p) => {
              extra
                .sendNotification({ method: "notifications/progress", params: { ...p, progressToken } })
                .catch(() => undefined);
            },
          }),
    })) as CallToolResult;
    if (meta === undefined) return r;
    return { ...r, _meta: { ...(r._meta ?? {}), ...meta } };
  }

  async function gated(
    params: CallToolRequest["params"],
    extra: Extra,
    rule: Extract<McpToolRule, { kind: "approval" }>,
  ): Promise<CallToolResult> {
    const name = params.name;
    const args = argumentsAsDetails(params.arguments);
    if (!args.ok) return refused(`the call to ${name} cannot be sent for approval: ${args.reason}`);
    const meta = params._meta as Record<string, unknown> | undefined;
    const request = {
      request_id: `mcp-gw-${randomUUID()}`,
      agent_id: agent.agentId,
      action: {
        type: rule.action,
        summary: fillSummary(rule.summary, name, args.details),
        details: args.details,
      },
      risk_class: rule.risk_class,
      region: rule.region,
      purpose: purposeOf(meta, name),
    } as ActionRequest;

    let answer: ActionAnswer;
    try {
      answer = await agent.submit(request);
    } catch (e) {
      return failure(e, name);
    }

    if (answer.status === "pending") {
      const stopProgress = startProgress(extra, every, {
        message: `waiting for approvers on ${answer.action_id} (${name})`,
      });
      try {
        answer = await agent.wait(answer.action_id, { timeoutMs: waitMs, signal: extra.signal });
      } catch (e) {
        if (extra.signal.aborted) return cancel(answer.action_id, request);
        return failure(e, name);
      } finally {
        stopProgress();
      }
      if (answer.status === "pending") {
        return refused(
          `nobody decided on ${answer.action_id} within ${Math.round(waitMs / 1000)} s; the call to ${name} was not made`,
        );
      }
    }

    let s: Settled;
    try {
      s = await agent.settle(answer, request);
    } catch (e) {
      return failure(e, name);
    }
    if (s.verdict !== "approved") {
      const why = s.claims.reason_text ? `: ${s.claims.reason_text}` : "";
      const what =
        s.verdict === "denied"
          ? `denied (${s.claims.reason_code})${why}`
          : s.verdict === "expired"
            ? "expired: nobody approved it before its deadline"
            : `cancelled${why}`;
      return refused(
        `the call to ${name} was not made: action ${s.action_id} was ${what}. Do not retry it unchanged; tell the user.`,
        { action_id: s.action_id, verdict: s.verdict, record: s.record },
      );
    }

    let grant: RedeemedGrant | null = null;
    if (o.executor) {
      try {
        grant = await redeemGrant(s.record, s.request, o.executor);
      } catch (e) {
        return refused(
          `the approval of ${s.action_id} could not be redeemed (${(e as Error).message}); the call to ${name} was not made`,
        );
      }
    }
    if (extra.signal.aborted) {
      await outcome(
        s.action_id,
        "failed",
        "the MCP client cancelled the call after the approval; not forwarded",
      );
      return refused("the client cancelled the call");
    }
    // The record covers the decided revision: that is what runs, and the result says so.
    const forwarded = { ...params, arguments: (s.request.action.details ?? {}) as Record<string, unknown> };
    const meta2: Record<string, unknown> = {
      "countersign/action_id": s.action_id,
      "countersign/record": s.record,
      ...(grant ? { "countersign/receipt": grant.receipt } : {}),
      ...(s.revised ? { "countersign/revised": true } : {}),
    };
    let r: CallToolResult;
    try {
      r = await forward(forwarded, extra, meta2);
    } catch (e) {
      await outcome(s.action_id, "failed", `the upstream call failed: ${(e as Error).message}`);
      if (extra.signal.aborted) return refused("the client cancelled the call");
      return refused(`the upstream failed on ${name}: ${(e as Error).message}`);
    }
    if (extra.signal.aborted) await outcome(s.action_id, "failed", "the MCP client cancelled the call");
    else if (r.isError) await outcome(s.action_id, "failed", "the upstream answered isError");
    else await outcome(s.action_id, "succeeded", undefined);
    return r;
  }

  async function outcome(actionId: string, status: "succeeded" | "failed", detail: string | undefined) {
    if (!o.executor) return;
    try {
      await reportOutcome(actionId, status, detail?.slice(0, 1000), o.executor);
    } catch (e) {
      log(
        `countersign mcp-gateway: the outcome of ${actionId} could not be reported: ${(e as Error).message}`,
      );
    }
  }

  async function cancel(actionId: string, sent: ActionRequest): Promise<CallToolResult> {
    try {
      const a = await agent.cancel(actionId, GATEWAY_CANCEL_NOTE);
      const s = await agent.settle(a, sent);
      log(`countersign mcp-gateway: the client cancelled ${actionId}; its verdict is ${s.verdict}`);
    } catch (e) {
      log(`countersign mcp-gateway: could not cancel ${actionId}: ${(e as Error).message}`);
    }
    return refused("the client cancelled the call");
  }

  function failure(e: unknown, name: string): CallToolResult {
    if (e instanceof Rejected) {
      return refused(`Countersign refused the request for ${name} (${e.message}); the call was not made`);
    }
    if (e instanceof TransportError) {
      return refused(
        `Countersign at ${o.url} could not be reached or failed (${e.message}); the gateway refuses calls that need approval until it can ask`,
      );
    }
    if (e instanceof InvalidRecord) {
      return refused(`the decision record did not verify (${e.message}); the call to ${name} was not made`);
    }
    return refused(`the approval for ${name} could not be obtained: ${(e as Error).message}`);
  }

  return { server, tools: { pinned, changed } };
}

/** A tool error: the upstream did not see the call. */
function refused(text: string, meta?: Record<string, unknown>): CallToolResult {
  return {
    isError: true,
    content: [{ type: "text", text: `Refused by Countersign's gateway: ${text}` }],
    ...(meta
      ? { _meta: Object.fromEntries(Object.entries(meta).map(([k, v]) => [`countersign/${k}`, v])) }
      : {}),
  };
}
