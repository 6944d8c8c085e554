/**
 * auth.test and apps.connections.open: who the app is, and the one method that takes
 * the app-level token. Slack refuses either token on the other's methods.
 */
import { SIM_BOT_ID } from "../interactions.js";
import type { Obj, SimState } from "./state.js";

/** Bolt calls this before it handles anything, so it must answer `ok: true`. */
export function authTest(state: SimState): Obj {
  return {
    ok: true,
    url: `https://${state.teamDomain}.slack.com/`,
    team: state.teamDomain,
    user: state.users.get(state.botUserId)?.name ?? "countersign",
    team_id: state.teamId,
    user_id: state.botUserId,
    bot_id: SIM_BOT_ID,
    is_enterprise_install: false,
  };
}

/** The Socket Mode handshake: a one-use `ws://` URL for the app-level token. */
export function appsConnectionsOpen(state: SimState, token: string | undefined): Obj {
  if (!token) return { ok: false, error: "not_authed" };
  if (!state.socket) return { ok: false, error: "invalid_auth" };
  if (token === state.botToken) return { ok: false, error: "not_allowed_token_type" };
  if (token !== state.socket.appToken) return { ok: false, error: "invalid_auth" };
  return state.socket.connectionsOpen();
}

/** Whether a bot-token method may run: undefined when it may, else Slack's refusal. */
export function botTokenRefusal(state: SimState, token: string | undefined): Obj | undefined {
  if (!token) return { ok: false, error: "not_authed" };
  if (token === state.socket?.appToken) return { ok: false, error: "not_allowed_token_type" };
  if (token !== state.botToken) return { ok: false, error: "invalid_auth" };
  return undefined;
}
