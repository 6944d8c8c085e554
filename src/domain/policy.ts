/**
 * The policy file: parsed from YAML, validated as a whole, and turned into the Policy
 * the rest of the core reads. Every problem is collected with the line and column of
 * the node that causes it, so one run of `policy check` shows all of them.
 *
 * The file is walked node by node rather than converted to plain data first: that keeps
 * each value's position, and lets a broken part be reported while the rest is still
 * checked (a schema library stops at the shape and loses the cross-references).
 */

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type Document, isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { parseDuration } from "./duration.js";
import type {
  AgentAuth,
  AgentPolicy,
  ApproverSpec,
  BusinessHours,
  CallbackOrigin,
  ExecutorPolicy,
  Policy,
  Route,
  RouteLevel,
  RouteWhen,
  Weekday,
} from "./types.js";

export interface PolicyProblem {
  /** 1-based; 0 when the file could not be read at all. */
  readonly line: number;
  /** 1-based; 0 when the file could not be read at all. */
  readonly column: number;
  /** Where in the policy, dotted (`routes.0.when.risk_class`); keys holding dots are quoted (`actions["payments.*"]`). */
  readonly path: string;
  readonly message: string;
}

/** A policy file that cannot be used. The message has one `file:line:column: path: message` line per problem. */
export class PolicyError extends Error {
  override readonly name = "PolicyError" as const;
  constructor(
    readonly file: string,
    readonly problems: readonly PolicyProblem[],
  ) {
    super(problems.map((p) => formatProblem(file, p)).join("\n"));
  }
}

function formatProblem(file: string, p: PolicyProblem): string {
  return p.path === ""
    ? `${file}:${p.line}:${p.column}: ${p.message}`
    : `${file}:${p.line}:${p.column}: ${p.path}: ${p.message}`;
}

/** Reads a policy file (synchronously: it happens once, at start-up or in the CLI) and parses it. */
export function loadPolicyFile(path: string): Policy {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "the policy file does not exist (set POLICY_FILE or pass the file's path)"
        : code === "EISDIR"
          ? "this is a folder, not a policy file"
          : code === "EACCES"
            ? "the policy file cannot be read: permission denied"
            : `the policy file cannot be read: ${code ?? String(err)}`;
    throw new PolicyError(file, [{ line: 0, column: 0, path: "", message: why }]);
  }
  return parsePolicy(text, file);
}

// ---------------------------------------------------------------------------
// Action type globs.

const ACTION_TYPE = /^[a-z0-9_]+(\.[a-z0-9_]+)*$/;
const ACTION_GLOB = /^(\*|[a-z0-9_*]+(\.[a-z0-9_*]+)*)$/;

/** True if `pattern` is a valid action glob: `*`, or dotted lower-case segments that may hold `*`. */
export function isActionGlob(pattern: string): boolean {
  return ACTION_GLOB.test(pattern);
}

const globCache = new Map<string, RegExp>();

function globRegExp(pattern: string): RegExp {
  let re = globCache.get(pattern);
  if (re !== undefined) return re;
  if (pattern === "*") {
    re = ACTION_TYPE;
  } else {
    const segments = pattern.split(".").map((s) => s.replace(/[^a-z0-9_*]/g, "\\$&"));
    const last = segments.length - 1;
    const source = segments
      .map((s, i) =>
        // A whole `*` segment at the end also covers deeper types: `payments.*` is meant
        // to take in `payments.refund.partial`, not only one level down.
        s === "*"
          ? i === last
            ? "[a-z0-9_]+(\\.[a-z0-9_]+)*"
            : "[a-z0-9_]+"
          : s.replaceAll("*", "[a-z0-9_]*"),
      )
      .join("\\.");
    re = new RegExp(`^${source}$`);
  }
  // Patterns come from the policy, so the cache stays small; the bound only guards
  // against a caller feeding it arbitrary input.
  if (globCache.size > 1000) globCache.clear();
  globCache.set(pattern, re);
  return re;
}

