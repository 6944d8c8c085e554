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
    for (const el of candidates) {
      if (isObj(el) && el.action_id === actionId) return { element: el, blockId: bid };
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
    for (const el of candidates) if (isObj(el) && typeof el.action_id === "string") ids.push(el.action_id);
  }
  return ids;
}

/**
 * A `block_actions` payload for a button click on `message`. The button's text and style
 * are copied from the message's blocks when the action_id is found there. Clicks on an
 * ephemeral message carry no `message`, as with Slack.
 */
export function blockActionsPayload(
  o: {
    user: Clicker;
    message: SimMessage;
    actionId: string;
    value: string;
    blockId?: string;
    triggerId: string;
    responseUrl?: string;
  } & PayloadContext,
): SimBlockAction {
  const m = o.message;
  const found = findElement(m.blocks, o.actionId, o.blockId);
  const el = found?.element;
  const action: SimElementAction = {
    action_id: o.actionId,
    block_id: o.blockId ?? found?.blockId ?? "",
    type: typeof el?.type === "string" ? el.type : "button",
    value: o.value,
    action_ts: slackTime(o.now),
  };
  // Copied as the app sent them; the posting methods checked them against Block Kit.
  if (el?.text !== undefined) action.text = el.text as ButtonAction["text"];
  if (el?.style === "primary" || el?.style === "danger") action.style = el.style;
  const ephemeral = m.ephemeral_for !== undefined;
  const container: Obj = {
    type: "message",
    message_ts: m.ts,
    channel_id: m.channel,
    is_ephemeral: ephemeral,
  };
  if (m.thread_ts !== undefined) container.thread_ts = m.thread_ts;
  const payload: SimBlockAction = {
    type: "block_actions",
    user: userObject(o.user),
    api_app_id: SIM_APP_ID,
    token: SIM_VERIFICATION_TOKEN,
    container,
    trigger_id: o.triggerId,
    team: { id: o.user.team_id, domain: o.teamDomain ?? DEFAULT_DOMAIN },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: m.channel, name: m.channel },
    state: { values: {} },
    actions: [action],
  };
  if (!ephemeral) {
    const message: NonNullable<SimBlockAction["message"]> = {
      type: "message",
      user: m.user,
      ts: m.ts,
      text: m.text,
      team: o.user.team_id,
      app_id: SIM_APP_ID,
      blocks: m.blocks ?? [],
    };
    if (m.thread_ts !== undefined) message.thread_ts = m.thread_ts;
    payload.message = message;
  }
  if (o.responseUrl !== undefined) payload.response_url = o.responseUrl;
  return payload;
}

/** The view object as Slack reports it in API answers and payloads. */
export function viewObject(v: SimView, teamId: string, botId: string = SIM_BOT_ID): SimViewOutput {
  return {
    id: v.id,
    team_id: teamId,
    type: v.kind,
    blocks: [],
    private_metadata: "",
    callback_id: "",
    state: { values: {} },
    title: null,
    clear_on_close: false,
    notify_on_close: false,
    close: null,
    submit: null,
    previous_view_id: v.previous_view_id ?? null,
    app_id: SIM_APP_ID,
    external_id: "",
    app_installed_team_id: teamId,
    bot_id: botId,
    // The app's own fields (title, blocks, callback_id...), checked when it opened the view.
    ...(v.view as Partial<SimViewOutput>),
    hash: v.hash,
    root_view_id: v.root_view_id,
  };
}

/** A `view_submission` payload: the view with the person's input under `state.values`. */
export function viewSubmissionPayload(
  o: {
    user: Clicker;
    view: SimView;
    values: Record<string, Record<string, { type: string; value: string }>>;
    triggerId?: string;
  } & PayloadContext,
): SimViewSubmission {
  return {
    type: "view_submission",
    team: { id: o.user.team_id, domain: o.teamDomain ?? DEFAULT_DOMAIN },
    user: userObject(o.user),
    api_app_id: SIM_APP_ID,
    token: SIM_VERIFICATION_TOKEN,
    trigger_id: o.triggerId ?? "",
    view: { ...viewObject(o.view, o.user.team_id), state: { values: o.values } },
    response_urls: [],
    is_enterprise_install: false,
    enterprise: null,
  };
}

/** The form fields of a slash command, as Slack posts them. */
export function slashCommandBody(
  o: {
    user: Clicker;
    command: string;
    text?: string;
    channelId?: string;
    triggerId: string;
    responseUrl?: string;
  } & PayloadContext,
): SlashCommand {
  const channelId = o.channelId ?? `D${o.user.id.slice(1)}`;
  return {
    token: SIM_VERIFICATION_TOKEN,
    team_id: o.user.team_id,
    team_domain: o.teamDomain ?? DEFAULT_DOMAIN,
    channel_id: channelId,
    channel_name: channelId.startsWith("D") ? "directmessage" : channelId,
    user_id: o.user.id,
    user_name: o.user.name ?? o.user.id,
    command: o.command,
    text: o.text ?? "",
    api_app_id: SIM_APP_ID,
    is_enterprise_install: "false",
    response_url: o.responseUrl ?? "",
    trigger_id: o.triggerId,
  };
}

/** An Events API `event_callback` envelope carrying `app_home_opened`. */
export function appHomeOpenedEvent(
  o: {
    user: Clicker;
    teamId: string;
    botUserId?: string;
    channel?: string;
    view?: SimViewOutput;
  } & PayloadContext,
): SimAppHomeOpened {
  const eventTs = slackTime(o.now);
  const event: SimAppHomeOpened["event"] = {
    type: "app_home_opened",
    user: o.user.id,
    channel: o.channel ?? `D${o.user.id.slice(1)}`,
    tab: "home",
    event_ts: eventTs,
  };
  if (o.view !== undefined) event.view = o.view;
  return {
    token: SIM_VERIFICATION_TOKEN,
    team_id: o.teamId,
    api_app_id: SIM_APP_ID,
    event,
    type: "event_callback",
    event_id: `Ev${randomBytes(5).toString("hex").toUpperCase()}`,
    event_time: Math.floor(Number(eventTs)),
    authorizations: [
      {
        enterprise_id: null,
        team_id: o.teamId,
        user_id: o.botUserId ?? SIM_BOT_USER_ID,
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
  o: SignedSendOptions,
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
  const timestamp = o.timestamp ?? Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    "content-type": contentType,
    "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    "x-slack-request-timestamp": String(timestamp),
    "x-slack-signature": o.signatureOverride ?? slackSignature(o.signingSecret, timestamp, raw),
  };
  if (o.retryNum !== undefined) {
    headers["x-slack-retry-num"] = String(o.retryNum);
    headers["x-slack-retry-reason"] = o.retryReason ?? "http_timeout";
  }
  let res: Response;
  try {
    res = await fetch(o.url, {
      method: "POST",
      headers,
      body: raw,
      signal: AbortSignal.timeout(o.timeoutMs ?? 10_000),
    });
  } catch (err) {
    const why =
      err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw new Error(`Sending a signed Slack ${kind} to ${o.url} failed: ${why}`);
  }
  return { status: res.status, body: await res.text() };
}
