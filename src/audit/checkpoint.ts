/**
 * Checkpoints: a signed statement "at `iat` the log ended at
 * record `seq`, whose JWS text hashes to `head`". An auditor who keeps one can later
 * prove that nothing up to `seq` was dropped or rewritten, even by whoever holds the key
 * then: a rewritten log cannot reproduce an older head.
 *
 * An empty log has a checkpoint too, `{seq: 0, head: null}`: it pins the moment before
 * the first record, so a log that later appears with records dated earlier is suspect.
 */
import { type PublicJwk, type SigningKey, signJws, verifyJws } from "../records/signing.js";

export interface LogHead {
  readonly seq: number;
  /** base64url SHA-256 of record `seq`'s JWS text; null for an empty log. */
  readonly head: string | null;
}

export interface Checkpoint extends LogHead {
  readonly ver: 1;
  readonly iss: string;
  /** Unix seconds. */
  readonly iat: number;
}

export class CheckpointError extends Error {
  override readonly name = "CheckpointError" as const;
}

export function signCheckpoint(key: SigningKey, issuer: string, head: LogHead, now: Date): string {
  const payload: Checkpoint = {
    ver: 1,
    iss: issuer,
    seq: head.seq,
    head: head.head,
    iat: Math.floor(now.getTime() / 1000),
  };
  return signJws(key, "checkpoint+jwt", payload);
}

const DIGEST = /^[A-Za-z0-9_-]{43}$/;

/** Checks a checkpoint's signature (`typ: checkpoint+jwt`) and shape; throws CheckpointError saying why not. */
export function verifyCheckpoint(jws: string, jwks: readonly PublicJwk[]): Checkpoint {
  let payload: Record<string, unknown>;
  try {
    payload = verifyJws(jws.trim(), jwks, "checkpoint+jwt").payload;
  } catch (e) {
    throw new CheckpointError(`the checkpoint does not verify: ${(e as Error).message}`);
  }
  const { ver, iss, seq, head, iat } = payload;
  if (ver !== 1)
    throw new CheckpointError(`the checkpoint has ver ${String(ver)}; this verifier knows ver 1`);
  if (typeof iss !== "string") throw new CheckpointError("the checkpoint has no iss");
  if (typeof iat !== "number" || !Number.isSafeInteger(iat))
    throw new CheckpointError("the checkpoint has no iat");
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
    throw new CheckpointError("the checkpoint's seq is not a whole number of 0 or more");
  }
  if (seq === 0 ? head !== null : typeof head !== "string" || !DIGEST.test(head)) {
    throw new CheckpointError(
      seq === 0
        ? "the checkpoint of an empty log (seq 0) must have head null"
        : "the checkpoint's head is not a base64url SHA-256",
    );
  }
  return { ver: 1, iss, seq, head: head as string | null, iat };
}
