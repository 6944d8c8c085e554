/**
 * The executor's SDK: redeemGrant and reportOutcome. The offline checks and the proofs
 * are tested against a real local HTTP server that stands in for Countersign's two
 * endpoints as docs/agents.md describes them, and checks each proof with the real
 * verifier. The round trip against the real server (the harness's app) is at the end.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { requestDigest } from "../../src/domain/canonical.js";
import { diffRequest } from "../../src/domain/edits.js";
import type { ActionRequest, Policy, RecordClaims, Verdict } from "../../src/domain/types.js";
import { type AgentKey, type ProofClaims, verifyProof } from "../../src/records/proof.js";
import {
  generateSigningKeyPem,
  jwsDigest,
  loadSigningKey,
  signReceipt,
  signRecord,
} from "../../src/records/signing.js";
import {
  AlreadyRedeemed,
  type ExecutorIdentity,
  GrantRefused,
  InvalidReceipt,
  InvalidRecord,
  type JWKS,
  redeemGrant,
  reportOutcome,
  TransportError,
} from "../../src/sdk/index.js";
import { approved, EXECUTOR_SECRET, grantsHarness, post } from "../support/grants.js";
import type { Harness } from "../support/harness.js";

const ISSUER = "https://countersign.test";
const EXECUTOR = "payments-api";
const SECRET = "payments-api-secret-that-is-at-least-32-bytes!";
const KEY = loadSigningKey(generateSigningKeyPem());
const FORGER = loadSigningKey(generateSigningKeyPem());
const JWKS_: JWKS = { keys: [{ ...KEY.publicJwk }] };
const IDENTITY: ExecutorIdentity = { executorId: EXECUTOR, issuer: ISSUER, key: { hmacSecret: SECRET } };

/** verifyProof knows agents; an executor is authenticated the same way, so the stand-in lists it as one. */
const POLICY = {
  issuer: ISSUER,
  agents: { [EXECUTOR]: { id: EXECUTOR, auth: { kind: "hmac", secret_env: "X" } } },
} as unknown as Policy;
const PROOF_KEYS = new Map<string, AgentKey>([
  [EXECUTOR, { kind: "hmac", secret: new TextEncoder().encode(SECRET) }],
]);

function request(summary = "Refund order 1"): ActionRequest {
  return {
    request_id: `req-${randomUUID()}`,
    agent_id: "billing-agent",
    action: { type: "payments.refund", summary, details: { amount: 120 } },
    risk_class: "high",
    region: "eu",
    purpose: "Customer was charged twice",
  };
}

function record(
  req: ActionRequest,
  o: {
    verdict?: Verdict;
    validUntil?: Date;
    key?: typeof KEY;
    iss?: string;
    /** Approvers changed `req` into this revision: the record covers it, with original_sha256 and edits. */
    revisedTo?: ActionRequest;
  } = {},
): string {
  const now = Date.now();
  const verdict = o.verdict ?? "approved";
  const claims: RecordClaims = {
    ver: 1,
    iss: o.iss ?? ISSUER,
    sub: req.agent_id,
    jti: `dec_${randomUUID()}`,
    iat: Math.floor(now / 1000),
    action_id: `act_${req.request_id}`,
    request_id: req.request_id,
    action_type: req.action.type,
    summary: req.action.summary,
    action_sha256: requestDigest(o.revisedTo ?? req),
    ...(o.revisedTo
      ? {
          original_sha256: requestDigest(req),
          edits: [
            {
              user: "U0ALICE",
              team: "T0TEST",
              at: new Date(now - 1000).toISOString(),
              patch: diffRequest(req, o.revisedTo),
            },
          ],
        }
      : {}),
    risk_class: req.risk_class,
    region: req.region,
    purpose: req.purpose,
    systems: [],
    on_behalf_of: null,
    verdict,
    reason_code: "approvers",
    reason_text: "",
    route: { name: "r", quorum: 1, escalation_level: 0 },
    eligible: ["U0ALICE"],
    votes: [],
    requested_at: new Date(now - 60_000).toISOString(),
    decided_at: new Date(now).toISOString(),
    ...(verdict === "approved"
      ? { valid_until: (o.validUntil ?? new Date(now + 15 * 60_000)).toISOString() }
      : {}),
    policy_sha256: "p",
    seq: 1,
    prev: null,
  };
  return signRecord(o.key ?? KEY, claims);
}

function payload(jws: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jws.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
}

