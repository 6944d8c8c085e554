/**
 * The SDK's two transports against stand-ins that behave as the HTTP API (docs/agents.md) says Countersign does:
 * a real BullMQ queue on the machine's Redis with a tiny worker, and a real local HTTP
 * server. Both check the agent's proof with the real verifier. End-to-end runs against a
 * real Countersign live with the integration tests.
 */
import { generateKeyPairSync, randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { type Job, Queue, QueueEvents, UnrecoverableError, Worker } from "bullmq";
import { afterEach, describe, expect, it } from "vitest";
import { requestDigest, sha256B64url } from "../../src/domain/canonical.js";
import {
  type ActionRequest,
  type Policy,
  type RecordClaims,
  RejectionError,
  type Verdict,
} from "../../src/domain/types.js";
import { type AgentKey, verifyProof } from "../../src/records/proof.js";
import { generateSigningKeyPem, loadSigningKey, signRecord } from "../../src/records/signing.js";
import {
  type AgentIdentity,
  Cancelled,
  Denied,
  Expired,
  InvalidRecord,
  type JWKS,
  Rejected,
  requestApproval,
  TransportError,
  WaitTimeout,
} from "../../src/sdk/index.js";

const ISSUER = "https://countersign.test";
const AGENT = "billing-agent";
const SECRET = "billing-agent-secret-that-is-at-least-32-bytes";
const KEY = loadSigningKey(generateSigningKeyPem());
const FORGER = loadSigningKey(generateSigningKeyPem());
const JWKS_: JWKS = { keys: [{ ...KEY.publicJwk }] };
const IDENTITY: AgentIdentity = { agentId: AGENT, issuer: ISSUER, key: { hmacSecret: SECRET } };
const REDIS = { host: "127.0.0.1", port: 6379 };
const OPS = "ops-agent";
const OPS_PAIR = generateKeyPairSync("ed25519");
const OPS_IDENTITY: AgentIdentity = {
  agentId: OPS,
  issuer: ISSUER,
  key: { privateKeyPem: OPS_PAIR.privateKey.export({ type: "pkcs8", format: "pem" }).toString() },
};

const POLICY: Policy = {
  issuer: ISSUER,
  slack: { team_id: "T0TEST" },
  risk_classes: ["low", "high"],
  regions: { eu: { tz: "Europe/Berlin" } },
  defaults: { timeout_ms: 60_000, on_timeout: "deny", approval_valid_for_ms: 900_000, max_pending: 100 },
  actions: {},
  agents: {
    [AGENT]: {
      id: AGENT,
      owners: {},
      auth: { kind: "hmac", secret_env: "BILLING_AGENT_SECRET" },
      callback_origins: [],
      allowed_actions: ["*"],
      regions: [],
      vendor_managed: false,
      max_pending: 100,
    },
    [OPS]: {
      id: OPS,
      owners: {},
      auth: { kind: "eddsa", public_key_file: "/nonexistent/ops.pub.pem" },
      callback_origins: [],
      allowed_actions: ["*"],
      regions: [],
      vendor_managed: false,
      max_pending: 100,
    },
  },
  routes: [],
  sha256: "x",
  file: "/nonexistent/policy.yml",
};
const AGENT_KEYS = new Map<string, AgentKey>([
  [AGENT, { kind: "hmac", secret: new TextEncoder().encode(SECRET) }],
  [OPS, { kind: "eddsa", publicKey: OPS_PAIR.publicKey }],
]);

function request(summary: string, agent = AGENT): ActionRequest {
  return {
    request_id: `req-${randomUUID()}`,
    agent_id: agent,
    action: { type: "payments.refund", summary, details: { amount: 40 } },
    risk_class: "high",
    region: "eu",
    purpose: "customer was charged twice",
  };
}

/** A decision record as Countersign would sign it. */
function record(
  req: ActionRequest,
  verdict: Verdict,
  o: { reason?: string; key?: typeof KEY; about?: ActionRequest } = {},
) {
  const now = Date.now();
  const claims: RecordClaims = {
    ver: 1,
    iss: ISSUER,
    sub: req.agent_id,
    jti: `dec_${randomUUID()}`,
    iat: Math.floor(now / 1000),
    action_id: `act_${req.request_id}`,
    request_id: req.request_id,
    action_type: req.action.type,
    summary: req.action.summary,
    action_sha256: requestDigest(o.about ?? req),
    risk_class: req.risk_class,
    region: req.region,
    purpose: req.purpose,
    systems: [],
    on_behalf_of: null,
    verdict,
    reason_code: verdict === "expired" ? "timeout" : verdict === "cancelled" ? "cancelled" : "approvers",
    reason_text: o.reason ?? "",
    route: { name: "eu-high-payments", quorum: 1, escalation_level: 0 },
    eligible: ["U0ALICE"],
    votes: [],
    requested_at: new Date(now - 1000).toISOString(),
    decided_at: new Date(now).toISOString(),
    ...(verdict === "approved" ? { valid_until: new Date(now + 900_000).toISOString() } : {}),
    policy_sha256: "x",
    seq: 1,
    prev: null,
  };
  return signRecord(o.key ?? KEY, claims);
}

async function rejection<T>(p: Promise<T>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
}

// ---------------------------------------------------------------------------
// Queue transport

interface QueueRig {
  queue: Queue;
  events: QueueEvents;
  proofs: string[];
}

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A queue with a worker that answers the way Countersign's intake does; `decide` picks the outcome. */
async function queueRig(decide: ((req: ActionRequest, job: Job) => unknown) | null): Promise<QueueRig> {
  const prefix = `test-${randomUUID()}`;
  const name = "approval-requests";
  const queue = new Queue(name, { connection: REDIS, prefix });
  const events = new QueueEvents(name, { connection: REDIS, prefix });
  await events.waitUntilReady();
  const proofs: string[] = [];
  const worker =
    decide &&
    new Worker(
      name,
      async (job) => {
        const { request, proof } = job.data as { request: ActionRequest; proof: string };
        proofs.push(proof);
        try {
          await verifyProof(proof, {
            policy: POLICY,
            keys: AGENT_KEYS,
            now: new Date(job.timestamp),
            expectedAgent: request.agent_id,
            expectedDigest: requestDigest(request),
          });
        } catch (e) {
          // As Countersign's intake does: a refusal fails the job for good, with its reason.
          if (e instanceof RejectionError) throw new UnrecoverableError(e.failedReason);
          throw e;
        }
        return decide(request, job);
      },
      { connection: REDIS, prefix },
    );
  cleanups.push(async () => {
    await worker?.close();
    await queue.obliterate({ force: true });
    await events.close();
    await queue.close();
  });
  return { queue, events, proofs };
}

const onQueue = (rig: QueueRig) => ({
  identity: IDENTITY,
  transport: { kind: "queue" as const, queue: rig.queue, queueEvents: rig.events },
  jwks: JWKS_,
});

function result(req: ActionRequest, verdict: Verdict, rec: string) {
  return { action_id: `act_${req.request_id}`, request_id: req.request_id, verdict, record: rec };
}

describe("requestApproval on the queue", () => {
  it("resolves with the verified approval and learns the action id", async () => {
    const rig = await queueRig((req) => result(req, "approved", record(req, "approved")));
    const req = request("Refund order 1");
    const handle = await requestApproval(req, onQueue(rig));
    expect(handle.actionId).toBeNull();
    const d = await handle.verdict({ timeoutMs: 10_000 });
    expect(d.verdict).toBe("approved");
    expect(d.claims.action_sha256).toBe(requestDigest(req));
    expect(handle.actionId).toBe(`act_${req.request_id}`);
    expect(rig.proofs).toHaveLength(1);
  });

  it("throws Denied with the approver's reason", async () => {
    const rig = await queueRig((req) =>
      result(req, "denied", record(req, "denied", { reason: "duplicate refund" })),
    );
    const handle = await requestApproval(request("Refund order 2"), onQueue(rig));
    const e = await rejection(handle.verdict({ timeoutMs: 10_000 }));
    expect(e).toBeInstanceOf(Denied);
    expect((e as Denied).reasonText).toBe("duplicate refund");
    expect((e as Denied).claims.verdict).toBe("denied");
  });

  it("throws Expired and Cancelled for those verdicts", async () => {
    const rig = await queueRig((req) => {
      const v: Verdict = req.action.summary.includes("expire") ? "expired" : "cancelled";
      return result(req, v, record(req, v, { reason: v === "cancelled" ? "customer withdrew" : "" }));
    });
    const expired = await rejection((await requestApproval(request("will expire"), onQueue(rig))).verdict());
    expect(expired).toBeInstanceOf(Expired);
    const cancelled = await rejection(
      (await requestApproval(request("will cancel"), onQueue(rig))).verdict(),
    );
    expect(cancelled).toBeInstanceOf(Cancelled);
    expect((cancelled as Cancelled).claims.reason_text).toBe("customer withdrew");
  });

  it("turns a failed job's 'rejected: <code>: <text>' into Rejected", async () => {
    const rig = await queueRig(() => {
      throw new UnrecoverableError(
        "rejected: callback_not_allowed: callback_url: origin https://evil.example is not one of the agent's callback_origins",
      );
    });
    const handle = await requestApproval(request("Refund order 3"), onQueue(rig));
    const e = await rejection(handle.verdict({ timeoutMs: 10_000 }));
    expect(e).toBeInstanceOf(Rejected);
    expect((e as Rejected).code).toBe("callback_not_allowed");
    expect((e as Rejected).message).toContain("callback_url: origin https://evil.example");
  });

  it("refuses an 'approved' result whose record was signed by someone else (shared Redis)", async () => {
    const rig = await queueRig((req) => result(req, "approved", record(req, "approved", { key: FORGER })));
    const e = await rejection((await requestApproval(request("Refund order 4"), onQueue(rig))).verdict());
    expect(e).toBeInstanceOf(InvalidRecord);
    expect((e as InvalidRecord).check).toBe("signature");
  });

  it("refuses a genuine approval of another request passed off as this one's", async () => {
    const other = request("Refund order 5 (small)");
    const rig = await queueRig((req) => result(req, "approved", record(req, "approved", { about: other })));
    const e = await rejection(
      (await requestApproval(request("Refund order 5 (large)"), onQueue(rig))).verdict(),
    );
    expect(e).toBeInstanceOf(InvalidRecord);
    expect((e as InvalidRecord).check).toBe("action_sha256");
  });

  it("believes the record, not the result's verdict field", async () => {
    const rig = await queueRig((req) => result(req, "approved", record(req, "denied", { reason: "no" })));
    const e = await rejection((await requestApproval(request("Refund order 6"), onQueue(rig))).verdict());
    expect(e).toBeInstanceOf(Denied);
  });

  it("throws WaitTimeout while the job is still pending, and can wait again", async () => {
    const rig = await queueRig(null);
    const handle = await requestApproval(request("Refund order 7"), onQueue(rig));
    const e = await rejection(handle.verdict({ timeoutMs: 300 }));
    expect(e).toBeInstanceOf(WaitTimeout);
    // Now Countersign decides; the same handle still gets the verdict.
    const worker = new Worker(
      "approval-requests",
      async (job) => {
        const req = (job.data as { request: ActionRequest }).request;
        return result(req, "approved", record(req, "approved"));
      },
      { connection: REDIS, prefix: rig.queue.opts.prefix! },
    );
    cleanups.push(() => worker.close());
    await expect(handle.verdict({ timeoutMs: 10_000 })).resolves.toMatchObject({ verdict: "approved" });
  });

  it("refuses a request for another agent before sending anything", async () => {
    const rig = await queueRig(null);
    const req = { ...request("Refund order 8"), agent_id: "ops-agent" };
    await expect(requestApproval(req, onQueue(rig))).rejects.toThrow(/agent_id "ops-agent"/);
    expect(await rig.queue.count()).toBe(0);
  });

  it("mints an EdDSA proof for an agent that holds an Ed25519 private key", async () => {
    const rig = await queueRig((req) => result(req, "approved", record(req, "approved")));
    const handle = await requestApproval(request("Restart the ledger", OPS), {
      ...onQueue(rig),
      identity: OPS_IDENTITY,
    });
    await expect(handle.verdict({ timeoutMs: 10_000 })).resolves.toMatchObject({ verdict: "approved" });
    const header = JSON.parse(Buffer.from(rig.proofs[0]!.split(".")[0]!, "base64url").toString()) as {
      alg: string;
    };
    expect(header.alg).toBe("EdDSA");
  });

  it("surfaces a refused proof as Rejected bad_proof (wrong secret)", async () => {
    const rig = await queueRig((req) => result(req, "approved", record(req, "approved")));
    const identity: AgentIdentity = {
      ...IDENTITY,
      key: { hmacSecret: "a-different-secret-that-is-32-bytes!!" },
    };
    const handle = await requestApproval(request("Refund order 10"), { ...onQueue(rig), identity });
    const e = await rejection(handle.verdict({ timeoutMs: 10_000 }));
    expect(e).toBeInstanceOf(Rejected);
    expect((e as Rejected).code).toBe("bad_proof");
  });
});

// ---------------------------------------------------------------------------
// HTTP transport

interface FakeAction {
  id: string;
  request: ActionRequest;
  status: "pending" | "decided";
  record?: string;
}

interface ApiRig {
  baseUrl: string;
  actions: Map<string, FakeAction>;
  /** Every call, with the verified proof's claims. */
  calls: { method: string; path: string; jti: string; req: string }[];
  /** Called on each GET before answering; may decide the action or return a status to fail with. */
  onGet: (a: FakeAction, n: number) => number | undefined;
}

function problem(res: http.ServerResponse, status: number, code: string, detail: string, errors?: unknown) {
  res.writeHead(status, { "content-type": "application/problem+json" }).end(
    JSON.stringify({
      type: "about:blank",
      title: code,
      status,
      detail,
      code,
      ...(errors ? { errors } : {}),
    }),
  );
}

/** A stand-in for Countersign's agent API, checking bearer proofs with the real verifier. */
async function apiRig(
  onPost: (req: ActionRequest) => {
    status?: number;
    problem?: [number, string, string, unknown?];
    decide?: Verdict;
  },
): Promise<ApiRig> {
  const rig: ApiRig = { baseUrl: "", actions: new Map(), calls: [], onGet: () => undefined };
  let gets = 0;
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", async () => {
      const url = new URL(req.url ?? "/", "http://x");
      const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
      const parsed = body ? (JSON.parse(body) as ActionRequest) : undefined;
      let claims: Awaited<ReturnType<typeof verifyProof>>;
      try {
        claims = await verifyProof(token, {
          policy: POLICY,
          keys: AGENT_KEYS,
          now: new Date(),
          expectedDigest: parsed ? requestDigest(parsed) : sha256B64url(""),
        });
      } catch (e) {
        return problem(res, 401, (e as RejectionError).code ?? "bad_proof", (e as Error).message);
      }
      rig.calls.push({
        method: req.method ?? "",
        path: url.pathname + url.search,
        jti: claims.jti,
        req: claims.req,
      });
      if (req.method === "POST" && url.pathname === "/v1/actions" && parsed) {
        const plan = onPost(parsed);
        if (plan.problem) return problem(res, ...plan.problem);
        if (plan.status) return problem(res, plan.status, "unavailable", "the database is busy; try again");
        const a: FakeAction = { id: `act_${parsed.request_id}`, request: parsed, status: "pending" };
        if (plan.decide) Object.assign(a, { status: "decided", record: record(parsed, plan.decide) });
        rig.actions.set(a.id, a);
        const answer = {
          action_id: a.id,
          request_id: parsed.request_id,
          status: a.status,
          route: "r",
          deadline: null,
        };
        res.writeHead(201, { "content-type": "application/json" });
        return res.end(
          JSON.stringify(a.record ? { ...answer, verdict: plan.decide, record: a.record } : answer),
        );
      }
      const m = /^\/v1\/actions\/([^/]+)$/.exec(url.pathname);
      const a = m ? rig.actions.get(decodeURIComponent(m[1]!)) : undefined;
      if (req.method !== "GET" || !a) return problem(res, 404, "not_found", "no such action");
      const fail = rig.onGet(a, ++gets);
      if (fail) return problem(res, fail, "unavailable", "restarting");
      const answer = () =>
        res.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify({
            action_id: a.id,
            request_id: a.request.request_id,
            status: a.status,
            record: a.record,
          }),
        );
      // Hold a pending answer as the real long-poll does, but briefly: nobody decides here.
      if (a.status === "pending")
        setTimeout(answer, Math.min(200, Number(url.searchParams.get("wait")) * 1000));
      else answer();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  rig.baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return rig;
}

