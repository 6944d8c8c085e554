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
 * `SlackApiSim` is the facade: it owns the HTTP server, the call log and the waiters, and
 * hands each Web API method to its family under web-api/ (chat, views, users,
 * conversations, auth), each a set of functions over one explicit `SimState`. What a
 * person does is in web-api/person.ts, fault injection in web-api/faults.ts.
 *
 * node:http only: it starts in milliseconds and adds no dependency.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { SIM_APP_ID, SIM_BOT_USER_ID } from "./interactions.js";
import { SocketModeSim } from "./socket-mode.js";
import { appsConnectionsOpen, authTest, botTokenRefusal } from "./web-api/auth.js";
import * as chat from "./web-api/chat.js";
import { conversationsOpen, history, replies } from "./web-api/conversations.js";
import { type FaultAnswer, FaultQueues, faultAnswer, isFailing } from "./web-api/faults.js";
import { decodeApiCall, readBody, send } from "./web-api/http.js";
import * as person from "./web-api/person.js";
import { answerResponseUrl } from "./web-api/responses.js";
import { createState, dmFor, type Obj, Refusal, type SimState } from "./web-api/state.js";
import type {
  SendResult,
  SimMessage,
  SimUser,
  SimView,
  SlackApiOptions,
  SlackCall,
  SlackFault,
} from "./web-api/types.js";
import { usergroupUsers, usersInfo } from "./web-api/users.js";
import { viewsOpen, viewsPublish, viewsPush, viewsUpdate } from "./web-api/views.js";

export type {
  ClickOptions,
  ClickViewOptions,
  CommandOptions,
  OpenHomeOptions,
  SubmitViewOptions,
} from "./web-api/person.js";
export type {
  AppTarget,
  MessageBlock,
  SendResult,
  SimMessage,
  SimUser,
  SimView,
  SlackApiOptions,
  SlackCall,
  SlackFault,
} from "./web-api/types.js";

type MethodHandler = (state: SimState, args: Obj) => Obj;

/** The bot-token methods the stand-in answers; any other is `unknown_method`. */
const METHODS: ReadonlyMap<string, MethodHandler> = new Map<string, MethodHandler>([
  ["auth.test", (state) => authTest(state)],
  ["chat.postMessage", chat.postMessage],
  ["chat.update", chat.update],
  ["chat.delete", chat.deleteMessage],
  ["chat.postEphemeral", chat.postEphemeral],
  ["chat.getPermalink", chat.getPermalink],
  ["views.open", viewsOpen],
  ["views.update", viewsUpdate],
  ["views.push", viewsPush],
  ["views.publish", viewsPublish],
  ["users.info", usersInfo],
  ["usergroups.users.list", usergroupUsers],
  ["conversations.open", conversationsOpen],
  ["conversations.history", history],
  ["conversations.replies", replies],
]);

interface Waiter {
  method: string;
  matches: (call: SlackCall) => boolean;
  resolve: (call: SlackCall) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
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

  private readonly options: SlackApiOptions;
  private readonly server: Server;
  private readonly state: SimState;
  private readonly faults = new FaultQueues();
  private readonly waiters = new Set<Waiter>();
  private readonly listeners = new Set<(call: SlackCall) => void>();
  private readonly pendingDelays = new Set<NodeJS.Timeout>();

  private constructor(options: SlackApiOptions, server: Server, origin: string) {
    this.options = options;
    this.server = server;
    this.origin = origin;
    this.url = `${origin}/api/`;
    this.botUserId = options.botUserId ?? SIM_BOT_USER_ID;
    this.teamId = options.teamId;
    this.socket = options.socketMode
      ? new SocketModeSim({ ...options.socketMode, appId: SIM_APP_ID }, server, origin.replace(/^http/, "ws"))
      : undefined;
    this.state = createState(options, origin, this.socket);
  }

