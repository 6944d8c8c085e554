/**
 * "Approve with changes" as withApproval sees it: the decided revision's details are what
 * the tool body gets, and only a record that names the agent's own request as
 * `original_sha256`, whose `edits` touch only the agent's `editable` pointers and give the
 * revision `action_sha256` covers, counts. A local HTTP server answers the agent API's
 * POST /v1/actions with records signed by a test key, so each link can be broken on purpose.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestDigest } from "../../src/domain/canonical.js";
import { diffRequest } from "../../src/domain/edits.js";
import type { ActionRequest, RecordClaims } from "../../src/domain/types.js";
import { generateSigningKeyPem, loadSigningKey, signRecord } from "../../src/records/signing.js";
import { InvalidRecord, type JWKS, withApproval } from "../../src/sdk/index.js";

const ISSUER = "https://countersign.test";
const AGENT = "billing-agent";
const KEY = loadSigningKey(generateSigningKeyPem());
const JWKS_: JWKS = { keys: [{ ...KEY.publicJwk }] };
const identity = { agentId: AGENT, issuer: ISSUER, key: { hmacSecret: "x".repeat(32) } };

/**
 * How the stand-in decides: it changes the sent request into a revision, and signs a record.
 * `edits` defaults to the diff from sent to decided; `answered` to the decided revision.
 */
let revise: (sent: ActionRequest) => {
  decided: ActionRequest;
  original?: string;
  edits?: RecordClaims["edits"];
  answered?: ActionRequest;
};
let server: http.Server;
let baseUrl: string;

function claims(
  sent: ActionRequest,
  decided: ActionRequest,
  original: string | undefined,
  edits: RecordClaims["edits"],
): RecordClaims {
  const now = Date.now();
  return {
    ver: 1,
    iss: ISSUER,
    sub: AGENT,
    jti: "dec_1",
    iat: Math.floor(now / 1000),
    action_id: "act_rev",
    request_id: sent.request_id,
    action_type: sent.action.type,
    summary: sent.action.summary,
    action_sha256: requestDigest(decided),
    ...(original === undefined ? {} : { original_sha256: original }),
    ...(edits === undefined ? {} : { edits }),
    risk_class: "high",
    region: "eu",
    purpose: sent.purpose,
    systems: [],
    on_behalf_of: null,
    verdict: "approved",
    reason_code: "approvers",
    reason_text: "",
    route: { name: "refunds", quorum: 1, escalation_level: 0 },
    eligible: ["U0ALICE"],
    votes: [],
    requested_at: new Date(now - 1000).toISOString(),
    decided_at: new Date(now).toISOString(),
    valid_until: new Date(now + 15 * 60_000).toISOString(),
    policy_sha256: "x",
    seq: 1,
    prev: null,
  } as RecordClaims;
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/actions") {
        res.writeHead(404).end();
        return;
      }
      const sent = JSON.parse(body) as ActionRequest;
      const r = revise(sent);
      const edits = r.edits ?? [
        {
          user: "U0ALICE",
          team: "T0TEST",
          at: new Date().toISOString(),
          patch: diffRequest(sent, r.decided),
        },
      ];
      const record = signRecord(KEY, claims(sent, r.decided, r.original, edits));
      res.writeHead(201, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          action_id: "act_rev",
          request_id: sent.request_id,
          status: "approved",
          verdict: "approved",
          record,
          request: r.answered ?? r.decided,
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
});

interface Refund extends Record<string, unknown> {
  order: string;
  amount: number;
}

function wrapped(ran: Refund[]) {
  return withApproval(
    async (a: Refund) => {
      ran.push(a);
      return a.amount;
    },
    (a) => ({
      type: "payments.refund",
      summary: `Refund ${a.amount} on ${a.order}`,
      risk_class: "high",
      region: "eu",
      purpose: "charged twice",
      editable: ["/amount"],
    }),
    { identity, baseUrl, jwks: JWKS_ },
  );
}

