import { ErrorCode, type Logger, LogLevel, WebClient } from "@slack/web-api";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type SimUser, type SlackApiOptions, SlackApiSim } from "../../src/simulator/slack-api.js";

const TOKEN = "xoxb-test-token";
const TEAM = "T0TEAM0001";
const ALICE: SimUser = {
  id: "U0ALICE001",
  team_id: TEAM,
  name: "alice",
  real_name: "Alice Approver",
  email: "alice@example.com",
  tz: "Europe/Berlin",
};
const BOB: SimUser = { id: "U0BOB00001", team_id: TEAM, name: "bob", is_restricted: true };

const sims: SlackApiSim[] = [];

/** The client logs every refusal; these tests provoke refusals on purpose. */
const quiet: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  setLevel() {},
  getLevel: () => LogLevel.ERROR,
  setName() {},
};

async function startSim(
  extra: Partial<SlackApiOptions> = {},
): Promise<{ sim: SlackApiSim; client: WebClient }> {
  const sim = await SlackApiSim.start({ botToken: TOKEN, teamId: TEAM, users: [ALICE, BOB], ...extra });
  sims.push(sim);
  const client = new WebClient(TOKEN, {
    slackApiUrl: sim.url,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    logger: quiet,
  });
  return { sim, client };
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

/** The Slack error code of a rejected Web API call, or a failure if it did not reject. */
async function slackError(p: Promise<unknown>): Promise<{ error: string; data: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: string; data?: Record<string, unknown> };
    expect(e.code).toBe(ErrorCode.PlatformError);
    return { error: String(e.data?.error), data: e.data ?? {} };
  }
  throw new Error("expected the Slack call to be refused, but it succeeded");
}

const section = (text: string, extra: Record<string, unknown> = {}) => ({
  type: "section",
  text: { type: "mrkdwn", text },
  ...extra,
});
const button = (actionId: string, text = "Approve", value = "v") => ({
  type: "button",
  action_id: actionId,
  text: { type: "plain_text", text },
  value,
});

