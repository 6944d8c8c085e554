/**
 * The agent's ActionRequest (SPEC "Intake"): its shape first, on its own, then against
 * the policy. Both refuse with every problem at once, so an agent's author can fix a
 * request in one round trip.
 */
import { iJsonProblems, invalidRequest, joinPath, MAX_JSON_DEPTH } from "./json.js";
import { actionGlobMatches, effectiveRiskClass } from "./policy.js";
import {
  type ActionRequest,
  type AgentPolicy,
  type FieldError,
  type OnBehalfOf,
  type Policy,
  RejectionError,
} from "./types.js";

/** The request's top-level fields, in the order the SPEC lists them (cards and modals show them so). */
export const TOP_FIELDS = [
  "request_id",
  "agent_id",
  "action",
  "risk_class",
  "region",
  "purpose",
  "on_behalf_of",
  "callback_url",
  "timeout_s",
  "context",
] as const;
const ACTION_FIELDS = ["type", "summary", "details", "systems"] as const;
const ON_BEHALF_OF_FIELDS = ["slack_user", "email"] as const;

const ID_PATTERN = /^[A-Za-z0-9._:-]+$/;
const ACTION_TYPE_PATTERN = /^[a-z0-9_]+(?:\.[a-z0-9_]+)*$/;
const LINE_BREAK = /[\r\n\u2028\u2029]/;
const SLACK_USER_PATTERN = /^[UW][A-Z0-9]{2,}$/;
// Labels exclude the dot, so the pattern cannot backtrack badly on a long bad address.
const EMAIL_PATTERN = /^[^\s@]+@[^\s@.]+(?:\.[^\s@.]+)+$/;
// WHATWG URL parsing silently drops tabs and newlines and reads "\" as "/"; refusing them
// keeps the URL we check the same as the one any other HTTP client would call.
const URL_UNSAFE = /[\s\\\u0000-\u001f\u007f]/;

const DETAILS_MAX_BYTES = 32 * 1024;
const DETAILS_MAX_DEPTH = 32;
const CONTEXT_MAX_BYTES = 8 * 1024;
const TIMEOUT_MIN_S = 60;
const TIMEOUT_MAX_S = 604_800;

type Add = (path: string, message: string) => void;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Unicode code points, as the SPEC counts lengths (an emoji is one). */
export function codePointLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** UTF-8 bytes of the value's JSON text, as the SPEC counts sizes. */
export function jsonByteSize(v: unknown): number {
  return Buffer.byteLength(JSON.stringify(v) ?? "", "utf8");
}

/** Container nesting of `v` (a scalar is 0, `{}` is 1), counted no further than `limit + 1`. */
function nestingDepth(v: unknown, limit: number): number {
  if (typeof v !== "object" || v === null) return 0;
  if (limit < 0) return 1;
  let deepest = 0;
  for (const item of Array.isArray(v) ? v : Object.values(v)) {
    deepest = Math.max(deepest, nestingDepth(item, limit - 1));
    if (deepest > limit) break;
  }
  return deepest + 1;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** Refuses unknown members, so a misspelt optional field is never silently ignored. */
function checkKnownFields(
  obj: Record<string, unknown>,
  known: readonly string[],
  path: string,
  add: Add,
): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const near = key.length <= 64 ? known.find((k) => editDistance(key, k) <= 2) : undefined;
    add(
      joinPath(path, key),
      near !== undefined
        ? `unknown field; did you mean "${near}"?`
        : `unknown field; expected one of: ${known.join(", ")}`,
    );
  }
}

interface TextRule {
  readonly max: number;
  readonly pattern?: RegExp;
  readonly patternMessage?: string;
  readonly oneLine?: boolean;
  /** Refuse text that is only whitespace: it would reach approvers as an empty line. */
  readonly notBlank?: boolean;
}

