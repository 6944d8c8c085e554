/**
 * The agent's ActionRequest: its shape first, on its own, then against
 * the policy. Both refuse with every problem at once, so an agent's author can fix a
 * request in one round trip.
 */
import { z } from "zod";
import { iJsonProblems, invalidRequest, joinPath, MAX_JSON_DEPTH } from "./json.js";
import { jsonType, POINTER_MAX_LENGTH, pointerProblem, resolvePointer, withArticle } from "./pointer.js";
import { actionGlobMatches, effectiveRiskClass } from "./policy.js";
import { type AgentPolicy, type FieldError, type Policy, RejectionError } from "./types.js";

/** The request's top-level fields, in the order the request format lists them (cards and modals show them so). */
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
const ACTION_FIELDS = ["type", "summary", "details", "systems", "editable"] as const;
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
const SYSTEMS_MAX = 20;
const EDITABLE_MAX = 20;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Unicode code points, as the request format counts lengths (an emoji is one). */
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

/** UTF-8 bytes of the value's JSON text, as the request format counts sizes. */
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

interface TextRule {
  readonly max: number;
  readonly pattern?: RegExp;
  readonly patternMessage?: string;
  readonly oneLine?: boolean;
  /** Refuse text that is only whitespace: it would reach approvers as an empty line. */
  readonly notBlank?: boolean;
}

function describeType(v: unknown): string {
  if (v === null) return "null (leave an optional field out instead)";
  if (Array.isArray(v)) return "an array";
  return `a ${typeof v}`;
}

const typeError =
  (expected: string) =>
  (issue: { input?: unknown }): string =>
    issue.input === undefined ? "is required" : `${expected}, not ${describeType(issue.input)}`;

/**
 * A string field. Its rules are one refinement, each reported on its own so an agent's
 * author sees every problem at once (an empty string only as empty). Lengths count code
 * points, so they cannot be z.string().max() (UTF-16 units); the JSON Schema gets them,
 * and the pattern, as metadata, where maxLength means code points too.
 */
function text(rule: TextRule) {
  return z
    .string({ error: typeError("must be a string") })
    .superRefine((v, ctx) => {
      const report = (message: string): void =>
        ctx.addIssue({ code: "custom", message, input: v, continue: true });
      const length = codePointLength(v);
      if (length === 0) {
        report("must not be empty");
        return;
      }
      if (length > rule.max) report(`is ${length} characters long; at most ${rule.max} are allowed`);
      if (rule.notBlank && v.trim() === "") report("must not be only whitespace");
      if (rule.oneLine && LINE_BREAK.test(v)) report("must be one line (no line breaks)");
      if (rule.pattern && !rule.pattern.test(v)) report(rule.patternMessage ?? "has an invalid format");
    })
    .meta({
      minLength: 1,
      maxLength: rule.max,
      ...(rule.pattern && { pattern: rule.pattern.source }),
    });
}

/**
 * A free-form JSON object with a byte budget (and optionally a depth budget). Passed
 * through as given (never copied key by key, so a member named "__proto__" stays data).
 */
function jsonObject(rule: { maxBytes: number; maxDepth?: number }) {
  return z
    .unknown()
    .superRefine((v, ctx) => {
      if (v === undefined) return;
      if (!isPlainObject(v)) {
        ctx.addIssue(`must be a JSON object, not ${describeType(v)}`);
        return;
      }
      const depthLimit = rule.maxDepth ?? MAX_JSON_DEPTH;
      if (nestingDepth(v, depthLimit) > depthLimit) {
        // Past this the value may be cyclic or too deep to serialise; the size is moot.
        ctx.addIssue(`is nested more than ${depthLimit} levels deep`);
        return;
      }
      let bytes: number;
      try {
        bytes = jsonByteSize(v);
      } catch {
        // A BigInt, say: iJsonProblems names the exact place.
        ctx.addIssue("contains a value JSON cannot carry");
        return;
      }
      if (bytes > rule.maxBytes)
        ctx.addIssue(`is ${bytes} bytes as JSON; at most ${rule.maxBytes} are allowed`);
    })
    .meta({
      type: "object",
      description: `a JSON object of at most ${rule.maxBytes} bytes`,
    }) as unknown as z.ZodType<Readonly<Record<string, unknown>> | undefined>;
}

