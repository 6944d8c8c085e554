import { describe, expect, it } from "vitest";
import { addWorkingTime, levelDeadline } from "../../src/domain/deadlines.js";
import type { BusinessHours, Route, RouteLevel } from "../../src/domain/types.js";

const H = 3_600_000;
const M = 60_000;
const at = (iso: string): Date => new Date(iso);

const OFFICE: BusinessHours = { days: ["mon", "tue", "wed", "thu", "fri"], start: "09:00", end: "18:00" };
// Hours that straddle the 02:00-03:00 DST change, every day of the week.
const NIGHTS: BusinessHours = {
  days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
  start: "00:00",
  end: "06:00",
};
const NIGHTS_WEEKDAYS: BusinessHours = { ...NIGHTS, days: ["mon", "tue", "wed", "thu", "fri"] };
const BERLIN = "Europe/Berlin";
const NEW_YORK = "America/New_York";

describe("addWorkingTime without business hours", () => {
  it("adds wall-clock time, weekends and nights included", () => {
    // 2026-03-07 is a Saturday
    expect(addWorkingTime(at("2026-03-07T23:00:00+01:00"), 90 * M, BERLIN)).toEqual(
      at("2026-03-08T00:30:00+01:00"),
    );
  });

  it("returns the start for a duration of 0", () => {
    expect(addWorkingTime(at("2026-03-07T23:00:00Z"), 0, BERLIN)).toEqual(at("2026-03-07T23:00:00Z"));
  });

  it("refuses a negative duration", () => {
    expect(() => addWorkingTime(at("2026-03-07T23:00:00Z"), -1, BERLIN)).toThrow("0 or more milliseconds");
  });
});

describe("addWorkingTime with office hours (Mon-Fri 09:00-18:00, Europe/Berlin)", () => {
  // 2026-03-03 is a Tuesday; Berlin is on CET (+01:00) all that week.
  it("counts within one day", () => {
    expect(addWorkingTime(at("2026-03-03T10:00:00+01:00"), 2 * H, BERLIN, OFFICE)).toEqual(
      at("2026-03-03T12:00:00+01:00"),
    );
  });

  it("lands on closing time when the duration uses the window up exactly", () => {
    expect(addWorkingTime(at("2026-03-03T09:00:00+01:00"), 9 * H, BERLIN, OFFICE)).toEqual(
      at("2026-03-03T18:00:00+01:00"),
    );
  });

  it("stops the clock overnight", () => {
    expect(addWorkingTime(at("2026-03-03T17:00:00+01:00"), 2 * H, BERLIN, OFFICE)).toEqual(
      at("2026-03-04T10:00:00+01:00"),
    );
  });

  it("stops the clock over the weekend", () => {
    expect(addWorkingTime(at("2026-03-06T17:00:00+01:00"), 2 * H, BERLIN, OFFICE)).toEqual(
      at("2026-03-09T10:00:00+01:00"),
    );
  });

  it("starts counting at opening when started before it", () => {
    expect(addWorkingTime(at("2026-03-03T07:00:00+01:00"), 30 * M, BERLIN, OFFICE)).toEqual(
      at("2026-03-03T09:30:00+01:00"),
    );
  });

  it("starts counting at the next opening when started after closing", () => {
    expect(addWorkingTime(at("2026-03-03T19:00:00+01:00"), 30 * M, BERLIN, OFFICE)).toEqual(
      at("2026-03-04T09:30:00+01:00"),
    );
  });

  it("starts counting on Monday when started on a Saturday", () => {
    expect(addWorkingTime(at("2026-03-07T11:00:00+01:00"), 1 * H, BERLIN, OFFICE)).toEqual(
      at("2026-03-09T10:00:00+01:00"),
    );
  });

  it("spans a whole working week", () => {
    expect(addWorkingTime(at("2026-03-02T09:00:00+01:00"), 45 * H, BERLIN, OFFICE)).toEqual(
      at("2026-03-06T18:00:00+01:00"),
    );
  });

  it("returns the start for a duration of 0, even outside hours", () => {
    expect(addWorkingTime(at("2026-03-08T03:00:00+01:00"), 0, BERLIN, OFFICE)).toEqual(
      at("2026-03-08T03:00:00+01:00"),
    );
  });

  it("reads the days and hours in the region's time zone, not UTC", () => {
    // Monday 00:30 in Berlin is still Sunday in UTC; the clock waits for Monday 09:00 Berlin.
    expect(addWorkingTime(at("2026-03-08T23:30:00Z"), 1 * H, BERLIN, OFFICE)).toEqual(
      at("2026-03-09T10:00:00+01:00"),
    );
    // Friday 19:00 in New York is Saturday in UTC, and still closed.
    expect(addWorkingTime(at("2026-03-07T00:00:00Z"), 1 * H, NEW_YORK, OFFICE)).toEqual(
      at("2026-03-09T10:00:00-04:00"),
    );
  });

  it("refuses business hours with no days, which would never run", () => {
    expect(() => addWorkingTime(at("2026-03-03T10:00:00Z"), H, BERLIN, { ...OFFICE, days: [] })).toThrow(
      "no days",
    );
  });
});