/** Checks a required-or-present string; returns it when valid. */
function checkText(v: unknown, path: string, rule: TextRule, add: Add): string | undefined {
  if (v === undefined) {
    add(path, "is required");
    return undefined;
  }
  if (typeof v !== "string") {
    add(path, `must be a string, not ${describeType(v)}`);
    return undefined;
  }
  const length = codePointLength(v);
  if (length === 0) {
    add(path, "must not be empty");
    return undefined;
  }
  let ok = true;
  if (length > rule.max) {
    add(path, `is ${length} characters long; at most ${rule.max} are allowed`);
    ok = false;
  }
  if (rule.notBlank && v.trim() === "") {
    add(path, "must not be only whitespace");
    ok = false;
  }
  if (rule.oneLine && LINE_BREAK.test(v)) {
    add(path, "must be one line (no line breaks)");
    ok = false;
  }
  if (rule.pattern && !rule.pattern.test(v)) {
    add(path, rule.patternMessage ?? "has an invalid format");
    ok = false;
  }
  return ok ? v : undefined;
}

function describeType(v: unknown): string {
  if (v === null) return "null (leave an optional field out instead)";
  if (Array.isArray(v)) return "an array";
  return `a ${typeof v}`;
}

/** A JSON object with a byte budget (and optionally a depth budget). */
function checkObject(
  v: unknown,
  path: string,
  rule: { maxBytes: number; maxDepth?: number },
  add: Add,
): Record<string, unknown> | undefined {
  if (!isPlainObject(v)) {
    add(path, `must be a JSON object, not ${describeType(v)}`);
    return undefined;
  }
  const depthLimit = rule.maxDepth ?? MAX_JSON_DEPTH;
  const depth = nestingDepth(v, depthLimit);
  if (depth > depthLimit) {
    // Past this the value may be cyclic or too deep to serialise; the size is moot.
    add(path, `is nested more than ${depthLimit} levels deep`);
    return undefined;
  }
  let bytes: number;
  try {
    bytes = jsonByteSize(v);
  } catch {
    // A BigInt, say: iJsonProblems names the exact place.
    add(path, "contains a value JSON cannot carry");
    return undefined;
  }
  if (bytes > rule.maxBytes) {
    add(path, `is ${bytes} bytes as JSON; at most ${rule.maxBytes} are allowed`);
    return undefined;
  }
  return v;
}

function checkSystems(v: unknown, path: string, add: Add): readonly string[] | undefined {
  if (!Array.isArray(v)) {
    add(path, `must be an array of strings, not ${describeType(v)}`);
    return undefined;
  }
  let ok = true;
  if (v.length > 20) {
    add(path, `has ${v.length} entries; at most 20 are allowed`);
    ok = false;
  }
  for (let i = 0; i < v.length && i < 100; i++) {
    if (checkText(v[i], joinPath(path, i), { max: 128, notBlank: true }, add) === undefined) ok = false;
  }
  return ok ? (v as string[]) : undefined;
}

function checkOnBehalfOf(v: unknown, path: string, add: Add): OnBehalfOf | undefined {
  if (!isPlainObject(v)) {
    add(path, `must be an object with slack_user and/or email, not ${describeType(v)}`);
    return undefined;
  }
  checkKnownFields(v, ON_BEHALF_OF_FIELDS, path, add);
  const out: { slack_user?: string; email?: string } = {};
  if (v["slack_user"] !== undefined) {
    const s = checkText(
      v["slack_user"],
      joinPath(path, "slack_user"),
      { max: 64, pattern: SLACK_USER_PATTERN, patternMessage: "must be a Slack user id such as U0123ABCD" },
      add,
    );
    if (s !== undefined) out.slack_user = s;
  }
  if (v["email"] !== undefined) {
    const s = checkText(
      v["email"],
      joinPath(path, "email"),
      {
        max: 254,
        pattern: EMAIL_PATTERN,
        patternMessage: "must be an email address such as ana@example.com",
      },
      add,
    );
    if (s !== undefined) out.email = s;
  }
  if (v["slack_user"] === undefined && v["email"] === undefined) {
    add(path, "must name the person by slack_user, email or both");
  }
  return out;
}

