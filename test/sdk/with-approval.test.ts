/**
 * withApproval inside real agent frameworks: the Vercel AI SDK's `tool()` driven by its
 * mock language model, and the OpenAI Agents SDK's `tool()` driven by a scripted model
 * through its own Runner. Countersign is real (the harness); approvers click in the Slack
 * simulator. The tool body must run exactly once on an approval and never otherwise.
 */
import {
  Agent,
  tool as agentsTool,
  type Model,
  type ModelRequest,
  type ModelResponse,
  Runner,
  Usage,
} from "@openai/agents";
import { tool as aiTool, generateText, stepCountIs } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import {
  type ApprovalExecutor,
  type ApprovalGrant,
  type JWKS,
  NotApproved,
  type NotApprovedResult,
  verify,
  withApproval,
} from "../../src/sdk/index.js";
import { BILLING_SECRET, type Harness, ISSUER, startHarness } from "../support/harness.js";

let h: Harness;
let jwks: JWKS;
const identity = { agentId: "billing-agent", issuer: ISSUER, key: { hmacSecret: BILLING_SECRET } };

beforeAll(async () => {
  h = await startHarness();
  jwks = (await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json()) as JWKS;
});
afterAll(async () => {
  await h?.stop();
});

interface Refund extends Record<string, unknown> {
  order: string;
  amount: number;
  currency: string;
}

const describeRefund = (a: Refund) => ({
  type: "payments.refund",
  summary: `Refund ${a.amount} ${a.currency} on order ${a.order}`,
  risk_class: "high",
  region: "eu",
  purpose: "The customer was charged twice",
});

const refundSchema = z.object({ order: z.string(), amount: z.number(), currency: z.string() });

/** Clicks the card of the one request this test has pending. */
async function decide(before: Set<string>, how: { approve: true } | { deny: string }): Promise<string> {
  const actionId = await waitForNewAction(before);
  const card = await h.card(actionId);
  if ("approve" in how) {
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await h.click("U0BOB", card, ACTION_IDS.approve);
  } else {
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: how.deny });
  }
  return actionId;
}

async function actionIds(): Promise<Set<string>> {
  const rows = await h.sql<{ id: string }>("SELECT id FROM actions");
  return new Set(rows.map((r) => r.id));
}

async function waitForNewAction(before: Set<string>): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const fresh = [...(await actionIds())].filter((id) => !before.has(id));
    if (fresh.length === 1) return fresh[0]!;
    if (fresh.length > 1) throw new Error(`expected one new action, saw ${fresh.length}`);
    if (Date.now() > deadline) throw new Error("no new action");
    await new Promise((r) => setTimeout(r, 25));
  }
}

function usageV3() {
  return {
    inputTokens: { total: 10, noCache: 10, cacheRead: 0, cacheWrite: 0 },
    outputTokens: { total: 5, text: 5, reasoning: 0 },
  };
}

/** A model that calls `refund` once with `input`, then answers in text. */
function aiModel(input: Refund) {
  return new MockLanguageModelV3({
    doGenerate: [
      {
        content: [
          { type: "tool-call", toolCallId: "call-1", toolName: "refund", input: JSON.stringify(input) },
        ],
        finishReason: { unified: "tool-calls", raw: "tool_calls" },
        usage: usageV3(),
        warnings: [],
      },
      {
        content: [{ type: "text", text: "done" }],
        finishReason: { unified: "stop", raw: "stop" },
        usage: usageV3(),
        warnings: [],
      },
    ],
  });
}

describe("withApproval in the Vercel AI SDK (tool() with the mock model)", () => {
  it("approved: the tool body runs once, with the approved arguments", async () => {
    const ran: Refund[] = [];
    const refund = aiTool({
      description: "Refund an order",
      inputSchema: refundSchema,
      execute: withApproval(
        async (a: Refund) => {
          ran.push(a);
          return { refunded: a.amount };
        },
        describeRefund,
        { identity, baseUrl: h.app.url, jwks, timeoutMs: 60_000 },
      ),
    });
    const input = { order: "A-1", amount: 120, currency: "EUR" };
    const before = await actionIds();
    const run = generateText({
      model: aiModel(input),
      tools: { refund },
      prompt: "Refund order A-1",
      stopWhen: stepCountIs(2),
    });
    await decide(before, { approve: true });
    const result = await run;
    expect(ran).toEqual([input]);
    expect(result.steps[0]!.toolResults[0]!.output).toEqual({ refunded: 120 });
    expect(result.text).toBe("done");
  });

  it("denied: the body never runs and the model reads the approver's reason", async () => {
    const ran: Refund[] = [];
    const refund = aiTool({
      description: "Refund an order",
      inputSchema: refundSchema,
      execute: withApproval(
        async (a: Refund) => {
          ran.push(a);
          return { refunded: a.amount };
        },
        describeRefund,
        { identity, baseUrl: h.app.url, jwks, timeoutMs: 60_000 },
      ),
    });
    const before = await actionIds();
    const run = generateText({
      model: aiModel({ order: "A-2", amount: 5000, currency: "EUR" }),
      tools: { refund },
      prompt: "Refund order A-2",
      stopWhen: stepCountIs(2),
    });
    const actionId = await decide(before, { deny: "5000 is more than the order" });
    const result = await run;
    expect(ran).toEqual([]);
    const out = result.steps[0]!.toolResults[0]!.output as NotApprovedResult;
    expect(out).toMatchObject({
      approved: false,
      status: "denied",
      action_id: actionId,
      reason_text: "5000 is more than the order",
    });
    expect(out.message).toContain("5000 is more than the order");
    // What the model reads is backed by a signed record.
    const g = await h.api("GET", `/v1/actions/${actionId}`);
    expect((await verify(out.record!, jwks, g.json.request, ISSUER)).verdict).toBe("denied");
  });
});

