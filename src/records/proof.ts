/**
 * Agent proofs: a JWT the agent signs with the one algorithm its
 * policy entry fixes. The agent is picked from the unverified claims, then the token is
 * verified with that agent's key and only its algorithm, so `alg: none` and HS256 keyed
 * with a public key (key confusion) cannot pass.
 */
import { createPrivateKey, type KeyObject, randomUUID, type webcrypto } from "node:crypto";
import { compactVerify, decodeJwt, decodeProtectedHeader, SignJWT } from "jose";
import { requestDigest, sha256B64url } from "../domain/canonical.js";
import { type Policy, RejectionError } from "../domain/types.js";

export type AgentKey =
  | { kind: "hmac"; secret: Uint8Array }
  | { kind: "eddsa"; publicKey: webcrypto.CryptoKey | KeyObject };

export interface ProofClaims {
  iss: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  req: string;
}

/** RFC 7518 3.2: an HS256 key must be at least as long as the hash. */
export const MIN_SECRET_BYTES = 32;
/** Clock skew tolerated between the agent and us, both ways. */
const SKEW_S = 30;
/** Longest lifetime (exp - iat) a proof may claim: a stolen proof is worth little. */
const MAX_LIFETIME_S = 300;
const DEFAULT_TTL_S = 120;
/** jti values are remembered per agent until exp; bound what an agent can make us store. */
const MAX_JTI_LENGTH = 255;
const DIGEST_PATTERN = /^[A-Za-z0-9_-]{43}$/;

const ALG_OF = { hmac: "HS256", eddsa: "EdDSA" } as const;

function badProof(message: string): RejectionError {
  return new RejectionError("bad_proof", message);
}

function iso(seconds: number): string {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? String(seconds) : d.toISOString();
}

/**
 * Verifies an agent's proof and returns its claims. `now` is the judging time (on the
 * queue, when the job was added). Does not check jti reuse: the store does, atomically.
 */
