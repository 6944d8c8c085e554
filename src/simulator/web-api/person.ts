/**
 * What a person does in Slack (click a button, submit a modal, run a slash command,
 * open the Home tab), sent to the app as Slack sends it, and what Slack then shows
 * from the app's answer.
 */
import { randomBytes } from "node:crypto";
import {
  actionIds,
  appHomeOpenedEvent,
  blockActionsPayload,
  type Clicker,
  findElement,
  type SimInputValue,
  sendSigned,
  slashCommandBody,
  viewBlockActionsPayload,
  viewObject,
  viewSubmissionPayload,
} from "../interactions.js";
import type { EnvelopeType } from "../socket-mode.js";
import { applyCommandAck } from "./responses.js";
import { dmFor, newResponseUrl, type SimState } from "./state.js";
import type { AppTarget, SendResult, SimView } from "./types.js";
import { applyViewAnswer } from "./views.js";

/**
 * Issues a trigger_id as Slack does for a click or a command: views.open/push accept it
 * once, within the trigger window (3 s), else `exchanged_trigger_id` / `expired_trigger_id`.
 */
export function newTriggerId(state: SimState, user?: string): string {
  state.sequence += 1;
  const team = state.teamId.replace(/\D/g, "") || "1";
  const id = `${state.sequence}${Date.now() % 100000}.${team}.${randomBytes(16).toString("hex")}`;
  state.triggers.set(id, { user, issuedAt: Date.now(), used: false });
  return id;
}

export interface ClickOptions extends AppTarget {
  user: Clicker;
  channel: string;
  ts: string;
  actionId: string;
  blockId?: string;
}

export async function click(
  state: SimState,
  options: ClickOptions,
): Promise<SendResult & { triggerId: string }> {
  const message = state.messages.find(
    (m) => m.channel === options.channel && m.ts === options.ts && !m.deleted,
  );
  if (!message) {
    throw new Error(`Slack simulator: cannot click, no message ${options.ts} in channel ${options.channel}`);
  }
  const found = findElement(message.blocks, options.actionId, options.blockId);
  if (!found) {
    throw new Error(
      `Slack simulator: cannot click, message ${options.ts} in ${options.channel} has no element with action_id ` +
        `"${options.actionId}"${options.blockId ? ` in block "${options.blockId}"` : ""} ` +
        `(it has: ${actionIds(message.blocks).join(", ") || "none"})`,
    );
  }
  const triggerId = newTriggerId(state, options.user.id);
  const responseUrl = newResponseUrl(state, {
    channel: options.channel,
    user: options.user.id,
    messageTs: options.ts,
  });
  const payload = blockActionsPayload({
    user: options.user,
    message: structuredClone(message),
    actionId: options.actionId,
    value: typeof found.element.value === "string" ? found.element.value : "",
    blockId: found.blockId,
    triggerId,
    responseUrl,
    teamDomain: state.teamDomain,
  });
  const res = await deliver(state, "interaction", payload, options);
  return { ...res, triggerId };
}

export interface ClickViewOptions extends AppTarget {
  user: Clicker;
  /** The view's id: the person's App Home or an open modal. */
  viewId: string;
  actionId: string;
  blockId?: string;
}

/**
 * Clicks a button on a view (the Home tab, an open modal): finds the button by action_id
 * in what the app last published or opened, issues a trigger id, and sends the signed
 * block_actions whose `view` is that view, as Slack does. Only the view's own person
 * can click it.
 */
export async function clickView(
  state: SimState,
  options: ClickViewOptions,
): Promise<SendResult & { triggerId: string }> {
  const view = state.views.find((v) => v.id === options.viewId);
  if (!view || view.closed) {
    throw new Error(`Slack simulator: cannot click, no open view ${options.viewId}`);
  }
  if (view.user !== options.user.id) {
    throw new Error(
      `Slack simulator: cannot click, view ${options.viewId} belongs to ${view.user}, not ${options.user.id}`,
    );
  }
  const blocks = (view.view as { blocks?: unknown }).blocks;
  const found = findElement(blocks, options.actionId, options.blockId);
  if (!found) {
    throw new Error(
      `Slack simulator: cannot click, view ${options.viewId} has no element with action_id ` +
        `"${options.actionId}"${options.blockId ? ` in block "${options.blockId}"` : ""} ` +
        `(it has: ${actionIds(blocks).join(", ") || "none"})`,
    );
  }
  const triggerId = newTriggerId(state, options.user.id);
  const payload = viewBlockActionsPayload({
    user: options.user,
    view: structuredClone(view),
    actionId: options.actionId,
    value: typeof found.element.value === "string" ? found.element.value : "",
    blockId: found.blockId,
    triggerId,
    teamId: state.teamId,
    teamDomain: state.teamDomain,
  });
  const res = await deliver(state, "interaction", payload, options);
  return { ...res, triggerId };
}

