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
 * Plain HTML, CSS and vanilla JS in template strings: no framework, no build step. The
 * page renders agent text with the same care as Slack: every string is HTML-escaped
 * before any markup is added, and a Content-Security-Policy with a per-response nonce
 * stops any script the renderer might have missed.
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage, RequestListener, ServerResponse } from "node:http";
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
 * `POST /page/click`, `POST /page/submit`, `POST /page/dismiss`, `POST /page/command`.
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

  constructor(private readonly o: SimPageOptions) {
    if (o.people.length === 0) throw new Error("SimPage: at least one person is needed to act as");
    this.people = new Map(o.people.map((p) => [p.user.id, p]));
    this.title = o.title ?? "Countersign demo";
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
    const me = this.people.has(user) ? user : this.o.people[0]!.user.id;
    const people = this.o.people.map((p) => ({
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
        channels: this.o.channels.map((c) => ({
          id: c.id,
          name: c.name,
          kind: "channel",
          topic: c.topic ?? "",
          count: 0,
        })),
        messages: {},
        modal: null,
      };
    }
    names[sim.botUserId] = "Countersign";
    const dm = sim.dmChannel(me);
    const visible = sim
      .messages()
      .filter((m) => !m.deleted && (m.ephemeral_for === undefined || m.ephemeral_for === me));
    const messages: Record<string, PageMessage[]> = {};
    const ids = [...this.o.channels.map((c) => c.id), dm];
    for (const id of ids) messages[id] = thread(visible.filter((m) => m.channel === id));
    const channels = [
      ...this.o.channels.map((c) => ({
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
    <div class="help">Pick who you are at the top, then click the buttons on a card as that person. Each click is a signed Slack interaction sent to the app.</div>
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

const PAGE_CSS = `
*{box-sizing:border-box}
body{margin:0;font:15px/1.46 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d1c1d;background:#fff;height:100vh;display:flex;flex-direction:column}
.topbar{display:flex;align-items:center;justify-content:space-between;background:#350d36;color:#fff;padding:8px 16px;gap:16px}
.brand{font-weight:700;font-size:15px}.brand .logo{display:inline-block;background:#2bac76;border-radius:4px;width:22px;text-align:center;margin-right:6px}
.brand .sub{font-weight:400;opacity:.7;margin-left:8px;font-size:13px}
.picker{font-size:13px;display:flex;align-items:center;gap:8px}
.picker select{font-size:14px;padding:4px 6px;border-radius:6px;border:1px solid #8d6b8e;min-width:320px}
.app{flex:1;display:flex;min-height:0}
.sidebar{width:250px;background:#3f0e40;color:#cfc3cf;padding:10px 0;overflow:auto;flex-shrink:0}
.workspace{color:#fff;font-weight:700;padding:4px 16px 12px;border-bottom:1px solid #522653;margin-bottom:8px}
.section-title{font-size:13px;padding:10px 16px 4px;opacity:.8}
.chan{display:flex;justify-content:space-between;width:100%;background:none;border:0;color:inherit;text-align:left;padding:4px 16px 4px 26px;font:inherit;cursor:pointer}
.chan:hover{background:#350d36}.chan.active{background:#1164a3;color:#fff}
.chan .count{font-size:12px;line-height:18px;align-self:center;background:#ffffff22;border-radius:8px;padding:0 6px}
.help{font-size:12px;padding:16px;opacity:.7;line-height:1.4}
.main{flex:1;display:flex;flex-direction:column;min-width:0}
.channel-header{padding:10px 20px;border-bottom:1px solid #ddd}
#channel-title{font-weight:900;font-size:18px}.topic{font-size:13px;color:#616061}
.messages{flex:1;overflow:auto;padding:8px 0 16px}
.empty{color:#616061;padding:24px 20px}
.msg{display:flex;gap:10px;padding:8px 20px}.msg:hover{background:#f8f8f8}
.msg.flash{background:#fff8c4}
.avatar{width:36px;height:36px;border-radius:6px;background:#2bac76;color:#fff;font-weight:700;display:flex;align-items:center;justify-content:center;flex-shrink:0;font-size:13px}
.avatar.person{background:#616061}
.mbody{flex:1;min-width:0}
.meta{font-size:13px;color:#616061}.meta b{color:#1d1c1d;font-size:15px;margin-right:4px}
.badge{font-size:10px;background:#e8e8e8;color:#616061;border-radius:3px;padding:1px 4px;margin-right:6px;font-weight:700}
.edited{font-size:12px;color:#868686}
.only-you{font-size:12px;color:#616061;margin:2px 0 4px;display:flex;align-items:center;gap:4px}
.only-you:before{content:"👁";}
.msg.ephemeral{background:#f4f9fd}
.b-header{font-weight:900;font-size:17px;margin:4px 0}
.b-section{margin:4px 0;display:flex;gap:12px;align-items:flex-start}.b-section .b-main{flex:1;min-width:0}
.b-fields{display:grid;grid-template-columns:1fr 1fr;gap:6px 24px;margin-top:4px}
.b-context{font-size:12.5px;color:#616061;margin:4px 0;display:flex;gap:8px;flex-wrap:wrap}
.b-divider{border:0;border-top:1px solid #e2e2e2;margin:10px 0}
.b-actions{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0 4px}
.b-unknown{color:#868686;font-size:12px}
.btn{font:inherit;font-size:14px;font-weight:700;padding:4px 12px;border-radius:4px;border:1px solid #bbb;background:#fff;color:#1d1c1d;cursor:pointer}
.btn:hover{background:#f6f6f6}.btn:disabled{opacity:.5;cursor:default}
.btn.primary{background:#007a5a;border-color:#007a5a;color:#fff}.btn.primary:hover{background:#148567}
.btn.danger{background:#fff;border-color:#e01e5a;color:#e01e5a}.btn.danger:hover{background:#fdf2f5}
.mention{background:#e8f5fa;color:#1264a3;border-radius:3px;padding:0 2px}
.date{border-bottom:1px dotted #999}
code{font:12px Menlo,Consolas,monospace;background:#f6f6f6;border:1px solid #e2e2e2;border-radius:3px;padding:1px 3px;color:#e01e5a}
blockquote{margin:2px 0;padding-left:10px;border-left:4px solid #ddd}
.thread-toggle{background:none;border:0;color:#1264a3;font:inherit;font-size:13px;font-weight:700;cursor:pointer;padding:2px 0;margin-top:2px}
.thread{border-left:2px solid #e2e2e2;margin:4px 0 0;padding-left:4px}.thread .msg{padding:6px 8px}
.composer{padding:0 20px 8px}
.composer input{width:100%;font:inherit;padding:10px 12px;border:1px solid #bbb;border-radius:8px}
.status{font-size:12.5px;color:#616061;padding:0 20px 10px;min-height:22px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.status.err{color:#e01e5a}
.overlay{position:fixed;inset:0;background:#0008;display:flex;align-items:flex-start;justify-content:center;padding-top:8vh;z-index:10}
.modal{background:#fff;border-radius:8px;width:540px;max-width:94vw;max-height:84vh;display:flex;flex-direction:column;box-shadow:0 18px 48px #0006}
.modal header{font-weight:900;font-size:20px;padding:18px 24px;border-bottom:1px solid #e2e2e2}
.modal .mb{padding:12px 24px;overflow:auto}
.modal footer{display:flex;justify-content:flex-end;gap:8px;padding:14px 24px;border-top:1px solid #e2e2e2}
.b-input{margin:10px 0}.b-input label{display:block;font-weight:700;margin-bottom:6px}
.b-input textarea,.b-input input{width:100%;font:inherit;padding:8px 10px;border:1px solid #bbb;border-radius:6px}
.b-input textarea{min-height:84px;resize:vertical}
.hint{font-size:12.5px;color:#616061;margin-top:4px}.ferr{font-size:13px;color:#e01e5a;margin-top:4px}
`;

/**
 * The page's pure helpers: HTML escaping, mrkdwn and Block Kit rendering. Kept apart
 * from the page's wiring so the tests can run exactly this text (in node:vm) and check
 * that agent text cannot become markup. Plain ES2020, no template literals (this is a
 * raw template string), no globals beyond Date and Intl.
 */
export const CLIENT_HELPERS = String.raw`
"use strict";
function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/** Slack's three entities, already HTML-escaped once, back to what they stand for (one pass, so &amp;lt; stays literal). */
function decodeSlack(escaped) {
  return escaped.replace(/&amp;(lt|gt|amp);/g, "&$1;");
}

/** Raw Slack text (entities and all) to safe HTML text. */
function show(raw) {
  return decodeSlack(esc(raw));
}

function plainHtml(s) {
  return esc(s).replace(/\n/g, "<br>");
}

function pad2(n) { return (n < 10 ? "0" : "") + n; }

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** Slack's date token formats, in the viewer's own time zone. */
function formatSlackDate(seconds, format, now) {
  var d = new Date(seconds * 1000);
  var today = now || new Date();
  var yesterday = new Date(today.getTime() - 86400000);
  var tomorrow = new Date(today.getTime() + 86400000);
  function pretty(fallback) {
    if (sameDay(d, today)) return "today";
    if (sameDay(d, yesterday)) return "yesterday";
    if (sameDay(d, tomorrow)) return "tomorrow";
    return fallback;
  }
  var parts = {
    date_num: d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()),
    date: d.toLocaleDateString("en-US", { month: "long", day: "numeric", year: "numeric" }),
    date_short: d.toLocaleDateString("en-US", { month: "short", day: "numeric", year: "numeric" }),
    date_long: d.toLocaleDateString("en-US", { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
    time: pad2(d.getHours()) + ":" + pad2(d.getMinutes()),
    time_secs: pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds())
  };
  parts.date_pretty = pretty(parts.date);
  parts.date_short_pretty = pretty(parts.date_short);
  parts.date_long_pretty = pretty(parts.date_long);
  return String(format).replace(/\{([a-z_]+)\}/g, function (m, k) {
    return Object.prototype.hasOwnProperty.call(parts, k) ? parts[k] : m;
  });
}

/** One <...> token of Slack mrkdwn, as HTML. Anything not recognised is shown as the text it is. */
function renderToken(body, names, now) {
  var bar = body.indexOf("|");
  var head = bar === -1 ? body : body.slice(0, bar);
  var label = bar === -1 ? "" : body.slice(bar + 1);
  if (/^@[UWB][A-Z0-9]+$/.test(head)) {
    var id = head.slice(1);
    var known = names && Object.prototype.hasOwnProperty.call(names, id);
    return '<span class="mention" data-user="' + esc(id) + '">@' + (known ? esc(names[id]) : show(label || id)) + "</span>";
  }
  if (/^#[CG][A-Z0-9]+$/.test(head)) {
    return '<span class="mention">#' + show(label || head.slice(1)) + "</span>";
  }
  if (head.indexOf("!date^") === 0) {
    var p = head.split("^");
    var secs = Number(p[1]);
    if (p.length >= 3 && /^\d{1,12}$/.test(p[1])) {
      var iso = new Date(secs * 1000).toISOString();
      return '<time class="date" datetime="' + esc(iso) + '" title="' + esc(iso) + '">' +
        esc(formatSlackDate(secs, p[2], now)) + "</time>";
    }
    return show(label || body);
  }
  if (head.indexOf("!subteam^") === 0) {
    return '<span class="mention">@' + show(label || head.slice(9)) + "</span>";
  }
  if (/^!(here|channel|everyone)$/.test(head)) {
    return '<span class="mention">@' + head.slice(1) + "</span>";
  }
  if (/^(https?:\/\/|mailto:)[^\s"]+$/i.test(head)) {
    return '<a href="' + show(head) + '" target="_blank" rel="noopener noreferrer">' + show(label || head) + "</a>";
  }
  return show("<" + body + ">");
}

/**
 * Slack mrkdwn to safe HTML. Order matters: the <...> tokens are cut out of the raw text
 * first (agent text cannot contain a raw < since the app escapes it), then everything is
 * HTML-escaped, quotes are found on the escaped text (a raw > is escaped to &gt;, an
 * agent's &gt; to &amp;gt;, so they cannot be confused), and only then are Slack's
 * entities decoded for display and emphasis applied.
 */
function renderMrkdwn(raw, names, now) {
  var held = [];
  function hold(html) { held.push(html); return "\u0001" + (held.length - 1) + "\u0002"; }
  var s = String(raw == null ? "" : raw).replace(/[\u0001\u0002]/g, "");
  s = s.replace(/<([^<>\n]{1,1000})>/g, function (m, body) { return hold(renderToken(body, names, now)); });
  var lines = esc(s).split("\n");
  var out = [];
  var quote = [];
  function flushQuote() {
    if (quote.length) { out.push("<blockquote>" + quote.join("<br>") + "</blockquote>"); quote = []; }
  }
  for (var i = 0; i < lines.length; i++) {
    var line = lines[i];
    var isQuote = line.indexOf("&gt;") === 0;
    if (isQuote) line = line.slice(4).replace(/^ /, "");
    line = decodeSlack(line);
    line = line.replace(/\u0060([^\u0060\n]+)\u0060/g, function (m, code) { return hold("<code>" + code + "</code>"); });
    line = line.replace(/(^|[^\w*])\*(?=\S)([^*\n]*?\S)?\*(?![\w*])/g, function (m, pre, inner, off, all) {
      return inner === undefined ? m : pre + "<b>" + inner + "</b>";
    });
    line = line.replace(/(^|[^\w])_(?=\S)([^_\n]*?\S)?_(?!\w)/g, function (m, pre, inner) {
      return inner === undefined ? m : pre + "<i>" + inner + "</i>";
    });
    line = line.replace(/(^|[^\w~])~(?=\S)([^~\n]*?\S)?~(?![\w~])/g, function (m, pre, inner) {
      return inner === undefined ? m : pre + "<s>" + inner + "</s>";
    });
    if (isQuote) { quote.push(line); continue; }
    flushQuote();
    out.push(line);
  }
  flushQuote();
  var html = out.join("<br>").replace(/<\/blockquote><br>/g, "</blockquote>");
  // Tokens may have been held inside held code spans; resolve until none are left.
  for (var guard = 0; guard < 3 && /\u0001\d+\u0002/.test(html); guard++) {
    html = html.replace(/\u0001(\d+)\u0002/g, function (m, n) { return held[Number(n)]; });
  }
  return html;
}

function textObject(t, names, now) {
  if (!t || typeof t !== "object") return "";
  return t.type === "mrkdwn" ? renderMrkdwn(t.text, names, now) : plainHtml(t.text == null ? "" : t.text);
}

/** An interactive element. ctx: {channel, ts} for message buttons; null in modals. */
function renderElement(el, blockId, ctx) {
  if (!el || typeof el !== "object") return "";
  if (el.type === "button") {
    var cls = "btn" + (el.style === "primary" ? " primary" : el.style === "danger" ? " danger" : "");
    var attrs = ' data-testid="button-' + esc(el.action_id || "") + '"' +
      ' data-action-id="' + esc(el.action_id || "") + '"' +
      ' data-block-id="' + esc(blockId || "") + '"';
    if (ctx) attrs += ' data-channel="' + esc(ctx.channel) + '" data-ts="' + esc(ctx.ts) + '"';
    if (el.confirm && el.confirm.text) attrs += ' data-confirm="' + esc(el.confirm.text.text || "") + '"';
    if (el.url) return '<a class="' + cls + '" href="' + esc(el.url) + '" target="_blank" rel="noopener noreferrer">' + plainHtml(el.text && el.text.text || "") + "</a>";
    return '<button type="button" class="' + cls + '"' + attrs + ">" + plainHtml(el.text && el.text.text || "") + "</button>";
  }
  if (el.type === "image") return '<span class="b-unknown">[image: ' + esc(el.alt_text || "") + "]</span>";
  return '<span class="b-unknown">[' + esc(el.type) + " element]</span>";
}

function renderInput(b) {
  var el = b.element || {};
  var bid = String(b.block_id || "");
  var aid = String(el.action_id || "");
  var common = ' data-testid="modal-input-' + esc(bid) + '" data-block-id="' + esc(bid) + '" data-action-id="' + esc(aid) + '"' +
    (el.max_length ? ' maxlength="' + Number(el.max_length) + '"' : "") +
    (el.placeholder && el.placeholder.text ? ' placeholder="' + esc(el.placeholder.text) + '"' : "");
  var control = el.type !== "plain_text_input"
    ? '<span class="b-unknown">[' + esc(el.type) + " input]</span>"
    : el.multiline
      ? "<textarea" + common + ">" + esc(el.initial_value || "") + "</textarea>"
      : '<input type="text"' + common + ' value="' + esc(el.initial_value || "") + '">';
  return '<div class="b-input"><label>' + plainHtml(b.label && b.label.text || "") +
    (b.optional ? ' <span class="hint">(optional)</span>' : "") + "</label>" + control +
    (b.hint ? '<div class="hint">' + plainHtml(b.hint.text || "") + "</div>" : "") +
    '<div class="ferr" data-testid="modal-error-' + esc(bid) + '" data-error-for="' + esc(bid) + '"></div></div>';
}

/** Block Kit to HTML: header, section (text, fields, accessory), context, actions, divider, input. */
function renderBlocks(blocks, names, ctx, now) {
  var html = "";
  for (var i = 0; i < (blocks || []).length; i++) {
    var b = blocks[i];
    if (!b || typeof b !== "object") continue;
    var bid = b.block_id || "";
    switch (b.type) {
      case "header":
        html += '<div class="b-header">' + plainHtml(b.text && b.text.text || "") + "</div>";
        break;
      case "section":
        html += '<div class="b-section"><div class="b-main">' +
          (b.text ? '<div class="b-text">' + textObject(b.text, names, now) + "</div>" : "") +
          (Array.isArray(b.fields) ? '<div class="b-fields">' + b.fields.map(function (f) {
            return "<div>" + textObject(f, names, now) + "</div>";
          }).join("") + "</div>" : "") + "</div>" +
          (b.accessory ? renderElement(b.accessory, bid, ctx) : "") + "</div>";
        break;
      case "divider":
        html += '<hr class="b-divider">';
        break;
      case "context":
        html += '<div class="b-context">' + (b.elements || []).map(function (e) {
          return e && e.type === "image" ? renderElement(e, bid, ctx) : "<span>" + textObject(e, names, now) + "</span>";
        }).join("") + "</div>";
        break;
      case "actions":
        html += '<div class="b-actions" data-block-id="' + esc(bid) + '">' + (b.elements || []).map(function (e) {
          return renderElement(e, bid, ctx);
        }).join("") + "</div>";
        break;
      case "input":
        html += renderInput(b);
        break;
      case "markdown":
        html += '<div class="b-section">' + renderMrkdwn(b.text, names, now) + "</div>";
        break;
      default:
        html += '<div class="b-unknown">[' + esc(b.type) + " block]</div>";
    }
  }
  return html;
}
`;

/** The page's wiring: state fetches, the live stream, rendering, clicks and modals. */
const CLIENT_APP = String.raw`
(function () {
  var params = new URLSearchParams(location.search);
  var me = params.get("as") || "";
  var channel = params.get("channel") || "";
  var flashTs = params.get("ts") || "";
  var state = null;
  var expanded = {};
  var shownModal = "";
  var lastMessagesHtml = "";
  var fetching = false, again = false;

  var $ = function (id) { return document.getElementById(id); };

  function setStatus(text, isError) {
    var el = $("status");
    el.textContent = text;
    el.className = "status" + (isError ? " err" : "");
  }

  function remember() {
    var q = new URLSearchParams();
    if (me) q.set("as", me);
    if (channel) q.set("channel", channel);
    history.replaceState(null, "", "?" + q.toString());
  }

  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    fetch("/page/state?user=" + encodeURIComponent(me), { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (s) { state = s; render(); })
      .catch(function (e) { setStatus("Could not reach the simulator: " + e.message, true); })
      .then(function () {
        fetching = false;
        if (again) { again = false; refresh(); }
      });
  }

  function personName(id) { return state && state.names[id] || id; }

  function renderPicker() {
    var sel = $("user-picker");
    var key = state.people.map(function (p) { return p.id; }).join(",");
    if (sel.getAttribute("data-key") !== key) {
      sel.innerHTML = state.people.map(function (p) {
        return '<option value="' + esc(p.id) + '">' + esc(p.name) + " — " + esc(p.role) + "</option>";
      }).join("");
      sel.setAttribute("data-key", key);
    }
    sel.value = state.me;
    me = state.me;
  }

  function renderChannels() {
    if (!state.channels.some(function (c) { return c.id === channel; })) channel = state.channels[0] ? state.channels[0].id : "";
    function row(c) {
      return '<button type="button" class="chan' + (c.id === channel ? " active" : "") + '" data-testid="channel-' + esc(c.id) +
        '" data-channel="' + esc(c.id) + '"><span>' + (c.kind === "dm" ? "● " : "# ") + esc(c.name) + "</span>" +
        (c.count ? '<span class="count">' + c.count + "</span>" : "") + "</button>";
    }
    $("channels").innerHTML = state.channels.filter(function (c) { return c.kind === "channel"; }).map(row).join("");
    $("dms").innerHTML = state.channels.filter(function (c) { return c.kind === "dm"; }).map(row).join("");
    var current = state.channels.filter(function (c) { return c.id === channel; })[0];
    $("channel-title").textContent = current ? (current.kind === "dm" ? current.name : "# " + current.name) : "";
    $("channel-topic").textContent = current ? current.topic : "";
  }

  function timeOf(ts) {
    return formatSlackDate(Number(String(ts).split(".")[0]), "{time}");
  }

  function messageHtml(m, inThread) {
    var bot = m.user && m.user === state.botUserId;
    var who = bot ? "Countersign" : personName(m.user || "");
    var initials = bot ? "CS" : who.split(/\s+/).map(function (w) { return w.charAt(0); }).join("").slice(0, 2).toUpperCase();
    var ctx = { channel: channel, ts: m.ts };
    var body = m.blocks && m.blocks.length ? renderBlocks(m.blocks, state.names, ctx) : '<div class="b-text">' + renderMrkdwn(m.text, state.names) + "</div>";
    var html = '<article class="msg' + (m.ephemeral ? " ephemeral" : "") + (m.ts === flashTs ? " flash" : "") +
      '" data-testid="message" data-ts="' + esc(m.ts) + '" data-channel="' + esc(channel) + '"' +
      (m.ephemeral ? ' data-ephemeral="true"' : "") + (inThread ? ' data-reply="true"' : "") + ">" +
      '<div class="avatar' + (bot ? "" : " person") + '">' + esc(initials) + "</div>" +
      '<div class="mbody"><div class="meta"><b>' + esc(who) + "</b>" + (bot ? '<span class="badge">APP</span>' : "") +
      "<span>" + esc(timeOf(m.ts)) + "</span>" + (m.edited ? ' <span class="edited">(edited)</span>' : "") + "</div>" +
      (m.ephemeral ? '<div class="only-you" data-testid="only-visible-to-you">Only visible to you</div>' : "") +
      '<div class="blocks">' + body + "</div>";
    if (m.replies && m.replies.length) {
      var open = !!expanded[channel + "/" + m.ts];
      html += '<button type="button" class="thread-toggle" data-testid="thread-toggle" data-thread="' + esc(m.ts) + '">' +
        (open ? "Hide replies" : m.replies.length + (m.replies.length === 1 ? " reply" : " replies")) + "</button>";
      if (open) {
        html += '<div class="thread" data-testid="thread">' + m.replies.map(function (r) { return messageHtml(r, true); }).join("") + "</div>";
      }
    }
    return html + "</div></article>";
  }

  function renderMessages() {
    var list = state.messages[channel] || [];
    var html = list.length ? list.map(function (m) { return messageHtml(m, false); }).join("")
      : '<div class="empty">' + (!state.connected ? "The app is starting…"
        : channel.charAt(0) === "D" ? "Nothing here yet. Verdicts on requests an agent made for you, and the app's notes to you, arrive here."
        : "Nothing here yet. Cards appear as soon as an agent asks.") + "</div>";
    if (html === lastMessagesHtml) return;
    var box = $("messages");
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    var keep = box.scrollTop;
    box.innerHTML = html;
    lastMessagesHtml = html;
    if (flashTs) {
      var target = box.querySelector('[data-ts="' + CSS.escape(flashTs) + '"]');
      if (target) { target.scrollIntoView({ block: "center" }); flashTs = ""; return; }
    }
    box.scrollTop = atBottom ? box.scrollHeight : keep;
  }

  function renderModal() {
    var m = state.modal;
    var key = m ? m.id + ":" + m.hash : "";
    if (key === shownModal) return;
    shownModal = key;
    var root = $("modal-root");
    if (!m) { root.innerHTML = ""; return; }
    var v = m.view || {};
    root.innerHTML = '<div class="overlay" data-testid="modal-overlay"><div class="modal" role="dialog" aria-modal="true" data-testid="modal" data-view-id="' + esc(m.id) + '">' +
      "<header>" + plainHtml(v.title && v.title.text || "") + "</header>" +
      '<div class="mb">' + renderBlocks(v.blocks || [], state.names, null) + "</div>" +
      '<footer><button type="button" class="btn" data-testid="modal-cancel" data-modal="cancel">' + plainHtml(v.close && v.close.text || "Cancel") + "</button>" +
      (v.submit ? '<button type="button" class="btn primary" data-testid="modal-submit" data-modal="submit">' + plainHtml(v.submit.text || "Submit") + "</button>" : "") +
      "</footer></div></div>";
    var first = root.querySelector("textarea, input");
    if (first) first.focus();
  }

  function render() {
    renderPicker();
    renderChannels();
    renderMessages();
    renderModal();
    remember();
  }

  function post(path, body) {
    return fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
      .then(function (r) {
        return r.json().then(function (j) {
          if (!r.ok) throw new Error(j.error || ("HTTP " + r.status));
          return j;
        });
      });
  }

  function describe(r) {
    return "POST /slack/events → " + r.status + (r.body ? " " + String(r.body).slice(0, 120) : "");
  }

  document.addEventListener("click", function (e) {
    var t = e.target.closest ? e.target.closest("button") : null;
    if (!t) return;
    if (t.hasAttribute("data-channel") && t.classList.contains("chan")) {
      channel = t.getAttribute("data-channel");
      lastMessagesHtml = "";
      render();
      return;
    }
    if (t.hasAttribute("data-thread")) {
      var k = channel + "/" + t.getAttribute("data-thread");
      expanded[k] = !expanded[k];
      lastMessagesHtml = "";
      renderMessages();
      return;
    }
    if (t.hasAttribute("data-action-id") && t.hasAttribute("data-ts")) {
      var confirmText = t.getAttribute("data-confirm");
      if (confirmText && !window.confirm(confirmText)) return;
      t.disabled = true;
      var label = t.textContent;
      post("/page/click", {
        user: me, channel: t.getAttribute("data-channel"), ts: t.getAttribute("data-ts"),
        actionId: t.getAttribute("data-action-id"), blockId: t.getAttribute("data-block-id")
      }).then(function (r) {
        setStatus(personName(me) + " clicked “" + label + "”: signed block_actions, " + describe(r), r.status !== 200);
      }).catch(function (err) { setStatus(err.message, true); })
        .then(function () { t.disabled = false; refresh(); });
      return;
    }
    var what = t.getAttribute("data-modal");
    if (what && state && state.modal) {
      var viewId = state.modal.id;
      if (what === "cancel") {
        post("/page/dismiss", { user: me, viewId: viewId }).then(refresh, function (err) { setStatus(err.message, true); });
        return;
      }
      var values = {};
      document.querySelectorAll("#modal-root [data-block-id][data-action-id]").forEach(function (el) {
        if (el.tagName !== "TEXTAREA" && el.tagName !== "INPUT") return;
        var b = el.getAttribute("data-block-id");
        values[b] = values[b] || {};
        values[b][el.getAttribute("data-action-id")] = el.value;
      });
      t.disabled = true;
      post("/page/submit", { user: me, viewId: viewId, values: values }).then(function (r) {
        var errors = null;
        try { var a = JSON.parse(r.body || "{}"); if (a.response_action === "errors") errors = a.errors || {}; } catch (x) {}
        document.querySelectorAll("#modal-root [data-error-for]").forEach(function (el) {
          el.textContent = errors && errors[el.getAttribute("data-error-for")] || "";
        });
        setStatus(personName(me) + " submitted the modal: signed view_submission, " + describe(r), r.status !== 200 || !!errors);
      }).catch(function (err) { setStatus(err.message, true); })
        .then(function () { t.disabled = false; refresh(); });
    }
  });

  // As in Slack, an error shown under an input goes away once the person edits that input.
  document.addEventListener("input", function (e) {
    var b = e.target.getAttribute && e.target.getAttribute("data-block-id");
    if (!b) return;
    document.querySelectorAll("#modal-root [data-error-for]").forEach(function (el) {
      if (el.getAttribute("data-error-for") === b) el.textContent = "";
    });
  });

  $("user-picker").addEventListener("change", function (e) {
    me = e.target.value;
    shownModal = "";
    lastMessagesHtml = "";
    setStatus("Now acting as " + personName(me) + ".");
    refresh();
  });

  $("composer").addEventListener("submit", function (e) {
    e.preventDefault();
    var input = $("composer-input");
    var text = input.value.trim();
    if (!text) return;
    post("/page/command", { user: me, channel: channel, text: text }).then(function (r) {
      input.value = "";
      setStatus(personName(me) + " ran " + text.split(/\s/)[0] + ": signed slash command, " + describe(r), r.status !== 200);
      refresh();
    }).catch(function (err) { setStatus(err.message, true); });
  });

  var events = new EventSource("/page/events");
  events.addEventListener("change", refresh);
  events.onerror = function () { setStatus("Lost the live connection to the simulator; retrying…", true); };
  events.onopen = function () { if ($("status").className.indexOf("err") !== -1) setStatus(""); };
  refresh();
})();
`;

/** The page's target without the simulator: where a person's actions go. */
function appTarget(t: PageTarget): AppTarget {
  const { sim: _sim, ...target } = t;
  return target;
}
