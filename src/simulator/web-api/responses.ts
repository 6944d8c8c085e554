/**
 * What Slack does with an app's answers outside the Web API: a POST to a response URL
 * (replace or delete the original, or post in the channel or ephemerally), and the
 * body of a slash command's ack, which Slack shows the person as a response.
 */
import {
  findMessage,
  flag,
  isObj,
  messageContent,
  nextTs,
  type Obj,
  Refusal,
  type ResponseTarget,
  type SimState,
  storeMessage,
  str,
} from "./state.js";

export interface ResponseAnswer {
  status: number;
  body: Obj;
}

/** Answers a POST to response URL `id` with the raw body the app sent; returns what to record. */
export function answerResponseUrl(state: SimState, id: string, raw: string): { args: Obj } & ResponseAnswer {
  const target = state.responseTargets.get(id);
  let args: Obj = {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (!isObj(parsed)) throw new Error("not an object");
    args = parsed;
    const answer = target
      ? applyResponse(state, target, args)
      : { status: 404, body: { ok: false, error: "expired_url" } };
    return { args, ...answer };
  } catch (err) {
    const body =
      err instanceof Refusal
        ? { ok: false, error: err.code, ...err.extra }
        : { ok: false, error: "invalid_payload" };
    return { args, status: 400, body };
  }
}

export function applyResponse(state: SimState, target: ResponseTarget, args: Obj): ResponseAnswer {
  const original = target.messageTs ? findMessage(state, target.channel, target.messageTs) : undefined;
  if (flag(args.delete_original)) {
    if (!original) return { status: 404, body: { ok: false, error: "message_not_found" } };
    original.deleted = true;
    return { status: 200, body: { ok: true } };
  }
  const { text, blocks } = messageContent(args, true);
  if (flag(args.replace_original)) {
    if (!original) return { status: 404, body: { ok: false, error: "message_not_found" } };
    original.text = text ?? "";
    if (blocks !== undefined) original.blocks = blocks;
    else delete original.blocks;
    original.edits += 1;
    state.editedAt.set(`${original.channel}/${original.ts}`, nextTs(state));
    return { status: 200, body: { ok: true } };
  }
  const threadTs = str(args.thread_ts);
  storeMessage(state, {
    channel: target.channel,
    ts: nextTs(state),
    text: text ?? "",
    edits: 0,
    user: state.botUserId,
    ...(args.response_type === "in_channel" ? {} : { ephemeral_for: target.user }),
    ...(threadTs ? { thread_ts: threadTs } : {}),
    ...(blocks ? { blocks } : {}),
  });
  return { status: 200, body: { ok: true } };
}

/** A slash command's ack body: plain text or a message, shown to the caller as a response. */
export function applyCommandAck(state: SimState, channel: string, user: string, body: string): void {
  if (body.trim() === "") return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = { text: body };
  }
  if (!isObj(parsed) || (parsed.text === undefined && parsed.blocks === undefined)) return;
  try {
    applyResponse(state, { channel, user }, parsed);
  } catch {
    // Slack shows the person an error instead of an invalid answer; nothing is stored.
  }
}