describe("SlackApiSim: messages", () => {
  it("answers auth.test with the bot user and team, as Bolt needs at start", async () => {
    const { client, sim } = await startSim({ botUserId: "U0BOTX0001" });
    const res = await client.auth.test();
    expect(res.ok).toBe(true);
    expect(res.user_id).toBe("U0BOTX0001");
    expect(res.team_id).toBe(TEAM);
    expect(res.bot_id).toMatch(/^B/);
    expect(sim.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/$/);
  });

  it("posts a message with blocks and metadata and gives strictly increasing ts", async () => {
    const { client, sim } = await startSim();
    const metadata = { event_type: "countersign_card", event_payload: { action_id: "act_1" } };
    const first = await client.chat.postMessage({
      channel: "C0APPROVE1",
      text: "fallback",
      blocks: [section("*Deploy*")],
      metadata,
    });
    expect(first.ok).toBe(true);
    expect(first.channel).toBe("C0APPROVE1");
    expect(first.ts).toMatch(/^\d{10}\.\d{6}$/);
    expect(first.message?.text).toBe("fallback");
    const more = [];
    for (let i = 0; i < 20; i++)
      more.push(await client.chat.postMessage({ channel: "C0APPROVE1", text: `m${i}` }));
    const all = [first.ts!, ...more.map((r) => r.ts!)];
    for (let i = 1; i < all.length; i++)
      expect(Number(all[i]!.replace(".", ""))).toBeGreaterThan(Number(all[i - 1]!.replace(".", "")));
    const stored = sim.messages("C0APPROVE1")[0]!;
    expect(stored).toMatchObject({
      channel: "C0APPROVE1",
      ts: first.ts,
      text: "fallback",
      metadata,
      edits: 0,
    });
    // Slack gives blocks without one a block_id, which a click payload later carries.
    expect(stored.blocks?.[0]).toMatchObject({ block_id: expect.any(String) });
  });

  it("refuses a post with neither text nor blocks, and one without a channel", async () => {
    const { client } = await startSim();
    expect((await slackError(client.chat.postMessage({ channel: "C1", text: "" }))).error).toBe("no_text");
    expect((await slackError(client.apiCall("chat.postMessage", { text: "hi" }))).error).toBe(
      "channel_not_found",
    );
  });

  it("updates a message in place, keeping the blocks when only text changes", async () => {
    const { client, sim } = await startSim();
    const posted = await client.chat.postMessage({ channel: "C1", text: "v1", blocks: [section("card")] });
    const updated = await client.chat.update({ channel: "C1", ts: posted.ts!, text: "v2" });
    expect(updated.ts).toBe(posted.ts);
    const [m] = sim.messages("C1");
    expect(m).toMatchObject({ text: "v2", edits: 1 });
    expect(m?.blocks).toHaveLength(1);
    await client.chat.update({ channel: "C1", ts: posted.ts!, text: "v3", blocks: [] });
    expect(sim.messages("C1")[0]).toMatchObject({ text: "v3", blocks: [], edits: 2 });
    expect(sim.messages("C1")).toHaveLength(1);
  });

  it("answers message_not_found when updating a ts that was never posted", async () => {
    const { client } = await startSim();
    await client.chat.postMessage({ channel: "C1", text: "x" });
    const { error } = await slackError(
      client.chat.update({ channel: "C1", ts: "1700000000.000001", text: "y" }),
    );
    expect(error).toBe("message_not_found");
  });

  it("keeps thread replies in the parent's thread, even a reply to a reply", async () => {
    const { client, sim } = await startSim();
    const parent = await client.chat.postMessage({ channel: "C1", text: "card" });
    const r1 = await client.chat.postMessage({ channel: "C1", text: "vote 1", thread_ts: parent.ts! });
    await client.chat.postMessage({ channel: "C1", text: "vote 2", thread_ts: r1.ts! });
    const replies = await client.conversations.replies({ channel: "C1", ts: parent.ts! });
    expect(replies.messages?.map((m) => m.text)).toEqual(["card", "vote 1", "vote 2"]);
    const history = await client.conversations.history({ channel: "C1" });
    expect(history.messages?.map((m) => m.text)).toEqual(["card"]);
    expect(history.messages?.[0]?.reply_count).toBe(2);
    expect(sim.messages("C1").filter((m) => m.thread_ts === parent.ts)).toHaveLength(2);
    const missing = await slackError(
      client.chat.postMessage({ channel: "C1", text: "x", thread_ts: "1.000001" }),
    );
    expect(missing.error).toBe("thread_not_found");
  });

  it("lists history newest first with limit, cursor and exclusive oldest", async () => {
    const { client } = await startSim();
    const ts: string[] = [];
    for (let i = 0; i < 5; i++)
      ts.push((await client.chat.postMessage({ channel: "C1", text: `m${i}` })).ts!);
    const page1 = await client.conversations.history({ channel: "C1", limit: 2 });
    expect(page1.messages?.map((m) => m.text)).toEqual(["m4", "m3"]);
    expect(page1.has_more).toBe(true);
    const page2 = await client.conversations.history({
      channel: "C1",
      limit: 2,
      cursor: page1.response_metadata?.next_cursor,
    });
    expect(page2.messages?.map((m) => m.text)).toEqual(["m2", "m1"]);
    const since = await client.conversations.history({ channel: "C1", oldest: ts[2] });
    expect(since.messages?.map((m) => m.text)).toEqual(["m4", "m3"]);
    const sinceInclusive = await client.conversations.history({
      channel: "C1",
      oldest: ts[2],
      inclusive: true,
    });
    expect(sinceInclusive.messages?.map((m) => m.text)).toEqual(["m4", "m3", "m2"]);
  });

  it("returns metadata from history only with include_all_metadata, as Slack does", async () => {
    const { client } = await startSim();
    const metadata = { event_type: "countersign_card", event_payload: { action_id: "act_9" } };
    await client.chat.postMessage({ channel: "C1", text: "card", metadata });
    const plain = await client.conversations.history({ channel: "C1" });
    expect(plain.messages?.[0]?.metadata).toBeUndefined();
    const withMd = await client.conversations.history({ channel: "C1", include_all_metadata: true });
    expect(withMd.messages?.[0]?.metadata).toEqual(metadata);
  });

  it("refuses malformed metadata rather than silently dropping it", async () => {
    const { client } = await startSim();
    const res = await slackError(
      client.apiCall("chat.postMessage", { channel: "C1", text: "x", metadata: { a: 1 } }),
    );
    expect(res.error).toBe("invalid_metadata_format");
  });

  it("records an ephemeral message for one person, kept out of history", async () => {
    const { client, sim } = await startSim();
    const res = await client.chat.postEphemeral({ channel: "C1", user: ALICE.id, text: "not an approver" });
    expect(res.message_ts).toMatch(/^\d+\.\d{6}$/);
    expect(sim.messages("C1")).toMatchObject([{ ephemeral_for: ALICE.id, text: "not an approver" }]);
    expect((await client.conversations.history({ channel: "C1" })).messages).toEqual([]);
    const stranger = await slackError(
      client.chat.postEphemeral({ channel: "C1", user: "U0NOBODY01", text: "x" }),
    );
    expect(stranger.error).toBe("user_not_in_channel");
  });

  it("gives a permalink for a posted message and message_not_found otherwise", async () => {
    const { client, sim } = await startSim();
    const posted = await client.chat.postMessage({ channel: "C1", text: "x" });
    const link = await client.chat.getPermalink({ channel: "C1", message_ts: posted.ts! });
    expect(link.permalink).toBe(`${sim.origin}/archives/C1/p${posted.ts!.replace(".", "")}`);
    expect(
      (await slackError(client.chat.getPermalink({ channel: "C1", message_ts: "1.000002" }))).error,
    ).toBe("message_not_found");
  });

  it("refuses channels outside the configured list but always reaches DMs", async () => {
    const { client, sim } = await startSim({ channels: ["C0ALLOWED1"] });
    await client.chat.postMessage({ channel: "C0ALLOWED1", text: "ok" });
    expect((await slackError(client.chat.postMessage({ channel: "C0OTHER001", text: "x" }))).error).toBe(
      "channel_not_found",
    );
    const dm = await client.chat.postMessage({ channel: ALICE.id, text: "your request was approved" });
    expect(dm.channel).toMatch(/^D/);
    expect(dm.channel).toBe(sim.dmChannel(ALICE.id));
    expect(sim.messages(dm.channel)).toHaveLength(1);
  });

  it("accepts application/json bodies with a bearer token, as other clients send", async () => {
    const { sim } = await startSim();
    const res = await fetch(`${sim.url}chat.postMessage`, {
      method: "POST",
      headers: { "content-type": "application/json; charset=utf-8", authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ channel: "C1", text: "json", blocks: [section("b")] }),
    });
    expect(await res.json()).toMatchObject({ ok: true, channel: "C1" });
    expect(sim.messages("C1")[0]?.blocks).toHaveLength(1);
  });
});

