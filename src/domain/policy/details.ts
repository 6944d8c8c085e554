/**
 * A route's `when.details`: conditions on the request's `action.details`, keyed by JSON
 * Pointer (SPEC "Policy file"). Every operator is checked here with its position, so a
 * condition that could never be judged (a text compared with `gt`, an empty `in`) is a
 * `policy check` problem rather than a surprise at routing time. Combinations that can
 * never hold (`gt: 10, lt: 5`; `exists: false` beside a comparison) are problems too: a
 * route that silently matches nothing is as misleading as a misspelt condition.
 */
import { isMap, isScalar, isSeq } from "yaml";
import { canonicalJson } from "../canonical.js";
import { type JsonType, jsonType, pointerProblem, withArticle } from "../pointer.js";
import type { DetailCondition, JsonValue } from "../types.js";
import { setOwn } from "./names.js";
import { describe, type Entry, type Path, type Reader } from "./yaml.js";

export const DETAIL_OPERATORS = ["eq", "in", "gt", "gte", "lt", "lte", "exists"] as const;
const NUMERIC = ["gt", "gte", "lt", "lte"] as const;

type MutableCondition = { -readonly [K in keyof DetailCondition]: DetailCondition[K] };

export function readDetails(r: Reader, entry: Entry): Record<string, DetailCondition> | undefined {
  const entries = r.map(
    entry.value,
    entry.path,
    'conditions on the request\'s details, keyed by JSON Pointer (e.g. "/amount": { gt: 1000 })',
  );
  if (entries === undefined) return undefined;
  const before = r.problems.length;
  if (entries.length === 0) {
    r.report(
      r.deref(entry.value),
      entry.path,
      "an empty details map adds no condition; leave details out, or name a pointer",
    );
  }
  const out: Record<string, DetailCondition> = {};
  for (const e of entries) {
    const problem = pointerProblem(e.key);
    if (problem !== undefined) {
      r.report(e.keyNode, e.path, `${problem} (a JSON Pointer into action.details, such as "/amount")`);
      continue;
    }
    const condition = readCondition(r, e);
    if (condition !== undefined) setOwn(out, e.key, condition);
  }
  return r.problems.length > before ? undefined : out;
}

function readCondition(r: Reader, e: Entry): DetailCondition | undefined {
  const fields = r.object(
    e.value,
    e.path,
    `a condition on ${e.key} (e.g. { gt: 1000 })`,
    DETAIL_OPERATORS,
    [],
    `a condition's operators are ${DETAIL_OPERATORS.join(", ")}`,
  );
  if (fields === undefined) return undefined;
  const before = r.problems.length;
  if (fields.size === 0) {
    // Only unknown operators: they are reported already; an empty condition is its own problem.
    const node = r.deref(e.value);
    if (isMap(node) && node.items.length > 0) return undefined;
    r.report(
      r.deref(e.value),
      e.path,
      `an empty condition holds for anything; give at least one of ${DETAIL_OPERATORS.join(", ")}`,
    );
    return undefined;
  }
  const c: MutableCondition = {};
  const eq = fields.get("eq");
  if (eq) {
    const v = readJson(r, eq.value, eq.path, 0);
    if (v !== undefined) c.eq = v;
  }
  const inEntry = fields.get("in");
  if (inEntry) {
    const items = r.seq(inEntry.value, inEntry.path, "the values the member may have");
    if (items !== undefined && items.length === 0) {
      r.report(
        r.deref(inEntry.value),
        inEntry.path,
        "an empty in list matches nothing; list at least one value",
      );
    } else if (items !== undefined) {
      const values: JsonValue[] = [];
      for (const item of items) {
        const v = readJson(r, item.value, item.path, 0);
        if (v !== undefined) values.push(v);
      }
      if (values.length === items.length) c.in = values;
    }
  }
  for (const op of NUMERIC) {
    const f = fields.get(op);
    if (!f) continue;
    const node = r.deref(f.value);
    if (!isScalar(node) || typeof node.value !== "number" || !Number.isFinite(node.value)) {
      r.report(node, f.path, `${op} compares numbers; expected a number, got ${describe(node)}`, f.value);
      continue;
    }
    c[op] = node.value;
  }
  const exists = fields.get("exists");
  if (exists) {
    const v = r.bool(exists.value, exists.path);
    if (v !== undefined) c.exists = v;
  }
  if (r.problems.length > before) return undefined;
  const never = neverHolds(c);
  if (never !== undefined) {
    r.report(r.deref(e.value), e.path, `this condition can never hold: ${never}`, e.keyNode);
    return undefined;
  }
  return c;
}

/** The JSON types the member must have for the condition's comparisons (empty: `exists` only). */
export function operandTypes(c: DetailCondition): ReadonlySet<JsonType> {
  const types = new Set<JsonType>();
  if (c.eq !== undefined) types.add(jsonType(c.eq));
  for (const v of c.in ?? []) types.add(jsonType(v));
  if (NUMERIC.some((op) => c[op] !== undefined)) types.add("number");
  return types;
}

