import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { requestDigest } from "../../src/domain/canonical.js";
import type { ActionRequest, RecordClaims } from "../../src/domain/types.js";
import { generateSigningKeyPem, loadSigningKey, signJws, signRecord } from "../../src/records/signing.js";
import { InvalidRecord, type JWKS, verifyDecided, verifyDecision } from "../../src/sdk/index.js";

const ISSUER = "https://countersign.test";
const AGENT = "billing-agent";
const NOW = new Date("2026-03-02T10:00:00Z");
const KEY = loadSigningKey(generateSigningKeyPem());
const OTHER_KEY = loadSigningKey(generateSigningKeyPem());
const JWKS_: JWKS = { keys: [{ ...KEY.publicJwk }] };

const REQUEST: ActionRequest = {
  request_id: "refund-1042",
  agent_id: AGENT,
  action: {
    type: "payments.refund",
    summary: "Refund EUR 40 to order 1042",
    details: { amount: 40, currency: "EUR" },
  },
  risk_class: "high",
  region: "eu",
  purpose: "customer complaint",
};

function claims(over: Partial<RecordClaims> = {}): RecordClaims {
  return {
    ver: 1,
    iss: ISSUER,
    sub: AGENT,
    jti: "dec_1",
    iat: Math.floor(NOW.getTime() / 1000) - 60,
    action_id: "act_1",
    request_id: REQUEST.request_id,
    action_type: REQUEST.action.type,
    summary: REQUEST.action.summary,
    action_sha256: requestDigest(REQUEST),
    risk_class: "high",
    region: "eu",
    purpose: REQUEST.purpose,
    systems: [],
    on_behalf_of: null,
    verdict: "approved",
    reason_code: "approvers",
    reason_text: "",
    route: { name: "refunds", quorum: 1, escalation_level: 0 },
    eligible: ["U0ALICE"],
    votes: [],
    requested_at: "2026-03-02T09:58:00.000Z",
    decided_at: "2026-03-02T09:59:00.000Z",
    valid_until: "2026-03-02T10:14:00.000Z",
    policy_sha256: "x",
    seq: 7,
    prev: null,
    ...over,
  };
}

const opts = { jwks: JWKS_, request: REQUEST, agentId: AGENT, issuer: ISSUER, now: NOW };

async function failure(record: string, o: Partial<typeof opts> = {}): Promise<InvalidRecord> {
  const e = await verifyDecision(record, { ...opts, ...o }).then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(InvalidRecord);
  return e as InvalidRecord;
}

describe("verifyDecision", () => {
  it("returns the claims of a valid approval for this agent and this request", async () => {
    const c = await verifyDecision(signRecord(KEY, claims()), opts);
    expect(c).toMatchObject({ verdict: "approved", action_id: "act_1", seq: 7 });
  });

  it("verifies denials too (acting on them is the caller's choice)", async () => {
    const record = signRecord(
      KEY,
      claims({ verdict: "denied", reason_text: "not this month", valid_until: undefined }),
    );
    expect((await verifyDecision(record, opts)).reason_text).toBe("not this month");
  });

  it("binds to the request's content, not its key order", async () => {
    const reordered = JSON.parse(
      `{"purpose":"customer complaint","region":"eu","risk_class":"high","action":{"details":{"currency":"EUR","amount":40},"summary":"Refund EUR 40 to order 1042","type":"payments.refund"},"agent_id":"${AGENT}","request_id":"refund-1042"}`,
    ) as ActionRequest;
    await expect(
      verifyDecision(signRecord(KEY, claims()), { ...opts, request: reordered }),
    ).resolves.toBeTruthy();
  });

  it("still verifies an old record after key rotation, with both keys published", async () => {
    const record = signRecord(OTHER_KEY, claims());
    const rotated: JWKS = { keys: [{ ...KEY.publicJwk }, { ...OTHER_KEY.publicJwk }] };
    await expect(verifyDecision(record, { ...opts, jwks: rotated })).resolves.toBeTruthy();
  });

  it("refuses a record signed by a key the agent does not trust (forged on a shared Redis)", async () => {
    const e = await failure(signRecord(OTHER_KEY, claims()));
    expect(e.check).toBe("signature");
    expect(e.message).toContain(OTHER_KEY.kid);
  });

  it("refuses a denial rewritten into an approval", async () => {
    const [h, , s] = signRecord(KEY, claims({ verdict: "denied", valid_until: undefined })).split(".");
    const forged = Buffer.from(JSON.stringify(claims())).toString("base64url");
    expect((await failure(`${h}.${forged}.${s}`)).check).toBe("signature");
  });

  it("refuses an HS256 token keyed with the public key (algorithm confusion)", async () => {
    const token = await new SignJWT({ ...claims() })
      .setProtectedHeader({ alg: "HS256", kid: KEY.kid, typ: "decision+jwt" })
      .sign(new TextEncoder().encode(KEY.publicJwk.x));
    const e = await failure(token);
    expect(e.check).toBe("signature");
    expect(e.message).toMatch(/HS256.*EdDSA/);
  });

  it("refuses an unsigned token (alg none)", async () => {
    const h = Buffer.from(JSON.stringify({ alg: "none", typ: "decision+jwt" })).toString("base64url");
    const p = Buffer.from(JSON.stringify(claims())).toString("base64url");
    expect((await failure(`${h}.${p}.`)).check).toBe("signature");
  });

  it("refuses another kind of JWS signed with our key (a checkpoint is not a decision)", async () => {
    expect((await failure(signJws(KEY, "checkpoint+jwt", claims()))).check).toBe("typ");
  });

  it("refuses a record from another issuer", async () => {
    expect((await failure(signRecord(KEY, claims({ iss: "https://staging.countersign.test" })))).check).toBe(
      "iss",
    );
  });

  it("refuses a record about another agent", async () => {
    expect((await failure(signRecord(KEY, claims({ sub: "ops-agent" })))).check).toBe("sub");
  });

  it("refuses an approval of a different action (amount changed after approval)", async () => {
    const bigger = { ...REQUEST, action: { ...REQUEST.action, details: { amount: 4000, currency: "EUR" } } };
    const e = await failure(signRecord(KEY, claims()), { request: bigger });
    expect(e.check).toBe("action_sha256");
  });

  it("refuses an approval whose valid_until has passed, or that has none", async () => {
    const late = await failure(signRecord(KEY, claims()), { now: new Date("2026-03-02T10:14:00Z") });
    expect(late.check).toBe("valid_until");
    expect(late.message).toMatch(/no longer covers/);
    const none = await failure(signRecord(KEY, claims({ valid_until: undefined })));
    expect(none.check).toBe("valid_until");
  });

  it("refuses an unknown record version and an unknown verdict", async () => {
    expect((await failure(signRecord(KEY, { ...claims(), ver: 2 } as unknown as RecordClaims))).check).toBe(
      "ver",
    );
    const odd = { ...claims(), verdict: "maybe" } as unknown as RecordClaims;
    expect((await failure(signRecord(KEY, odd))).check).toBe("verdict");
  });

  it("refuses what is not a compact JWS", async () => {
    expect((await failure("not-a-record")).check).toBe("format");
    expect((await failure("a.b.c")).check).toBe("format");
  });
});

