/**
 * I-JSON (RFC 7493) for what agents send us. The request's digest (`req`, `action_sha256`)
 * is taken over the RFC 8785 canonical form of the parsed value, so anything two parsers
 * could read differently must be refused before it is hashed: duplicate member names
 * (last-wins here, first-wins elsewhere), integers a double cannot hold exactly, and lone
 * surrogates (which have no UTF-8 form, so no canonical bytes).
 */
import { type FieldError, RejectionError } from "./types.js";

/**
 * Containers nested deeper than this are refused. Far above anything a request needs
 * (`action.details` is capped at 32 levels), and low enough that recursion over a parsed
 * value can never exhaust the stack.
 */
export const MAX_JSON_DEPTH = 64;

/** A document with thousands of duplicate names should not yield a thousand-line error. */
const MAX_REPORTED_PROBLEMS = 50;

/** Joins a path segment onto a dotted path; the root is "". */
export function joinPath(base: string, segment: string | number): string {
  return base === "" ? String(segment) : `${base}.${segment}`;
}

/**
 * The one refusal for a malformed or invalid request: `<n> problem(s): <path>: <message>; ...`,
 * every problem also in `errors` for the HTTP problem document.
 */
export function invalidRequest(errors: readonly FieldError[]): RejectionError {
  const n = errors.length;
  const shown = errors.slice(0, 3).map((e) => (e.path === "" ? e.message : `${e.path}: ${e.message}`));
  const more = n > 3 ? `; and ${n - 3} more` : "";
  return new RejectionError(
    "invalid_request",
    `${n} problem${n === 1 ? "" : "s"}: ${shown.join("; ")}${more}`,
    errors,
  );
}

/** Index of the first unpaired UTF-16 surrogate in `s`, or -1. */
export function loneSurrogateIndex(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return -1;
}

function surrogateMessage(s: string, what: "string" | "member name"): string | null {
  const at = loneSurrogateIndex(s);
  if (at < 0) return null;
  const hex = s.charCodeAt(at).toString(16).toUpperCase();
  return `${what} contains a lone surrogate \\u${hex} at character ${at}; it has no UTF-8 form`;
}

/**
 * Numbers a double holds exactly and every JSON parser reads alike. Any integral value
 * beyond +-(2^53-1) is refused, whether written `9007199254740993` or `1e30`: once parsed,
 * the two look the same, and the queue (which hands us parsed values) must judge exactly
 * as the HTTP API (which hands us text) does.
 */
function numberMessage(n: number): string | null {
  if (!Number.isFinite(n)) return `number ${n} is not finite; JSON has no such value`;
  if (Number.isInteger(n) && !Number.isSafeInteger(n)) {
    return `number ${n} is a whole number outside +-(2^53-1), which parsers do not all keep exact; send it as a string`;
  }
  return null;
}

/**
 * I-JSON problems in a value that was already parsed (a queue job's data): lone
 * surrogates in strings and member names, unsafe integers, non-finite numbers, values
 * JSON cannot carry, and nesting deeper than MAX_JSON_DEPTH (which also stops cycles).
 */
export function iJsonProblems(value: unknown, basePath = ""): FieldError[] {
  const problems: FieldError[] = [];
  const report = (path: string, message: string): boolean => {
    problems.push({ path, message });
    return problems.length < MAX_REPORTED_PROBLEMS;
  };
  // Returns false once the report is full, so a huge bad document stops early.
  const walk = (v: unknown, path: string, depth: number): boolean => {
    switch (typeof v) {
      case "string": {
        const m = surrogateMessage(v, "string");
        return m === null || report(path, m);
      }
      case "number": {
        const m = numberMessage(v);
        return m === null || report(path, m);
      }
      case "boolean":
        return true;
      case "object": {
        if (v === null) return true;
        if (depth >= MAX_JSON_DEPTH) {
          return report(path, `nested deeper than ${MAX_JSON_DEPTH} levels`);
        }
        if (Array.isArray(v)) {
          for (let i = 0; i < v.length; i++) {
            if (!walk(v[i], joinPath(path, i), depth + 1)) return false;
          }
          return true;
        }
        const proto = Object.getPrototypeOf(v);
        if (proto !== Object.prototype && proto !== null) {
          return report(path, "is not a plain JSON object");
        }
        for (const [key, item] of Object.entries(v)) {
          // JSON.stringify and RFC 8785 both leave such a member out, so it cannot skew a digest.
          if (item === undefined) continue;
          const itemPath = joinPath(path, key);
          const m = surrogateMessage(key, "member name");
          if (m !== null && !report(itemPath, m)) return false;
          if (!walk(item, itemPath, depth + 1)) return false;
        }
        return true;
      }
      default:
        return report(path, `a value of type ${typeof v} has no JSON form`);
    }
  };
  walk(value, basePath, 0);
  return problems;
}

