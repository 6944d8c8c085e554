/**
 * The simulator's web page: a small Slack look-alike on top of SlackApiSim's state, so a
 * person can try Countersign without a Slack workspace.
 *
 * It shows what the app posted (channels, DMs, threads, updates, ephemeral notes and
 * modals), rendered from the Block Kit the app sent, and lets the person act as any demo
 * user. A click on the page becomes a real signed `block_actions` payload sent to the
 * app's `/slack/events` by `sim.click`, and a modal submit a real `view_submission`, so
 * the app cannot tell the page from Slack.
 *
 * Plain HTML, CSS and vanilla JS in ./page/ (app.css, helpers.js, app.js; the scripts
 * type-checked against the DOM by ./page/tsconfig.json): no framework, no build step. The
 * page renders agent text with the same care as Slack: every string is HTML-escaped
 * before any markup is added, and a Content-Security-Policy with a per-response nonce
 * stops any script the renderer might have missed.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import type { AppTarget, SimMessage, SimUser, SlackApiSim, SlackCall } from "./slack-api.js";

export interface PagePerson {
  readonly user: SimUser;
  /** What this person is in the demo, shown in the picker: "approver (payments)", "guest"... */
  readonly role: string;
}

export interface PageChannel {
  /** A Slack channel id (C...). */
  readonly id: string;
  /** Shown as `#name`. */
  readonly name: string;
  readonly topic?: string;
}

export interface SimPageOptions {
  readonly people: readonly PagePerson[];
  readonly channels: readonly PageChannel[];
  /** Shown in the page's title bar; default "Countersign demo". */
  readonly title?: string;
}

/**
 * What the page acts on; known only once both the simulator and the app are running.
 * With `appUrl` (and its signing secret) a person's actions are signed requests to it;
 * without, they go over the app's Socket Mode connection.
 */
export interface PageTarget extends AppTarget {
  readonly sim: SlackApiSim;
}

/** A message as the page shows it: replies nested under their parent. */
export interface PageMessage {
  readonly ts: string;
  readonly user: string | null;
  readonly text: string;
  readonly blocks: unknown[] | null;
  readonly edited: boolean;
  readonly ephemeral: boolean;
  readonly replies: PageMessage[];
}

export interface PageState {
  readonly connected: boolean;
  readonly title: string;
  readonly me: string;
  readonly botUserId: string | null;
  readonly people: {
    id: string;
    name: string;
    team_id: string;
    role: string;
    guest: boolean;
    external: boolean;
  }[];
  /** Display names by user id, for mentions. */
  readonly names: Record<string, string>;
  readonly channels: { id: string; name: string; kind: "channel" | "dm"; topic: string; count: number }[];
  readonly messages: Record<string, PageMessage[]>;
  readonly modal: { id: string; hash: string; view: Record<string, unknown> } | null;
  /** What the app last published (views.publish) as this person's App Home; null before it did. */
  readonly home: { id: string; hash: string; view: Record<string, unknown> } | null;
}

/** Web API methods that only read; calls to them change nothing the page shows. */
const READ_ONLY = new Set([
  "auth.test",
  "users.info",
  "usergroups.users.list",
  "conversations.history",
  "conversations.replies",
  "chat.getPermalink",
  "conversations.open",
]);

