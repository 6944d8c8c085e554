/**
 * The simulated workspace's state and the rules every API family shares: how a channel
 * argument resolves, how message content is checked, how a message looks on the wire.
 *
 * The families (chat, views, conversations, ...) are plain functions over one explicit
 * `SimState`, rather than methods reaching into a class's private fields, so each family
 * can be read on its own and the facade (`SlackApiSim`) only wires them to HTTP.
 */
import { randomBytes } from "node:crypto";
import { BLOCK_KIT_LIMITS, blockKitProblems } from "../blockkit.js";
import { SIM_APP_ID, SIM_BOT_ID, SIM_BOT_USER_ID } from "../interactions.js";
import type { SocketModeSim } from "../socket-mode.js";
import type { MessageBlock, SimMessage, SimUser, SimView, SlackApiOptions } from "./types.js";

export type Obj = Record<string, unknown>;

/**
 * A method's arguments as they arrive on the wire: the field names of the
 * `@slack/web-api` argument type (so a misspelt field fails to compile), each value
 * still unknown because a form body carries strings and the handler checks them.
 */
export type WireArgs<T> = { [K in T extends unknown ? keyof T : never]?: unknown };

/** Where a response URL posts: the channel and person of the click or command that made it. */
export interface ResponseTarget {
  channel: string;
  user: string;
  messageTs?: string;
}

export interface Trigger {
  user: string | undefined;
  issuedAt: number;
  used: boolean;
}

export interface SimState {
  /** `http://HOST:PORT`, for response URLs and permalinks. */
  readonly origin: string;
  readonly botToken: string;
  readonly botUserId: string;
  readonly teamId: string;
  readonly teamDomain: string;
  readonly triggerTtlMs: number;
  /** When set, other channel ids are `channel_not_found` (DMs are always reachable). */
  readonly allowedChannels: Set<string> | undefined;
  readonly users: Map<string, SimUser>;
  /** Once users are given, unknown ones are refused everywhere, not only by users.info. */
  knowsUsers: boolean;
  readonly usergroups: Map<string, string[]>;
  /** Every message ever posted, deleted ones marked, in posting order. */
  readonly messages: SimMessage[];
  /** `channel/ts` -> the ts of the last edit, shown as `edited` on the wire. */
  readonly editedAt: Map<string, string>;
  readonly views: SimView[];
  /** Sorted member ids joined by "," -> the DM (or group DM) channel id. */
  readonly dmByMembers: Map<string, string>;
  readonly dmMembers: Map<string, string[]>;
  readonly triggers: Map<string, Trigger>;
  readonly responseTargets: Map<string, ResponseTarget>;
  readonly socket: SocketModeSim | undefined;
  /** The last ts handed out, in microseconds, so ts values strictly increase. */
  lastMicros: bigint;
  /** One counter for view, DM and trigger ids. */
  sequence: number;
}

/** A fresh workspace: the bot user, the given users and groups, nothing posted yet. */
export function createState(
  options: SlackApiOptions,
  origin: string,
  socket: SocketModeSim | undefined,
): SimState {
  const botUserId = options.botUserId ?? SIM_BOT_USER_ID;
  const users = new Map<string, SimUser>();
  users.set(botUserId, {
    id: botUserId,
    team_id: options.teamId,
    name: "countersign",
    real_name: "Countersign",
    is_bot: true,
  });
  for (const user of options.users ?? []) users.set(user.id, { ...user });
  return {
    origin,
    botToken: options.botToken,
    botUserId,
    teamId: options.teamId,
    teamDomain: options.teamDomain ?? "countersign-sim",
    triggerTtlMs: options.triggerTtlMs ?? 3000,
    allowedChannels: options.channels ? new Set(options.channels) : undefined,
    users,
    knowsUsers: options.users !== undefined,
    usergroups: new Map(Object.entries(options.usergroups ?? {}).map(([id, members]) => [id, [...members]])),
    messages: [],
    editedAt: new Map(),
    views: [],
    dmByMembers: new Map(),
    dmMembers: new Map(),
    triggers: new Map(),
    responseTargets: new Map(),
    socket,
    lastMicros: 0n,
    sequence: 0,
  };
}

/** A Slack `{ok: false}` answer, thrown by handlers and turned into the HTTP 200 body. */
export class Refusal extends Error {
  override name = "Refusal" as const;
  constructor(
    readonly code: string,
    readonly extra: Obj = {},
  ) {
    super(code);
  }
}

export function invalidBlocks(problems: string[]): Refusal {
  return new Refusal("invalid_blocks", {
    errors: problems,
    response_metadata: { messages: problems.map((p) => `[ERROR] ${p}`) },
  });
}

/** Slack refuses a bad view with `invalid_arguments` and the reasons in response_metadata. */
export function invalidArguments(problems: string[]): Refusal {
  return new Refusal("invalid_arguments", {
    response_metadata: { messages: problems.map((p) => `[ERROR] ${p}`) },
  });
}

export function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function str(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return undefined;
}

export function flag(value: unknown): boolean {
  return value === true || value === 1 || value === "true" || value === "1";
}

/** A Slack ts as an exact integer of microseconds, so "…0.000100" sorts and compares exactly. */
export function tsKey(ts: string): bigint {
  const [secs = "0", frac = ""] = ts.split(".");
  if (!/^\d+$/.test(secs) || !/^\d*$/.test(frac)) return -1n;
  return BigInt(secs) * 1_000_000n + BigInt((frac + "000000").slice(0, 6));
}

export function compareTs(a: SimMessage, b: SimMessage): number {
  const diff = tsKey(a.ts) - tsKey(b.ts);
  return diff < 0n ? -1 : diff > 0n ? 1 : 0;
}

