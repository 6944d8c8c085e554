/**
 * An approver's change to a request before approval (SPEC "Changes before approval"), as
 * pure rules: which members may change (the request's `editable` pointers, unless the
 * policy forbids changes for the action type), what a submitted value may be (the JSON
 * type of the value it replaces), and the next revision with each change, old and new.
 * Whether the revision still takes the same route is judged by the use case, which has
 * the policy's routing at hand.
 */
import type { ActionRequest, JsonPatchOperation, JsonValue } from "./types.js";

/** One member changed: its pointer into `action.details`, the value before and after. */
export interface MemberChange {
  readonly pointer: string;
  readonly old: JsonValue;
  readonly new: JsonValue;
}

export type ChangeProblemCode = "not_editable" | "wrong_type" | "no_change";

/** A submitted value that cannot be taken, with the pointer it was for (null: the whole submission). */
export interface ChangeProblem {
  readonly code: ChangeProblemCode;
  readonly pointer: string | null;
  readonly message: string;
}

/** The pointers approvers may change (after policy): helper B's rule, in src/domain/policy. */
export { changesAllowed } from "./policy.js";

/** RFC 6901: "/a~1b/c" -> ["a/b", "c"]. */
export function pointerTokens(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new Error(`JSON Pointer ${pointer} must start with /`);
  return pointer
    .slice(1)
    .split("/")
    .map((t) => t.replaceAll("~1", "/").replaceAll("~0", "~"));
}

/** The value at `pointer` in `doc`, or undefined when it names nothing. */
export function valueAt(doc: unknown, pointer: string): JsonValue | undefined {
  let cur: unknown = doc;
  for (const t of pointerTokens(pointer)) {
    if (cur === null || typeof cur !== "object") return undefined;
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9][0-9]*)$/.test(t)) return undefined;
      cur = cur[Number(t)];
    } else {
      if (!Object.hasOwn(cur, t)) return undefined;
      cur = (cur as Record<string, unknown>)[t];
    }
  }
  return cur as JsonValue | undefined;
}

function setAt(doc: unknown, pointer: string, value: JsonValue): void {
  const tokens = pointerTokens(pointer);
  const last = tokens.pop();
  let cur: unknown = doc;
  for (const t of tokens) cur = Array.isArray(cur) ? cur[Number(t)] : (cur as Record<string, unknown>)[t];
  if (Array.isArray(cur)) cur[Number(last)] = value;
  else (cur as Record<string, unknown>)[last as string] = value;
}

/** The JSON type a card input must keep: string, number or boolean (anything else is not editable). */
export function jsonKind(v: unknown): "string" | "number" | "boolean" | null {
  if (typeof v === "string") return "string";
  if (typeof v === "number" && Number.isFinite(v)) return "number";
  if (typeof v === "boolean") return "boolean";
  return null;
}

/**
 * The next revision: `current` with `values` (pointer into `action.details` -> new value)
 * put in place. Refused when a pointer is not among `editable` (a forged submission), a
 * value's JSON type is not the one it replaces, or nothing changes at all.
 */
export function reviseRequest(
  current: ActionRequest,
  editable: readonly string[],
  values: Readonly<Record<string, unknown>>,
):
  | { readonly ok: true; readonly next: ActionRequest; readonly changes: readonly MemberChange[] }
  | { readonly ok: false; readonly problems: readonly ChangeProblem[] } {
  const problems: ChangeProblem[] = [];
  const changes: MemberChange[] = [];
  const next = structuredClone(current) as ActionRequest;
  const details = next.action.details ?? {};
  for (const [pointer, value] of Object.entries(values)) {
    if (!editable.includes(pointer)) {
      problems.push({
        code: "not_editable",
        pointer,
        message: `${pointer} is not one of the members this request lets approvers change`,
      });
      continue;
    }
    const old = valueAt(current.action.details ?? {}, pointer);
    const kind = jsonKind(old);
    if (kind === null) {
      problems.push({
        code: "not_editable",
        pointer,
        message: `${pointer} does not name a string, number or boolean in the request's details`,
      });
      continue;
    }
    if (jsonKind(value) !== kind) {
      problems.push({
        code: "wrong_type",
        pointer,
        message: `${pointer} must be a ${kind}${kind === "number" ? " (a finite number)" : ""}, as it was in the request`,
      });
      continue;
    }
    if (value === old) continue;
    setAt(details, pointer, value as JsonValue);
    changes.push({ pointer, old: old as JsonValue, new: value as JsonValue });
  }
  if (problems.length) return { ok: false, problems };
  if (!changes.length) {
    return {
      ok: false,
      problems: [{ code: "no_change", pointer: null, message: "no value differs from the current revision" }],
    };
  }
  return { ok: true, next, changes };
}

/**
 * Each member approvers changed, revision by revision, read from the edits' patches
 * (paths under `/action/details`), with the value before from the revision before.
 */
export function changesOf(
  original: ActionRequest,
  revisions: readonly {
    readonly revision: number;
    readonly request: ActionRequest;
    readonly edit: { readonly user: string; readonly patch: readonly JsonPatchOperation[] };
  }[],
): {
  revision: number;
  user: string;
  pointer: string;
  old: JsonValue | undefined;
  new: JsonValue | undefined;
}[] {
  const out: {
    revision: number;
    user: string;
    pointer: string;
    old: JsonValue | undefined;
    new: JsonValue | undefined;
  }[] = [];
  let prev = original;
  for (const r of revisions) {
    for (const op of r.edit.patch) {
      if (!op.path.startsWith(DETAILS_PATH)) continue;
      const pointer = op.path.slice(DETAILS_PATH.length);
      out.push({
        revision: r.revision,
        user: r.edit.user,
        pointer,
        old: valueAt(prev.action.details ?? {}, pointer),
        new: valueAt(r.request.action.details ?? {}, pointer),
      });
    }
    prev = r.request;
  }
  return out;
}

const DETAILS_PATH = "/action/details";
