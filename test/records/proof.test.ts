import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadAgentKeys } from "../../src/adapters/policy/load.js";
import { requestDigest } from "../../src/domain/canonical.js";
import { type AgentAuth, type AgentPolicy, type Policy, RejectionError } from "../../src/domain/types.js";
import { type AgentKey, mintProof, verifyProof } from "../../src/records/proof.js";

const ISSUER = "https://countersign.example.com";
const SECRET = "s3cret-s3cret-s3cret-s3cret-0123"; // exactly 32 bytes
const OTHER_SECRET = "another-secret-another-secret-!!";
const NOW = new Date("2026-03-02T10:00:00Z");
const REQUEST = { request_id: "r1", agent_id: "billing-agent", action: { type: "crm.read", summary: "s" } };

let dir: string;
let edPrivatePem: string;
let edPublicPem: string;

function agent(id: string, auth: AgentAuth): AgentPolicy {
  return {
    id,
    owners: {},
    auth,
    callback_origins: [],
    allowed_actions: ["*"],
    regions: [],
    vendor_managed: false,
    max_pending: 10,
  };
}

function policy(agents: AgentPolicy[], file = join(dir, "policy.yml")): Policy {
  return {
    issuer: ISSUER,
    slack: { team_id: "T0EXAMPLE" },
    risk_classes: ["low", "high"],
    regions: { eu: { tz: "Europe/Berlin" } },
    defaults: { timeout_ms: 60_000, on_timeout: "deny", approval_valid_for_ms: 60_000, max_pending: 100 },
    actions: {},
    agents: Object.fromEntries(agents.map((a) => [a.id, a])),
    routes: [],
    sha256: "x",
    file,
  };
}

let POLICY: Policy;
let KEYS: Map<string, AgentKey>;
const ENV = { BILLING_SECRET: SECRET, OTHER_SECRET };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "countersign-proof-"));
  const pair = generateKeyPairSync("ed25519");
  edPrivatePem = pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  edPublicPem = pair.publicKey.export({ type: "spki", format: "pem" }).toString();
  writeFileSync(join(dir, "ops.pub.pem"), edPublicPem);
  writeFileSync(
    join(dir, "p256.pub.pem"),
    generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }),
  );
  writeFileSync(
    join(dir, "garbage.pem"),
    "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
  );
  POLICY = policy([
    agent("billing-agent", { kind: "hmac", secret_env: "BILLING_SECRET" }),
    agent("ops-agent", { kind: "eddsa", public_key_file: join(dir, "ops.pub.pem") }),
    agent("other-agent", { kind: "hmac", secret_env: "OTHER_SECRET" }),
  ]);
  KEYS = loadAgentKeys(POLICY, ENV);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const hmacKey = { kind: "hmac", secret: new TextEncoder().encode(SECRET) } as const;
const edKey = () => ({ kind: "eddsa-private", privateKeyPem: edPrivatePem }) as const;

function mintBilling(
  overrides: { now?: Date; ttlSeconds?: number; audience?: string; request?: unknown } = {},
) {
  return mintProof({
    agentId: "billing-agent",
    audience: ISSUER,
    key: hmacKey,
    request: REQUEST,
    now: NOW,
    ...overrides,
  });
}

