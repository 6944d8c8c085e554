/**
 * The views.* family: modals (open, push, update) and the Home tab (publish), with
 * Slack's one-use, three-second trigger ids, view hashes and a stack of three modals;
 * and what Slack does with the app's answer to a view submission.
 */
import type { webApi } from "@slack/bolt";
import { viewProblems } from "../blockkit.js";
import { viewObject } from "../interactions.js";
import {
  invalidArguments,
  isObj,
  knownUser,
  newHash,
  newViewId,
  type Obj,
  Refusal,
  type SimState,
  str,
  type Trigger,
  type WireArgs,
  withIds,
} from "./state.js";
import type { SimView } from "./types.js";

/** Slack allows a stack of three modals. */
const MODAL_STACK_LIMIT = 3;

function viewArg(args: { view?: unknown }, surface: "modal" | "home"): Obj {
  if (!isObj(args.view))
    throw invalidArguments(["missing required field: view (a JSON view object) [json-pointer:/view]"]);
  const problems = viewProblems(args.view, surface);
  if (problems.length > 0) throw invalidArguments(problems);
  const view = structuredClone(args.view);
  if (Array.isArray(view.blocks)) view.blocks = withIds(view.blocks);
  return view;
}

function consumeTrigger(state: SimState, args: { trigger_id?: unknown }): Trigger {
  const id = str(args.trigger_id);
  const trigger = id ? state.triggers.get(id) : undefined;
  if (!trigger) throw new Refusal("invalid_trigger_id");
  if (trigger.used) throw new Refusal("exchanged_trigger_id");
  if (Date.now() - trigger.issuedAt > state.triggerTtlMs) throw new Refusal("expired_trigger_id");
  trigger.used = true;
  return trigger;
}

function viewAnswer(state: SimState, view: SimView): Obj {
  return { ok: true, view: viewObject(view, state.teamId) };
}

export function viewsOpen(state: SimState, args: WireArgs<webApi.ViewsOpenArguments>): Obj {
  const view = viewArg(args, "modal");
  const trigger = consumeTrigger(state, args);
  const id = newViewId(state);
  const opened: SimView = {
    id,
    user: trigger.user ?? "",
    trigger_id: str(args.trigger_id),
    view,
    hash: newHash(),
    root_view_id: id,
    kind: "modal",
  };
  state.views.push(opened);
  return viewAnswer(state, opened);
}

export function viewsUpdate(state: SimState, args: WireArgs<webApi.ViewsUpdateArguments>): Obj {
  const viewId = str(args.view_id);
  const externalId = str(args.external_id);
  if (!viewId && !externalId) {
    throw invalidArguments(["view_id or external_id is required [json-pointer:/view_id]"]);
  }
  const target = viewId
    ? state.views.find((v) => v.id === viewId)
    : state.views.findLast((v) => v.view.external_id === externalId);
  if (!target || target.closed) throw new Refusal("not_found");
  const hash = str(args.hash);
  if (hash && hash !== target.hash) throw new Refusal("hash_conflict");
  target.view = viewArg(args, target.kind);
  target.hash = newHash();
  return viewAnswer(state, target);
}

export function viewsPush(state: SimState, args: WireArgs<webApi.ViewsPushArguments>): Obj {
  const view = viewArg(args, "modal");
  const trigger = consumeTrigger(state, args);
  const user = trigger.user ?? "";
  const top = state.views.findLast((v) => v.kind === "modal" && v.user === user && !v.closed);
  const id = newViewId(state);
  let root = id;
  if (top) {
    root = top.root_view_id;
    const depth = state.views.filter((v) => v.root_view_id === root && !v.closed).length;
    if (depth >= MODAL_STACK_LIMIT) throw new Refusal("push_limit_reached");
  }
  const pushed: SimView = {
    id,
    user,
    trigger_id: str(args.trigger_id),
    view,
    hash: newHash(),
    root_view_id: root,
    kind: "modal",
    ...(top ? { previous_view_id: top.id } : {}),
  };
  state.views.push(pushed);
  return viewAnswer(state, pushed);
}

export function viewsPublish(state: SimState, args: WireArgs<webApi.ViewsPublishArguments>): Obj {
  const user = str(args.user_id);
  if (!user || !knownUser(state, user)) throw new Refusal("user_not_found");
  const view = viewArg(args, "home");
  const existing = state.views.find((v) => v.kind === "home" && v.user === user);
  const hash = str(args.hash);
  if (existing && hash && hash !== existing.hash) throw new Refusal("hash_conflict");
  if (existing) {
    existing.view = view;
    existing.hash = newHash();
    return viewAnswer(state, existing);
  }
  const id = newViewId(state);
  const home: SimView = { id, user, view, hash: newHash(), root_view_id: id, kind: "home" };
  state.views.push(home);
  return viewAnswer(state, home);
}

/**
 * What Slack does with the app's answer to a submission: `errors` keeps the view open,
 * `update` replaces it, `push` stacks a new one, `clear` closes the stack, and anything
 * else (an empty ack included) closes the view.
 */
export function applyViewAnswer(state: SimState, view: SimView, body: string): void {
  let answer: unknown;
  try {
    answer = body.trim() === "" ? {} : JSON.parse(body);
  } catch {
    answer = {};
  }
  const action = isObj(answer) ? answer.response_action : undefined;
  if (action === "errors") return;
  if (
    (action === "update" || action === "push") &&
    isObj(answer) &&
    isObj(answer.view) &&
    viewProblems(answer.view, "modal").length === 0
  ) {
    const next = structuredClone(answer.view);
    if (Array.isArray(next.blocks)) next.blocks = withIds(next.blocks);
    if (action === "update") {
      view.view = next;
      view.hash = newHash();
    } else {
      state.views.push({
        id: newViewId(state),
        user: view.user,
        view: next,
        hash: newHash(),
        root_view_id: view.root_view_id,
        previous_view_id: view.id,
        kind: "modal",
      });
    }
    return;
  }
  if (action === "clear") {
    for (const stacked of state.views) if (stacked.root_view_id === view.root_view_id) stacked.closed = true;
    return;
  }
  view.closed = true;
}
