import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { App, type BlockAction, LogLevel } from "@slack/bolt";
import { type Logger, WebClient } from "@slack/web-api";
import { afterEach, describe, expect, it } from "vitest";
import {
  appHomeOpenedEvent,
  blockActionsPayload,
  sendSigned,
  slackSignature,
  slashCommandBody,
  viewSubmissionPayload,
} from "../../src/simulator/interactions.js";
import { type SimMessage, type SimView, SlackApiSim } from "../../src/simulator/slack-api.js";

const TOKEN = "xoxb-test-token";
const TEAM = "T0TEAM0001";
const SECRET = "test-signing-secret";
const ALICE = { id: "U0ALICE001", team_id: TEAM, name: "alice" };

const quiet: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  setLevel() {},
  getLevel: () => LogLevel.ERROR,
  setName() {},
};

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Received {
  headers: IncomingMessage["headers"];
  raw: string;
  signatureValid: boolean;
}

/** A stand-in for the app's /slack/events that checks the signature itself. */
async function receiver(
  answer: (r: Received) => { status: number; body: string } = () => ({ status: 200, body: "" }),
) {
  const got: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const ts = Number(req.headers["x-slack-request-timestamp"]);
      const signatureValid = req.headers["x-slack-signature"] === slackSignature(SECRET, ts, raw);
      const r = { headers: req.headers, raw, signatureValid };
      got.push(r);
      const a = answer(r);
      res.writeHead(a.status, { "content-type": "application/json" }).end(a.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`, got };
}

async function startSim(): Promise<{ sim: SlackApiSim; client: WebClient }> {
  const sim = await SlackApiSim.start({ botToken: TOKEN, teamId: TEAM, users: [{ ...ALICE }] });
  cleanups.push(() => sim.close());
  const client = new WebClient(TOKEN, { slackApiUrl: sim.url, retryConfig: { retries: 0 }, logger: quiet });
  return { sim, client };
}

const card = [
  { type: "section", text: { type: "mrkdwn", text: "Deploy?" } },
  {
    type: "actions",
    block_id: "decide",
    elements: [
      {
        type: "button",
        action_id: "approve",
        text: { type: "plain_text", text: "Approve" },
        value: "act_1:approve",
      },
      {
        type: "button",
        action_id: "deny",
        text: { type: "plain_text", text: "Deny" },
        value: "act_1:deny",
        style: "danger",
      },
    ],
  },
];

describe("slackSignature", () => {
  it("matches Slack's documented example", () => {
    const body =
      "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V" +
      "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=" +
      "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN" +
      "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    expect(slackSignature("8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body)).toBe(
      "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    );
  });

  it("changes when one byte of the body changes", () => {
    expect(slackSignature(SECRET, 1, "a=1")).not.toBe(slackSignature(SECRET, 1, "a=2"));
  });
});

describe("payload builders", () => {
  const message: SimMessage = {
    channel: "C1",
    ts: "1733000000.000100",
    text: "card",
    blocks: card,
    edits: 0,
    user: "U0BOT",
  };

  it("builds block_actions with the button's block, text and style, and the message it was on", () => {
    const p = blockActionsPayload({
      user: ALICE,
      message,
      actionId: "deny",
      value: "act_1:deny",
      triggerId: "t1",
      responseUrl: "http://x/response/1",
      now: new Date(1733000001500),
    });
    expect(p).toMatchObject({
      type: "block_actions",
      container: { type: "message", message_ts: message.ts, channel_id: "C1", is_ephemeral: false },
      channel: { id: "C1" },
      message: { ts: message.ts, text: "card", blocks: card },
      team: { id: TEAM },
      user: { id: ALICE.id, username: "alice", name: "alice", team_id: TEAM },
      trigger_id: "t1",
      response_url: "http://x/response/1",
      api_app_id: expect.any(String),
      token: expect.any(String),
    });
    expect(p.actions).toEqual([
      {
        action_id: "deny",
        block_id: "decide",
        type: "button",
        value: "act_1:deny",
        text: { type: "plain_text", text: "Deny" },
        style: "danger",
        action_ts: "1733000001.500000",
      },
    ]);
  });

  it("leaves the message out of a click on an ephemeral message, as Slack does", () => {
    const p = blockActionsPayload({
      user: ALICE,
      message: { ...message, ephemeral_for: ALICE.id },
      actionId: "approve",
      value: "v",
      triggerId: "t",
    });
    expect(p.message).toBeUndefined();
    expect(p.container).toMatchObject({ is_ephemeral: true });
  });

  it("builds view_submission with the view's callback_id, private_metadata and values", () => {
    const view: SimView = {
      id: "V1",
      user: ALICE.id,
      view: {
        type: "modal",
        callback_id: "deny_reason",
        private_metadata: "act_1",
        title: { type: "plain_text", text: "t" },
      },
      hash: "h1",
      root_view_id: "V1",
      kind: "modal",
    };
    const values = { reason: { text: { type: "plain_text_input", value: "too risky" } } };
    const p = viewSubmissionPayload({ user: ALICE, view, values });
    expect(p).toMatchObject({
      type: "view_submission",
      user: { id: ALICE.id },
      view: {
        id: "V1",
        callback_id: "deny_reason",
        private_metadata: "act_1",
        hash: "h1",
        state: { values },
      },
    });
  });

  it("builds slash command form fields and an app_home_opened envelope", () => {
    const cmd = slashCommandBody({
      user: ALICE,
      command: "/approvals",
      text: "mine",
      channelId: "C1",
      triggerId: "t",
    });
    expect(cmd).toMatchObject({
      command: "/approvals",
      text: "mine",
      user_id: ALICE.id,
      team_id: TEAM,
      channel_id: "C1",
      trigger_id: "t",
    });
    const ev = appHomeOpenedEvent({ user: ALICE, teamId: TEAM });
    expect(ev).toMatchObject({
      type: "event_callback",
      team_id: TEAM,
      event: { type: "app_home_opened", user: ALICE.id, tab: "home" },
    });
  });
});

describe("sendSigned", () => {
  it("sends an interaction as a signed payload= form field", async () => {
    const app = await receiver();
    const res = await sendSigned(
      "interaction",
      { type: "block_actions", x: "a&b=c" },
      { url: app.url, signingSecret: SECRET },
    );
    expect(res.status).toBe(200);
    const [r] = app.got;
    expect(r?.signatureValid).toBe(true);
    expect(r?.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(JSON.parse(new URLSearchParams(r!.raw).get("payload")!)).toEqual({
      type: "block_actions",
      x: "a&b=c",
    });
  });

  it("sends commands as form fields and events as JSON, both signed", async () => {
    const app = await receiver();
    await sendSigned("command", { command: "/approvals", text: "" }, { url: app.url, signingSecret: SECRET });
    await sendSigned("event", { type: "event_callback" }, { url: app.url, signingSecret: SECRET });
    expect(app.got.map((r) => r.signatureValid)).toEqual([true, true]);
    expect(new URLSearchParams(app.got[0]!.raw).get("command")).toBe("/approvals");
    expect(app.got[1]?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(app.got[1]!.raw)).toEqual({ type: "event_callback" });
  });

  it("can send a forged signature, a stale timestamp and Slack's retry headers", async () => {
    const app = await receiver();
    await sendSigned("event", {}, { url: app.url, signingSecret: SECRET, signatureOverride: "v0=forged" });
    await sendSigned("event", {}, { url: app.url, signingSecret: SECRET, timestamp: 1_000_000, retryNum: 2 });
    expect(app.got[0]?.signatureValid).toBe(false);
    expect(app.got[1]?.headers["x-slack-request-timestamp"]).toBe("1000000");
    expect(app.got[1]?.signatureValid).toBe(true);
    expect(app.got[1]?.headers["x-slack-retry-num"]).toBe("2");
  });

  it("names the URL when the app cannot be reached", async () => {
    await expect(
      sendSigned("event", {}, { url: "http://127.0.0.1:1/slack/events", signingSecret: SECRET }),
    ).rejects.toThrow(/127\.0\.0\.1:1\/slack\/events/);
  });
});

describe("SlackApiSim.click and friends", () => {
  it("clicks a button: sends its value, a usable trigger and a working response URL", async () => {
    const { sim, client } = await startSim();
    const app = await receiver();
    const posted = await client.chat.postMessage({ channel: "C1", text: "card", blocks: card });
    const res = await sim.click({
      user: ALICE,
      channel: "C1",
      ts: posted.ts!,
      actionId: "deny",
      appUrl: app.url,
      signingSecret: SECRET,
    });
    expect(res.status).toBe(200);
    const payload = JSON.parse(new URLSearchParams(app.got[0]!.raw).get("payload")!);
    expect(app.got[0]?.signatureValid).toBe(true);
    expect(payload.actions[0]).toMatchObject({ action_id: "deny", value: "act_1:deny", block_id: "decide" });
    expect(payload.trigger_id).toBe(res.triggerId);
    await client.views.open({
      trigger_id: payload.trigger_id,
      view: { type: "modal", title: { type: "plain_text", text: "Deny" }, blocks: [] },
    });
    expect(sim.views()[0]?.user).toBe(ALICE.id);
    const replaced = await fetch(payload.response_url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ replace_original: true, text: "Denied by alice" }),
    });
    expect(replaced.status).toBe(200);
    expect(sim.messages("C1")[0]).toMatchObject({ text: "Denied by alice", edits: 1 });
    expect(sim.messages("C1")[0]?.blocks).toBeUndefined();
  });

  it("refuses to click a button that is not on the card, naming the ones that are", async () => {
    const { sim, client } = await startSim();
    const posted = await client.chat.postMessage({ channel: "C1", text: "card", blocks: card });
    await expect(
      sim.click({
        user: ALICE,
        channel: "C1",
        ts: posted.ts!,
        actionId: "approve_all",
        appUrl: "http://x",
        signingSecret: SECRET,
      }),
    ).rejects.toThrow(/approve_all.*approve, deny/);
  });
});

describe("with a real Bolt app", () => {
  async function boltApp(sim: SlackApiSim) {
    const app = new App({
      token: TOKEN,
      signingSecret: SECRET,
      logLevel: LogLevel.ERROR,
      logger: quiet,
      clientOptions: { slackApiUrl: sim.url, retryConfig: { retries: 0 } },
    });
    return app;
  }

  async function startBolt(app: App): Promise<string> {
    const server = (await app.start(0)) as Server;
    cleanups.push(() => app.stop() as Promise<void>);
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
  }

  it("runs click -> modal -> submit -> card update through Bolt's own verification and parsing", async () => {
    const { sim, client } = await startSim();
    const app = await boltApp(sim);
    app.action<BlockAction>("deny", async ({ ack, body, client: c }) => {
      await ack();
      await c.views.open({
        trigger_id: body.trigger_id,
        view: {
          type: "modal",
          callback_id: "deny_reason",
          private_metadata: `${body.container.channel_id}|${body.container.message_ts}`,
          title: { type: "plain_text", text: "Deny request" },
          submit: { type: "plain_text", text: "Deny" },
          blocks: [
            {
              type: "input",
              block_id: "reason",
              label: { type: "plain_text", text: "Reason" },
              element: { type: "plain_text_input", action_id: "text" },
            },
          ],
        },
      });
    });
    app.view("deny_reason", async ({ ack, view, body, client: c }) => {
      await ack();
      const [channel, ts] = view.private_metadata.split("|") as [string, string];
      await c.chat.update({
        channel,
        ts,
        text: `Denied by ${body.user.id}: ${view.state.values.reason?.text?.value}`,
        blocks: [],
      });
    });
    const appUrl = await startBolt(app);

    const posted = await client.chat.postMessage({ channel: "C1", text: "card", blocks: card });
    const click = await sim.click({
      user: ALICE,
      channel: "C1",
      ts: posted.ts!,
      actionId: "deny",
      appUrl,
      signingSecret: SECRET,
    });
    expect(click.status).toBe(200);
    const opened = await sim.waitForCall("views.open");
    expect(opened.response.ok).toBe(true);
    const [modal] = sim.views();
    const submit = await sim.submitView({
      user: ALICE,
      viewId: modal!.id,
      values: { reason: { text: { type: "plain_text_input", value: "too risky" } } },
      appUrl,
      signingSecret: SECRET,
    });
    expect(submit.status).toBe(200);
    await sim.waitForCall("chat.update");
    expect(sim.messages("C1")[0]).toMatchObject({ text: `Denied by ${ALICE.id}: too risky`, edits: 1 });
    expect(sim.views()[0]?.closed).toBe(true);
  });

  it("is refused by Bolt when the signature is forged or the timestamp stale", async () => {
    const { sim, client } = await startSim();
    const app = await boltApp(sim);
    let handled = 0;
    app.action("approve", async ({ ack }) => {
      handled += 1;
      await ack();
    });
    const appUrl = await startBolt(app);
    const posted = await client.chat.postMessage({ channel: "C1", text: "card", blocks: card });
    const message = sim.messages("C1")[0]!;
    const payload = blockActionsPayload({
      user: ALICE,
      message,
      actionId: "approve",
      value: "v",
      triggerId: sim.newTriggerId(),
    });
    const forged = await sendSigned("interaction", payload, { url: appUrl, signingSecret: "wrong-secret" });
    const stale = await sendSigned("interaction", payload, {
      url: appUrl,
      signingSecret: SECRET,
      timestamp: Math.floor(Date.now() / 1000) - 600,
    });
    expect(forged.status).toBe(401);
    expect(stale.status).toBe(401);
    expect(handled).toBe(0);
    const real = await sim.click({
      user: ALICE,
      channel: "C1",
      ts: posted.ts!,
      actionId: "approve",
      appUrl,
      signingSecret: SECRET,
    });
    expect(real.status).toBe(200);
    expect(handled).toBe(1);
  });

  it("shows a slash command's ack text to the caller only, and respond() replaces the card", async () => {
    const { sim, client } = await startSim();
    const app = await boltApp(sim);
    app.command("/approvals", async ({ ack }) => {
      await ack("Nothing is waiting for your vote.");
    });
    app.action("approve", async ({ ack, respond }) => {
      await ack();
      await respond({ replace_original: true, text: "Approved by alice" });
    });
    const appUrl = await startBolt(app);

    const cmd = await sim.command({
      user: ALICE,
      command: "/approvals",
      channelId: "C1",
      appUrl,
      signingSecret: SECRET,
    });
    expect(cmd.status).toBe(200);
    expect(sim.messages("C1")).toMatchObject([
      { ephemeral_for: ALICE.id, text: "Nothing is waiting for your vote." },
    ]);

    const posted = await client.chat.postMessage({ channel: "C2", text: "card", blocks: card });
    await sim.click({
      user: ALICE,
      channel: "C2",
      ts: posted.ts!,
      actionId: "approve",
      appUrl,
      signingSecret: SECRET,
    });
    await sim.waitForCall("response_url");
    expect(sim.messages("C2")).toMatchObject([{ ts: posted.ts, text: "Approved by alice", edits: 1 }]);
  });

  it("delivers app_home_opened so the app can publish a home tab", async () => {
    const { sim } = await startSim();
    const app = await boltApp(sim);
    app.event("app_home_opened", async ({ event, client: c }) => {
      await c.views.publish({
        user_id: event.user,
        view: { type: "home", blocks: [{ type: "section", text: { type: "mrkdwn", text: "Waiting: 0" } }] },
      });
    });
    const appUrl = await startBolt(app);
    const res = await sim.openHome({ user: ALICE, appUrl, signingSecret: SECRET });
    expect(res.status).toBe(200);
    await sim.waitForCall("views.publish");
    expect(sim.views()).toMatchObject([{ kind: "home", user: ALICE.id }]);
  });

  it("clicks a button on App Home: Bolt gets block_actions from the home view, no channel, no response URL", async () => {
    const { sim, client } = await startSim();
    sim.addUser({ id: "U0BOB00001", team_id: TEAM, name: "bob" });
    const app = await boltApp(sim);
    const seen: BlockAction[] = [];
    app.action<BlockAction>("register", async ({ ack, body }) => {
      seen.push(body);
      await ack();
    });
    const url = await startBolt(app);
    const home = await client.views.publish({
      user_id: ALICE.id,
      view: {
        type: "home",
        blocks: [
          {
            type: "actions",
            block_id: "keys",
            elements: [
              { type: "button", action_id: "register", text: { type: "plain_text", text: "Register" } },
            ],
          },
        ],
      },
    });
    const viewId = home.view!.id!;
    const res = await sim.clickView({
      user: ALICE,
      viewId,
      actionId: "register",
      appUrl: url,
      signingSecret: SECRET,
    });
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    const body = seen[0]!;
    expect(body.view?.type).toBe("home");
    expect(body.view?.id).toBe(viewId);
    expect(body.container).toEqual({ type: "view", view_id: viewId });
    expect(body.user.id).toBe(ALICE.id);
    expect(body.actions[0]).toMatchObject({ action_id: "register", block_id: "keys", type: "button" });
    expect(body.channel).toBeUndefined();
    expect(body.response_url).toBeUndefined();

    // Only the view's own person can click it, and only on a button that is there.
    const bob = { id: "U0BOB00001", team_id: TEAM, name: "bob" };
    await expect(
      sim.clickView({ user: bob, viewId, actionId: "register", appUrl: url, signingSecret: SECRET }),
    ).rejects.toThrow(/belongs to U0ALICE001, not U0BOB00001/);
    await expect(
      sim.clickView({ user: ALICE, viewId, actionId: "remove", appUrl: url, signingSecret: SECRET }),
    ).rejects.toThrow(/no element with action_id "remove".*register/);
    expect(seen).toHaveLength(1);
  });
});
