const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"; // Crockford base32, lower-case

/**
 * `n` unpredictable bytes. Given to the core like the clock, so that domain code draws no
 * randomness of its own and a test can pin it; src/main.ts wires node:crypto's randomBytes.
 */
export type RandomBytes = (n: number) => Uint8Array;

/**
 * Sortable, unguessable ids: `act_` + 10 chars of milliseconds + 16 random chars (80 bits).
 * Sortable so that listings by id follow arrival; random so an agent cannot guess another's.
 */
export function newId(prefix: "act" | "dec" | "rct", now: number, random: RandomBytes): string {
  let t = now;
  let time = "";
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = random(16);
  if (bytes.length < 16) throw new Error(`the random source gave ${bytes.length} bytes; 16 are needed`);
  let rand = "";
  // 256 is a multiple of 32, so each byte's remainder is uniform over the alphabet.
  for (let i = 0; i < 16; i++) rand += ALPHABET[bytes[i]! % 32];
  return `${prefix}_${time}${rand}`;
}
