import { describe, expect, it } from "vitest";
import {
  agentText,
  escapeMrkdwn,
  hasMixedScripts,
  oneLine,
  plainAgentText,
  showInvisible,
  truncateCodePoints,
} from "../../src/domain/text.js";

/** A small deterministic PRNG so "random" cases are the same on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PALETTE = [
  "a",
  "Z",
  " ",
  "\n",
  "\t",
  "&",
  "<",
  ">",
  "*",
  "_",
  "`",
  "é",
  "а", // Cyrillic a
  "😀",
  "👨‍👩‍👧",
  "\u202E",
  "\u200B",
  "\u0000",
  "\u001B",
  "\u0085",
  "\uFEFF",
  "\u{E0041}",
  "\uFE0F",
  "&amp;",
  "[U+202E]",
];

function randomText(next: () => number, maxLen: number): string {
  const n = Math.floor(next() * maxLen);
  let s = "";
  for (let i = 0; i < n; i++) s += PALETTE[Math.floor(next() * PALETTE.length)];
  return s;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe("showInvisible", () => {
  it("shows a right-to-left override as a visible marker instead of letting it reverse the text", () => {
    expect(showInvisible("invoice\u202Efdp.exe")).toBe("invoice[U+202E]fdp.exe");
  });

  it.each([
    ["Arabic letter mark", 0x061c],
    ["left-to-right mark", 0x200e],
    ["right-to-left mark", 0x200f],
    ["LRE", 0x202a],
    ["RLE", 0x202b],
    ["PDF", 0x202c],
    ["LRO", 0x202d],
    ["RLO", 0x202e],
    ["LRI", 0x2066],
    ["RLI", 0x2067],
    ["FSI", 0x2068],
    ["PDI", 0x2069],
    ["zero-width space", 0x200b],
    ["zero-width non-joiner", 0x200c],
    ["zero-width joiner", 0x200d],
    ["word joiner", 0x2060],
    ["invisible times", 0x2062],
    ["invisible plus", 0x2064],
    ["byte order mark", 0xfeff],
    ["Mongolian vowel separator", 0x180e],
    ["soft hyphen", 0x00ad],
    ["tag begin", 0xe0001],
    ["tag latin A", 0xe0041],
    ["cancel tag", 0xe007f],
    ["NUL", 0x0000],
    ["BEL", 0x0007],
    ["carriage return", 0x000d],
    ["escape", 0x001b],
    ["DEL", 0x007f],
    ["C1 next line", 0x0085],
    ["C1 APC", 0x009f],
    ["line separator", 0x2028],
    ["paragraph separator", 0x2029],
    ["Hangul filler", 0x3164],
  ])("never passes %s through", (_name, cp) => {
    const hex = cp.toString(16).toUpperCase().padStart(4, "0");
    const out = showInvisible(`a${String.fromCodePoint(cp)}b`);
    expect(out).toBe(`a[U+${hex}]b`);
  });

  it("keeps newlines, tabs, variation selectors, accents, emoji and ordinary scripts", () => {
    const s = "line 1\n\tline 2 ❤️ café Привет Ελλάδα 😀 \u{E0100}";
    expect(showInvisible(s)).toBe(s);
  });

  it("shows a lone surrogate but keeps a surrogate pair whole", () => {
    expect(showInvisible("x\uD800y")).toBe("x[U+D800]y");
    expect(showInvisible("x\uDC00")).toBe("x[U+DC00]");
    expect(showInvisible("😀")).toBe("😀");
  });

  it("is idempotent, and leaves nothing invisible behind on random input", () => {
    const next = rng(1);
    for (let i = 0; i < 300; i++) {
      const s = randomText(next, 40);
      const once = showInvisible(s);
      expect(showInvisible(once)).toBe(once);
      expect(once).not.toMatch(
        /[\u202A-\u202E\u2066-\u2069\u200B-\u200F\uFEFF\u0000-\u0008\u000B-\u001F\u007F-\u009F]/,
      );
      expect(once).not.toMatch(/[\u{E0000}-\u{E007F}]/u);
    }
  });
});

describe("escapeMrkdwn", () => {
  it("turns <!channel> into text that cannot mention anyone", () => {
    expect(escapeMrkdwn("<!channel> now")).toBe("&lt;!channel&gt; now");
  });

  it("turns a labelled link into text that cannot form a link", () => {
    expect(escapeMrkdwn("<https://evil.example|click here>")).toBe("&lt;https://evil.example|click here&gt;");
  });

  it("escapes & first, so an agent's own entity stays literal instead of decoding to markup", () => {
    expect(escapeMrkdwn("a & b")).toBe("a &amp; b");
    expect(escapeMrkdwn("&lt;!here&gt;")).toBe("&amp;lt;!here&amp;gt;");
  });

  it("leaves emphasis characters as the agent wrote them", () => {
    expect(escapeMrkdwn("*bold* _it_ ~s~ `c`")).toBe("*bold* _it_ ~s~ `c`");
  });
});

describe("agentText", () => {
  it("shows invisible characters and escapes markup in one step", () => {
    expect(agentText("<@U123>\u202E & \u200B")).toBe("&lt;@U123&gt;[U+202E] &amp; [U+200B]");
  });

  it("never lets a raw <, > or a bare & through, on random input", () => {
    const next = rng(2);
    for (let i = 0; i < 300; i++) {
      const out = agentText(randomText(next, 60));
      expect(out).not.toMatch(/[<>]/);
      expect(out).not.toMatch(/&(?!amp;|lt;|gt;)/);
    }
  });
});

describe("plainAgentText", () => {
  it("keeps plain_text on one line and shows hidden characters, without escaping (plain_text has no markup)", () => {
    expect(plainAgentText("Refund\n<!channel> &\u202E")).toBe("Refund↵<!channel> &[U+202E]");
  });

  it("marks every kind of line break", () => {
    expect(oneLine("a\r\nb\rc\nd\u2028e")).toBe("a↵b↵c↵d↵e");
  });
});

describe("hasMixedScripts", () => {
  it("flags a Latin word with a Cyrillic look-alike letter", () => {
    expect(hasMixedScripts("pay to pаypal now")).toBe(true); // Cyrillic а
  });

  it("flags a Latin word with a Greek look-alike letter", () => {
    expect(hasMixedScripts("Gοogle")).toBe(true); // Greek omicron
  });

  it("flags a mixed word even when punctuation splits the rest of the text", () => {
    expect(hasMixedScripts("acct: pay-раl.com")).toBe(true); // Cyrillic р, а
  });

  it("does not flag honest text in one script per word", () => {
    expect(hasMixedScripts("paypal")).toBe(false);
    expect(hasMixedScripts("Привет world, Ελλάδα café")).toBe(false);
    expect(hasMixedScripts("")).toBe(false);
  });
});

describe("truncateCodePoints", () => {
  it("leaves text that fits untouched", () => {
    expect(truncateCodePoints("hello", 5)).toEqual({ text: "hello", cut: 0 });
  });

  it("stays within max including the note, and says how much was cut", () => {
    const r = truncateCodePoints("a".repeat(5000), 100);
    expect(r.text.length).toBeLessThanOrEqual(100);
    expect(r.text).toMatch(/^a+… \(4,9\d\d more characters cut\)$/);
    const kept = r.text.indexOf("…");
    expect(kept + r.cut).toBe(5000);
  });

  it("never splits a surrogate pair, at any max", () => {
    const s = "😀".repeat(60);
    for (let max = 0; max <= 130; max++) {
      const r = truncateCodePoints(s, max);
      expect(r.text.length).toBeLessThanOrEqual(max);
      expect(r.text).not.toMatch(LONE_SURROGATE);
    }
  });

  it("never splits an escape entity or a [U+XXXX] marker, at any max", () => {
    const s = agentText("&<>\u202E".repeat(40));
    for (let max = 0; max <= 200; max++) {
      const { text } = truncateCodePoints(s, max);
      expect(text.length).toBeLessThanOrEqual(max);
      const body = text.replace(/… \([\d,]+ more characters? cut\)$/, "");
      expect(body).toMatch(/^(?:&(?:amp|lt|gt);|\[U\+202E\])*$/);
    }
  });

  it("counts an entity as one cut character, as a reader sees it", () => {
    const r = truncateCodePoints("&amp;".repeat(100), 60);
    const kept = (r.text.match(/&amp;/g) ?? []).length;
    expect(kept + r.cut).toBe(100);
  });

  it("uses a custom note and keeps it within max", () => {
    const r = truncateCodePoints("x".repeat(1000), 50, (n) => ` [+${n}]`);
    expect(r.text.length).toBeLessThanOrEqual(50);
    expect(r.text).toBe(`${"x".repeat(50 - ` [+${r.cut}]`.length)} [+${r.cut}]`);
  });

  it("cuts without a note when even the note does not fit", () => {
    const r = truncateCodePoints("abcdefghij", 4);
    expect(r).toEqual({ text: "abcd", cut: 6 });
  });

  it("holds its promises on random text and random limits", () => {
    const next = rng(3);
    for (let i = 0; i < 500; i++) {
      const s = agentText(randomText(next, 200));
      const max = Math.floor(next() * 120);
      const r = truncateCodePoints(s, max);
      expect(r.text.length).toBeLessThanOrEqual(Math.max(max, 0));
      expect(r.text).not.toMatch(LONE_SURROGATE);
      if (r.cut === 0) expect(r.text).toBe(s);
    }
  });
});