export interface SubmitViewOptions extends AppTarget {
  user: Clicker;
  viewId: string;
  /**
   * Each input's state. A `plain_text_input` entry for an input the view declares as a
   * number_input or static_select is read as that kind (the page sends every input's
   * text): its type taken from the view, a select's text as the chosen option's value.
   */
  values: Record<string, Record<string, SimInputValue>>;
}

/** Types each submitted value by the view's own input element, as Slack fills `state.values`. */
function typedValues(
  view: SimView,
  values: Record<string, Record<string, SimInputValue>>,
): Record<string, Record<string, SimInputValue>> {
  const blocks = ((view.view as { blocks?: unknown[] }).blocks ?? []) as {
    type?: string;
    block_id?: string;
    element?: {
      type?: string;
      action_id?: string;
      options?: { text: { type: "plain_text"; text: string }; value: string }[];
    };
  }[];
  const out: Record<string, Record<string, SimInputValue>> = {};
  for (const [blockId, inner] of Object.entries(values)) {
    for (const [actionId, v] of Object.entries(inner)) {
      const el = blocks.find(
        (b) => b.type === "input" && b.block_id === blockId && b.element?.action_id === actionId,
      )?.element;
      let typed = v;
      if (v.type === "plain_text_input" && el?.type === "number_input")
        typed = { type: "number_input", value: v.value ?? null };
      else if (v.type === "plain_text_input" && el?.type === "static_select") {
        const option = el.options?.find((o) => o.value === v.value) ?? null;
        typed = { type: "static_select", selected_option: option };
      }
      out[blockId] ??= {};
      out[blockId][actionId] = typed;
    }
  }
  return out;
}

export async function submitView(state: SimState, options: SubmitViewOptions): Promise<SendResult> {
  const view = state.views.find((v) => v.id === options.viewId);
  if (view?.kind !== "modal" || view.closed) {
    const open = state.views.filter((v) => v.kind === "modal" && !v.closed).map((v) => v.id);
    throw new Error(
      `Slack simulator: cannot submit view ${options.viewId}: no such open modal (open: ${open.join(", ") || "none"})`,
    );
  }
  const payload = viewSubmissionPayload({
    user: options.user,
    view: structuredClone(view),
    values: typedValues(view, options.values),
    triggerId: newTriggerId(state, options.user.id),
    teamDomain: state.teamDomain,
  });
  const res = await deliver(state, "interaction", payload, options);
  if (res.status === 200) applyViewAnswer(state, view, res.body);
  return res;
}

export interface CommandOptions extends AppTarget {
  user: Clicker;
  command: string;
  text?: string;
  channelId?: string;
}

export async function command(
  state: SimState,
  options: CommandOptions,
): Promise<SendResult & { triggerId: string; channelId: string }> {
  const channelId = options.channelId ?? dmFor(state, [options.user.id]).id;
  const triggerId = newTriggerId(state, options.user.id);
  const responseUrl = newResponseUrl(state, { channel: channelId, user: options.user.id });
  const body = slashCommandBody({
    user: options.user,
    command: options.command,
    text: options.text,
    channelId,
    triggerId,
    responseUrl,
    teamDomain: state.teamDomain,
  });
  const res = await deliver(state, "command", body, options);
  if (res.status === 200) applyCommandAck(state, channelId, options.user.id, res.body);
  return { ...res, triggerId, channelId };
}

export interface OpenHomeOptions extends AppTarget {
  user: Clicker;
}

export function openHome(state: SimState, options: OpenHomeOptions): Promise<SendResult> {
  const home = state.views.find((v) => v.kind === "home" && v.user === options.user.id);
  const event = appHomeOpenedEvent({
    user: options.user,
    teamId: state.teamId,
    botUserId: state.botUserId,
    channel: dmFor(state, [options.user.id]).id,
    view: home ? viewObject(home, state.teamId) : undefined,
  });
  return deliver(state, "event", event, options);
}

/**
 * Sends what a person did as Slack would: signed to the app's Request URL, or with no
 * URL as an envelope on the app's socket. Either way the answer comes back as the
 * HTTP status and body (an ack's payload is the body), so what Slack then shows is
 * worked out once.
 */
async function deliver(
  state: SimState,
  kind: "interaction" | "command" | "event",
  body: Record<string, unknown>,
  target: AppTarget,
): Promise<SendResult> {
  if (target.appUrl !== undefined) {
    if (target.signingSecret === undefined) {
      throw new Error(`Slack simulator: sending to ${target.appUrl} needs the signing secret`);
    }
    return sendSigned(kind, body, {
      url: target.appUrl,
      signingSecret: target.signingSecret,
      timestamp: target.timestamp,
    });
  }
  if (!state.socket) {
    throw new Error("Slack simulator: no appUrl given and Socket Mode is off (start it with socketMode)");
  }
  const type: EnvelopeType =
    kind === "interaction" ? "interactive" : kind === "command" ? "slash_commands" : "events_api";
  // Slack takes an answer in the ack for modal submissions and slash commands only.
  const acceptsResponsePayload = kind === "command" || body.type === "view_submission";
  const { status, body: text } = await state.socket.deliver(type, body, { acceptsResponsePayload });
  return { status, body: text };
}