/**
 * `*` alone matches every action type; inside a segment `*` matches within that segment
 * (`payments.re*` matches `payments.refund`); a trailing `.*` matches one or more
 * segments (`payments.*` matches `payments.refund` and `payments.refund.partial`).
 * Only well-formed action types (dotted lower-case) ever match.
 */
export function actionGlobMatches(pattern: string, actionType: string): boolean {
  return ACTION_TYPE.test(actionType) && globRegExp(pattern).test(actionType);
}

// ---------------------------------------------------------------------------
// Risk.

/** Index of `riskClass` in the policy's rising `risk_classes`; -1 if the policy does not know it. */
export function riskRank(policy: Policy, riskClass: string): number {
  return policy.risk_classes.indexOf(riskClass);
}

/**
 * The risk class the policy treats a request as: the agent's own, raised to the highest
 * `min_risk` of every `actions` entry matching the type. Never lower than requested.
 * Throws on a risk class the policy does not know, so it cannot be quietly mapped onto a known one.
 */
export function effectiveRiskClass(policy: Policy, actionType: string, requested: string): string {
  let rank = riskRank(policy, requested);
  if (rank < 0) {
    throw new Error(
      `unknown risk class "${requested}": the policy's risk_classes are ${policy.risk_classes.join(", ")}`,
    );
  }
  for (const [glob, { min_risk }] of Object.entries(policy.actions)) {
    if (actionGlobMatches(glob, actionType)) rank = Math.max(rank, riskRank(policy, min_risk));
  }
  return policy.risk_classes[rank]!;
}

// ---------------------------------------------------------------------------
// Callback origins.

/**
 * Normalises a bare origin (`scheme://host[:port]`, http or https, no path, query or
 * userinfo) to the form URL.origin gives: lower-case host, default port dropped.
 * Returns the reason instead when `text` is not one.
 */
export function normalizeOrigin(text: string): { origin: string } | { reason: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { reason: `"${text}" is not a URL; expected an origin such as https://agent.example.com` };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { reason: `"${text}" must use http or https` };
  }
  if (url.username !== "" || url.password !== "") {
    return { reason: `"${text}" must not contain a user name or password` };
  }
  // Checked on the text, not the parsed URL: the URL parser forgives an empty "?" or "#".
  if (!/^[a-z]+:\/\/[^/?#@]+\/?$/i.test(text)) {
    return {
      reason: `"${text}" must be a bare origin (scheme://host[:port]) without a path, query or fragment`,
    };
  }
  return { origin: url.origin };
}

// ---------------------------------------------------------------------------
// Reading YAML nodes with positions.

type Seg = string | number;
type Path = readonly Seg[];

