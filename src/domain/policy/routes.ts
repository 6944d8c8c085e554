/**
 * The routes section: which requests a route takes (`when`), and what it does with them:
 * decide at once, or ask people level by level, in business hours if it says so.
 */
import type { AgentPolicy, BusinessHours, Policy, Route, RouteLevel, RouteWhen, Weekday } from "../types.js";
import { isActionGlob } from "./actions.js";
import { LEVEL_KEYS, readLevel } from "./levels.js";
import { checkKnown, HHMM, type Known, NAME, NAME_WHAT, ON_TIMEOUT, WEEKDAYS } from "./names.js";
import { type Entry, formatPath, type Item, type Path, type Reader } from "./yaml.js";

const WHEN_KEYS = ["risk_class", "region", "action", "agent", "vendor_managed"];
export const ROUTE_KEYS = [
  "name",
  "when",
  "auto",
  ...LEVEL_KEYS,
  "on_timeout",
  "escalation",
  "business_hours",
];

export function readRoute(
  r: Reader,
  item: Item<unknown>,
  index: number,
  known: Known,
  defaults: Policy["defaults"],
  names: Map<string, Path>,
): Route | undefined {
  const fields = r.object(item.value, item.path, "a route", ROUTE_KEYS, ["name"]);
  if (fields === undefined) return undefined;
  const before = r.problems.length;

  let name = "";
  const nameEntry = fields.get("name");
  if (nameEntry) {
    const value = r.name(nameEntry.value, nameEntry.path, NAME, NAME_WHAT);
    if (value !== undefined) {
      const earlier = names.get(value);
      if (earlier !== undefined) {
        r.report(
          r.deref(nameEntry.value),
          nameEntry.path,
          `route name "${value}" is already used by ${formatPath(earlier)}`,
        );
      } else names.set(value, item.path);
      name = value;
    }
  }

  const whenEntry = fields.get("when");
  const when = whenEntry ? readWhen(r, whenEntry, known) : undefined;
  if (!whenEntry) {
    // Required rather than defaulted to "match all": a misspelt `when` must not make a catch-all.
    r.report(
      r.deref(item.value),
      [...item.path, "when"],
      "when is required; write when: {} to match every request",
      item.node,
    );
  }

  // The agents a request on this route can come from: owner roles and quorum are judged against them.
  const candidates = candidateAgents(known.agents, when);

  const autoEntry = fields.get("auto");
  if (autoEntry) {
    const auto = r.oneOf(autoEntry.value, autoEntry.path, ["approve", "deny"] as const);
    for (const key of [...LEVEL_KEYS, "on_timeout", "escalation", "business_hours"]) {
      const extra = fields.get(key);
      if (extra) {
        r.report(
          extra.keyNode,
          extra.path,
          `an auto route decides at once, so ${key} has no meaning here; remove it`,
        );
      }
    }
    if (whenEntry && when !== undefined && when.action === undefined) {
      r.report(
        r.deref(whenEntry.value),
        whenEntry.path,
        "an auto route must name its actions: add action: [...] to when, so it cannot decide more than you meant",
        whenEntry.keyNode,
      );
    }
    if (r.problems.length > before || auto === undefined || when === undefined) return undefined;
    return { name, index, when, auto, levels: [], on_timeout: "deny" };
  }

  const level0 = readLevel(
    r,
    item.value,
    item.path,
    fields,
    candidates,
    {
      quorum: 1,
      timeout_ms: defaults.timeout_ms,
    },
    true,
    [],
  );

  let onTimeout = defaults.on_timeout;
  const onTimeoutEntry = fields.get("on_timeout");
  if (onTimeoutEntry) onTimeout = r.oneOf(onTimeoutEntry.value, onTimeoutEntry.path, ON_TIMEOUT) ?? onTimeout;

  const levels: RouteLevel[] = level0 ? [level0] : [];
  const escalationEntry = fields.get("escalation");
  let escalationCount = 0;
  if (escalationEntry) {
    const items = r.seq(escalationEntry.value, escalationEntry.path, "escalation levels") ?? [];
    escalationCount = items.length;
    // Whether every level so far is sound: a later level's reach is judged only then,
    // since votes carried over from a broken level cannot be counted.
    let allSound = level0 !== undefined;
    for (const lvl of items) {
      const lf = r.object(lvl.value, lvl.path, "an escalation level", LEVEL_KEYS);
      if (lf === undefined) {
        allSound = false;
        continue;
      }
      const level = readLevel(
        r,
        lvl.value,
        lvl.path,
        lf,
        candidates,
        {
          // When level 0 is broken it has been reported; "" keeps its missing channel from being reported again.
          channel: level0?.channel ?? "",
          quorum: level0?.quorum ?? 1,
          timeout_ms: level0?.timeout_ms ?? defaults.timeout_ms,
          ...(level0?.step_up ? { step_up: level0.step_up } : {}),
        },
        false,
        allSound ? [...levels] : null,
      );
      if (level) levels.push(level);
      else allSound = false;
    }
  }
  if (onTimeout === "escalate" && escalationCount === 0) {
    r.report(
      onTimeoutEntry ? r.deref(onTimeoutEntry.value) : r.deref(item.value),
      [...item.path, "on_timeout"],
      onTimeoutEntry
        ? "on_timeout is escalate but the route has no escalation levels; add escalation: [...] or use deny"
        : "on_timeout is escalate (from defaults) but the route has no escalation levels; add escalation: [...] or set on_timeout: deny",
    );
  }

  let businessHours: BusinessHours | undefined;
  const bhEntry = fields.get("business_hours");
  if (bhEntry) businessHours = readBusinessHours(r, bhEntry);

  if (r.problems.length > before || when === undefined) return undefined;
  return {
    name,
    index,
    when,
    levels,
    on_timeout: onTimeout,
    ...(businessHours ? { business_hours: businessHours } : {}),
  };
}

