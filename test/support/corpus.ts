/**
 * The hostile-input corpus (test/corpus, format in test/corpus/README.md): loading and
 * checking the case files, expanding their small templates, minting every kind of proof
 * a case can ask for, and judging what a posted card shows.
 *
 * Case files are read strictly: an unknown key or a missing expectation stops the run
 * naming the file, since a misspelt expectation would otherwise be silently ignored and
 * the case could never fail.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { SignJWT } from "jose";
import { requestDigest } from "../../src/domain/canonical.js";
import { mintProof } from "../../src/records/proof.js";
import { BILLING_SECRET, ISSUER, OPS_SECRET } from "./harness.js";

export type Door = "http" | "queue" | "slack";

/** How a case authenticates: see README.md "Tokens and proofs". */
export const TOKEN_KINDS = [
  "valid",
  "none",
  "missing",
  "not-jwt",
  "basic-auth",
  "forged",
  "expired",
  "long-lifetime",
  "future-iat",
  "iat-past-skew",
  "iat-within-skew",
  "lifetime-301",
  "lifetime-300",
  "no-jti",
  "wrong-audience",
  "alg-none",
  "key-confusion",
  "wrong-eddsa-key",
  "eddsa-for-hmac-agent",
  "other-content",
  "other-agent",
  "replayed",
  "replayed-jti",
  "not-a-string",
] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

export interface CardExpect {
  /** Each must appear in the card's mrkdwn texts or its notification text. */
  mrkdwn_contains?: string[];
  /** None may appear in the card's mrkdwn texts or its notification text. */
  mrkdwn_absent?: string[];
  /** Each must appear somewhere in the card (plain_text included). */
  anywhere_contains?: string[];
  /** None may appear anywhere in the card (plain_text included). */
  anywhere_absent?: string[];
  /** No line of any mrkdwn text may start with one of these (agent text passing for ours). */
  no_line_starts_with?: string[];
  /** Open "View full request" and apply the absent checks and the generic ones there too. */
  modal?: boolean;
  /** Each must appear in the "View full request" modal's texts. */
  modal_contains?: string[];
}

interface Common {
  file: string;
  name: string;
  door: Door;
  why?: string;
  known_bug?: string;
}

/** Raw text, or pieces joined: strings and {"$repeat": s, "count": n}. */
export type TextTemplate = string | (string | { $repeat: string; count: number })[];

export interface HttpCase extends Common {
  door: "http";
  body?: unknown;
  bodyText?: TextTemplate;
  /** Like bodyText, then each `\xHH` becomes that one byte (for bytes that are not UTF-8). */
  bodyBytes?: TextTemplate;
  contentType?: string;
  token: TokenKind;
  /** Steps sent first (shared placeholders), each with the status it must get. */
  before?: { body: unknown; status: number }[];
  expect: {
    status: number;
    code?: string;
    paths?: string[];
    detail?: string;
    /** The answer must arrive within this many milliseconds of sending. */
    within_ms?: number;
    card?: CardExpect;
    /**
     * For a request the policy decides at once (no card): cells of its row in the
     * auditors' CSV export, by column, exactly as a spreadsheet would receive them.
     */
    csv?: Record<string, string>;
  };
}

export interface QueueCase extends Common {
  door: "queue";
  request?: unknown;
  /** Raw job data, sent as is (no proof added). */
  data?: unknown;
  /**
   * Job data as raw JSON text, written into the job's Redis hash as any Redis client
   * could, for data that BullMQ's own client cannot serialize (10,000 levels deep).
   */
  dataText?: TextTemplate;
  proof: TokenKind;
  expect: { failedReason?: string; contains?: string[]; accepted?: boolean; card?: CardExpect };
}

