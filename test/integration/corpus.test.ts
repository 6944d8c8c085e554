/**
 * Runs the hostile-input corpus (test/corpus, one JSON file per case) against the real
 * product: one harness per door (HTTP API, intake queue, Slack endpoint), real Redis,
 * the real database (either store), the Slack simulator.
 *
 * Every refused case must get its clear error AND change nothing: no action, vote,
 * record, card, outbox row or spent proof, and nothing posted to Slack. The cases the
 * product accepts on purpose (Unicode tricks, markup injection) must show the trick on
 * the card instead of performing it. They run after each door's refusals, so their
 * cards cannot be mistaken for a refused case's side effects.
 *
 * A case marked `known_bug` is expected to fail (it.fails) and is listed at the end.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS, CALLBACK_IDS } from "../../src/adapters/slack/blocks.js";
import {
  blockActionsPayload,
  findElement,
  sendSigned,
  viewSubmissionPayload,
} from "../../src/simulator/interactions.js";
import type { SimMessage } from "../../src/simulator/slack-api.js";
import {
  type CardExpect,
  type CorpusCase,
  type EdAgent,
  expand,
  expandText,
  expectationProblems,
  freshIds,
  type HttpCase,
  hostileProof,
  type Ids,
  loadCorpus,
  type MintContext,
  makeEdAgent,
  parseCsv,
  type QueueCase,
  type SlackCase,
  strangerKey,
  surfaceProblems,
  textBytes,
  validProof,
} from "../support/corpus.js";
import {
  eventually,
  type Harness,
  ISSUER,
  request,
  SIGNING_SECRET,
  sleep,
  startHarness,
  TEAM,
  USERS,
} from "../support/harness.js";

// CORPUS_DIR lets a mutated copy of the corpus be run, to see every case fail.
const CORPUS_DIR =
  process.env.CORPUS_DIR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../corpus");
const cases = loadCorpus(CORPUS_DIR);
const knownBugs = cases.filter((c) => c.known_bug !== undefined);

const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-corpus-keys-"));
const ed: EdAgent = makeEdAgent("signer-agent", keyDir);
const mint: MintContext = { ed, strangerPrivatePem: strangerKey() };

function corpusPolicy(): string {
  return `
issuer: ${ISSUER}
slack: { team_id: ${TEAM} }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: Europe/Berlin }
  us: { tz: America/New_York }
  apac: { tz: Asia/Singapore }
defaults: { timeout: 30m, on_timeout: deny, approval_valid_for: 15m, max_pending: 100 }
actions:
  payments.refund: { min_risk: high }
agents:
  billing-agent:
    owners: { business: U0BIZ, technical: U0TECH, risk: U0RISK }
    auth: { hmac_secret_env: BILLING_AGENT_SECRET }
    webhook_secret_env: BILLING_AGENT_WEBHOOK_SECRET
    callback_origins: [https://billing.internal]
    allowed_actions: ["payments.*", "crm.read"]
    regions: [eu, us]
    max_pending: 1000
  ops-agent:
    owners: { technical: U0TECH }
    auth: { hmac_secret_env: OPS_AGENT_SECRET }
    allowed_actions: ["ops.*"]
  ${ed.id}:
    owners: { risk: U0RISK }
    auth: { public_key_file: ${JSON.stringify(ed.publicKeyFile)} }
    allowed_actions: ["payments.*"]
    regions: [eu]
routes:
  - name: low-auto
    when: { risk_class: [low], action: ["crm.read"] }
    auto: approve
  - name: big-payouts
    when: { action: ["payments.payout"], details: { "/amount": { gt: 1000 } } }
    approvers: { users: [U0CFO] }
    channel: C0EUAPPROVALS
  - name: eu-high-payments
    when: { risk_class: [high, critical], region: [eu], action: ["payments.*"] }
    approvers: { users: [U0ALICE, U0BOB], groups: [S0FIN], owners: [risk] }
    channel: C0EUAPPROVALS
    quorum: 2
    timeout: 30m
    on_timeout: deny
`;
}

const AUDITOR_TOKEN = `corpus-auditor-${randomUUID()}`;

async function corpusHarness(): Promise<Harness> {
  // Cards are not paced here: pacing is tested elsewhere, and the corpus posts many.
  return startHarness({
    policy: corpusPolicy(),
    env: { SLACK_CHANNEL_RATE: "500", SLACK_CHANNEL_BURST: "500", AUDITOR_TOKENS: AUDITOR_TOKEN },
  });
}

// ---------------------------------------------------------------------------
// State: what a refused case must leave as it was

const VISIBLE = [
  "chat.postMessage",
  "chat.update",
  "chat.delete",
  "views.open",
  "views.push",
  "views.update",
];

interface Snapshot {
  actions: number;
  votes: number;
  records: number;
  cards: number;
  outbox: number;
  spentProofs: number;
  slack: Record<string, number>;
  ephemerals: number;
}

async function count(h: Harness, table: string): Promise<number> {
  const [row] = await h.sql<{ n: number }>(`SELECT count(*) AS n FROM ${table}`);
  return row!.n;
}

async function snapshot(h: Harness): Promise<Snapshot> {
  const slack: Record<string, number> = {};
  for (const m of VISIBLE) slack[m] = h.sim.calls.filter((c) => c.method === m).length;
  return {
    actions: await count(h, "actions"),
    votes: await count(h, "votes"),
    records: await count(h, "records"),
    cards: await count(h, "cards"),
    outbox: await count(h, "outbox"),
    spentProofs: await count(h, "proof_jtis"),
    slack,
    ephemerals: h.sim.calls.filter((c) => c.method === "chat.postEphemeral").length,
  };
}

/**
 * Waits until background work is done: outbox effects, and with `ms`, work that runs
 * after an acknowledgement (Slack handlers answer first and act after).
 */