function withAmount(sent: ActionRequest, amount: unknown, order?: string): ActionRequest {
  const d = structuredClone(sent) as ActionRequest & { action: { details: Record<string, unknown> } };
  d.action.details["amount"] = amount;
  if (order !== undefined) d.action.details["order"] = order;
  return d;
}

describe("withApproval and a revised request", () => {
  it("runs the body with the decided revision's arguments", async () => {
    revise = (sent) => ({ decided: withAmount(sent, 80), original: requestDigest(sent) });
    const ran: Refund[] = [];
    expect(await wrapped(ran)({ order: "A-1", amount: 120 })).toBe(80);
    expect(ran).toEqual([{ order: "A-1", amount: 80 }]);
  });

  it("refuses a revision outside the editable pointers, and never runs the body", async () => {
    revise = (sent) => ({ decided: withAmount(sent, 80, "Z-9"), original: requestDigest(sent) });
    const ran: Refund[] = [];
    const err = await wrapped(ran)({ order: "A-1", amount: 120 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidRecord);
    expect((err as InvalidRecord).check).toBe("edits");
    expect((err as Error).message).toMatch(
      /"replace" at "\/action\/details\/order"\) changes what the agent did not make editable/,
    );
    expect(ran).toEqual([]);
  });

  it("refuses a revision whose record does not name the sent request as original_sha256", async () => {
    revise = (sent) => ({ decided: withAmount(sent, 80) });
    const ran: Refund[] = [];
    const err = await wrapped(ran)({ order: "A-1", amount: 120 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidRecord);
    expect((err as InvalidRecord).check).toBe("edits");
    expect((err as Error).message).toMatch(/edits but no original_sha256/);
    expect(ran).toEqual([]);
  });

  it("refuses a record whose original_sha256 is another request's", async () => {
    revise = (sent) => ({
      decided: withAmount(sent, 80),
      original: requestDigest({ ...sent, purpose: "other" }),
    });
    const ran: Refund[] = [];
    const err = await wrapped(ran)({ order: "A-1", amount: 120 }).catch((e: unknown) => e);
    expect((err as InvalidRecord).check).toBe("original_sha256");
    expect(ran).toEqual([]);
  });

  it("refuses a tampered revision: the answer's request is not what the signed edits give", async () => {
    // The record is genuine (amount 80); the answer carries 8000 at the same pointer.
    revise = (sent) => ({
      decided: withAmount(sent, 80),
      original: requestDigest(sent),
      answered: withAmount(sent, 8000),
    });
    const ran: Refund[] = [];
    const err = await wrapped(ran)({ order: "A-1", amount: 120 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidRecord);
    expect((err as Error).message).toMatch(/not the one the record decided/);
    expect(ran).toEqual([]);
  });

  it("refuses signed edits that do not give action_sha256 (an edit dropped from the record)", async () => {
    revise = (sent) => {
      const first = withAmount(sent, 100);
      const decided = withAmount(sent, 80);
      const at = new Date().toISOString();
      // Two changes were made, only the first is listed: replaying it gives 100, not 80.
      return {
        decided,
        original: requestDigest(sent),
        edits: [{ user: "U0ALICE", team: "T0TEST", at, patch: diffRequest(sent, first) }],
      };
    };
    const ran: Refund[] = [];
    const err = await wrapped(ran)({ order: "A-1", amount: 120 }).catch((e: unknown) => e);
    expect((err as InvalidRecord).check).toBe("action_sha256");
    expect(ran).toEqual([]);
  });

  it("runs the revision after two edits in a row", async () => {
    revise = (sent) => {
      const first = withAmount(sent, 100);
      const decided = withAmount(sent, 80);
      const at = new Date().toISOString();
      return {
        decided,
        original: requestDigest(sent),
        edits: [
          { user: "U0ALICE", team: "T0TEST", at, patch: diffRequest(sent, first) },
          { user: "U0BOB", team: "T0TEST", at, patch: diffRequest(first, decided) },
        ],
      };
    };
    const ran: Refund[] = [];
    expect(await wrapped(ran)({ order: "A-1", amount: 120 })).toBe(80);
    expect(ran).toEqual([{ order: "A-1", amount: 80 }]);
  });
});