describe("SlackApiSim: authentication and unknown methods", () => {
  it("answers not_authed without a token and invalid_auth with a wrong one", async () => {
    const { sim } = await startSim();
    const anonymous = new WebClient(undefined, {
      slackApiUrl: sim.url,
      retryConfig: { retries: 0 },
      logger: quiet,
    });
    expect((await slackError(anonymous.chat.postMessage({ channel: "C1", text: "x" }))).error).toBe(
      "not_authed",
    );
    const wrong = new WebClient("xoxb-stolen", {
      slackApiUrl: sim.url,
      retryConfig: { retries: 0 },
      logger: quiet,
    });
    expect((await slackError(wrong.chat.postMessage({ channel: "C1", text: "x" }))).error).toBe(
      "invalid_auth",
    );
    expect(sim.messages()).toEqual([]);
  });

  it("accepts the token as a form field", async () => {
    const { sim } = await startSim();
    const res = await fetch(`${sim.url}auth.test`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: TOKEN }).toString(),
    });
    expect(await res.json()).toMatchObject({ ok: true, team_id: TEAM });
  });

  it("answers unknown_method for a method it does not serve", async () => {
    const { client } = await startSim();
    expect((await slackError(client.apiCall("chat.scheduleMessagez", {}))).error).toBe("unknown_method");
  });

  it("keeps the token out of recorded calls", async () => {
    const { client, sim } = await startSim();
    await client.chat.postMessage({ channel: "C1", text: "x" });
    expect(JSON.stringify(sim.calls)).not.toContain(TOKEN);
    expect(sim.calls.map((c) => c.method)).toEqual(["chat.postMessage"]);
  });
});

