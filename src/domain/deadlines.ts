/**
 * Deadlines. A level's timeout is counted in real elapsed time; with business hours the
 * clock only runs inside the opening window of listed days, in the region's time zone.
 * Windows are laid out on the local calendar and turned into instants per day, so a
 * day with a DST change simply has a shorter or longer window (00:00-06:00 in Berlin is
 * 5 h on the spring-forward night and 7 h on the fall-back night).
 */

import { TZDate } from "@date-fns/tz";
// One module each: date-fns's index loads all of its ~860 modules, 18 MB of RSS for three functions.
import { addDays } from "date-fns/addDays";
import { getDay } from "date-fns/getDay";
import { startOfDay } from "date-fns/startOfDay";
import type { BusinessHours, Route, RouteLevel, Weekday } from "./types.js";

const DAY_INDEX: Readonly<Record<Weekday, number>> = {
  sun: 0,
  mon: 1,
  tue: 2,
  wed: 3,
  thu: 4,
  fri: 5,
  sat: 6,
};

function minutesOfDay(text: string, key: "start" | "end"): number {
  if (!/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/.test(text)) {
    throw new Error(`business_hours.${key} "${text}" is not a 24-hour time like "09:00"`);
  }
  return Number(text.slice(0, 2)) * 60 + Number(text.slice(3, 5));
}

/**
 * The instant `durationMs` of working time after `start`. Without `hours` that is plain
 * wall-clock time. With `hours`, time counts only inside [start, end) on the listed days
 * in `tz`; a start outside the hours begins counting at the next opening, and a deadline
 * that uses a window up exactly lands on its closing time. A duration of 0 returns `start`.
 *
 * A window edge that falls in a DST gap (say "02:30" on the spring-forward night) is
 * moved forward by the gap, as @date-fns/tz resolves it; an edge in the repeated hour
 * of the fall-back night is taken once, as @date-fns/tz resolves it.
 */
export function addWorkingTime(start: Date, durationMs: number, tz: string, hours?: BusinessHours): Date {
  if (!Number.isFinite(durationMs) || durationMs < 0) {
    throw new Error(`a duration of working time must be 0 or more milliseconds, got ${durationMs}`);
  }
  const startMs = start.getTime();
  if (hours === undefined) return new Date(startMs + durationMs);
  if (durationMs === 0) return new Date(startMs);

  const open = minutesOfDay(hours.start, "start");
  const close = minutesOfDay(hours.end, "end");
  if (open >= close) {
    throw new Error(`business_hours end ${hours.end} must be after start ${hours.start}`);
  }
  const days = new Set(hours.days.map((d) => DAY_INDEX[d]));
  if (days.size === 0) throw new Error("business_hours lists no days, so the clock would never run");

  // Days are stepped on the calendar of tz (a TZDate keeps its zone through date-fns), so
  // a 23- or 25-hour day is still one day; each window edge is then placed on that date.
  let remaining = durationMs;
  for (let day = startOfDay(new TZDate(startMs, tz)); ; day = addDays(day, 1)) {
    if (!days.has(getDay(day))) continue;
    const edge = (minutes: number): number =>
      new TZDate(
        day.getFullYear(),
        day.getMonth(),
        day.getDate(),
        Math.floor(minutes / 60),
        minutes % 60,
        0,
        tz,
      ).getTime();
    const from = Math.max(edge(open), startMs);
    const available = edge(close) - from;
    if (available <= 0) continue;
    if (remaining <= available) return new Date(from + remaining);
    remaining -= available;
  }
}

/**
 * The deadline of a level that starts at `now`: its timeout in working time, but never
 * later than `requestedAt + timeoutS` when the agent capped the whole wait (a wall-clock
 * cap over all levels together, so business hours do not stretch it).
 */
export function levelDeadline(opts: {
  now: Date;
  level: RouteLevel;
  route: Route;
  tz: string;
  requestedAt: Date;
  timeoutS?: number;
}): Date {
  const { now, level, route, tz, requestedAt, timeoutS } = opts;
  const deadline = addWorkingTime(now, level.timeout_ms, tz, route.business_hours).getTime();
  if (timeoutS === undefined) return new Date(deadline);
  return new Date(Math.min(deadline, requestedAt.getTime() + timeoutS * 1000));
}
