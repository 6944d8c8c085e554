/**
 * Deterministic crash points for the chaos tests: with CRASH_POINT=<name> set, the
 * process kills itself with SIGKILL (no clean-up, exactly like `kill -9`) the first time
 * it reaches that point. Unset in production, where this is a no-op comparison.
 */
export type CrashPoint = "after_intake" | "after_card_post" | "after_record" | "after_webhook_send";

let armed: CrashPoint | null = null;

export function armCrashPoint(point: CrashPoint | null): void {
  armed = point;
}

export function crashPoint(point: CrashPoint): void {
  if (armed === point) process.kill(process.pid, "SIGKILL");
}
