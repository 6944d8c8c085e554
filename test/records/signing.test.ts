import { generateKeyPairSync } from "node:crypto";
import { calculateJwkThumbprint, compactVerify, createLocalJWKSet, importSPKI, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { sha256B64url } from "../../src/domain/canonical.js";
import type { RecordClaims } from "../../src/domain/types.js";
import {
  decodeJws,
  generateSigningKeyPem,
  jwsDigest,
  loadSigningKey,
  publicKeyPem,
  signJws,
  signRecord,
  verifyJws,
} from "../../src/records/signing.js";

const KEY = loadSigningKey(generateSigningKeyPem());
const OTHER = loadSigningKey(generateSigningKeyPem());

const CLAIMS: RecordClaims = {
  ver: 1,
  iss: "https://countersign.example.com",
  sub: "billing-agent",
  jti: "dec_01",
  iat: 1_772_445_600,
  action_id: "act_01",
  request_id: "r1",
  action_type: "payments.refund",
  summary: "Refund 120 € to customer 8812 😀",
  action_sha256: sha256B64url("request"),
  risk_class: "high",
  region: "eu",
  purpose: "Duplicate charge",
  systems: ["stripe"],
  on_behalf_of: { slack_user: "U0ANA" },
  verdict: "approved",
  reason_code: "approvers",
  reason_text: "",
  route: { name: "eu-high-payments", quorum: 2, escalation_level: 0 },
  eligible: ["U0ALICE", "U0BOB"],
  votes: [
    { user: "U0ALICE", team: "T0EXAMPLE", vote: "approve", at: "2026-03-02T10:00:00Z" },
    { user: "U0BOB", team: "T0EXAMPLE", vote: "approve", at: "2026-03-02T10:01:00Z", comment: "ok" },
  ],
  requested_at: "2026-03-02T09:59:00Z",
  decided_at: "2026-03-02T10:01:00Z",
  valid_until: "2026-03-02T10:16:00Z",
  policy_sha256: "policy",
  seq: 1,
  prev: null,
};

describe("signing keys", () => {
  it("kid is the RFC 7638 thumbprint, as jose computes it", async () => {
    expect(KEY.kid).toBe(await calculateJwkThumbprint(KEY.publicJwk, "sha256"));
    expect(KEY.publicJwk).toEqual({
      kty: "OKP",
      crv: "Ed25519",
      x: expect.any(String),
      kid: KEY.kid,
      alg: "EdDSA",
      use: "sig",
    });
    expect(KEY.kid).not.toBe(OTHER.kid);
  });

  it("loading the same PEM twice gives the same kid", () => {
    const pem = generateSigningKeyPem();
    expect(loadSigningKey(pem).kid).toBe(loadSigningKey(pem).kid);
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  it("publishes an SPKI PEM that verifies the key's signatures", async () => {
    const pem = publicKeyPem(KEY);
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const { payload } = await jwtVerify(signRecord(KEY, CLAIMS), await importSPKI(pem, "EdDSA"));
    expect(payload["jti"]).toBe("dec_01");
  });

  it("refuses a PEM that is not a readable private key, or not Ed25519, naming the source", () => {
    expect(() => loadSigningKey("nonsense", "/data/signing-key.pem")).toThrow(
      /^\/data\/signing-key\.pem is not a readable PEM private key/,
    );
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 })
      .privateKey.export({ type: "pkcs8", format: "pem" })
      .toString();
    expect(() => loadSigningKey(rsa, "/data/signing-key.pem")).toThrow(
      "/data/signing-key.pem is a key of type rsa; Countersign signs with Ed25519",
    );
  });
});

describe("records and JWS", () => {
  it("a record verifies with jose compactVerify against the JWKS, with the header the record format fixes", async () => {
    const jws = signRecord(KEY, CLAIMS);
    const jwks = createLocalJWKSet({ keys: [OTHER.publicJwk, KEY.publicJwk] });
    const { payload, protectedHeader } = await compactVerify(jws, jwks);
    expect(protectedHeader).toEqual({ alg: "EdDSA", kid: KEY.kid, typ: "decision+jwt" });
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual(CLAIMS);
  });

  it("a record verifies with jose jwtVerify, checking typ and issuer", async () => {
    const jwks = createLocalJWKSet({ keys: [KEY.publicJwk] });
    const { payload } = await jwtVerify(signRecord(KEY, CLAIMS), jwks, {
      typ: "decision+jwt",
      issuer: CLAIMS.iss,
      subject: "billing-agent",
    });
    expect(payload["seq"]).toBe(1);
  });

  it("verifyJws returns the header and payload of a good record", () => {
    const jws = signRecord(KEY, CLAIMS);
    const { header, payload } = verifyJws(jws, [OTHER.publicJwk, KEY.publicJwk], "decision+jwt");
    expect(header).toEqual({ alg: "EdDSA", kid: KEY.kid, typ: "decision+jwt" });
    expect(payload).toEqual(CLAIMS);
    // The cached key is reused on the next call.
    expect(verifyJws(jws, [KEY.publicJwk], "decision+jwt").payload).toEqual(CLAIMS);
  });

  it("a checkpoint carries its own typ, and is refused where a record is expected", () => {
    const cp = signJws(KEY, "checkpoint+jwt", { ver: 1, iss: CLAIMS.iss, seq: 1, head: "h", iat: 1 });
    expect(verifyJws(cp, [KEY.publicJwk], "checkpoint+jwt").payload).toEqual({
      ver: 1,
      iss: CLAIMS.iss,
      seq: 1,
      head: "h",
      iat: 1,
    });
    expect(() => verifyJws(cp, [KEY.publicJwk], "decision+jwt")).toThrow(
      "JWS typ checkpoint+jwt is not decision+jwt",
    );
  });

  it("refuses a tampered payload", () => {
    const [h, , s] = signRecord(KEY, CLAIMS).split(".");
    const forged = Buffer.from(JSON.stringify({ ...CLAIMS, verdict: "denied" })).toString("base64url");
    expect(() => verifyJws(`${h}.${forged}.${s}`, [KEY.publicJwk], "decision+jwt")).toThrow("bad signature");
  });

  it("refuses a signature by another key that claims this key's kid", () => {
    const [h, p] = signRecord(KEY, CLAIMS).split(".");
    const [, , otherSig] = signJws(OTHER, "decision+jwt", CLAIMS).split(".");
    expect(() => verifyJws(`${h}.${p}.${otherSig}`, [KEY.publicJwk], "decision+jwt")).toThrow(
      "bad signature",
    );
  });

  it("refuses a second spelling of the same signature (unused trailing bits)", () => {
    const jws = signRecord(KEY, CLAIMS);
    const last = jws.at(-1)!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // 86 characters carry 516 bits for 512: the last character's low 4 bits are unused.
    const twin = alphabet[alphabet.indexOf(last) ^ 1]!;
    const respelt = jws.slice(0, -1) + twin;
    expect(Buffer.from(respelt.split(".")[2]!, "base64url")).toEqual(
      Buffer.from(jws.split(".")[2]!, "base64url"),
    );
    expect(() => verifyJws(respelt, [KEY.publicJwk], "decision+jwt")).toThrow("bad signature");
  });

  it("refuses an unknown kid", () => {
    expect(() => verifyJws(signRecord(OTHER, CLAIMS), [KEY.publicJwk], "decision+jwt")).toThrow(
      `unknown key ${OTHER.kid}`,
    );
  });

  it("refuses an alg other than EdDSA even when the signature would not be checked", () => {
    const [, p, s] = signRecord(KEY, CLAIMS).split(".");
    const h = Buffer.from(JSON.stringify({ alg: "none", kid: KEY.kid, typ: "decision+jwt" })).toString(
      "base64url",
    );
    expect(() => verifyJws(`${h}.${p}.${s}`, [KEY.publicJwk], "decision+jwt")).toThrow(
      "JWS alg none is not EdDSA",
    );
  });

  it("refuses text that is not a compact JWS", () => {
    for (const text of ["", "a.b", "a.b.c.d", "a..c", "a+b.c.d"]) {
      expect(() => verifyJws(text, [KEY.publicJwk], "decision+jwt")).toThrow(/not a compact JWS/);
      expect(() => decodeJws(text)).toThrow(/not a compact JWS/);
    }
    expect(() => decodeJws("bm90IGpzb24.e30.c2ln")).toThrow("JWS header is not base64url-encoded JSON");
    expect(() => decodeJws("e30.WzFd.c2ln")).toThrow("JWS payload is not a JSON object");
  });

  it("decodeJws reads without verifying", () => {
    const [h, , s] = signRecord(KEY, CLAIMS).split(".");
    const forged = Buffer.from(JSON.stringify({ seq: 99 })).toString("base64url");
    expect(decodeJws(`${h}.${forged}.${s}`).payload).toEqual({ seq: 99 });
  });

  it("jwsDigest is the base64url SHA-256 of the JWS text", () => {
    const jws = signRecord(KEY, CLAIMS);
    expect(jwsDigest(jws)).toBe(sha256B64url(jws));
    expect(jwsDigest(jws)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(jwsDigest("abc")).toBe("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
  });
});
