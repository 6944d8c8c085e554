/**
 * Offline checks of a step-up vote (SPEC "Step-up: the approver's own passkey"): that the
 * approver's own passkey, registered to them earlier in the log, signed a WebAuthn
 * assertion over a challenge that names this very action, revision, level and person.
 *
 * This is an auditor's re-check of what the server's ceremony already accepted, so it
 * reads the bytes itself with node:crypto and trusts nothing the record says about them:
 *
 * 1. the credential (id and public key) was given to the voter by an earlier
 *    `passkey_registered` entry of the same log (the verifier collects them in seq order);
 * 2. the signature, by the key's type (ES256 on P-256, EdDSA on Ed25519, RS256 on RSA),
 *    over `authenticator_data || SHA-256(client_data_json)`, as WebAuthn signs;
 * 3. the client data: `type` `webauthn.get`, `origin` the expected one, and `challenge`
 *    equal to stepUpChallenge({action_id, action_sha256, level, user, nonce}) for a level
 *    from 0 to the record's `route.escalation_level` (the record does not say at which
 *    level a vote was cast; the challenge does) and the decided revision's digest (or the
 *    agent's, `original_sha256`, when the vote was for revision 1);
 * 4. the authenticator data: the RP ID hash is SHA-256 of the expected RP ID (the origin's
 *    host), and the UP (user present) and UV (user verified) flags are set.
 *
 * The expected origin is PUBLIC_URL's (`audit verify --public-url`). Without one, the
 * verifier takes the origin each assertion names, checks everything else against it, and
 * requires every assertion of the export to name the same origin (see ExportVerifier).
 */
import { createHash, createPublicKey, type JsonWebKey, type KeyObject, verify } from "node:crypto";
import { canonicalJson } from "../domain/canonical.js";
import { stepUpChallenge } from "../domain/step-up.js";
import type { PublicJwk } from "../domain/types.js";

/** Which check of a step-up vote failed; named in the failure message. */
export type StepUpCheck =
  /** The step_up object is not the shape SPEC gives it (fields, base64url). */
  | "format"
  /** The key is not one an earlier passkey_registered entry gave this user. */
  | "credential"
  /** The assertion's signature does not verify with the key. */
  | "signature"
  /** The client data is not JSON, or its `type` is not webauthn.get. */
  | "client_data"
  | "origin"
  | "rp_id"
  /** The user-present or user-verified flag is clear. */
  | "flags"
  | "challenge";

/** A passkey as an earlier `passkey_registered` entry gave it. */
export interface RegisteredPasskey {
  readonly user: string;
  readonly team: string;
  readonly publicKey: PublicJwk;
  /** The seq of the registration. */
  readonly seq: number;
}

/** The parts of a decision record a step-up vote is checked against. */
export interface StepUpSubject {
  readonly action_id: string;
  readonly action_sha256: string;
  readonly original_sha256?: string;
  readonly escalation_level: number;
}

export type StepUpResult =
  | { readonly ok: true; readonly origin: string; readonly level: number }
  | { readonly ok: false; readonly check: StepUpCheck; readonly message: string };

const B64URL = /^[A-Za-z0-9_-]+$/;
const FLAG_UP = 0x01;
const FLAG_UV = 0x04;

/** The algorithm a WebAuthn public key signs with, from its JWK: null when unsupported. */
export function jwkAlgorithm(jwk: PublicJwk): "ES256" | "EdDSA" | "RS256" | null {
  if (jwk.kty === "EC" && jwk.crv === "P-256" && (jwk.alg === undefined || jwk.alg === "ES256"))
    return "ES256";
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519" && (jwk.alg === undefined || jwk.alg === "EdDSA"))
    return "EdDSA";
  if (jwk.kty === "RSA" && (jwk.alg === undefined || jwk.alg === "RS256")) return "RS256";
  return null;
}

/**
 * The public key of a JWK, or why it is not one: a supported type with its key material and
 * nothing private (a `d` would mean someone exported the private key into the log).
 */