const overHttp = (rig: ApiRig) => ({
  identity: IDENTITY,
  transport: { kind: "http" as const, baseUrl: rig.baseUrl },
  jwks: async () => JWKS_,
});

describe("requestApproval over HTTP", () => {
  it("posts with a proof bound to the body, then long-polls with a fresh token each time until decided", async () => {
    const rig = await apiRig(() => ({}));
    rig.onGet = (a, n) => {
      if (n === 2) Object.assign(a, { status: "decided", record: record(a.request, "approved") });
      return undefined;
    };
    const req = request("Refund order 20");
    const handle = await requestApproval(req, overHttp(rig));
    expect(handle.actionId).toBe(`act_${req.request_id}`);
    const d = await handle.verdict();
    expect(d.claims.request_id).toBe(req.request_id);
    expect(rig.calls.map((c) => c.method)).toEqual(["POST", "GET", "GET"]);
    expect(rig.calls[0]!.req).toBe(requestDigest(req));
    expect(rig.calls[1]!.path).toBe(`/v1/actions/act_${req.request_id}?wait=30`);
    expect(rig.calls[1]!.req).toBe(sha256B64url(""));
    expect(new Set(rig.calls.map((c) => c.jti)).size).toBe(3);
  });

  it("uses the record in the POST answer when the policy decided at once", async () => {
    const rig = await apiRig(() => ({ decide: "approved" }));
    const d = await (await requestApproval(request("Read a customer"), overHttp(rig))).verdict();
    expect(d.verdict).toBe("approved");
    expect(rig.calls.map((c) => c.method)).toEqual(["POST"]);
  });

  it("throws Denied from a polled denial", async () => {
    const rig = await apiRig(() => ({}));
    rig.onGet = (a) => {
      Object.assign(a, { status: "decided", record: record(a.request, "denied", { reason: "over limit" }) });
      return undefined;
    };
    const e = await rejection((await requestApproval(request("Refund order 21"), overHttp(rig))).verdict());
    expect(e).toBeInstanceOf(Denied);
    expect((e as Denied).reasonText).toBe("over limit");
  });

  it("throws Rejected with the problem's code and field errors", async () => {
    const errors = [{ path: "action.summary", message: "must be one line" }];
    const rig = await apiRig(() => ({
      problem: [400, "invalid_request", "action.summary: must be one line", errors],
    }));
    const e = await rejection(requestApproval(request("two\nlines"), overHttp(rig)));
    expect(e).toBeInstanceOf(Rejected);
    expect(e).toMatchObject({ code: "invalid_request", errors });
  });

  it("throws Rejected bad_proof when the agent's secret is wrong", async () => {
    const rig = await apiRig(() => ({}));
    const identity: AgentIdentity = {
      ...IDENTITY,
      key: { hmacSecret: "a-different-secret-that-is-32-bytes!!" },
    };
    const e = await rejection(requestApproval(request("Refund order 22"), { ...overHttp(rig), identity }));
    expect(e).toMatchObject({ name: "Rejected", code: "bad_proof" });
  });

  it("throws TransportError, not Rejected, when the service is unavailable", async () => {
    const rig = await apiRig(() => ({ status: 503 }));
    const e = await rejection(requestApproval(request("Refund order 23"), overHttp(rig)));
    expect(e).toBeInstanceOf(TransportError);
    expect((e as TransportError).status).toBe(503);
    const down = await rejection(
      requestApproval(request("Refund order 24"), {
        ...overHttp(rig),
        transport: { kind: "http", baseUrl: "http://127.0.0.1:1" },
      }),
    );
    expect(down).toBeInstanceOf(TransportError);
  });

  it("rides out a restart while polling", async () => {
    const rig = await apiRig(() => ({}));
    rig.onGet = (a, n) => {
      if (n === 1) return 503;
      Object.assign(a, { status: "decided", record: record(a.request, "approved") });
      return undefined;
    };
    const d = await (await requestApproval(request("Refund order 25"), overHttp(rig))).verdict();
    expect(d.verdict).toBe("approved");
  });

  it("refuses a tampered answer: an approval of another request", async () => {
    const rig = await apiRig(() => ({}));
    rig.onGet = (a) => {
      const other = request("something else");
      Object.assign(a, { status: "decided", record: record(a.request, "approved", { about: other }) });
      return undefined;
    };
    const e = await rejection((await requestApproval(request("Refund order 26"), overHttp(rig))).verdict());
    expect(e).toBeInstanceOf(InvalidRecord);
  });

  it("throws WaitTimeout when no decision arrives in time, asking for a short wait", async () => {
    const rig = await apiRig(() => ({}));
    const handle = await requestApproval(request("Refund order 27"), overHttp(rig));
    const started = Date.now();
    const e = await rejection(handle.verdict({ timeoutMs: 500 }));
    expect(e).toBeInstanceOf(WaitTimeout);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(rig.calls.filter((c) => c.method === "GET").map((c) => c.path)[0]).toMatch(/\?wait=1$/);
  });
});