const MAX_BODY = 64 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The page and its JSON/SSE endpoints. Give `handler` to SlackApiSim as `onOtherRequest`,
 * then `connect` once the app is up (the app needs the simulator's URL first).
 *
 * Endpoints: `GET /` (the page), `GET /page/state?user=U..` (what that person sees),
 * `GET /page/events` (Server-Sent Events: `change` after every call that alters state),
 * `POST /page/click`, `POST /page/submit`, `POST /page/dismiss`, `POST /page/command`,
 * `POST /page/home` (opens App Home: `app_home_opened`), `POST /page/click-view` (a
 * button on App Home: `block_actions` with `view.type` "home").
 */
export class SimPage {
  readonly handler: RequestListener;
  private target: PageTarget | null = null;
  private unsubscribe: (() => void) | null = null;
  private readonly streams = new Set<ServerResponse>();
  private readonly dismissed = new Set<string>();
  private readonly people: Map<string, PagePerson>;
  private readonly title: string;
  private changeTimer: NodeJS.Timeout | null = null;
  private readonly keepAlive: NodeJS.Timeout;
  private seq = 0;

  constructor(private readonly options: SimPageOptions) {
    if (options.people.length === 0) throw new Error("SimPage: at least one person is needed to act as");
    this.people = new Map(options.people.map((p) => [p.user.id, p]));
    this.title = options.title ?? "Countersign demo";
    this.handler = (req, res) => {
      this.route(req, res).catch((err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        sendJson(res, status, { error: err instanceof Error ? err.message : String(err) });
      });
    };
    // Proxies drop idle streams; a comment line every 15 s keeps the live view connected.
    this.keepAlive = setInterval(() => {
      for (const s of this.streams) s.write(": keep-alive\n\n");
    }, 15_000);
    this.keepAlive.unref();
  }

  connect(t: PageTarget): void {
    this.unsubscribe?.();
    this.target = t;
    this.unsubscribe = t.sim.subscribe((c) => this.onCall(c));
    this.changed();
  }

  /** Ends the live streams; the simulator's server itself is closed by its owner. */
  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    clearInterval(this.keepAlive);
    if (this.changeTimer) clearTimeout(this.changeTimer);
    for (const s of this.streams) s.end();
    this.streams.clear();
  }

  /** What `user` sees now: the data behind `GET /page/state`. */
  state(user: string): PageState {
    const me = this.people.has(user) ? user : this.options.people[0]!.user.id;
    const people = this.options.people.map((p) => ({
      id: p.user.id,
      name: p.user.real_name ?? p.user.name,
      team_id: p.user.team_id,
      role: p.role,
      guest: Boolean(p.user.is_restricted || p.user.is_ultra_restricted),
      external: p.user.team_id !== this.target?.sim.teamId,
    }));
    const names: Record<string, string> = {};
    for (const p of people) names[p.id] = p.name;
    const sim = this.target?.sim;
    if (!sim) {
      return {
        connected: false,
        title: this.title,
        me,
        botUserId: null,
        people,
        names,
        channels: this.options.channels.map((c) => ({
          id: c.id,
          name: c.name,
          kind: "channel",
          topic: c.topic ?? "",
          count: 0,
        })),
        messages: {},
        modal: null,
        home: null,
      };
    }
    names[sim.botUserId] = "Countersign";
    const dm = sim.dmChannel(me);
    const visible = sim
      .messages()
      .filter((m) => !m.deleted && (m.ephemeral_for === undefined || m.ephemeral_for === me));
    const messages: Record<string, PageMessage[]> = {};
    const ids = [...this.options.channels.map((c) => c.id), dm];
    for (const id of ids) messages[id] = thread(visible.filter((m) => m.channel === id));
    const channels = [
      ...this.options.channels.map((c) => ({
        id: c.id,
        name: c.name,
        kind: "channel" as const,
        topic: c.topic ?? "",
        count: messages[c.id]?.length ?? 0,
      })),
      {
        id: dm,
        name: "Countersign",
        kind: "dm" as const,
        topic: "Your direct messages with the app",
        count: messages[dm]?.length ?? 0,
      },
    ];
    const top = sim
      .views()
      .filter((v) => v.kind === "modal" && v.user === me && !v.closed && !this.dismissed.has(v.id))
      .at(-1);
    return {
      connected: true,
      title: this.title,
      me,
      botUserId: sim.botUserId,
      people,
      names,
      channels,
      messages,
      modal: top ? { id: top.id, hash: top.hash, view: top.view } : null,
      home: homeOf(sim, me),
    };
  }

  private onCall(c: SlackCall): void {
    if (!READ_ONLY.has(c.method)) this.changed();
  }

  /** Coalesces bursts (a verdict updates a card, notes the thread and DMs at once). */
  private changed(): void {
    if (this.changeTimer) return;
    this.changeTimer = setTimeout(() => {
      this.changeTimer = null;
      this.seq += 1;
      for (const s of this.streams) s.write(`event: change\ndata: ${this.seq}\n\n`);
    }, 30);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://page.invalid");
    const path = url.pathname;
    if (req.method === "GET" || req.method === "HEAD") {
      if (path === "/" || path === "/index.html") return sendPage(res, this.title);
      if (path === "/page/state") return sendJson(res, 200, this.state(url.searchParams.get("user") ?? ""));
      if (path === "/page/events") return this.stream(req, res);
      if (path === "/favicon.ico") return void res.writeHead(204).end();
      const archive = /^\/archives\/([A-Z0-9]+)\/p(\d+)(\d{6})$/.exec(path);
      if (archive) {
        // Permalinks the app hands out (chat.getPermalink) open the page at that message.
        const to = `/?channel=${archive[1]}&ts=${archive[2]}.${archive[3]}`;
        return void res.writeHead(302, { location: to }).end();
      }
      throw new HttpError(404, `the simulator page has nothing at ${path}`);
    }
    if (req.method !== "POST") throw new HttpError(405, `${req.method} is not served here`);
    checkSameOrigin(req);
    const body = await readJson(req);
    const t = this.target;
    if (!t) throw new HttpError(503, "the app is still starting; try again in a moment");
    if (path === "/page/click") return sendJson(res, 200, await this.click(t, body));
    if (path === "/page/submit") return sendJson(res, 200, await this.submit(t, body));
    if (path === "/page/command") return sendJson(res, 200, await this.command(t, body));
    if (path === "/page/home") return sendJson(res, 200, await this.openHome(t, body));
    if (path === "/page/click-view") return sendJson(res, 200, await this.clickHome(t, body));
    if (path === "/page/dismiss") {
      this.dismissed.add(field(body, "viewId"));
      this.changed();
      return sendJson(res, 200, { ok: true });
    }
    throw new HttpError(404, `the simulator page has no endpoint ${path}`);
  }

  private clicker(body: Record<string, unknown>): { id: string; team_id: string; name: string } {
    const id = field(body, "user");
    const p = this.people.get(id);
    if (!p) throw new HttpError(400, `user ${id} is not one of the demo's people`);
    return { id: p.user.id, team_id: p.user.team_id, name: p.user.name };
  }

  private async click(t: PageTarget, body: Record<string, unknown>) {
    const user = this.clicker(body);
    const blockId = typeof body.blockId === "string" && body.blockId !== "" ? body.blockId : undefined;
    try {
      const r = await t.sim.click({
        user,
        channel: field(body, "channel"),
        ts: field(body, "ts"),
        actionId: field(body, "actionId"),
        ...(blockId ? { blockId } : {}),
        ...appTarget(t),
      });
      return { status: r.status, body: r.body };
    } catch (err) {
      throw new HttpError(409, (err as Error).message);
    }
  }

  private async submit(t: PageTarget, body: Record<string, unknown>) {
    const user = this.clicker(body);
    const viewId = field(body, "viewId");
    const raw = body.values;
    // Typed by the view's own inputs in the simulator (a number input, a select): see submitView.
    const values: Record<string, Record<string, { type: string; value: string }>> = {};
    if (raw !== null && typeof raw === "object") {
      for (const [blockId, inner] of Object.entries(raw as Record<string, unknown>)) {
        if (inner === null || typeof inner !== "object") continue;
        for (const [actionId, value] of Object.entries(inner as Record<string, unknown>)) {
          values[blockId] ??= {};
          values[blockId][actionId] = { type: "plain_text_input", value: String(value ?? "") };
        }
      }
    }
    try {
      const r = await t.sim.submitView({
        user,
        viewId,
        values,
        ...appTarget(t),
      });
      this.changed();
      return { status: r.status, body: r.body };
    } catch (err) {
      throw new HttpError(409, (err as Error).message);
    }
  }

  private async command(t: PageTarget, body: Record<string, unknown>) {
    const user = this.clicker(body);
    const line = field(body, "text").trim();
    const m = /^(\/[a-z0-9_-]+)\s*([\s\S]*)$/i.exec(line);
    if (!m) throw new HttpError(400, `"${line.slice(0, 40)}" is not a slash command (it starts with /)`);
    const channel = typeof body.channel === "string" && body.channel !== "" ? body.channel : undefined;
    const r = await t.sim.command({
      user,
      command: m[1]!.toLowerCase(),
      text: m[2] ?? "",
      ...(channel ? { channelId: channel } : {}),
      ...appTarget(t),
    });
    this.changed();
    return { status: r.status, body: r.body };
  }

  /** Opening the Home tab, as Slack does each time: the signed `app_home_opened` event. */
  private async openHome(t: PageTarget, body: Record<string, unknown>) {
    const user = this.clicker(body);
    try {
      const r = await t.sim.openHome({ user, ...appTarget(t) });
      return { status: r.status, body: r.body };
    } catch (err) {
      throw new HttpError(409, (err as Error).message);
    }
  }

  /** A button on the person's own App Home (never another person's): block_actions from the view. */
  private async clickHome(t: PageTarget, body: Record<string, unknown>) {
    const user = this.clicker(body);
    const viewId = field(body, "viewId");
    const home = homeOf(t.sim, user.id);
    if (home?.id !== viewId) throw new HttpError(409, `view ${viewId} is not ${user.name}'s App Home`);
    const blockId = typeof body.blockId === "string" && body.blockId !== "" ? body.blockId : undefined;
    try {
      const r = await t.sim.clickView({
        user,
        viewId,
        actionId: field(body, "actionId"),
        ...(blockId ? { blockId } : {}),
        ...appTarget(t),
      });
      return { status: r.status, body: r.body };
    } catch (err) {
      throw new HttpError(409, (err as Error).message);
    }
  }

  private stream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
    });
    res.write(`retry: 1000\nevent: change\ndata: ${this.seq}\n\n`);
    this.streams.add(res);
    req.on("close", () => this.streams.delete(res));
  }
}

