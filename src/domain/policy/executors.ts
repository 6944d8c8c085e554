/**
 * The executors section: the services that carry out approved actions, redeem each
 * approval once and report its outcome. They prove who they are as agents do (one fixed
 * key), and may redeem only the approvals their `may_redeem` (and `for_agents`) cover.
 */
import type { ExecutorPolicy } from "../types.js";
import { isActionGlob } from "./actions.js";
import { readAuth } from "./agents.js";
import { checkKnown, type Known } from "./names.js";
import type { Entry, Reader } from "./yaml.js";

const EXECUTOR_KEYS = ["auth", "may_redeem", "for_agents"];

export function readExecutor(
  r: Reader,
  e: Entry,
  known: Known,
  resolveKeyFile: (written: string) => string,
): ExecutorPolicy | undefined {
  const fields = r.object(e.value, e.path, "the executor's settings", EXECUTOR_KEYS, ["auth", "may_redeem"]);
  if (fields === undefined) return undefined;
  const before = r.problems.length;
  const authEntry = fields.get("auth");
  const auth = authEntry ? readAuth(r, authEntry, resolveKeyFile, "the executor's proof key") : undefined;

  const mayRedeem: string[] = [];
  const mayEntry = fields.get("may_redeem");
  if (mayEntry) {
    const globs = r.strings(mayEntry.value, mayEntry.path, "an action glob such as payments.*");
    if (globs !== undefined && globs.length === 0) {
      r.report(
        r.deref(mayEntry.value),
        mayEntry.path,
        "list at least one action glob whose approvals the executor may redeem",
      );
    }
    for (const g of globs ?? []) {
      if (isActionGlob(g.value)) mayRedeem.push(g.value);
      else
        r.report(
          g.node,
          g.path,
          `"${g.value}" is not an action glob; expected dotted lower-case like payments.*`,
        );
    }
  }

  const forAgents: string[] = [];
  const forEntry = fields.get("for_agents");
  if (forEntry) {
    const ids = r.strings(forEntry.value, forEntry.path, "an agent id");
    if (ids !== undefined && ids.length === 0) {
      r.report(
        r.deref(forEntry.value),
        forEntry.path,
        "list at least one agent, or leave for_agents out to allow any agent's approvals",
      );
    }
    for (const item of ids ?? []) {
      if (checkKnown(r, item, known.agentIds, "agent")) forAgents.push(item.value);
    }
  }

  if (r.problems.length > before || auth === undefined) return undefined;
  return { id: e.key, auth, may_redeem: mayRedeem, for_agents: forAgents };
}
