/**
 * Offline verification of an export (`countersign audit verify`). Trusts nothing but the
 * JWKS (and a checkpoint, when given): for every line, in order,
 *
 * 1. the record's signature, by its `kid` (`alg` EdDSA, `typ` decision+jwt);
 * 2. the line's decoded fields against the signed claims, and `request` against
 *    `action_sha256` (RFC 8785, SHA-256);
 * 3. its place: seq runs 1, 2, 3... with omitted lines standing in for filtered records;
 * 4. the link: `prev` is the SHA-256 of the previous line's record (or that omitted
 *    line's `record_sha256`), null for seq 1;
 * 5. with a checkpoint, record `seq`'s digest equals its `head`, and the export reaches it.
 *
 * Receipts (redeemed, outcome, revoked) are entries of the same chain and get the same
 * checks (`typ` receipt+jwt), and then the rules of what may happen to an approval
 * (docs/audit.md): each names an approved decision earlier in the log, by its id and the
 * digest of its JWS; no decision is redeemed twice, after its revocation, or at or after
 * its `valid_until`; none has two outcomes, nor an outcome from anyone but its redeemer
 * (the agent only when nothing redeemed it); none is revoked twice. The log's order is
 * the order of commits, so "after" means a higher seq. To apply them verify remembers
 * every approval it has passed: memory grows with the approvals in the export, about a
 * hundred bytes each.
 *
 * Passkey registrations (`passkey_registered`) are receipts about no action: they get
 * steps 1 to 4, and verify remembers each credential with its user (memory grows with the
 * passkeys registered, a few hundred bytes each). Every vote of a decision that carries
 * `step_up` is then checked offline (src/audit/step-up.ts): the key was registered to that
 * voter by an earlier entry, it signed the assertion, whose challenge names this action,
 * person and a level of it, at the expected origin with UP and UV set. The expected origin
 * is PUBLIC_URL's (`publicUrl`); without it, every assertion in the export must name one
 * and the same origin, which the report gives so a person can judge it.
 *
 * The first failure ends the run and names its seq and reason. A seq that jumps ahead is
 * told apart from a swap by reading on: if a missing seq turns up later, the lines were
 * reordered; if not, records were dropped.
 *
 * Synchronous per line: the only awaits are for chunks of input, so the cost is the
 * signature check and one hash per record.
 */
import { canonicalJson, requestDigest } from "../domain/canonical.js";
import { publicUrlProblem, webAuthnRelyingParty } from "../domain/step-up.js";
import { RECEIPT_KINDS, type ReceiptKind } from "../domain/types.js";
import { jwsDigest, type PublicJwk, verifyJws } from "../records/signing.js";
import type { Checkpoint } from "./checkpoint.js";
import { LINE_FIELDS, lineFields, receiptLineFields } from "./export.js";
import { checkStepUp, passkeyPublicKey, type RegisteredPasskey } from "./step-up.js";

export type FailureReason =
  /** A line that is not an export line at all. */
  | "malformed"
  /** Signed with a key the JWKS does not hold (re-signed by someone else, or the wrong JWKS). */
  | "unknown_key"
  /** The JWS does not verify: its payload or header was changed after signing. */
  | "bad_signature"
  /** A field of the line, or its request, differs from what the record signed. */
  | "edited_claim"
  /** seq jumps ahead and the missing records never appear. */
  | "record_dropped"
  /** A seq appears out of its place. */
  | "reordered"
  /** `prev` does not match the previous record: the log was spliced or an omitted line forged. */
  | "broken_chain"
  /** The checkpoint does not verify, or the log does not match it. */
  | "checkpoint_mismatch"
  /** A receipt names a decision that is not an approved decision earlier in the export. */
  | "unknown_decision"
  /** A receipt's decision_sha256, action, agent or issuer differ from the decision it names. */
  | "decision_mismatch"
  /** A second redemption of one decision: the approval was used twice. */
  | "redeemed_twice"
  /** A redemption after the decision's revocation. */
  | "redeemed_after_revocation"
  /** A redemption at or after the decision's valid_until. */
  | "redeemed_after_expiry"
  /** A second outcome for one decision. */
  | "two_outcomes"
  /** An outcome reported by someone other than the executor that redeemed it (or the agent, when nothing did). */
  | "outcome_not_by_redeemer"
  /** A second revocation of one decision. */
  | "revoked_twice"
  /** A vote's step_up assertion fails one of its checks (the message names the vote's user and the check). */
  | "bad_step_up"
  /** A passkey_registered entry lacks a user, team or credential, or its key is not a usable public key, or re-registers a credential. */
  | "bad_passkey_registration";