export interface SlackCase extends Common {
  door: "slack";
  kind: "click" | "view_submission";
  user: string;
  action_id: string;
  /** "$card", "$other_card", or text where $action_id / $other_action_id are replaced. */
  value: string;
  /** Which message the click claims to come from. */
  message: "$card" | "$other_card" | "unknown";
  signature: "valid" | "forged" | "missing" | "other-secret";
  timestamp_offset_s: number;
  /** Send the identical signed request once (it must count) and then again (the case). */
  replay: boolean;
  /** view_submission only: the modal's private_metadata, placeholders as in `value`. */
  private_metadata?: unknown;
  expect: { status: number; ephemeral?: string; event_code?: string };
}

export type CorpusCase = HttpCase | QueueCase | SlackCase;

const COMMON_KEYS = ["name", "door", "why", "known_bug"];
const ALLOWED: Record<Door, { keys: string[]; expect: string[] }> = {
  http: {
    keys: [...COMMON_KEYS, "body", "bodyText", "bodyBytes", "contentType", "token", "before"],
    expect: ["status", "code", "paths", "detail", "within_ms", "card", "csv"],
  },
  queue: {
    keys: [...COMMON_KEYS, "request", "data", "dataText", "proof"],
    expect: ["failedReason", "contains", "accepted", "card"],
  },
  slack: {
    keys: [
      ...COMMON_KEYS,
      "kind",
      "user",
      "action_id",
      "value",
      "message",
      "signature",
      "timestamp_offset_s",
      "replay",
      "private_metadata",
    ],
    expect: ["status", "ephemeral", "event_code"],
  },
};
const CARD_KEYS = [
  "mrkdwn_contains",
  "mrkdwn_absent",
  "anywhere_contains",
  "anywhere_absent",
  "no_line_starts_with",
  "modal",
  "modal_contains",
];

function fail(file: string, why: string): never {
  throw new Error(`corpus file ${file}: ${why}`);
}

function onlyKeys(file: string, where: string, obj: Record<string, unknown>, keys: string[]): void {
  for (const k of Object.keys(obj)) {
    if (!keys.includes(k)) fail(file, `unknown key "${k}" in ${where}; allowed: ${keys.join(", ")}`);
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads every *.json under `dir` (sorted, so runs are repeatable) and checks its shape. */
export function loadCorpus(dir: string): CorpusCase[] {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".json")) files.push(p);
    }
  };
  walk(dir);
  files.sort();
  const names = new Set<string>();
  return files.map((p) => {
    const file = path.relative(dir, p);
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(p, "utf8"));
    } catch (e) {
      fail(file, `not JSON: ${(e as Error).message}`);
    }
    const c = checkCase(file, raw);
    if (names.has(c.name)) fail(file, `the name "${c.name}" is used by another case`);
    names.add(c.name);
    return c;
  });
}