/** The person's App Home as the app last published it, or null. */
function homeOf(sim: SlackApiSim, user: string): PageState["home"] {
  const v = sim.views().find((x) => x.kind === "home" && x.user === user);
  return v ? { id: v.id, hash: v.hash, view: v.view } : null;
}

/** Top-level messages in ts order, each with its (visible) replies. */
function thread(msgs: SimMessage[]): PageMessage[] {
  const byTs = (a: SimMessage, b: SimMessage) => (tsNum(a.ts) < tsNum(b.ts) ? -1 : 1);
  const view = (m: SimMessage, replies: PageMessage[]): PageMessage => ({
    ts: m.ts,
    user: m.user ?? null,
    text: m.text,
    blocks: Array.isArray(m.blocks) ? m.blocks : null,
    edited: m.edits > 0,
    ephemeral: m.ephemeral_for !== undefined,
    replies,
  });
  const tops = msgs.filter((m) => !m.thread_ts).sort(byTs);
  const topTs = new Set(tops.map((m) => m.ts));
  const out = tops.map((m) =>
    view(
      m,
      msgs
        .filter((r) => r.thread_ts === m.ts)
        .sort(byTs)
        .map((r) => view(r, [])),
    ),
  );
  // A reply whose parent is not visible here (an ephemeral thread note for someone else
  // whose parent was deleted) is shown on its own rather than lost.
  for (const r of msgs) if (r.thread_ts && !topTs.has(r.thread_ts)) out.push(view(r, []));
  return out;
}