export function passkeyPublicKey(jwk: unknown): { key: KeyObject } | { problem: string } {
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk))
    return { problem: "is not a JWK object" };
  const k = jwk as Record<string, unknown>;
  for (const f of ["kty", "crv", "x", "y", "n", "e", "alg"]) {
    if (k[f] !== undefined && typeof k[f] !== "string") return { problem: `has a ${f} that is not a string` };
  }
  if (k["d"] !== undefined || k["p"] !== undefined) return { problem: "holds private key material" };
  const alg = jwkAlgorithm(k as unknown as PublicJwk);
  if (alg === null) {
    return {
      problem: `is ${String(k["kty"])}${k["crv"] ? ` ${String(k["crv"])}` : ""}${k["alg"] ? ` (${String(k["alg"])})` : ""}; a passkey here is EC P-256 (ES256), OKP Ed25519 (EdDSA) or RSA (RS256)`,
    };
  }
  try {
    const key = createPublicKey({ key: k as JsonWebKey, format: "jwk" });
    if (key.type !== "public") return { problem: "is not a public key" };
    return { key };
  } catch (e) {
    return { problem: `is not a usable ${alg} key: ${(e as Error).message}` };
  }
}

/** Verifies a WebAuthn signature over `data` with a key of `alg` (ECDSA signatures are DER, as WebAuthn sends them). */
export function verifyWebAuthnSignature(
  alg: "ES256" | "EdDSA" | "RS256",
  key: KeyObject,
  data: Buffer,
  signature: Buffer,
): boolean {
  try {
    if (alg === "EdDSA") return verify(null, data, key, signature);
    if (alg === "ES256") return verify("sha256", data, { key, dsaEncoding: "der" }, signature);
    return verify("sha256", data, key, signature);
  } catch {
    // A signature that is not even DER is a signature that does not verify.
    return false;
  }
}

/**
 * Checks one vote's `step_up` against the record and the passkeys registered so far.
 * `expectedOrigin` null: take the assertion's own origin (the caller then requires every
 * assertion of the export to agree on it).
 */
