/**
 * What Slack sends to an app's Request URL: interaction payloads, slash commands and
 * Events API envelopes, signed as Slack signs them. The shapes follow Slack's documented
 * payloads closely enough that Bolt's HTTP receiver accepts them unchanged.
 */
import { createHmac, randomBytes } from "node:crypto";
import type {
  BasicElementAction,
  BlockAction,
  ButtonAction,
  EnvelopedEvent,
  SlashCommand,
  types,
  ViewOutput,
  ViewSubmitAction,
} from "@slack/bolt";
import type { SimMessage, SimView } from "./web-api/types.js";

/*
 * The payload types are Bolt's own, narrowed where Slack's wire shape differs from
 * what Bolt declares: outside Enterprise Grid Slack sends `enterprise: null` (Bolt:
 * absent), a modal without a title reports `title: null`, a click carries a
 * `response_url` only where the message has one, and the Home tab event carries the
 * view as Slack reports it rather than as the app sent it.
 */

/** A view as Slack reports it in API answers and payloads. */
export type SimViewOutput = Omit<ViewOutput, "title"> & { title: ViewOutput["title"] | null };

/** The element that was used: a button here, with its value, text and style copied. */
export interface SimElementAction extends BasicElementAction {
  value: string;
  text?: ButtonAction["text"];
  style?: "primary" | "danger";
}

export type SimBlockAction = Omit<BlockAction<SimElementAction>, "enterprise" | "response_url"> & {
  enterprise: null;
  response_url?: string;
};

export type SimViewSubmission = Omit<ViewSubmitAction, "enterprise" | "view"> & {
  enterprise: null;
  view: SimViewOutput;
};

export type SimAppHomeOpened = EnvelopedEvent<
  Omit<types.AppHomeOpenedEvent, "view"> & { view?: SimViewOutput }
>;

/** The app id the simulator reports as `api_app_id` and in message/view `app_id`. */
export const SIM_APP_ID = "A0SIMAPP001";
/** The legacy verification token Slack still puts in payloads; Bolt ignores it. */
export const SIM_VERIFICATION_TOKEN = "sim-verification-token";
/** Default bot user id when the simulator is not given one. */
export const SIM_BOT_USER_ID = "U0SIMBOT001";
export const SIM_BOT_ID = "B0SIMBOT001";

/** `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`, Slack's request signature. */
export function slackSignature(signingSecret: string, timestamp: number, rawBody: string): string {
  const mac = createHmac("sha256", signingSecret).update(`v0:${timestamp}:${rawBody}`).digest("hex");
  return `v0=${mac}`;
}

export interface Clicker {
  id: string;
  team_id: string;
  name?: string;
}

/** Fields every builder accepts; all optional so the simple calls stay simple. */
export interface PayloadContext {
  /** Clock for `action_ts`/`event_time`; defaults to the current time. */
  now?: Date;
  /** Workspace subdomain reported as `team.domain`. Default `"countersign-sim"`. */
  teamDomain?: string;
}

const DEFAULT_DOMAIN = "countersign-sim";

function slackTime(now: Date | undefined): string {
  const ms = (now ?? new Date()).getTime();
  return `${Math.floor(ms / 1000)}.${String((ms % 1000) * 1000).padStart(6, "0")}`;
}

function userObject(clicker: Clicker): { id: string; username: string; name: string; team_id: string } {
  const name = clicker.name ?? clicker.id;
  return { id: clicker.id, username: name, name, team_id: clicker.team_id };
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** An interactive element and the block that holds it, found by action_id. */
export interface FoundElement {
  element: Obj;
  blockId: string | undefined;
}

/** Looks through actions elements and section accessories, the places buttons live. */
export function findElement(blocks: unknown, actionId: string, blockId?: string): FoundElement | undefined {
  if (!Array.isArray(blocks)) return undefined;
  for (const block of blocks) {
    if (!isObj(block)) continue;
    const bid = typeof block.block_id === "string" ? block.block_id : undefined;
    if (blockId !== undefined && bid !== blockId) continue;
    const candidates = [...(Array.isArray(block.elements) ? block.elements : []), block.accessory];
    for (const element of candidates) {
      if (isObj(element) && element.action_id === actionId) return { element: element, blockId: bid };
    }
  }
  return undefined;
}

/** Every action_id on a surface, so an error can say what was there instead. */
export function actionIds(blocks: unknown): string[] {
  if (!Array.isArray(blocks)) return [];
  const ids: string[] = [];
  for (const block of blocks) {
    if (!isObj(block)) continue;
    const candidates = [...(Array.isArray(block.elements) ? block.elements : []), block.accessory];
    for (const element of candidates)
      if (isObj(element) && typeof element.action_id === "string") ids.push(element.action_id);
  }
  return ids;
}

/**
 * A `block_actions` payload for a button click on `message`. The button's text and style
 * are copied from the message's blocks when the action_id is found there. Clicks on an
 * ephemeral message carry no `message`, as with Slack.
 */
export function blockActionsPayload(
  options: {
    user: Clicker;
    message: SimMessage;
    actionId: string;
    value: string;
    blockId?: string;
    triggerId: string;
    responseUrl?: string;
  } & PayloadContext,
): SimBlockAction {
  const message = options.message;
  const action = clickedElement(message.blocks, options);
  const ephemeral = message.ephemeral_for !== undefined;
  const container: Obj = {
    type: "message",
    message_ts: message.ts,
    channel_id: message.channel,
    is_ephemeral: ephemeral,
  };
  if (message.thread_ts !== undefined) container.thread_ts = message.thread_ts;
  const payload: SimBlockAction = {
    type: "block_actions",
    user: userObject(options.user),
    api_app_id: SIM_APP_ID,
    token: SIM_VERIFICATION_TOKEN,
    container,
    trigger_id: options.triggerId,
    team: { id: options.user.team_id, domain: options.teamDomain ?? DEFAULT_DOMAIN },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: message.channel, name: message.channel },
    state: { values: {} },
    actions: [action],
  };
  if (!ephemeral) {
    const shown: NonNullable<SimBlockAction["message"]> = {
      type: "message",
      user: message.user,
      ts: message.ts,
      text: message.text,
      team: options.user.team_id,
      app_id: SIM_APP_ID,
      blocks: message.blocks ?? [],
    };
    if (message.thread_ts !== undefined) shown.thread_ts = message.thread_ts;
    payload.message = shown;
  }
  if (options.responseUrl !== undefined) payload.response_url = options.responseUrl;
  return payload;
}