describe("addWorkingTime across Europe/Berlin DST changes (every day 00:00-06:00)", () => {
  // Spring forward: Sunday 2026-03-29, 02:00 CET becomes 03:00 CEST. The window is 5 real hours.
  it("gives the spring-forward night a 5-hour window", () => {
    const start = at("2026-03-29T00:00:00+01:00");
    expect(addWorkingTime(start, 5 * H, BERLIN, NIGHTS)).toEqual(at("2026-03-29T06:00:00+02:00"));
    expect(addWorkingTime(start, 6 * H, BERLIN, NIGHTS)).toEqual(at("2026-03-30T01:00:00+02:00"));
  });

  it("counts real time across the skipped hour", () => {
    expect(addWorkingTime(at("2026-03-29T01:30:00+01:00"), 1 * H, BERLIN, NIGHTS)).toEqual(
      at("2026-03-29T03:30:00+02:00"),
    );
  });

  it("carries over from the night before into the shortened night", () => {
    // 1 h on Saturday (05:00-06:00 CET), then 2 h from Sunday 00:00 CET: 03:00 CEST.
    expect(addWorkingTime(at("2026-03-28T05:00:00+01:00"), 3 * H, BERLIN, NIGHTS)).toEqual(
      at("2026-03-29T03:00:00+02:00"),
    );
  });

  // Fall back: Sunday 2026-10-25, 03:00 CEST becomes 02:00 CET. The window is 7 real hours.
  it("gives the fall-back night a 7-hour window", () => {
    const start = at("2026-10-25T00:00:00+02:00");
    expect(addWorkingTime(start, 7 * H, BERLIN, NIGHTS)).toEqual(at("2026-10-25T06:00:00+01:00"));
    expect(addWorkingTime(start, 8 * H, BERLIN, NIGHTS)).toEqual(at("2026-10-26T01:00:00+01:00"));
  });

  it("counts the repeated hour twice, as real time passes", () => {
    // 1 h on Saturday, then 3 h from Sunday 00:00 CEST (22:00 UTC): 01:00 UTC, the second 02:00.
    expect(addWorkingTime(at("2026-10-24T05:00:00+02:00"), 4 * H, BERLIN, NIGHTS)).toEqual(
      at("2026-10-25T01:00:00Z"),
    );
  });

  it("with 00:00-24:00 every day, equals wall-clock time across both changes", () => {
    const always: BusinessHours = { ...NIGHTS, end: "24:00" };
    for (const iso of ["2026-03-28T12:00:00+01:00", "2026-10-24T12:00:00+02:00"]) {
      const start = at(iso);
      expect(addWorkingTime(start, 48 * H, BERLIN, always)).toEqual(new Date(start.getTime() + 48 * H));
    }
  });
});