/** Why no member could ever satisfy every operator of `c` at once, if that is so. */
function neverHolds(c: DetailCondition): string | undefined {
  const compares = DETAIL_OPERATORS.filter((op) => op !== "exists" && c[op] !== undefined);
  if (c.exists === false && compares.length > 0) {
    return `exists: false wants the member absent, but ${compares.join(", ")} compare its value`;
  }
  const numeric = NUMERIC.some((op) => c[op] !== undefined);
  if (c.eq !== undefined && c.in !== undefined) {
    const eq = canonicalJson(c.eq);
    if (!c.in.some((v) => canonicalJson(v) === eq)) return `eq ${eq} is not one of the in values`;
  }
  if (numeric) {
    if (c.eq !== undefined && typeof c.eq !== "number") {
      return `eq is ${withArticle(jsonType(c.eq))} but ${NUMERIC.filter((op) => c[op] !== undefined).join(", ")} compare numbers`;
    }
    if (c.in !== undefined && !c.in.some((v) => typeof v === "number")) {
      return `in lists no number but ${NUMERIC.filter((op) => c[op] !== undefined).join(", ")} compare numbers`;
    }
    const lower = Math.max(c.gt ?? -Infinity, c.gte ?? -Infinity);
    const upper = Math.min(c.lt ?? Infinity, c.lte ?? Infinity);
    const lowerOpen = c.gt !== undefined && c.gt >= (c.gte ?? -Infinity);
    const upperOpen = c.lt !== undefined && c.lt <= (c.lte ?? Infinity);
    if (lower > upper || (lower === upper && (lowerOpen || upperOpen))) {
      return `no number is ${bounds(c)}`;
    }
    const candidates = c.eq !== undefined ? [c.eq] : c.in?.filter((v) => typeof v === "number");
    if (candidates !== undefined && !candidates.some((v) => inRange(v as number, c))) {
      return `${c.eq !== undefined ? `eq ${c.eq}` : "no number in the in list"} is not ${bounds(c)}`;
    }
  }
  return undefined;
}

export function inRange(n: number, c: DetailCondition): boolean {
  return (
    (c.gt === undefined || n > c.gt) &&
    (c.gte === undefined || n >= c.gte) &&
    (c.lt === undefined || n < c.lt) &&
    (c.lte === undefined || n <= c.lte)
  );
}

const SYMBOL = { gt: ">", gte: ">=", lt: "<", lte: "<=" } as const;

function bounds(c: DetailCondition): string {
  return NUMERIC.filter((op) => c[op] !== undefined)
    .map((op) => `${SYMBOL[op]} ${c[op]}`)
    .join(" and ");
}

/** Deep enough for any condition a person writes; a guard against a file built to recurse. */
const MAX_DEPTH = 32;

/** A YAML node as plain JSON: strings, finite numbers within I-JSON's safe range, booleans, null, lists, maps with text keys. */
function readJson(r: Reader, raw: unknown, path: Path, depth: number): JsonValue | undefined {
  const node = r.deref(raw);
  if (depth > MAX_DEPTH) {
    r.report(node, path, `nested more than ${MAX_DEPTH} levels deep`, raw);
    return undefined;
  }
  if (isScalar(node)) {
    const v = node.value;
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) {
        r.report(
          node,
          path,
          `expected a JSON value, got ${describe(node)} (JSON has no infinities or NaN)`,
          raw,
        );
        return undefined;
      }
      if (Number.isInteger(v) && !Number.isSafeInteger(v)) {
        r.report(node, path, `${v} is beyond ±(2^53-1): I-JSON requests cannot carry it exactly`, raw);
        return undefined;
      }
      return v;
    }
    r.report(node, path, `expected a JSON value, got ${describe(node)}`, raw);
    return undefined;
  }
  if (isSeq(node)) {
    const out: JsonValue[] = [];
    let ok = true;
    node.items.forEach((item, i) => {
      const v = readJson(r, item, [...path, i], depth + 1);
      if (v === undefined) ok = false;
      else out.push(v);
    });
    return ok ? out : undefined;
  }
  if (isMap(node)) {
    const entries = r.map(node, path, "a JSON object");
    if (entries === undefined) return undefined;
    const out: Record<string, JsonValue> = {};
    let ok = true;
    for (const e of entries) {
      const keyNode = r.deref(e.keyNode);
      if (!isScalar(keyNode) || typeof keyNode.value !== "string") {
        r.report(keyNode, e.path, `a JSON object's keys are text; quote ${describe(keyNode)}`);
        ok = false;
        continue;
      }
      const v = readJson(r, e.value, e.path, depth + 1);
      if (v === undefined) ok = false;
      else setOwn(out, e.key, v);
    }
    return ok ? out : undefined;
  }
  r.report(node, path, `expected a JSON value, got ${describe(node)}`, raw);
  return undefined;
}
