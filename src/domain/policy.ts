/**
 * The policy file: parsed from YAML, validated as a whole, and turned into the Policy
 * the rest of the core reads. Every problem is collected with the line and column of
 * the node that causes it, so one run of `policy check` shows all of them.
 *
 * This module is given the file's text; reading it, and the agents' key files and
 * secrets it names, is src/adapters/policy/load.ts's part. The sections are read in
 * modules of their own under ./policy/: the YAML reader with positions (yaml.ts), the
 * shared name forms (names.ts), agents, routes and their levels.
 */

import { isMap } from "yaml";
import { sha256B64url } from "./canonical.js";
import { isActionGlob } from "./policy/actions.js";
import { readAgent } from "./policy/agents.js";
import { readExecutor } from "./policy/executors.js";
import {
  AGENT_ID,
  type Known,
  knownName,
  NAME,
  NAME_WHAT,
  ON_TIMEOUT,
  SLACK_TEAM,
  setOwn,
} from "./policy/names.js";
import { PolicyError, sortProblems } from "./policy/problems.js";
import { readRoute } from "./policy/routes.js";
import { type Entry, type Path, type Reader, readYaml } from "./policy/yaml.js";
import type { ActionSettings, AgentPolicy, ExecutorPolicy, Policy, Route } from "./types.js";

export {
  actionGlobMatches,
  changesAllowed,
  effectiveRiskClass,
  isActionGlob,
  riskRank,
} from "./policy/actions.js";
export { normalizeOrigin } from "./policy/agents.js";
export { PolicyError, type PolicyProblem } from "./policy/problems.js";

const TOP_KEYS = [
  "issuer",
  "slack",
  "risk_classes",
  "regions",
  "defaults",
  "actions",
  "agents",
  "executors",
  "routes",
];

const DEFAULTS = {
  timeout_ms: 30 * 60_000,
  on_timeout: "deny" as const,
  approval_valid_for_ms: 15 * 60_000,
  max_pending: 100,
};

/**
 * Parses and validates a policy, given its text. `file` (an absolute path) names the file
 * in messages and in the Policy; `resolveKeyFile` turns a `public_key_file` as written
 * into the path the loader will read (relative ones are relative to the policy's folder).
 * Key files are not read here. Throws PolicyError listing every problem found.
 */
export function parsePolicy(text: string, file: string, resolveKeyFile: (written: string) => string): Policy {
  const { reader: r, contents, usable } = readYaml(text);
  if (!usable) throw new PolicyError(file, sortProblems(r.problems));

  if (contents === null) {
    r.report(
      undefined,
      [],
      "the policy file is empty; it needs at least issuer, slack, risk_classes, regions, agents and routes",
    );
    throw new PolicyError(file, r.problems);
  }
  const policy = readPolicy(r, contents, resolveKeyFile);
  if (r.problems.length > 0 || policy === undefined) {
    throw new PolicyError(file, sortProblems(r.problems));
  }
  return { ...policy, sha256: sha256B64url(text), file };
}

type PolicyBody = Omit<Policy, "sha256" | "file">;

