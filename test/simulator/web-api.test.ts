/**
 * The Web API families called directly over a fresh `SimState`, without the HTTP server:
 * the rules each family holds are testable on their own.
 */
import { describe, expect, it } from "vitest";
import { botTokenRefusal } from "../../src/simulator/web-api/auth.js";
import { postMessage } from "../../src/simulator/web-api/chat.js";
import { history } from "../../src/simulator/web-api/conversations.js";
import { FaultQueues, faultAnswer } from "../../src/simulator/web-api/faults.js";
import { newTriggerId } from "../../src/simulator/web-api/person.js";
import { createState, Refusal, type SimState } from "../../src/simulator/web-api/state.js";
import { viewsOpen, viewsPush } from "../../src/simulator/web-api/views.js";

const ALICE = { id: "U0ALICE", team_id: "T0SIM", name: "alice" };

function freshState(): SimState {
  return createState(
    { botToken: "xoxb-sim", teamId: "T0SIM", users: [ALICE], channels: ["C0OPS"] },
    "http://127.0.0.1:1",
    undefined,
  );
}

function refusalOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (err instanceof Refusal) return err.code;
    throw err;
  }
  throw new Error("expected a Slack refusal, got an answer");
}

const modal = (title: string) => ({
  type: "modal",
  title: { type: "plain_text", text: title },
  blocks: [{ type: "section", text: { type: "mrkdwn", text: title } }],
});

describe("Web API families over an explicit state", () => {
  it("chat: a reply to a reply joins the parent's thread, and an unknown channel is refused", () => {
    const state = freshState();
    const parent = postMessage(state, { channel: "C0OPS", text: "card" });
    const reply = postMessage(state, { channel: "C0OPS", text: "first", thread_ts: parent.ts });
    postMessage(state, { channel: "C0OPS", text: "second", thread_ts: reply.ts });
    expect(state.messages.map((m) => m.thread_ts)).toEqual([undefined, parent.ts, parent.ts]);
    expect(refusalOf(() => postMessage(state, { channel: "C0ELSEWHERE", text: "x" }))).toBe(
      "channel_not_found",
    );
  });

  it("conversations.history: newest first, paged by a cursor that continues where the page ended", () => {
    const state = freshState();
    for (const text of ["one", "two", "three"]) postMessage(state, { channel: "C0OPS", text });
    const first = history(state, { channel: "C0OPS", limit: "2" });
    expect((first.messages as { text: string }[]).map((m) => m.text)).toEqual(["three", "two"]);
    expect(first.has_more).toBe(true);
    const cursor = (first.response_metadata as { next_cursor: string }).next_cursor;
    const second = history(state, { channel: "C0OPS", limit: "2", cursor });
    expect((second.messages as { text: string }[]).map((m) => m.text)).toEqual(["one"]);
    expect(second.has_more).toBe(false);
  });

  it("views: a trigger id works once, and a modal stack stops at three", () => {
    const state = freshState();
    const trigger = newTriggerId(state, ALICE.id);
    viewsOpen(state, { trigger_id: trigger, view: modal("one") });
    expect(refusalOf(() => viewsOpen(state, { trigger_id: trigger, view: modal("again") }))).toBe(
      "exchanged_trigger_id",
    );
    viewsPush(state, { trigger_id: newTriggerId(state, ALICE.id), view: modal("two") });
    viewsPush(state, { trigger_id: newTriggerId(state, ALICE.id), view: modal("three") });
    expect(
      refusalOf(() => viewsPush(state, { trigger_id: newTriggerId(state, ALICE.id), view: modal("four") })),
    ).toBe("push_limit_reached");
    expect(state.views.map((v) => v.previous_view_id ?? null)).toEqual([
      null,
      state.views[0]!.id,
      state.views[1]!.id,
    ]);
  });

  it("auth: a bot method refuses no token and an unknown token", () => {
    const state = freshState();
    expect(botTokenRefusal(state, undefined)).toEqual({ ok: false, error: "not_authed" });
    expect(botTokenRefusal(state, "xoxb-other")).toEqual({ ok: false, error: "invalid_auth" });
    expect(botTokenRefusal(state, "xoxb-sim")).toBeUndefined();
  });

  it("faults: each queued fault serves its number of calls, in the order given", () => {
    const faults = new FaultQueues();
    faults.add("chat.postMessage", { error: "ratelimited", retryAfter: 7 }, 2);
    faults.add("chat.postMessage", { status: 503 }, 1);
    const taken = [1, 2, 3, 4].map(() => faults.take("chat.postMessage"));
    expect(taken.map((f) => f && faultAnswer(f).status)).toEqual([429, 429, 503, undefined]);
    expect(faultAnswer(taken[0]!).headers).toEqual({ "retry-after": "7" });
    expect(faults.take("chat.update")).toBeUndefined();
  });
});