// ---------------------------------------------------------------------------
// The strict parser. Recursive descent with the depth capped, each character looked at
// a bounded number of times: linear in the input, and the stack stays shallow.

class SyntaxFailure extends Error {}

// Character codes the parser compares against.
const Ch = {
  Tab: 0x09,
  Lf: 0x0a,
  Cr: 0x0d,
  Space: 0x20,
  Quote: 0x22,
  Plus: 0x2b,
  Comma: 0x2c,
  Minus: 0x2d,
  Dot: 0x2e,
  Zero: 0x30,
  Nine: 0x39,
  Colon: 0x3a,
  OpenBracket: 0x5b,
  Backslash: 0x5c,
  CloseBracket: 0x5d,
  OpenBrace: 0x7b,
  CloseBrace: 0x7d,
} as const;

const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

class StrictParser {
  private pos = 0;
  readonly problems: FieldError[] = [];

  constructor(private readonly text: string) {}

  parseDocument(): unknown {
    this.skipWhitespace();
    const value = this.parseValue("", 0);
    this.skipWhitespace();
    if (this.pos < this.text.length) this.fail("unexpected text after the JSON value");
    return value;
  }

  private problem(path: string, message: string): void {
    if (this.problems.length < MAX_REPORTED_PROBLEMS) this.problems.push({ path, message });
  }