function readWhen(r: Reader, entry: Entry, known: Known): RouteWhen | undefined {
  const fields = r.object(
    entry.value,
    entry.path,
    "the route's conditions (write when: {} to match every request)",
    WHEN_KEYS,
    [],
    `a route can match on ${WHEN_KEYS.join(", ")}; a misspelt condition would silently widen the route`,
  );
  if (fields === undefined) return undefined;
  const before = r.problems.length;
  const out: { -readonly [K in keyof RouteWhen]: RouteWhen[K] } = {};

  const list = (key: string, what: string, check: (item: Item<string>) => boolean): string[] | undefined => {
    const e = fields.get(key);
    if (!e) return undefined;
    const items = r.strings(e.value, e.path, what);
    if (items === undefined) return undefined;
    if (items.length === 0) {
      r.report(
        r.deref(e.value),
        e.path,
        `an empty list matches nothing; leave ${key} out to match any value`,
      );
      return undefined;
    }
    return items.filter(check).map((i) => i.value);
  };
  const riskClass = list("risk_class", "a risk class", (i) => checkKnown(r, i, known.risk, "risk class"));
  const region = list("region", "a region", (i) => checkKnown(r, i, known.regions, "region"));
  const action = list("action", "an action glob such as payments.*", (i) => {
    if (isActionGlob(i.value)) return true;
    r.report(
      i.node,
      i.path,
      `"${i.value}" is not an action glob; expected dotted lower-case like payments.*`,
    );
    return false;
  });
  const agent = list("agent", "an agent id", (i) => checkKnown(r, i, known.agentIds, "agent"));
  if (riskClass) out.risk_class = riskClass;
  if (region) out.region = region;
  if (action) out.action = action;
  if (agent) out.agent = agent;
  const vm = fields.get("vendor_managed");
  if (vm) {
    const value = r.bool(vm.value, vm.path);
    if (value !== undefined) out.vendor_managed = value;
  }
  return r.problems.length > before ? undefined : out;
}

function candidateAgents(agents: Known["agents"], when: RouteWhen | undefined): AgentPolicy[] | null {
  if (agents === null || when === undefined) return null;
  const all = Object.values(agents);
  const matching = all.filter(
    (a) =>
      (when.agent === undefined || when.agent.includes(a.id)) &&
      (when.vendor_managed === undefined || when.vendor_managed === a.vendor_managed),
  );
  // A route no agent can reach yet is allowed (a vendor agent may come later); judge it
  // against every agent rather than against none.
  return matching.length > 0 ? matching : all;
}

function readBusinessHours(r: Reader, entry: Entry): BusinessHours | undefined {
  const fields = r.object(
    entry.value,
    entry.path,
    "business hours",
    ["days", "start", "end"],
    ["days", "start", "end"],
  );
  if (fields === undefined) return undefined;
  const before = r.problems.length;
  const days: Weekday[] = [];
  const daysEntry = fields.get("days");
  if (daysEntry) {
    const items = r.strings(daysEntry.value, daysEntry.path, `a weekday (${WEEKDAYS.join(", ")})`) ?? [];
    if (items.length === 0 && r.problems.length === before) {
      r.report(
        r.deref(daysEntry.value),
        daysEntry.path,
        "list at least one day, or the clock would never run",
      );
    }
    for (const d of items) {
      if (!(WEEKDAYS as readonly string[]).includes(d.value)) {
        r.report(d.node, d.path, `"${d.value}" is not a weekday; expected ${WEEKDAYS.join(", ")}`);
      } else if (days.includes(d.value as Weekday)) {
        r.report(d.node, d.path, `"${d.value}" is listed twice`);
      } else days.push(d.value as Weekday);
    }
  }
  const time = (key: "start" | "end"): string | undefined => {
    const e = fields.get(key);
    return e
      ? r.name(e.value, e.path, HHMM, 'a 24-hour time such as "09:00" (end may be "24:00")')
      : undefined;
  };
  const start = time("start");
  const end = time("end");
  if (start !== undefined && end !== undefined) {
    if (start === "24:00") {
      r.report(r.deref(fields.get("start")!.value), fields.get("start")!.path, "start cannot be 24:00");
    } else if (end <= start) {
      const endEntry = fields.get("end")!;
      r.report(
        r.deref(endEntry.value),
        endEntry.path,
        `end ${end} must be after start ${start}; hours cannot span midnight (use "24:00" and "00:00" on two days)`,
      );
    }
  }
  if (r.problems.length > before || start === undefined || end === undefined) return undefined;
  return { days, start, end };
}
