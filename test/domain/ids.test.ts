import { describe, expect, it } from "vitest";
import { newId } from "../../src/domain/ids.js";

describe("newId", () => {
  it("takes its randomness from the source it is given, so the core draws none itself", () => {
    const zeros = (n: number): Uint8Array => new Uint8Array(n);
    expect(newId("act", 0, zeros)).toBe("act_00000000000000000000000000");
    const count = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i + 32);
    expect(newId("dec", 32 ** 3, count)).toBe("dec_00000010000123456789abcdef");
  });

  it("sorts by time first", () => {
    const ff = (n: number): Uint8Array => new Uint8Array(n).fill(0xff);
    const zeros = (n: number): Uint8Array => new Uint8Array(n);
    expect(newId("act", 1_700_000_000_000, ff) < newId("act", 1_700_000_000_001, zeros)).toBe(true);
  });

  it("refuses a source that gives too few bytes rather than a shorter id", () => {
    expect(() => newId("act", 0, () => new Uint8Array(8))).toThrow("16 are needed");
  });
});