function checkCase(file: string, raw: unknown): CorpusCase {
  if (!isObj(raw)) fail(file, "a case must be a JSON object");
  const door = raw.door;
  if (door !== "http" && door !== "queue" && door !== "slack")
    fail(file, `door must be http, queue or slack, not ${JSON.stringify(door)}`);
  if (file.split(path.sep)[0] !== door) fail(file, `a ${door} case belongs in the folder ${door}/`);
  if (typeof raw.name !== "string" || raw.name.length < 10) fail(file, "name must say what the case is");
  if (raw.known_bug !== undefined && (typeof raw.known_bug !== "string" || raw.known_bug === ""))
    fail(file, "known_bug must describe the bug");
  onlyKeys(file, "the case", raw, ALLOWED[door].keys.concat("expect"));
  const expect = raw.expect;
  if (!isObj(expect)) fail(file, "expect is required and must be an object");
  onlyKeys(file, "expect", expect, ALLOWED[door].expect);
  if (isObj(expect.card)) onlyKeys(file, "expect.card", expect.card, CARD_KEYS);
  const token = (v: unknown, what: string): TokenKind => {
    const t = v ?? "valid";
    if (!TOKEN_KINDS.includes(t as TokenKind)) fail(file, `${what} ${JSON.stringify(t)} is not a known kind`);
    return t as TokenKind;
  };
  const base = { ...raw, file, name: raw.name, door } as Record<string, unknown>;

  if (door === "http") {
    const given = [raw.body, raw.bodyText, raw.bodyBytes].filter((b) => b !== undefined).length;
    if (given !== 1) fail(file, "give exactly one of body, bodyText and bodyBytes");
    for (const k of ["bodyText", "bodyBytes"] as const) {
      if (raw[k] !== undefined && !isTextTemplate(raw[k]))
        fail(file, `${k} must be a string or a list of strings and {"$repeat": text, "count": n}`);
    }
    if (expect.within_ms !== undefined && (typeof expect.within_ms !== "number" || expect.within_ms <= 0))
      fail(file, "expect.within_ms must be a positive number of milliseconds");
    if (typeof expect.status !== "number") fail(file, "expect.status is required");
    if (expect.status >= 400 && (expect.card || expect.csv))
      fail(file, "a refused request has no card or record to check");
    if (
      expect.csv !== undefined &&
      (!isObj(expect.csv) || !Object.values(expect.csv).every((v) => typeof v === "string"))
    )
      fail(file, "expect.csv must map CSV columns to the exact cell text");
    if (expect.status >= 400 && typeof expect.code !== "string") fail(file, "a refusal must name its code");
    if (expect.status < 300 && !expect.card && !expect.csv)
      fail(file, "an accepted case must say what its card (or, decided at once, its CSV row) shows");
    return { ...base, token: token(raw.token, "token") } as unknown as HttpCase;
  }
  if (door === "queue") {
    const given = [raw.request, raw.data, raw.dataText].filter((d) => d !== undefined).length;
    if (given !== 1) fail(file, "give exactly one of request, data and dataText");
    if (raw.dataText !== undefined && !isTextTemplate(raw.dataText))
      fail(file, `dataText must be a string or a list of strings and {"$repeat": text, "count": n}`);
    if (expect.accepted === true) {
      if (!expect.card) fail(file, "an accepted case must say what its card shows");
    } else if (typeof expect.failedReason !== "string" || !expect.failedReason.startsWith("rejected: ")) {
      fail(file, 'expect.failedReason must start with "rejected: "');
    }
    return { ...base, proof: token(raw.proof, "proof") } as unknown as QueueCase;
  }
  if (typeof expect.status !== "number") fail(file, "expect.status is required");
  const kind = raw.kind ?? "click";
  if (kind !== "click" && kind !== "view_submission") fail(file, "kind must be click or view_submission");
  const message = raw.message ?? "$card";
  if (message !== "$card" && message !== "$other_card" && message !== "unknown")
    fail(file, "message must be $card, $other_card or unknown");
  const signature = raw.signature ?? "valid";
  if (!["valid", "forged", "missing", "other-secret"].includes(signature as string))
    fail(file, "signature must be valid, forged, missing or other-secret");
  return {
    ...base,
    kind,
    user: raw.user ?? "U0ALICE",
    action_id: raw.action_id ?? "cs_approve",
    value: raw.value ?? "$card",
    message,
    signature,
    timestamp_offset_s: raw.timestamp_offset_s ?? 0,
    replay: raw.replay ?? false,
  } as unknown as SlackCase;
}

// ---------------------------------------------------------------------------
// Templates

export interface Ids {
  request_id: string;
  request_id_2: string;
}

export function freshIds(): Ids {
  return { request_id: `corpus-${randomUUID()}`, request_id_2: `corpus-${randomUUID()}` };
}

/**
 * Expands a case's template: "$request_id" / "$request_id_2" strings, and the generators
 * {"$repeat": s, "count": n}, {"$nest": n, "leaf": v} (n objects deep, as the request format counts
 * depth) and {"$array": v, "count": n} ("{i}" in strings replaced by the index).
 */