export interface VerifySuccess {
  readonly ok: true;
  /** Entries checked in full: decisions and receipts. */
  readonly records: number;
  /** Decision records checked in full. */
  readonly decisions: number;
  /** Receipts checked in full. */
  readonly receipts: number;
  /** Omitted lines (records a filter left out): their links are checked, their content is not in the file. */
  readonly omitted: number;
  readonly lastSeq: number;
  /** base64url SHA-256 of the last record (the value a checkpoint's `head` would hold). */
  readonly head: string | null;
  /**
   * False when the last line is an omitted one: its record_sha256 is then only the
   * export's word, until a checkpoint at that seq confirms it.
   */
  readonly headConfirmed: boolean;
  /** Records per signing key. */
  readonly kids: Readonly<Record<string, number>>;
  readonly checkpoint: Checkpoint | null;
  /** Votes whose step_up assertion was checked in full. */
  readonly stepUps: number;
  /**
   * The origin every step-up assertion was made at (null when there were none). Checked
   * against PUBLIC_URL when one was given (`stepUpOriginGiven`); otherwise only agreed on
   * by all of them, so a person must judge it.
   */
  readonly stepUpOrigin: string | null;
  readonly stepUpOriginGiven: boolean;
}

export interface VerifyFailure {
  readonly ok: false;
  /** The first bad seq; null only when no seq can be named (e.g. the first line is not JSON). */
  readonly seq: number | null;
  /** 1-based line of the file where it was found. */
  readonly line: number | null;
  readonly reason: FailureReason;
  readonly message: string;
}

export type VerifyReport = VerifySuccess | VerifyFailure;

export interface VerifyOptions {
  readonly jwks: readonly PublicJwk[];
  /** An already verified checkpoint (see verifyCheckpoint): the export must reach and match it. */
  readonly checkpoint?: Checkpoint | null;
  /**
   * PUBLIC_URL of the installation: step-up assertions must be made at its origin. Absent:
   * they must all name one origin, reported as `stepUpOrigin`.
   */
  readonly publicUrl?: string | null;
}

const FULL_LINE_KEYS = new Set<string>([...LINE_FIELDS, "record", "request"]);
/** Exports made before receipts have no `kind` on decision lines; they still verify. */
const OPTIONAL_LINE_KEYS = new Set<string>(["kind"]);
const DIGEST = /^[A-Za-z0-9_-]{43}$/;

/** What verify remembers of an approved decision, to judge the receipts that name it. */
interface Approval {
  readonly seq: number;
  readonly digest: string;
  readonly iss: unknown;
  readonly sub: unknown;
  readonly actionId: unknown;
  /** Unix ms; NaN when the record has none (then every redemption is late). */
  readonly validUntil: number;
  redeemed: { readonly seq: number; readonly executor: string } | null;
  revokedSeq: number | null;
  outcomeSeq: number | null;
}

class Failure extends Error {
  constructor(
    readonly seq: number | null,
    readonly reason: FailureReason,
    message: string,
  ) {
    super(message);
  }
}

interface Gap {
  /** First and last missing seq. */
  readonly from: number;
  readonly to: number;
  /** Where the jump was seen. */
  readonly line: number;
  readonly found: number;
}

