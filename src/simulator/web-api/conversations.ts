/**
 * The conversations.* family: opening DMs (and group DMs), a channel's history and a
 * thread's replies, paged with cursors as Slack pages them, newest first for history
 * and oldest first for replies.
 */
import type { webApi } from "@slack/bolt";
import {
  channelArg,
  compareTs,
  dmFor,
  findMessage,
  flag,
  knownUser,
  type Obj,
  Refusal,
  type SimState,
  str,
  threadReplies,
  tsKey,
  type WireArgs,
  wireMessage,
} from "./state.js";

/** Slack's cap on a group DM: eight people besides the app. */
const GROUP_DM_LIMIT = 8;

export function conversationsOpen(state: SimState, args: WireArgs<webApi.ConversationsOpenArguments>): Obj {
  const raw = args.users;
  const ids = (Array.isArray(raw) ? raw.map(String) : (str(raw) ?? "").split(","))
    .map((s) => s.trim())
    .filter(Boolean);
  if (ids.length === 0) {
    const channel = str(args.channel);
    if (channel && state.dmMembers.has(channel)) {
      return { ok: true, no_op: true, already_open: true, channel: { id: channel } };
    }
    throw new Refusal(channel ? "channel_not_found" : "users_list_not_supplied");
  }
  for (const id of ids) if (!knownUser(state, id)) throw new Refusal("user_not_found");
  if (ids.filter((id) => id !== state.botUserId).length > GROUP_DM_LIMIT) throw new Refusal("too_many_users");
  const { id, existed } = dmFor(state, ids);
  const channel: Obj = { id };
  if (flag(args.return_im)) Object.assign(channel, { is_im: id.startsWith("D"), user: ids[0] });
  return existed ? { ok: true, no_op: true, already_open: true, channel } : { ok: true, channel };
}

function tsBound(value: unknown): bigint | undefined {
  const ts = str(value);
  return ts ? tsKey(ts) : undefined;
}

export function history(state: SimState, args: WireArgs<webApi.ConversationsHistoryArguments>): Obj {
  const channel = channelArg(state, args);
  const limit = clampLimit(args.limit, 100);
  const inclusive = flag(args.inclusive);
  const oldest = tsBound(args.oldest);
  let latest = tsBound(args.latest);
  let latestInclusive = inclusive;
  const cursor = decodeCursor(args.cursor, "before");
  if (cursor !== undefined) {
    latest = cursor;
    latestInclusive = false;
  }
  const withMetadata = flag(args.include_all_metadata);
  const all = state.messages
    .filter((m) => m.channel === channel && !m.thread_ts && !m.ephemeral_for && !m.deleted)
    .filter((m) => inRange(tsKey(m.ts), oldest, inclusive, latest, latestInclusive))
    .sort(compareTs)
    .reverse();
  const page = all.slice(0, limit);
  const hasMore = all.length > limit;
  return {
    ok: true,
    messages: page.map((m) => wireMessage(state, m, withMetadata)),
    has_more: hasMore,
    pin_count: 0,
    channel_actions_ts: null,
    channel_actions_count: 0,
    response_metadata: { next_cursor: hasMore ? encodeCursor("before", page.at(-1)!.ts) : "" },
  };
}

export function replies(state: SimState, args: WireArgs<webApi.ConversationsRepliesArguments>): Obj {
  const channel = channelArg(state, args);
  const target = findMessage(state, channel, str(args.ts));
  if (!target || target.ephemeral_for) throw new Refusal("thread_not_found");
  const parent = target.thread_ts ? findMessage(state, channel, target.thread_ts) : target;
  if (!parent) throw new Refusal("thread_not_found");
  const limit = clampLimit(args.limit, 1000);
  const inclusive = flag(args.inclusive);
  let oldest = tsBound(args.oldest);
  let oldestInclusive = inclusive;
  const latest = tsBound(args.latest);
  const cursor = decodeCursor(args.cursor, "after");
  if (cursor !== undefined) {
    oldest = cursor;
    oldestInclusive = false;
  }
  const withMetadata = flag(args.include_all_metadata);
  const all = [parent, ...threadReplies(state, parent)].filter((m) =>
    inRange(tsKey(m.ts), oldest, oldestInclusive, latest, inclusive),
  );
  const page = all.slice(0, limit);
  const hasMore = all.length > limit;
  return {
    ok: true,
    messages: page.map((m) => wireMessage(state, m, withMetadata)),
    has_more: hasMore,
    response_metadata: { next_cursor: hasMore ? encodeCursor("after", page.at(-1)!.ts) : "" },
  };
}

function clampLimit(value: unknown, fallback: number): number {
  const n = Number(str(value));
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

function encodeCursor(direction: "before" | "after", ts: string): string {
  return Buffer.from(`${direction}:${ts}`).toString("base64url");
}

function decodeCursor(value: unknown, direction: "before" | "after"): bigint | undefined {
  const cursor = str(value);
  if (!cursor) return undefined;
  const decoded = Buffer.from(cursor, "base64url").toString("utf8");
  if (!decoded.startsWith(`${direction}:`)) throw new Refusal("invalid_cursor");
  return tsKey(decoded.slice(direction.length + 1));
}
