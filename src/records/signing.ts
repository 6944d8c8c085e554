/**
 * Countersign's own Ed25519 keys: the JWKS, decision records, receipts and checkpoints. Signing and
 * verifying use node:crypto directly (an audit verifies every record of the log), and the
 * output is plain RFC 7515 compact JWS that any JOSE library verifies with the JWKS.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import { sha256B64url } from "../domain/canonical.js";
import type { ReceiptClaims, RecordClaims } from "../domain/types.js";

export interface PublicJwk {
  kty: "OKP";
  crv: "Ed25519";
  x: string;
  kid: string;
  alg: "EdDSA";
  use: "sig";
}

export interface SigningKey {
  kid: string;
  publicJwk: PublicJwk;
  privateKey: KeyObject;
}

export interface DecodedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
}

const B64URL = /^[A-Za-z0-9_-]*$/;
/** An Ed25519 signature is 64 bytes: 86 base64url characters unpadded. */
const ED25519_SIGNATURE_LENGTH = 86;

/** A fresh Ed25519 private key, PKCS8 PEM (`countersign keys generate`). */
export function generateSigningKeyPem(): string {
  const { privateKey } = generateKeyPairSync("ed25519");
  return privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

/** RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace. */
function thumbprint(x: string): string {
  return sha256B64url(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`);
}

/**
 * Loads our signing key from its PEM text. `source` names where it came from (the file)
 * for the error message.
 */
export function loadSigningKey(pem: string, source = "the signing key"): SigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new Error(
      `${source} is not a readable PEM private key; create one with "countersign keys generate"`,
    );
  }
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new Error(
      `${source} is a key of type ${privateKey.asymmetricKeyType ?? "unknown"}; Countersign signs with Ed25519`,
    );
  }
  const { x } = createPublicKey(privateKey).export({ format: "jwk" });
  if (typeof x !== "string") throw new Error(`${source}: could not export the public key`);
  const kid = thumbprint(x);
  return { kid, publicJwk: { kty: "OKP", crv: "Ed25519", x, kid, alg: "EdDSA", use: "sig" }, privateKey };
}

/** SPKI PEM of the public half, for auditors who prefer PEM to the JWKS. */
export function publicKeyPem(key: SigningKey): string {
  return createPublicKey(key.privateKey).export({ type: "spki", format: "pem" }).toString();
}

function b64urlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64url");
}

export type JwsTyp = "decision+jwt" | "receipt+jwt" | "checkpoint+jwt";

/**
 * The encoded protected header of each (key, typ): the same text for every record a key
 * signs, so it is encoded once rather than per record of a burst.
 */
const headers = new WeakMap<SigningKey, Map<JwsTyp, string>>();

export function encodedHeader(key: SigningKey, typ: JwsTyp): string {
  let byTyp = headers.get(key);
  if (byTyp === undefined) {
    byTyp = new Map();
    headers.set(key, byTyp);
  }
  let h = byTyp.get(typ);
  if (h === undefined) {
    h = b64urlJson({ alg: "EdDSA", kid: key.kid, typ });
    byTyp.set(typ, h);
  }
  return h;
}

/** Compact JWS, protected header `{alg: "EdDSA", kid, typ}`. */
export function signJws(key: SigningKey, typ: JwsTyp, payload: object): string {
  const input = `${encodedHeader(key, typ)}.${b64urlJson(payload)}`;
  const signature = sign(null, Buffer.from(input, "utf8"), key.privateKey).toString("base64url");
  return `${input}.${signature}`;
}

/** A decision record. */
export function signRecord(key: SigningKey, claims: RecordClaims): string {
  return signJws(key, "decision+jwt", claims);
}

/** The key behind each signer made by recordSigner (see signingKeyOf). */
const signerKeys = new WeakMap<object, SigningKey>();

/**
 * The store's record signer for `key`. A store that can sign on a second thread (SQLite,
 * src/records/chain-signer.ts) finds the key with signingKeyOf, unless `secondThread` is
 * false (SIGN_WORKER=off); any other store, or that one then, calls it.
 */
export function recordSigner(
  key: SigningKey,
  opts: { readonly secondThread?: boolean } = {},
): (claims: RecordClaims) => { jws: string; kid: string } {
  const signer = (claims: RecordClaims) => ({ jws: signRecord(key, claims), kid: key.kid });
  if (opts.secondThread !== false) signerKeys.set(signer, key);
  return signer;
}

/** The key of a signer made by recordSigner; undefined for any other function. */
export function signingKeyOf(signer: object): SigningKey | undefined {
  return signerKeys.get(signer);
}

/**
 * A receipt (redeemed, outcome, revoked): an entry of the same log as the records, so it
 * carries its own seq and prev and is signed the same way, with its own `typ` so that a
 * receipt can never pass for a decision record or the other way round.
 */
export function signReceipt(key: SigningKey, claims: ReceiptClaims): string {
  return signJws(key, "receipt+jwt", claims);
}

function decodeSegment(segment: string, what: "header" | "payload"): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
  } catch {
    throw new Error(`JWS ${what} is not base64url-encoded JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`JWS ${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function splitJws(jws: string): [string, string, string] {
  const parts = typeof jws === "string" ? jws.split(".") : [];
  // Node's base64url decoder skips characters outside the alphabet; refusing them keeps
  // one record from having two spellings that both verify.
  if (parts.length !== 3 || !parts.every((p) => p !== "" && B64URL.test(p))) {
    throw new Error("not a compact JWS: expected three non-empty base64url parts separated by dots");
  }
  return parts as [string, string, string];
}

/** Header and payload of a compact JWS, without verifying anything. */
export function decodeJws(jws: string): DecodedJws {
  const [h, p] = splitJws(jws);
  return { header: decodeSegment(h, "header"), payload: decodeSegment(p, "payload") };
}

// Imported public keys, keyed by their `x` (the key itself, so a JWKS entry carrying a
// wrong kid cannot poison another key's slot). Audit verify checks a million records
// against a handful of keys; re-importing each time would dominate.
const keyCache = new Map<string, KeyObject>();
const KEY_CACHE_LIMIT = 1000;

function publicKeyFor(jwk: PublicJwk): KeyObject {
  let key = keyCache.get(jwk.x);
  if (key === undefined) {
    key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" });
    if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.clear();
    keyCache.set(jwk.x, key);
  }
  return key;
}

/**
 * Verifies a compact JWS of ours against a JWKS, synchronously: the key by `kid`, `alg`
 * EdDSA, the expected `typ`, then the signature. Throws an Error saying which failed.
 */
export function verifyJws(jws: string, jwks: readonly PublicJwk[], typ: string): DecodedJws {
  const [h, p, s] = splitJws(jws);
  const header = decodeSegment(h, "header");
  const kid = header["kid"];
  const jwk = typeof kid === "string" ? jwks.find((k) => k.kid === kid) : undefined;
  if (jwk === undefined) throw new Error(`unknown key ${String(kid)}`);
  if (header["alg"] !== "EdDSA") throw new Error(`JWS alg ${String(header["alg"])} is not EdDSA`);
  if (header["typ"] !== typ) throw new Error(`JWS typ ${String(header["typ"])} is not ${typ}`);
  if (header["crit"] !== undefined)
    throw new Error("JWS has a crit header, which Countersign does not understand");
  const signature = Buffer.from(s, "base64url");
  // The last character carries two unused bits; only the canonical spelling is accepted.
  if (s.length !== ED25519_SIGNATURE_LENGTH || signature.toString("base64url") !== s) {
    throw new Error("bad signature");
  }
  const ok = verify(null, Buffer.from(`${h}.${p}`, "utf8"), publicKeyFor(jwk), signature);
  if (!ok) throw new Error("bad signature");
  return { header, payload: decodeSegment(p, "payload") };
}

/** base64url SHA-256 of the JWS text: a record's `prev`, `record_sha256`, a checkpoint's `head`. */
export function jwsDigest(jws: string): string {
  return sha256B64url(jws);
}