/** Verifies an export fed line by line; see the module comment for what is checked. */
export class ExportVerifier {
  private lineNo = 0;
  private expected = 1;
  private prevDigest: string | null = null;
  private prevOmitted = false;
  private decisions = 0;
  private receipts = 0;
  private omitted = 0;
  private readonly approvals = new Map<string, Approval>();
  private readonly kids: Record<string, number> = {};
  private readonly knownKids: Set<string>;
  private gap: Gap | null = null;
  private failure: VerifyFailure | null = null;
  /** Credentials registered so far, by credential id. */
  private readonly passkeys = new Map<string, RegisteredPasskey>();
  private stepUps = 0;
  /** The expected origin, from publicUrl; or the first assertion's, with its seq. */
  private readonly originGiven: string | null;
  private originSeen: { origin: string; seq: number } | null = null;

  constructor(private readonly opts: VerifyOptions) {
    this.knownKids = new Set(opts.jwks.map((k) => k.kid));
    const url = opts.publicUrl ?? null;
    if (url !== null) {
      const problem = publicUrlProblem(url);
      if (problem !== null) throw new Error(`publicUrl: ${problem}`);
    }
    this.originGiven = url === null ? null : webAuthnRelyingParty(url).origin;
  }

  /** Feeds one line (without its newline). Returns false once the outcome is a failure: stop feeding. */
  push(text: string): boolean {
    if (this.failure) return false;
    this.lineNo++;
    const line = text.endsWith("\r") ? text.slice(0, -1) : text;
    if (line.trim() === "") return true;
    try {
      if (this.gap) this.lookForMissing(line);
      else this.check(line);
    } catch (e) {
      if (!(e instanceof Failure)) throw e;
      this.failure = { ok: false, seq: e.seq, line: this.lineNo, reason: e.reason, message: e.message };
    }
    return this.failure === null;
  }

  /** The outcome, once every line has been fed. */
  finish(): VerifyReport {
    if (this.failure) return this.failure;
    if (this.gap) {
      const { from, to, line, found } = this.gap;
      const which = from === to ? `seq ${from} is` : `seq ${from} to ${to} are`;
      return {
        ok: false,
        seq: from,
        line,
        reason: "record_dropped",
        message: `${which} missing: line ${line} jumps to seq ${found} after seq ${from - 1}, with no omitted line in between (a filtered export marks each left-out record with one)`,
      };
    }
    const lastSeq = this.expected - 1;
    const cp = this.opts.checkpoint ?? null;
    if (cp && cp.seq > lastSeq) {
      return {
        ok: false,
        seq: lastSeq + 1,
        line: null,
        reason: "record_dropped",
        message: `the export ends at seq ${lastSeq}, but the checkpoint covers the log up to seq ${cp.seq}: records ${lastSeq + 1} to ${cp.seq} are missing from the end`,
      };
    }
    return {
      ok: true,
      records: this.decisions + this.receipts,
      decisions: this.decisions,
      receipts: this.receipts,
      omitted: this.omitted,
      lastSeq,
      head: this.prevDigest,
      headConfirmed: !this.prevOmitted || cp?.seq === lastSeq,
      kids: { ...this.kids },
      checkpoint: cp,
      stepUps: this.stepUps,
      stepUpOrigin: this.originGiven ?? this.originSeen?.origin ?? null,
      stepUpOriginGiven: this.originGiven !== null,
    };
  }