function readPolicy(
  r: Reader,
  root: unknown,
  resolveKeyFile: (written: string) => string,
): PolicyBody | undefined {
  const top = r.object(root, [], "the policy", TOP_KEYS, [
    "issuer",
    "slack",
    "risk_classes",
    "regions",
    "agents",
    "routes",
  ]);
  if (top === undefined) return undefined;
  const known: Known = { risk: null, regions: null, agentIds: null, agents: null };

  const issuerEntry = top.get("issuer");
  let issuer = "";
  if (issuerEntry) {
    const value = r.string(
      issuerEntry.value,
      issuerEntry.path,
      "a URL such as https://countersign.example.com",
    );
    if (value !== undefined) {
      const ok = URL.canParse(value) && /^https?:$/.test(new URL(value).protocol);
      if (ok) issuer = value;
      else
        r.report(
          r.deref(issuerEntry.value),
          issuerEntry.path,
          `"${value}" is not an http(s) URL; expected something like https://countersign.example.com`,
        );
    }
  }

  let teamId = "";
  const slackEntry = top.get("slack");
  if (slackEntry) {
    const slack = r.object(slackEntry.value, slackEntry.path, "the Slack settings", ["team_id"], ["team_id"]);
    const team = slack?.get("team_id");
    if (team)
      teamId = r.name(team.value, team.path, SLACK_TEAM, "a Slack workspace id such as T0123ABCD") ?? "";
  }

  const risk = readRiskClasses(r, top.get("risk_classes"));
  known.risk = risk.names;
  const regions = readRegions(r, top.get("regions"));
  known.regions = regions.names;

  const defaults = readDefaults(r, top.get("defaults"));

  const actions: Record<string, ActionSettings> = {};
  const actionsEntry = top.get("actions");
  if (actionsEntry) {
    for (const e of r.map(actionsEntry.value, actionsEntry.path, "action type globs") ?? []) {
      if (!isActionGlob(e.key)) {
        r.report(
          e.keyNode,
          e.path,
          `"${e.key}" is not an action glob; expected dotted lower-case like payments.*`,
        );
        continue;
      }
      const fields = r.object(e.value, e.path, "the action's settings", ["min_risk", "editable"]);
      if (fields === undefined) continue;
      if (fields.size === 0) {
        // An entry with only unknown keys has been reported for them.
        if (entriesOf(r, e.value) > 0) continue;
        r.report(r.deref(e.value), e.path, "give min_risk, editable or both; an empty entry changes nothing");
        continue;
      }
      const settings: { min_risk?: string; editable?: boolean } = {};
      let ok = true;
      const minRisk = fields.get("min_risk");
      if (minRisk) {
        const risk = knownName(r, minRisk.value, minRisk.path, known.risk, "risk class");
        if (risk === undefined) ok = false;
        else settings.min_risk = risk;
      }
      const editable = fields.get("editable");
      if (editable) {
        const value = r.bool(editable.value, editable.path);
        if (value === undefined) ok = false;
        else settings.editable = value;
      }
      if (ok) setOwn(actions, e.key, settings);
    }
  }

  const agentsEntry = top.get("agents");
  if (agentsEntry) {
    const entries = r.map(agentsEntry.value, agentsEntry.path, "the agents");
    if (entries !== undefined) {
      if (entries.length === 0)
        r.report(r.deref(agentsEntry.value), agentsEntry.path, "list at least one agent");
      const agents: Record<string, AgentPolicy> = {};
      const before = r.problems.length;
      known.agentIds = new Set(entries.filter((e) => AGENT_ID.test(e.key)).map((e) => e.key));
      for (const e of entries) {
        if (!AGENT_ID.test(e.key)) {
          r.report(
            e.keyNode,
            e.path,
            `"${e.key}" is not a valid agent id: use 1-128 of letters, digits, . _ : -`,
          );
          continue;
        }
        const agent = readAgent(r, e, known, defaults.max_pending, resolveKeyFile);
        if (agent !== undefined) setOwn(agents, e.key, agent);
      }
      if (r.problems.length === before) known.agents = agents;
    }
  }

  const executors: Record<string, ExecutorPolicy> = {};
  const executorsEntry = top.get("executors");
  if (executorsEntry) {
    for (const e of r.map(executorsEntry.value, executorsEntry.path, "the executors") ?? []) {
      if (!AGENT_ID.test(e.key)) {
        r.report(
          e.keyNode,
          e.path,
          `"${e.key}" is not a valid executor id: use 1-128 of letters, digits, . _ : -`,
        );
        continue;
      }
      // One id, one role: a proof names its signer by id alone, so an id that were both
      // could redeem the approvals it asked for itself.
      if (known.agentIds?.has(e.key)) {
        r.report(
          e.keyNode,
          e.path,
          `"${e.key}" is both an agent and an executor; an id may be only one of them`,
        );
        continue;
      }
      const executor = readExecutor(r, e, known, resolveKeyFile);
      if (executor !== undefined) setOwn(executors, e.key, executor);
    }
  }

  const routes: Route[] = [];
  const routesEntry = top.get("routes");
  if (routesEntry) {
    const items = r.seq(routesEntry.value, routesEntry.path, "the routes");
    if (items !== undefined) {
      if (items.length === 0)
        r.report(r.deref(routesEntry.value), routesEntry.path, "list at least one route");
      const names = new Map<string, Path>();
      items.forEach((item, index) => {
        const route = readRoute(r, item, index, known, defaults, names);
        if (route !== undefined) routes.push(route);
      });
    }
  }

  return {
    issuer,
    slack: { team_id: teamId },
    risk_classes: risk.names === null ? [] : [...risk.names],
    regions: regions.regions,
    defaults,
    actions,
    agents: known.agents ?? {},
    executors,
    routes,
  };
}

