import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Demo } from "../../src/simulator/demo.js";
import { type DemoAgent, demoScript } from "../../src/simulator/demo-agent.js";
import { startTestDemo, type TestDemo } from "../support/demo.js";
import { eventually } from "../support/harness.js";

let demo: Demo;
let agent: DemoAgent;
let started: TestDemo | undefined;
const lines: string[] = [];

beforeAll(async () => {
  started = await startTestDemo({ name: "demo-grants", withExecutor: true, print: (l) => lines.push(l) });
  ({ demo, agent } = started);
});
afterAll(async () => {
  await started?.stop();
});

describe("the demo executor", () => {
  it("redeems each approval the demo agent gets and reports its outcome", async () => {
    expect(demo.executor?.id).toBe("demo-executor");
    const item = demoScript({ requester: "U0REQ00001", requesterEmail: "marta@demo.invalid" }).find(
      (s) => s.request.risk_class === "low",
    )!;
    agent.run([{ atMs: 0, request: item.request }]);
    const actionId = await eventually(
      async () =>
        (await demo.app.store.getActionByRequest(item.request.agent_id, item.request.request_id))?.id,
      "the action",
    );
    const receipts = await eventually(
      async () => {
        const r = await demo.app.store.getReceipts(actionId);
        return r.length === 2 && r;
      },
      "a redeemed and an outcome receipt",
      20_000,
    );
    expect(receipts.map((r) => r.kind)).toEqual(["redeemed", "outcome"]);
    expect(lines.some((l) => l.includes("demo-executor redeemed the approval"))).toBe(true);
  });
});