export function expand(t: unknown, ids: Ids, index?: number): unknown {
  if (typeof t === "string") {
    if (t === "$request_id") return ids.request_id;
    if (t === "$request_id_2") return ids.request_id_2;
    return index === undefined ? t : t.replaceAll("{i}", String(index));
  }
  if (Array.isArray(t)) return t.map((v) => expand(v, ids, index));
  if (!isObj(t)) return t;
  if ("$repeat" in t) {
    if (typeof t.$repeat !== "string" || typeof t.count !== "number")
      throw new Error(`bad $repeat template ${JSON.stringify(t).slice(0, 100)}`);
    return t.$repeat.repeat(t.count);
  }
  if ("$nest" in t) {
    if (typeof t.$nest !== "number" || t.$nest < 1)
      throw new Error(`bad $nest template ${JSON.stringify(t)}`);
    let v: unknown = expand(t.leaf ?? "leaf", ids, index);
    for (let i = 0; i < t.$nest; i++) v = { d: v };
    return v;
  }
  if ("$array" in t) {
    if (typeof t.count !== "number") throw new Error(`bad $array template ${JSON.stringify(t)}`);
    return Array.from({ length: t.count }, (_, i) => expand(t.$array, ids, i));
  }
  return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, expand(v, ids, index)]));
}

function isTextTemplate(t: unknown): t is TextTemplate {
  if (typeof t === "string") return true;
  return (
    Array.isArray(t) &&
    t.every(
      (p) =>
        typeof p === "string" ||
        (isObj(p) &&
          typeof p.$repeat === "string" &&
          typeof p.count === "number" &&
          Object.keys(p).length === 2),
    )
  );
}

export function expandText(text: TextTemplate, ids: Ids): string {
  const joined =
    typeof text === "string"
      ? text
      : text.map((p) => (typeof p === "string" ? p : p.$repeat.repeat(p.count))).join("");
  return joined.replaceAll("$request_id_2", ids.request_id_2).replaceAll("$request_id", ids.request_id);
}

/** The text as UTF-8, except that each `\xHH` in it becomes the single byte HH. */
export function textBytes(text: string): Uint8Array {
  const parts: Buffer[] = [];
  let last = 0;
  for (const m of text.matchAll(/\\x([0-9A-Fa-f]{2})/g)) {
    parts.push(Buffer.from(text.slice(last, m.index), "utf8"), Buffer.from([Number.parseInt(m[1]!, 16)]));
    last = m.index + m[0].length;
  }
  parts.push(Buffer.from(text.slice(last), "utf8"));
  return new Uint8Array(Buffer.concat(parts));
}

// ---------------------------------------------------------------------------
// Agents and proofs

/** An EdDSA agent's key pair, its public half written where the policy can name it. */
export interface EdAgent {
  id: string;
  publicKeyFile: string;
  publicPem: string;
  privatePem: string;
}

export function makeEdAgent(id: string, dir: string): EdAgent {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  const privatePem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const publicKeyFile = path.join(dir, `${id}.pub.pem`);
  fs.writeFileSync(publicKeyFile, publicPem);
  // A sanity check on the fixture itself: the policy loader needs an Ed25519 SPKI key.
  if (createPublicKey(publicPem).asymmetricKeyType !== "ed25519") throw new Error("not an Ed25519 key");
  return { id, publicKeyFile, publicPem, privatePem };
}

const enc = new TextEncoder();

function b64url(obj: unknown): string {
  return Buffer.from(JSON.stringify(obj)).toString("base64url");
}

export interface MintContext {
  ed: EdAgent;
  /** A second Ed25519 key that is not the agent's. */
  strangerPrivatePem: string;
}

/** The proof an agent would send for `request`, signed with its own key. */
export function validProof(
  ctx: MintContext,
  agentId: string,
  request: unknown,
  o: { now?: Date; jti?: string; ttlSeconds?: number } = {},
): Promise<string> {
  const key =
    agentId === ctx.ed.id
      ? { kind: "eddsa-private" as const, privateKeyPem: ctx.ed.privatePem }
      : {
          kind: "hmac" as const,
          secret: enc.encode(
            agentId === "ops-agent"
              ? OPS_SECRET
              : agentId === "billing-agent"
                ? BILLING_SECRET
                : "x".repeat(40),
          ),
        };
  return mintProof({ agentId, audience: ISSUER, key, ...(request === undefined ? {} : { request }), ...o });
}

