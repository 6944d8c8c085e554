/**
 * The WebAuthn ceremonies through @simplewebauthn/server (a well-kept library, not a
 * hand-written CBOR parser), for one relying party: PUBLIC_URL's host is the RP ID and
 * its origin the only expected origin. User verification is required in both
 * ceremonies, as SPEC asks.
 *
 * Challenges are handed to the library as bytes: the step-up challenge is "the base64url
 * SHA-256" of the SPEC's JSON, so the bytes signed are the digest and the client data's
 * `challenge` is exactly stepUpChallenge(...), what `audit verify` recomputes offline.
 */
import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from "@simplewebauthn/server";
import { decodeCredentialPublicKey } from "@simplewebauthn/server/helpers";
import { PasskeyError, type VerifiedAssertion, type WebAuthn } from "../app/passkeys.js";
import type { PasskeyCredential } from "../app/ports.js";
import type { PublicJwk } from "../domain/types.js";

/** COSE algorithms accepted: ES256, EdDSA, RS256 (what `audit verify` checks offline). */
const ALGORITHMS = [-7, -8, -257];
const TIMEOUT_MS = 120_000;

const b64u = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");
const fromB64u = (s: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(s, "base64url"));

/**
 * A COSE_Key (RFC 9052/9053) as a JWK (RFC 7517): EC2 P-256/384/521, OKP Ed25519/Ed448,
 * RSA. Throws on anything else, naming what it found.
 */
export function coseToJwk(cose: Uint8Array<ArrayBuffer>): PublicJwk {
  const key = decodeCredentialPublicKey(cose) as unknown as Map<number, unknown>;
  const kty = key.get(1);
  const alg = key.get(3);
  const bytes = (label: number, what: string): string => {
    const v = key.get(label);
    if (!(v instanceof Uint8Array))
      throw new PasskeyError("ceremony_failed", `the passkey's COSE key has no ${what}`);
    return b64u(v);
  };
  const algName = (
    { [-7]: "ES256", [-35]: "ES384", [-36]: "ES512", [-8]: "EdDSA", [-257]: "RS256" } as const
  )[alg as number];
  const withAlg = algName ? { alg: algName } : {};
  if (kty === 2) {
    const crv = ({ 1: "P-256", 2: "P-384", 3: "P-521" } as const)[key.get(-1) as number];
    if (!crv) throw new PasskeyError("ceremony_failed", `unsupported EC2 curve ${String(key.get(-1))}`);
    return { kty: "EC", crv, x: bytes(-2, "x"), y: bytes(-3, "y"), ...withAlg };
  }
  if (kty === 1) {
    const crv = ({ 6: "Ed25519", 7: "Ed448" } as const)[key.get(-1) as number];
    if (!crv) throw new PasskeyError("ceremony_failed", `unsupported OKP curve ${String(key.get(-1))}`);
    return { kty: "OKP", crv, x: bytes(-2, "x"), ...withAlg };
  }
  if (kty === 3) return { kty: "RSA", n: bytes(-1, "n"), e: bytes(-2, "e"), ...withAlg };
  throw new PasskeyError("ceremony_failed", `unsupported COSE key type ${String(kty)}`);
}

export function createWebAuthn(publicUrl: string, rpName = "Countersign"): WebAuthn {
  const url = new URL(publicUrl);
  const rpID = url.hostname;
  const origin = url.origin;
  const fail = (e: unknown): never => {
    if (e instanceof PasskeyError) throw e;
    throw new PasskeyError("ceremony_failed", `the passkey could not be verified: ${(e as Error).message}`);
  };
  return {
    async creationOptions(o) {
      return generateRegistrationOptions({
        rpName,
        rpID,
        userName: o.userName,
        userID: new TextEncoder().encode(o.user),
        challenge: fromB64u(o.challenge),
        timeout: TIMEOUT_MS,
        attestationType: "none",
        excludeCredentials: o.exclude.map((c) => ({ id: c.credentialId, transports: [...c.transports] })),
        authenticatorSelection: { residentKey: "preferred", userVerification: "required" },
        supportedAlgorithmIDs: ALGORITHMS,
      });
    },
    async requestOptions(o) {
      return generateAuthenticationOptions({
        rpID,
        challenge: fromB64u(o.challenge),
        timeout: TIMEOUT_MS,
        userVerification: "required",
        allowCredentials: o.allow.map((c) => ({ id: c.credentialId, transports: [...c.transports] })),
      });
    },
    async verifyRegistration(response, challenge) {
      try {
        const r = await verifyRegistrationResponse({
          response: response as RegistrationResponseJSON,
          expectedChallenge: challenge,
          expectedOrigin: origin,
          expectedRPID: rpID,
          requireUserVerification: true,
          supportedAlgorithmIDs: ALGORITHMS,
        });
        if (!r.verified) throw new Error("the registration did not verify");
        const c = r.registrationInfo.credential;
        return {
          credentialId: c.id,
          publicKeyCose: b64u(c.publicKey),
          publicKey: coseToJwk(c.publicKey),
          counter: c.counter,
          transports: c.transports ?? [],
        };
      } catch (e) {
        return fail(e);
      }
    },
    async verifyAssertion(response, challenge, credential: PasskeyCredential): Promise<VerifiedAssertion> {
      const a = response as AuthenticationResponseJSON;
      try {
        const r = await verifyAuthenticationResponse({
          response: a,
          expectedChallenge: challenge,
          expectedOrigin: origin,
          expectedRPID: rpID,
          requireUserVerification: true,
          credential: {
            id: credential.credentialId,
            publicKey: fromB64u(credential.publicKeyCose),
            counter: credential.counter,
            transports: [...credential.transports],
          },
        });
        if (!r.verified) throw new Error("the signature did not verify");
        return {
          newCounter: r.authenticationInfo.newCounter,
          authenticatorData: a.response.authenticatorData,
          clientDataJson: a.response.clientDataJSON,
          signature: a.response.signature,
        };
      } catch (e) {
        return fail(e);
      }
    },
    assertionCredentialId(response) {
      const id = (response as { id?: unknown } | null)?.id;
      return typeof id === "string" ? id : null;
    },
  };
}
