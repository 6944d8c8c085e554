import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "../../src/domain/duration.js";

describe("parseDuration", () => {
  it.each([
    ["90s", 90_000],
    ["30m", 1_800_000],
    ["4h", 14_400_000],
    ["2d", 172_800_000],
    ["1h30m", 5_400_000],
    ["1d2h3m4s", 93_784_000],
    ["0s", 0],
  ])("reads %s as %i ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "30", "30 m", " 30m", "30M", "1.5h", "-5m", "30m1h", "1h1h", "5ms", "1w"])(
    "refuses %j with an example of the expected form",
    (text) => {
      expect(() => parseDuration(text)).toThrow(`expected a duration like 90s, 30m, 4h or 2d`);
    },
  );

  it("names the offending text in the error", () => {
    expect(() => parseDuration("ten minutes")).toThrow('"ten minutes" is not a duration');
  });

  it("refuses a duration too long to count in milliseconds exactly", () => {
    expect(() => parseDuration("999999999999999d")).toThrow("too long");
  });
});

describe("formatDuration", () => {
  it.each([
    [5_400_000, "1h30m"],
    [0, "0s"],
    [90_000, "1m30s"],
    [172_800_000, "2d"],
    [93_784_000, "1d2h3m4s"],
    [1_500, "1s500ms"],
    [-60_000, "-1m"],
  ])("writes %i ms as %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it.each(["1m30s", "30m", "4h", "2d", "1h30m", "1d2h3m4s"])(
    "writes %s back as the same text it reads",
    (text) => {
      expect(formatDuration(parseDuration(text))).toBe(text);
    },
  );
});
