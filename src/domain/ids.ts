import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower-case

/**
 * Sortable, unguessable ids: `act_` + 10 chars of milliseconds + 16 random chars (80 bits).
 * Sortable so that listings by id follow arrival; random so an agent cannot guess another's.
 */
export function newId(prefix: "act" | "dec" | "rct", now: number = Date.now()): string {
  let t = now;
  let time = "";
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(16);
  let rand = "";
  for (const b of bytes) rand += ALPHABET[b % 32];
  return `${prefix}_${time}${rand}`;
}
