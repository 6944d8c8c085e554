/**
 * The chat.* family: posting, updating, deleting messages, ephemerals and permalinks,
 * with Slack's refusals (unknown thread, someone else's message, bad metadata).
 */
import type { webApi } from "@slack/bolt";
import {
  channelArg,
  findMessage,
  isObj,
  knownUser,
  messageContent,
  nextTs,
  type Obj,
  Refusal,
  type SimState,
  storeMessage,
  str,
  type WireArgs,
  wireMessage,
} from "./state.js";

function metadataArg(args: { metadata?: unknown }): unknown {
  const metadata = args.metadata;
  if (metadata === undefined || metadata === "") return undefined;
  if (!isObj(metadata) || typeof metadata.event_type !== "string" || !isObj(metadata.event_payload)) {
    throw new Refusal("invalid_metadata_format");
  }
  return metadata;
}

/** A reply to a reply joins the parent's thread, as in Slack. */
function threadArg(state: SimState, channel: string, args: { thread_ts?: unknown }): string | undefined {
  const threadTs = str(args.thread_ts);
  if (!threadTs) return undefined;
  const parent = findMessage(state, channel, threadTs);
  if (!parent || parent.ephemeral_for) throw new Refusal("thread_not_found");
  return parent.thread_ts ?? parent.ts;
}

export function postMessage(state: SimState, args: WireArgs<webApi.ChatPostMessageArguments>): Obj {
  const channel = channelArg(state, args);
  const { text, blocks } = messageContent(args, true);
  const metadata = metadataArg(args);
  const threadTs = threadArg(state, channel, args);
  const message = storeMessage(state, {
    channel,
    ts: nextTs(state),
    text: text ?? "",
    edits: 0,
    user: state.botUserId,
    ...(threadTs ? { thread_ts: threadTs } : {}),
    ...(blocks ? { blocks } : {}),
    ...(metadata !== undefined ? { metadata } : {}),
  });
  return { ok: true, channel, ts: message.ts, message: wireMessage(state, message, true) };
}

export function update(state: SimState, args: WireArgs<webApi.ChatUpdateArguments>): Obj {
  const channel = channelArg(state, args);
  const message = findMessage(state, channel, str(args.ts));
  if (!message || message.ephemeral_for) throw new Refusal("message_not_found");
  if (message.user !== state.botUserId) throw new Refusal("cant_update_message");
  const { text, blocks } = messageContent(args, false);
  if (text === undefined && blocks === undefined && args.attachments === undefined)
    throw new Refusal("no_text");
  const metadata = metadataArg(args);
  // Slack keeps what the update leaves out: text-only updates keep the blocks and vice versa.
  if (text !== undefined) message.text = text;
  if (blocks !== undefined) message.blocks = blocks;
  if (metadata !== undefined) message.metadata = metadata;
  message.edits += 1;
  state.editedAt.set(`${message.channel}/${message.ts}`, nextTs(state));
  return {
    ok: true,
    channel,
    ts: message.ts,
    text: message.text,
    message: wireMessage(state, message, true),
  };
}

export function deleteMessage(state: SimState, args: WireArgs<webApi.ChatDeleteArguments>): Obj {
  const channel = channelArg(state, args);
  const message = findMessage(state, channel, str(args.ts));
  if (!message || message.ephemeral_for) throw new Refusal("message_not_found");
  if (message.user !== state.botUserId) throw new Refusal("cant_delete_message");
  message.deleted = true;
  return { ok: true, channel, ts: message.ts };
}

export function postEphemeral(state: SimState, args: WireArgs<webApi.ChatPostEphemeralArguments>): Obj {
  const channel = channelArg(state, args);
  const user = str(args.user);
  if (!user || !knownUser(state, user)) throw new Refusal("user_not_in_channel");
  const { text, blocks } = messageContent(args, true);
  const threadTs = str(args.thread_ts);
  const message = storeMessage(state, {
    channel,
    ts: nextTs(state),
    text: text ?? "",
    edits: 0,
    user: state.botUserId,
    ephemeral_for: user,
    ...(threadTs ? { thread_ts: threadTs } : {}),
    ...(blocks ? { blocks } : {}),
  });
  return { ok: true, message_ts: message.ts };
}

export function getPermalink(state: SimState, args: WireArgs<webApi.ChatGetPermalinkArguments>): Obj {
  const channel = channelArg(state, args);
  const message = findMessage(state, channel, str(args.message_ts));
  if (!message || message.ephemeral_for) throw new Refusal("message_not_found");
  const base = `${state.origin}/archives/${channel}/p${message.ts.replace(".", "")}`;
  const permalink = message.thread_ts ? `${base}?thread_ts=${message.thread_ts}&cid=${channel}` : base;
  return { ok: true, channel, permalink };
}