/** The risk classes; `names` is null only when an entry is not a name at all (a duplicate is reported but keeps the set usable). */
function readRiskClasses(r: Reader, entry: Entry | undefined): { names: ReadonlySet<string> | null } {
  if (!entry) return { names: null };
  const items = r.seq(entry.value, entry.path, "the risk classes in rising order");
  if (items === undefined) return { names: null };
  if (items.length === 0) {
    r.report(r.deref(entry.value), entry.path, "list at least one risk class, lowest first");
    return { names: null };
  }
  const names = new Set<string>();
  let ok = true;
  for (const item of items) {
    const name = r.name(item.value, item.path, NAME, NAME_WHAT);
    if (name === undefined) ok = false;
    else if (names.has(name)) {
      r.report(
        r.deref(item.value),
        item.path,
        `risk class "${name}" is listed twice; the order must be unambiguous`,
      );
    } else names.add(name);
  }
  return { names: ok ? names : null };
}

/** The regions; `names` keeps a region whose tz is wrong, so references to it are not reported twice. */
function readRegions(
  r: Reader,
  entry: Entry | undefined,
): { names: ReadonlySet<string> | null; regions: Record<string, { tz: string }> } {
  const regions: Record<string, { tz: string }> = {};
  if (!entry) return { names: null, regions };
  const entries = r.map(entry.value, entry.path, "the regions");
  if (entries === undefined) return { names: null, regions };
  if (entries.length === 0) {
    r.report(r.deref(entry.value), entry.path, "list at least one region, e.g. eu: { tz: Europe/Berlin }");
    return { names: null, regions };
  }
  const names = new Set<string>();
  let ok = true;
  for (const e of entries) {
    if (!NAME.test(e.key)) {
      r.report(e.keyNode, e.path, `"${e.key}" is not a valid region name: expected ${NAME_WHAT}`);
      ok = false;
      continue;
    }
    names.add(e.key);
    const fields = r.object(e.value, e.path, "the region's settings", ["tz"], ["tz"]);
    const tzEntry = fields?.get("tz");
    if (!tzEntry) continue;
    const tz = r.string(tzEntry.value, tzEntry.path, "an IANA time zone such as Europe/Berlin");
    if (tz === undefined) continue;
    if (!isTimeZone(tz)) {
      r.report(
        r.deref(tzEntry.value),
        tzEntry.path,
        `"${tz}" is not a known IANA time zone (e.g. Europe/Berlin)`,
      );
      continue;
    }
    setOwn(regions, e.key, { tz });
  }
  return { names: ok ? names : null, regions };
}

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat(undefined, { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function readDefaults(r: Reader, entry: Entry | undefined): Policy["defaults"] {
  const out = { ...DEFAULTS } as { -readonly [K in keyof Policy["defaults"]]: Policy["defaults"][K] };
  if (!entry) return out;
  const fields = r.object(entry.value, entry.path, "the defaults", [
    "timeout",
    "on_timeout",
    "approval_valid_for",
    "max_pending",
  ]);
  if (fields === undefined) return out;
  const timeout = fields.get("timeout");
  if (timeout) out.timeout_ms = r.duration(timeout.value, timeout.path) ?? out.timeout_ms;
  const onTimeout = fields.get("on_timeout");
  if (onTimeout) out.on_timeout = r.oneOf(onTimeout.value, onTimeout.path, ON_TIMEOUT) ?? out.on_timeout;
  const valid = fields.get("approval_valid_for");
  if (valid) out.approval_valid_for_ms = r.duration(valid.value, valid.path) ?? out.approval_valid_for_ms;
  const maxPending = fields.get("max_pending");
  if (maxPending) out.max_pending = r.positiveInt(maxPending.value, maxPending.path) ?? out.max_pending;
  return out;
}

/** How many keys a map node holds (0 for anything else). */
function entriesOf(r: Reader, raw: unknown): number {
  const node = r.deref(raw);
  return isMap(node) ? node.items.length : 0;
}