  private fail(what: string, at = this.pos): never {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < at && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === Ch.Lf) {
        line++;
        lineStart = i + 1;
      }
    }
    throw new SyntaxFailure(`malformed JSON at line ${line}, column ${at - lineStart + 1}: ${what}`);
  }

  private describeHere(): string {
    if (this.pos >= this.text.length) return "the end of the text";
    const cp = this.text.codePointAt(this.pos)!;
    return cp < 0x20 || cp === 0x7f
      ? `character U+${cp.toString(16).toUpperCase().padStart(4, "0")}`
      : `'${String.fromCodePoint(cp)}'`;
  }

  private skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== Ch.Space && c !== Ch.Lf && c !== Ch.Cr && c !== Ch.Tab) break;
      this.pos++;
    }
  }

  private parseValue(path: string, depth: number): unknown {
    const c = this.text.charCodeAt(this.pos);
    if (c === Ch.OpenBrace || c === Ch.OpenBracket) {
      if (depth >= MAX_JSON_DEPTH)
        this.fail(`nested deeper than ${MAX_JSON_DEPTH} levels (at ${path || "the top"})`);
      return c === Ch.OpenBrace ? this.parseObject(path, depth + 1) : this.parseArray(path, depth + 1);
    }
    if (c === Ch.Quote) {
      const s = this.parseString();
      const m = surrogateMessage(s, "string");
      if (m !== null) this.problem(path, m);
      return s;
    }
    if (c === Ch.Minus || (c >= Ch.Zero && c <= Ch.Nine)) return this.parseNumber(path);
    if (this.text.startsWith("true", this.pos)) return this.literal(4, true);
    if (this.text.startsWith("false", this.pos)) return this.literal(5, false);
    if (this.text.startsWith("null", this.pos)) return this.literal(4, null);
    return this.fail(`expected a value, found ${this.describeHere()}`);
  }

  private literal<T>(length: number, value: T): T {
    this.pos += length;
    return value;
  }

  private parseObject(path: string, depth: number): Record<string, unknown> {
    const obj: Record<string, unknown> = {};
    this.pos++; // '{'
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === Ch.CloseBrace) {
      this.pos++;
      return obj;
    }
    for (;;) {
      if (this.text.charCodeAt(this.pos) !== Ch.Quote) {
        this.fail(`expected a member name in double quotes, found ${this.describeHere()}`);
      }
      const key = this.parseString();
      const memberPath = joinPath(path, key);
      const m = surrogateMessage(key, "member name");
      if (m !== null) this.problem(memberPath, m);
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) !== Ch.Colon) {
        this.fail(`expected ':' after member name, found ${this.describeHere()}`);
      }
      this.pos++;
      this.skipWhitespace();
      const value = this.parseValue(memberPath, depth);
      if (Object.hasOwn(obj, key)) {
        this.problem(path, `duplicate member name ${JSON.stringify(key)}`);
      } else if (key === "__proto__") {
        // Plain assignment would replace the prototype; JSON.parse makes an own property.
        Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
      } else {
        obj[key] = value;
      }
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      if (c === Ch.Comma) {
        this.pos++;
        this.skipWhitespace();
      } else if (c === Ch.CloseBrace) {
        this.pos++;
        return obj;
      } else {
        this.fail(`expected ',' or '}' in object, found ${this.describeHere()}`);
      }
    }
  }

  private parseArray(path: string, depth: number): unknown[] {
    const arr: unknown[] = [];
    this.pos++; // '['
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === Ch.CloseBracket) {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.parseValue(joinPath(path, arr.length), depth));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      if (c === Ch.Comma) {
        this.pos++;
        this.skipWhitespace();
      } else if (c === Ch.CloseBracket) {
        this.pos++;
        return arr;
      } else {
        this.fail(`expected ',' or ']' in array, found ${this.describeHere()}`);
      }
    }
  }

  /** Reads a string starting at the opening quote; builds it from slices between escapes. */
  private parseString(): string {
    const t = this.text;
    const start = this.pos;
    this.pos++; // '"'
    let out = "";
    let chunkStart = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail("unterminated string", start);
      const c = t.charCodeAt(this.pos);
      if (c === Ch.Quote) {
        out += t.slice(chunkStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20)
        this.fail(`control character U+${c.toString(16).padStart(4, "0")} must be escaped in a string`);
      if (c !== Ch.Backslash) {
        this.pos++;
        continue;
      }
      out += t.slice(chunkStart, this.pos);
      const e = t[this.pos + 1];
      if (e === "u") {
        const hex = t.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) this.fail("\\u must be followed by four hex digits");
        out += String.fromCharCode(Number.parseInt(hex, 16));
        this.pos += 6;
      } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
        out += ESCAPES[e];
        this.pos += 2;
      } else {
        this.fail(`invalid escape \\${e ?? ""} in string`);
      }
      chunkStart = this.pos;
    }
  }

  private parseNumber(path: string): number {
    const t = this.text;
    const start = this.pos;
    const digits = (): number => {
      const from = this.pos;
      while (this.pos < t.length) {
        const c = t.charCodeAt(this.pos);
        if (c < Ch.Zero || c > Ch.Nine) break;
        this.pos++;
      }
      return this.pos - from;
    };
    if (t.charCodeAt(this.pos) === Ch.Minus) this.pos++;
    const intStart = this.pos;
    const intDigits = digits();
    if (intDigits === 0) this.fail("expected a digit");
    if (intDigits > 1 && t.charCodeAt(intStart) === Ch.Zero)
      this.fail("numbers must not have leading zeros", intStart);
    if (t.charCodeAt(this.pos) === Ch.Dot) {
      this.pos++;
      if (digits() === 0) this.fail("expected a digit after the decimal point");
    }
    const c = t.charCodeAt(this.pos);
    if (c === 0x65 || c === 0x45) {
      this.pos++;
      const sign = t.charCodeAt(this.pos);
      if (sign === Ch.Plus || sign === Ch.Minus) this.pos++;
      if (digits() === 0) this.fail("expected a digit in the exponent");
    }
    const n = Number(t.slice(start, this.pos));
    const m = numberMessage(n);
    if (m !== null) this.problem(path, m);
    return n;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Lossy = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * Reads a body's bytes as UTF-8, the only encoding JSON has between systems (RFC 8259
 * 8.1). Bytes that are not UTF-8 are refused, never replaced with U+FFFD: a replaced
 * character would be hashed and shown as something the agent never sent. A byte order
 * mark is kept, for the parser to refuse.
 */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    // Up to the first bad byte, the lossy decoding re-encodes to the very same bytes.
    const lossy = new TextEncoder().encode(utf8Lossy.decode(bytes));
    let at = 0;
    while (at < bytes.length && at < lossy.length && bytes[at] === lossy[at]) at++;
    const shown = Array.from(bytes.subarray(at, at + 4), (b) => `0x${b.toString(16).toUpperCase()}`);
    throw invalidRequest([
      {
        path: "",
        message: `the body is not UTF-8: bytes ${shown.join(" ")} at byte offset ${at} do not form a character; send JSON encoded as UTF-8`,
      },
    ]);
  }
}

/**
 * Parses a body that arrives as text (the HTTP API) and refuses what is not I-JSON.
 * On success the result equals `JSON.parse(text)`. Malformed text is refused at its
 * first fault with the line and column; I-JSON problems are all collected.
 */
export function parseStrictJson(text: string): unknown {
  const parser = new StrictParser(text);
  let value: unknown;
  try {
    value = parser.parseDocument();
  } catch (err) {
    if (err instanceof SyntaxFailure) throw invalidRequest([{ path: "", message: err.message }]);
    throw err;
  }
  if (parser.problems.length > 0) throw invalidRequest(parser.problems);
  return value;
}