describe("SlackApiSim: Block Kit limits on the wire", () => {
  const many = (n: number, f: (i: number) => unknown) => Array.from({ length: n }, (_, i) => f(i));
  const cases: { name: string; blocks: unknown[]; pointer: string }[] = [
    { name: "51 blocks", blocks: many(51, () => ({ type: "divider" })), pointer: "/blocks" },
    { name: "section text of 3001", blocks: [section("x".repeat(3001))], pointer: "/blocks/0/text/text" },
    {
      name: "a field of 2001",
      blocks: [{ type: "section", fields: [{ type: "mrkdwn", text: "x".repeat(2001) }] }],
      pointer: "/blocks/0/fields/0/text",
    },
    {
      name: "11 fields",
      blocks: [{ type: "section", fields: many(11, (i) => ({ type: "mrkdwn", text: `f${i}` })) }],
      pointer: "/blocks/0/fields",
    },
    {
      name: "header of 151",
      blocks: [{ type: "header", text: { type: "plain_text", text: "h".repeat(151) } }],
      pointer: "/blocks/0/text/text",
    },
    {
      name: "a mrkdwn header",
      blocks: [{ type: "header", text: { type: "mrkdwn", text: "*h*" } }],
      pointer: "/blocks/0/text/type",
    },
    {
      name: "button text of 76",
      blocks: [{ type: "actions", elements: [button("a", "b".repeat(76))] }],
      pointer: "/blocks/0/elements/0/text/text",
    },
    {
      name: "button value of 2001",
      blocks: [{ type: "actions", elements: [button("a", "Approve", "v".repeat(2001))] }],
      pointer: "/blocks/0/elements/0/value",
    },
    {
      name: "action_id of 256",
      blocks: [{ type: "actions", elements: [button("a".repeat(256))] }],
      pointer: "/blocks/0/elements/0/action_id",
    },
    {
      name: "block_id of 256",
      blocks: [section("x", { block_id: "b".repeat(256) })],
      pointer: "/blocks/0/block_id",
    },
    {
      name: "26 elements in actions",
      blocks: [{ type: "actions", elements: many(26, (i) => button(`a${i}`)) }],
      pointer: "/blocks/0/elements",
    },
    {
      name: "11 context elements",
      blocks: [{ type: "context", elements: many(11, (i) => ({ type: "mrkdwn", text: `c${i}` })) }],
      pointer: "/blocks/0/elements",
    },
    {
      name: "a duplicate block_id",
      blocks: [section("a", { block_id: "same" }), section("b", { block_id: "same" })],
      pointer: "/blocks/1/block_id",
    },
    {
      name: "a duplicate action_id",
      blocks: [
        { type: "actions", elements: [button("approve")] },
        { type: "actions", elements: [button("approve")] },
      ],
      pointer: "/blocks/1/elements/0/action_id",
    },
  ];

  for (const c of cases) {
    it(`refuses ${c.name} with invalid_blocks and stores nothing`, async () => {
      const { client, sim } = await startSim();
      const { error, data } = await slackError(
        client.apiCall("chat.postMessage", { channel: "C1", text: "t", blocks: c.blocks }),
      );
      expect(error).toBe("invalid_blocks");
      const errors = data.errors as string[];
      expect(errors.some((e) => e.endsWith(`[json-pointer:${c.pointer}]`))).toBe(true);
      expect((data.response_metadata as { messages: string[] }).messages[0]).toMatch(/^\[ERROR\] /);
      expect(sim.messages()).toEqual([]);
    });
  }

  it("accepts a card exactly at every limit", async () => {
    const { client, sim } = await startSim();
    const blocks = [
      { type: "header", text: { type: "plain_text", text: "h".repeat(150) } },
      section("x".repeat(3000), { block_id: "b".repeat(255) }),
      { type: "section", fields: many(10, () => ({ type: "mrkdwn", text: "f".repeat(2000) })) },
      { type: "context", elements: many(10, (i) => ({ type: "mrkdwn", text: `c${i}` })) },
      {
        type: "actions",
        elements: [
          button("a".repeat(255), "t".repeat(75), "v".repeat(2000)),
          ...many(24, (i) => button(`x${i}`)),
        ],
      },
      ...many(45, () => ({ type: "divider" })),
    ];
    expect(blocks).toHaveLength(50);
    await client.apiCall("chat.postMessage", { channel: "C1", text: "t".repeat(40000), blocks });
    expect(sim.messages("C1")).toHaveLength(1);
  });

  it("refuses text over 40000 characters with msg_too_long", async () => {
    const { client, sim } = await startSim();
    expect(
      (await slackError(client.chat.postMessage({ channel: "C1", text: "t".repeat(40001) }))).error,
    ).toBe("msg_too_long");
    expect(sim.messages()).toEqual([]);
  });

  it("checks updates and ephemerals too, leaving the original untouched", async () => {
    const { client, sim } = await startSim();
    const posted = await client.chat.postMessage({ channel: "C1", text: "ok", blocks: [section("fine")] });
    const bad = [section("x".repeat(3001))];
    expect((await slackError(client.chat.update({ channel: "C1", ts: posted.ts!, blocks: bad }))).error).toBe(
      "invalid_blocks",
    );
    expect(sim.messages("C1")[0]).toMatchObject({ text: "ok", edits: 0 });
    const eph = client.chat.postEphemeral({ channel: "C1", user: ALICE.id, text: "x", blocks: bad });
    expect((await slackError(eph)).error).toBe("invalid_blocks");
    expect(sim.messages("C1")).toHaveLength(1);
  });
});

