/**
 * `countersign mcp`: Countersign as two MCP tools, so an agent built on any MCP client can
 * ask before it acts (docs/mcp.md). It is a thin entry point over the agent SDK's HTTP client: it
 * holds no state that matters (Countersign's database is the truth), so a restarted server
 * answers `get_approval` for any of the agent's actions.
 *
 * What it reports as approved has passed the SDK's record verification: a status of
 * `approved` never rests on the transport's word. Denials, expiries and cancellations are
 * answers, not tool errors: the model should read the reason. Tool errors (`isError`) are
 * for a request Countersign refused, a Countersign it cannot reach, and a record that does
 * not verify: in each case nothing is approved.
 *
 * Waiting can take longer than a client's request timeout (the TypeScript SDK's is 60 s),
 * so while it waits it sends a progress notification every few seconds when the client
 * gave a progressToken; a client that resets its timeout on progress waits as long as
 * `wait_s`. A client that cancels `request_approval` (notifications/cancelled) cancels the
 * request in Countersign: a signed record with verdict cancelled, never a silent pending.
 */
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { ActionRequest } from "../domain/types.js";
import type { ActionAnswer, AgentClient, Settled } from "../sdk/client.js";
import { InvalidRecord, Rejected, TransportError } from "../sdk/errors.js";
import { type Extra, startProgress } from "./progress.js";

/** The longest a tool call waits for a verdict; the request stays pending after it (see get_approval). */
export const MAX_WAIT_S = 600;
export const DEFAULT_WAIT_S = 120;
/** Progress at least every 10 s keeps clients that reset their timeout on progress waiting; 5 s leaves room. */
export const PROGRESS_EVERY_MS = 5_000;

export const CANCEL_NOTE = "cancelled by the MCP client (notifications/cancelled) while it waited";

export interface McpServerOptions {
  client: AgentClient;
  /** Where Countersign is, for error messages. */
  url: string;
  /** Default 5 s; tests may shorten it. */
  progressEveryMs?: number;
  /** Where to say what happened outside the protocol (stdout is the protocol): default stderr. */
  log?: (line: string) => void;
  version?: string;
}

const outputShape = {
  action_id: z.string().optional(),
  status: z.string(),
  verdict: z.enum(["approved", "denied", "expired", "cancelled"]).optional(),
  reason_text: z.string().optional(),
  record: z.string().optional(),
  request: z.record(z.string(), z.unknown()).optional(),
  revised: z.boolean().optional(),
  deadline: z.string().nullable().optional(),
};

const waitS = z
  .number()
  .int()
  .min(0)
  .max(MAX_WAIT_S)
  .optional()
  .describe(
    `seconds to wait for the verdict before answering status "pending" (default ${DEFAULT_WAIT_S}, at most ${MAX_WAIT_S}); then call get_approval`,
  );

