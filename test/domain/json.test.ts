import { describe, expect, it } from "vitest";
import { decodeUtf8, iJsonProblems, MAX_JSON_DEPTH, parseStrictJson } from "../../src/domain/json.js";
import { RejectionError } from "../../src/domain/types.js";

function rejection(text: string): RejectionError {
  try {
    parseStrictJson(text);
  } catch (err) {
    if (err instanceof RejectionError) return err;
    throw err;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be refused`);
}

function nested(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

describe("parseStrictJson: good documents", () => {
  const documents = [
    "{}",
    "[]",
    "0",
    "-0",
    '"plain"',
    "true",
    "null",
    ' \t\r\n{ "a" : [1, -2.5e3, 0.25, 1E2, true, false, null, {"b": {}}], "c": "" } \n',
    '{"esc": "\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\u20AC \\ud83d\\ude00"}',
    '{"raw": "é € 😀 \u2028"}',
    '{"max": 9007199254740991, "min": -9007199254740991, "frac": 9007199254740993.5e-10}',
    '{"1": "integer-like keys come first", "b": 2, "0": 0}',
    '{"small": 1.5e-300, "underflow": 1e-400, "pi": 3.141592653589793}',
  ];
  for (const text of documents) {
    it(`equals JSON.parse for ${JSON.stringify(text).slice(0, 60)}`, () => {
      const value = parseStrictJson(text);
      expect(value).toStrictEqual(JSON.parse(text));
      expect(JSON.stringify(value)).toBe(JSON.stringify(JSON.parse(text)));
    });
  }

  it("keeps a __proto__ member as data, as JSON.parse does, instead of replacing the prototype", () => {
    const value = parseStrictJson('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
    expect(JSON.stringify(value)).toBe('{"__proto__":{"polluted":true}}');
  });

  it(`accepts nesting of exactly ${MAX_JSON_DEPTH} levels`, () => {
    expect(parseStrictJson(nested(MAX_JSON_DEPTH))).toStrictEqual(JSON.parse(nested(MAX_JSON_DEPTH)));
  });
});

describe("parseStrictJson: refusals", () => {
  it("refuses a duplicate member name nested deep inside, naming the object's path", () => {
    const err = rejection('{"action": {"details": {"amount": 1, "amount": 1000}}}');
    expect(err.code).toBe("invalid_request");
    expect(err.errors).toEqual([{ path: "action.details", message: 'duplicate member name "amount"' }]);
    expect(err.message).toBe('1 problem: action.details: duplicate member name "amount"');
  });

  it("refuses a duplicate name at the top level and inside an array item", () => {
    const err = rejection('{"a": 1, "a": 2, "list": [{"x": 1}, {"x": 1, "x": 2}]}');
    expect(err.errors.map((e) => e.path)).toEqual(["", "list.1"]);
    expect(err.message).toMatch(
      /^2 problems: duplicate member name "a"; list\.1: duplicate member name "x"$/,
    );
  });

  it("refuses 2^53 and beyond, which a double cannot hold exactly", () => {
    const err = rejection('{"n": 9007199254740992, "m": -9007199254740992, "k": 9007199254740993}');
    expect(err.errors.map((e) => e.path)).toEqual(["n", "m", "k"]);
    expect(err.errors[0]!.message).toMatch(/outside \+-\(2\^53-1\).*send it as a string/);
  });

  it("refuses an integral value written with an exponent beyond 2^53, as the queue would", () => {
    expect(rejection('{"n": 1e30}').errors[0]!.path).toBe("n");
  });

  it("refuses a number too large for a double", () => {
    const err = rejection("[1e400]");
    expect(err.errors[0]).toEqual({ path: "0", message: expect.stringMatching(/not finite/) });
  });

  it("refuses lone surrogates written as escapes, in values and in member names", () => {
    const err = rejection('{"a": "x\\ud800y", "b": "\\udc00", "\\udbff": 1, "ok": "\\ud83d\\ude00"}');
    expect(err.errors.map((e) => e.path)).toEqual(["a", "b", "\udbff"]);
    expect(err.errors[0]!.message).toMatch(/lone surrogate \\uD800 at character 1/);
    expect(err.errors[2]!.message).toMatch(/^member name contains a lone surrogate/);
  });

  it("refuses raw lone surrogates in the text", () => {
    const err = rejection('{"a": ["ok", "\ud800"]}');
    expect(err.errors.map((e) => e.path)).toEqual(["a.1"]);
  });

  it("refuses a high surrogate escape followed by a non-surrogate escape", () => {
    expect(rejection('"\\ud83d\\u0041"').errors).toHaveLength(1);
  });

  it(`refuses nesting deeper than ${MAX_JSON_DEPTH} without exhausting the stack`, () => {
    const err = rejection(nested(MAX_JSON_DEPTH + 1));
    expect(err.message).toMatch(/nested deeper than 64 levels/);
    // A hostile body: a million open brackets is refused, not a stack overflow.
    const hostile = rejection("[".repeat(1_000_000));
    expect(hostile.message).toMatch(/nested deeper than 64 levels/);
    const objects = rejection('{"a":'.repeat(100_000));
    expect(objects.message).toMatch(/nested deeper than 64 levels/);
  });

  it("says where malformed JSON breaks, by line and column", () => {
    expect(rejection('{\n  "a": 1,\n  "b" 2\n}').message).toBe(
      "1 problem: malformed JSON at line 3, column 7: expected ':' after member name, found '2'",
    );
    expect(rejection('{"a": 1,}').message).toMatch(
      /line 1, column 9: expected a member name in double quotes/,
    );
    expect(rejection("[1, 2").message).toMatch(
      /line 1, column 6: expected ',' or '\]' in array, found the end/,
    );
    expect(rejection('"abc').message).toMatch(/line 1, column 1: unterminated string/);
    expect(rejection("").message).toMatch(/expected a value, found the end of the text/);
  });

  const malformed = [
    "{'a': 1}",
    "[01]",
    "[1.]",
    "[.5]",
    "[+1]",
    "[1e]",
    "[-]",
    "[NaN]",
    "[Infinity]",
    "[tru]",
    '["a\tb"]',
    '["\\x41"]',
    '["\\u12G4"]',
    "{} {}",
    "\ufeff{}",
    "[1,]",
    "{,}",
    '{"a" 1}',
    "// comment\n{}",
    "\u00a0{}",
  ];
  for (const text of malformed) {
    it(`refuses what JSON.parse also refuses: ${JSON.stringify(text)}`, () => {
      expect(() => JSON.parse(text)).toThrow();
      const err = rejection(text);
      expect(err.code).toBe("invalid_request");
      expect(err.errors[0]!.message).toMatch(/^malformed JSON at line \d+, column \d+: /);
    });
  }

  it("stays linear on a large body", () => {
    const big = JSON.stringify({
      items: Array.from({ length: 20_000 }, (_, i) => ({ id: i, s: "x\\y\u00e9".repeat(5) })),
    });
    const started = performance.now();
    expect(parseStrictJson(big)).toStrictEqual(JSON.parse(big));
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it("caps the number of reported problems", () => {
    const text = `{${Array.from({ length: 500 }, () => '"a": 1').join(",")}}`;
    expect(rejection(text).errors.length).toBe(50);
  });
});

describe("iJsonProblems on parsed values", () => {
  it("accepts an ordinary parsed document", () => {
    expect(iJsonProblems(JSON.parse('{"a": [1, "😀", {"b": null}], "c": -9007199254740991}'))).toEqual([]);
  });

  it("finds lone surrogates in strings and keys, unsafe integers and non-finite numbers, with paths", () => {
    const value = {
      a: ["ok", "\udc00"],
      "k\ud800": 1,
      n: 2 ** 53,
      f: Number.NaN,
      g: -Infinity,
      deep: { x: 1e21 },
    };
    expect(iJsonProblems(value, "request").map((p) => p.path)).toEqual([
      "request.a.1",
      "request.k\ud800",
      "request.n",
      "request.f",
      "request.g",
      "request.deep.x",
    ]);
  });

  it("refuses values JSON cannot carry", () => {
    const problems = iJsonProblems({ b: 1n, d: new Date(0), f: () => 1, list: [undefined] });
    expect(problems.map((p) => p.path)).toEqual(["b", "d", "f", "list.0"]);
    expect(problems[0]!.message).toBe("a value of type bigint has no JSON form");
    expect(iJsonProblems(undefined)).toHaveLength(1);
  });

  it("ignores object members set to undefined, which no JSON serialiser writes", () => {
    expect(iJsonProblems({ a: undefined, b: 1 })).toEqual([]);
  });

  it("stops at the depth cap, so a cyclic or absurdly deep value cannot overflow the stack", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    expect(iJsonProblems(cyclic)[0]!.message).toMatch(/nested deeper than 64/);
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(iJsonProblems(deep)).toHaveLength(1);
  });
});

describe("decodeUtf8: bodies must be UTF-8", () => {
  const bytes = (...parts: (string | number[])[]): Uint8Array =>
    new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p as string))));
  const refusal = (b: Uint8Array): RejectionError => {
    try {
      decodeUtf8(b);
    } catch (err) {
      if (err instanceof RejectionError) return err;
      throw err;
    }
    throw new Error("expected the bytes to be refused");
  };

  it("reads UTF-8 as it is, the byte order mark kept for the parser to refuse", () => {
    expect(decodeUtf8(bytes('{"s":"é € 😀"}'))).toBe('{"s":"é € 😀"}');
    expect(decodeUtf8(bytes([0xef, 0xbb, 0xbf], "{}"))).toBe("\uFEFF{}");
    // A replacement character the agent really sent is text like any other.
    expect(decodeUtf8(bytes('"\uFFFD"'))).toBe('"\uFFFD"');
  });

  it.each([
    ["a Latin-1 byte", bytes('{"s":"M', [0xe9], 'ller"}'), 7],
    ["0xFF", bytes('"a', [0xff], '"'), 2],
    ["an overlong '/'", bytes('"', [0xc0, 0xaf], '"'), 1],
    ["a surrogate encoded in three bytes", bytes('"', [0xed, 0xa0, 0xbd], '"'), 1],
    ["a stray continuation byte", bytes("{", [0x80], "}"), 1],
    ["a sequence cut off at the end", bytes('"', [0xe2, 0x82]), 1],
  ])("refuses %s, naming the byte offset", (_what, body, at) => {
    const err = refusal(body);
    expect(err.code).toBe("invalid_request");
    expect(err.message).toContain("not UTF-8");
    expect(err.message).toContain(`byte offset ${at} `);
  });
});
