/**
 * Durations as the policy file writes them: one or more `<digits><unit>` parts, units
 * d, h, m, s, largest first, each at most once ("90s", "30m", "4h", "2d", "1h30m").
 */

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;
type Unit = keyof typeof UNIT_MS;
const UNITS: readonly Unit[] = ["d", "h", "m", "s"];

// Units in a fixed order and each at most once, so "30m1h" or "1h1h" (almost certainly
// typos) are refused rather than summed.
const DURATION = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** Parses "90s", "30m", "4h", "2d" or a combination such as "1h30m" into milliseconds. */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text);
  if (text === "" || match === null) {
    throw new Error(`"${text}" is not a duration: expected a duration like 90s, 30m, 4h or 2d`);
  }
  let ms = 0;
  UNITS.forEach((unit, i) => {
    const digits = match[i + 1];
    if (digits !== undefined) ms += Number(digits) * UNIT_MS[unit];
  });
  if (!Number.isSafeInteger(ms)) {
    throw new Error(`"${text}" is too long a duration: expected a duration like 90s, 30m, 4h or 2d`);
  }
  return ms;
}

/**
 * Writes milliseconds in the policy's notation for messages: 5400000 -> "1h30m", 0 -> "0s".
 * Whole seconds read back with parseDuration; a sub-second rest is shown as "ms" and does not.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms < 0) return `-${formatDuration(-ms)}`;
  let rest = Math.round(ms);
  let out = "";
  for (const unit of UNITS) {
    const n = Math.floor(rest / UNIT_MS[unit]);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * UNIT_MS[unit];
  }
  if (rest > 0) out += `${rest}ms`;
  return out === "" ? "0s" : out;
}
