/**
 * Approvers' changes as RFC 6902 JSON Patches (SPEC "Changes before approval"). A record
 * binds the agent's request (`original_sha256`), each change (`edits[].patch`) and the
 * decided revision (`action_sha256`); anyone holding the original can replay the edits and
 * check the last digest. So the patches must be a standard every language can apply, and
 * replaying them must be exact: a patch that does not apply is an error naming the edit and
 * the operation, never a partial result.
 *
 * fast-json-patch (kept, widely used, CommonJS) does the RFC 6902 and RFC 6901 work: its
 * `compare` yields `replace` for a changed scalar and escapes `~` and `/` in member names
 * (`~0`, `~1`), and `applyPatch` validates each operation, including failing `test`s. Two
 * things it does not do are done here: a diff of two unequal scalars (or of an array
 * against an object) at the root, which `compare` answers with no operations, and keeping
 * the caller's values untouched (its `add` inserts the operation's own value by reference,
 * so a later operation of the same patch could change the patch).
 */
import jsonpatch from "fast-json-patch";
import { canonicalJson } from "./canonical.js";
import type { Edit, JsonPatchOperation } from "./types.js";

function isContainer(v: unknown): v is object {
  return typeof v === "object" && v !== null;
}

/** A deep copy of a JSON value (the inputs here are JSON: requests and patches). */
function copy<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/**
 * The RFC 6902 operations that turn `prev` into `next`: `replace` for each changed
 * scalar, `add` and `remove` for members that appear or go. Empty when they are equal.
 */
export function diffRequest(prev: unknown, next: unknown): JsonPatchOperation[] {
  const comparable = isContainer(prev) && isContainer(next) && Array.isArray(prev) === Array.isArray(next);
  if (!comparable) {
    return canonicalJson(prev) === canonicalJson(next)
      ? []
      : [{ op: "replace", path: "", value: copy(next) as JsonPatchOperation["value"] }];
  }
  return copy(jsonpatch.compare(prev, next) as JsonPatchOperation[]);
}

/** fast-json-patch's error names, in words for an auditor. */
const WHY: Record<string, string> = {
  TEST_OPERATION_FAILED: "its test failed: the value there is not the one the edit expected",
  OPERATION_PATH_UNRESOLVABLE: "its path does not exist",
  OPERATION_FROM_UNRESOLVABLE: "its from path does not exist",
  OPERATION_PATH_CANNOT_ADD: "nothing can be added at its path",
  OPERATION_PATH_ILLEGAL_ARRAY_INDEX: "its path has an array index that is not a number",
  OPERATION_VALUE_OUT_OF_BOUNDS: "its array index is out of bounds",
  OPERATION_VALUE_REQUIRED: "it has no value",
  OPERATION_VALUE_CANNOT_CONTAIN_UNDEFINED: "its value is not JSON",
  OPERATION_OP_INVALID: "its op is not one of add, remove, replace, move, copy, test",
  OPERATION_PATH_INVALID: "its path is not a JSON Pointer",
  OPERATION_NOT_AN_OBJECT: "it is not an object",
  SEQUENCE_NOT_AN_ARRAY: "the patch is not an array",
};

function describeOp(op: unknown): string {
  if (!isContainer(op)) return JSON.stringify(op) ?? String(op);
  const o = op as { op?: unknown; path?: unknown };
  return `${JSON.stringify(o.op)} at ${JSON.stringify(o.path)}`;
}

/**
 * `original` with each edit's patch applied in order. Never changes `original` or the
 * edits. Throws an Error naming the edit index, the operation index and the operation
 * when a patch does not apply (a missing path, a failing `test`, a malformed operation).
 */
export function applyEdits(
  original: unknown,
  edits: readonly { readonly patch: readonly JsonPatchOperation[] }[],
): unknown {
  let doc = copy(original);
  edits.forEach((edit, i) => {
    const patch: unknown = isContainer(edit) ? edit.patch : undefined;
    if (!Array.isArray(patch)) {
      throw new Error(`edits[${i}]: patch is not an array of RFC 6902 operations`);
    }
    for (const [j, op] of (patch as unknown[]).entries()) {
      try {
        // One operation at a time so the error can name it; validate = true, and the
        // document is our own copy, so it may be changed in place.
        doc = jsonpatch.applyOperation(doc, copy(op) as jsonpatch.Operation, true, true, true, j).newDocument;
      } catch (e) {
        const name = e instanceof Error ? e.name : "";
        const text = e instanceof Error ? e.message : String(e);
        const why =
          WHY[name] ??
          (text.includes("__proto__") ? "it would change __proto__ or a prototype" : text.split("\n")[0]);
        throw new Error(`edits[${i}].patch[${j}] (${describeOp(op)}) does not apply: ${why}`);
      }
    }
  });
  return doc;
}

