import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqliteStore } from "../../src/adapters/db/sqlite.js";
import { actionEvents, actionRecord, findAction } from "../../src/adapters/db/sqlite-audit.js";
import { formatTimeline } from "../../src/audit/events.js";
import { buildLog, type TestLog } from "./log.js";

let log: TestLog;
let timeline: string;

const T0 = Date.UTC(2025, 2, 1, 9, 0, 0);

beforeAll(async () => {
  log = await buildLog([{}, {}]);
  const id = log.actionIds[1]!;
  // The path of a contested request, written through the store's own API.
  const store = new SqliteStore(log.file);
  await store.appendEvents(
    id,
    "billing-agent",
    [
      {
        type: "routed",
        actor: "system",
        data: {
          route: "eu-high-payments",
          risk_class: "high",
          deadline: "2025-03-01T09:30:00.000Z",
          explanation: [
            { route: "low-auto", matched: false, because: "a very long explanation ".repeat(20) },
          ],
        },
      },
      {
        type: "level_started",
        actor: "system",
        data: {
          level: 0,
          eligible: ["U0ALICE", "U0BOB"],
          excluded: [{ user: "U0GUEST", why: "guest" }],
          quorum: 2,
        },
      },
      { type: "card_posted", actor: "system", data: { channel: "C0EU", ts: "1740819600.000100", level: 0 } },
      {
        type: "vote_refused",
        actor: "slack:U0MALLORY",
        data: {
          code: "not_an_approver",
          reason: "you are not an approver\u001b[2J\u001b[31m FAKE APPROVED",
          vote: "approve",
        },
      },
      {
        type: "vote_cast",
        actor: "slack:U0ALICE",
        data: { vote: "approve", level: 0, comment: "looks \u202eright" },
      },
    ],
    T0,
  );
  await store.close();
  const db = log.open();
  timeline = formatTimeline(findAction(db, id)!, actionEvents(db, id), actionRecord(db, id));
  db.close();
});
afterAll(() => log.cleanup());

describe("audit events: the decision path as a timeline", () => {
  it("shows each event with its time, actor, type and key data, in order", () => {
    const lines = timeline.split("\n");
    const types = [
      "received",
      "record_issued",
      "routed",
      "level_started",
      "card_posted",
      "vote_refused",
      "vote_cast",
    ];
    const at = types.map((t) => lines.findIndex((l) => new RegExp(`\\s${t}\\b`).test(l)));
    expect(at.every((i) => i > 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    const routed = lines[at[2]!]!;
    expect(routed).toMatch(
      /^2025-03-01T09:00:00\.000Z\s+system\s+routed\s+route=eu-high-payments risk_class=high/,
    );
    expect(lines[at[3]!]).toContain("eligible=U0ALICE,U0BOB");
    expect(lines[at[3]!]).toContain('excluded=[{"user":"U0GUEST","why":"guest"}]');
    expect(lines[at[6]!]).toMatch(/slack:U0ALICE\s+vote_cast\s+vote=approve level=0/);
  });

  it("leaves the long route explanation out", () => {
    expect(timeline).not.toContain("a very long explanation");
  });

  it("ends with the record's seq and verdict", () => {
    const last = timeline.trimEnd().split("\n").at(-1)!;
    expect(last).toMatch(
      /^record seq 2: approved, decided 2025-03-01T10:01:00\.000Z, decision dec_\w+, sha256 [\w-]{43}$/,
    );
  });

  it("cannot be rewritten by escape sequences or bidi controls in agent-written text", () => {
    expect(timeline).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\u202e]/);
    expect(timeline).toContain("\\u001b[2J");
    expect(timeline).toContain("[U+202E]");
  });

  it("says when an action has no record yet", () => {
    const text = formatTimeline(
      {
        id: "act_x",
        agentId: "a",
        requestId: "r",
        actionType: "payments.refund",
        status: "pending",
        requestedAt: T0,
      },
      [],
      null,
    );
    expect(text.trimEnd().split("\n").at(-1)).toBe("no record: the action is pending, without a verdict yet");
  });
});