/** The `actions[0]` of a click on the element `actionId` (in `blockId`) among `blocks`. */
function clickedElement(
  blocks: Parameters<typeof findElement>[0],
  o: { actionId: string; blockId?: string; value: string } & PayloadContext,
): SimElementAction {
  const found = findElement(blocks, o.actionId, o.blockId);
  const element = found?.element;
  const action: SimElementAction = {
    action_id: o.actionId,
    block_id: o.blockId ?? found?.blockId ?? "",
    type: typeof element?.type === "string" ? element.type : "button",
    value: o.value,
    action_ts: slackTime(o.now),
  };
  // Copied as the app sent them; the posting methods checked them against Block Kit.
  if (element?.text !== undefined) action.text = element.text as ButtonAction["text"];
  if (element?.style === "primary" || element?.style === "danger") action.style = element.style;
  return action;
}

/** A click on a view's button (App Home, a modal): the view rides along instead of a message. */
export type SimViewBlockAction = Omit<SimBlockAction, "view" | "message" | "channel" | "response_url"> & {
  view: SimViewOutput;
};

/**
 * A `block_actions` payload for a button click on a view, as Slack sends it from the Home
 * tab or a modal: `container` names the view, `view` is the view as Slack reports it
 * (`type: "home"` on App Home), and there is no channel, message or response URL.
 */
export function viewBlockActionsPayload(
  options: {
    user: Clicker;
    view: SimView;
    actionId: string;
    value: string;
    blockId?: string;
    triggerId: string;
    teamId: string;
  } & PayloadContext,
): SimViewBlockAction {
  const shown = viewObject(options.view, options.teamId);
  const action = clickedElement(shown.blocks, options);
  return {
    type: "block_actions",
    user: userObject(options.user),
    api_app_id: SIM_APP_ID,
    token: SIM_VERIFICATION_TOKEN,
    container: { type: "view", view_id: options.view.id },
    trigger_id: options.triggerId,
    team: { id: options.user.team_id, domain: options.teamDomain ?? DEFAULT_DOMAIN },
    enterprise: null,
    is_enterprise_install: false,
    state: { values: {} },
    actions: [action],
    view: shown,
  };
}

/** The view object as Slack reports it in API answers and payloads. */
export function viewObject(view: SimView, teamId: string, botId: string = SIM_BOT_ID): SimViewOutput {
  return {
    id: view.id,
    team_id: teamId,
    type: view.kind,
    blocks: [],
    private_metadata: "",
    callback_id: "",
    state: { values: {} },
    title: null,
    clear_on_close: false,
    notify_on_close: false,
    close: null,
    submit: null,
    previous_view_id: view.previous_view_id ?? null,
    app_id: SIM_APP_ID,
    external_id: "",
    app_installed_team_id: teamId,
    bot_id: botId,
    // The app's own fields (title, blocks, callback_id...), checked when it opened the view.
    ...(view.view as Partial<SimViewOutput>),
    hash: view.hash,
    root_view_id: view.root_view_id,
  };
}

/**
 * One input's state in a `view_submission`, as Slack sends it: `value` for text and number
 * inputs (a number as its text), `selected_option` for a static select.
 */
export interface SimInputValue {
  type: string;
  value?: string | null;
  selected_option?: { text: { type: "plain_text"; text: string }; value: string } | null;
}

