/**
 * A software WebAuthn authenticator for tests: a key pair (P-256, Ed25519 or RSA) and a
 * credential id, that makes assertions the way a real authenticator does: authenticator
 * data (SHA-256 of the RP ID, flags, a 4-byte counter), client data JSON
 * (`{type, challenge, origin, crossOrigin}`), and a signature over
 * `authenticatorData || SHA-256(clientDataJSON)` (ECDSA as DER, as WebAuthn sends it).
 *
 * For offline audit tests (records with step_up votes) and for anything that needs an
 * assertion without a browser. Every field can be bent (flags, type, origin, RP ID) to
 * build the assertions a verifier must refuse; the browser tests use Chromium's virtual
 * authenticator instead.
 */
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from "node:crypto";
import { type StepUpChallengeInput, stepUpChallenge } from "../../src/domain/step-up.js";
import type { PublicJwk, StepUpProof } from "../../src/domain/types.js";

export type AuthenticatorKeyType = "p256" | "ed25519" | "rsa";

/** User present and user verified: what a passkey with PIN or biometrics sets. */
export const FLAGS_UP_UV = 0x05;
export const FLAG_UP = 0x01;
export const FLAG_UV = 0x04;
/** Attested credential data included (registration). */
export const FLAG_AT = 0x40;

export interface AssertionOptions {
  /** base64url, as the server issued it. */
  readonly challenge: string;
  /** e.g. http://localhost:3000 */
  readonly origin: string;
  /** Default: the origin's host. */
  readonly rpId?: string;
  /** Default FLAGS_UP_UV. */
  readonly flags?: number;
  /** Default "webauthn.get". */
  readonly type?: string;
}

/** An assertion's three byte strings, base64url, as the record's step_up and a browser's response carry them. */
export interface Assertion {
  readonly authenticator_data: string;
  readonly client_data_json: string;
  readonly signature: string;
}

export class SoftwareAuthenticator {
  private counter = 0;

  private constructor(
    readonly keyType: AuthenticatorKeyType,
    private readonly privateKey: KeyObject,
    /** The credential's public key as a JWK (what a `passkey_registered` entry carries). */
    readonly publicJwk: PublicJwk,
    /** base64url */
    readonly credentialId: string,
  ) {}

  static create(keyType: AuthenticatorKeyType = "p256", credentialId?: string): SoftwareAuthenticator {
    const pair =
      keyType === "p256"
        ? generateKeyPairSync("ec", { namedCurve: "P-256" })
        : keyType === "ed25519"
          ? generateKeyPairSync("ed25519")
          : generateKeyPairSync("rsa", { modulusLength: 2048 });
    const jwk = pair.publicKey.export({ format: "jwk" }) as Record<string, string>;
    const publicJwk: PublicJwk =
      keyType === "p256"
        ? { kty: "EC", crv: "P-256", x: jwk["x"]!, y: jwk["y"]!, alg: "ES256" }
        : keyType === "ed25519"
          ? { kty: "OKP", crv: "Ed25519", x: jwk["x"]!, alg: "EdDSA" }
          : { kty: "RSA", n: jwk["n"]!, e: jwk["e"]!, alg: "RS256" };
    return new SoftwareAuthenticator(
      keyType,
      pair.privateKey,
      publicJwk,
      credentialId ?? randomBytes(16).toString("base64url"),
    );
  }

  /** One assertion (navigator.credentials.get), counter incremented as hardware would. */
  assert(o: AssertionOptions): Assertion {
    const rpId = o.rpId ?? new URL(o.origin).hostname;
    const authData = Buffer.alloc(37);
    createHash("sha256").update(rpId).digest().copy(authData, 0);
    authData[32] = o.flags ?? FLAGS_UP_UV;
    authData.writeUInt32BE(++this.counter, 33);
    const clientData = Buffer.from(
      JSON.stringify({
        type: o.type ?? "webauthn.get",
        challenge: o.challenge,
        origin: o.origin,
        crossOrigin: false,
      }),
      "utf8",
    );
    const signed = Buffer.concat([authData, createHash("sha256").update(clientData).digest()]);
    const signature =
      this.keyType === "ed25519"
        ? sign(null, signed, this.privateKey)
        : // ECDSA signatures default to DER in node:crypto, as WebAuthn wants them.
          sign("sha256", signed, this.privateKey);
    return {
      authenticator_data: authData.toString("base64url"),
      client_data_json: clientData.toString("base64url"),
      signature: signature.toString("base64url"),
    };
  }

