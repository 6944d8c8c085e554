/**
 * The simulator page without a browser: its renderer (the exact script text the page
 * ships, run in node:vm) and its HTTP endpoints against a real SlackApiSim and a real
 * HTTP server standing in for the app's /slack/events.
 */
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import vm from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { renderCard } from "../../src/adapters/slack/blocks.js";
import { renderHome } from "../../src/adapters/slack/home.js";
import type { ActionRequest } from "../../src/domain/types.js";
import { slackSignature } from "../../src/simulator/interactions.js";
import { CLIENT_HELPERS, type PagePerson, SimPage } from "../../src/simulator/page.js";
import { SlackApiSim } from "../../src/simulator/slack-api.js";

type Render = {
  renderMrkdwn(raw: string, names?: Record<string, string>, now?: Date): string;
  renderBlocks(
    blocks: unknown[],
    names: Record<string, string>,
    ctx: { channel: string; ts: string } | { view: string } | null,
  ): string;
};

const client = vm.runInNewContext(`${CLIENT_HELPERS}\n;({ renderMrkdwn, renderBlocks })`, {}) as Render;
const { renderMrkdwn, renderBlocks } = client;

const NAMES = { U0ALICE001: "Alice Moreau" };

describe("mrkdwn rendering on the page", () => {
  it("never turns text into HTML: raw tags, escaped tags and attribute breakers stay text", () => {
    const html = renderMrkdwn(`<script>alert(1)</script> &lt;img src=x onerror=alert(1)&gt; "'`);
    expect(html).not.toMatch(/<script|<img/i);
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
    expect(html).toContain("&quot;&#39;");
  });

  it("decodes Slack's entities once, for display: an agent's literal &lt; stays literal", () => {
    expect(renderMrkdwn("a &amp; b &lt;c&gt;")).toBe("a &amp; b &lt;c&gt;");
    // The agent typed "&lt;" itself and the app escaped its & to &amp;: the reader sees "&lt;".
    expect(renderMrkdwn("&amp;lt;")).toBe("&amp;lt;");
  });

  it("renders the app's mentions as names, but not an agent's escaped look-alike", () => {
    expect(renderMrkdwn("<@U0ALICE001>", NAMES)).toBe(
      '<span class="mention" data-user="U0ALICE001">@Alice Moreau</span>',
    );
    expect(renderMrkdwn("&lt;@U0ALICE001&gt;", NAMES)).toBe("&lt;@U0ALICE001&gt;");
    expect(renderMrkdwn("<@U0UNKNOWN1>", NAMES)).toContain("@U0UNKNOWN1");
  });

  it("escapes a person's display name in a mention", () => {
    const html = renderMrkdwn("<@U0EVIL0001>", { U0EVIL0001: '<img src=x onerror="x">' });
    expect(html).not.toContain("<img");
    expect(html).toContain("@&lt;img src=x onerror=&quot;x&quot;&gt;");
  });

  it("shows a date token in the viewer's own time, with the instant kept in datetime", () => {
    const html = renderMrkdwn("<!date^1700000000^{date_num} at {time}|2023-11-14T22:13:20Z>");
    const d = new Date(1700000000 * 1000);
    const p = (n: number) => String(n).padStart(2, "0");
    const local = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} at ${p(d.getHours())}:${p(d.getMinutes())}`;
    expect(html).toContain('datetime="2023-11-14T22:13:20.000Z"');
    expect(html).toContain(`>${local}</time>`);
  });

  it("says today for a pretty date on the same day", () => {
    const now = new Date(2024, 4, 10, 12, 0, 0);
    const secs = Math.floor(new Date(2024, 4, 10, 9, 5, 0).getTime() / 1000);
    expect(renderMrkdwn(`<!date^${secs}^{date_short_pretty} at {time}|x>`, {}, now)).toContain(
      ">today at 09:05</time>",
    );
  });

  it("renders emphasis, code and quotes, and leaves snake_case and escaped > alone", () => {
    expect(renderMrkdwn("*Agent:* billing_agent_v2 _note_ `x*y*`")).toBe(
      "<b>Agent:</b> billing_agent_v2 <i>note</i> <code>x*y*</code>",
    );
    expect(renderMrkdwn(">first\n>second\nafter")).toBe("<blockquote>first<br>second</blockquote>after");
    // The agent's own ">" arrives escaped: shown as a character, never as our quote bar.
    expect(renderMrkdwn("&gt; fake quote")).toBe("&gt; fake quote");
  });

  it("links only http(s) and mailto URLs the app itself wrote; anything else is shown as text", () => {
    expect(renderMrkdwn("<https://example.com/a?b=1&amp;c=2|the docs>")).toBe(
      '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">the docs</a>',
    );
    const js = renderMrkdwn("<javascript:alert(1)|click>");
    expect(js).not.toContain("<a");
    expect(js).toBe("&lt;javascript:alert(1)|click&gt;");
  });
});

describe("Block Kit rendering on the page", () => {
  const request: ActionRequest = {
    request_id: "r-1",
    agent_id: "billing-agent",
    action: { type: "payments.refund", summary: "Refund <b>bold</b> order", systems: ["stripe"] },
    risk_class: "high",
    region: "eu",
    purpose: "Charged twice <!channel>",
  };
  const card = renderCard({
    actionId: "act_1",
    request,
    riskClass: "high",
    agentOwners: { risk: ["U0ALICE001"] },
    routeName: "payments",
    level: 0,
    quorum: 2,
    eligible: ["U0ALICE001"],
    deadline: new Date("2030-01-01T00:00:00Z"),
    votes: [],
  });

  it("renders the app's real card with its buttons, keyed for clicks on this message", () => {
    const html = renderBlocks(card.blocks, NAMES, { channel: "C0PAY", ts: "1.000100" });
    expect(html).toContain('<div class="b-header">Refund &lt;b&gt;bold&lt;/b&gt; order</div>');
    expect(html).toContain('data-testid="button-cs_approve"');
    expect(html).toContain('data-testid="button-cs_deny"');
    expect(html).toMatch(
      /data-action-id="cs_approve" data-block-id="cs_actions\|act_1\|0" data-channel="C0PAY" data-ts="1.000100"/,
    );
    expect(html).toContain("<b>Risk class:</b> high");
    expect(html).toContain("Charged twice &lt;!channel&gt;");
    expect(html).not.toContain('class="mention">@channel');
  });

  it("renders App Home's buttons keyed for a click on that view, not on a message", () => {
    const home = renderHome({ waiting: [], decided: [], owned: [], passkeys: [] });
    const html = renderBlocks(home.blocks as unknown[], NAMES, { view: "V0000000042" });
    expect(html).toContain("Your passkeys (0)");
    expect(html).toMatch(
      /<button type="button" class="btn primary" data-testid="button-cs_passkey_register" data-action-id="cs_passkey_register" data-block-id="[^"]*" data-view="V0000000042">Register a passkey<\/button>/,
    );
    expect(html).not.toContain("data-ts=");
  });

  it("renders a modal's input with the ids the submit needs", () => {
    const html = renderBlocks(
      [
        {
          type: "input",
          block_id: "reason",
          label: { type: "plain_text", text: "Reason" },
          element: { type: "plain_text_input", action_id: "reason", multiline: true, max_length: 1000 },
        },
      ],
      {},
      null,
    );
    expect(html).toContain(
      '<textarea data-testid="modal-input-reason" data-block-id="reason" data-action-id="reason" maxlength="1000">',
    );
    expect(html).toContain('data-testid="modal-error-reason"');
  });
});

// ---------------------------------------------------------------------------
// The endpoints

const TOKEN = "xoxb-page-test";
const TEAM = "T0PAGE0001";
const SECRET = "page-test-signing-secret";
const PEOPLE: PagePerson[] = [
  { user: { id: "U0ALICE001", team_id: TEAM, name: "alice", real_name: "Alice Moreau" }, role: "approver" },
  { user: { id: "U0BOB00001", team_id: TEAM, name: "bob", real_name: "Bob Tanaka" }, role: "approver" },
  { user: { id: "U0EXT00001", team_id: "T0OTHER001", name: "olu" }, role: "outsider" },
];

interface Received {
  headers: IncomingMessage["headers"];
  raw: string;
  payload: Record<string, unknown>;
}

interface Rig {
  sim: SlackApiSim;
  page: SimPage;
  base: string;
  received: Received[];
  /** What the fake app answers to the next interaction. */
  answer: { body: string };
  api(method: string, args: Record<string, unknown>): Promise<Record<string, unknown>>;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(): Promise<Rig> {
  const received: Received[] = [];
  const answer = { body: "" };
  const app: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const form = new URLSearchParams(raw);
      received.push({ headers: req.headers, raw, payload: JSON.parse(form.get("payload") ?? "{}") });
      res.writeHead(200, { "content-type": "application/json" }).end(answer.body);
    });
  });
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
  const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}/slack/events`;
  const page = new SimPage({ people: PEOPLE, channels: [{ id: "C0PAYMENTS1", name: "payments" }] });
  const sim = await SlackApiSim.start({
    botToken: TOKEN,
    teamId: TEAM,
    users: PEOPLE.map((p) => p.user),
    onOtherRequest: page.handler,
  });
  page.connect({ sim, appUrl, signingSecret: SECRET });
  cleanups.push(async () => {
    page.close();
    await sim.close();
    await new Promise<void>((r) => {
      app.close(() => r());
      app.closeAllConnections();
    });
  });
  const base = sim.origin;
  return {
    sim,
    page,
    base,
    received,
    answer,
    async api(method, args) {
      const r = await fetch(`${sim.url}${method}`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(args),
      });
      return (await r.json()) as Record<string, unknown>;
    },
    post(path, body, headers = {}) {
      return fetch(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    },
  };
}

const BUTTONS = [
  {
    type: "actions",
    block_id: "cs_actions|act_1|0",
    elements: [
      {
        type: "button",
        action_id: "cs_approve",
        text: { type: "plain_text", text: "Approve" },
        value: "act_1|0",
      },
    ],
  },
];

describe("the page's endpoints", () => {
  it("serves the page with a nonce-based Content-Security-Policy that matches its own script", async () => {
    const r = await rig();
    const res = await fetch(`${r.base}/`);
    expect(res.status).toBe(200);
    const csp = res.headers.get("content-security-policy") ?? "";
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce).toBeTruthy();
    expect(csp).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain(`<script nonce="${nonce}">`);
    expect(html).toContain('data-testid="user-picker"');
    // A second load gets a fresh nonce.
    const again = (await fetch(`${r.base}/`)).headers.get("content-security-policy");
    expect(again).not.toBe(csp);
  });

  it("shows an ephemeral note only to its person, and nests thread replies under their parent", async () => {
    const r = await rig();
    const parent = await r.api("chat.postMessage", { channel: "C0PAYMENTS1", text: "card", blocks: BUTTONS });
    await r.api("chat.postMessage", { channel: "C0PAYMENTS1", text: "a note", thread_ts: parent.ts });
    await r.api("chat.postEphemeral", {
      channel: "C0PAYMENTS1",
      user: "U0BOB00001",
      text: "not an approver",
    });

    const alice = r.page.state("U0ALICE001");
    expect(alice.messages.C0PAYMENTS1!.map((m) => m.text)).toEqual(["card"]);
    expect(alice.messages.C0PAYMENTS1![0]!.replies.map((m) => m.text)).toEqual(["a note"]);

    const bob = (await (await fetch(`${r.base}/page/state?user=U0BOB00001`)).json()) as ReturnType<
      SimPage["state"]
    >;
    expect(bob.messages.C0PAYMENTS1!.map((m) => [m.text, m.ephemeral])).toEqual([
      ["card", false],
      ["not an approver", true],
    ]);
    expect(bob.people.find((p) => p.id === "U0EXT00001")?.external).toBe(true);
  });

  it("turns a click into a signed block_actions payload from the chosen person, as Slack sends it", async () => {
    const r = await rig();
    const posted = await r.api("chat.postMessage", { channel: "C0PAYMENTS1", text: "card", blocks: BUTTONS });
    const res = await r.post("/page/click", {
      user: "U0EXT00001",
      channel: "C0PAYMENTS1",
      ts: posted.ts,
      actionId: "cs_approve",
      blockId: "cs_actions|act_1|0",
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 200, body: "" });
    const got = r.received[0]!;
    const ts = Number(got.headers["x-slack-request-timestamp"]);
    expect(got.headers["x-slack-signature"]).toBe(slackSignature(SECRET, ts, got.raw));
    expect(got.payload).toMatchObject({
      type: "block_actions",
      user: { id: "U0EXT00001", team_id: "T0OTHER001" },
      container: { channel_id: "C0PAYMENTS1", message_ts: posted.ts },
      actions: [{ action_id: "cs_approve", value: "act_1|0", block_id: "cs_actions|act_1|0" }],
    });
  });

  it("submits a modal's values as a signed view_submission, and keeps the modal open when the app answers errors", async () => {
    const r = await rig();
    const trigger = r.sim.newTriggerId("U0ALICE001");
    const opened = await r.api("views.open", {
      trigger_id: trigger,
      view: {
        type: "modal",
        callback_id: "cs_deny_modal",
        title: { type: "plain_text", text: "Deny request" },
        submit: { type: "plain_text", text: "Deny" },
        blocks: [
          {
            type: "input",
            block_id: "reason",
            label: { type: "plain_text", text: "Reason" },
            element: { type: "plain_text_input", action_id: "reason" },
          },
        ],
      },
    });
    const viewId = (opened.view as { id: string }).id;
    expect(r.page.state("U0ALICE001").modal?.id).toBe(viewId);
    expect(r.page.state("U0BOB00001").modal).toBeNull();

    r.answer.body = JSON.stringify({ response_action: "errors", errors: { reason: "Say why you deny it." } });
    await r.post("/page/submit", { user: "U0ALICE001", viewId, values: { reason: { reason: "" } } });
    expect(r.page.state("U0ALICE001").modal?.id).toBe(viewId);

    r.answer.body = "";
    const res = await r.post("/page/submit", {
      user: "U0ALICE001",
      viewId,
      values: { reason: { reason: "Already refunded" } },
    });
    expect(((await res.json()) as { status: number }).status).toBe(200);
    expect(r.received.at(-1)!.payload).toMatchObject({
      type: "view_submission",
      user: { id: "U0ALICE001" },
      view: { id: viewId, state: { values: { reason: { reason: { value: "Already refunded" } } } } },
    });
    expect(r.page.state("U0ALICE001").modal).toBeNull();
  });

  it("hides a cancelled modal without telling the app", async () => {
    const r = await rig();
    const opened = await r.api("views.open", {
      trigger_id: r.sim.newTriggerId("U0ALICE001"),
      view: { type: "modal", title: { type: "plain_text", text: "Full request" }, blocks: [] },
    });
    const viewId = (opened.view as { id: string }).id;
    expect((await r.post("/page/dismiss", { user: "U0ALICE001", viewId })).status).toBe(200);
    expect(r.page.state("U0ALICE001").modal).toBeNull();
    expect(r.received).toHaveLength(0);
  });

  it("refuses posts another web site could forge: a foreign Origin, a non-JSON body, a foreign Host", async () => {
    const r = await rig();
    const body = { user: "U0ALICE001", channel: "C0PAYMENTS1", ts: "1.0", actionId: "cs_approve" };
    expect((await r.post("/page/click", body, { origin: "http://evil.example" })).status).toBe(403);
    const form = await fetch(`${r.base}/page/click`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify(body),
    });
    expect(form.status).toBe(415);
    const port = new URL(r.base).port;
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port,
          path: "/page/click",
          method: "POST",
          headers: { host: `evil.example:${port}`, "content-type": "application/json" },
        },
        (res) => resolve(res.statusCode ?? 0),
      );
      req.on("error", reject);
      req.end(JSON.stringify(body));
    });
    expect(rebound).toBe(403);
    expect(r.received).toHaveLength(0);
  });

  it("names what is wrong with a click it cannot make", async () => {
    const r = await rig();
    const stranger = await r.post("/page/click", {
      user: "U0NOBODY01",
      channel: "C0PAYMENTS1",
      ts: "1.0",
      actionId: "x",
    });
    expect(stranger.status).toBe(400);
    expect(((await stranger.json()) as { error: string }).error).toContain(
      "U0NOBODY01 is not one of the demo's people",
    );
    const missing = await r.post("/page/click", {
      user: "U0ALICE001",
      channel: "C0PAYMENTS1",
      ts: "9.000001",
      actionId: "x",
    });
    expect(missing.status).toBe(409);
    expect(((await missing.json()) as { error: string }).error).toContain("no message 9.000001");
  });

  it("pushes a change event over Server-Sent Events when the app posts", async () => {
    const r = await rig();
    const ac = new AbortController();
    const res = await fetch(`${r.base}/page/events`, { signal: ac.signal });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const read = async (until: (t: string) => boolean) => {
      while (!until(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended; it said: ${text}`);
        text += decoder.decode(value);
      }
    };
    await read((t) => t.includes("event: change"));
    const seen = text.length;
    await r.api("chat.postMessage", { channel: "C0PAYMENTS1", text: "new card" });
    await read((t) => t.slice(seen).includes("event: change"));
    ac.abort();
  });
});
