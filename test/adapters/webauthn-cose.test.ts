/**
 * COSE_Key -> JWK: the key a passkey registered with is written into the log as a JWK, and
 * `audit verify` imports that JWK to check every step-up signature. So the mapping must
 * give node:crypto's own JWK of the same key, for each key type WebAuthn uses.
 */
import { generateKeyPairSync } from "node:crypto";
import { isoCBOR } from "@simplewebauthn/server/helpers";
import { describe, expect, it } from "vitest";
import { coseToJwk } from "../../src/adapters/webauthn.js";

const b = (s: string) => new Uint8Array(Buffer.from(s, "base64url"));
const cose = (entries: [number, number | Uint8Array][]) =>
  new Uint8Array(isoCBOR.encode(new Map(entries) as never)) as Uint8Array<ArrayBuffer>;

describe("coseToJwk", () => {
  it("maps an EC2 P-256 key (ES256)", () => {
    const jwk = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" });
    const got = coseToJwk(
      cose([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, b(jwk.x!)],
        [-3, b(jwk.y!)],
      ]),
    );
    expect(got).toEqual({ kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, alg: "ES256" });
  });

  it("maps an OKP Ed25519 key (EdDSA)", () => {
    const jwk = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" });
    expect(
      coseToJwk(
        cose([
          [1, 1],
          [3, -8],
          [-1, 6],
          [-2, b(jwk.x!)],
        ]),
      ),
    ).toEqual({
      kty: "OKP",
      crv: "Ed25519",
      x: jwk.x,
      alg: "EdDSA",
    });
  });

  it("maps an RSA key (RS256)", () => {
    const jwk = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "jwk" });
    expect(
      coseToJwk(
        cose([
          [1, 3],
          [3, -257],
          [-1, b(jwk.n!)],
          [-2, b(jwk.e!)],
        ]),
      ),
    ).toEqual({
      kty: "RSA",
      n: jwk.n,
      e: jwk.e,
      alg: "RS256",
    });
  });

  it("refuses an unknown key type or curve, saying which", () => {
    expect(() =>
      coseToJwk(
        cose([
          [1, 4],
          [3, -7],
        ]),
      ),
    ).toThrow(/unsupported COSE key type 4/);
    expect(() =>
      coseToJwk(
        cose([
          [1, 2],
          [3, -7],
          [-1, 9],
          [-2, b("AA")],
          [-3, b("AA")],
        ]),
      ),
    ).toThrow(/unsupported EC2 curve 9/);
  });
});