describe("SlackApiSim: views", () => {
  const modal = (extra: Record<string, unknown> = {}) => ({
    type: "modal" as const,
    callback_id: "deny_reason",
    title: { type: "plain_text" as const, text: "Deny request" },
    submit: { type: "plain_text" as const, text: "Deny" },
    close: { type: "plain_text" as const, text: "Cancel" },
    private_metadata: "act_1",
    blocks: [
      {
        type: "input",
        block_id: "reason",
        label: { type: "plain_text", text: "Reason" },
        element: { type: "plain_text_input", action_id: "text" },
      },
    ],
    ...extra,
  });

  it("opens a modal with a fresh trigger and refuses the same trigger twice", async () => {
    const { client, sim } = await startSim();
    const trigger = sim.newTriggerId(ALICE.id);
    const res = await client.views.open({ trigger_id: trigger, view: modal() });
    expect(res.view?.id).toMatch(/^V/);
    expect(res.view?.hash).toEqual(expect.any(String));
    expect(res.view?.callback_id).toBe("deny_reason");
    expect(sim.views()).toMatchObject([{ id: res.view?.id, user: ALICE.id, kind: "modal" }]);
    expect((await slackError(client.views.open({ trigger_id: trigger, view: modal() }))).error).toBe(
      "exchanged_trigger_id",
    );
    expect((await slackError(client.views.open({ trigger_id: "123.456.abc", view: modal() }))).error).toBe(
      "invalid_trigger_id",
    );
    expect(sim.views()).toHaveLength(1);
  });

  it("expires a trigger after Slack's 3 seconds", async () => {
    const { client, sim } = await startSim();
    vi.useFakeTimers({ toFake: ["Date"] });
    const fresh = sim.newTriggerId();
    const stale = sim.newTriggerId();
    vi.setSystemTime(Date.now() + 2900);
    await client.views.open({ trigger_id: fresh, view: modal() });
    vi.setSystemTime(Date.now() + 200);
    expect((await slackError(client.views.open({ trigger_id: stale, view: modal() }))).error).toBe(
      "expired_trigger_id",
    );
  });

  it("refuses view fields over Slack's limits with invalid_arguments naming the field", async () => {
    const { client, sim } = await startSim();
    const bad: [Record<string, unknown>, string][] = [
      [{ title: { type: "plain_text", text: "t".repeat(25) } }, "/view/title/text"],
      [{ submit: { type: "plain_text", text: "s".repeat(25) } }, "/view/submit/text"],
      [{ close: { type: "plain_text", text: "c".repeat(25) } }, "/view/close/text"],
      [{ private_metadata: "m".repeat(3001) }, "/view/private_metadata"],
      [{ callback_id: "c".repeat(256) }, "/view/callback_id"],
      [{ blocks: Array.from({ length: 101 }, () => ({ type: "divider" })) }, "/view/blocks"],
      [
        {
          blocks: [
            {
              type: "input",
              label: { type: "plain_text", text: "l".repeat(2001) },
              element: { type: "plain_text_input" },
            },
          ],
        },
        "/view/blocks/0/label/text",
      ],
    ];
    for (const [extra, pointer] of bad) {
      const { error, data } = await slackError(
        client.views.open({ trigger_id: sim.newTriggerId(), view: modal(extra) }),
      );
      expect(error).toBe("invalid_arguments");
      const messages = (data.response_metadata as { messages: string[] }).messages;
      expect(messages.some((m) => m.startsWith("[ERROR] ") && m.endsWith(`[json-pointer:${pointer}]`))).toBe(
        true,
      );
    }
    expect(sim.views()).toEqual([]);
  });

  it("updates a view by id and refuses a stale hash", async () => {
    const { client, sim } = await startSim();
    const opened = await client.views.open({ trigger_id: sim.newTriggerId(), view: modal() });
    const id = opened.view!.id!;
    const oldHash = opened.view!.hash!;
    const updated = await client.views.update({
      view_id: id,
      hash: oldHash,
      view: modal({ title: { type: "plain_text", text: "Full request" } }),
    });
    expect(updated.view?.hash).not.toBe(oldHash);
    const conflict = await slackError(client.views.update({ view_id: id, hash: oldHash, view: modal() }));
    expect(conflict.error).toBe("hash_conflict");
    expect(sim.views()[0]?.view.title).toMatchObject({ text: "Full request" });
    expect((await slackError(client.views.update({ view_id: "V404", view: modal() }))).error).toBe(
      "not_found",
    );
  });

  it("pushes onto the open modal's stack, up to three views", async () => {
    const { client, sim } = await startSim();
    const root = await client.views.open({ trigger_id: sim.newTriggerId(ALICE.id), view: modal() });
    const second = await client.views.push({ trigger_id: sim.newTriggerId(ALICE.id), view: modal() });
    expect(second.view?.root_view_id).toBe(root.view?.id);
    expect(second.view?.previous_view_id).toBe(root.view?.id);
    await client.views.push({ trigger_id: sim.newTriggerId(ALICE.id), view: modal() });
    const fourth = client.views.push({ trigger_id: sim.newTriggerId(ALICE.id), view: modal() });
    expect((await slackError(fourth)).error).toBe("push_limit_reached");
  });

  it("publishes one home tab per user, replacing it on republish", async () => {
    const { client, sim } = await startSim();
    const home = (text: string) => ({ type: "home" as const, blocks: [section(text)] });
    const a = await client.views.publish({ user_id: ALICE.id, view: home("a1") });
    await client.views.publish({ user_id: BOB.id, view: home("b1") });
    const a2 = await client.views.publish({ user_id: ALICE.id, view: home("a2") });
    expect(a2.view?.id).toBe(a.view?.id);
    const homes = sim.views().filter((v) => v.kind === "home");
    expect(homes).toHaveLength(2);
    expect(JSON.stringify(homes.find((v) => v.user === ALICE.id)?.view)).toContain("a2");
    expect((await slackError(client.views.publish({ user_id: "U0NOBODY01", view: home("x") }))).error).toBe(
      "user_not_found",
    );
    const tooMany = {
      type: "home" as const,
      blocks: Array.from({ length: 101 }, () => ({ type: "divider" })),
    };
    expect((await slackError(client.views.publish({ user_id: ALICE.id, view: tooMany }))).error).toBe(
      "invalid_arguments",
    );
  });
});