export function checkStepUp(
  vote: {
    readonly user: string;
    readonly team?: unknown;
    readonly revision?: unknown;
    readonly step_up: unknown;
  },
  subject: StepUpSubject,
  passkeys: ReadonlyMap<string, RegisteredPasskey>,
  expectedOrigin: string | null,
): StepUpResult {
  const fail = (check: StepUpCheck, message: string): StepUpResult => ({ ok: false, check, message });
  const p = vote.step_up;
  if (typeof p !== "object" || p === null || Array.isArray(p))
    return fail("format", "step_up is not an object");
  const s = p as Record<string, unknown>;
  if (s["method"] !== "webauthn")
    return fail("format", `method is ${JSON.stringify(s["method"])}, expected "webauthn"`);
  const bytes: Record<string, Buffer> = {};
  for (const f of ["credential_id", "authenticator_data", "client_data_json", "signature", "nonce"]) {
    const v = s[f];
    if (typeof v !== "string" || !B64URL.test(v)) return fail("format", `${f} is not base64url text`);
    bytes[f] = Buffer.from(v, "base64url");
  }
  const credentialId = s["credential_id"] as string;

  // 1. The key was given to this user by an earlier registration.
  const registered = passkeys.get(credentialId);
  if (registered === undefined) {
    return fail(
      "credential",
      `credential ${credentialId} was not registered by any earlier passkey_registered entry of this log`,
    );
  }
  if (registered.user !== vote.user) {
    return fail(
      "credential",
      `credential ${credentialId} was registered to ${registered.user} (seq ${registered.seq}), not to ${vote.user}`,
    );
  }
  if (registered.team !== vote.team) {
    return fail(
      "credential",
      `credential ${credentialId} was registered in workspace ${registered.team} (seq ${registered.seq}), but the vote is from ${String(vote.team)}`,
    );
  }
  if (!sameJson(s["public_key"], registered.publicKey)) {
    return fail(
      "credential",
      `the public_key in the vote is not the key registered for credential ${credentialId} at seq ${registered.seq}`,
    );
  }
  const alg = jwkAlgorithm(registered.publicKey);
  const parsedKey = passkeyPublicKey(registered.publicKey);
  if (alg === null || "problem" in parsedKey) {
    return fail(
      "credential",
      `the key registered at seq ${registered.seq} ${"problem" in parsedKey ? parsedKey.problem : "is unsupported"}`,
    );
  }

  // 2. The signature over authenticator data and the client data's hash.
  const authData = bytes["authenticator_data"]!;
  const clientData = bytes["client_data_json"]!;
  const signed = Buffer.concat([authData, createHash("sha256").update(clientData).digest()]);
  if (!verifyWebAuthnSignature(alg, parsedKey.key, signed, bytes["signature"]!)) {
    return fail(
      "signature",
      `the ${alg} signature does not verify with credential ${credentialId} over authenticator_data and SHA-256(client_data_json): the assertion was altered or signed by another key`,
    );
  }

  // 3. The client data.
  let client: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(clientData.toString("utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not an object");
    client = parsed as Record<string, unknown>;
  } catch {
    return fail("client_data", "client_data_json is not a JSON object");
  }
  if (client["type"] !== "webauthn.get") {
    return fail(
      "client_data",
      `client data type is ${JSON.stringify(client["type"])}, expected "webauthn.get"`,
    );
  }
  const origin = client["origin"];
  if (typeof origin !== "string") return fail("origin", "client data has no origin");
  if (expectedOrigin !== null && origin !== expectedOrigin) {
    return fail("origin", `the assertion was made at ${JSON.stringify(origin)}, expected ${expectedOrigin}`);
  }
  let rpId: string;
  try {
    rpId = new URL(origin).hostname;
  } catch {
    return fail("origin", `the client data's origin ${JSON.stringify(origin)} is not a URL origin`);
  }

  // 4. The authenticator data: RP ID hash, then the flags.
  if (authData.length < 37) {
    return fail(
      "format",
      `authenticator_data is ${authData.length} bytes; at least 37 (RP ID hash, flags, counter)`,
    );
  }
  const rpIdHash = createHash("sha256").update(rpId).digest();
  if (!authData.subarray(0, 32).equals(rpIdHash)) {
    return fail("rp_id", `the authenticator data's RP ID hash is not SHA-256 of ${JSON.stringify(rpId)}`);
  }
  const flags = authData[32]!;
  if ((flags & FLAG_UP) === 0) return fail("flags", "the user-present (UP) flag is clear");
  if ((flags & FLAG_UV) === 0) {
    return fail(
      "flags",
      "the user-verified (UV) flag is clear: the passkey was used without PIN or biometrics",
    );
  }

  // 3, the challenge: for this action, revision, person and nonce, at one of its levels.
  const digests = [subject.action_sha256];
  if (vote.revision === 1 && subject.original_sha256 !== undefined) digests.push(subject.original_sha256);
  const challenge = client["challenge"];
  for (const action_sha256 of digests) {
    for (let level = 0; level <= subject.escalation_level; level++) {
      const expected = stepUpChallenge({
        action_id: subject.action_id,
        action_sha256,
        level,
        user: vote.user,
        nonce: s["nonce"] as string,
      });
      if (challenge === expected) return { ok: true, origin, level };
    }
  }
  return fail(
    "challenge",
    `the challenge ${JSON.stringify(challenge)} is not the step-up challenge of action ${subject.action_id} for ${vote.user} with nonce ${String(s["nonce"])} at any level from 0 to ${subject.escalation_level}: the assertion was made for another action, revision, person or level`,
  );
}

/** RFC 8785 equality; a value with no canonical form equals nothing. */
function sameJson(a: unknown, b: unknown): boolean {
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return false;
  }
}