describe("addWorkingTime across America/New_York DST changes", () => {
  it("keeps office hours at 09:00 local over the spring-forward weekend (2026-03-08)", () => {
    // Friday 17:00 EST + 2 h: 1 h on Friday, 1 h on Monday from 09:00 EDT.
    expect(addWorkingTime(at("2026-03-06T17:00:00-05:00"), 2 * H, NEW_YORK, OFFICE)).toEqual(
      at("2026-03-09T10:00:00-04:00"),
    );
  });

  it("keeps office hours at 09:00 local over the fall-back weekend (2026-11-01)", () => {
    expect(addWorkingTime(at("2026-10-30T17:00:00-04:00"), 2 * H, NEW_YORK, OFFICE)).toEqual(
      at("2026-11-02T10:00:00-05:00"),
    );
  });

  it("gives the spring-forward night a 5-hour window and the fall-back night a 7-hour one", () => {
    expect(addWorkingTime(at("2026-03-08T00:00:00-05:00"), 5 * H, NEW_YORK, NIGHTS)).toEqual(
      at("2026-03-08T06:00:00-04:00"),
    );
    expect(addWorkingTime(at("2026-11-01T00:00:00-04:00"), 7 * H, NEW_YORK, NIGHTS)).toEqual(
      at("2026-11-01T06:00:00-05:00"),
    );
  });
});

describe("addWorkingTime across a day the calendar skips", () => {
  it("gives no working time to Friday 2011-12-30, which Samoa skipped when it crossed the date line", () => {
    // Thursday 29 December 14:43 (-10:00) was followed by Saturday 31 December (+14:00).
    // 20 h of Mon-Fri 00:00-06:00 are Mon, Tue and Wed in full, then 2 h on Thursday 5 January.
    expect(addWorkingTime(at("2011-12-29T14:43:00-10:00"), 20 * H, "Pacific/Apia", NIGHTS_WEEKDAYS)).toEqual(
      at("2012-01-05T02:00:00+14:00"),
    );
  });
});

describe("levelDeadline", () => {
  const level: RouteLevel = {
    approvers: { users: ["U0ALICE"], groups: [], owners: [] },
    channel: "C0APPROVALS",
    quorum: 1,
    timeout_ms: 2 * H,
  };
  const plain: Route = { name: "r", index: 0, when: {}, levels: [level], on_timeout: "deny" };
  const office: Route = { ...plain, business_hours: OFFICE };
  const now = at("2026-03-06T17:00:00+01:00"); // a Friday

  it("is the level's timeout from now", () => {
    expect(levelDeadline({ now, level, route: plain, tz: BERLIN, requestedAt: now })).toEqual(
      at("2026-03-06T19:00:00+01:00"),
    );
  });

  it("counts the level's timeout in the route's business hours", () => {
    expect(levelDeadline({ now, level, route: office, tz: BERLIN, requestedAt: now })).toEqual(
      at("2026-03-09T10:00:00+01:00"),
    );
  });

  it("never runs past the agent's timeout_s, counted in wall-clock time from the request", () => {
    // Four hours of wall clock end on Friday evening, long before Monday's working deadline.
    expect(
      levelDeadline({ now, level, route: office, tz: BERLIN, requestedAt: now, timeoutS: 4 * 3600 }),
    ).toEqual(at("2026-03-06T21:00:00+01:00"));
  });

  it("caps a later level by the time already spent since the request, over all levels together", () => {
    const requestedAt = at("2026-03-06T15:30:00+01:00");
    expect(levelDeadline({ now, level, route: plain, tz: BERLIN, requestedAt, timeoutS: 3 * 3600 })).toEqual(
      at("2026-03-06T18:30:00+01:00"),
    );
  });

  it("keeps the level's own deadline when timeout_s leaves more time", () => {
    expect(
      levelDeadline({ now, level, route: plain, tz: BERLIN, requestedAt: now, timeoutS: 86_400 }),
    ).toEqual(at("2026-03-06T19:00:00+01:00"));
  });
});