export function createMcpServer(o: McpServerOptions): McpServer {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const every = o.progressEveryMs ?? PROGRESS_EVERY_MS;
  const { client } = o;
  const server = new McpServer({ name: "countersign", version: o.version ?? "0.1.0" });

  server.registerTool(
    "request_approval",
    {
      title: "Ask people to approve an action",
      description:
        "Ask Countersign for a human approval before a high-impact action, and wait for the verdict. " +
        "Act only when status is approved; on denied, expired or cancelled, do not act and tell the user reason_text. " +
        "If status is pending, call get_approval with the action_id later. Execute `request` as returned: approvers may have changed it.",
      inputSchema: {
        action_type: z.string().describe("dotted lower-case, e.g. payments.refund"),
        summary: z.string().describe("one line, at most 300 characters, shown to the approvers"),
        details: z
          .record(z.string(), z.unknown())
          .optional()
          .describe("the action's arguments, any JSON object"),
        risk_class: z.string().describe("one of the policy's risk classes, e.g. high"),
        region: z.string().describe("one of the policy's regions, e.g. eu"),
        purpose: z.string().describe("why you want to act, at most 1000 characters"),
        systems: z.array(z.string()).optional().describe("the systems the action touches"),
        editable: z
          .array(z.string())
          .optional()
          .describe("JSON Pointers into details that approvers may change, e.g. /amount"),
        request_id: z
          .string()
          .optional()
          .describe(
            "your idempotency key: the same id and content answers the same action; default a fresh one",
          ),
        wait_s: waitS,
      },
      outputSchema: outputShape,
    },
    async (args, extra) => {
      const request: ActionRequest = {
        request_id: args.request_id ?? `mcp-${randomUUID()}`,
        agent_id: client.agentId,
        action: {
          type: args.action_type,
          summary: args.summary,
          ...(args.details === undefined ? {} : { details: args.details }),
          ...(args.systems === undefined ? {} : { systems: args.systems }),
          ...(args.editable === undefined ? {} : { editable: args.editable }),
        },
        risk_class: args.risk_class,
        region: args.region,
        purpose: args.purpose,
      } as ActionRequest;
      let first: ActionAnswer;
      try {
        // Not aborted by the client's cancel: once sent, the request must be cancelled in
        // Countersign, so its id is needed whether or not the client still listens.
        first = await client.submit(request);
      } catch (e) {
        return failure(e, o.url);
      }
      return waitAndAnswer(first, request, args.wait_s ?? DEFAULT_WAIT_S, extra, true);
    },
  );

  server.registerTool(
    "get_approval",
    {
      title: "Check an approval",
      description:
        "The status of an approval asked for earlier, waiting up to wait_s seconds for the verdict. " +
        "Act only when status is approved.",
      inputSchema: {
        action_id: z.string().describe("the action_id request_approval answered"),
        wait_s: waitS,
      },
      outputSchema: outputShape,
    },
    async (args, extra) => {
      let first: ActionAnswer;
      try {
        first = await client.get(args.action_id);
      } catch (e) {
        return failure(e, o.url);
      }
      // Only request_approval's own wait cancels the request: a client that stops
      // checking on an action has not withdrawn it.
      return waitAndAnswer(first, undefined, args.wait_s ?? DEFAULT_WAIT_S, extra, false);
    },
  );

  async function waitAndAnswer(
    first: ActionAnswer,
    sent: ActionRequest | undefined,
    waitForS: number,
    extra: Extra,
    cancelOnAbort: boolean,
  ): Promise<CallToolResult> {
    let answer = first;
    if (answer.status === "pending" && waitForS > 0) {
      const stopProgress = startProgress(extra, every, {
        message: `waiting for approvers on ${answer.action_id}`,
        total: waitForS,
        onError: (e) => log(`countersign mcp: a progress notification failed: ${e.message}`),
      });
      try {
        answer = await client.wait(answer.action_id, { timeoutMs: waitForS * 1000, signal: extra.signal });
      } catch (e) {
        if (extra.signal.aborted && cancelOnAbort) {
          // Nobody reads this answer any more (the SDK drops a cancelled request's
          // response); what matters is that the request is cancelled before we return.
          return cancelled(answer.action_id, sent);
        }
        if (extra.signal.aborted) return failure(new Error("the client cancelled the call"), o.url);
        return failure(e, o.url);
      } finally {
        stopProgress();
      }
    } else if (extra.signal.aborted && cancelOnAbort && answer.status === "pending") {
      return cancelled(answer.action_id, sent);
    }
    if (answer.status === "pending") {
      return result({
        action_id: answer.action_id,
        status: "pending",
        deadline: answer.deadline ?? null,
      });
    }
    try {
      return result(view(await client.settle(answer, sent)));
    } catch (e) {
      return failure(e, o.url);
    }
  }

  async function cancelled(actionId: string, sent: ActionRequest | undefined): Promise<CallToolResult> {
    try {
      const a = await client.cancel(actionId, CANCEL_NOTE);
      const s = await client.settle(a, sent);
      log(`countersign mcp: the client cancelled ${actionId}; its verdict is ${s.verdict}`);
      return result(view(s));
    } catch (e) {
      log(
        `countersign mcp: could not cancel ${actionId} after the client cancelled: ${(e as Error).message}`,
      );
      return failure(e, o.url);
    }
  }

  return server;
}

function view(s: Settled): Record<string, unknown> {
  return {
    action_id: s.action_id,
    status: s.verdict,
    verdict: s.verdict,
    reason_text: s.claims.reason_text,
    record: s.record,
    request: s.request,
    ...(s.revised ? { revised: true } : {}),
  };
}

function result(structured: Record<string, unknown>): CallToolResult {
  return { structuredContent: structured, content: [{ type: "text", text: JSON.stringify(structured) }] };
}

/** A tool error the model can act on: what failed, and whether asking again can help. */
function failure(e: unknown, url: string): CallToolResult {
  let text: string;
  if (e instanceof Rejected) {
    const fields = e.errors.map((x) => `\n  ${x.path}: ${x.message}`).join("");
    text = `Countersign refused the request (${e.message}); nothing was approved. Fix what it names and ask again.${fields}`;
  } else if (e instanceof TransportError) {
    text = `Countersign at ${url} could not be reached or failed: ${e.message}. Nothing was approved; do not act. Asking again with the same request_id is safe.`;
  } else if (e instanceof InvalidRecord) {
    text = `The decision record did not verify (${e.message}). Do NOT act on it.`;
  } else {
    text = `The approval could not be obtained: ${e instanceof Error ? e.message : String(e)}. Nothing was approved; do not act.`;
  }
  return { isError: true, content: [{ type: "text", text }] };
}
