import type { Job } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { mintProof } from "../../src/records/proof.js";
import { blockKitProblems } from "../../src/simulator/blockkit.js";
import {
  BILLING_SECRET,
  eventually,
  type Harness,
  ISSUER,
  request,
  startHarness,
} from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

/** Add a job and wait for it to fail; returns failedReason. */
async function failed(data: unknown): Promise<string> {
  const job = await h.queue.add("approval", data);
  await expect(job.waitUntilFinished(h.events, 10_000)).rejects.toThrow();
  const again = await h.queue.getJob(job.id!);
  expect(again?.attemptsMade).toBeLessThanOrEqual(1);
  return again!.failedReason;
}

const hmac = { kind: "hmac" as const, secret: new TextEncoder().encode(BILLING_SECRET) };

describe("intake refuses bad requests without retry, with a reason a person can act on", () => {
  it.each([
    ["a missing field", () => ({ ...request(), purpose: undefined }), "invalid_request", "purpose"],
    ["an unknown field", () => ({ ...request(), prupose: "typo" }), "invalid_request", "prupose"],
    ["an unknown risk class", () => request({ risk_class: "extreme" }), "invalid_request", "risk_class"],
    ["an unknown region", () => request({ region: "mars" }), "invalid_request", "region"],
    ["an unknown agent", () => request({ agent_id: "ghost-agent" }), "unknown_agent", "ghost-agent"],
    [
      "an action the agent may not ask for",
      () => request({ action: { type: "infra.delete" } }),
      "action_not_allowed",
      "infra.delete",
    ],
    [
      "a callback to an origin not listed",
      () => request({ callback_url: "https://evil.example/hook" }),
      "callback_not_allowed",
      "callback_url",
    ],
  ])("refuses %s", async (_name, make, code, where) => {
    const req = make();
    const reason = await failed({ request: req, proof: await h.proof(req) });
    expect(reason).toMatch(new RegExp(`^rejected: ${code}: `));
    expect(reason).toContain(where);
  });

  it("refuses a region outside the agent's own regions", async () => {
    const policyWithApac = h.app.policy;
    expect(policyWithApac.agents["billing-agent"]?.regions).toEqual(["eu", "us"]);
    // The test policy has no third region; region_not_allowed is covered in the unit tests
    // of checkRequestAgainstPolicy. Here: a known region passes that check.
    const req = request({ region: "us", action: { type: "ops.restart", summary: "Restart worker" } });
    const job = await h.submit(req);
    await h.card(req.request_id);
    expect(await job.getState()).toBe("delayed");
  });

  it("refuses job data that is not {request, proof}", async () => {
    expect(await failed("just a string")).toMatch(/^rejected: invalid_request: /);
    expect(await failed({ request: request() })).toMatch(/^rejected: bad_proof: .*proof/);
  });

  it("refuses a forged proof (signed with another secret)", async () => {
    const req = request();
    const proof = await mintProof({
      agentId: "billing-agent",
      audience: ISSUER,
      key: { kind: "hmac", secret: new TextEncoder().encode("x".repeat(40)) },
      request: req,
    });
    expect(await failed({ request: req, proof })).toMatch(/^rejected: bad_proof: /);
  });

  it("refuses a proof for other content (req mismatch)", async () => {
    const req = request();
    const proof = await h.proof({ ...req, purpose: "something else" });
    expect(await failed({ request: req, proof })).toMatch(/^rejected: bad_proof: .*req/);
  });

  it("refuses an expired proof, judged at the time the job was added", async () => {
    const req = request();
    const proof = await mintProof({
      agentId: "billing-agent",
      audience: ISSUER,
      key: hmac,
      request: req,
      now: new Date(Date.now() - 10 * 60_000),
    });
    expect(await failed({ request: req, proof })).toMatch(/^rejected: proof_expired: /);
  });

  it("refuses a replayed proof (same jti on another request)", async () => {
    const a = request({ risk_class: "low", action: { type: "crm.read", summary: "read" } });
    const jti = `jti-${Date.now()}`;
    const first = await h.submit(a, { proof: await h.proof(a, { jti }) });
    await first.waitUntilFinished(h.events, 10_000);
    const b = request({ risk_class: "low", action: { type: "crm.read", summary: "read again" } });
    expect(await failed({ request: b, proof: await h.proof(b, { jti }) })).toMatch(
      /^rejected: replayed_proof: /,
    );
  });

  it("refuses a request_id reused for different content", async () => {
    const a = request({ risk_class: "low", action: { type: "crm.read", summary: "read" } });
    await (await h.submit(a)).waitUntilFinished(h.events, 10_000);
    const b = { ...a, purpose: "a different purpose" };
    expect(await failed({ request: b, proof: await h.proof(b) })).toMatch(/^rejected: request_id_conflict: /);
  });

  it("keeps an audit event for each refusal and posts nothing to Slack", async () => {
    const before = h.sim.calls.filter((c) => c.method === "chat.postMessage").length;
    const req = request({ action: { type: "infra.delete" } });
    await failed({ request: req, proof: await h.proof(req) });
    const [ev] = await h.sql<{ data_json: string }>(
      "SELECT data_json FROM events WHERE type = 'rejected' AND data_json LIKE ?",
      `%${req.request_id}%`,
    );
    expect(JSON.parse(ev!.data_json)).toMatchObject({ code: "action_not_allowed", via: "queue" });
    expect(h.sim.calls.filter((c) => c.method === "chat.postMessage").length).toBe(before);
  });
});