/** Strictly increasing ts from the wall clock, "1733000000.000100"-style. */
export function nextTs(state: SimState): string {
  const now = BigInt(Date.now()) * 1000n;
  state.lastMicros = now > state.lastMicros ? now : state.lastMicros + 1n;
  const secs = state.lastMicros / 1_000_000n;
  const micros = state.lastMicros % 1_000_000n;
  return `${secs}.${String(micros).padStart(6, "0")}`;
}

export function newHash(): string {
  return `${Math.floor(Date.now() / 1000)}.${randomBytes(4).toString("hex")}`;
}

export function newViewId(state: SimState): string {
  state.sequence += 1;
  return `V${String(state.sequence).padStart(10, "0")}`;
}

export function newResponseUrl(state: SimState, target: ResponseTarget): string {
  const id = randomBytes(12).toString("hex");
  state.responseTargets.set(id, target);
  return `${state.origin}/response/${id}`;
}

export function knownUser(state: SimState, id: string): boolean {
  return !state.knowsUsers || state.users.has(id);
}

/** The DM channel the app has with these people (bot left out), opened if needed. */
export function dmFor(state: SimState, userIds: string[]): { id: string; existed: boolean } {
  const members = [...new Set(userIds.filter((u) => u !== state.botUserId))].sort();
  const key = members.join(",");
  const existing = state.dmByMembers.get(key);
  if (existing) return { id: existing, existed: true };
  state.sequence += 1;
  const id = `${members.length > 1 ? "G" : "D"}${String(state.sequence).padStart(10, "0")}`;
  state.dmByMembers.set(key, id);
  state.dmMembers.set(id, members);
  return { id, existed: false };
}

/** The channel argument, resolved: a user id means the app's DM with that person. */
export function channelArg(state: SimState, args: { channel?: unknown }): string {
  const raw = str(args.channel)?.trim();
  if (!raw) throw new Refusal("channel_not_found");
  if (state.dmMembers.has(raw)) return raw;
  if (/^[UW][A-Z0-9]+$/.test(raw)) {
    if (!knownUser(state, raw)) throw new Refusal("channel_not_found");
    return dmFor(state, [raw]).id;
  }
  if (state.allowedChannels && !state.allowedChannels.has(raw)) throw new Refusal("channel_not_found");
  return raw;
}

export function findMessage(
  state: SimState,
  channel: string,
  ts: string | undefined,
): SimMessage | undefined {
  if (ts === undefined) return undefined;
  return state.messages.find((m) => m.channel === channel && m.ts === ts && !m.deleted);
}

export function storeMessage(state: SimState, message: SimMessage): SimMessage {
  state.messages.push(message);
  return message;
}

/** text/blocks checked as Slack checks them; `requireContent` for the posting methods. */
export function messageContent(
  args: { text?: unknown; blocks?: unknown; attachments?: unknown },
  requireContent: boolean,
): { text: string | undefined; blocks: MessageBlock[] | undefined } {
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
  // Past blockKitProblems, each block is a Block Kit block with a known type and valid fields.
  return { text, blocks: blocks ? (withIds(blocks) as MessageBlock[]) : undefined };
}

function isTextObject(element: Obj): boolean {
  return element.type === "plain_text" || element.type === "mrkdwn";
}

/** Slack gives every block a block_id and every element an action_id when the app did not. */
export function withIds(blocks: unknown[]): unknown[] {
  const copy = structuredClone(blocks);
  const randomId = () => randomBytes(3).toString("base64url");
  for (const block of copy) {
    if (!isObj(block)) continue;
    if (block.block_id === undefined) block.block_id = randomId();
    const elements = [...(Array.isArray(block.elements) ? block.elements : []), block.accessory];
    for (const element of elements) {
      if (
        isObj(element) &&
        element.action_id === undefined &&
        element.type !== "image" &&
        !isTextObject(element)
      ) {
        element.action_id = randomId();
      }
    }
    if (block.type === "input" && isObj(block.element) && block.element.action_id === undefined)
      block.element.action_id = randomId();
  }
  return copy;
}

export function threadReplies(state: SimState, parent: SimMessage): SimMessage[] {
  return state.messages
    .filter(
      (reply) =>
        reply.channel === parent.channel &&
        reply.thread_ts === parent.ts &&
        !reply.deleted &&
        !reply.ephemeral_for,
    )
    .sort(compareTs);
}

/** A message as the Web API shows it (history, replies, postMessage's answer). */
export function wireMessage(state: SimState, message: SimMessage, withMetadata: boolean): Obj {
  const out: Obj = {
    type: "message",
    text: message.text,
    user: message.user,
    ts: message.ts,
    team: state.teamId,
  };
  if (message.user === state.botUserId) {
    out.bot_id = SIM_BOT_ID;
    out.app_id = SIM_APP_ID;
  }
  if (message.blocks) out.blocks = message.blocks;
  if (message.thread_ts) {
    out.thread_ts = message.thread_ts;
    out.parent_user_id = findMessage(state, message.channel, message.thread_ts)?.user;
  } else {
    const replies = threadReplies(state, message);
    if (replies.length > 0) {
      const repliers = [...new Set(replies.map((r) => r.user).filter((u): u is string => !!u))];
      Object.assign(out, {
        thread_ts: message.ts,
        reply_count: replies.length,
        reply_users_count: repliers.length,
        latest_reply: replies.at(-1)!.ts,
        reply_users: repliers,
      });
    }
  }
  const edited = state.editedAt.get(`${message.channel}/${message.ts}`);
  if (edited) out.edited = { user: message.user, ts: edited };
  if (withMetadata && message.metadata !== undefined) out.metadata = message.metadata;
  return structuredClone(out);
}
