/**
 * `countersign demo --socket-mode`, without a browser: the demo's app opens its socket on
 * the simulator, and the page's own endpoints (what the browser calls) approve a request
 * and run /approvals over it. Needs the shared Redis (a fresh queue prefix).
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { PASSKEY_ACTION_IDS } from "../../src/adapters/slack/home.js";
import type { ActionRequest } from "../../src/domain/types.js";
import type { Demo } from "../../src/simulator/demo.js";
import type { DemoAgent } from "../../src/simulator/demo-agent.js";
import { startTestDemo, type TestDemo } from "../support/demo.js";
import { eventually } from "../support/harness.js";

let demo: Demo;
let agent: DemoAgent;
let started: TestDemo | undefined;

beforeAll(async () => {
  started = await startTestDemo({ name: "demo-socket", socketMode: true });
  ({ demo, agent } = started);
});

afterAll(async () => {
  await started?.stop();
});

/** POST to the page as the browser does (same origin, JSON). */
async function page(endpoint: string, body: unknown): Promise<{ status: number; body: string }> {
  const res = await fetch(new URL(endpoint, demo.pageUrl), {
    method: "POST",
    headers: { "content-type": "application/json", origin: demo.pageUrl.replace(/\/$/, "") },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { status: number; body: string };
  expect(res.status, JSON.stringify(json)).toBe(200);
  return json;
}

describe("the demo in Socket Mode", () => {
  it("connects over the socket and never writes the app token into secrets.json", async () => {
    expect(demo.mode).toBe("socket");
    await demo.sim.socket!.waitForConnection();
    expect(fs.readFileSync(demo.files.secretsFile, "utf8")).not.toContain("xapp-");
  });

  it("the page's clicks and /approvals go over the socket and come back from the ack", async () => {
    const request: ActionRequest = {
      request_id: `sock-${randomUUID()}`,
      agent_id: "infra-agent",
      action: { type: "infra.restart", summary: "Restart the cache tier (socket demo)" },
      risk_class: "medium",
      region: "eu",
      purpose: "Memory leak after the last deploy",
    } as ActionRequest;
    const job = await agent.submit(request);
    const card = await eventually(
      async () =>
        demo.sim
          .messages()
          .find((m) => JSON.stringify(m.blocks ?? []).includes("Restart the cache tier (socket demo)")),
      "the card",
      20_000,
    );
    const before = demo.sim.socket!.envelopes.length;
    const list = await page("/page/command", { user: "U0SRE00001", text: "/approvals" });
    expect(list.body).toContain("Restart the cache tier (socket demo)");
    for (const user of ["U0SRE00001", "U0SRE00002"]) {
      const r = await page("/page/click", {
        user,
        channel: card.channel,
        ts: card.ts,
        actionId: ACTION_IDS.approve,
      });
      expect(r.status).toBe(200);
    }
    const sent = demo.sim.socket!.envelopes.slice(before);
    expect(sent.map((e) => e.type)).toEqual(["slash_commands", "interactive", "interactive"]);
    expect(sent.every((e) => e.ack !== undefined)).toBe(true);
    const outcome = await agent.outcome(job, request, 20_000);
    expect(outcome.claims.verdict).toBe("approved");
  });

  it("App Home over the socket: opening it sends app_home_opened, and its Register button a block_actions from the home view", async () => {
    const kim = "U0SRE00002";
    const before = demo.sim.socket!.envelopes.length;
    await page("/page/home", { user: kim });
    const home = await eventually(
      async () => {
        const r = await fetch(new URL(`/page/state?user=${kim}`, demo.pageUrl));
        return ((await r.json()) as { home: { id: string; view: { blocks: unknown[] } } | null }).home;
      },
      "Kim's App Home",
      20_000,
    );
    expect(JSON.stringify(home.view.blocks)).toContain(PASSKEY_ACTION_IDS.register);
    const r = await page("/page/click-view", {
      user: kim,
      viewId: home.id,
      actionId: PASSKEY_ACTION_IDS.register,
    });
    expect(r.status).toBe(200);
    const sent = demo.sim.socket!.envelopes.slice(before);
    expect(sent.map((e) => e.type)).toEqual(["events_api", "interactive"]);
    expect((sent[0]!.payload as { event: { type: string; user: string } }).event).toMatchObject({
      type: "app_home_opened",
      user: kim,
    });
    const click = sent[1]!.payload as { type: string; view: { type: string; id: string }; channel?: unknown };
    expect(click).toMatchObject({ type: "block_actions", view: { type: "home", id: home.id } });
    expect(click.channel).toBeUndefined();
    // The registration link arrives by DM.
    const dm = await eventually(
      async () =>
        demo.sim.messages(demo.sim.dmChannel(kim)).find((m) => m.text.includes("/passkeys/register?")),
      "the registration DM",
      20_000,
    );
    expect(dm.text).toContain("this one-time link");

    // Another person cannot click Kim's Home.
    const res = await fetch(new URL("/page/click-view", demo.pageUrl), {
      method: "POST",
      headers: { "content-type": "application/json", origin: demo.pageUrl.replace(/\/$/, "") },
      body: JSON.stringify({ user: "U0MALLORY1", viewId: home.id, actionId: PASSKEY_ACTION_IDS.register }),
    });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: string }).error).toContain("is not mallory's App Home");
  });
});