describe("the card shows agent text as text", () => {
  it("escapes mentions, links and markup in every agent field and stays within Block Kit limits", async () => {
    const evil = "<!channel> <https://evil.example|click me> &amp; *urgent* \u202Egnp.exe";
    const req = request({
      action: {
        type: "payments.refund",
        summary: `Refund ${evil}`.slice(0, 300),
        details: { note: evil, nested: { deeper: evil } },
        systems: [evil.slice(0, 100)],
      },
      purpose: evil,
      on_behalf_of: { slack_user: "U0REQ", email: "req@example.com" },
      context: { ticket: evil },
    });
    await h.submit(req);
    const card = await h.card(req.request_id);
    const msg = h.sim.messages("C0EUAPPROVALS").find((m) => m.ts === card.ts)!;
    // Slack interprets markup in mrkdwn objects and in the notification text; plain_text
    // (the header) is shown as typed, so only the bidi control must be neutralised there.
    const interpreted = [...mrkdwnTexts(msg.blocks), msg.text].join("\n");
    expect(interpreted).not.toContain("<!channel>");
    expect(interpreted).not.toContain("<https://evil");
    expect(interpreted).toContain("&lt;!channel&gt;");
    const all = JSON.stringify(msg.blocks) + msg.text;
    expect(all).not.toContain("\u202E");
    expect(all).toContain("[U+202E]");
    expect(blockKitProblems(msg.blocks, "message")).toEqual([]);
  });

  it("posts a card for a 30 KB details payload, cut with a note", async () => {
    const details: Record<string, string> = {};
    for (let i = 0; i < 60; i++) details[`line_item_${i}`] = "x".repeat(480);
    const req = request({ action: { type: "payments.refund", summary: "Bulk refund", details } });
    expect(JSON.stringify(details).length).toBeGreaterThan(29_000);
    await h.submit(req);
    const card = await h.card(req.request_id);
    const msg = h.sim.messages("C0EUAPPROVALS").find((m) => m.ts === card.ts)!;
    expect(blockKitProblems(msg.blocks, "message")).toEqual([]);
    expect(JSON.stringify(msg.blocks)).toMatch(/cut|more/);
  });
});

describe("who may click", () => {
  it("tells a non-approver they are not one, keeps an event, and changes nothing", async () => {
    const req = request();
    await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0MALLORY", card, ACTION_IDS.approve);
    const note = await h.sim.waitForCall("chat.postEphemeral", (c) => c.args.user === "U0MALLORY");
    expect(String(note.args.text)).toMatch(/not an approver/i);
    const a = await h.app.store.getAction(card.actionId);
    expect(a?.votes).toEqual([]);
    expect(a?.status).toBe("pending");
    const events = await h.app.store.listEvents(card.actionId);
    expect(events.find((e) => e.type === "vote_refused")).toMatchObject({
      actor: "slack:U0MALLORY",
      data: { code: "not_an_approver" },
    });
  });

  it("refuses a click whose button value was edited to point at another action", async () => {
    const a = request();
    const b = request();
    await h.submit(a);
    await h.submit(b);
    const cardA = await h.card(a.request_id);
    const cardB = await h.card(b.request_id);
    const msg = h.sim.messages(cardA.channel).find((m) => m.ts === cardA.ts)!;
    // Alice clicks on card A, but the payload's value names action B.
    const tampered = JSON.parse(JSON.stringify(msg.blocks).replaceAll(cardA.actionId, cardB.actionId));
    const { sendSigned, blockActionsPayload } = await import("../../src/simulator/interactions.js");
    const payload = blockActionsPayload({
      user: { id: "U0ALICE", team_id: "T0TEST", name: "alice" },
      message: { ...msg, blocks: tampered },
      actionId: ACTION_IDS.approve,
      value: tampered
        .flatMap((bl: { elements?: { action_id: string; value: string }[] }) => bl.elements ?? [])
        .find((e: { action_id: string }) => e.action_id === ACTION_IDS.approve).value,
      triggerId: h.sim.newTriggerId(),
    } as never);
    const r = await sendSigned("interaction", payload, {
      url: h.slackUrl,
      signingSecret: "test-signing-secret-0123456789abcdef",
    });
    expect(r.status).toBe(200);
    await h.sim.waitForCall("chat.postEphemeral", (c) => c.args.user === "U0ALICE");
    expect((await h.app.store.getAction(cardB.actionId))?.votes).toEqual([]);
    expect((await h.app.store.getAction(cardA.actionId))?.votes).toEqual([]);
  });

  it("refuses an unsigned or wrongly signed Slack request", async () => {
    const r = await fetch(h.slackUrl, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": String(Math.floor(Date.now() / 1000)),
        "x-slack-signature": "v0=deadbeef",
      },
      body: "payload=%7B%7D",
    });
    expect(r.status).toBe(401);
  });
});

// Last: it fills the agent's pending slots.
describe("the pending limit", () => {
  it("refuses past max_pending with too_many_pending", async () => {
    const [row] = await h.sql<{ n: number }>(
      "SELECT count(*) AS n FROM actions WHERE agent_id = 'billing-agent' AND status = 'pending'",
    );
    const pending = row!.n;
    const jobs: Job[] = [];
    for (let i = pending; i < 20; i++)
      jobs.push(await h.submit(request({ action: { summary: `Refund ${i}` } })));
    await eventually(
      async () => (await Promise.all(jobs.map((j) => j.getState()))).every((s) => s === "delayed"),
      "20 pending",
    );
    const over = request();
    expect(await failed({ request: over, proof: await h.proof(over) })).toMatch(
      /^rejected: too_many_pending: /,
    );
  });
});

function mrkdwnTexts(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(mrkdwnTexts);
  if (node && typeof node === "object") {
    const o = node as Record<string, unknown>;
    const own = o.type === "mrkdwn" && typeof o.text === "string" ? [o.text] : [];
    return [...own, ...Object.values(o).flatMap(mrkdwnTexts)];
  }
  return [];
}