  /**
   * The `step_up` object of a vote: an assertion over the SPEC challenge for `input`
   * (a fresh nonce unless given). `bend` changes the assertion (another origin, clear flags).
   */
  stepUp(
    input: Omit<StepUpChallengeInput, "nonce"> & { readonly nonce?: string },
    origin: string,
    bend: Partial<Omit<AssertionOptions, "challenge" | "origin">> & { readonly challenge?: string } = {},
  ): StepUpProof {
    const nonce = input.nonce ?? randomBytes(16).toString("base64url");
    const challenge = bend.challenge ?? stepUpChallenge({ ...input, nonce });
    return {
      method: "webauthn",
      credential_id: this.credentialId,
      public_key: this.publicJwk,
      ...this.assert({ ...bend, challenge, origin }),
      nonce,
    };
  }

  /**
   * A browser's answer to navigator.credentials.create, as JSON (attestation "none"), the
   * shape @simplewebauthn/server's verifyRegistrationResponse takes: registers this
   * credential without a browser. Flags UP, UV and AT unless `flags` says otherwise.
   */
  registrationResponse(o: Omit<AssertionOptions, "type">): {
    id: string;
    rawId: string;
    type: "public-key";
    clientExtensionResults: Record<string, never>;
    response: { clientDataJSON: string; attestationObject: string; transports: string[] };
  } {
    const rpId = o.rpId ?? new URL(o.origin).hostname;
    const id = Buffer.from(this.credentialId, "base64url");
    const head = Buffer.alloc(37 + 16 + 2);
    createHash("sha256").update(rpId).digest().copy(head, 0);
    head[32] = o.flags ?? FLAGS_UP_UV | FLAG_AT;
    head.writeUInt32BE(this.counter, 33);
    // 16 bytes of AAGUID (zero: no attestation), then the credential id's length.
    head.writeUInt16BE(id.length, 53);
    const authData = Buffer.concat([head, id, cbor(this.coseKey())]);
    const clientData = Buffer.from(
      JSON.stringify({
        type: "webauthn.create",
        challenge: o.challenge,
        origin: o.origin,
        crossOrigin: false,
      }),
      "utf8",
    );
    const attestation = cbor(
      new Map<CborValue, CborValue>([
        ["fmt", "none"],
        ["attStmt", new Map()],
        ["authData", authData],
      ]),
    );
    return {
      id: this.credentialId,
      rawId: this.credentialId,
      type: "public-key",
      clientExtensionResults: {},
      response: {
        clientDataJSON: clientData.toString("base64url"),
        attestationObject: attestation.toString("base64url"),
        transports: ["internal"],
      },
    };
  }

  /** The public key as a COSE_Key (RFC 9053), as authenticators put it in attested credential data. */
  coseKey(): Map<CborValue, CborValue> {
    const b = (v: string | undefined) => Buffer.from(v ?? "", "base64url");
    const k = this.publicJwk;
    if (this.keyType === "p256") {
      return new Map<CborValue, CborValue>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, b(k.x)],
        [-3, b(k.y)],
      ]);
    }
    if (this.keyType === "ed25519") {
      return new Map<CborValue, CborValue>([
        [1, 1],
        [3, -8],
        [-1, 6],
        [-2, b(k.x)],
      ]);
    }
    return new Map<CborValue, CborValue>([
      [1, 3],
      [3, -257],
      [-1, b(k.n)],
      [-2, b(k.e)],
    ]);
  }

  /**
   * A browser's answer to navigator.credentials.get, as JSON (the shape
   * @simplewebauthn/server's verifyAuthenticationResponse takes).
   */
  authenticationResponse(o: AssertionOptions & { readonly userHandle?: string }): {
    id: string;
    rawId: string;
    type: "public-key";
    clientExtensionResults: Record<string, never>;
    response: { authenticatorData: string; clientDataJSON: string; signature: string; userHandle?: string };
  } {
    const a = this.assert(o);
    return {
      id: this.credentialId,
      rawId: this.credentialId,
      type: "public-key",
      clientExtensionResults: {},
      response: {
        authenticatorData: a.authenticator_data,
        clientDataJSON: a.client_data_json,
        signature: a.signature,
        ...(o.userHandle ? { userHandle: o.userHandle } : {}),
      },
    };
  }
}

type CborValue = number | string | Buffer | Map<CborValue, CborValue>;

/** The little CBOR (RFC 8949) a registration needs: integers, byte and text strings, maps. */
function cbor(v: CborValue): Buffer {
  const head = (major: number, n: number): Buffer => {
    if (n < 24) return Buffer.from([(major << 5) | n]);
    if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
    if (n < 0x10000) {
      const out = Buffer.alloc(3);
      out[0] = (major << 5) | 25;
      out.writeUInt16BE(n, 1);
      return out;
    }
    const out = Buffer.alloc(5);
    out[0] = (major << 5) | 26;
    out.writeUInt32BE(n, 1);
    return out;
  };
  if (typeof v === "number") return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === "string") {
    const bytes = Buffer.from(v, "utf8");
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (Buffer.isBuffer(v)) return Buffer.concat([head(2, v.length), v]);
  return Buffer.concat([head(5, v.size), ...[...v].flatMap(([k, x]) => [cbor(k), cbor(x)])]);
}