function checkCallbackUrl(v: unknown, path: string, add: Add): string | undefined {
  const s = checkText(v, path, { max: 2048 }, add);
  if (s === undefined) return undefined;
  if (URL_UNSAFE.test(s)) {
    add(path, "must not contain spaces, control characters or backslashes");
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    add(path, "must be an absolute http or https URL");
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    add(path, `must use http or https, not ${url.protocol.slice(0, -1)}`);
    return undefined;
  }
  // An empty userinfo ("https://@host") parses to no user name but still reads oddly to
  // other parsers; refuse any "@" before the path.
  const authority = s.slice(s.indexOf("//") + 2).split(/[/?#]/, 1)[0] ?? "";
  if (url.username !== "" || url.password !== "" || authority.includes("@")) {
    add(path, "must not contain a user name or password");
    return undefined;
  }
  return s;
}

/**
 * Structural validation of an ActionRequest (SPEC "Intake"), plus I-JSON. Returns a fresh
 * object with only the known fields and no defaults added, so it hashes exactly as the
 * input did. Fields set to `undefined` count as absent (they have no JSON form).
 */
export function validateRequest(input: unknown): ActionRequest {
  if (!isPlainObject(input)) {
    throw invalidRequest([
      { path: "", message: `the request must be a JSON object, not ${describeType(input)}` },
    ]);
  }
  const errors: FieldError[] = [];
  const add: Add = (path, message) => {
    errors.push({ path, message });
  };
  checkKnownFields(input, TOP_FIELDS, "", add);

  const idRule = (what: string): TextRule => ({
    max: 128,
    pattern: ID_PATTERN,
    patternMessage: `${what} may contain only letters, digits and . _ : -`,
  });
  const requestId = checkText(input["request_id"], "request_id", idRule("request_id"), add);
  const agentId = checkText(input["agent_id"], "agent_id", idRule("agent_id"), add);

  let type: string | undefined;
  let summary: string | undefined;
  let details: Record<string, unknown> | undefined;
  let systems: readonly string[] | undefined;
  const action = input["action"];
  if (action === undefined) {
    add("action", "is required");
  } else if (!isPlainObject(action)) {
    add("action", `must be an object with type and summary, not ${describeType(action)}`);
  } else {
    checkKnownFields(action, ACTION_FIELDS, "action", add);
    type = checkText(
      action["type"],
      "action.type",
      {
        max: 128,
        pattern: ACTION_TYPE_PATTERN,
        patternMessage: "must be dotted lower-case words of a-z, 0-9 and _, such as payments.refund",
      },
      add,
    );
    summary = checkText(
      action["summary"],
      "action.summary",
      { max: 300, oneLine: true, notBlank: true },
      add,
    );
    if (action["details"] !== undefined) {
      details = checkObject(
        action["details"],
        "action.details",
        { maxBytes: DETAILS_MAX_BYTES, maxDepth: DETAILS_MAX_DEPTH },
        add,
      );
    }
    if (action["systems"] !== undefined) systems = checkSystems(action["systems"], "action.systems", add);
  }

  const riskClass = checkText(input["risk_class"], "risk_class", { max: 64 }, add);
  const region = checkText(input["region"], "region", { max: 64 }, add);
  const purpose = checkText(input["purpose"], "purpose", { max: 1000, notBlank: true }, add);

  let onBehalfOf: OnBehalfOf | undefined;
  if (input["on_behalf_of"] !== undefined)
    onBehalfOf = checkOnBehalfOf(input["on_behalf_of"], "on_behalf_of", add);

  let callbackUrl: string | undefined;
  if (input["callback_url"] !== undefined)
    callbackUrl = checkCallbackUrl(input["callback_url"], "callback_url", add);

  const timeout = input["timeout_s"];
  if (
    timeout !== undefined &&
    !(
      typeof timeout === "number" &&
      Number.isInteger(timeout) &&
      timeout >= TIMEOUT_MIN_S &&
      timeout <= TIMEOUT_MAX_S
    )
  ) {
    add("timeout_s", `must be a whole number of seconds from ${TIMEOUT_MIN_S} to ${TIMEOUT_MAX_S} (7 days)`);
  }

  let context: Record<string, unknown> | undefined;
  if (input["context"] !== undefined) {
    context = checkObject(input["context"], "context", { maxBytes: CONTEXT_MAX_BYTES }, add);
  }

  errors.push(...iJsonProblems(input));
  if (errors.length > 0) throw invalidRequest(errors);

  // Every required value is defined here: each check above adds an error when it is not.
  const out: {
    -readonly [K in keyof ActionRequest]: ActionRequest[K];
  } = {
    request_id: requestId!,
    agent_id: agentId!,
    action: {
      type: type!,
      summary: summary!,
      ...(details !== undefined && { details }),
      ...(systems !== undefined && { systems }),
    },
    risk_class: riskClass!,
    region: region!,
    purpose: purpose!,
  };
  if (onBehalfOf !== undefined) out.on_behalf_of = onBehalfOf;
  if (callbackUrl !== undefined) out.callback_url = callbackUrl;
  if (timeout !== undefined) out.timeout_s = timeout as number;
  if (context !== undefined) out.context = context;
  return out;
}

/** `scheme://host[:port]` as the WHATWG URL parser normalises it (host lower-case, default port dropped). */
function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

/**
 * Judges a structurally valid request against the policy: the agent exists, the risk
 * class and region are known and allowed, the action type is one the agent may ask for,
 * and a callback goes only where the policy says. Returns the agent and the effective
 * risk class (the requested one raised to the policy's `actions` floor, never lowered).
 */
export function checkRequestAgainstPolicy(
  policy: Policy,
  request: ActionRequest,
): { agent: AgentPolicy; riskClass: string } {
  const agent = Object.hasOwn(policy.agents, request.agent_id) ? policy.agents[request.agent_id] : undefined;
  if (agent === undefined) {
    throw new RejectionError("unknown_agent", `agent_id: agent "${request.agent_id}" is not in the policy`, [
      { path: "agent_id", message: `agent "${request.agent_id}" is not in the policy` },
    ]);
  }

  const errors: FieldError[] = [];
  if (!policy.risk_classes.includes(request.risk_class)) {
    errors.push({
      path: "risk_class",
      message: `unknown risk class "${request.risk_class}"; the policy has: ${policy.risk_classes.join(", ")}`,
    });
  }
  if (!Object.hasOwn(policy.regions, request.region)) {
    errors.push({
      path: "region",
      message: `unknown region "${request.region}"; the policy has: ${Object.keys(policy.regions).join(", ")}`,
    });
  }
  if (errors.length > 0) throw invalidRequest(errors);

  if (agent.regions.length > 0 && !agent.regions.includes(request.region)) {
    const message = `agent "${agent.id}" may not ask for region "${request.region}"; its regions: ${agent.regions.join(", ")}`;
    throw new RejectionError("region_not_allowed", `region: ${message}`, [{ path: "region", message }]);
  }

  if (!agent.allowed_actions.some((glob) => actionGlobMatches(glob, request.action.type))) {
    const allowed = agent.allowed_actions.length > 0 ? agent.allowed_actions.join(", ") : "(none)";
    const message = `agent "${agent.id}" may not ask for "${request.action.type}"; its allowed_actions: ${allowed}`;
    throw new RejectionError("action_not_allowed", `action.type: ${message}`, [
      { path: "action.type", message },
    ]);
  }

  if (request.callback_url !== undefined) {
    const origin = originOf(request.callback_url);
    if (origin === undefined || !agent.callback_origins.some((o) => o.origin === origin)) {
      const allowed = agent.callback_origins.map((o) => o.origin).join(", ") || "(none)";
      const message = `origin ${origin ?? "(unparseable)"} is not one of agent "${agent.id}"'s callback_origins: ${allowed}`;
      throw new RejectionError("callback_not_allowed", `callback_url: ${message}`, [
        { path: "callback_url", message },
      ]);
    }
  }

  return { agent, riskClass: effectiveRiskClass(policy, request.action.type, request.risk_class) };
}