const CALLBACK_URL_MAX = 2048;
const CALLBACK_URL = text({ max: CALLBACK_URL_MAX }).superRefine((s, ctx) => {
  // Empty or too long is already reported; the URL itself is judged only on a text that passed.
  const length = codePointLength(s);
  if (length === 0 || length > CALLBACK_URL_MAX) return;
  if (URL_UNSAFE.test(s)) {
    ctx.addIssue("must not contain spaces, control characters or backslashes");
    return;
  }
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    ctx.addIssue("must be an absolute http or https URL");
    return;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    ctx.addIssue(`must use http or https, not ${url.protocol.slice(0, -1)}`);
    return;
  }
  // An empty userinfo ("https://@host") parses to no user name but still reads oddly to
  // other parsers; refuse any "@" before the path.
  const authority = s.slice(s.indexOf("//") + 2).split(/[/?#]/, 1)[0] ?? "";
  if (url.username !== "" || url.password !== "" || authority.includes("@")) {
    ctx.addIssue("must not contain a user name or password");
  }
});

const idText = (what: string) =>
  text({
    max: 128,
    pattern: ID_PATTERN,
    patternMessage: `${what} may contain only letters, digits and . _ : -`,
  });

const TIMEOUT_MESSAGE = `must be a whole number of seconds from ${TIMEOUT_MIN_S} to ${TIMEOUT_MAX_S} (7 days)`;

/** The action the agent asks for. */
export const ActionSchema = z
  .strictObject(
    {
      type: text({
        max: 128,
        pattern: ACTION_TYPE_PATTERN,
        patternMessage: "must be dotted lower-case words of a-z, 0-9 and _, such as payments.refund",
      }),
      summary: text({ max: 300, oneLine: true, notBlank: true }),
      details: jsonObject({ maxBytes: DETAILS_MAX_BYTES, maxDepth: DETAILS_MAX_DEPTH }).optional(),
      systems: z
        .array(text({ max: 128, notBlank: true }), { error: typeError("must be an array of strings") })
        .check(
          z.refine((v: unknown[]) => v.length <= SYSTEMS_MAX, {
            // Judged even when an entry is wrong, so both are reported at once.
            when: (payload) => Array.isArray(payload.value),
            error: (issue) =>
              `has ${(issue.input as unknown[]).length} entries; at most ${SYSTEMS_MAX} are allowed`,
          }),
        )
        .meta({ maxItems: SYSTEMS_MAX })
        .optional(),
      editable: z
        .array(
          z
            .string({ error: typeError("must be a JSON Pointer string such as /amount") })
            .superRefine((p, ctx) => {
              const problem = pointerProblem(p);
              if (problem !== undefined) ctx.addIssue(problem);
            })
            .meta({ minLength: 1, maxLength: POINTER_MAX_LENGTH, pattern: "^/" }),
          { error: typeError("must be an array of JSON Pointers such as /amount") },
        )
        .check(
          z.superRefine(
            (v: unknown[], ctx) => {
              if (v.length > EDITABLE_MAX) {
                ctx.addIssue({
                  code: "custom",
                  message: `has ${v.length} entries; at most ${EDITABLE_MAX} are allowed`,
                  input: v,
                  continue: true,
                });
              }
              const first = new Map<unknown, number>();
              v.forEach((p, i) => {
                if (typeof p !== "string") return;
                const earlier = first.get(p);
                if (earlier === undefined) first.set(p, i);
                else
                  ctx.addIssue({
                    code: "custom",
                    message: `repeats ${JSON.stringify(p)} (already at action.editable.${earlier})`,
                    path: [i],
                    input: p,
                    continue: true,
                  });
              });
            },
            // Judged even when an entry is wrong, so every problem is reported at once.
            { when: (payload) => Array.isArray(payload.value) },
          ),
        )
        .meta({
          maxItems: EDITABLE_MAX,
          uniqueItems: true,
          description:
            "JSON Pointers into details that approvers may change: each an existing string, number or boolean",
        })
        .optional(),
    },
    { error: typeError("must be an object with type and summary") },
  )
  .check(
    z.superRefine(
      (action: { details?: unknown; editable?: unknown }, ctx) => {
        const { details, editable } = action;
        if (!Array.isArray(editable)) return;
        editable.forEach((p: unknown, i) => {
          if (i >= EDITABLE_MAX || typeof p !== "string" || pointerProblem(p) !== undefined) return;
          const problem = editableTargetProblem(details, p);
          if (problem !== undefined)
            ctx.addIssue({
              code: "custom",
              message: problem,
              path: ["editable", i],
              input: p,
              continue: true,
            });
        });
      },
      // Judged even when another field is wrong; a malformed details is reported on its own.
      { when: (payload) => isPlainObject(payload.value) },
    ),
  );

/**
 * Why an editable pointer cannot be offered to approvers: it must name a member that
 * exists, and a string, number or boolean, the values a modal's input can hold and a
 * person can judge (an object or array would be a whole structure to retype; null has no
 * type to keep).
 */
function editableTargetProblem(details: unknown, pointer: string): string | undefined {
  if (!isPlainObject(details)) return `names ${pointer} in action.details, but the request has no details`;
  const member = resolvePointer(details, pointer);
  if (!member.found) return `names ${pointer}, which is not a member of action.details`;
  const type = jsonType(member.value);
  if (type === "string" || type === "number" || type === "boolean") return undefined;
  return `names ${pointer}, which is ${withArticle(type)}; only a string, number or boolean can be editable`;
}

/** The person the agent acts for: approvers see it, and that person cannot approve. */
export const OnBehalfOfSchema = z
  .strictObject(
    {
      slack_user: text({
        max: 64,
        pattern: SLACK_USER_PATTERN,
        patternMessage: "must be a Slack user id such as U0123ABCD",
      }).optional(),
      email: text({
        max: 254,
        pattern: EMAIL_PATTERN,
        patternMessage: "must be an email address such as ana@example.com",
      }).optional(),
    },
    { error: typeError("must be an object with slack_user and/or email") },
  )
  .check(
    z.refine(
      (v: { slack_user?: unknown; email?: unknown }) => v.slack_user !== undefined || v.email !== undefined,
      {
        // Judged even when a member is wrong: a wrong member still names someone.
        when: (payload) => isPlainObject(payload.value),
        error: "must name the person by slack_user, email or both",
      },
    ),
  );

/**
 * The agent's ActionRequest. Strict at every level: a misspelt optional
 * field is refused rather than silently ignored. The schemas are exported so that an
 * OpenAPI document can be generated from them (z.toJSONSchema).
 */
export const ActionRequestSchema = z.strictObject({
  request_id: idText("request_id"),
  agent_id: idText("agent_id"),
  action: ActionSchema,
  risk_class: text({ max: 64 }),
  region: text({ max: 64 }),
  purpose: text({ max: 1000, notBlank: true }),
  on_behalf_of: OnBehalfOfSchema.optional(),
  callback_url: CALLBACK_URL.optional(),
  // One message for any way of missing the range; the JSON Schema still gets the bounds.
  timeout_s: z
    .number({ error: TIMEOUT_MESSAGE })
    .refine((v) => Number.isInteger(v) && v >= TIMEOUT_MIN_S && v <= TIMEOUT_MAX_S, {
      error: TIMEOUT_MESSAGE,
    })
    .meta({ type: "integer", minimum: TIMEOUT_MIN_S, maximum: TIMEOUT_MAX_S })
    .optional(),
  context: jsonObject({ maxBytes: CONTEXT_MAX_BYTES }).optional(),
});

type Output = z.output<typeof ActionRequestSchema>;

/** The agent's request as validated: the schema's output, read-only. */
export type ActionRequest = {
  readonly [K in keyof Omit<Output, "action" | "on_behalf_of">]: Output[K];
} & {
  readonly action: {
    readonly [K in keyof Omit<Output["action"], "systems" | "editable">]: Output["action"][K];
  } & { readonly systems?: readonly string[]; readonly editable?: readonly string[] };
  readonly on_behalf_of?: OnBehalfOf;
};

export type OnBehalfOf = Readonly<NonNullable<Output["on_behalf_of"]>>;

/** Members known at each level, in the order problems are reported. */
const FIELD_ORDER: Readonly<Record<string, readonly string[]>> = {
  "": TOP_FIELDS,
  action: ACTION_FIELDS,
  on_behalf_of: ON_BEHALF_OF_FIELDS,
};

/**
 * Where a problem sorts: problems are reported in the order the fields are listed, and at
 * each level unknown members (and a list's own length) come before the members' own
 * problems, and an object's own rule after them.
 */
function sortKey(path: readonly PropertyKey[], where: "before" | "at" | "after"): number[] {
  const key: number[] = [];
  let parent = "";
  for (const segment of path) {
    if (typeof segment === "number") key.push(segment);
    else {
      const order = FIELD_ORDER[parent] ?? [];
      key.push(order.indexOf(String(segment)));
      parent = parent === "" ? String(segment) : `${parent}.${String(segment)}`;
    }
  }
  if (where === "before") key.push(-1);
  if (where === "after") key.push(Number.MAX_SAFE_INTEGER);
  return key;
}

function compareKeys(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** Only the first entries of a long list are checked one by one; its length is refused anyway. */
const CHECKED_ENTRIES = 100;

/** The schema's issues as FieldErrors, with the messages and order agents have always seen. */
function fieldErrors(issues: readonly z.core.$ZodIssue[]): FieldError[] {
  const out: { key: number[]; error: FieldError }[] = [];
  for (const issue of issues) {
    const path = issue.path.map((s) => (typeof s === "symbol" ? String(s) : s));
    const dotted = path.reduce<string>((p, s) => joinPath(p, s as string | number), "");
    if (path.some((s) => typeof s === "number" && s >= CHECKED_ENTRIES)) continue;
    if (issue.code === "unrecognized_keys") {
      const known = FIELD_ORDER[dotted] ?? [];
      for (const key of issue.keys) {
        const near = key.length <= 64 ? known.find((k) => editDistance(key, k) <= 2) : undefined;
        out.push({
          key: sortKey(path, "before"),
          error: {
            path: joinPath(dotted, key),
            message:
              near !== undefined
                ? `unknown field; did you mean "${near}"?`
                : `unknown field; expected one of: ${known.join(", ")}`,
          },
        });
      }
      continue;
    }
    const where =
      issue.code === "custom" && dotted === "on_behalf_of"
        ? "after"
        : issue.code === "custom" && (dotted === "action.systems" || dotted === "action.editable")
          ? "before"
          : "at";
    out.push({ key: sortKey(path, where), error: { path: dotted, message: issue.message } });
  }
  // Array.prototype.sort is stable: problems with one key keep the schema's order.
  return out.sort((a, b) => compareKeys(a.key, b.key)).map((e) => e.error);
}

/**
 * Structural validation of an ActionRequest, plus I-JSON. Returns a fresh
 * object with only the known fields and no defaults added, so it hashes exactly as the
 * input did. Fields set to `undefined` count as absent (they have no JSON form).
 */
export function validateRequest(input: unknown): ActionRequest {
  if (!isPlainObject(input)) {
    throw invalidRequest([
      { path: "", message: `the request must be a JSON object, not ${describeType(input)}` },
    ]);
  }
  const result = ActionRequestSchema.safeParse(input);
  const errors = result.success ? [] : fieldErrors(result.error.issues);
  errors.push(...iJsonProblems(input));
  if (errors.length > 0 || !result.success) throw invalidRequest(errors);

  // Rebuilt in the order the fields are listed (as a card shows them), without members set
  // to `undefined`: they have no JSON form and count as absent.
  const d = result.data;
  const out: { -readonly [K in keyof ActionRequest]: ActionRequest[K] } = {
    request_id: d.request_id,
    agent_id: d.agent_id,
    action: {
      type: d.action.type,
      summary: d.action.summary,
      ...(d.action.details !== undefined && { details: d.action.details as Record<string, unknown> }),
      ...(d.action.systems !== undefined && { systems: d.action.systems }),
      ...(d.action.editable !== undefined && { editable: d.action.editable }),
    },
    risk_class: d.risk_class,
    region: d.region,
    purpose: d.purpose,
  };
  if (d.on_behalf_of !== undefined) {
    out.on_behalf_of = {
      ...(d.on_behalf_of.slack_user !== undefined && { slack_user: d.on_behalf_of.slack_user }),
      ...(d.on_behalf_of.email !== undefined && { email: d.on_behalf_of.email }),
    };
  }
  if (d.callback_url !== undefined) out.callback_url = d.callback_url;
  if (d.timeout_s !== undefined) out.timeout_s = d.timeout_s;
  if (d.context !== undefined) out.context = d.context as Record<string, unknown>;
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