async function settle(h: Harness, ms = 0): Promise<void> {
  await eventually(
    async () => (await h.app.store.pendingEffectCount(Date.now())) === 0,
    "the outbox to drain",
  );
  if (ms > 0) await sleep(ms);
}

async function lastEvent(
  h: Harness,
  type: string,
): Promise<{ id: number; actor: string; data: Record<string, unknown> } | null> {
  const [row] = await h.sql<{ id: number; actor: string; data_json: string }>(
    "SELECT id, actor, data_json FROM events WHERE type = ? ORDER BY id DESC LIMIT 1",
    type,
  );
  return row ? { id: row.id, actor: row.actor, data: JSON.parse(row.data_json) } : null;
}

/** The runner's own `it`: a known bug must fail, and says why in its name. */
function caseIt(c: CorpusCase, fn: () => Promise<void>, timeout?: number): void {
  const title = `${c.name} (${c.file})`;
  if (c.known_bug !== undefined) it.fails(`[known bug] ${title}`, fn, timeout);
  else it(title, fn, timeout);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------
// Cards: what an accepted hostile request shows

function ownersOf(h: Harness, agentId: string): string[] {
  const owners = h.app.policy.agents[agentId]?.owners ?? {};
  return Object.values(owners).flat() as string[];
}

async function checkCard(h: Harness, actionId: string, e: CardExpect): Promise<void> {
  const card = await h.card(actionId);
  const a = await h.app.store.getAction(actionId);
  const mentions = new Set([...(a?.eligible ?? []), ...ownersOf(h, a!.agentId)]);
  const msg = h.sim.messages(card.channel).find((m) => m.ts === card.ts)!;
  const surface = { blocks: msg.blocks, text: msg.text };
  expect(surfaceProblems(surface, mentions), "the card's own promises").toEqual([]);
  expect(expectationProblems(surface, e, "card"), "what this case says the card shows").toEqual([]);
  if (!e.modal) return;
  const t0 = Date.now();
  const approver = a!.eligible!.find((u) => USERS.some((x) => x.id === u && x.team_id === TEAM))!;
  await h.click(approver, card, ACTION_IDS.viewFull);
  const opened = await h.sim.waitForCall(
    "views.open",
    (c) => c.at >= t0 && (c.args.view as { callback_id?: string }).callback_id === CALLBACK_IDS.viewFull,
  );
  const view = opened.args.view as { blocks: unknown };
  expect(surfaceProblems({ blocks: view.blocks }, mentions), "the modal's own promises").toEqual([]);
  expect(expectationProblems({ blocks: view.blocks }, e, "modal"), "what the modal shows").toEqual([]);
}

/** The action's row in the auditors' CSV export, held to the cells the case names. */
async function checkCsv(h: Harness, actionId: string, cells: Record<string, string>): Promise<void> {
  const r = await fetch(`${h.app.url}/v1/audit/records?format=csv`, {
    headers: { authorization: `Bearer ${AUDITOR_TOKEN}` },
  });
  expect(r.status, "the auditors' CSV export").toBe(200);
  const [header, ...rows] = parseCsv(await r.text());
  const row = rows.find((x) => x[header!.indexOf("action_id")] === actionId);
  expect(row, `a CSV row for ${actionId}`).toBeDefined();
  const got = Object.fromEntries(Object.keys(cells).map((k) => [k, row![header!.indexOf(k)]]));
  expect(got).toEqual(cells);
}

// ---------------------------------------------------------------------------
// HTTP

function autoApproved(agentId: string): Record<string, unknown> {
  return {
    request_id: `corpus-setup-${randomUUID()}`,
    agent_id: agentId,
    action: { type: "crm.read", summary: "Read customer 42" },
    risk_class: "low",
    region: "eu",
    purpose: "Setup for a replay case",
  };
}

/** The fields of an answer (or problem document) the runner reads. */
interface Answer {
  action_id?: string;
  code?: string;
  status?: number;
  detail?: string;
  errors?: { path: string; message: string }[];
}

async function post(
  h: Harness,
  text: string | Uint8Array | undefined,
  authorization: string | null,
  contentType = "application/json",
) {
  const headers: Record<string, string> = { "content-type": contentType };
  if (authorization !== null) headers.authorization = authorization;
  const r = await fetch(`${h.app.url}/v1/actions`, {
    method: "POST",
    headers,
    ...(text === undefined ? {} : { body: text }),
  });
  const raw = await r.text();
  let json: unknown = null;
  try {
    json = raw ? JSON.parse(raw) : null;
  } catch {
    json = { unparseable: raw.slice(0, 200) };
  }
  return { status: r.status, type: r.headers.get("content-type") ?? "", json: (json ?? {}) as Answer };
}

function agentOf(body: unknown): string {
  return isObj(body) && typeof body.agent_id === "string" ? body.agent_id : "billing-agent";
}

/** The proof as minted over `body`; a body no digest can be taken of gets one over null. */
async function safeProof(agentId: string, body: unknown, o: { jti?: string } = {}): Promise<string> {
  try {
    return await validProof(mint, agentId, body, o);
  } catch {
    return validProof(mint, agentId, null, o);
  }
}

async function httpAuthorization(
  h: Harness,
  c: HttpCase,
  body: unknown,
  text: string | Uint8Array,
): Promise<string | null> {
  const agentId = agentOf(body);
  switch (c.token) {
    case "none":
      return null;
    case "basic-auth":
      return `Basic ${Buffer.from(`${agentId}:${BILLING_SECRET_HINT}`).toString("base64")}`;
    case "replayed": {
      const token = await safeProof(agentId, body);
      const first = await post(h, text, `Bearer ${token}`);
      expect(first.status, "the first use of the token (setup) must be accepted").toBeLessThan(300);
      return `Bearer ${token}`;
    }
    case "replayed-jti": {
      const jti = `corpus-jti-${randomUUID()}`;
      const setup = autoApproved(agentId);
      const first = await post(
        h,
        JSON.stringify(setup),
        `Bearer ${await safeProof(agentId, setup, { jti })}`,
      );
      expect(first.status, "the first use of the jti (setup) must be accepted").toBe(201);
      return `Bearer ${await safeProof(agentId, body, { jti })}`;
    }
    case "valid":
      return `Bearer ${await safeProof(agentId, body)}`;
    default:
      return `Bearer ${String(await hostileProof(mint, c.token, agentId, body))}`;
  }
}

// What a confused agent might put in Basic auth; it must not be taken as any credential.
const BILLING_SECRET_HINT = "billing-agent-secret";

/**
 * What is sent, and the value a token is minted over: what a lenient server would read
 * (JSON.parse, and for raw bytes Node's own decoding, which replaces what is not UTF-8),
 * so that only the strictness under test can refuse the case.
 */
function httpBody(c: HttpCase, ids: Ids): { body: unknown; text: string | Uint8Array } {
  const lenient = (text: string): unknown => {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  };
  if (c.bodyText !== undefined) {
    const text = expandText(c.bodyText, ids);
    return { body: lenient(text), text };
  }
  if (c.bodyBytes !== undefined) {
    const bytes = textBytes(expandText(c.bodyBytes, ids));
    return { body: lenient(Buffer.from(bytes).toString("utf8")), text: bytes };
  }
  const body = expand(c.body, ids);
  return { body, text: JSON.stringify(body) };
}

async function runHttp(h: Harness, c: HttpCase): Promise<void> {
  const ids = freshIds();
  for (const step of c.before ?? []) {
    const b = expand(step.body, ids);
    const r = await post(h, JSON.stringify(b), `Bearer ${await safeProof(agentOf(b), b)}`);
    expect(r.status, `setup step ${JSON.stringify(b).slice(0, 80)}`).toBe(step.status);
  }
  const { body, text } = httpBody(c, ids);
  const authorization = await httpAuthorization(h, c, body, text);
  const accepted = c.expect.status < 300;
  await settle(h);
  const before = await snapshot(h);
  const sentAt = performance.now();
  const r = await post(h, text, authorization, c.contentType);
  const tookMs = performance.now() - sentAt;
  expect({ status: r.status, code: r.json?.code }, `answer: ${JSON.stringify(r.json).slice(0, 400)}`).toEqual(
    { status: c.expect.status, code: accepted ? undefined : c.expect.code },
  );
  if (c.expect.within_ms !== undefined) {
    expect(tookMs, `answered within ${c.expect.within_ms} ms`).toBeLessThanOrEqual(c.expect.within_ms);
  }
  await expectHealthy(h);
  if (accepted) {
    if (c.expect.card) await checkCard(h, String(r.json.action_id), c.expect.card);
    if (c.expect.csv) await checkCsv(h, String(r.json.action_id), c.expect.csv);
    return;
  }
  expect(r.type).toContain("application/problem+json");
  expect(r.json).toMatchObject({ status: c.expect.status, code: c.expect.code });
  const detail = r.json.detail ?? "";
  expect(detail.length, "a detail a person can act on").toBeGreaterThan(10);
  if (c.expect.detail !== undefined) expect(detail.toLowerCase()).toContain(c.expect.detail.toLowerCase());
  if (c.expect.paths !== undefined) {
    const errors = r.json.errors ?? [];
    expect(errors.map((e) => e.path)).toEqual(expect.arrayContaining(c.expect.paths));
    for (const e of errors) expect(e.message.length, `message for ${e.path}`).toBeGreaterThan(3);
  }
  await settle(h);
  expect(await snapshot(h), "a refused request changes nothing").toEqual(before);
}

/** After a hostile request the server still answers its health and readiness checks. */
async function expectHealthy(h: Harness): Promise<void> {
  for (const path of ["/healthz", "/readyz"]) {
    const r = await fetch(`${h.app.url}${path}`, { signal: AbortSignal.timeout(5_000) });
    expect({ path, status: r.status }, "the server stays healthy").toEqual({ path, status: 200 });
  }
}

// ---------------------------------------------------------------------------
// Queue

async function queueData(h: Harness, c: QueueCase, ids: Ids): Promise<unknown> {
  if (c.data !== undefined) return expand(c.data, ids);
  if (c.dataText !== undefined) return undefined;
  const req = expand(c.request, ids);
  const agentId = agentOf(req);
  switch (c.proof) {
    case "missing":
      return { request: req };
    case "replayed": {
      const proof = await safeProof(agentId, req);
      await h.queue.add("approval", { request: req, proof });
      await h.actionIdOf(String((req as { request_id: string }).request_id));
      return { request: req, proof };
    }
    case "replayed-jti": {
      const jti = `corpus-jti-${randomUUID()}`;
      const setup = autoApproved(agentId);
      const job = await h.queue.add("approval", {
        request: setup,
        proof: await safeProof(agentId, setup, { jti }),
      });
      await job.waitUntilFinished(h.events, 10_000);
      return { request: req, proof: await safeProof(agentId, req, { jti }) };
    }
    case "valid":
      return { request: req, proof: await safeProof(agentId, req) };
    default:
      return { request: req, proof: await hostileProof(mint, c.proof, agentId, req) };
  }
}

async function runQueue(h: Harness, c: QueueCase): Promise<void> {
  const ids = freshIds();
  const data = await queueData(h, c, ids);
  if (c.expect.accepted) {
    await h.queue.add("approval", data);
    await checkCard(h, await h.actionIdOf(ids.request_id), c.expect.card!);
    return;
  }
  await settle(h);
  const before = await snapshot(h);
  const lastRejected = (await lastEvent(h, "rejected"))?.id ?? 0;
  let job: Awaited<ReturnType<typeof h.queue.add>>;
  if (c.dataText === undefined) job = await h.queue.add("approval", data);
  else {
    // Parked as delayed, its data replaced in Redis, then let go: what the worker reads is
    // exactly the text, whatever BullMQ's client could have written.
    job = await h.queue.add("approval", {}, { delay: 3_600_000 });
    await h.redis.hset(`${h.prefix}:approval-requests:${job.id}`, "data", expandText(c.dataText, ids));
    await job.promote();
  }
  await expect(job.waitUntilFinished(h.events, 10_000)).rejects.toThrow();
  const done = await h.queue.getJob(job.id!);
  expect(done?.failedReason).toMatch(new RegExp(`^${escapeRegExp(c.expect.failedReason!)}`));
  for (const s of c.expect.contains ?? []) expect(done?.failedReason).toContain(s);
  expect(done?.attemptsMade, "a refusal is never retried").toBeLessThanOrEqual(1);
  await settle(h);
  expect(await snapshot(h), "a refused job changes nothing").toEqual(before);
  // A refused job leaves an audit event with its code.
  const ev = await lastEvent(h, "rejected");
  expect(ev?.id ?? 0, "an audit event for the refusal").toBeGreaterThan(lastRejected);
  expect(ev?.data).toMatchObject({ code: c.expect.failedReason!.split(": ")[1], via: "queue" });
  await expectHealthy(h);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// ---------------------------------------------------------------------------
// Slack

interface PendingCard {
  actionId: string;
  channel: string;
  ts: string;
  message: SimMessage;
}

async function pendingCard(h: Harness): Promise<PendingCard> {
  const req = request({ action: { type: "payments.refund", summary: "Refund order 77 (EUR 19.99)" } });
  await h.submit(req);
  const card = await h.card(req.request_id);
  const message = h.sim.messages(card.channel).find((m) => m.ts === card.ts)!;
  return { actionId: card.actionId, channel: card.channel, ts: card.ts, message };
}

function buttonValueOf(card: PendingCard, actionId: string): string {
  const found =
    findElement(card.message.blocks, actionId) ?? findElement(card.message.blocks, ACTION_IDS.approve);
  return String((found!.element as { value?: unknown }).value);
}

function placeholders(s: string, a: PendingCard, b: PendingCard): string {
  return s
    .replaceAll("$other_action_id", b.actionId)
    .replaceAll("$action_id", a.actionId)
    .replaceAll("$channel", a.channel)
    .replaceAll("$ts", a.ts);
}

function slackPayload(c: SlackCase, a: PendingCard, b: PendingCard): Record<string, unknown> {
  const u = USERS.find((x) => x.id === c.user);
  if (!u) throw new Error(`${c.file}: no simulated user ${c.user}`);
  const clicker = { id: u.id, team_id: u.team_id, name: u.name };
  if (c.kind === "view_submission") {
    const meta = JSON.parse(placeholders(JSON.stringify(c.private_metadata ?? {}), a, b)) as unknown;
    return viewSubmissionPayload({
      user: clicker,
      view: {
        id: `V0CORPUS${randomUUID().slice(0, 8).toUpperCase()}`,
        user: u.id,
        view: {
          type: "modal",
          callback_id: c.action_id,
          private_metadata: typeof meta === "string" ? meta : JSON.stringify(meta),
        },
        hash: "corpus.hash",
        root_view_id: "V0CORPUSROOT",
        kind: "modal",
      },
      values: { reason: { reason: { type: "plain_text_input", value: "Not this one" } } },
    });
  }
  const value =
    c.value === "$card"
      ? buttonValueOf(a, c.action_id)
      : c.value === "$other_card"
        ? buttonValueOf(b, c.action_id)
        : placeholders(c.value, a, b);
  const base = c.message === "$other_card" ? b.message : a.message;
  const message = c.message === "unknown" ? { ...base, ts: "1500000000.000100" } : base;
  return blockActionsPayload({
    user: clicker,
    message,
    actionId: c.action_id,
    value,
    triggerId: `${Date.now()}.${randomUUID()}`,
  });
}

async function sendSlack(h: Harness, c: SlackCase, payload: Record<string, unknown>, timestamp: number) {
  if (c.signature === "missing") {
    const r = await fetch(h.slackUrl, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ payload: JSON.stringify(payload) }).toString(),
    });
    return { status: r.status, body: await r.text() };
  }
  return sendSigned("interaction", payload, {
    url: h.slackUrl,
    signingSecret: c.signature === "other-secret" ? "an-old-or-guessed-signing-secret" : SIGNING_SECRET,
    timestamp,
    ...(c.signature === "forged" ? { signatureOverride: `v0=${"0".repeat(64)}` } : {}),
  });
}