describe("SlackApiSim: users, groups and DMs", () => {
  it("answers users.info in Slack's shape and user_not_found for a stranger", async () => {
    const { client } = await startSim();
    const res = await client.users.info({ user: ALICE.id });
    expect(res.user).toMatchObject({
      id: ALICE.id,
      team_id: TEAM,
      name: "alice",
      real_name: "Alice Approver",
      tz: "Europe/Berlin",
      is_restricted: false,
      is_ultra_restricted: false,
      is_bot: false,
      profile: { email: "alice@example.com", real_name: "Alice Approver" },
    });
    expect((await client.users.info({ user: BOB.id })).user?.is_restricted).toBe(true);
    expect((await slackError(client.users.info({ user: "U0NOBODY01" }))).error).toBe("user_not_found");
  });

  it("lists usergroup members, follows setUsergroup, and refuses an unknown group", async () => {
    const { client, sim } = await startSim({ usergroups: { S0ONCALL01: [ALICE.id] } });
    expect((await client.usergroups.users.list({ usergroup: "S0ONCALL01" })).users).toEqual([ALICE.id]);
    sim.setUsergroup("S0ONCALL01", [ALICE.id, BOB.id]);
    expect((await client.usergroups.users.list({ usergroup: "S0ONCALL01" })).users).toEqual([
      ALICE.id,
      BOB.id,
    ]);
    expect((await slackError(client.usergroups.users.list({ usergroup: "S0NONE0001" }))).error).toBe(
      "no_such_subteam",
    );
  });

  it("opens the same DM for the same people in any order, and a different one otherwise", async () => {
    const { client, sim } = await startSim();
    const a = await client.conversations.open({ users: ALICE.id });
    const again = await client.conversations.open({ users: ALICE.id });
    const b = await client.conversations.open({ users: BOB.id });
    expect(a.channel?.id).toMatch(/^D/);
    expect(again.channel?.id).toBe(a.channel?.id);
    expect(b.channel?.id).not.toBe(a.channel?.id);
    const group1 = await client.conversations.open({ users: `${ALICE.id},${BOB.id}` });
    const group2 = await client.conversations.open({ users: `${BOB.id},${ALICE.id}` });
    expect(group1.channel?.id).toBe(group2.channel?.id);
    expect(group1.channel?.id).not.toBe(a.channel?.id);
    sim.addUser({ id: "U0CAROL001", team_id: TEAM, name: "carol" });
    expect((await client.conversations.open({ users: "U0CAROL001" })).channel?.id).toMatch(/^D/);
    expect((await slackError(client.conversations.open({ users: "U0NOBODY01" }))).error).toBe(
      "user_not_found",
    );
  });
});