/**
 * The request a record decided: the agent's `original` with the record's `edits` applied
 * (the original itself when there are none). The edits are signed and were validated by
 * the server, so the result has the original's shape; its digest is the record's
 * `action_sha256` for an intact record, which callers check.
 */
export function decidedRequest<T>(original: T, claims: { readonly edits?: readonly Edit[] | undefined }): T {
  return applyEdits(original, claims.edits ?? []) as T;
}

/** Which link of the chain original -> edits -> action_sha256 broke. */
export type ChainStep = "original_sha256" | "edits" | "action_sha256";

export type ChainCheck =
  | { readonly ok: true; readonly decided: unknown; readonly revised: boolean }
  | { readonly ok: false; readonly step: ChainStep; readonly reason: string };

/**
 * Checks that a record's claims cover `original` (the agent's request) and returns the
 * decided revision, for the SDK and `audit verify` alike:
 * 1. `original_sha256` and `edits` come together, or neither does;
 * 2. the original's digest is `original_sha256` (or `action_sha256` when nothing changed);
 * 3. every operation is a `replace` (or a `test`) at one of the original's
 *    `action.editable` pointers under `/action/details`, so nothing else can change;
 * 4. the edits apply, in order;
 * 5. the result's digest is `action_sha256`.
 * `digest` is the request digest (requestDigest), passed in so callers choose theirs.
 */
export function checkEditChain(
  original: unknown,
  claims: { readonly action_sha256?: unknown; readonly original_sha256?: unknown; readonly edits?: unknown },
  digest: (v: unknown) => string,
): ChainCheck {
  const { action_sha256, original_sha256, edits } = claims;
  const hasEdits = edits !== undefined;
  if (hasEdits !== (original_sha256 !== undefined)) {
    return {
      ok: false,
      step: "edits",
      reason: hasEdits
        ? "the record has edits but no original_sha256"
        : "the record has original_sha256 but no edits",
    };
  }
  const originalDigest = digest(original);
  if (!hasEdits) {
    return originalDigest === action_sha256
      ? { ok: true, decided: original, revised: false }
      : {
          ok: false,
          step: "action_sha256",
          reason: `action_sha256 ${JSON.stringify(action_sha256)} is not the request's digest (${originalDigest})`,
        };
  }
  if (originalDigest !== original_sha256) {
    return {
      ok: false,
      step: "original_sha256",
      reason: `original_sha256 ${JSON.stringify(original_sha256)} is not the original request's digest (${originalDigest})`,
    };
  }
  if (!Array.isArray(edits) || edits.length === 0) {
    return { ok: false, step: "edits", reason: "edits is not a non-empty array of {user, team, at, patch}" };
  }
  const editable = editablePaths(original);
  for (const [i, edit] of (edits as unknown[]).entries()) {
    const patch = isContainer(edit) ? (edit as { patch?: unknown }).patch : undefined;
    if (!Array.isArray(patch)) {
      return {
        ok: false,
        step: "edits",
        reason: `edits[${i}]: patch is not an array of RFC 6902 operations`,
      };
    }
    for (const [j, op] of (patch as unknown[]).entries()) {
      const o = (isContainer(op) ? op : {}) as { op?: unknown; path?: unknown };
      if ((o.op !== "replace" && o.op !== "test") || typeof o.path !== "string" || !editable.has(o.path)) {
        return {
          ok: false,
          step: "edits",
          reason: `edits[${i}].patch[${j}] (${describeOp(op)}) changes what the agent did not make editable (its action.editable: ${JSON.stringify([...editable].map((p) => p.slice(DETAILS.length)))})`,
        };
      }
    }
  }
  let decided: unknown;
  try {
    decided = applyEdits(original, edits as Edit[]);
  } catch (e) {
    return { ok: false, step: "edits", reason: (e as Error).message };
  }
  const decidedDigest = digest(decided);
  if (decidedDigest !== action_sha256) {
    return {
      ok: false,
      step: "action_sha256",
      reason: `action_sha256 ${JSON.stringify(action_sha256)} is not the digest of the original with its edits applied (${decidedDigest})`,
    };
  }
  return { ok: true, decided, revised: true };
}

const DETAILS = "/action/details";

/** The original's `action.editable` pointers as paths from the request's root. */
function editablePaths(original: unknown): Set<string> {
  const action = isContainer(original) ? (original as { action?: unknown }).action : undefined;
  const editable = isContainer(action) ? (action as { editable?: unknown }).editable : undefined;
  const list = Array.isArray(editable) ? editable.filter((p): p is string => typeof p === "string") : [];
  return new Set(list.map((p) => `${DETAILS}${p}`));
}