  static async start(options: SlackApiOptions): Promise<SlackApiSim> {
    const host = options.host ?? "127.0.0.1";
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
      server.listen(options.port ?? 0, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    const hostPart = host.includes(":") ? `[${host}]` : host;
    sim = new SlackApiSim(options, server, `http://${hostPart}:${port}`);
    return sim;
  }

  // ---- state for tests and the demo page ----------------------------------------

  /** Current state after updates, thread replies and ephemerals included, in posting order. */
  messages(channel?: string): SimMessage[] {
    const { messages } = this.state;
    return structuredClone(channel === undefined ? messages : messages.filter((m) => m.channel === channel));
  }

  views(): SimView[] {
    return structuredClone(this.state.views);
  }

  /** The DM channel id the app has with one person (or a group), opening it if needed. */
  dmChannel(userIds: string | string[]): string {
    return dmFor(this.state, Array.isArray(userIds) ? userIds : [userIds]).id;
  }

  addUser(user: SimUser): void {
    this.state.users.set(user.id, { ...user });
    this.state.knowsUsers = true;
  }

  setUsergroup(id: string, users: string[]): void {
    this.state.usergroups.set(id, [...users]);
  }

  /**
   * Fault injection for the next `times` calls of `method` (default 1): an HTTP status
   * (429 with Retry-After seconds, 500, 503), a Slack error ("channel_not_found",
   * "not_in_channel", "invalid_auth", "ratelimited"), or a delay in ms. Faults queue up
   * in the order given.
   */
  failNext(method: string, fault: SlackFault, times = 1): void {
    this.faults.add(method, fault, times);
  }

  /**
   * Resolves when a call of `method` matching `pred` has been answered (or already is in
   * `calls`); rejects after timeoutMs (default 5000) naming what it waited for.
   */
  waitForCall(method: string, pred?: (c: SlackCall) => boolean, timeoutMs = 5000): Promise<SlackCall> {
    const matches = (call: SlackCall): boolean => {
      if (call.method !== method) return false;
      try {
        return pred ? pred(call) : true;
      } catch {
        return false;
      }
    };
    const found = this.calls.find(matches);
    if (found) return Promise.resolve(found);
    return new Promise<SlackCall>((resolve, reject) => {
      const waiter: Waiter = {
        method,
        matches,
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
    return person.newTriggerId(this.state, user);
  }

  // ---- what a person does in Slack ----------------------------------------------

  /**
   * Clicks a button: finds the message and the button's value by action_id, issues a
   * trigger id and a response URL, and sends the signed block_actions to the app.
   */
  click(options: person.ClickOptions): Promise<SendResult & { triggerId: string }> {
    return person.click(this.state, options);
  }

  /**
   * Clicks a button on a view (App Home, an open modal) as its person: a signed
   * block_actions whose `view` is that view (`type: "home"` on App Home).
   */
  clickView(options: person.ClickViewOptions): Promise<SendResult & { triggerId: string }> {
    return person.clickView(this.state, options);
  }

  /**
   * Submits an open modal with `values` (block_id -> action_id -> {type, value}), then
   * applies the app's answer as Slack does: `errors` keeps the view open, `update`
   * replaces it, `push` stacks a new one, `clear` closes the stack, anything else closes it.
   */
  submitView(options: person.SubmitViewOptions): Promise<SendResult> {
    return person.submitView(this.state, options);
  }

  /**
   * Runs a slash command; an ack body with text is shown to the caller ephemerally (or
   * in the channel with `response_type: "in_channel"`), as Slack does.
   */
  command(options: person.CommandOptions): Promise<SendResult & { triggerId: string; channelId: string }> {
    return person.command(this.state, options);
  }

  /** Opens the app's Home tab: sends the app_home_opened event. */
  openHome(options: person.OpenHomeOptions): Promise<SendResult> {
    return person.openHome(this.state, options);
  }

  async close(): Promise<void> {
    for (const timer of this.pendingDelays) clearTimeout(timer);
    this.pendingDelays.clear();
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error(`Slack simulator closed while waiting for a ${waiter.method} call`));
    }
    this.waiters.clear();
    await this.socket?.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---- HTTP ---------------------------------------------------------------------

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.origin);
    if (url.pathname.startsWith("/api/")) {
      await this.api(decodeURIComponent(url.pathname.slice("/api/".length)), url, req, res);
    } else if (url.pathname.startsWith("/response/") && req.method === "POST") {
      await this.responseUrl(url.pathname.slice("/response/".length), req, res);
    } else if (this.options.onOtherRequest) {
      await this.options.onOtherRequest(req, res);
    } else {
      send(res, 404, { ok: false, error: "not_found", path: url.pathname });
    }
  }

  private async api(method: string, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const { args, token, parseError } = decodeApiCall(url, req, raw);
    const fault = this.faults.take(method);
    if (fault?.reset) {
      const response = fault.effect ? this.dispatch(method, args, token) : {};
      if (fault.delayMs) await this.delay(fault.delayMs);
      req.socket.destroy();
      this.record({ method, args, at: Date.now(), response, status: 0 });
      return;
    }
    let answer: FaultAnswer;
    if (isFailing(fault) && !fault.effect) {
      answer = faultAnswer(fault);
    } else {
      answer = {
        status: 200,
        body: parseError ? { ok: false, error: parseError } : this.dispatch(method, args, token),
      };
      if (isFailing(fault)) answer = faultAnswer(fault);
    }
    if (fault?.delayMs) await this.delay(fault.delayMs);
    send(res, answer.status, answer.body, answer.headers);
    this.record({ method, args, at: Date.now(), response: answer.body, status: answer.status });
  }

  /** A POST to a response URL handed out with a click or a command. */
  private async responseUrl(id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const { args, status, body } = answerResponseUrl(this.state, id, raw);
    send(res, status, body);
    this.record({ method: "response_url", args, at: Date.now(), response: body, status });
  }

  private dispatch(method: string, args: Obj, token: string | undefined): Obj {
    if (method === "apps.connections.open") return appsConnectionsOpen(this.state, token);
    const handler = METHODS.get(method);
    if (!handler) return { ok: false, error: "unknown_method", req_method: method };
    const refusal = botTokenRefusal(this.state, token);
    if (refusal) return refusal;
    try {
      return handler(this.state, args);
    } catch (err) {
      if (err instanceof Refusal) return { ok: false, error: err.code, ...err.extra };
      throw err;
    }
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pendingDelays.delete(timer);
        resolve();
      }, ms);
      this.pendingDelays.add(timer);
    });
  }

  private record(call: SlackCall): void {
    this.calls.push(call);
    for (const waiter of [...this.waiters]) {
      if (waiter.method === call.method && waiter.matches(call)) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        waiter.resolve(call);
      }
    }
    for (const listener of this.listeners) listener(call);
  }
}