async function runSlack(h: Harness, c: SlackCase): Promise<void> {
  const [a, b] = await Promise.all([pendingCard(h), pendingCard(h)]);
  const payload = slackPayload(c, a, b);
  const timestamp = Math.floor(Date.now() / 1000) + c.timestamp_offset_s;
  if (c.replay) {
    const first = await sendSlack(h, c, payload, timestamp);
    expect(first.status, "the original request (setup) is accepted").toBe(200);
    await eventually(
      async () => ((await h.app.store.getAction(a.actionId))?.votes.length ?? 0) === 1,
      "the original click's vote",
    );
  }
  await settle(h);
  const before = await snapshot(h);
  const lastRefusal = (await lastEvent(h, "vote_refused"))?.id ?? 0;
  const t0 = Date.now();
  const r = await sendSlack(h, c, payload, timestamp);
  expect(r.status, `answer: ${r.body.slice(0, 200)}`).toBe(c.expect.status);
  if (c.expect.ephemeral !== undefined) {
    const note = await h.sim.waitForCall("chat.postEphemeral", (x) => x.at >= t0 && x.args.user === c.user);
    expect(String(note.args.text)).toMatch(new RegExp(c.expect.ephemeral, "i"));
  }
  if (c.expect.event_code !== undefined) {
    const ev = await eventually(async () => {
      const e = await lastEvent(h, "vote_refused");
      return e && e.id > lastRefusal ? e : null;
    }, "a vote_refused audit event");
    expect(ev).toMatchObject({ actor: `slack:${c.user}`, data: { code: c.expect.event_code } });
  }
  // Handlers act after their ack: give a wrongly accepted request time to do its damage.
  await settle(h, 250);
  const after = await snapshot(h);
  expect(after, "a refused Slack request changes nothing but its ephemeral note").toEqual({
    ...before,
    ephemerals: before.ephemerals + (c.expect.ephemeral === undefined ? 0 : 1),
  });
  for (const card of [a, b]) {
    const now = await h.app.store.getAction(card.actionId);
    expect(now?.status).toBe("pending");
    expect(now?.votes.length ?? 0).toBe(card === a && c.replay ? 1 : 0);
  }
  await expectHealthy(h);
}