export async function verifyProof(
  token: string,
  opts: {
    policy: Policy;
    keys: ReadonlyMap<string, AgentKey>;
    now: Date;
    expectedAgent?: string;
    expectedDigest?: string;
    /** Whose proofs this call takes: agents (the default), executors, or either. */
    accept?: "agent" | "executor" | "any";
  },
): Promise<ProofClaims & { role: "agent" | "executor" }> {
  const { policy, keys, now } = opts;
  if (typeof token !== "string" || token.split(".").length !== 3) {
    throw badProof("proof is not a compact JWT (three base64url parts separated by dots)");
  }

  // Unverified, only to pick the agent and its fixed algorithm.
  let header: ReturnType<typeof decodeProtectedHeader>;
  let unverified: ReturnType<typeof decodeJwt>;
  try {
    header = decodeProtectedHeader(token);
    unverified = decodeJwt(token);
  } catch {
    throw badProof("proof is not a decodable JWT: its header or claims are not base64url JSON objects");
  }
  const iss = unverified.iss;
  if (typeof iss !== "string" || iss === "") throw badProof("proof claim iss is missing or not a string");
  if (opts.expectedAgent !== undefined && iss !== opts.expectedAgent) {
    throw badProof(`proof claim iss "${iss}" does not match agent_id "${opts.expectedAgent}"`);
  }
  const accept = opts.accept ?? "agent";
  const executors = policy.executors ?? {};
  const asAgent = accept !== "executor" && Object.hasOwn(policy.agents, iss) ? policy.agents[iss] : undefined;
  const asExecutor = accept !== "agent" && Object.hasOwn(executors, iss) ? executors[iss] : undefined;
  const agent = asAgent ?? asExecutor;
  const role = asAgent ? "agent" : "executor";
  if (agent === undefined) {
    if (accept === "executor") {
      throw new RejectionError("unknown_executor", `proof claim iss: executor "${iss}" is not in the policy`);
    }
    throw new RejectionError("unknown_agent", `proof claim iss: agent "${iss}" is not in the policy`, [
      { path: "agent_id", message: `agent "${iss}" is not in the policy` },
    ]);
  }
  const key = keys.get(iss);
  if (key === undefined || key.kind !== agent.auth.kind) {
    // A server fault (keys loaded from another policy), not the agent's: let it surface.
    throw new Error(
      `no ${agent.auth.kind} key is loaded for agent "${iss}"; reload the agent keys with the policy`,
    );
  }
  const alg = ALG_OF[key.kind];
  if (header.alg !== alg) {
    throw badProof(`proof alg "${String(header.alg)}" is refused; agent "${iss}" must sign with ${alg}`);
  }

  let payloadBytes: Uint8Array;
  try {
    const verified = await compactVerify(token, key.kind === "hmac" ? key.secret : key.publicKey, {
      algorithms: [alg],
    });
    payloadBytes = verified.payload;
  } catch {
    throw badProof(`proof signature does not verify with agent "${iss}"'s ${alg} key`);
  }
  // The verified payload is the one to judge; re-read it rather than trust the decode above.
  let claims: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(payloadBytes));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error("not an object");
    claims = parsed as Record<string, unknown>;
  } catch {
    throw badProof("proof claims are not a JSON object");
  }

  const { aud, iat, exp, jti, req } = claims;
  if (typeof aud !== "string") throw badProof("proof claim aud is missing or not a string");
  if (typeof iat !== "number" || !Number.isFinite(iat))
    throw badProof("proof claim iat is missing or not a number");
  if (typeof exp !== "number" || !Number.isFinite(exp))
    throw badProof("proof claim exp is missing or not a number");
  if (typeof jti !== "string" || jti === "" || jti.length > MAX_JTI_LENGTH) {
    throw badProof(`proof claim jti is missing, not a string, or longer than ${MAX_JTI_LENGTH} characters`);
  }
  if (typeof req !== "string" || !DIGEST_PATTERN.test(req)) {
    throw badProof("proof claim req is missing or not a base64url SHA-256 digest (43 characters)");
  }
  if (aud !== policy.issuer) {
    throw badProof(`proof claim aud "${aud}" is not this issuer "${policy.issuer}"`);
  }
  if (exp < iat) throw badProof(`proof claim exp (${iso(exp)}) is before iat (${iso(iat)})`);

  const nowS = now.getTime() / 1000;
  if (exp - iat > MAX_LIFETIME_S) {
    throw new RejectionError(
      "proof_expired",
      `proof lifetime exp - iat is ${exp - iat} s; at most ${MAX_LIFETIME_S} s is allowed`,
    );
  }
  if (iat > nowS + SKEW_S) {
    throw new RejectionError(
      "proof_expired",
      `proof claim iat ${iso(iat)} is in the future (judged at ${now.toISOString()}, ${SKEW_S} s skew allowed)`,
    );
  }
  if (exp < nowS - SKEW_S) {
    throw new RejectionError(
      "proof_expired",
      `proof claim exp ${iso(exp)} has passed (judged at ${now.toISOString()}, ${SKEW_S} s skew allowed)`,
    );
  }

  if (opts.expectedDigest !== undefined && req !== opts.expectedDigest) {
    throw badProof(
      "proof claim req does not match the request: it must be the base64url SHA-256 of the request's RFC 8785 canonical JSON",
    );
  }
  return { iss, aud, iat, exp, jti, req, role };
}

/**
 * Mints a proof, for the CLI, the SDK and tests. `req` is the digest of `request`; a call
 * without a body (a GET) signs the digest of the empty string, so `req` is always present.
 * Defaults: now = the current time, ttlSeconds = 120, jti = a random UUID.
 */
export async function mintProof(opts: {
  agentId: string;
  audience: string;
  key: AgentKey | { kind: "eddsa-private"; privateKeyPem: string } | { kind: "hmac"; secret: Uint8Array };
  request?: unknown;
  now?: Date;
  ttlSeconds?: number;
  jti?: string;
}): Promise<string> {
  const { key } = opts;
  let signingKey: Uint8Array | KeyObject;
  let alg: "HS256" | "EdDSA";
  if (key.kind === "hmac") {
    signingKey = key.secret;
    alg = "HS256";
  } else if (key.kind === "eddsa-private") {
    signingKey = createPrivateKey(key.privateKeyPem);
    if (signingKey.asymmetricKeyType !== "ed25519") {
      throw new Error(
        `mintProof: the private key is ${signingKey.asymmetricKeyType ?? "unknown"}, not Ed25519`,
      );
    }
    alg = "EdDSA";
  } else {
    throw new Error(
      "mintProof: an agent's public key cannot sign; pass { kind: 'eddsa-private', privateKeyPem }",
    );
  }
  const iat = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const req = opts.request === undefined ? sha256B64url("") : requestDigest(opts.request);
  return new SignJWT({ req })
    .setProtectedHeader({ alg, typ: "JWT" })
    .setIssuer(opts.agentId)
    .setAudience(opts.audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + (opts.ttlSeconds ?? DEFAULT_TTL_S))
    .setJti(opts.jti ?? randomUUID())
    .sign(signingKey);
}