function receiptFor(
  recordJws: string,
  kind: "redeemed" | "outcome",
  o: { key?: typeof KEY; executor?: string } = {},
): string {
  const d = payload(recordJws);
  const at = new Date().toISOString();
  const common = {
    ver: 1 as const,
    iss: ISSUER,
    sub: String(d["sub"]),
    jti: `rct_${randomUUID()}`,
    iat: Math.floor(Date.now() / 1000),
    seq: 2,
    prev: jwsDigest(recordJws),
    action_id: String(d["action_id"]),
    decision: String(d["jti"]),
    decision_sha256: jwsDigest(recordJws),
    at,
  };
  return signReceipt(
    o.key ?? KEY,
    kind === "redeemed"
      ? { ...common, kind, by: { executor: o.executor ?? EXECUTOR } }
      : { ...common, kind, by: { executor: EXECUTOR }, status: "succeeded" },
  );
}

interface Seen {
  path: string;
  body: unknown;
  proof: ProofClaims;
}

type Handler = (seen: Seen) => { status: number; body: unknown };

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A stand-in that checks the bearer proof (its req bound to the body's RFC 8785 JSON), then answers. */
async function standIn(handler: Handler): Promise<{ baseUrl: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      text += c;
    });
    req.on("end", () => {
      void (async () => {
        const answer = (status: number, body: unknown) => {
          res.writeHead(status, {
            "content-type": status >= 400 ? "application/problem+json" : "application/json",
          });
          res.end(JSON.stringify(body));
        };
        try {
          const body: unknown = JSON.parse(text);
          const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
          const proof = await verifyProof(token, {
            policy: POLICY,
            keys: PROOF_KEYS,
            now: new Date(),
            expectedDigest: requestDigest(body),
          });
          const s = { path: req.url ?? "", body, proof };
          seen.push(s);
          const a = handler(s);
          answer(a.status, a.body);
        } catch (e) {
          answer(401, { code: "bad_proof", status: 401, detail: (e as Error).message });
        }
      })();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, seen };
}

const redeemOk: Handler = (s) => {
  const rec = (s.body as { record: string }).record;
  return {
    status: 200,
    body: { receipt: receiptFor(rec, "redeemed"), action_id: payload(rec)["action_id"] },
  };
};

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

