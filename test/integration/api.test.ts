import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { eventually, type Harness, request, sleep, startHarness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

describe("POST /v1/actions", () => {
  it("accepts a request (201), and answers a repeat with the same action (200)", async () => {
    const req = request();
    const r = await h.api("POST", "/v1/actions", { body: req });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({
      request_id: req.request_id,
      status: "pending",
      route: "eu-high-payments",
    });
    expect(Date.parse(r.json.deadline)).toBeGreaterThan(Date.now() + 29 * 60_000);
    const again = await h.api("POST", "/v1/actions", { body: req });
    expect(again.status).toBe(200);
    expect(again.json.action_id).toBe(r.json.action_id);
    await h.card(r.json.action_id);
  });

  it("answers at once with verdict and record when the policy decides", async () => {
    const req = request({ risk_class: "low", action: { type: "crm.read", summary: "Read customer 1" } });
    const r = await h.api("POST", "/v1/actions", { body: req });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ status: "approved", verdict: "approved", route: "low-auto" });
    expect((decodeJwt(r.json.record) as unknown as RecordClaims).reason_code).toBe("policy");
  });

  it("ends a request sent over HTTP and then on the queue in the same state", async () => {
    const req = request({ risk_class: "low", action: { type: "crm.read", summary: "Read customer 2" } });
    const r = await h.api("POST", "/v1/actions", { body: req });
    const viaQueue = (await (await h.submit(req)).waitUntilFinished(h.events, 10_000)) as { record: string };
    expect(viaQueue.record).toBe(r.json.record);
  });

  it("answers problem+json with every failing field by path (400)", async () => {
    const bad = { ...request(), purpose: "", action: { type: "Payments Refund", summary: "x\ny" } };
    const r = await h.api("POST", "/v1/actions", { body: bad });
    expect(r.status).toBe(400);
    expect(r.type).toContain("application/problem+json");
    expect(r.json).toMatchObject({ status: 400, code: "invalid_request" });
    const paths = r.json.errors.map((e: { path: string }) => e.path);
    expect(paths).toEqual(expect.arrayContaining(["purpose", "action.type", "action.summary"]));
  });

  it("refuses duplicate member names (I-JSON) with 400", async () => {
    const req = request();
    const text = JSON.stringify(req).replace('"region":"eu"', '"region":"eu","region":"us"');
    const token = await h.proof(JSON.parse(text));
    const r = await h.api("POST", "/v1/actions", { body: text, token });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.json.errors)).toContain("region");
  });

  it.each([
    ["no token", { token: null }, 401, "unauthenticated"],
    ["a token that is not a JWT", { token: "nope" }, 401, "bad_proof"],
  ])("refuses %s", async (_n, o, status, code) => {
    const r = await h.api("POST", "/v1/actions", { body: request(), ...(o as { token: string | null }) });
    expect(r.status).toBe(status);
    expect(r.json.code).toBe(code);
  });

  it("refuses a token bound to other content (401 bad_proof)", async () => {
    const req = request();
    const token = await h.proof({ ...req, purpose: "other" });
    const r = await h.api("POST", "/v1/actions", { body: req, token });
    expect(r.status).toBe(401);
    expect(r.json.code).toBe("bad_proof");
  });

  it("refuses an expired token (401 proof_expired) and a replayed one (401 replayed_proof)", async () => {
    const req = request({ risk_class: "low", action: { type: "crm.read", summary: "read" } });
    const old = await h.proof(req, { now: new Date(Date.now() - 600_000) });
    expect((await h.api("POST", "/v1/actions", { body: req, token: old })).json.code).toBe("proof_expired");
    const token = await h.proof(req);
    expect((await h.api("POST", "/v1/actions", { body: req, token })).status).toBe(201);
    const replay = await h.api("POST", "/v1/actions", { body: req, token });
    expect(replay.status).toBe(401);
    expect(replay.json.code).toBe("replayed_proof");
  });

  it("refuses an action the agent may not ask for (403) and a reused request_id (409)", async () => {
    const r = await h.api("POST", "/v1/actions", {
      body: request({ action: { type: "infra.drop", summary: "x" } }),
    });
    expect(r.status).toBe(403);
    expect(r.json.code).toBe("action_not_allowed");
    const req = request({ risk_class: "low", action: { type: "crm.read", summary: "read" } });
    await h.api("POST", "/v1/actions", { body: req });
    const clash = await h.api("POST", "/v1/actions", { body: { ...req, purpose: "changed" } });
    expect(clash.status).toBe(409);
    expect(clash.json.code).toBe("request_id_conflict");
  });

  it("refuses a body over 64 KiB (413)", async () => {
    const req = request({
      action: { type: "payments.refund", summary: "big", details: { blob: "x".repeat(70_000) } },
    });
    const r = await h.api("POST", "/v1/actions", { body: req });
    expect(r.status).toBe(413);
  });
});