  private check(text: string): void {
    const expected = this.expected;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      throw new Failure(
        expected,
        "malformed",
        `line ${this.lineNo} is not JSON (verify reads the JSONL export)`,
      );
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      throw new Failure(expected, "malformed", `line ${this.lineNo} is not a JSON object`);
    }
    const line = obj as Record<string, unknown>;
    const seq = line["seq"];
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) {
      throw new Failure(expected, "malformed", `line ${this.lineNo} has no seq (a whole number from 1)`);
    }
    const digest =
      line["omitted"] === true
        ? this.omittedLine(line, seq)
        : "receipt" in line
          ? this.receiptLine(line, seq)
          : this.fullLine(line, seq);
    if (digest === null) return;
    const cp = this.opts.checkpoint;
    if (cp && cp.seq === seq && cp.head !== digest) {
      throw new Failure(
        seq,
        "checkpoint_mismatch",
        `record seq ${seq} hashes to ${digest}, but the checkpoint (signed ${new Date(cp.iat * 1000).toISOString()}) says ${cp.head}: the log up to seq ${seq} was rewritten after the checkpoint`,
      );
    }
    this.prevDigest = digest;
    this.expected = seq + 1;
  }

  private omittedLine(line: Record<string, unknown>, seq: number): string | null {
    for (const k of Object.keys(line)) {
      if (k !== "seq" && k !== "record_sha256" && k !== "omitted") {
        throw new Failure(
          seq,
          "malformed",
          `the omitted line for seq ${seq} has a field ${k}, which omitted lines do not carry`,
        );
      }
    }
    const digest = line["record_sha256"];
    if (typeof digest !== "string" || !DIGEST.test(digest)) {
      throw new Failure(
        seq,
        "malformed",
        `the omitted line for seq ${seq} has no record_sha256 (base64url SHA-256)`,
      );
    }
    if (!this.inPlace(seq)) return null;
    // An omitted record's own prev is not in the file; the next full record's prev
    // checks this line's record_sha256 instead.
    this.prevOmitted = true;
    this.omitted++;
    return digest;
  }

  private fullLine(line: Record<string, unknown>, seq: number): string | null {
    for (const k of FULL_LINE_KEYS) {
      if (!(k in line) && !OPTIONAL_LINE_KEYS.has(k)) {
        throw new Failure(seq, "malformed", `the line for seq ${seq} has no ${k}`);
      }
    }
    for (const k of Object.keys(line)) {
      // Anything beside the record is trusted only because verify compares it with the
      // record; a field it cannot compare could say anything.
      if (!FULL_LINE_KEYS.has(k)) {
        throw new Failure(
          seq,
          "edited_claim",
          `the line for seq ${seq} has a field ${k} that no record signs`,
        );
      }
    }
    const jws = line["record"];
    if (typeof jws !== "string")
      throw new Failure(seq, "malformed", `the line for seq ${seq}: record is not a JWS`);

    // 1. Signature.
    const { kid, claims } = this.signed(jws, seq, "record", "decision+jwt");

    // 2. Claims.
    if (claims["seq"] !== seq) {
      throw new Failure(
        seq,
        "edited_claim",
        `the line says seq ${seq}, but its record was signed as seq ${String(claims["seq"])}`,
      );
    }
    const signed = lineFields(claims);
    for (const k of LINE_FIELDS) {
      if (k === "seq" || (OPTIONAL_LINE_KEYS.has(k) && !(k in line))) continue;
      const a = line[k];
      const b = signed[k];
      const same = Array.isArray(b)
        ? Array.isArray(a) && a.length === b.length && a.every((x, i) => x === b[i])
        : a === b;
      if (!same) {
        throw new Failure(
          seq,
          "edited_claim",
          `the line for seq ${seq} says ${k} ${JSON.stringify(a)}, but the record signed ${JSON.stringify(b)}`,
        );
      }
    }
    let actual: string;
    try {
      actual = requestDigest(line["request"]);
    } catch (e) {
      throw new Failure(
        seq,
        "edited_claim",
        `the request for seq ${seq} is not JSON-canonicalizable: ${(e as Error).message}`,
      );
    }
    if (actual !== claims["action_sha256"]) {
      throw new Failure(
        seq,
        "edited_claim",
        `the request for seq ${seq} hashes to ${actual}, but the record signed action_sha256 ${String(claims["action_sha256"])}: the request was edited`,
      );
    }

    // 3. Place, 4. link.
    if (!this.linked(seq, claims, "record")) return null;
    // 5. Step-up assertions, against the passkeys registered before this seq.
    this.checkStepUps(seq, claims);
    const digest = jwsDigest(jws);
    if (claims["verdict"] === "approved") {
      const until = claims["valid_until"];
      this.approvals.set(String(claims["jti"]), {
        seq,
        digest,
        iss: claims["iss"],
        sub: claims["sub"],
        actionId: claims["action_id"],
        validUntil: typeof until === "string" ? Date.parse(until) : Number.NaN,
        redeemed: null,
        revokedSeq: null,
        outcomeSeq: null,
      });
    }
    this.decisions++;
    this.kids[kid] = (this.kids[kid] ?? 0) + 1;
    return digest;
  }

  /** Steps 1 to 4 for a receipt, then the rules of what may happen to an approval. */
  private receiptLine(line: Record<string, unknown>, seq: number): string | null {
    const jws = line["receipt"];
    if (typeof jws !== "string")
      throw new Failure(seq, "malformed", `the line for seq ${seq}: receipt is not a JWS`);

    // 1. Signature.
    const { kid, claims } = this.signed(jws, seq, "receipt", "receipt+jwt");

    // 2. Claims: the line shows exactly the fields the receipt signs, with their values.
    if (claims["seq"] !== seq) {
      throw new Failure(
        seq,
        "edited_claim",
        `the line says seq ${seq}, but its receipt was signed as seq ${String(claims["seq"])}`,
      );
    }
    const shown = receiptLineFields(claims);
    for (const k of Object.keys(line)) {
      if (k !== "seq" && k !== "receipt" && !(k in shown)) {
        throw new Failure(
          seq,
          "edited_claim",
          `the line for seq ${seq} has a field ${k} that its receipt does not sign`,
        );
      }
    }
    for (const [k, b] of Object.entries(shown)) {
      if (!(k in line)) throw new Failure(seq, "malformed", `the line for seq ${seq} has no ${k}`);
      const a = line[k];
      if (!sameJson(a, b)) {
        throw new Failure(
          seq,
          "edited_claim",
          `the line for seq ${seq} says ${k} ${JSON.stringify(a)}, but the receipt signed ${JSON.stringify(b)}`,
        );
      }
    }
    const kind = claims["kind"];
    if (!RECEIPT_KINDS.includes(kind as ReceiptKind)) {
      throw new Failure(
        seq,
        "malformed",
        `receipt seq ${seq} has kind ${JSON.stringify(kind)}; this verifier knows ${RECEIPT_KINDS.join(", ")}`,
      );
    }
    const at = typeof claims["at"] === "string" ? Date.parse(claims["at"]) : Number.NaN;
    if (Number.isNaN(at)) {
      throw new Failure(seq, "malformed", `receipt seq ${seq} has no at (an ISO 8601 time)`);
    }

    // 3. Place, 4. link.
    if (!this.linked(seq, claims, "receipt")) return null;

    // 5. A passkey for later step-up votes, or what may happen to an approval.
    if (kind === "passkey_registered") this.registerPasskey(seq, claims);
    else this.applyReceipt(seq, kind as ReceiptKind, claims, at);
    this.receipts++;
    this.kids[kid] = (this.kids[kid] ?? 0) + 1;
    return jwsDigest(jws);
  }

  private applyReceipt(seq: number, kind: ReceiptKind, claims: Record<string, unknown>, at: number): void {
    const id = String(claims["decision"]);
    const a = typeof claims["decision"] === "string" ? this.approvals.get(id) : undefined;
    if (a === undefined) {
      throw new Failure(
        seq,
        "unknown_decision",
        `${kind} receipt seq ${seq} names decision ${JSON.stringify(claims["decision"])}, which is not an approved decision earlier in this export`,
      );
    }
    if (claims["decision_sha256"] !== a.digest) {
      throw new Failure(
        seq,
        "decision_mismatch",
        `${kind} receipt seq ${seq} signed decision_sha256 ${String(claims["decision_sha256"])}, but decision ${id} (seq ${a.seq}) hashes to ${a.digest}`,
      );
    }
    for (const [claim, value] of [
      ["action_id", a.actionId],
      ["sub", a.sub],
      ["iss", a.iss],
    ] as const) {
      if (claims[claim] !== value) {
        throw new Failure(
          seq,
          "decision_mismatch",
          `${kind} receipt seq ${seq} says ${claim} ${JSON.stringify(claims[claim])}, but decision ${id} (seq ${a.seq}) signed ${JSON.stringify(value)}`,
        );
      }
    }
    const by = (typeof claims["by"] === "object" && claims["by"] !== null ? claims["by"] : {}) as Record<
      string,
      unknown
    >;
    switch (kind) {
      case "redeemed": {
        if (a.redeemed !== null) {
          throw new Failure(
            seq,
            "redeemed_twice",
            `decision ${id} (seq ${a.seq}) is redeemed again at seq ${seq}, after its redemption at seq ${a.redeemed.seq}: an approval covers one execution`,
          );
        }
        if (a.revokedSeq !== null) {
          throw new Failure(
            seq,
            "redeemed_after_revocation",
            `decision ${id} (seq ${a.seq}) is redeemed at seq ${seq}, after its revocation at seq ${a.revokedSeq}`,
          );
        }
        if (!(at < a.validUntil)) {
          throw new Failure(
            seq,
            "redeemed_after_expiry",
            `decision ${id} (seq ${a.seq}) is redeemed at ${String(claims["at"])}, not before its valid_until ${Number.isNaN(a.validUntil) ? "(none signed)" : new Date(a.validUntil).toISOString()}`,
          );
        }
        a.redeemed = { seq, executor: String(by["executor"]) };
        return;
      }
      case "outcome": {
        if (a.outcomeSeq !== null) {
          throw new Failure(
            seq,
            "two_outcomes",
            `decision ${id} (seq ${a.seq}) has a second outcome at seq ${seq}, after the one at seq ${a.outcomeSeq}`,
          );
        }
        const ok =
          typeof by["executor"] === "string"
            ? a.redeemed !== null && a.redeemed.executor === by["executor"]
            : typeof by["agent"] === "string" && by["agent"] === a.sub && a.redeemed === null;
        if (!ok) {
          throw new Failure(
            seq,
            "outcome_not_by_redeemer",
            `the outcome at seq ${seq} for decision ${id} is by ${JSON.stringify(by)}, but ${a.redeemed ? `executor ${JSON.stringify(a.redeemed.executor)} redeemed it (seq ${a.redeemed.seq})` : `nothing redeemed it, so only its agent ${JSON.stringify(a.sub)} may report`}`,
          );
        }
        a.outcomeSeq = seq;
        return;
      }
      case "revoked": {
        if (a.revokedSeq !== null) {
          throw new Failure(
            seq,
            "revoked_twice",
            `decision ${id} (seq ${a.seq}) is revoked again at seq ${seq}, after its revocation at seq ${a.revokedSeq}`,
          );
        }
        a.revokedSeq = seq;
        return;
      }
    }
  }

  /** Remembers a registered credential for the step-up votes after it. */
  private registerPasskey(seq: number, claims: Record<string, unknown>): void {
    const bad = (message: string): Failure =>
      new Failure(seq, "bad_passkey_registration", `passkey_registered seq ${seq}: ${message}`);
    const { user, team, credential_id: id, public_key: jwk } = claims;
    if (typeof user !== "string" || user === "") throw bad("has no user");
    if (typeof team !== "string" || team === "") throw bad("has no team");
    if (typeof id !== "string" || !/^[A-Za-z0-9_-]+$/.test(id)) throw bad("has no credential_id (base64url)");
    const key = passkeyPublicKey(jwk);
    if ("problem" in key) throw bad(`its public_key ${key.problem}`);
    const earlier = this.passkeys.get(id);
    if (earlier !== undefined) {
      // A credential belongs to one authenticator and one person: a second registration
      // of it (to another user, or with another key) would let the log rewrite whose it is.
      throw bad(
        `credential ${id} was already registered to ${earlier.user} at seq ${earlier.seq}; a credential is registered once`,
      );
    }
    this.passkeys.set(id, { user, team, publicKey: jwk as RegisteredPasskey["publicKey"], seq });
  }

  /** Every vote of a decision that carries step_up, checked offline (src/audit/step-up.ts). */
  private checkStepUps(seq: number, claims: Record<string, unknown>): void {
    const votes = Array.isArray(claims["votes"]) ? (claims["votes"] as unknown[]) : [];
    const route = (claims["route"] ?? {}) as { escalation_level?: unknown };
    votes.forEach((raw, i) => {
      if (typeof raw !== "object" || raw === null || !("step_up" in raw)) return;
      const vote = raw as { user?: unknown; team?: unknown; revision?: unknown; step_up: unknown };
      const who = `the vote by ${String(vote.user)} (votes[${i}])`;
      const level = route.escalation_level;
      if (
        typeof vote.user !== "string" ||
        typeof level !== "number" ||
        !Number.isSafeInteger(level) ||
        level < 0
      ) {
        throw new Failure(
          seq,
          "bad_step_up",
          `record seq ${seq}: ${who} has step_up, but the record names no user or escalation level to check it against`,
        );
      }
      const r = checkStepUp(
        { user: vote.user, team: vote.team, revision: vote.revision, step_up: vote.step_up },
        {
          action_id: String(claims["action_id"]),
          action_sha256: String(claims["action_sha256"]),
          ...(typeof claims["original_sha256"] === "string"
            ? { original_sha256: claims["original_sha256"] }
            : {}),
          escalation_level: level,
        },
        this.passkeys,
        this.originGiven,
      );
      if (!r.ok) {
        throw new Failure(
          seq,
          "bad_step_up",
          `record seq ${seq}: ${who}: step_up check ${r.check} failed: ${r.message}`,
        );
      }
      if (this.originGiven === null) {
        if (this.originSeen === null) this.originSeen = { origin: r.origin, seq };
        else if (this.originSeen.origin !== r.origin) {
          throw new Failure(
            seq,
            "bad_step_up",
            `record seq ${seq}: ${who}: step_up check origin failed: the assertion was made at ${r.origin}, but the one at seq ${this.originSeen.seq} at ${this.originSeen.origin}; pass --public-url to say which is the installation's`,
          );
        }
      }
      this.stepUps++;
    });
  }

  /** Step 1 for either kind of entry: the key by kid, then the signature with the expected typ. */
  private signed(
    jws: string,
    seq: number,
    what: "record" | "receipt",
    typ: "decision+jwt" | "receipt+jwt",
  ): { kid: string; claims: Record<string, unknown> } {
    const kid = headerKid(jws);
    if (kid === undefined) {
      throw new Failure(seq, "malformed", `the ${what} for seq ${seq} is not a compact JWS with a kid`);
    }
    if (!this.knownKids.has(kid)) {
      throw new Failure(
        seq,
        "unknown_key",
        `${what} seq ${seq} is signed with key ${kid}, which is not in the JWKS (it holds ${[...this.knownKids].join(", ") || "no keys"})`,
      );
    }
    let claims: Record<string, unknown>;
    try {
      claims = verifyJws(jws, this.opts.jwks, typ).payload;
    } catch (e) {
      throw new Failure(seq, "bad_signature", `${what} seq ${seq}: ${(e as Error).message} (key ${kid})`);
    }
    if (claims["ver"] !== 1) {
      throw new Failure(
        seq,
        "malformed",
        `${what} seq ${seq} has ver ${String(claims["ver"])}; this verifier knows ver 1`,
      );
    }
    return { kid, claims };
  }

  /** Steps 3 and 4: false when seq jumps ahead (see inPlace); throws when prev does not link. */
  private linked(seq: number, claims: Record<string, unknown>, what: "record" | "receipt"): boolean {
    if (!this.inPlace(seq)) return false;
    const expectedPrev = seq === 1 ? null : this.prevDigest;
    if (claims["prev"] !== expectedPrev) {
      if (this.prevOmitted) {
        throw new Failure(
          seq - 1,
          "broken_chain",
          `the omitted line for seq ${seq - 1} has record_sha256 ${expectedPrev}, but ${what} seq ${seq} signed prev ${String(claims["prev"])}: that omitted line does not stand for the real entry`,
        );
      }
      throw new Failure(
        seq,
        "broken_chain",
        `${what} seq ${seq} signed prev ${String(claims["prev"])}, but the entry before it hashes to ${String(expectedPrev)}: they are not from one unbroken log`,
      );
    }
    this.prevOmitted = false;
    return true;
  }

  /** False when seq jumps ahead: not yet a failure, the rest of the file tells a swap from a drop. */
  private inPlace(seq: number): boolean {
    const expected = this.expected;
    if (seq === expected) return true;
    if (seq < expected) {
      throw new Failure(
        seq,
        "reordered",
        `line ${this.lineNo} holds seq ${seq} after seq ${expected - 1}: lines are out of order or repeated`,
      );
    }
    this.gap = { from: expected, to: seq - 1, line: this.lineNo, found: seq };
    return false;
  }

  private lookForMissing(text: string): void {
    const gap = this.gap!;
    let seq: unknown;
    try {
      seq = (JSON.parse(text) as { seq?: unknown }).seq;
    } catch {
      return;
    }
    if (typeof seq === "number" && seq >= gap.from && seq <= gap.to) {
      throw new Failure(
        gap.from,
        "reordered",
        `seq ${gap.from} is out of place: line ${gap.line} holds seq ${gap.found} where seq ${gap.from} belongs, and seq ${seq} comes later, at line ${this.lineNo}`,
      );
    }
  }
}

