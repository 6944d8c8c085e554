/**
 * The simulator's public shapes: what a test or the demo page sees (users, messages,
 * views, calls) and what it can ask for (faults, options, where a person's action goes).
 * They live apart from the facade so the API families can share them without importing it.
 */

import type { RequestListener } from "node:http";
import type { types } from "@slack/bolt";

/** A block as Block Kit defines it; the simulator stores only blocks that passed its checks. */
export type MessageBlock = types.KnownBlock | types.Block;

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
  blocks?: MessageBlock[];
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