/** RFC 8785 + SHA-256, base64url, computed here with canonicalize and node:crypto, not requestDigest. */
function jcs(v: unknown): string {
  return createHash("sha256").update(canonicalize(v)!, "utf8").digest("base64url");
}

describe("verifyDecided: a request approvers changed", () => {
  // `editable` is part of the request schema this round (SPEC "Changes before approval").
  const sent = {
    ...REQUEST,
    action: {
      ...REQUEST.action,
      details: { amount: 40, currency: "EUR", note: "" },
      editable: ["/amount", "/note"],
    },
  } as ActionRequest;
  const decided: ActionRequest = {
    ...sent,
    action: { ...sent.action, details: { amount: 25, currency: "EUR", note: "partial" } },
  };
  const edit = {
    user: "U0ALICE",
    team: "T0TEST",
    at: "2026-03-02T09:58:30.000Z",
    patch: [
      { op: "replace" as const, path: "/action/details/amount", value: 25 },
      { op: "replace" as const, path: "/action/details/note", value: "partial" },
    ],
  };
  const revised = (over: Partial<RecordClaims> = {}) =>
    claims({ action_sha256: jcs(decided), original_sha256: jcs(sent), edits: [edit], ...over });

  it("hands back the decided revision, computed from what was sent and the signed edits", async () => {
    const v = await verifyDecided(signRecord(KEY, revised()), { ...opts, request: sent });
    expect(v.revised).toBe(true);
    expect(v.request).toEqual(decided);
    expect(jcs(v.request)).toBe(v.claims.action_sha256);
    expect(sent.action.details).toEqual({ amount: 40, currency: "EUR", note: "" });
  });

  it("hands back what was sent when nothing changed", async () => {
    const v = await verifyDecided(signRecord(KEY, claims()), opts);
    expect(v).toMatchObject({ revised: false, request: REQUEST });
  });

  it("refuses the decided revision passed as the sent request (original_sha256 is the agent's)", async () => {
    const e = await failure(signRecord(KEY, revised()), { request: decided });
    expect(e.check).toBe("original_sha256");
  });

  it("refuses edits that do not give action_sha256 (an edit altered after approval)", async () => {
    const altered = { ...edit, patch: [edit.patch[0]!, { ...edit.patch[1]!, value: "full" }] };
    const e = await failure(signRecord(KEY, revised({ edits: [altered] })), { request: sent });
    expect(e.check).toBe("action_sha256");
  });

  it("refuses an edit at a pointer the agent did not make editable", async () => {
    const wider = {
      ...decided,
      action: { ...decided.action, details: { ...decided.action.details, currency: "USD" } },
    };
    const sneaky = {
      ...edit,
      patch: [...edit.patch, { op: "replace" as const, path: "/action/details/currency", value: "USD" }],
    };
    const e = await failure(signRecord(KEY, revised({ edits: [sneaky], action_sha256: jcs(wider) })), {
      request: sent,
    });
    expect(e.check).toBe("edits");
    expect(e.message).toContain("/action/details/currency");
  });

  it("refuses a record with original_sha256 but no edits", async () => {
    const { edits: _e, ...noEdits } = revised();
    const e = await failure(signRecord(KEY, noEdits as RecordClaims), { request: sent });
    expect(e.check).toBe("edits");
  });
});