/** A `view_submission` payload: the view with the person's input under `state.values`. */
export function viewSubmissionPayload(
  options: {
    user: Clicker;
    view: SimView;
    values: Record<string, Record<string, SimInputValue>>;
    triggerId?: string;
  } & PayloadContext,
): SimViewSubmission {
  return {
    type: "view_submission",
    team: { id: options.user.team_id, domain: options.teamDomain ?? DEFAULT_DOMAIN },
    user: userObject(options.user),
    api_app_id: SIM_APP_ID,
    token: SIM_VERIFICATION_TOKEN,
    trigger_id: options.triggerId ?? "",
    view: { ...viewObject(options.view, options.user.team_id), state: { values: options.values } },
    response_urls: [],
    is_enterprise_install: false,
    enterprise: null,
  };
}

/** The form fields of a slash command, as Slack posts them. */
export function slashCommandBody(
  options: {
    user: Clicker;
    command: string;
    text?: string;
    channelId?: string;
    triggerId: string;
    responseUrl?: string;
  } & PayloadContext,
): SlashCommand {
  const channelId = options.channelId ?? `D${options.user.id.slice(1)}`;
  return {
    token: SIM_VERIFICATION_TOKEN,
    team_id: options.user.team_id,
    team_domain: options.teamDomain ?? DEFAULT_DOMAIN,
    channel_id: channelId,
    channel_name: channelId.startsWith("D") ? "directmessage" : channelId,
    user_id: options.user.id,
    user_name: options.user.name ?? options.user.id,
    command: options.command,
    text: options.text ?? "",
    api_app_id: SIM_APP_ID,
    is_enterprise_install: "false",
    response_url: options.responseUrl ?? "",
    trigger_id: options.triggerId,
  };
}

/** An Events API `event_callback` envelope carrying `app_home_opened`. */
export function appHomeOpenedEvent(
  options: {
    user: Clicker;
    teamId: string;
    botUserId?: string;
    channel?: string;
    view?: SimViewOutput;
  } & PayloadContext,
): SimAppHomeOpened {
  const eventTs = slackTime(options.now);
  const event: SimAppHomeOpened["event"] = {
    type: "app_home_opened",
    user: options.user.id,
    channel: options.channel ?? `D${options.user.id.slice(1)}`,
    tab: "home",
    event_ts: eventTs,
  };
  if (options.view !== undefined) event.view = options.view;
  return {
    token: SIM_VERIFICATION_TOKEN,
    team_id: options.teamId,
    api_app_id: SIM_APP_ID,
    event,
    type: "event_callback",
    event_id: `Ev${randomBytes(5).toString("hex").toUpperCase()}`,
    event_time: Math.floor(Number(eventTs)),
    authorizations: [
      {
        enterprise_id: null,
        team_id: options.teamId,
        user_id: options.botUserId ?? SIM_BOT_USER_ID,
        is_bot: true,
        is_enterprise_install: false,
      },
    ],
    is_ext_shared_channel: false,
  };
}

export interface SignedSendOptions {
  /** The app's Request URL, e.g. `http://127.0.0.1:3000/slack/events`. */
  url: string;
  signingSecret: string;
  /** Unix seconds put in X-Slack-Request-Timestamp and the signature; default now. */
  timestamp?: number;
  /** Sent instead of the computed signature, to test that a forged request is refused. */
  signatureOverride?: string;
  /** Marks the request as Slack's Nth retry (X-Slack-Retry-Num), as after a slow ack. */
  retryNum?: number;
  /** X-Slack-Retry-Reason sent with retryNum; default `http_timeout`. */
  retryReason?: string;
  /** Give up after this long; default 10 000 ms (Slack itself waits 3 s for the ack). */
  timeoutMs?: number;
}

/**
 * POSTs as Slack does: interactive payloads as the form field `payload=<json>`, slash
 * commands as form fields, events as JSON, each signed with the signing secret.
 * Returns the app's HTTP status and body text; a network failure throws naming the URL.
 */
export async function sendSigned(
  kind: "interaction" | "command" | "event",
  body: object,
  options: SignedSendOptions,
): Promise<{ status: number; body: string }> {
  let raw: string;
  let contentType: string;
  if (kind === "event") {
    raw = JSON.stringify(body);
    contentType = "application/json";
  } else {
    const form =
      kind === "interaction"
        ? new URLSearchParams({ payload: JSON.stringify(body) })
        : new URLSearchParams(Object.entries(body).map(([k, v]): [string, string] => [k, String(v ?? "")]));
    raw = form.toString();
    contentType = "application/x-www-form-urlencoded";
  }
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    "content-type": contentType,
    "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    "x-slack-request-timestamp": String(timestamp),
    "x-slack-signature": options.signatureOverride ?? slackSignature(options.signingSecret, timestamp, raw),
  };
  if (options.retryNum !== undefined) {
    headers["x-slack-retry-num"] = String(options.retryNum);
    headers["x-slack-retry-reason"] = options.retryReason ?? "http_timeout";
  }
  let res: Response;
  try {
    res = await fetch(options.url, {
      method: "POST",
      headers,
      body: raw,
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
  } catch (err) {
    const why =
      err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw new Error(`Sending a signed Slack ${kind} to ${options.url} failed: ${why}`);
  }
  return { status: res.status, body: await res.text() };
}
