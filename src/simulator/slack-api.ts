/**
 * A local stand-in for Slack's Web API, for the test suite and the demo.
 *
 * It answers the methods Countersign uses in Slack's own shapes: `{ok: true, ...}` or
 * `{ok: false, error}` with HTTP 200, and HTTP 429 + Retry-After for rate limits, so the
 * real `@slack/web-api` client (and Bolt on top of it) can be pointed at `url` unchanged.
 * It keeps state (messages, threads, views, DMs) so a test can look at what a person in
 * Slack would see, and it refuses what Slack refuses (Block Kit limits, stale triggers,
 * view hash conflicts) so those failures surface here rather than in production.
 *
 * node:http only: it starts in milliseconds and adds no dependency.
 */
import { randomBytes } from "node:crypto";
import {
  createServer,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { BLOCK_KIT_LIMITS, blockKitProblems, viewProblems } from "./blockkit.js";
import {
  actionIds,
  appHomeOpenedEvent,
  blockActionsPayload,
  type Clicker,
  findElement,
  SIM_APP_ID,
  SIM_BOT_ID,
  SIM_BOT_USER_ID,
  sendSigned,
  slashCommandBody,
  viewObject,
  viewSubmissionPayload,
} from "./interactions.js";
import { type EnvelopeType, SocketModeSim } from "./socket-mode.js";

export interface SimUser {
  id: string;
  team_id: string;
  name: string;
  real_name?: string;
  email?: string;
  is_restricted?: boolean;
  is_ultra_restricted?: boolean;
  is_bot?: boolean;
  tz?: string;
}

export interface SimMessage {
  channel: string;
  ts: string;
  /** Set on thread replies only: the ts of the thread's parent. */
  thread_ts?: string;
  text: string;
  blocks?: unknown[];
  metadata?: unknown;
  user?: string;
  /** How many times chat.update (or a response_url replace) changed it. */
  edits: number;
  /** The one person who sees it, for chat.postEphemeral and ephemeral responses. */
  ephemeral_for?: string;
  deleted?: boolean;
}

export interface SimView {
  id: string;
  user: string;
  trigger_id?: string;
  view: Record<string, unknown>;
  hash: string;
  root_view_id: string;
  kind: "modal" | "home";
  /** The view below this one in a modal stack (views.push). */
  previous_view_id?: string;
  /** A modal that was submitted or cleared; home views never close. */
  closed?: boolean;
}

export interface SlackCall {
  /** The Web API method, or `response_url` for a POST to a response URL. */
  method: string;
  /** The arguments as the app sent them, JSON fields decoded, the token left out. */
  args: Record<string, unknown>;
  /** When it was answered, ms since the epoch. */
  at: number;
  response: Record<string, unknown>;
  /** The HTTP status sent back; 0 when the connection was closed without an answer. */
  status: number;
}

export interface SlackFault {
  /** Answer with this HTTP status: 429 (with Retry-After), 500, 503... */
  status?: number;
  /** Seconds for Retry-After on a 429; default 1. */
  retryAfter?: number;
  /** Answer `{ok: false, error}`; `ratelimited` alone implies HTTP 429, as Slack sends it. */
  error?: string;
  /** Hold the answer this long. Without status/error the call then succeeds normally. */
  delayMs?: number;
  /**
   * Let the call take effect (the message is stored) before answering with the fault,
   * as when Slack did the work but its answer was lost. Default false.
   */
  effect?: boolean;
  /**
   * Close the connection without any answer, a network-level failure (the client sees a
   * reset or "socket hang up"), after the work when `effect` is set. Recorded with status 0.
   */
  reset?: boolean;
}

export interface SlackApiOptions {
  /** Default 0: any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  botToken: string;
  /** Default `U0SIMBOT001`. */
  botUserId?: string;
  teamId: string;
  /** Workspace subdomain, used in auth.test's url and payloads. Default `countersign-sim`. */
  teamDomain?: string;
  /** When given (even empty), unknown users are refused everywhere; otherwise only by users.info. */
  users?: SimUser[];
  usergroups?: Record<string, string[]>;
  /** When given, other channel ids are `channel_not_found` (DMs are always reachable). */
  channels?: string[];
  /** How long a trigger_id stays usable; default 3000 ms, Slack's window. */
  triggerTtlMs?: number;
  /** Serves paths outside /api/ and /response/ (the demo page); otherwise they are 404. */
  onOtherRequest?: RequestListener;
  /**
   * Slack's Socket Mode side: `apps.connections.open` with this app-level token gives a
   * `ws://` URL here, and what a person does (click, submit, command, open Home) is sent
   * over the app's socket whenever the caller gives no `appUrl`.
   */
  socketMode?: {
    appToken: string;
    /** How long to wait for an ack before sending the envelope again. Default 3000 ms. */
    ackTimeoutMs?: number;
    /** Re-sends of an unacked envelope before giving up. Default 3. */
    retries?: number;
  };
}

/** Where a person's action goes: the app's Request URL (signed), or with none, its socket. */
export interface AppTarget {
  /** The app's Request URL, e.g. `http://127.0.0.1:3000/slack/events`. Omit for Socket Mode. */
  appUrl?: string;
  /** Needed with appUrl: the secret the request is signed with. */
  signingSecret?: string;
  /** Unix seconds for the signature (HTTP only). */
  timestamp?: number;
}

export interface SendResult {
  status: number;
  body: string;
}

type Obj = Record<string, unknown>;
type Handler = (args: Obj) => Obj;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

function flag(v: unknown): boolean {
  return v === true || v === 1 || v === "true" || v === "1";
}

/** A Slack ts as an exact integer of microseconds, so "…0.000100" sorts and compares exactly. */
function tsKey(ts: string): bigint {
  const [secs = "0", frac = ""] = ts.split(".");
  if (!/^\d+$/.test(secs) || !/^\d*$/.test(frac)) return -1n;
  return BigInt(secs) * 1_000_000n + BigInt((frac + "000000").slice(0, 6));
}

function compareTs(a: SimMessage, b: SimMessage): number {
  const d = tsKey(a.ts) - tsKey(b.ts);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/** A Slack `{ok: false}` answer, thrown by handlers and turned into the HTTP 200 body. */
class Refusal extends Error {
  constructor(
    readonly code: string,
    readonly extra: Obj = {},
  ) {
    super(code);
  }
}

function invalidBlocks(problems: string[]): Refusal {
  return new Refusal("invalid_blocks", {
    errors: problems,
    response_metadata: { messages: problems.map((p) => `[ERROR] ${p}`) },
  });
}

/** Slack refuses a bad view with `invalid_arguments` and the reasons in response_metadata. */
function invalidArguments(problems: string[]): Refusal {
  return new Refusal("invalid_arguments", {
    response_metadata: { messages: problems.map((p) => `[ERROR] ${p}`) },
  });
}

/** Fields the web-api client JSON-encodes inside a form body. */
const JSON_FIELDS = ["blocks", "attachments", "metadata", "view"];

interface Waiter {
  method: string;
  pred: (c: SlackCall) => boolean;
  resolve: (c: SlackCall) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface ResponseTarget {
  channel: string;
  user: string;
  messageTs?: string;
}

interface Trigger {
  user: string | undefined;
  issuedAt: number;
  used: boolean;
}

export class SlackApiSim {
  /** `http://HOST:PORT/api/`, exactly what Bolt's `clientOptions.slackApiUrl` takes. */
  readonly url: string;
  /** `http://HOST:PORT`, for response URLs and permalinks. */
  readonly origin: string;
  /** Every call in the order it was answered. */
  readonly calls: SlackCall[] = [];
  readonly botUserId: string;
  readonly teamId: string;
  /** The Socket Mode side, when the simulator was started with `socketMode`. */
  readonly socket: SocketModeSim | undefined;

  private readonly opts: SlackApiOptions;
  private readonly server: Server;
  private readonly teamDomain: string;
  private readonly users = new Map<string, SimUser>();
  private knowsUsers: boolean;
  private readonly usergroups = new Map<string, string[]>();
  private readonly allowedChannels: Set<string> | undefined;
  private readonly triggerTtlMs: number;
  private readonly msgs: SimMessage[] = [];
  private readonly editedAt = new Map<string, string>();
  private readonly viewList: SimView[] = [];
  private readonly dmByMembers = new Map<string, string>();
  private readonly dmMembers = new Map<string, string[]>();
  private readonly triggers = new Map<string, Trigger>();
  private readonly responseTargets = new Map<string, ResponseTarget>();
  private readonly faults = new Map<string, { fault: SlackFault; remaining: number }[]>();
  private readonly waiters = new Set<Waiter>();
  private readonly listeners = new Set<(c: SlackCall) => void>();
  private readonly pendingDelays = new Set<NodeJS.Timeout>();
  private readonly handlers: Map<string, Handler>;
  private lastMicros = 0n;
  private seq = 0;

  private constructor(opts: SlackApiOptions, server: Server, origin: string) {
    this.opts = opts;
    this.server = server;
    this.origin = origin;
    this.url = `${origin}/api/`;
    this.botUserId = opts.botUserId ?? SIM_BOT_USER_ID;
    this.teamId = opts.teamId;
    this.socket = opts.socketMode
      ? new SocketModeSim({ ...opts.socketMode, appId: SIM_APP_ID }, server, origin.replace(/^http/, "ws"))
      : undefined;
    this.teamDomain = opts.teamDomain ?? "countersign-sim";
    this.triggerTtlMs = opts.triggerTtlMs ?? 3000;
    this.allowedChannels = opts.channels ? new Set(opts.channels) : undefined;
    this.knowsUsers = opts.users !== undefined;
    this.users.set(this.botUserId, {
      id: this.botUserId,
      team_id: opts.teamId,
      name: "countersign",
      real_name: "Countersign",
      is_bot: true,
    });
    for (const u of opts.users ?? []) this.users.set(u.id, { ...u });
    for (const [id, members] of Object.entries(opts.usergroups ?? {})) this.usergroups.set(id, [...members]);
    this.handlers = new Map<string, Handler>([
      ["auth.test", () => this.authTest()],
      ["chat.postMessage", (a) => this.postMessage(a)],
      ["chat.update", (a) => this.update(a)],
      ["chat.delete", (a) => this.deleteMessage(a)],
      ["chat.postEphemeral", (a) => this.postEphemeral(a)],
      ["chat.getPermalink", (a) => this.getPermalink(a)],
      ["views.open", (a) => this.viewsOpen(a)],
      ["views.update", (a) => this.viewsUpdate(a)],
      ["views.push", (a) => this.viewsPush(a)],
      ["views.publish", (a) => this.viewsPublish(a)],
      ["users.info", (a) => this.usersInfo(a)],
      ["usergroups.users.list", (a) => this.usergroupUsers(a)],
      ["conversations.open", (a) => this.conversationsOpen(a)],
      ["conversations.history", (a) => this.history(a)],
      ["conversations.replies", (a) => this.replies(a)],
    ]);
  }

  static async start(opts: SlackApiOptions): Promise<SlackApiSim> {
    const host = opts.host ?? "127.0.0.1";
    let sim: SlackApiSim | undefined;
    const server = createServer((req, res) => {
      if (!sim) {
        res.writeHead(503).end();
        return;
      }
      sim.route(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(`Slack simulator failed on ${req.method} ${req.url}: ${String(err)}`);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port ?? 0, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    const hostPart = host.includes(":") ? `[${host}]` : host;
    sim = new SlackApiSim(opts, server, `http://${hostPart}:${port}`);
    return sim;
  }

  // ---- state for tests and the demo page ----------------------------------------

  /** Current state after updates, thread replies and ephemerals included, in posting order. */
  messages(channel?: string): SimMessage[] {
    return structuredClone(
      channel === undefined ? this.msgs : this.msgs.filter((m) => m.channel === channel),
    );
  }

  views(): SimView[] {
    return structuredClone(this.viewList);
  }

  /** The DM channel id the app has with one person (or a group), opening it if needed. */
  dmChannel(userIds: string | string[]): string {
    return this.dmFor(Array.isArray(userIds) ? userIds : [userIds]).id;
  }

  addUser(u: SimUser): void {
    this.users.set(u.id, { ...u });
    this.knowsUsers = true;
  }

  setUsergroup(id: string, users: string[]): void {
    this.usergroups.set(id, [...users]);
  }

  /**
   * Fault injection for the next `times` calls of `method` (default 1): an HTTP status
   * (429 with Retry-After seconds, 500, 503), a Slack error ("channel_not_found",
   * "not_in_channel", "invalid_auth", "ratelimited"), or a delay in ms. Faults queue up
   * in the order given.
   */
  failNext(method: string, fault: SlackFault, times = 1): void {
    const queue = this.faults.get(method) ?? [];
    queue.push({ fault, remaining: times });
    this.faults.set(method, queue);
  }

  /**
   * Resolves when a call of `method` matching `pred` has been answered (or already is in
   * `calls`); rejects after timeoutMs (default 5000) naming what it waited for.
   */
  waitForCall(method: string, pred?: (c: SlackCall) => boolean, timeoutMs = 5000): Promise<SlackCall> {
    const test = (c: SlackCall): boolean => {
      if (c.method !== method) return false;
      try {
        return pred ? pred(c) : true;
      } catch {
        return false;
      }
    };
    const found = this.calls.find(test);
    if (found) return Promise.resolve(found);
    return new Promise<SlackCall>((resolve, reject) => {
      const waiter: Waiter = {
        method,
        pred: test,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          const seen = this.calls.filter((c) => c.method === method);
          const last = seen.at(-1);
          const lastNote = last ? `; the last answered ${JSON.stringify(last.response).slice(0, 200)}` : "";
          reject(
            new Error(
              `Slack simulator: waited ${timeoutMs} ms for a ${method} call${pred ? " matching the predicate" : ""}, ` +
                `saw ${seen.length} ${method} call(s)${lastNote}`,
            ),
          );
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** Calls `listener` after each answered call (for the demo page's live view); returns an unsubscribe. */
  subscribe(listener: (c: SlackCall) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Issues a trigger_id as Slack does for a click or a command: views.open/push accept it
   * once, within triggerTtlMs (3 s), else `exchanged_trigger_id` / `expired_trigger_id`.
   */
  newTriggerId(user?: string): string {
    this.seq += 1;
    const id = `${this.seq}${Date.now() % 100000}.${this.teamId.replace(/\D/g, "") || "1"}.${randomBytes(16).toString("hex")}`;
    this.triggers.set(id, { user, issuedAt: Date.now(), used: false });
    return id;
  }

  // ---- what a person does in Slack ----------------------------------------------

  /**
   * Clicks a button: finds the message and the button's value by action_id, issues a
   * trigger id and a response URL, and sends the signed block_actions to the app.
   */
  async click(
    o: {
      user: Clicker;
      channel: string;
      ts: string;
      actionId: string;
      blockId?: string;
    } & AppTarget,
  ): Promise<SendResult & { triggerId: string }> {
    const message = this.msgs.find((m) => m.channel === o.channel && m.ts === o.ts && !m.deleted);
    if (!message) {
      throw new Error(`Slack simulator: cannot click, no message ${o.ts} in channel ${o.channel}`);
    }
    const found = findElement(message.blocks, o.actionId, o.blockId);
    if (!found) {
      throw new Error(
        `Slack simulator: cannot click, message ${o.ts} in ${o.channel} has no element with action_id ` +
          `"${o.actionId}"${o.blockId ? ` in block "${o.blockId}"` : ""} (it has: ${actionIds(message.blocks).join(", ") || "none"})`,
      );
    }
    const triggerId = this.newTriggerId(o.user.id);
    const responseUrl = this.newResponseUrl({ channel: o.channel, user: o.user.id, messageTs: o.ts });
    const payload = blockActionsPayload({
      user: o.user,
      message: structuredClone(message),
      actionId: o.actionId,
      value: typeof found.element.value === "string" ? found.element.value : "",
      blockId: found.blockId,
      triggerId,
      responseUrl,
      teamDomain: this.teamDomain,
    });
    const res = await this.deliver("interaction", payload, o);
    return { ...res, triggerId };
  }

  /**
   * Submits an open modal with `values` (block_id -> action_id -> {type, value}), then
   * applies the app's answer as Slack does: `errors` keeps the view open, `update`
   * replaces it, `push` stacks a new one, `clear` closes the stack, anything else closes it.
   */
  async submitView(
    o: {
      user: Clicker;
      viewId: string;
      values: Record<string, Record<string, { type: string; value: string }>>;
    } & AppTarget,
  ): Promise<SendResult> {
    const view = this.viewList.find((v) => v.id === o.viewId);
    if (view?.kind !== "modal" || view.closed) {
      const open = this.viewList.filter((v) => v.kind === "modal" && !v.closed).map((v) => v.id);
      throw new Error(
        `Slack simulator: cannot submit view ${o.viewId}: no such open modal (open: ${open.join(", ") || "none"})`,
      );
    }
    const payload = viewSubmissionPayload({
      user: o.user,
      view: structuredClone(view),
      values: o.values,
      triggerId: this.newTriggerId(o.user.id),
      teamDomain: this.teamDomain,
    });
    const res = await this.deliver("interaction", payload, o);
    if (res.status === 200) this.applyViewAnswer(view, res.body);
    return res;
  }

  /**
   * Runs a slash command; an ack body with text is shown to the caller ephemerally (or
   * in the channel with `response_type: "in_channel"`), as Slack does.
   */
  async command(
    o: {
      user: Clicker;
      command: string;
      text?: string;
      channelId?: string;
    } & AppTarget,
  ): Promise<SendResult & { triggerId: string; channelId: string }> {
    const channelId = o.channelId ?? this.dmFor([o.user.id]).id;
    const triggerId = this.newTriggerId(o.user.id);
    const responseUrl = this.newResponseUrl({ channel: channelId, user: o.user.id });
    const body = slashCommandBody({
      user: o.user,
      command: o.command,
      text: o.text,
      channelId,
      triggerId,
      responseUrl,
      teamDomain: this.teamDomain,
    });
    const res = await this.deliver("command", body, o);
    if (res.status === 200) this.applyCommandAck(channelId, o.user.id, res.body);
    return { ...res, triggerId, channelId };
  }

  /** Opens the app's Home tab: sends the app_home_opened event. */
  async openHome(
    o: {
      user: Clicker;
    } & AppTarget,
  ): Promise<SendResult> {
    const home = this.viewList.find((v) => v.kind === "home" && v.user === o.user.id);
    const event = appHomeOpenedEvent({
      user: o.user,
      teamId: this.teamId,
      botUserId: this.botUserId,
      channel: this.dmFor([o.user.id]).id,
      view: home ? viewObject(home, this.teamId) : undefined,
    });
    return this.deliver("event", event, o);
  }

  async close(): Promise<void> {
    for (const t of this.pendingDelays) clearTimeout(t);
    this.pendingDelays.clear();
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(`Slack simulator closed while waiting for a ${w.method} call`));
    }
    this.waiters.clear();
    await this.socket?.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- HTTP ---------------------------------------------------------------------

  /**
   * Sends what a person did as Slack would: signed to the app's Request URL, or with no
   * URL as an envelope on the app's socket. Either way the answer comes back as the
   * HTTP status and body (an ack's payload is the body), so what Slack then shows is
   * worked out once.
   */
  private async deliver(
    kind: "interaction" | "command" | "event",
    body: Record<string, unknown>,
    o: AppTarget,
  ): Promise<SendResult> {
    if (o.appUrl !== undefined) {
      if (o.signingSecret === undefined) {
        throw new Error(`Slack simulator: sending to ${o.appUrl} needs the signing secret`);
      }
      return sendSigned(kind, body, {
        url: o.appUrl,
        signingSecret: o.signingSecret,
        timestamp: o.timestamp,
      });
    }
    if (!this.socket) {
      throw new Error("Slack simulator: no appUrl given and Socket Mode is off (start it with socketMode)");
    }
    const type: EnvelopeType =
      kind === "interaction" ? "interactive" : kind === "command" ? "slash_commands" : "events_api";
    // Slack takes an answer in the ack for modal submissions and slash commands only.
    const acceptsResponsePayload = kind === "command" || body.type === "view_submission";
    const { status, body: text } = await this.socket.deliver(type, body, { acceptsResponsePayload });
    return { status, body: text };
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.origin);
    if (url.pathname.startsWith("/api/")) {
      await this.api(decodeURIComponent(url.pathname.slice("/api/".length)), url, req, res);
    } else if (url.pathname.startsWith("/response/") && req.method === "POST") {
      await this.responseUrl(url.pathname.slice("/response/".length), req, res);
    } else if (this.opts.onOtherRequest) {
      await this.opts.onOtherRequest(req, res);
    } else {
      send(res, 404, { ok: false, error: "not_found", path: url.pathname });
    }
  }

  private async api(method: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const contentType = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
    let args: Obj = Object.fromEntries(url.searchParams);
    let parseError: string | undefined;
    if (raw.length > 0) {
      if (contentType === "application/json") {
        try {
          const parsed: unknown = JSON.parse(raw);
          if (isObj(parsed)) args = { ...args, ...parsed };
          else parseError = "invalid_json";
        } catch {
          parseError = "invalid_json";
        }
      } else if (contentType === "application/x-www-form-urlencoded" || contentType === "") {
        args = { ...args, ...Object.fromEntries(new URLSearchParams(raw)) };
      } else {
        parseError = "invalid_form_data";
      }
    }
    for (const key of JSON_FIELDS) {
      const v = args[key];
      if (typeof v === "string" && v !== "") {
        try {
          args[key] = JSON.parse(v);
        } catch {
          // Left as the raw string: the handler answers with the method's own format error.
        }
      }
    }
    const auth = req.headers.authorization;
    const token = auth?.startsWith("Bearer ") ? auth.slice("Bearer ".length).trim() : str(args.token);
    delete args.token;

    const fault = this.takeFault(method);
    if (fault?.reset) {
      const response = fault.effect ? this.dispatch(method, args, token) : {};
      if (fault.delayMs) await this.delay(fault.delayMs);
      req.socket.destroy();
      this.record({ method, args, at: Date.now(), response, status: 0 });
      return;
    }
    const failing = fault !== undefined && (fault.status !== undefined || fault.error !== undefined);
    let answer: { status: number; body: Obj; headers?: Record<string, string> };
    if (failing && !fault.effect) {
      answer = faultAnswer(fault);
    } else {
      answer = {
        status: 200,
        body: parseError ? { ok: false, error: parseError } : this.dispatch(method, args, token),
      };
      if (failing) answer = faultAnswer(fault);
    }
    if (fault?.delayMs) await this.delay(fault.delayMs);
    send(res, answer.status, answer.body, answer.headers);
    this.record({ method, args, at: Date.now(), response: answer.body, status: answer.status });
  }

  private dispatch(method: string, args: Obj, token: string | undefined): Obj {
    // The one method for the app-level token; Slack refuses either token on the other's methods.
    if (method === "apps.connections.open") {
      if (!token) return { ok: false, error: "not_authed" };
      if (!this.socket) return { ok: false, error: "invalid_auth" };
      if (token === this.opts.botToken) return { ok: false, error: "not_allowed_token_type" };
      if (token !== this.socket.appToken) return { ok: false, error: "invalid_auth" };
      return this.socket.connectionsOpen();
    }
    const handler = this.handlers.get(method);
    if (!handler) return { ok: false, error: "unknown_method", req_method: method };
    if (!token) return { ok: false, error: "not_authed" };
    if (token === this.socket?.appToken) return { ok: false, error: "not_allowed_token_type" };
    if (token !== this.opts.botToken) return { ok: false, error: "invalid_auth" };
    try {
      return handler(args);
    } catch (err) {
      if (err instanceof Refusal) return { ok: false, error: err.code, ...err.extra };
      throw err;
    }
  }

  private takeFault(method: string): SlackFault | undefined {
    const queue = this.faults.get(method);
    const head = queue?.[0];
    if (!queue || !head) return undefined;
    head.remaining -= 1;
    if (head.remaining <= 0) queue.shift();
    return head.fault;
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.pendingDelays.delete(t);
        resolve();
      }, ms);
      this.pendingDelays.add(t);
    });
  }

  private record(call: SlackCall): void {
    this.calls.push(call);
    for (const w of [...this.waiters]) {
      if (w.method === call.method && w.pred(call)) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve(call);
      }
    }
    for (const l of this.listeners) l(call);
  }

  // ---- helpers --------------------------------------------------------------------

  /** Strictly increasing ts from the wall clock, "1733000000.000100"-style. */
  private nextTs(): string {
    const now = BigInt(Date.now()) * 1000n;
    this.lastMicros = now > this.lastMicros ? now : this.lastMicros + 1n;
    const secs = this.lastMicros / 1_000_000n;
    const micros = this.lastMicros % 1_000_000n;
    return `${secs}.${String(micros).padStart(6, "0")}`;
  }

  private newHash(): string {
    return `${Math.floor(Date.now() / 1000)}.${randomBytes(4).toString("hex")}`;
  }

  private newViewId(): string {
    this.seq += 1;
    return `V${String(this.seq).padStart(10, "0")}`;
  }

  private newResponseUrl(target: ResponseTarget): string {
    const id = randomBytes(12).toString("hex");
    this.responseTargets.set(id, target);
    return `${this.origin}/response/${id}`;
  }

  private knownUser(id: string): boolean {
    return !this.knowsUsers || this.users.has(id);
  }

  private dmFor(userIds: string[]): { id: string; existed: boolean } {
    const members = [...new Set(userIds.filter((u) => u !== this.botUserId))].sort();
    const key = members.join(",");
    const existing = this.dmByMembers.get(key);
    if (existing) return { id: existing, existed: true };
    this.seq += 1;
    const id = `${members.length > 1 ? "G" : "D"}${String(this.seq).padStart(10, "0")}`;
    this.dmByMembers.set(key, id);
    this.dmMembers.set(id, members);
    return { id, existed: false };
  }

  /** The channel argument, resolved: a user id means the app's DM with that person. */
  private channelArg(args: Obj, key = "channel"): string {
    const raw = str(args[key])?.trim();
    if (!raw) throw new Refusal("channel_not_found");
    if (this.dmMembers.has(raw)) return raw;
    if (/^[UW][A-Z0-9]+$/.test(raw)) {
      if (!this.knownUser(raw)) throw new Refusal("channel_not_found");
      return this.dmFor([raw]).id;
    }
    if (this.allowedChannels && !this.allowedChannels.has(raw)) throw new Refusal("channel_not_found");
    return raw;
  }

  private find(channel: string, ts: string | undefined): SimMessage | undefined {
    if (ts === undefined) return undefined;
    return this.msgs.find((m) => m.channel === channel && m.ts === ts && !m.deleted);
  }

  /** text/blocks checked as Slack checks them; `requireContent` for the posting methods. */
  private content(
    args: Obj,
    requireContent: boolean,
  ): { text: string | undefined; blocks: unknown[] | undefined } {
    const text = str(args.text);
    let blocks: unknown[] | undefined;
    if (args.blocks !== undefined && args.blocks !== "") {
      if (!Array.isArray(args.blocks)) throw new Refusal("invalid_blocks_format");
      blocks = args.blocks;
    }
    const hasAttachments = Array.isArray(args.attachments) && args.attachments.length > 0;
    if (requireContent && !text && !(blocks && blocks.length > 0) && !hasAttachments) {
      throw new Refusal("no_text");
    }
    if (text !== undefined && text.length > BLOCK_KIT_LIMITS.messageText) throw new Refusal("msg_too_long");
    if (blocks) {
      const problems = blockKitProblems(blocks, "message");
      if (problems.length > 0) throw invalidBlocks(problems);
    }
    return { text, blocks: blocks ? this.withIds(blocks) : undefined };
  }

  private metadataArg(args: Obj): unknown {
    const md = args.metadata;
    if (md === undefined || md === "") return undefined;
    if (!isObj(md) || typeof md.event_type !== "string" || !isObj(md.event_payload)) {
      throw new Refusal("invalid_metadata_format");
    }
    return md;
  }

  /** Slack gives every block a block_id and every element an action_id when the app did not. */
  private withIds(blocks: unknown[]): unknown[] {
    const copy = structuredClone(blocks);
    const rid = () => randomBytes(3).toString("base64url");
    for (const b of copy) {
      if (!isObj(b)) continue;
      if (b.block_id === undefined) b.block_id = rid();
      const elements = [...(Array.isArray(b.elements) ? b.elements : []), b.accessory];
      for (const el of elements) {
        if (isObj(el) && el.action_id === undefined && el.type !== "image" && !isTextObject(el)) {
          el.action_id = rid();
        }
      }
      if (b.type === "input" && isObj(b.element) && b.element.action_id === undefined)
        b.element.action_id = rid();
    }
    return copy;
  }

  /** A message as the Web API shows it (history, replies, postMessage's answer). */
  private wire(m: SimMessage, withMetadata: boolean): Obj {
    const out: Obj = { type: "message", text: m.text, user: m.user, ts: m.ts, team: this.teamId };
    if (m.user === this.botUserId) {
      out.bot_id = SIM_BOT_ID;
      out.app_id = SIM_APP_ID;
    }
    if (m.blocks) out.blocks = m.blocks;
    if (m.thread_ts) {
      out.thread_ts = m.thread_ts;
      out.parent_user_id = this.find(m.channel, m.thread_ts)?.user;
    } else {
      const replies = this.threadReplies(m);
      if (replies.length > 0) {
        const who = [...new Set(replies.map((r) => r.user).filter((u): u is string => !!u))];
        Object.assign(out, {
          thread_ts: m.ts,
          reply_count: replies.length,
          reply_users_count: who.length,
          latest_reply: replies.at(-1)!.ts,
          reply_users: who,
        });
      }
    }
    const edited = this.editedAt.get(`${m.channel}/${m.ts}`);
    if (edited) out.edited = { user: m.user, ts: edited };
    if (withMetadata && m.metadata !== undefined) out.metadata = m.metadata;
    return structuredClone(out);
  }

  private threadReplies(parent: SimMessage): SimMessage[] {
    return this.msgs
      .filter(
        (r) => r.channel === parent.channel && r.thread_ts === parent.ts && !r.deleted && !r.ephemeral_for,
      )
      .sort(compareTs);
  }

  private store(m: SimMessage): SimMessage {
    this.msgs.push(m);
    return m;
  }

  // ---- methods --------------------------------------------------------------------

  private authTest(): Obj {
    return {
      ok: true,
      url: `https://${this.teamDomain}.slack.com/`,
      team: this.teamDomain,
      user: this.users.get(this.botUserId)?.name ?? "countersign",
      team_id: this.teamId,
      user_id: this.botUserId,
      bot_id: SIM_BOT_ID,
      is_enterprise_install: false,
    };
  }

  private postMessage(args: Obj): Obj {
    const channel = this.channelArg(args);
    const { text, blocks } = this.content(args, true);
    const metadata = this.metadataArg(args);
    const threadTs = this.threadArg(channel, args);
    const m = this.store({
      channel,
      ts: this.nextTs(),
      text: text ?? "",
      edits: 0,
      user: this.botUserId,
      ...(threadTs ? { thread_ts: threadTs } : {}),
      ...(blocks ? { blocks } : {}),
      ...(metadata !== undefined ? { metadata } : {}),
    });
    return { ok: true, channel, ts: m.ts, message: this.wire(m, true) };
  }

  /** A reply to a reply joins the parent's thread, as in Slack. */
  private threadArg(channel: string, args: Obj): string | undefined {
    const threadTs = str(args.thread_ts);
    if (!threadTs) return undefined;
    const parent = this.find(channel, threadTs);
    if (!parent || parent.ephemeral_for) throw new Refusal("thread_not_found");
    return parent.thread_ts ?? parent.ts;
  }

  private update(args: Obj): Obj {
    const channel = this.channelArg(args);
    const m = this.find(channel, str(args.ts));
    if (!m || m.ephemeral_for) throw new Refusal("message_not_found");
    if (m.user !== this.botUserId) throw new Refusal("cant_update_message");
    const { text, blocks } = this.content(args, false);
    if (text === undefined && blocks === undefined && args.attachments === undefined)
      throw new Refusal("no_text");
    const metadata = this.metadataArg(args);
    // Slack keeps what the update leaves out: text-only updates keep the blocks and vice versa.
    if (text !== undefined) m.text = text;
    if (blocks !== undefined) m.blocks = blocks;
    if (metadata !== undefined) m.metadata = metadata;
    m.edits += 1;
    this.editedAt.set(`${m.channel}/${m.ts}`, this.nextTs());
    return { ok: true, channel, ts: m.ts, text: m.text, message: this.wire(m, true) };
  }

  private deleteMessage(args: Obj): Obj {
    const channel = this.channelArg(args);
    const m = this.find(channel, str(args.ts));
    if (!m || m.ephemeral_for) throw new Refusal("message_not_found");
    if (m.user !== this.botUserId) throw new Refusal("cant_delete_message");
    m.deleted = true;
    return { ok: true, channel, ts: m.ts };
  }

  private postEphemeral(args: Obj): Obj {
    const channel = this.channelArg(args);
    const user = str(args.user);
    if (!user || !this.knownUser(user)) throw new Refusal("user_not_in_channel");
    const { text, blocks } = this.content(args, true);
    const threadTs = str(args.thread_ts);
    const m = this.store({
      channel,
      ts: this.nextTs(),
      text: text ?? "",
      edits: 0,
      user: this.botUserId,
      ephemeral_for: user,
      ...(threadTs ? { thread_ts: threadTs } : {}),
      ...(blocks ? { blocks } : {}),
    });
    return { ok: true, message_ts: m.ts };
  }

  private getPermalink(args: Obj): Obj {
    const channel = this.channelArg(args);
    const m = this.find(channel, str(args.message_ts));
    if (!m || m.ephemeral_for) throw new Refusal("message_not_found");
    const base = `${this.origin}/archives/${channel}/p${m.ts.replace(".", "")}`;
    const permalink = m.thread_ts ? `${base}?thread_ts=${m.thread_ts}&cid=${channel}` : base;
    return { ok: true, channel, permalink };
  }

  private viewArg(args: Obj, surface: "modal" | "home"): Record<string, unknown> {
    if (!isObj(args.view))
      throw invalidArguments(["missing required field: view (a JSON view object) [json-pointer:/view]"]);
    const problems = viewProblems(args.view, surface);
    if (problems.length > 0) throw invalidArguments(problems);
    const view = structuredClone(args.view);
    if (Array.isArray(view.blocks)) view.blocks = this.withIds(view.blocks);
    return view;
  }

  private consumeTrigger(args: Obj): Trigger {
    const id = str(args.trigger_id);
    const t = id ? this.triggers.get(id) : undefined;
    if (!t) throw new Refusal("invalid_trigger_id");
    if (t.used) throw new Refusal("exchanged_trigger_id");
    if (Date.now() - t.issuedAt > this.triggerTtlMs) throw new Refusal("expired_trigger_id");
    t.used = true;
    return t;
  }

  private viewAnswer(v: SimView): Obj {
    return { ok: true, view: viewObject(v, this.teamId) };
  }

  private viewsOpen(args: Obj): Obj {
    const view = this.viewArg(args, "modal");
    const trigger = this.consumeTrigger(args);
    const id = this.newViewId();
    const v: SimView = {
      id,
      user: trigger.user ?? "",
      trigger_id: str(args.trigger_id),
      view,
      hash: this.newHash(),
      root_view_id: id,
      kind: "modal",
    };
    this.viewList.push(v);
    return this.viewAnswer(v);
  }

  private viewsUpdate(args: Obj): Obj {
    const viewId = str(args.view_id);
    const externalId = str(args.external_id);
    if (!viewId && !externalId) {
      throw invalidArguments(["view_id or external_id is required [json-pointer:/view_id]"]);
    }
    const v = viewId
      ? this.viewList.find((x) => x.id === viewId)
      : this.viewList.findLast((x) => x.view.external_id === externalId);
    if (!v || v.closed) throw new Refusal("not_found");
    const hash = str(args.hash);
    if (hash && hash !== v.hash) throw new Refusal("hash_conflict");
    v.view = this.viewArg(args, v.kind);
    v.hash = this.newHash();
    return this.viewAnswer(v);
  }

  private viewsPush(args: Obj): Obj {
    const view = this.viewArg(args, "modal");
    const trigger = this.consumeTrigger(args);
    const user = trigger.user ?? "";
    const top = this.viewList.findLast((x) => x.kind === "modal" && x.user === user && !x.closed);
    const id = this.newViewId();
    let root = id;
    if (top) {
      root = top.root_view_id;
      const depth = this.viewList.filter((x) => x.root_view_id === root && !x.closed).length;
      // Slack allows a stack of three modals.
      if (depth >= 3) throw new Refusal("push_limit_reached");
    }
    const v: SimView = {
      id,
      user,
      trigger_id: str(args.trigger_id),
      view,
      hash: this.newHash(),
      root_view_id: root,
      kind: "modal",
      ...(top ? { previous_view_id: top.id } : {}),
    };
    this.viewList.push(v);
    return this.viewAnswer(v);
  }

  private viewsPublish(args: Obj): Obj {
    const user = str(args.user_id);
    if (!user || !this.knownUser(user)) throw new Refusal("user_not_found");
    const view = this.viewArg(args, "home");
    const existing = this.viewList.find((x) => x.kind === "home" && x.user === user);
    const hash = str(args.hash);
    if (existing && hash && hash !== existing.hash) throw new Refusal("hash_conflict");
    if (existing) {
      existing.view = view;
      existing.hash = this.newHash();
      return this.viewAnswer(existing);
    }
    const id = this.newViewId();
    const v: SimView = { id, user, view, hash: this.newHash(), root_view_id: id, kind: "home" };
    this.viewList.push(v);
    return this.viewAnswer(v);
  }

  private usersInfo(args: Obj): Obj {
    const u = this.users.get(str(args.user) ?? "");
    if (!u) throw new Refusal("user_not_found");
    const realName = u.real_name ?? u.name;
    return {
      ok: true,
      user: {
        id: u.id,
        team_id: u.team_id,
        name: u.name,
        deleted: false,
        real_name: realName,
        tz: u.tz ?? "Etc/UTC",
        is_admin: false,
        is_owner: false,
        is_restricted: u.is_restricted ?? false,
        is_ultra_restricted: u.is_ultra_restricted ?? false,
        is_bot: u.is_bot ?? false,
        is_app_user: false,
        profile: {
          real_name: realName,
          display_name: u.name,
          ...(u.email !== undefined ? { email: u.email } : {}),
        },
      },
    };
  }

  private usergroupUsers(args: Obj): Obj {
    const members = this.usergroups.get(str(args.usergroup) ?? "");
    if (!members) throw new Refusal("no_such_subteam");
    return { ok: true, users: [...members] };
  }

  private conversationsOpen(args: Obj): Obj {
    const raw = args.users;
    const ids = (Array.isArray(raw) ? raw.map(String) : (str(raw) ?? "").split(","))
      .map((s) => s.trim())
      .filter(Boolean);
    if (ids.length === 0) {
      const channel = str(args.channel);
      if (channel && this.dmMembers.has(channel)) {
        return { ok: true, no_op: true, already_open: true, channel: { id: channel } };
      }
      throw new Refusal(channel ? "channel_not_found" : "users_list_not_supplied");
    }
    for (const id of ids) if (!this.knownUser(id)) throw new Refusal("user_not_found");
    if (ids.filter((id) => id !== this.botUserId).length > 8) throw new Refusal("too_many_users");
    const { id, existed } = this.dmFor(ids);
    const channel: Obj = { id };
    if (flag(args.return_im)) Object.assign(channel, { is_im: id.startsWith("D"), user: ids[0] });
    return existed ? { ok: true, no_op: true, already_open: true, channel } : { ok: true, channel };
  }

  private history(args: Obj): Obj {
    const channel = this.channelArg(args);
    const limit = clampLimit(args.limit, 100);
    const inclusive = flag(args.inclusive);
    const oldest = str(args.oldest) ? tsKey(str(args.oldest)!) : undefined;
    let latest = str(args.latest) ? tsKey(str(args.latest)!) : undefined;
    let latestInclusive = inclusive;
    const cursor = decodeCursor(args.cursor, "before");
    if (cursor !== undefined) {
      latest = cursor;
      latestInclusive = false;
    }
    const withMetadata = flag(args.include_all_metadata);
    const all = this.msgs
      .filter((m) => m.channel === channel && !m.thread_ts && !m.ephemeral_for && !m.deleted)
      .filter((m) => inRange(tsKey(m.ts), oldest, inclusive, latest, latestInclusive))
      .sort(compareTs)
      .reverse();
    const page = all.slice(0, limit);
    const hasMore = all.length > limit;
    return {
      ok: true,
      messages: page.map((m) => this.wire(m, withMetadata)),
      has_more: hasMore,
      pin_count: 0,
      channel_actions_ts: null,
      channel_actions_count: 0,
      response_metadata: { next_cursor: hasMore ? encodeCursor("before", page.at(-1)!.ts) : "" },
    };
  }

  private replies(args: Obj): Obj {
    const channel = this.channelArg(args);
    const target = this.find(channel, str(args.ts));
    if (!target || target.ephemeral_for) throw new Refusal("thread_not_found");
    const parent = target.thread_ts ? this.find(channel, target.thread_ts) : target;
    if (!parent) throw new Refusal("thread_not_found");
    const limit = clampLimit(args.limit, 1000);
    const inclusive = flag(args.inclusive);
    let oldest = str(args.oldest) ? tsKey(str(args.oldest)!) : undefined;
    let oldestInclusive = inclusive;
    const latest = str(args.latest) ? tsKey(str(args.latest)!) : undefined;
    const cursor = decodeCursor(args.cursor, "after");
    if (cursor !== undefined) {
      oldest = cursor;
      oldestInclusive = false;
    }
    const withMetadata = flag(args.include_all_metadata);
    const all = [parent, ...this.threadReplies(parent)].filter((m) =>
      inRange(tsKey(m.ts), oldest, oldestInclusive, latest, inclusive),
    );
    const page = all.slice(0, limit);
    const hasMore = all.length > limit;
    return {
      ok: true,
      messages: page.map((m) => this.wire(m, withMetadata)),
      has_more: hasMore,
      response_metadata: { next_cursor: hasMore ? encodeCursor("after", page.at(-1)!.ts) : "" },
    };
  }

  // ---- what Slack does with the app's answers ----------------------------------------

  /** A POST to a response URL handed out with a click or a command. */
  private async responseUrl(id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const target = this.responseTargets.get(id);
    let args: Obj = {};
    let answer: { status: number; body: Obj };
    try {
      const parsed: unknown = JSON.parse(raw);
      if (!isObj(parsed)) throw new Error("not an object");
      args = parsed;
      answer = target
        ? this.applyResponse(target, args)
        : { status: 404, body: { ok: false, error: "expired_url" } };
    } catch (err) {
      answer =
        err instanceof Refusal
          ? { status: 400, body: { ok: false, error: err.code, ...err.extra } }
          : { status: 400, body: { ok: false, error: "invalid_payload" } };
    }
    send(res, answer.status, answer.body);
    this.record({
      method: "response_url",
      args,
      at: Date.now(),
      response: answer.body,
      status: answer.status,
    });
  }

  private applyResponse(target: ResponseTarget, args: Obj): { status: number; body: Obj } {
    const original = target.messageTs ? this.find(target.channel, target.messageTs) : undefined;
    if (flag(args.delete_original)) {
      if (!original) return { status: 404, body: { ok: false, error: "message_not_found" } };
      original.deleted = true;
      return { status: 200, body: { ok: true } };
    }
    const { text, blocks } = this.content(args, true);
    if (flag(args.replace_original)) {
      if (!original) return { status: 404, body: { ok: false, error: "message_not_found" } };
      original.text = text ?? "";
      if (blocks !== undefined) original.blocks = blocks;
      else delete original.blocks;
      original.edits += 1;
      this.editedAt.set(`${original.channel}/${original.ts}`, this.nextTs());
      return { status: 200, body: { ok: true } };
    }
    const threadTs = str(args.thread_ts);
    this.store({
      channel: target.channel,
      ts: this.nextTs(),
      text: text ?? "",
      edits: 0,
      user: this.botUserId,
      ...(args.response_type === "in_channel" ? {} : { ephemeral_for: target.user }),
      ...(threadTs ? { thread_ts: threadTs } : {}),
      ...(blocks ? { blocks } : {}),
    });
    return { status: 200, body: { ok: true } };
  }

  private applyCommandAck(channel: string, user: string, body: string): void {
    if (body.trim() === "") return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = { text: body };
    }
    if (!isObj(parsed) || (parsed.text === undefined && parsed.blocks === undefined)) return;
    try {
      this.applyResponse({ channel, user }, parsed);
    } catch {
      // Slack shows the person an error instead of an invalid answer; nothing is stored.
    }
  }

  private applyViewAnswer(view: SimView, body: string): void {
    let answer: unknown;
    try {
      answer = body.trim() === "" ? {} : JSON.parse(body);
    } catch {
      answer = {};
    }
    const action = isObj(answer) ? answer.response_action : undefined;
    if (action === "errors") return;
    if (
      (action === "update" || action === "push") &&
      isObj(answer) &&
      viewProblems(answer.view, "modal").length === 0
    ) {
      const next = structuredClone(answer.view as Obj);
      if (Array.isArray(next.blocks)) next.blocks = this.withIds(next.blocks);
      if (action === "update") {
        view.view = next;
        view.hash = this.newHash();
      } else {
        const id = this.newViewId();
        this.viewList.push({
          id,
          user: view.user,
          view: next,
          hash: this.newHash(),
          root_view_id: view.root_view_id,
          previous_view_id: view.id,
          kind: "modal",
        });
      }
      return;
    }
    if (action === "clear") {
      for (const v of this.viewList) if (v.root_view_id === view.root_view_id) v.closed = true;
      return;
    }
    view.closed = true;
  }
}

function isTextObject(el: Obj): boolean {
  return el.type === "plain_text" || el.type === "mrkdwn";
}

function faultAnswer(fault: SlackFault): { status: number; body: Obj; headers?: Record<string, string> } {
  const status = fault.status ?? (fault.error === "ratelimited" ? 429 : 200);
  if (status === 429) {
    return {
      status,
      body: { ok: false, error: fault.error ?? "ratelimited" },
      headers: { "retry-after": String(fault.retryAfter ?? 1) },
    };
  }
  return {
    status,
    body: { ok: false, error: fault.error ?? (status >= 500 ? "internal_error" : "fatal_error") },
  };
}

function send(res: ServerResponse, status: number, body: Obj, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
  res.end(JSON.stringify(body));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function clampLimit(v: unknown, fallback: number): number {
  const n = Number(str(v));
  if (!Number.isFinite(n) || n <= 0) return fallback;
  return Math.min(Math.floor(n), 1000);
}

function inRange(
  key: bigint,
  oldest: bigint | undefined,
  oldestInclusive: boolean,
  latest: bigint | undefined,
  latestInclusive: boolean,
): boolean {
  if (oldest !== undefined && (oldestInclusive ? key < oldest : key <= oldest)) return false;
  if (latest !== undefined && (latestInclusive ? key > latest : key >= latest)) return false;
  return true;
}

function encodeCursor(dir: "before" | "after", ts: string): string {
  return Buffer.from(`${dir}:${ts}`).toString("base64url");
}

function decodeCursor(v: unknown, dir: "before" | "after"): bigint | undefined {
  const s = str(v);
  if (!s) return undefined;
  const decoded = Buffer.from(s, "base64url").toString("utf8");
  if (!decoded.startsWith(`${dir}:`)) throw new Refusal("invalid_cursor");
  return tsKey(decoded.slice(dir.length + 1));
}