function claimsFor(agentId: string, request: unknown, now = new Date()) {
  const iat = Math.floor(now.getTime() / 1000);
  return { iss: agentId, aud: ISSUER, iat, exp: iat + 120, jti: randomUUID(), req: requestDigest(request) };
}

/**
 * A proof of the given kind for `request` from `agentId`. Kinds that need state
 * (replayed, replayed-jti) are made by the runner; here they are refused.
 */
export async function hostileProof(
  ctx: MintContext,
  kind: TokenKind,
  agentId: string,
  request: unknown,
): Promise<unknown> {
  switch (kind) {
    case "valid":
      return validProof(ctx, agentId, request);
    case "not-jwt":
      return "nope";
    case "not-a-string":
      return { alg: "none", iss: agentId };
    case "forged":
      return mintProof({
        agentId,
        audience: ISSUER,
        key: { kind: "hmac", secret: enc.encode("an-attacker-guessed-secret-of-40-bytes!!") },
        request,
      });
    case "expired":
      return validProof(ctx, agentId, request, { now: new Date(Date.now() - 10 * 60_000) });
    case "long-lifetime":
      return validProof(ctx, agentId, request, { ttlSeconds: 3600 });
    case "future-iat":
      return validProof(ctx, agentId, request, { now: new Date(Date.now() + 10 * 60_000) });
    // The clock rules' edges: 30 s of skew is allowed, so 45 s ahead is refused and 15 s
    // ahead is not (margins a slow run cannot cross); a lifetime of 300 s is the most.
    case "iat-past-skew":
      return validProof(ctx, agentId, request, { now: new Date(Date.now() + 45_000) });
    case "iat-within-skew":
      return validProof(ctx, agentId, request, { now: new Date(Date.now() + 15_000) });
    case "lifetime-301":
      return validProof(ctx, agentId, request, { ttlSeconds: 301 });
    case "lifetime-300":
      return validProof(ctx, agentId, request, { ttlSeconds: 300 });
    case "no-jti": {
      const { jti: _dropped, ...claims } = claimsFor(agentId, request);
      const jwt = new SignJWT(claims);
      return agentId === ctx.ed.id
        ? jwt.setProtectedHeader({ alg: "EdDSA", typ: "JWT" }).sign(createPrivateKey(ctx.ed.privatePem))
        : jwt
            .setProtectedHeader({ alg: "HS256", typ: "JWT" })
            .sign(enc.encode(agentId === "ops-agent" ? OPS_SECRET : BILLING_SECRET));
    }
    case "wrong-audience":
      return new SignJWT({ ...claimsFor(agentId, request), aud: "https://other-countersign.example" })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .sign(enc.encode(BILLING_SECRET));
    case "alg-none":
      return `${b64url({ alg: "none", typ: "JWT" })}.${b64url(claimsFor(agentId, request))}.`;
    case "key-confusion":
      // The classic: the verifier's public key PEM, used as an HMAC secret.
      return new SignJWT(claimsFor(agentId, request))
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .sign(enc.encode(ctx.ed.publicPem));
    case "wrong-eddsa-key":
    case "eddsa-for-hmac-agent":
      return mintProof({
        agentId,
        audience: ISSUER,
        key: { kind: "eddsa-private", privateKeyPem: ctx.strangerPrivatePem },
        request,
      });
    case "other-content":
      return validProof(ctx, agentId, {
        ...(request as object),
        purpose: "something the approvers never saw",
      });
    case "other-agent":
      return validProof(ctx, agentId === "ops-agent" ? "billing-agent" : "ops-agent", request);
    default:
      throw new Error(`the runner makes ${kind} proofs itself`);
  }
}