// ---------------------------------------------------------------------------

function refusedFirst<T extends CorpusCase>(list: T[], accepted: (c: T) => boolean): T[] {
  return [...list.filter((c) => !accepted(c)), ...list.filter(accepted)];
}

afterAll(() => {
  fs.rmSync(keyDir, { recursive: true, force: true });
  if (knownBugs.length > 0) {
    console.warn(
      `corpus: ${knownBugs.length} known bug(s):\n${knownBugs.map((c) => `  - ${c.file}: ${c.known_bug}`).join("\n")}`,
    );
  }
});

describe("the hostile-input corpus", () => {
  it("the card checks catch what they promise to catch", () => {
    const allowed = new Set(["U0ALICE"]);
    const md = (text: string) => ({ blocks: [{ type: "section", text: { type: "mrkdwn", text } }] });
    expect(surfaceProblems(md("<!channel> hi"), allowed)).toHaveLength(1);
    expect(surfaceProblems(md("see <https://evil.example|this>"), allowed)).toHaveLength(1);
    expect(surfaceProblems(md("<@U0MALLORY>"), allowed)).toHaveLength(1);
    expect(surfaceProblems({ blocks: [], text: "a \u202E b" }, allowed)).toHaveLength(1);
    expect(
      surfaceProblems(
        { blocks: [{ type: "header", text: { type: "plain_text", text: "x\u200By" } }] },
        allowed,
      ),
    ).toHaveLength(1);
    expect(
      surfaceProblems(md("<@U0ALICE> by <!date^1700000000^{date_short_pretty}|2023-11-14>"), allowed),
    ).toEqual([]);
    expect(
      expectationProblems(
        md(">quoted\n*Approvers:* nobody"),
        { no_line_starts_with: ["*Approvers:*"] },
        "card",
      ),
    ).toHaveLength(1);
    expect(
      expectationProblems(md("&lt;!channel&gt;"), { mrkdwn_contains: ["&lt;!channel&gt;"] }, "card"),
    ).toEqual([]);
  });

  it("holds enough cases for every door", () => {
    const by = (d: string) => cases.filter((c) => c.door === d).length;
    expect(cases.length).toBeGreaterThanOrEqual(60);
    expect(by("http")).toBeGreaterThan(20);
    expect(by("queue")).toBeGreaterThan(5);
    expect(by("slack")).toBeGreaterThan(5);
  });
});

describe("corpus: HTTP API", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await corpusHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });
  const list = cases.filter((c): c is HttpCase => c.door === "http");
  for (const c of refusedFirst(list, (x) => x.expect.status < 300)) caseIt(c, () => runHttp(h, c));
});

describe("corpus: intake queue", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await corpusHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });
  const list = cases.filter((c): c is QueueCase => c.door === "queue");
  for (const c of refusedFirst(list, (x) => x.expect.accepted === true)) caseIt(c, () => runQueue(h, c));
});

describe("corpus: Slack endpoint", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await corpusHarness();
  });
  afterAll(async () => {
    await h?.stop();
  });
  const list = cases.filter((c): c is SlackCase => c.door === "slack");
  for (const c of list) caseIt(c, () => runSlack(h, c), 20_000);
});