/** RFC 8785 equality; a value that has no canonical form (a number beyond double range) equals nothing. */
function sameJson(a: unknown, b: unknown): boolean {
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return false;
  }
}

function headerKid(jws: string): string | undefined {
  const dot = jws.indexOf(".");
  if (dot <= 0) return undefined;
  try {
    const header = JSON.parse(Buffer.from(jws.slice(0, dot), "base64url").toString("utf8")) as {
      kid?: unknown;
    };
    return typeof header.kid === "string" ? header.kid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verifies an export read as text chunks (a file or HTTP stream with utf8 decoding, so
 * no character is split across chunks). Stops reading at the first failure.
 */
export async function verifyExport(
  chunks: AsyncIterable<string> | Iterable<string>,
  opts: VerifyOptions,
): Promise<VerifyReport> {
  const v = new ExportVerifier(opts);
  let rest = "";
  for await (const chunk of chunks) {
    const text = rest + chunk;
    let start = 0;
    for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
      if (!v.push(text.slice(start, nl))) return v.finish();
      start = nl + 1;
    }
    rest = text.slice(start);
  }
  if (rest !== "") v.push(rest);
  return v.finish();
}

// ---------------------------------------------------------------------------
// JWKS

export class JwksError extends Error {
  override readonly name = "JwksError" as const;
}

/**
 * The Ed25519 keys of a JWKS document (`{keys: [...]}`). Keys of other types are skipped;
 * a document with no usable key is refused, since every record would then fail.
 */
export function parseJwks(doc: unknown, source: string): PublicJwk[] {
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new JwksError(`${source} is not a JWKS: expected {"keys": [...]}`);
  const out: PublicJwk[] = [];
  for (const k of keys as Record<string, unknown>[]) {
    if (k?.["kty"] !== "OKP" || k["crv"] !== "Ed25519") continue;
    if (typeof k["x"] !== "string" || typeof k["kid"] !== "string") continue;
    if (k["alg"] !== undefined && k["alg"] !== "EdDSA") continue;
    out.push({ kty: "OKP", crv: "Ed25519", x: k["x"], kid: k["kid"], alg: "EdDSA", use: "sig" });
  }
  if (out.length === 0) throw new JwksError(`${source} holds no Ed25519 key with a kid`);
  return out;
}