/** A model for the Agents SDK's Runner: calls `refund` once with `input`, then answers. */
class ScriptedModel implements Model {
  calls = 0;
  lastInput: ModelRequest["input"] | null = null;
  constructor(private readonly input: Refund) {}
  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    this.lastInput = request.input;
    this.calls++;
    if (this.calls === 1) {
      return {
        usage: new Usage(),
        output: [
          {
            type: "function_call",
            callId: "call-1",
            name: "refund",
            arguments: JSON.stringify(this.input),
            status: "completed",
          },
        ],
      };
    }
    return {
      usage: new Usage(),
      output: [
        {
          type: "message",
          role: "assistant",
          status: "completed",
          content: [{ type: "output_text", text: "done" }],
        },
      ],
    };
  }
  // biome-ignore lint/correctness/useYield: never streamed in these tests
  async *getStreamedResponse(): AsyncIterable<never> {
    throw new Error("not streamed in these tests");
  }
}

function toolOutputs(items: readonly { type: string; output?: unknown }[]): unknown[] {
  return items.filter((i) => i.type === "tool_call_output_item").map((i) => i.output);
}

describe("withApproval in the OpenAI Agents SDK (tool() through its Runner)", () => {
  const runner = new Runner({ tracingDisabled: true });

  it("denied with onDenied: throw: the body never runs; the model is told why", async () => {
    const ran: Refund[] = [];
    const refund = agentsTool({
      name: "refund",
      description: "Refund an order",
      parameters: refundSchema,
      execute: withApproval(
        async (a: Refund) => {
          ran.push(a);
          return `refunded ${a.amount}`;
        },
        describeRefund,
        { identity, baseUrl: h.app.url, jwks, timeoutMs: 60_000, onDenied: "throw" },
      ),
    });
    const model = new ScriptedModel({ order: "B-1", amount: 900, currency: "EUR" });
    const agent = new Agent({ name: "billing", instructions: "refunds", model, tools: [refund] });
    const before = await actionIds();
    const run = runner.run(agent, "Refund order B-1");
    await decide(before, { deny: "duplicate of B-0" });
    const result = await run;
    expect(ran).toEqual([]);
    const [out] = toolOutputs(result.newItems as never);
    // The Agents SDK turns a thrown error into a tool output for the model (its errorFunction).
    expect(String(out)).toContain("duplicate of B-0");
    expect(String(out)).toMatch(/denied/);
    expect(model.calls).toBe(2);
  });

  it("approved: redeem before the body, the outcome after it (the executor hook)", async () => {
    const order: string[] = [];
    const grants: ApprovalGrant[] = [];
    // A stand-in for the grants API (not built yet), typed against the hook it will fill.
    const executor: ApprovalExecutor = {
      async redeem(g) {
        order.push("redeem");
        grants.push(g);
        return { receipt: `rcpt-${g.actionId}` };
      },
      async reportOutcome(o) {
        order.push(`outcome:${o.status}:${(o.receipt as { receipt: string }).receipt}`);
      },
    };
    const refund = agentsTool({
      name: "refund",
      description: "Refund an order",
      parameters: refundSchema,
      execute: withApproval(
        async (a: Refund) => {
          order.push("run");
          return `refunded ${a.amount} ${a.currency}`;
        },
        describeRefund,
        { identity, baseUrl: h.app.url, jwks, timeoutMs: 60_000, onDenied: "throw", executor },
      ),
    });
    const input = { order: "B-2", amount: 80, currency: "EUR" };
    const agent = new Agent({
      name: "billing",
      instructions: "refunds",
      model: new ScriptedModel(input),
      tools: [refund],
    });
    const before = await actionIds();
    const run = runner.run(agent, "Refund order B-2");
    const actionId = await decide(before, { approve: true });
    const result = await run;
    expect(toolOutputs(result.newItems as never)).toEqual(["refunded 80 EUR"]);
    expect(order).toEqual(["redeem", "run", `outcome:succeeded:rcpt-${actionId}`]);
    expect(grants[0]!.request.action.details).toEqual(input);
    expect((await verify(grants[0]!.record, jwks, grants[0]!.request, ISSUER)).action_id).toBe(actionId);
  });
});

describe("withApproval on its own", () => {
  it("a body that throws is reported failed, and the error reaches the caller", async () => {
    const seen: string[] = [];
    const executor: ApprovalExecutor = {
      async redeem() {
        return null;
      },
      async reportOutcome(o) {
        seen.push(`${o.status}:${o.detail}`);
      },
    };
    const wrapped = withApproval(
      async (_a: Refund) => {
        throw new Error("the payments API said no");
      },
      describeRefund,
      { identity, baseUrl: h.app.url, jwks, timeoutMs: 60_000, executor },
    );
    const before = await actionIds();
    const call = wrapped({ order: "C-1", amount: 1, currency: "EUR" }).catch((e: unknown) => e);
    await decide(before, { approve: true });
    expect(((await call) as Error).message).toBe("the payments API said no");
    expect(seen).toEqual(["failed:the payments API said no"]);
  });

  it("throws NotApproved with onDenied: throw, carrying the result", async () => {
    const wrapped = withApproval(async (_a: Refund) => "ran", describeRefund, {
      identity,
      baseUrl: h.app.url,
      jwks,
      timeoutMs: 60_000,
      onDenied: "throw",
    });
    const before = await actionIds();
    const call = wrapped({ order: "C-2", amount: 1, currency: "EUR" }).catch((e: unknown) => e);
    await decide(before, { deny: "no" });
    const err = await call;
    expect(err).toBeInstanceOf(NotApproved);
    expect((err as NotApproved).result).toMatchObject({ status: "denied", reason_text: "no" });
  });
});
