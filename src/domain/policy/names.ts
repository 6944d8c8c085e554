/**
 * The forms of names a policy uses, and the cross-references between its sections (a
 * route naming a region, an action naming a risk class) that every section checks.
 */
import type { AgentPolicy, Weekday } from "../types.js";
import type { Item, Path, Reader } from "./yaml.js";

export const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
export const NAME_WHAT = "a name of letters, digits, '.', '_', ':' or '-' (at most 128)";
export const AGENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const ENV_WHAT = "an environment variable name such as BILLING_AGENT_SECRET";
// Slack ids, not names: names change and can be reused, ids cannot.
export const SLACK_TEAM = /^[TE][A-Z0-9]{2,}$/;
export const SLACK_USER = /^[UW][A-Z0-9]{2,}$/;
export const SLACK_GROUP = /^S[A-Z0-9]{2,}$/;
export const SLACK_CHANNEL = /^[CG][A-Z0-9]{2,}$/;
export const HHMM = /^([01]\d|2[0-3]):[0-5]\d$|^24:00$/;
export const WEEKDAYS: readonly Weekday[] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
export const ON_TIMEOUT = ["deny", "escalate"] as const;

/** What later sections may refer to; null when a section was broken, to avoid a cascade of follow-on problems. */
export interface Known {
  risk: ReadonlySet<string> | null;
  regions: ReadonlySet<string> | null;
  /** Every well-formed agent id, even of an agent whose settings are broken. */
  agentIds: ReadonlySet<string> | null;
  /** Only when every agent is valid: owner roles and quorums are judged against them. */
  agents: Readonly<Record<string, AgentPolicy>> | null;
}

/**
 * Defines an own property even for a key such as "__proto__" (a valid agent id and action
 * glob), which plain assignment would turn into a prototype change.
 */
export function setOwn<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A name that must be one of `known`; membership is not judged when `known` is null (its section was broken). */
export function knownName(
  r: Reader,
  raw: unknown,
  path: Path,
  known: ReadonlySet<string> | null,
  what: "risk class" | "region" | "agent",
): string | undefined {
  const value = r.string(raw, path, `a ${what}`);
  if (value === undefined) return undefined;
  return checkKnown(r, { value, node: r.deref(raw), path }, known, what) ? value : undefined;
}

export function checkKnown(
  r: Reader,
  item: Item<string>,
  known: ReadonlySet<string> | null,
  what: "risk class" | "region" | "agent",
): boolean {
  if (known === null || known.has(item.value)) return true;
  const list = known.size === 0 ? "none are defined" : `known: ${[...known].join(", ")}`;
  r.report(item.node, item.path, `unknown ${what} "${item.value}" (${list})`);
  return false;
}

export function readSlackIds(
  r: Reader,
  raw: unknown,
  path: Path,
  pattern: RegExp,
  what: string,
): string[] | undefined {
  const items = r.strings(raw, path, what);
  if (items === undefined) return undefined;
  const out: string[] = [];
  let ok = true;
  for (const item of items) {
    if (!pattern.test(item.value)) {
      r.report(item.node, item.path, `"${item.value}" is not valid: expected ${what}`);
      ok = false;
    } else if (!out.includes(item.value)) out.push(item.value);
  }
  return ok ? out : undefined;
}