async function refusal(
  token: string,
  extra: { now?: Date; expectedAgent?: string; expectedDigest?: string } = {},
) {
  try {
    await verifyProof(token, { policy: POLICY, keys: KEYS, now: NOW, ...extra });
  } catch (err) {
    if (err instanceof RejectionError) return err;
    throw err;
  }
  throw new Error("expected the proof to be refused");
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const iat = Math.floor(NOW.getTime() / 1000);
const goodClaims = {
  iss: "billing-agent",
  aud: ISSUER,
  iat,
  exp: iat + 120,
  jti: "j1",
  req: requestDigest(REQUEST),
};

describe("loadAgentKeys", () => {
  it("loads an HMAC secret as UTF-8 bytes and an Ed25519 public key", () => {
    expect(KEYS.get("billing-agent")).toEqual({ kind: "hmac", secret: new TextEncoder().encode(SECRET) });
    expect(KEYS.get("ops-agent")?.kind).toBe("eddsa");
  });

  it("refuses a secret shorter than 32 bytes, naming the agent and variable", () => {
    const p = policy([agent("billing-agent", { kind: "hmac", secret_env: "BILLING_SECRET" })]);
    expect(() => loadAgentKeys(p, { BILLING_SECRET: SECRET.slice(1) })).toThrow(
      'agent "billing-agent": the secret in BILLING_SECRET is 31 bytes; HS256 needs at least 32',
    );
    // Bytes, not characters: 16 two-byte characters are enough.
    expect(loadAgentKeys(p, { BILLING_SECRET: "é".repeat(16) }).get("billing-agent")?.kind).toBe("hmac");
  });

  it("refuses a missing or empty secret variable", () => {
    const p = policy([agent("billing-agent", { kind: "hmac", secret_env: "BILLING_SECRET" })]);
    for (const env of [{}, { BILLING_SECRET: "" }]) {
      expect(() => loadAgentKeys(p, env)).toThrow(
        'agent "billing-agent": environment variable BILLING_SECRET (its HMAC secret) is not set',
      );
    }
  });

  it("refuses a missing, unreadable or non-Ed25519 public key file, naming the file", () => {
    const load = (file: string) =>
      loadAgentKeys(policy([agent("ops-agent", { kind: "eddsa", public_key_file: join(dir, file) })]), {});
    expect(() => load("missing.pem")).toThrow(
      /agent "ops-agent": cannot read public_key_file .*missing\.pem/,
    );
    expect(() => load("garbage.pem")).toThrow(/garbage\.pem is not a readable PEM public key/);
    expect(() => load("p256.pub.pem")).toThrow(
      /p256\.pub\.pem holds a key of type ec; an Ed25519 key is required/,
    );
  });

  it("resolves a relative key path against the policy file's folder", () => {
    const p = policy(
      [agent("ops-agent", { kind: "eddsa", public_key_file: "ops.pub.pem" })],
      join(dir, "policy.yml"),
    );
    expect(loadAgentKeys(p, {}).get("ops-agent")?.kind).toBe("eddsa");
  });
});

describe("verifyProof: valid proofs", () => {
  it("accepts an HS256 proof and returns its claims", async () => {
    const token = await mintBilling();
    const claims = await verifyProof(token, {
      policy: POLICY,
      keys: KEYS,
      now: NOW,
      expectedAgent: "billing-agent",
      expectedDigest: requestDigest(REQUEST),
    });
    expect(claims).toEqual({
      iss: "billing-agent",
      aud: ISSUER,
      iat,
      exp: iat + 120,
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      req: requestDigest(REQUEST),
      role: "agent",
    });
  });

  it("accepts an EdDSA proof", async () => {
    const token = await mintProof({
      agentId: "ops-agent",
      audience: ISSUER,
      key: edKey(),
      request: REQUEST,
      now: NOW,
    });
    const claims = await verifyProof(token, {
      policy: POLICY,
      keys: KEYS,
      now: NOW,
      expectedAgent: "ops-agent",
    });
    expect(claims.iss).toBe("ops-agent");
  });

  it("judges at the given time (when the job was added), not the wall clock", async () => {
    const token = await mintBilling({ now: new Date("2020-01-01T00:00:00Z") });
    await expect(
      verifyProof(token, { policy: POLICY, keys: KEYS, now: new Date("2020-01-01T00:01:00Z") }),
    ).resolves.toMatchObject({ iss: "billing-agent" });
  });

  it("accepts the limits exactly: 300 s lifetime, 30 s skew both ways", async () => {
    const longest = await mintBilling({ ttlSeconds: 300 });
    await expect(verifyProof(longest, { policy: POLICY, keys: KEYS, now: NOW })).resolves.toBeTruthy();
    const inFuture = await mintBilling({ now: new Date(NOW.getTime() + 30_000) });
    await expect(verifyProof(inFuture, { policy: POLICY, keys: KEYS, now: NOW })).resolves.toBeTruthy();
    const justExpired = new Date(NOW.getTime() + 150_000); // exp + 30 s
    await expect(
      verifyProof(await mintBilling(), { policy: POLICY, keys: KEYS, now: justExpired }),
    ).resolves.toBeTruthy();
  });

  it("signs the empty-body digest when minted without a request", async () => {
    const token = await mintProof({ agentId: "billing-agent", audience: ISSUER, key: hmacKey, now: NOW });
    const claims = await verifyProof(token, { policy: POLICY, keys: KEYS, now: NOW });
    expect(claims.req).toBe("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
  });
});

describe("verifyProof: forgeries and mistakes", () => {
  it("refuses alg none", async () => {
    const err = await refusal(`${b64({ alg: "none", typ: "JWT" })}.${b64(goodClaims)}.`);
    expect(err.code).toBe("bad_proof");
    expect(err.message).toBe('proof alg "none" is refused; agent "billing-agent" must sign with HS256');
  });

  it("refuses key confusion: HS256 keyed with an EdDSA agent's public key PEM", async () => {
    const token = await new SignJWT({ req: requestDigest(REQUEST) })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer("ops-agent")
      .setAudience(ISSUER)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .setJti("j")
      .sign(new TextEncoder().encode(edPublicPem));
    const err = await refusal(token);
    expect(err.code).toBe("bad_proof");
    expect(err.message).toBe('proof alg "HS256" is refused; agent "ops-agent" must sign with EdDSA');
  });

  it("refuses an EdDSA proof for an HMAC agent", async () => {
    const token = await mintProof({ agentId: "billing-agent", audience: ISSUER, key: edKey(), now: NOW });
    expect((await refusal(token)).message).toMatch(
      /alg "EdDSA" is refused; agent "billing-agent" must sign with HS256/,
    );
  });

  it("refuses a proof signed with another agent's secret", async () => {
    const token = await mintProof({
      agentId: "billing-agent",
      audience: ISSUER,
      key: { kind: "hmac", secret: new TextEncoder().encode(OTHER_SECRET) },
      now: NOW,
    });
    const err = await refusal(token);
    expect(err.code).toBe("bad_proof");
    expect(err.message).toBe(`proof signature does not verify with agent "billing-agent"'s HS256 key`);
  });

  it("refuses a tampered signature and a tampered payload", async () => {
    const token = await mintBilling();
    const [h, p, s] = token.split(".") as [string, string, string];
    const flipped = `${s.slice(0, 10)}${s[10] === "A" ? "B" : "A"}${s.slice(11)}`;
    expect((await refusal(`${h}.${p}.${flipped}`)).code).toBe("bad_proof");
    const forged = b64({ ...goodClaims, exp: iat + 290 });
    expect((await refusal(`${h}.${forged}.${s}`)).message).toMatch(/signature does not verify/);
  });

  it("refuses the wrong audience, naming the claim", async () => {
    const err = await refusal(await mintBilling({ audience: "https://other.example.com" }));
    expect(err.code).toBe("bad_proof");
    expect(err.message).toBe(`proof claim aud "https://other.example.com" is not this issuer "${ISSUER}"`);
  });

  it("refuses an iss other than the request's agent_id", async () => {
    const err = await refusal(await mintBilling(), { expectedAgent: "other-agent" });
    expect(err.code).toBe("bad_proof");
    expect(err.message).toBe('proof claim iss "billing-agent" does not match agent_id "other-agent"');
  });

  it("refuses an agent the policy does not know", async () => {
    const token = await mintProof({ agentId: "ghost", audience: ISSUER, key: hmacKey, now: NOW });
    const err = await refusal(token);
    expect(err.code).toBe("unknown_agent");
    expect(err.message).toMatch(/agent "ghost" is not in the policy/);
  });

  it("refuses an expired proof beyond the 30 s skew", async () => {
    const err = await refusal(await mintBilling(), { now: new Date(NOW.getTime() + 151_000) });
    expect(err.code).toBe("proof_expired");
    expect(err.message).toMatch(
      /^proof claim exp 2026-03-02T10:02:00.000Z has passed \(judged at 2026-03-02T10:02:31/,
    );
  });

  it("refuses an iat more than 30 s in the future", async () => {
    const err = await refusal(await mintBilling({ now: new Date(NOW.getTime() + 31_000) }));
    expect(err.code).toBe("proof_expired");
    expect(err.message).toMatch(/proof claim iat .* is in the future/);
  });

  it("refuses a lifetime exp - iat over 300 s", async () => {
    const err = await refusal(await mintBilling({ ttlSeconds: 301 }));
    expect(err.code).toBe("proof_expired");
    expect(err.message).toBe("proof lifetime exp - iat is 301 s; at most 300 s is allowed");
  });

  it("refuses a req that does not match the request", async () => {
    const err = await refusal(await mintBilling(), {
      expectedDigest: requestDigest({ ...REQUEST, request_id: "r2" }),
    });
    expect(err.code).toBe("bad_proof");
    expect(err.message).toMatch(/^proof claim req does not match the request/);
  });

  it("refuses missing or ill-typed claims, naming the claim", async () => {
    const secret = hmacKey.secret;
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(secret);
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...goodClaims, iss: undefined }, /claim iss is missing/],
      [{ ...goodClaims, aud: [ISSUER] }, /claim aud is missing or not a string/],
      [{ ...goodClaims, iat: "now" }, /claim iat is missing or not a number/],
      [{ ...goodClaims, exp: undefined }, /claim exp is missing/],
      [{ ...goodClaims, jti: undefined }, /claim jti is missing/],
      [{ ...goodClaims, jti: "x".repeat(256) }, /claim jti .* longer than 255/],
      [{ ...goodClaims, req: undefined }, /claim req is missing/],
      [{ ...goodClaims, req: "not-a-digest" }, /claim req is missing or not a base64url SHA-256/],
      [{ ...goodClaims, exp: iat - 10 }, /claim exp .* is before iat/],
    ];
    for (const [claims, message] of cases) {
      const err = await refusal(await sign(claims));
      expect(err.code).toBe("bad_proof");
      expect(err.message).toMatch(message);
    }
  });

  it("refuses text that is not a JWT", async () => {
    for (const token of ["", "abc", "a.b", "a.b.c.d", "!!.??.**"]) {
      expect((await refusal(token)).code).toBe("bad_proof");
    }
  });
});

describe("mintProof", () => {
  it("cannot sign with an agent's public key", async () => {
    await expect(
      mintProof({ agentId: "ops-agent", audience: ISSUER, key: KEYS.get("ops-agent")!, now: NOW }),
    ).rejects.toThrow(/public key cannot sign/);
  });

  it("uses the given jti and a 120 s default lifetime", async () => {
    const token = await mintProof({
      agentId: "billing-agent",
      audience: ISSUER,
      key: hmacKey,
      now: NOW,
      jti: "fixed",
    });
    const claims = await verifyProof(token, { policy: POLICY, keys: KEYS, now: NOW });
    expect(claims.jti).toBe("fixed");
    expect(claims.exp - claims.iat).toBe(120);
  });
});
