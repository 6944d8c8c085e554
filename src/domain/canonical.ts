/**
 * The digest that ties an agent's proof to its request and a decision record to the
 * action it covers. Agents compute it in their own language, so it must be a standard:
 * SHA-256 over the RFC 8785 (JCS) canonical JSON, encoded base64url without padding.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";

/** RFC 8785 canonical JSON. Throws on values JSON cannot carry (NaN, lone surrogates, cycles, undefined). */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) {
    throw new Error(`cannot canonicalize a ${typeof value}: only JSON values have a canonical form`);
  }
  return text;
}

/** SHA-256, base64url without padding; strings are hashed as their UTF-8 bytes. */
export function sha256B64url(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("base64url");
}

/** The proof's `req` claim and the record's `action_sha256`. */
export function requestDigest(request: unknown): string {
  return sha256B64url(canonicalJson(request));
}