function formatPath(path: Path): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `.${seg}`;
    else if (/^[A-Za-z0-9_-]+$/.test(seg)) out += `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out.startsWith(".") ? out.slice(1) : out;
}

interface Entry {
  readonly key: string;
  readonly keyNode: unknown;
  readonly value: unknown;
  readonly path: Path;
}

interface Item<T> {
  readonly value: T;
  readonly node: unknown;
  readonly path: Path;
}

function rangeStart(node: unknown): number | undefined {
  if (typeof node !== "object" || node === null || !("range" in node)) return undefined;
  const range = (node as { range?: readonly number[] | null }).range;
  return range?.[0];
}

function describe(node: unknown): string {
  if (node === null || node === undefined) return "nothing";
  if (isMap(node)) return "a map";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return "nothing";
    if (typeof v === "string") return `the text ${JSON.stringify(v)}`;
    if (typeof v === "number") return `the number ${v}`;
    if (typeof v === "boolean") return String(v);
    return `a ${typeof v}`;
  }
  return "an unexpected value";
}

class Reader {
  readonly problems: PolicyProblem[] = [];

  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** Reports at `where` (a node), falling back to `fallback` when `where` has no position. */
  report(where: unknown, path: Path, message: string, fallback?: unknown): void {
    const offset = rangeStart(where) ?? rangeStart(fallback);
    const pos = offset === undefined ? { line: 1, col: 1 } : this.lines.linePos(offset);
    this.problems.push({ line: pos.line, column: pos.col, path: formatPath(path), message });
  }

  deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  map(raw: unknown, path: Path, what: string): Entry[] | undefined {
    const node = this.deref(raw);
    if (!isMap(node)) {
      this.report(node, path, `expected ${what} (a map), got ${describe(node)}`, raw);
      return undefined;
    }
    const entries: Entry[] = [];
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const keyNode = this.deref(pair.key);
      if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === "object") {
        this.report(keyNode, path, "keys must be plain names", node);
        continue;
      }
      const key = String(keyNode.value);
      entries.push({ key, keyNode, value: pair.value, path: [...path, key] });
    }
    return entries;
  }

  /**
   * A map with a fixed set of keys. Unknown keys are problems (a typo must never quietly
   * drop a condition or a limit); `hint` replaces the list of allowed keys in that message.
   */
  object(
    raw: unknown,
    path: Path,
    what: string,
    allowed: readonly string[],
    required: readonly string[] = [],
    hint?: string,
  ): Map<string, Entry> | undefined {
    const entries = this.map(raw, path, what);
    if (entries === undefined) return undefined;
    const out = new Map<string, Entry>();
    for (const e of entries) {
      if (!allowed.includes(e.key)) {
        this.report(
          e.keyNode,
          e.path,
          `unknown key "${e.key}"; ${hint ?? `expected one of ${allowed.join(", ")}`}`,
        );
      } else if (!out.has(e.key)) {
        // A duplicate key is already reported by the YAML parser; check the first one.
        out.set(e.key, e);
      }
    }
    for (const key of required) {
      if (!out.has(key)) this.report(this.deref(raw), [...path, key], `${key} is required here`, raw);
    }
    return out;
  }

  seq(raw: unknown, path: Path, what: string): Item<unknown>[] | undefined {
    const node = this.deref(raw);
    if (!isSeq(node)) {
      this.report(node, path, `expected ${what} (a list), got ${describe(node)}`, raw);
      return undefined;
    }
    return node.items.map((value, i) => ({ value, node: value, path: [...path, i] }));
  }

  string(raw: unknown, path: Path, what = "text"): string | undefined {
    const node = this.deref(raw);
    if (!isScalar(node) || typeof node.value !== "string" || node.value === "") {
      this.report(node, path, `expected ${what}, got ${describe(node)}`, raw);
      return undefined;
    }
    return node.value;
  }

  /** A string that must match `pattern`; `what` describes the expected form. */
  name(raw: unknown, path: Path, pattern: RegExp, what: string): string | undefined {
    const value = this.string(raw, path, what);
    if (value === undefined) return undefined;
    if (!pattern.test(value)) {
      this.report(this.deref(raw), path, `"${value}" is not valid: expected ${what}`, raw);
      return undefined;
    }
    return value;
  }

  /** One string or a list of them; each item keeps its own position. */
  strings(raw: unknown, path: Path, what: string): Item<string>[] | undefined {
    const node = this.deref(raw);
    if (isScalar(node)) {
      const value = this.string(node, path, what);
      return value === undefined ? undefined : [{ value, node, path }];
    }
    if (!isSeq(node)) {
      this.report(node, path, `expected ${what} or a list of them, got ${describe(node)}`, raw);
      return undefined;
    }
    const out: Item<string>[] = [];
    let ok = true;
    node.items.forEach((item, i) => {
      const value = this.string(item, [...path, i], what);
      if (value === undefined) ok = false;
      else out.push({ value, node: this.deref(item), path: [...path, i] });
    });
    return ok ? out : undefined;
  }

  bool(raw: unknown, path: Path): boolean | undefined {
    const node = this.deref(raw);
    if (!isScalar(node) || typeof node.value !== "boolean") {
      this.report(node, path, `expected true or false, got ${describe(node)}`, raw);
      return undefined;
    }
    return node.value;
  }

  positiveInt(raw: unknown, path: Path): number | undefined {
    const node = this.deref(raw);
    if (
      !isScalar(node) ||
      typeof node.value !== "number" ||
      !Number.isSafeInteger(node.value) ||
      node.value < 1
    ) {
      this.report(node, path, `expected a whole number of at least 1, got ${describe(node)}`, raw);
      return undefined;
    }
    return node.value;
  }

  duration(raw: unknown, path: Path): number | undefined {
    const node = this.deref(raw);
    if (isScalar(node) && typeof node.value === "number") {
      this.report(node, path, `${node.value} has no unit: expected a duration like 90s, 30m, 4h or 2d`, raw);
      return undefined;
    }
    const text = this.string(node, path, "a duration like 90s, 30m, 4h or 2d");
    if (text === undefined) return undefined;
    let ms: number;
    try {
      ms = parseDuration(text);
    } catch (err) {
      this.report(node, path, (err as Error).message, raw);
      return undefined;
    }
    if (ms <= 0) {
      this.report(node, path, "a duration must be longer than 0s", raw);
      return undefined;
    }
    return ms;
  }

  oneOf<T extends string>(raw: unknown, path: Path, options: readonly T[]): T | undefined {
    const node = this.deref(raw);
    const value = isScalar(node) ? node.value : undefined;
    if (typeof value !== "string" || !(options as readonly string[]).includes(value)) {
      this.report(node, path, `expected one of ${options.join(", ")}, got ${describe(node)}`, raw);
      return undefined;
    }
    return value as T;
  }
}

// ---------------------------------------------------------------------------
// The policy file.

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const NAME_WHAT = "a name of letters, digits, '.', '_', ':' or '-' (at most 128)";
const AGENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENV_WHAT = "an environment variable name such as BILLING_AGENT_SECRET";
// Slack ids, not names: names change and can be reused, ids cannot.
const SLACK_TEAM = /^[TE][A-Z0-9]{2,}$/;
const SLACK_USER = /^[UW][A-Z0-9]{2,}$/;
const SLACK_GROUP = /^S[A-Z0-9]{2,}$/;
const SLACK_CHANNEL = /^[CG][A-Z0-9]{2,}$/;
const HHMM = /^([01]\d|2[0-3]):[0-5]\d$|^24:00$/;
const WEEKDAYS: readonly Weekday[] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ON_TIMEOUT = ["deny", "escalate"] as const;

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
const EXECUTOR_KEYS = ["auth", "may_redeem", "for_agents"];
const AGENT_KEYS = [
  "owners",
  "auth",
  "webhook_secret_env",
  "callback_origins",
  "allowed_actions",
  "regions",
  "vendor_managed",
  "max_pending",
];
const WHEN_KEYS = ["risk_class", "region", "action", "agent", "vendor_managed"];
const LEVEL_KEYS = ["approvers", "channel", "quorum", "timeout"];
const ROUTE_KEYS = ["name", "when", "auto", ...LEVEL_KEYS, "on_timeout", "escalation", "business_hours"];

const DEFAULTS = {
  timeout_ms: 30 * 60_000,
  on_timeout: "deny" as const,
  approval_valid_for_ms: 15 * 60_000,
  max_pending: 100,
};

/** What later sections may refer to; null when a section was broken, to avoid a cascade of follow-on problems. */
interface Known {
  risk: ReadonlySet<string> | null;
  regions: ReadonlySet<string> | null;
  /** Every well-formed agent id, even of an agent whose settings are broken. */
  agentIds: ReadonlySet<string> | null;
  /** Only when every agent is valid: owner roles and quorums are judged against them. */
  agents: Readonly<Record<string, AgentPolicy>> | null;
}

/**
 * Parses and validates a policy. Pure apart from hashing: `file` (an absolute path) only
 * names the file in messages and anchors relative `public_key_file` paths; key files are
 * not read here. Throws PolicyError listing every problem found.
 */
export function parsePolicy(text: string, file: string): Policy {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const r = new Reader(doc, lines);

  let broken = false;
  for (const err of doc.errors) {
    const pos = err.linePos?.[0] ?? { line: 1, col: 1 };
    if (err.code === "DUPLICATE_KEY") {
      const key = /^[^:\n,}]*/.exec(text.slice(err.pos[0]))?.[0].trim() ?? "";
      r.problems.push({
        line: pos.line,
        column: pos.col,
        path: formatPath(pathAtOffset(doc, err.pos[0])),
        message: `duplicate key${key === "" ? "" : ` ${key}`}: a key may appear only once in a map (the second would silently replace the first)`,
      });
    } else {
      broken = true;
      const first = err.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      r.problems.push({ line: pos.line, column: pos.col, path: "", message: `YAML syntax error: ${first}` });
    }
  }
  if (!broken) {
    try {
      // Walking the nodes never expands aliases, but anyone who later calls toJS would;
      // refuse a file built to explode in size (the "billion laughs" shape).
      doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      broken = true;
      r.report(undefined, [], `the file expands too many aliases: ${(err as Error).message}`);
    }
  }
  // Duplicate keys leave a usable tree, so checking goes on; syntax errors do not.
  if (broken) throw new PolicyError(file, sortProblems(r.problems));

  if (doc.contents === null) {
    r.report(
      undefined,
      [],
      "the policy file is empty; it needs at least issuer, slack, risk_classes, regions, agents and routes",
    );
    throw new PolicyError(file, r.problems);
  }
  const policy = readPolicy(r, doc.contents, file);
  if (r.problems.length > 0 || policy === undefined) {
    throw new PolicyError(file, sortProblems(r.problems));
  }
  return {
    ...policy,
    sha256: createHash("sha256").update(text, "utf8").digest("base64url"),
    file,
  };
}

/**
 * Defines an own property even for a key such as "__proto__" (a valid agent id and action
 * glob), which plain assignment would turn into a prototype change.
 */
function setOwn<T>(record: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

function sortProblems(problems: PolicyProblem[]): PolicyProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => a.p.line - b.p.line || a.p.column - b.p.column || a.i - b.i)
    .map(({ p }) => p);
}

/** The path of the key that starts at `offset`, for problems the YAML parser reports by position only. */
function pathAtOffset(doc: Document, offset: number): Path {
  const walk = (node: unknown, path: Seg[]): Path | undefined => {
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : "?";
        if (rangeStart(pair.key) === offset) return [...path, key];
        const found = walk(pair.value, [...path, key]);
        if (found) return found;
      }
    } else if (isSeq(node)) {
      for (const [i, item] of node.items.entries()) {
        const found = walk(item, [...path, i]);
        if (found) return found;
      }
    }
    return undefined;
  };
  return walk(doc.contents, []) ?? [];
}

type PolicyBody = Omit<Policy, "sha256" | "file">;

function readPolicy(r: Reader, root: unknown, file: string): PolicyBody | undefined {
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

  const actions: Record<string, { min_risk: string }> = {};
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
      const fields = r.object(e.value, e.path, "the action's settings", ["min_risk"], ["min_risk"]);
      const minRisk = fields?.get("min_risk");
      if (!minRisk) continue;
      const risk = knownName(r, minRisk.value, minRisk.path, known.risk, "risk class");
      if (risk !== undefined) setOwn(actions, e.key, { min_risk: risk });
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
        const agent = readAgent(r, e, known, defaults.max_pending, file);
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
      const executor = readExecutor(r, e, known, file);
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

/** A name that must be one of `known`; membership is not judged when `known` is null (its section was broken). */
function knownName(
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

function checkKnown(
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

function readAgent(
  r: Reader,
  e: Entry,
  known: Known,
  defaultMaxPending: number,
  file: string,
): AgentPolicy | undefined {
  const fields = r.object(e.value, e.path, "the agent's settings", AGENT_KEYS, ["auth", "allowed_actions"]);
  if (fields === undefined) return undefined;
  const before = r.problems.length;

  const owners: Record<string, string[]> = {};
  const ownersEntry = fields.get("owners");
  if (ownersEntry) {
    for (const role of r.map(
      ownersEntry.value,
      ownersEntry.path,
      "owner roles (role: Slack user id or list)",
    ) ?? []) {
      if (!NAME.test(role.key)) {
        r.report(role.keyNode, role.path, `"${role.key}" is not a valid role name: expected ${NAME_WHAT}`);
        continue;
      }
      const ids = readSlackIds(r, role.value, role.path, SLACK_USER, "a Slack user id such as U0123ABCD");
      if (ids === undefined) continue;
      if (ids.length === 0) r.report(r.deref(role.value), role.path, `owner role "${role.key}" names nobody`);
      setOwn(owners, role.key, ids);
    }
  }

  const authEntry = fields.get("auth");
  const auth = authEntry ? readAuth(r, authEntry, file, "the agent's proof key") : undefined;

  let webhookSecretEnv: string | undefined;
  const webhookEntry = fields.get("webhook_secret_env");
  if (webhookEntry) webhookSecretEnv = r.name(webhookEntry.value, webhookEntry.path, ENV_NAME, ENV_WHAT);

  const callbackOrigins: CallbackOrigin[] = [];
  const originsEntry = fields.get("callback_origins");
  if (originsEntry) {
    const node = r.deref(originsEntry.value);
    const items = isSeq(node)
      ? node.items.map((value, i) => ({ value, node: value, path: [...originsEntry.path, i] }))
      : [{ value: node, node, path: originsEntry.path }];
    for (const item of items) {
      const origin = readCallbackOrigin(r, item.value, item.path);
      if (origin === undefined) continue;
      if (callbackOrigins.some((o) => o.origin === origin.origin)) {
        r.report(r.deref(item.value), item.path, `origin ${origin.origin} is listed twice`);
        continue;
      }
      callbackOrigins.push(origin);
    }
    if (callbackOrigins.length > 0 && webhookSecretEnv === undefined && !fields.has("webhook_secret_env")) {
      r.report(
        originsEntry.keyNode,
        originsEntry.path,
        "callbacks are signed with the agent's webhook secret: set webhook_secret_env as well",
      );
    }
  }

  const allowedActions: string[] = [];
  const allowedEntry = fields.get("allowed_actions");
  if (allowedEntry) {
    const globs = r.strings(allowedEntry.value, allowedEntry.path, "an action glob such as payments.*");
    if (globs !== undefined && globs.length === 0) {
      r.report(
        r.deref(allowedEntry.value),
        allowedEntry.path,
        "list at least one action glob the agent may ask for",
      );
    }
    for (const g of globs ?? []) {
      if (isActionGlob(g.value)) allowedActions.push(g.value);
      else
        r.report(
          g.node,
          g.path,
          `"${g.value}" is not an action glob; expected dotted lower-case like payments.*`,
        );
    }
  }

  const regions: string[] = [];
  const regionsEntry = fields.get("regions");
  if (regionsEntry) {
    for (const item of r.strings(regionsEntry.value, regionsEntry.path, "a region") ?? []) {
      if (checkKnown(r, item, known.regions, "region")) regions.push(item.value);
    }
  }

  const vendorEntry = fields.get("vendor_managed");
  const vendorManaged = vendorEntry ? (r.bool(vendorEntry.value, vendorEntry.path) ?? false) : false;
  const maxPendingEntry = fields.get("max_pending");
  const maxPending = maxPendingEntry
    ? (r.positiveInt(maxPendingEntry.value, maxPendingEntry.path) ?? defaultMaxPending)
    : defaultMaxPending;

  if (r.problems.length > before || auth === undefined) return undefined;
  return {
    id: e.key,
    owners,
    auth,
    ...(webhookSecretEnv !== undefined ? { webhook_secret_env: webhookSecretEnv } : {}),
    callback_origins: callbackOrigins,
    allowed_actions: allowedActions,
    regions,
    vendor_managed: vendorManaged,
    max_pending: maxPending,
  };
}

function readExecutor(r: Reader, e: Entry, known: Known, file: string): ExecutorPolicy | undefined {
  const fields = r.object(e.value, e.path, "the executor's settings", EXECUTOR_KEYS, ["auth", "may_redeem"]);
  if (fields === undefined) return undefined;
  const before = r.problems.length;
  const authEntry = fields.get("auth");
  const auth = authEntry ? readAuth(r, authEntry, file, "the executor's proof key") : undefined;

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

/** An agent's or an executor's proof key: exactly one of an HMAC secret's variable or an Ed25519 public key file. */
function readAuth(r: Reader, authEntry: Entry, file: string, what: string): AgentAuth | undefined {
  let auth: AgentAuth | undefined;
  const a = r.object(authEntry.value, authEntry.path, what, ["hmac_secret_env", "public_key_file"]);
  if (a !== undefined) {
    const hmac = a.get("hmac_secret_env");
    const pub = a.get("public_key_file");
    if (hmac && pub) {
      r.report(
        r.deref(authEntry.value),
        authEntry.path,
        "give exactly one of hmac_secret_env or public_key_file, not both: the proof's algorithm must be fixed",
      );
    } else if (hmac) {
      const name = r.name(hmac.value, hmac.path, ENV_NAME, ENV_WHAT);
      if (name !== undefined) auth = { kind: "hmac", secret_env: name };
    } else if (pub) {
      const path = r.string(pub.value, pub.path, "the path of a PEM public key file");
      if (path !== undefined) auth = { kind: "eddsa", public_key_file: resolve(dirname(file), path) };
    } else {
      r.report(
        r.deref(authEntry.value),
        authEntry.path,
        "needs hmac_secret_env (an environment variable holding the shared secret) or public_key_file (an Ed25519 PEM)",
        authEntry.keyNode,
      );
    }
  }
  return auth;
}

function readCallbackOrigin(r: Reader, raw: unknown, path: Path): CallbackOrigin | undefined {
  const node = r.deref(raw);
  let text: string | undefined;
  let textNode: unknown = node;
  let textPath = path;
  let allowPrivate = false;
  if (isMap(node)) {
    const fields = r.object(node, path, "a callback origin", ["origin", "allow_private"], ["origin"]);
    const origin = fields?.get("origin");
    if (origin) {
      text = r.string(origin.value, origin.path, "an origin such as https://agent.example.com");
      textNode = r.deref(origin.value);
      textPath = origin.path;
    }
    const allow = fields?.get("allow_private");
    if (allow) allowPrivate = r.bool(allow.value, allow.path) ?? false;
  } else {
    text = r.string(node, path, "an origin such as https://agent.example.com, or { origin, allow_private }");
  }
  if (text === undefined) return undefined;
  const result = normalizeOrigin(text);
  if ("reason" in result) {
    r.report(textNode, textPath, result.reason);
    return undefined;
  }
  return { origin: result.origin, allow_private: allowPrivate };
}

function readSlackIds(
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

// ---------------------------------------------------------------------------
// Routes.

interface LevelDefaults {
  readonly channel?: string;
  readonly quorum: number;
  readonly timeout_ms: number;
}

function readRoute(
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
    for (const lvl of items) {
      const lf = r.object(lvl.value, lvl.path, "an escalation level", LEVEL_KEYS);
      if (lf === undefined) continue;
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
        },
        false,
      );
      if (level) levels.push(level);
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

function readLevel(
  r: Reader,
  raw: unknown,
  path: Path,
  fields: Map<string, Entry>,
  candidates: AgentPolicy[] | null,
  inherited: LevelDefaults,
  isRouteLevel: boolean,
): RouteLevel | undefined {
  const before = r.problems.length;
  let approvers: ApproverSpec | undefined;
  const approversEntry = fields.get("approvers");
  if (!approversEntry) {
    r.report(
      r.deref(raw),
      [...path, "approvers"],
      isRouteLevel
        ? "approvers is required (or make it an auto: approve|deny route)"
        : "approvers is required: who may vote at this level",
      raw,
    );
  } else {
    approvers = readApprovers(r, approversEntry, candidates);
  }

  let channel = inherited.channel;
  const channelEntry = fields.get("channel");
  if (channelEntry) {
    channel = r.name(
      channelEntry.value,
      channelEntry.path,
      SLACK_CHANNEL,
      "a Slack channel id such as C0123ABCD",
    );
  } else if (channel === undefined) {
    r.report(
      r.deref(raw),
      [...path, "channel"],
      "channel is required: the Slack channel id where the card is posted",
      raw,
    );
  }

  let quorum = inherited.quorum;
  const quorumEntry = fields.get("quorum");
  if (quorumEntry) quorum = r.positiveInt(quorumEntry.value, quorumEntry.path) ?? quorum;

  let timeoutMs = inherited.timeout_ms;
  const timeoutEntry = fields.get("timeout");
  if (timeoutEntry) timeoutMs = r.duration(timeoutEntry.value, timeoutEntry.path) ?? timeoutMs;

  const ownersKnowable = approvers !== undefined && (approvers.owners.length === 0 || candidates !== null);
  if (approvers !== undefined && approvers.groups.length === 0 && ownersKnowable) {
    // Group members are only known at run time; without groups the most people this
    // level can ever have is its users plus the richest matching agent's owners.
    const reachable = Math.max(
      approvers.users.length,
      ...(candidates ?? []).map(
        (a) =>
          new Set([
            ...approvers.users,
            ...approvers.owners.flatMap((role) => (Object.hasOwn(a.owners, role) ? a.owners[role]! : [])),
          ]).size,
      ),
    );
    if (reachable < quorum) {
      r.report(
        quorumEntry ? r.deref(quorumEntry.value) : r.deref(raw),
        [...path, "quorum"],
        `quorum ${quorum} but only ${reachable} approver${reachable === 1 ? "" : "s"} listed: this level could never decide`,
        raw,
      );
    }
  }

  if (r.problems.length > before || approvers === undefined || channel === undefined) return undefined;
  return { approvers, channel, quorum, timeout_ms: timeoutMs };
}

function readApprovers(r: Reader, entry: Entry, candidates: AgentPolicy[] | null): ApproverSpec | undefined {
  const fields = r.object(entry.value, entry.path, "the approvers", ["users", "groups", "owners"]);
  if (fields === undefined) return undefined;
  const before = r.problems.length;
  const get = (key: string, pattern: RegExp, what: string): string[] => {
    const e = fields.get(key);
    return e ? (readSlackIds(r, e.value, e.path, pattern, what) ?? []) : [];
  };
  const users = get("users", SLACK_USER, "a Slack user id such as U0123ABCD");
  const groups = get("groups", SLACK_GROUP, "a Slack user group id such as S0123ABCD");
  const owners: string[] = [];
  const ownersEntry = fields.get("owners");
  if (ownersEntry) {
    for (const role of r.strings(ownersEntry.value, ownersEntry.path, "an owner role such as risk") ?? []) {
      if (candidates !== null && !candidates.some((a) => Object.hasOwn(a.owners, role.value))) {
        const whose = candidates.map((a) => a.id).join(", ");
        r.report(
          role.node,
          role.path,
          `owner role "${role.value}" is not defined for any agent this route can match (${whose})`,
        );
      } else if (!owners.includes(role.value)) owners.push(role.value);
    }
  }
  if (r.problems.length > before) return undefined;
  if (users.length + groups.length + owners.length === 0) {
    r.report(r.deref(entry.value), entry.path, "names nobody: give users, groups or owners", entry.keyNode);
    return undefined;
  }
  return { users, groups, owners };
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
