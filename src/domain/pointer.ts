/**
 * JSON Pointers (RFC 6901) into a request's `action.details`: the policy's `when.details`
 * conditions and the request's `action.editable` both name members this way. Only the
 * forms that name an existing member are accepted: a pointer starts with "/" (the empty
 * pointer would name `details` itself, which is neither a condition's value nor an
 * editable field), `~` is only ever `~0` or `~1`, and an array index is a plain decimal
 * (no "-", which names the slot after the last element, and no leading zeros).
 */

export const POINTER_MAX_LENGTH = 1024;

/** Why `pointer` is not a JSON Pointer we accept, or undefined when it is. */
export function pointerProblem(pointer: string): string | undefined {
  if (!pointer.startsWith("/")) return `"${shorten(pointer)}" is not a JSON Pointer: it must start with "/"`;
  if (pointer.length > POINTER_MAX_LENGTH)
    return `is ${pointer.length} characters long; at most ${POINTER_MAX_LENGTH} are allowed`;
  const bad = /~(?![01])/.exec(pointer);
  if (bad !== null)
    return `"${shorten(pointer)}" has "~" not followed by 0 or 1 at character ${bad.index + 1}; write ~0 for "~" and ~1 for "/"`;
  return undefined;
}

/** The reference tokens of a valid pointer, unescaped (`~1` before `~0`, as RFC 6901 says). */
export function pointerTokens(pointer: string): string[] {
  return pointer
    .split("/")
    .slice(1)
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

const ARRAY_INDEX = /^(0|[1-9][0-9]*)$/;

/** The member `pointer` names in `doc`, if there is one. Own members only: "__proto__" is data. */
export function resolvePointer(
  doc: unknown,
  pointer: string,
): { readonly found: true; readonly value: unknown } | { readonly found: false } {
  let cur = doc;
  for (const token of pointerTokens(pointer)) {
    if (Array.isArray(cur)) {
      if (!ARRAY_INDEX.test(token) || Number(token) >= cur.length) return { found: false };
      cur = cur[Number(token)];
    } else if (typeof cur === "object" && cur !== null && Object.hasOwn(cur, token)) {
      cur = (cur as Record<string, unknown>)[token];
    } else return { found: false };
  }
  return { found: true, value: cur };
}

/** The JSON type of a parsed value, as conditions and editable pointers speak of it. */
export type JsonType = "string" | "number" | "boolean" | "null" | "array" | "object";

export function jsonType(value: unknown): JsonType {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  const t = typeof value;
  if (t === "string" || t === "number" || t === "boolean") return t;
  return "object";
}

/** "a string", "an array", ... */
export function withArticle(type: JsonType): string {
  return type === "array" || type === "object" ? `an ${type}` : type === "null" ? "null" : `a ${type}`;
}

function shorten(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
