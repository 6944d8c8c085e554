/**
 * Socket Mode end to end: the app runs with SLACK_APP_TOKEN and opens its socket on the
 * simulator through apps.connections.open; clicks, modal submissions and /approvals go
 * over it as envelopes, and the acks carry back what the HTTP path returns as a body.
 */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { eventually, type Harness, request, startHarness, USERS } from "../support/harness.js";

const u = (id: string) => {
  const x = USERS.find((y) => y.id === id)!;
  return { id: x.id, team_id: x.team_id, name: x.name };
};

describe("Socket Mode", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ socketMode: true });
    await h.sim.socket!.waitForConnection();
  });
  afterAll(async () => {
    await h?.stop();
  });

  function usOps(summary: string) {
    return request({ region: "us", action: { type: "ops.restart", summary } });
  }

  it("connects with the app-level token, and the bot token is refused for it", async () => {
    const open = await h.sim.waitForCall("apps.connections.open");
    expect(open.response).toMatchObject({
      ok: true,
      url: expect.stringMatching(/^ws:\/\/127\.0\.0\.1:\d+\/link\//),
    });
    const r = await fetch(`${h.sim.url}apps.connections.open`, {
      method: "POST",
      headers: { authorization: "Bearer xoxb-test-token" },
    });
    expect(await r.json()).toEqual({ ok: false, error: "not_allowed_token_type" });
  });

  it("approves over the socket: the click's envelope is acked and the vote is recorded", async () => {
    const req = usOps("Approve over the socket");
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    const sent = h.sim.socket!.envelopes.length;
    const r = await h.click("U0ALICE", card, ACTION_IDS.approve);
    expect(r.status).toBe(200);
    const envelope = h.sim.socket!.envelopes[sent]!;
    expect(envelope).toMatchObject({ type: "interactive", attempts: 1, ack: {} });
    expect(envelope.payload.type).toBe("block_actions");
    const done = (await job.waitUntilFinished(h.events, 15_000)) as { record: string };
    const claims = decodeJwt(done.record) as unknown as RecordClaims;
    expect(claims.verdict).toBe("approved");
    expect(claims.votes).toEqual([expect.objectContaining({ user: "U0ALICE", vote: "approve" })]);
  });

  it("denies through the modal: an empty reason comes back in the ack as errors, then the reason counts", async () => {
    const req = usOps("Deny over the socket");
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    await h.click("U0BOB", card, ACTION_IDS.deny);
    await eventually(
      async () => h.sim.views().some((v) => v.user === "U0BOB" && v.kind === "modal" && !v.closed),
      "the deny modal",
    );
    // The modal's answer travels in the ack's payload, as the HTTP body does.
    const empty = await h.submitModal("U0BOB", { reason: "   " });
    expect(empty.status).toBe(200);
    expect(JSON.parse(empty.body)).toMatchObject({ response_action: "errors" });
    const last = h.sim.socket!.envelopes.at(-1)!;
    expect(last).toMatchObject({ type: "interactive", ack: { response_action: "errors" } });
    expect(h.sim.views().some((v) => v.user === "U0BOB" && v.kind === "modal" && !v.closed)).toBe(true);
    const ok = await h.submitModal("U0BOB", { reason: "Not during the quarter close" });
    expect(ok.status).toBe(200);
    const done = (await job.waitUntilFinished(h.events, 15_000)) as { record: string };
    const claims = decodeJwt(done.record) as unknown as RecordClaims;
    expect(claims.verdict).toBe("denied");
    expect(claims.reason_text).toBe("Not during the quarter close");
  });

  it("/approvals answers in the ack, shown to the caller alone", async () => {
    const req = usOps("Waiting for Alice, listed over the socket");
    await h.submit(req);
    await h.card(req.request_id);
    const r = await h.sim.command({ user: u("U0ALICE"), command: "/approvals", ...h.target });
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body) as { response_type: string; blocks: unknown[] };
    expect(body.response_type).toBe("ephemeral");
    expect(JSON.stringify(body.blocks)).toContain("Waiting for Alice, listed over the socket");
    const envelope = h.sim.socket!.envelopes.at(-1)!;
    expect(envelope).toMatchObject({ type: "slash_commands", attempts: 1 });
    expect(envelope.payload.command).toBe("/approvals");
    // Slack shows the ack's text to the caller as an ephemeral message.
    const shown = h.sim.messages(r.channelId).find((m) => m.ephemeral_for === "U0ALICE");
    expect(JSON.stringify(shown?.blocks)).toContain("Waiting for Alice, listed over the socket");
  });

  it("survives a disconnect (refresh_requested) in the middle of a quorum: the app reconnects and the flow ends", async () => {
    const req = request({ action: { type: "payments.refund", summary: "Two votes around a reconnect" } });
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    expect((await h.click("U0ALICE", card, ACTION_IDS.approve)).status).toBe(200);
    const opened = h.sim.calls.filter((c) => c.method === "apps.connections.open").length;
    // Slack's API blips as the app reconnects: its socket client must try again.
    h.sim.failNext("apps.connections.open", { status: 503 });
    expect(h.sim.socket!.disconnect("refresh_requested")).toBeGreaterThan(0);
    // Sent while the app is between connections: the envelope waits for the new one,
    // or is re-sent on it, and counts once.
    const second = await h.click("U0BOB", card, ACTION_IDS.approve);
    expect(second.status).toBe(200);
    const reopened = h.sim.calls.filter((c) => c.method === "apps.connections.open").slice(opened);
    expect(reopened.map((c) => c.status)).toEqual([503, 200]);
    const done = (await job.waitUntilFinished(h.events, 20_000)) as { record: string };
    const claims = decodeJwt(done.record) as unknown as RecordClaims;
    expect(claims.verdict).toBe("approved");
    expect(claims.votes.map((v) => v.user).sort()).toEqual(["U0ALICE", "U0BOB"]);
  });

  it("an envelope whose ack is lost is sent again with retry_attempt, and the vote counts once", async () => {
    const req = request({ action: { type: "payments.refund", summary: "A lost ack, a re-send" } });
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    const socket = h.sim.socket!;
    const retries: number[] = [];
    const off = socket.onSend((e) => {
      if (e.retry_attempt !== undefined) {
        retries.push(e.retry_attempt);
        // The re-send's ack gets through.
        socket.dropAcks = false;
      }
    });
    socket.dropAcks = true;
    try {
      expect((await h.click("U0ALICE", card, ACTION_IDS.approve)).status).toBe(200);
    } finally {
      off();
      socket.dropAcks = false;
    }
    expect(retries).toEqual([1]);
    expect(socket.envelopes.at(-1)).toMatchObject({ attempts: 2 });
    // Quorum is two: one vote from Alice however often her click arrived.
    const votes = await h.sql<{ n: number }>(
      'SELECT count(*) AS n FROM votes WHERE action_id = ? AND "user" = ?',
      card.actionId,
      "U0ALICE",
    );
    expect(votes[0]!.n).toBe(1);
    expect((await h.app.store.getAction(card.actionId))?.status).toBe("pending");
    await h.click("U0BOB", card, ACTION_IDS.approve);
    const done = (await job.waitUntilFinished(h.events, 15_000)) as { record: string };
    expect((decodeJwt(done.record) as unknown as RecordClaims).votes).toHaveLength(2);
  });
});