describe("GET /v1/actions/:id", () => {
  it("shows an agent only its own actions", async () => {
    const req = request();
    const mine = await h.api("POST", "/v1/actions", { body: req });
    expect((await h.api("GET", `/v1/actions/${mine.json.action_id}`)).status).toBe(200);
    const other = await h.api("GET", `/v1/actions/${mine.json.action_id}`, { agentId: "ops-agent" });
    expect(other.status).toBe(404);
    expect((await h.api("GET", "/v1/actions/act_nonexistent")).status).toBe(404);
  });

  it("holds ?wait until the verdict and answers right after the click", async () => {
    const req = request({ action: { type: "payments.refund", summary: "long-poll" } });
    const { json } = await h.api("POST", "/v1/actions", { body: req });
    const card = await h.card(json.action_id);
    const started = Date.now();
    const poll = h.api("GET", `/v1/actions/${json.action_id}?wait=30`);
    await sleep(300);
    await h.click("U0ALICE", card, ACTION_IDS.deny);
    await h.submitModal("U0ALICE", { reason: "not today" });
    const clickedAt = Date.now();
    const r = await poll;
    const answeredAt = Date.now();
    expect(r.json).toMatchObject({ status: "denied", verdict: "denied" });
    expect((decodeJwt(r.json.record) as unknown as RecordClaims).reason_text).toBe("not today");
    expect(answeredAt - started).toBeLessThan(10_000);
    expect(answeredAt - clickedAt).toBeLessThan(2_000);
  });

  it("answers a wait that runs out with status pending", async () => {
    const { json } = await h.api("POST", "/v1/actions", { body: request() });
    const t = Date.now();
    const r = await h.api("GET", `/v1/actions/${json.action_id}?wait=1`);
    expect(r.json.status).toBe("pending");
    expect(Date.now() - t).toBeGreaterThanOrEqual(900);
  });

  it("refuses wait outside 1-60, 0 included, with text that says 1 to 60", async () => {
    const { json } = await h.api("POST", "/v1/actions", { body: request() });
    for (const wait of ["0", "61", "-1", "1.5", "", "ten"]) {
      const r = await h.api("GET", `/v1/actions/${json.action_id}?wait=${wait}`);
      expect({ wait, status: r.status, code: r.json.code }).toEqual({
        wait,
        status: 400,
        code: "invalid_request",
      });
      expect(r.json.detail).toContain("from 1 to 60");
      expect(r.json.errors).toEqual([{ path: "wait", message: expect.stringContaining("1 to 60") }]);
    }
    expect((await h.api("GET", `/v1/actions/${json.action_id}?wait=1`)).status).toBe(200);
    expect((await h.api("GET", `/v1/actions/${json.action_id}`)).status).toBe(200);
  });

  it("spends a GET token: the same token a second time is 401 replayed_proof", async () => {
    const { json } = await h.api("POST", "/v1/actions", { body: request() });
    const token = await h.proof(undefined);
    const first = await h.api("GET", `/v1/actions/${json.action_id}`, { token });
    expect(first.status).toBe(200);
    const again = await h.api("GET", `/v1/actions/${json.action_id}`, { token });
    expect({ status: again.status, code: again.json.code }).toEqual({ status: 401, code: "replayed_proof" });
    expect(again.type).toContain("application/problem+json");
    // A long-poll's token is spent as well, even when the wait runs out without a verdict.
    const pollToken = await h.proof(undefined);
    expect((await h.api("GET", `/v1/actions/${json.action_id}?wait=1`, { token: pollToken })).status).toBe(
      200,
    );
    const replayedPoll = await h.api("GET", `/v1/actions/${json.action_id}?wait=1`, { token: pollToken });
    expect(replayedPoll.json.code).toBe("replayed_proof");
  });

  it("refuses a token bound to a body (a POST's) on a GET", async () => {
    const req = request();
    const { json } = await h.api("POST", "/v1/actions", { body: req });
    const r = await h.api("GET", `/v1/actions/${json.action_id}`, { token: await h.proof(req) });
    expect({ status: r.status, code: r.json.code }).toEqual({ status: 401, code: "bad_proof" });
  });
});

describe("POST /v1/actions/:id/cancel", () => {
  it("cancels with a signed record and updates the card; a second cancel is 409", async () => {
    const { json } = await h.api("POST", "/v1/actions", { body: request() });
    const card = await h.card(json.action_id);
    const r = await h.api("POST", `/v1/actions/${json.action_id}/cancel`, {
      body: { note: "customer withdrew" },
    });
    expect(r.status).toBe(200);
    expect(r.json.status).toBe("cancelled");
    const claims = decodeJwt(r.json.record) as unknown as RecordClaims;
    expect(claims).toMatchObject({
      verdict: "cancelled",
      reason_code: "cancelled",
      reason_text: "customer withdrew",
    });
    await eventually(async () => {
      const m = h.sim.messages(card.channel).find((x) => x.ts === card.ts);
      return m && !JSON.stringify(m.blocks).includes(ACTION_IDS.approve);
    }, "the card to lose its buttons");
    const again = await h.api("POST", `/v1/actions/${json.action_id}/cancel`, { body: {} });
    expect(again.status).toBe(409);
  });

  it("does not let another agent cancel", async () => {
    const { json } = await h.api("POST", "/v1/actions", { body: request() });
    const r = await h.api("POST", `/v1/actions/${json.action_id}/cancel`, { body: {}, agentId: "ops-agent" });
    expect(r.status).toBe(404);
  });
});