export function strangerKey(): string {
  return generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

// ---------------------------------------------------------------------------
// What a card shows

/** Every mrkdwn text object's text, where Slack interprets markup. */
export function mrkdwnTexts(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(mrkdwnTexts);
  if (isObj(node)) {
    const own = node.type === "mrkdwn" && typeof node.text === "string" ? [node.text] : [];
    return [...own, ...Object.values(node).flatMap(mrkdwnTexts)];
  }
  return [];
}

/** Every string in a Block Kit surface, keys left out. */
export function allStrings(node: unknown): string[] {
  if (typeof node === "string") return [node];
  if (Array.isArray(node)) return node.flatMap(allStrings);
  if (isObj(node)) return Object.values(node).flatMap(allStrings);
  return [];
}

const DATE_TOKEN = /^<!date\^\d+\^[^|>]*\|[^<>]*>$/;
const MENTION = /^<@([UW][A-Z0-9]+)>$/;
// What must never reach a reader raw: bidi controls, zero-width and other invisible
// characters, C0/C1 controls other than newline and tab. Variation selectors may stay.
const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\p{Cc}\u2028\u2029]/u;
function kept(cp: number): boolean {
  return (
    cp === 0x0a ||
    cp === 0x09 ||
    (cp >= 0xfe00 && cp <= 0xfe0f) ||
    (cp >= 0x180b && cp <= 0x180d) ||
    cp === 0x180f ||
    (cp >= 0xe0100 && cp <= 0xe01ef)
  );
}

/**
 * What the card's own promises rule out, whatever the input: in mrkdwn and the fallback
 * text, the only `<...>` tokens are mentions of `allowedMentions` and our date tokens;
 * nowhere is an invisible or reordering character passed through raw.
 */
export function surfaceProblems(
  surface: { blocks: unknown; text?: string },
  allowedMentions: ReadonlySet<string>,
): string[] {
  const problems: string[] = [];
  const interpreted = [...mrkdwnTexts(surface.blocks), ...(surface.text === undefined ? [] : [surface.text])];
  for (const t of interpreted) {
    for (const m of t.matchAll(/<[^>]*>?/g)) {
      const tok = m[0];
      const mention = MENTION.exec(tok);
      if (mention && allowedMentions.has(mention[1]!)) continue;
      if (DATE_TOKEN.test(tok)) continue;
      problems.push(`raw markup ${JSON.stringify(tok.slice(0, 80))} in mrkdwn`);
    }
  }
  for (const s of [...allStrings(surface.blocks), surface.text ?? ""]) {
    for (const ch of s) {
      if (INVISIBLE.test(ch) && !kept(ch.codePointAt(0)!)) {
        problems.push(
          `raw U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")} passed through`,
        );
      }
    }
  }
  return problems;
}

/** The checks a case names, on a surface; returns what failed. */
export function expectationProblems(
  surface: { blocks: unknown; text?: string },
  e: CardExpect,
  which: "card" | "modal",
): string[] {
  const interpreted = [...mrkdwnTexts(surface.blocks), surface.text ?? ""].join("\n");
  const anywhere = [...allStrings(surface.blocks), surface.text ?? ""].join("\n");
  const problems: string[] = [];
  const contains = which === "card" ? (e.mrkdwn_contains ?? []) : (e.modal_contains ?? []);
  for (const s of contains)
    if (!interpreted.includes(s)) problems.push(`${which} mrkdwn lacks ${JSON.stringify(s)}`);
  for (const s of e.mrkdwn_absent ?? [])
    if (interpreted.includes(s)) problems.push(`${which} mrkdwn shows ${JSON.stringify(s)}`);
  if (which === "card")
    for (const s of e.anywhere_contains ?? [])
      if (!anywhere.includes(s)) problems.push(`card lacks ${JSON.stringify(s)}`);
  for (const s of e.anywhere_absent ?? [])
    if (anywhere.includes(s)) problems.push(`${which} shows ${JSON.stringify(s)}`);
  for (const s of e.no_line_starts_with ?? []) {
    for (const line of interpreted.split("\n")) {
      if (line.startsWith(s)) problems.push(`a ${which} line starts with agent text ${JSON.stringify(s)}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------
// CSV, read back as a spreadsheet would

/** An RFC 4180 reader (quoted fields, doubled quotes, CRLF rows), apart from the writer. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\r" && text[i + 1] === "\n") {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
      i++;
    } else cell += c;
  }
  if (quoted) throw new Error("unterminated quoted CSV field");
  return rows;
}
