/**
 * Reading YAML nodes with their positions. The file is walked node by node rather than
 * converted to plain data first: that keeps each value's position, and lets a broken part
 * be reported while the rest is still checked (a schema library stops at the shape and
 * loses the cross-references).
 */
import { type Document, isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import { parseDuration } from "../duration.js";
import type { PolicyProblem } from "./problems.js";

export type Seg = string | number;
export type Path = readonly Seg[];

export function formatPath(path: Path): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `.${seg}`;
    else if (/^[A-Za-z0-9_-]+$/.test(seg)) out += `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out.startsWith(".") ? out.slice(1) : out;
}

export interface Entry {
  readonly key: string;
  readonly keyNode: unknown;
  readonly value: unknown;
  readonly path: Path;
}

export interface Item<T> {
  readonly value: T;
  readonly node: unknown;
  readonly path: Path;
}

export function rangeStart(node: unknown): number | undefined {
  if (typeof node !== "object" || node === null || !("range" in node)) return undefined;
  const range = (node as { range?: readonly number[] | null }).range;
  return range?.[0];
}

export function describe(node: unknown): string {
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

export class Reader {
  readonly problems: PolicyProblem[] = [];

  constructor(
    readonly doc: Document,
    readonly lines: LineCounter,
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

/** The path of the key that starts at `offset`, for problems the YAML parser reports by position only. */
export function pathAtOffset(doc: Document, offset: number): Path {
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

/**
 * Parses YAML text for walking. Duplicate keys are problems but leave a usable tree, so
 * checking goes on; a syntax error or a file built to explode in size does not, and
 * `usable` is then false. `contents` is null for an empty file.
 */
export function readYaml(text: string): { reader: Reader; contents: unknown; usable: boolean } {
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
  return { reader: r, contents: doc.contents, usable: !broken };
}