function tsNum(ts: string): bigint {
  const [s = "0", f = ""] = ts.split(".");
  return /^\d+$/.test(s) && /^\d*$/.test(f)
    ? BigInt(s) * 1_000_000n + BigInt((f + "000000").slice(0, 6))
    : 0n;
}

function field(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== "string" || v === "")
    throw new HttpError(400, `the request body needs "${name}" (a string)`);
  return v;
}

/**
 * The page acts for people (it sends signed approvals), so another web site open in the
 * same browser must not be able to post to it: a JSON content type forces a CORS
 * preflight that is never answered, and Origin/Host must name this server (which also
 * stops DNS rebinding).
 */
function checkSameOrigin(req: IncomingMessage): void {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") throw new HttpError(415, "send the request as application/json");
  const host = req.headers.host ?? "";
  if (!/^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/i.test(host)) {
    throw new HttpError(403, `the page only answers requests for 127.0.0.1 or localhost, not "${host}"`);
  }
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${host}`) {
    throw new HttpError(403, `requests from ${origin} are not accepted; open the page at http://${host}/`);
  }
}

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, `the request body is over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      try {
        const v: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
        if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
        resolve(v as Record<string, unknown>);
      } catch {
        reject(new HttpError(400, "the request body must be a JSON object"));
      }
    });
    req.on("error", reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

function sendPage(res: ServerResponse, title: string): void {
  const nonce = randomBytes(16).toString("base64");
  res.writeHead(200, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src 'nonce-${nonce}'`,
      "connect-src 'self'",
      "img-src 'self' data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "),
  });
  res.end(pageHtml(title, nonce));
}