describe("SlackApiSim: fault injection", () => {
  it("answers 429 with Retry-After, which the real client reports as a rate limit", async () => {
    const { client, sim } = await startSim();
    sim.failNext("chat.postMessage", { status: 429, retryAfter: 7 });
    let caught: unknown;
    try {
      await client.chat.postMessage({ channel: "C1", text: "card" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: ErrorCode.RateLimitedError, retryAfter: 7 });
    expect(sim.messages()).toEqual([]);
    expect(sim.calls[0]).toMatchObject({ status: 429, response: { ok: false, error: "ratelimited" } });
    await client.chat.postMessage({ channel: "C1", text: "card" });
    expect(sim.messages()).toHaveLength(1);
  });

  it("fails only the next `times` calls of that method, in order", async () => {
    const { client, sim } = await startSim();
    sim.failNext("chat.postMessage", { error: "not_in_channel" }, 2);
    sim.failNext("chat.postMessage", { error: "channel_not_found" });
    await client.auth.test();
    expect((await slackError(client.chat.postMessage({ channel: "C1", text: "x" }))).error).toBe(
      "not_in_channel",
    );
    expect((await slackError(client.chat.postMessage({ channel: "C1", text: "x" }))).error).toBe(
      "not_in_channel",
    );
    expect((await slackError(client.chat.postMessage({ channel: "C1", text: "x" }))).error).toBe(
      "channel_not_found",
    );
    await client.chat.postMessage({ channel: "C1", text: "x" });
    expect(sim.messages()).toHaveLength(1);
  });

  it("answers a 500 as an HTTP error and can store the message first, as when Slack's answer is lost", async () => {
    const { client, sim } = await startSim();
    sim.failNext("chat.postMessage", { status: 500 });
    await expect(client.chat.postMessage({ channel: "C1", text: "x" })).rejects.toMatchObject({
      code: ErrorCode.HTTPError,
      statusCode: 500,
    });
    expect(sim.messages()).toEqual([]);
    sim.failNext("chat.postMessage", { status: 503, effect: true });
    await expect(client.chat.postMessage({ channel: "C1", text: "lost answer" })).rejects.toMatchObject({
      statusCode: 503,
    });
    const history = await client.conversations.history({ channel: "C1" });
    expect(history.messages?.map((m) => m.text)).toEqual(["lost answer"]);
  });

  it("delays an answer without failing it", async () => {
    const { client, sim } = await startSim();
    sim.failNext("auth.test", { delayMs: 150 });
    const started = Date.now();
    await client.auth.test();
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });
});

describe("SlackApiSim: waitForCall", () => {
  it("resolves for a call already answered and for one that comes later", async () => {
    const { client, sim } = await startSim();
    await client.chat.postMessage({ channel: "C1", text: "early" });
    const past = await sim.waitForCall("chat.postMessage");
    expect(past.args.text).toBe("early");
    const later = sim.waitForCall("chat.update", (c) => c.args.text === "approved");
    const posted = await client.chat.postMessage({ channel: "C1", text: "card" });
    await client.chat.update({ channel: "C1", ts: posted.ts!, text: "pending" });
    await client.chat.update({ channel: "C1", ts: posted.ts!, text: "approved" });
    const call = await later;
    expect(call.response).toMatchObject({ ok: true, ts: posted.ts });
  });

  it("decodes JSON-encoded form fields in recorded args", async () => {
    const { client, sim } = await startSim();
    await client.chat.postMessage({ channel: "C1", text: "t", blocks: [section("b")] });
    const call = await sim.waitForCall("chat.postMessage");
    expect(Array.isArray(call.args.blocks)).toBe(true);
  });

  it("rejects after the timeout, naming the method it waited for", async () => {
    const { client, sim } = await startSim();
    await client.chat.postMessage({ channel: "C1", text: "x" });
    await expect(sim.waitForCall("views.open", undefined, 50)).rejects.toThrow(/views\.open/);
    await expect(sim.waitForCall("chat.postMessage", (c) => c.args.text === "y", 50)).rejects.toThrow(
      /chat\.postMessage call matching the predicate, saw 1/,
    );
  });
});