describe("redeemGrant", () => {
  it("posts {record, request} with a fresh proof (iss the executor, aud the issuer, req the body's digest) and returns the verified receipt", async () => {
    const { baseUrl, seen } = await standIn(redeemOk);
    const req = request();
    const rec = record(req);
    const g = await redeemGrant(rec, req, { identity: IDENTITY, baseUrl, jwks: JWKS_ });
    expect(g.action_id).toBe(`act_${req.request_id}`);
    expect(g.receiptClaims).toMatchObject({
      kind: "redeemed",
      by: { executor: EXECUTOR },
      decision_sha256: jwsDigest(rec),
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.path).toBe("/v1/grants/redeem");
    expect(seen[0]!.body).toEqual({ record: rec, request: req });
    expect(seen[0]!.proof).toMatchObject({
      iss: EXECUTOR,
      aud: ISSUER,
      req: requestDigest({ record: rec, request: req }),
    });
    await redeemGrant(record(req), req, { identity: IDENTITY, baseUrl, jwks: JWKS_ });
    expect(seen[1]!.proof.jti).not.toBe(seen[0]!.proof.jti);
  });

  it("refuses offline, sending nothing, a record that is forged, from another issuer, for another request, not an approval, or expired", async () => {
    const { baseUrl, seen } = await standIn(redeemOk);
    const o = { identity: IDENTITY, baseUrl, jwks: JWKS_ };
    const req = request();
    // Each started only when awaited: a refusal waiting in the list would be an unhandled rejection.
    const cases: [string, () => Promise<unknown>][] = [
      ["signature", () => redeemGrant(record(req, { key: FORGER }), req, o)],
      ["iss", () => redeemGrant(record(req, { iss: "https://elsewhere.test" }), req, o)],
      [
        "action_sha256",
        () => redeemGrant(record(req), { ...req, action: { ...req.action, details: { amount: 9000 } } }, o),
      ],
      ["verdict", () => redeemGrant(record(req, { verdict: "denied" }), req, o)],
      ["valid_until", () => redeemGrant(record(req, { validUntil: new Date(Date.now() - 1000) }), req, o)],
      ["sub", () => redeemGrant(record(req), req, { ...o, agents: ["crm-agent"] })],
    ];
    for (const [check, p] of cases) {
      const e = await rejection(p());
      expect(e, check).toBeInstanceOf(InvalidRecord);
      expect((e as InvalidRecord).check).toBe(check);
    }
    expect(seen).toHaveLength(0);
  });

  it("a revised approval is redeemed with the decided revision; the agent's original is refused offline, saying why", async () => {
    const { baseUrl, seen } = await standIn(redeemOk);
    const o = { identity: IDENTITY, baseUrl, jwks: JWKS_ };
    const req = request();
    const decided = { ...req, action: { ...req.action, details: { amount: 60 } } };
    const rec = record(req, { revisedTo: decided });
    const e = await rejection(redeemGrant(rec, req, o));
    expect(e).toBeInstanceOf(InvalidRecord);
    expect((e as InvalidRecord).check).toBe("action_sha256");
    expect((e as Error).message).toMatch(/approvers changed it/);
    expect(seen).toHaveLength(0);
    const g = await redeemGrant(rec, decided, o);
    expect(g.decision.action_sha256).toBe(requestDigest(decided));
    expect(seen[0]!.body).toEqual({ record: rec, request: decided });
  });

  it("already_redeemed carries the first receipt and when it was redeemed", async () => {
    const req = request();
    const rec = record(req);
    const first = receiptFor(rec, "redeemed", { executor: "other-api" });
    const { baseUrl } = await standIn(() => ({
      status: 409,
      body: {
        code: "already_redeemed",
        status: 409,
        detail: "redeemed before",
        receipt: first,
        redeemed_at: "2025-03-01T10:00:00.000Z",
      },
    }));
    const e = await rejection(redeemGrant(rec, req, { identity: IDENTITY, baseUrl, jwks: JWKS_ }));
    expect(e).toBeInstanceOf(AlreadyRedeemed);
    expect(e).toBeInstanceOf(GrantRefused);
    expect(e).toMatchObject({
      code: "already_redeemed",
      status: 409,
      receipt: first,
      redeemedAt: "2025-03-01T10:00:00.000Z",
    });
  });

  it("maps the other refusals to GrantRefused with their code and status, and a 503 to TransportError", async () => {
    for (const [code, status] of [
      ["revoked", 409],
      ["grant_expired", 410],
      ["action_mismatch", 409],
      ["forbidden", 403],
      ["bad_record", 400],
    ] as const) {
      const { baseUrl } = await standIn(() => ({ status, body: { code, status, detail: `said ${code}` } }));
      const req = request();
      const e = await rejection(redeemGrant(record(req), req, { identity: IDENTITY, baseUrl, jwks: JWKS_ }));
      expect(e).toBeInstanceOf(GrantRefused);
      expect(e).not.toBeInstanceOf(AlreadyRedeemed);
      expect(e).toMatchObject({ code, status });
    }
    const { baseUrl } = await standIn(() => ({
      status: 503,
      body: { code: "unavailable", status: 503, detail: "db down" },
    }));
    const req = request();
    const e = await rejection(redeemGrant(record(req), req, { identity: IDENTITY, baseUrl, jwks: JWKS_ }));
    expect(e).toBeInstanceOf(TransportError);
  });

  it("does not trust a 200 whose receipt is forged, for another decision, or names another executor", async () => {
    for (const forge of [
      (rec: string) => receiptFor(rec, "redeemed", { key: FORGER }),
      (_rec: string) => receiptFor(record(request()), "redeemed"),
      (rec: string) => receiptFor(rec, "redeemed", { executor: "other-api" }),
      (rec: string) => receiptFor(rec, "outcome"),
    ]) {
      const { baseUrl } = await standIn((s) => {
        const rec = (s.body as { record: string }).record;
        return { status: 200, body: { receipt: forge(rec), action_id: payload(rec)["action_id"] } };
      });
      const req = request();
      const e = await rejection(redeemGrant(record(req), req, { identity: IDENTITY, baseUrl, jwks: JWKS_ }));
      expect(e).toBeInstanceOf(InvalidReceipt);
    }
  });
});

describe("reportOutcome", () => {
  it("posts {status, detail} to the action's outcome with a proof bound to that body, and returns the receipt", async () => {
    const req = request();
    const rec = record(req);
    const { baseUrl, seen } = await standIn(() => ({
      status: 201,
      body: { receipt: receiptFor(rec, "outcome") },
    }));
    const actionId = `act_${req.request_id}`;
    const r = await reportOutcome(actionId, "failed", "card declined", {
      identity: IDENTITY,
      baseUrl,
      jwks: JWKS_,
    });
    expect(payload(r.receipt)).toMatchObject({ kind: "outcome", action_id: actionId });
    expect(seen[0]).toMatchObject({
      path: `/v1/actions/${actionId}/outcome`,
      body: { status: "failed", detail: "card declined" },
      proof: {
        iss: EXECUTOR,
        aud: ISSUER,
        req: requestDigest({ status: "failed", detail: "card declined" }),
      },
    });
  });

  it("outcome_exists and not_approved are GrantRefused; a bad status or an overlong detail is refused before sending", async () => {
    const { baseUrl, seen } = await standIn(() => ({
      status: 409,
      body: { code: "outcome_exists", status: 409, detail: "once" },
    }));
    const e = await rejection(
      reportOutcome("act_x", "succeeded", undefined, { identity: IDENTITY, baseUrl }),
    );
    expect(e).toMatchObject({ code: "outcome_exists", status: 409 });
    expect(seen[0]!.body).toEqual({ status: "succeeded" });
    await expect(
      reportOutcome("act_x", "done" as "failed", undefined, { identity: IDENTITY, baseUrl }),
    ).rejects.toThrow(/status/);
    await expect(
      reportOutcome("act_x", "failed", "x".repeat(1001), { identity: IDENTITY, baseUrl }),
    ).rejects.toThrow(/1000/);
    expect(seen).toHaveLength(1);
  });
});

// The round trip against the real server, through the test harness's real app.
describe("redeemGrant and reportOutcome against the real Countersign", () => {
  let h: Harness;
  let short: Harness;
  beforeAll(async () => {
    h = await grantsHarness();
    short = await grantsHarness({ validFor: "1s" });
  });
  afterAll(async () => {
    await h?.stop();
    await short?.stop();
  });

  const real = (x: Harness) => ({
    identity: { executorId: "payments-api", issuer: ISSUER, key: { hmacSecret: EXECUTOR_SECRET } },
    baseUrl: x.app.url,
    jwks: async () => (await (await fetch(`${x.app.url}/.well-known/jwks.json`)).json()) as JWKS,
  });

  it("redeems an approval once: the second call is AlreadyRedeemed carrying the first receipt", async () => {
    const g = await approved(h);
    const first = await redeemGrant(g.record, g.request as ActionRequest, real(h));
    expect(first.action_id).toBe(g.actionId);
    expect(first.receiptClaims.by.executor).toBe("payments-api");
    const e = await redeemGrant(g.record, g.request as ActionRequest, real(h)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AlreadyRedeemed);
    expect((e as AlreadyRedeemed).receipt).toBe(first.receipt);
  });

  it("a redemption after valid_until is GrantRefused grant_expired (410)", async () => {
    const g = await approved(short);
    const claims = payload(g.record);
    const validUntil = Date.parse(String(claims["valid_until"]));
    await new Promise((r) => setTimeout(r, Math.max(0, validUntil - Date.now()) + 50));
    // The offline check is told it is still the decision's time, so the server judges.
    const e = await redeemGrant(g.record, g.request as ActionRequest, {
      ...real(short),
      now: () => new Date(String(claims["decided_at"])),
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GrantRefused);
    expect(e).toMatchObject({ code: "grant_expired", status: 410 });
  });

  it("a request other than the approved one is GrantRefused action_mismatch (409)", async () => {
    const g = await approved(h);
    const other = { ...(g.request as ActionRequest), purpose: "another purpose" };
    // The SDK refuses it offline (InvalidRecord); a raw call shows the server's answer.
    await expect(redeemGrant(g.record, other, real(h))).rejects.toBeInstanceOf(InvalidRecord);
    const r = await post(h, "/v1/grants/redeem", { record: g.record, request: other });
    expect(r).toMatchObject({ status: 409, json: { code: "action_mismatch" } });
  });

  it("a revoked approval is GrantRefused revoked (409)", async () => {
    const g = await approved(h);
    await h.app.grants.revoke(g.actionId, { cli: true }, "no longer needed");
    const e = await redeemGrant(g.record, g.request as ActionRequest, real(h)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GrantRefused);
    expect(e).toMatchObject({ code: "revoked", status: 409 });
  });

  it("reports an outcome once: 201 with a receipt, then outcome_exists", async () => {
    const g = await approved(h);
    await redeemGrant(g.record, g.request as ActionRequest, real(h));
    const r = await reportOutcome(g.actionId, "succeeded", "refund 42 sent", real(h));
    expect(payload(r.receipt)).toMatchObject({
      kind: "outcome",
      status: "succeeded",
      detail: "refund 42 sent",
    });
    const e = await reportOutcome(g.actionId, "failed", undefined, real(h)).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: "outcome_exists", status: 409 });
  });
});