/** The whole page; `nonce` must be fresh per response (it is what lets our script run). */
export function pageHtml(title: string, nonce: string): string {
  const t = escapeHtml(title);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${t}</title>
<style nonce="${nonce}">${PAGE_CSS}</style>
</head>
<body>
<header class="topbar">
  <div class="brand"><span class="logo">✔</span> ${t} <span class="sub">local Slack simulator</span></div>
  <label class="picker">Acting as
    <select id="user-picker" data-testid="user-picker" aria-label="Act as"></select>
  </label>
</header>
<div class="app">
  <nav class="sidebar" aria-label="Channels">
    <div class="workspace">countersign-sim</div>
    <div class="section-title">Channels</div>
    <div id="channels"></div>
    <div class="section-title">Direct messages</div>
    <div id="dms"></div>
    <div class="section-title">Apps</div>
    <div id="apps"></div>
    <div class="help">Pick who you are at the top, then click the buttons on a card as that person. Each click is a signed Slack interaction sent to the app.</div>
    <div class="help">Step-up: as Sam or Kim (on-call SREs), open Countersign · Home and click Register a passkey; the DM's one-time link opens in a new tab. Approve on a delete in #infra-approvals then sends a link to confirm with that passkey.</div>
  </nav>
  <main class="main">
    <div class="channel-header"><div id="channel-title" data-testid="channel-title"></div><div id="channel-topic" class="topic"></div></div>
    <div id="messages" class="messages" data-testid="messages" aria-live="polite"></div>
    <form id="composer" class="composer" autocomplete="off">
      <input id="composer-input" data-testid="composer" placeholder="Run a slash command, e.g. /approvals" aria-label="Slash command">
    </form>
    <div id="status" class="status" data-testid="status" role="status"></div>
  </main>
</div>
<div id="modal-root"></div>
<script nonce="${nonce}">
${CLIENT_HELPERS}
${CLIENT_APP}
</script>
</body>
</html>
`;
}

function escapeHtml(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/**
 * The page's files are served as they are, never compiled: run from dist/src/simulator/,
 * this module reads them from the sources it was built from (src/simulator/page/), so
 * an edit to them shows at once and no copy in dist/ can go stale.
 */
const PAGE_DIR = fileURLToPath(new URL("./page/", import.meta.url)).replace(
  /([\\/])dist[\\/]src[\\/]simulator[\\/]page[\\/]$/,
  "$1src$1simulator$1page$1",
);

function asset(name: string): string {
  return readFileSync(`${PAGE_DIR}${name}`, "utf8");
}

/**
 * The page's stylesheet, script helpers and script, read once at start. Real files, so
 * the linter and the type checker see them; inlined into each response so that one
 * nonce covers them.
 */
const PAGE_CSS = asset("app.css");

/** helpers.js's text: the tests run exactly this in node:vm. */
export const CLIENT_HELPERS = asset("helpers.js");

const CLIENT_APP = asset("app.js");

/** The page's target without the simulator: where a person's actions go. */
function appTarget(t: PageTarget): AppTarget {
  const { sim: _sim, ...target } = t;
  return target;
}
