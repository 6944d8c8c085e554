/**
 * `audit verify` on step-up votes (SPEC "Step-up"): each vote's WebAuthn assertion is
 * checked offline against the passkeys registered earlier in the log. The logs are
 * signed and chained for real and the assertions made by a software authenticator
 * (test/support/authenticator.ts), so a broken case breaks only the check under test:
 * the record around it is one a buggy or tampered server could have signed.
 */
import { describe, expect, it } from "vitest";
import { type ExportSource, exportChunks, parseExportQuery } from "../../src/audit/export.js";
import { checkStepUp, jwkAlgorithm } from "../../src/audit/step-up.js";
import { ExportVerifier, type VerifyReport } from "../../src/audit/verify.js";
import { describeReport } from "../../src/cli/audit.js";
import type { StepUpProof, Vote } from "../../src/domain/types.js";
import { jwsDigest } from "../../src/records/signing.js";
import { FLAG_UP, FLAG_UV, SoftwareAuthenticator } from "../support/authenticator.js";
import { TestChain } from "./chain.js";
import { linesOf, newKey } from "./log.js";

const KEY = newKey();
const JWKS = [KEY.publicJwk];
const PUBLIC_URL = "https://approvals.example.com";
const ORIGIN = PUBLIC_URL;

async function exportOf(
  sources: readonly ExportSource[],
  options: Record<string, string> = {},
): Promise<string> {
  const parsed = parseExportQuery(options);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  let text = "";
  for await (const chunk of exportChunks([sources], parsed.query)) text += chunk;
  return text;
}

function verifyLines(lines: readonly string[], publicUrl: string | null = PUBLIC_URL): VerifyReport {
  const v = new ExportVerifier({ jwks: JWKS, publicUrl });
  for (const l of lines) if (!v.push(l)) break;
  return v.finish();
}

async function verifyChain(chain: TestChain, publicUrl: string | null = PUBLIC_URL): Promise<VerifyReport> {
  return verifyLines(linesOf(await exportOf(chain.sources())), publicUrl);
}

function failure(r: VerifyReport): { seq: number | null; reason: string; message: string } {
  expect(r.ok, JSON.stringify(r)).toBe(false);
  return r.ok
    ? { seq: null, reason: "ok", message: "" }
    : { seq: r.seq, reason: r.reason, message: r.message };
}

interface VoteOptions {
  readonly user?: string;
  readonly team?: string;
  /** The level the challenge names (default 0). */
  readonly level?: number;
  readonly origin?: string;
  readonly bend?: Parameters<SoftwareAuthenticator["stepUp"]>[2];
  /** Another action id / digest in the challenge. */
  readonly challengeFor?: { action_id?: string; action_sha256?: string; user?: string };
  /** Changes the finished proof (altered bytes). */
  readonly alter?: (p: StepUpProof) => StepUpProof;
}

/** A decision whose one approval is confirmed by `auth`'s assertion. */
function stepUpDecision(
  chain: TestChain,
  auth: SoftwareAuthenticator,
  o: VoteOptions & { escalationLevel?: number } = {},
) {
  const user = o.user ?? "U0ALICE";
  return chain.decision({
    escalationLevel: o.escalationLevel ?? o.level ?? 0,
    votes: (subject): Vote[] => {
      const proof = auth.stepUp(
        {
          action_id: o.challengeFor?.action_id ?? subject.action_id,
          action_sha256: o.challengeFor?.action_sha256 ?? subject.action_sha256,
          level: o.level ?? 0,
          user: o.challengeFor?.user ?? user,
        },
        o.origin ?? ORIGIN,
        o.bend ?? {},
      );
      return [
        {
          user,
          team: o.team ?? "T0TEST",
          vote: "approve",
          at: "2025-03-01T10:00:01.000Z",
          step_up: o.alter ? o.alter(proof) : proof,
        },
      ];
    },
  });
}

/** One byte of a base64url field flipped. */
function flip(b64: string, at = 10): string {
  const bytes = Buffer.from(b64, "base64url");
  bytes[at] = bytes[at]! ^ 0x01;
  return bytes.toString("base64url");
}

describe("audit verify: step-up votes that hold", () => {
  it.each(["p256", "ed25519", "rsa"] as const)(
    "a %s passkey registered earlier to the voter passes",
    async (type) => {
      const auth = SoftwareAuthenticator.create(type);
      const chain = new TestChain(KEY);
      chain.passkey(auth, "U0ALICE"); // 1
      stepUpDecision(chain, auth); // 2
      const r = await verifyChain(chain);
      expect(r).toMatchObject({ ok: true, records: 2, decisions: 1, receipts: 1, stepUps: 1 });
      expect(r.ok && r.stepUpOrigin).toBe(ORIGIN);
      expect(jwkAlgorithm(auth.publicJwk)).toBe({ p256: "ES256", ed25519: "EdDSA", rsa: "RS256" }[type]);
    },
  );

  it("accepts a challenge for any level up to the record's escalation level", async () => {
    const auth = SoftwareAuthenticator.create();
    const chain = new TestChain(KEY);
    chain.passkey(auth);
    stepUpDecision(chain, auth, { level: 1, escalationLevel: 2 });
    expect(await verifyChain(chain)).toMatchObject({ ok: true, stepUps: 1 });
  });

  it("without PUBLIC_URL, checks everything else and reports the one origin all assertions name", async () => {
    const auth = SoftwareAuthenticator.create();
    const chain = new TestChain(KEY);
    chain.passkey(auth);
    stepUpDecision(chain, auth);
    stepUpDecision(chain, auth);
    const r = await verifyChain(chain, null);
    expect(r).toMatchObject({ ok: true, stepUps: 2, stepUpOrigin: ORIGIN, stepUpOriginGiven: false });
    expect(describeReport(r)).toContain(
      `2 step-up assertions checked, all made at ${ORIGIN} (not checked against PUBLIC_URL: pass --public-url`,
    );
    expect(describeReport(await verifyChain(chain))).toContain(`2 step-up assertions checked at ${ORIGIN}`);
  });

  it("keeps passkey registrations in every export, filtered or not, and a filtered export still verifies", async () => {
    const auth = SoftwareAuthenticator.create();
    const chain = new TestChain(KEY);
    chain.decision({ agent: "crm-agent" }); // 1
    chain.passkey(auth); // 2
    stepUpDecision(chain, auth); // 3
    const text = await exportOf(chain.sources(), { agent: "billing-agent" });
    const lines = linesOf(text).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ seq: 1, omitted: true });
    expect(lines[1]).toEqual({
      seq: 2,
      kind: "passkey_registered",
      receipt_id: expect.stringMatching(/^rct_/),
      at: expect.any(String),
      user: "U0ALICE",
      team: "T0TEST",
      credential_id: auth.credentialId,
      public_key: auth.publicJwk,
      receipt: expect.any(String),
    });
    expect(verifyLines(linesOf(text))).toMatchObject({ ok: true, omitted: 1, stepUps: 1 });
    // Even a filter that keeps no decision keeps the registration.
    const none = linesOf(await exportOf(chain.sources(), { agent: "nobody" })).map((l) => JSON.parse(l));
    expect(none.map((l) => l.kind ?? "omitted")).toEqual(["omitted", "passkey_registered", "omitted"]);
  });
});

describe("audit verify: step-up votes that fail, naming the seq, the voter and the check", () => {
  async function failsWith(
    build: (chain: TestChain, auth: SoftwareAuthenticator) => void,
    check: string,
    o: { publicUrl?: string | null; seq?: number; user?: string } = {},
  ): Promise<string> {
    const auth = SoftwareAuthenticator.create();
    const chain = new TestChain(KEY);
    build(chain, auth);
    const f = failure(await verifyChain(chain, o.publicUrl === undefined ? PUBLIC_URL : o.publicUrl));
    expect(f.reason).toBe("bad_step_up");
    expect(f.seq).toBe(o.seq ?? 2);
    expect(f.message).toContain(
      `record seq ${o.seq ?? 2}: the vote by ${o.user ?? "U0ALICE"} (votes[0]): step_up check ${check} failed`,
    );
    return f.message;
  }
  const registered = (alter: VoteOptions["alter"]) => (chain: TestChain, auth: SoftwareAuthenticator) => {
    chain.passkey(auth);
    stepUpDecision(chain, auth, { alter });
  };

  it("altered authenticator_data", async () => {
    await failsWith(
      registered((p) => ({ ...p, authenticator_data: flip(p.authenticator_data, 35) })),
      "signature",
    );
  });

  it("altered signature", async () => {
    await failsWith(
      registered((p) => ({ ...p, signature: flip(p.signature, 20) })),
      "signature",
    );
  });

  it("altered client_data_json bytes", async () => {
    await failsWith(
      registered((p) => ({ ...p, client_data_json: flip(p.client_data_json, 30) })),
      "signature",
    );
  });

  it("the user-verified flag clear (signed as such by the authenticator)", async () => {
    const m = await failsWith((chain, auth) => {
      chain.passkey(auth);
      stepUpDecision(chain, auth, { bend: { flags: FLAG_UP } });
    }, "flags");
    expect(m).toContain("user-verified (UV)");
  });

  it("the user-present flag clear", async () => {
    await failsWith((chain, auth) => {
      chain.passkey(auth);
      stepUpDecision(chain, auth, { bend: { flags: FLAG_UV } });
    }, "flags");
  });

  it("an assertion made at another origin than PUBLIC_URL's", async () => {
    const m = await failsWith((chain, auth) => {
      chain.passkey(auth);
      stepUpDecision(chain, auth, { origin: "https://evil.example.net" });
    }, "origin");
    expect(m).toContain(`expected ${ORIGIN}`);
  });

  it("without PUBLIC_URL, assertions made at two origins", async () => {
    const m = await failsWith(
      (chain, auth) => {
        chain.passkey(auth);
        stepUpDecision(chain, auth);
        stepUpDecision(chain, auth, { origin: "https://evil.example.net" });
      },
      "origin",
      { publicUrl: null, seq: 3 },
    );
    expect(m).toContain("pass --public-url");
  });

  it("an RP ID hash of another RP", async () => {
    await failsWith((chain, auth) => {
      chain.passkey(auth);
      stepUpDecision(chain, auth, { bend: { rpId: "example.com" } });
    }, "rp_id");
  });

  it("client data of a registration (webauthn.create), not an assertion", async () => {
    await failsWith((chain, auth) => {
      chain.passkey(auth);
      stepUpDecision(chain, auth, { bend: { type: "webauthn.create" } });
    }, "client_data");
  });

  it.each([
    ["another action", { action_id: "act_other" }],
    ["another revision of the request", { action_sha256: "A".repeat(43) }],
    ["another user", { user: "U0BOB" }],
  ])("a challenge for %s", async (_n, challengeFor) => {
    await failsWith((chain, auth) => {
      chain.passkey(auth);
      stepUpDecision(chain, auth, { challengeFor });
    }, "challenge");
  });

  it("a challenge for a level above the record's escalation level", async () => {
    await failsWith((chain, auth) => {
      chain.passkey(auth);
      stepUpDecision(chain, auth, { level: 2, escalationLevel: 1 });
    }, "challenge");
  });

  it("a key never registered", async () => {
    const m = await failsWith((chain, auth) => {
      chain.decision(); // 1: nothing registers the key
      stepUpDecision(chain, auth);
    }, "credential");
    expect(m).toContain("was not registered by any earlier passkey_registered entry");
  });

  it("a key registered to another user", async () => {
    const m = await failsWith((chain, auth) => {
      chain.passkey(auth, "U0BOB");
      stepUpDecision(chain, auth);
    }, "credential");
    expect(m).toContain("was registered to U0BOB (seq 1), not to U0ALICE");
  });

  it("a key registered only after the vote's record", async () => {
    await failsWith((chain, auth) => {
      chain.decision(); // 1
      stepUpDecision(chain, auth); // 2
      chain.passkey(auth); // 3
    }, "credential");
  });

  it("the registered credential id with another public key in the vote", async () => {
    const other = SoftwareAuthenticator.create("p256");
    await failsWith((chain, auth) => {
      chain.passkey(auth);
      // The vote names auth's credential id but was signed, and carries the key of, another authenticator.
      stepUpDecision(chain, other, { alter: (p) => ({ ...p, credential_id: auth.credentialId }) });
    }, "credential");
  });

  it("a registration deleted from the export breaks the chain before any step-up check", async () => {
    const auth = SoftwareAuthenticator.create();
    const chain = new TestChain(KEY);
    chain.decision(); // 1
    chain.passkey(auth); // 2
    stepUpDecision(chain, auth); // 3
    const lines = linesOf(await exportOf(chain.sources()));
    expect(failure(verifyLines(lines.filter((l) => !l.includes('"passkey_registered"'))))).toMatchObject({
      seq: 2,
      reason: "record_dropped",
    });
    // Replaced by a forged omitted line, the chain does not hold at that line.
    const asOmitted = (digest: string) =>
      lines.map((l) =>
        l.includes('"passkey_registered"')
          ? JSON.stringify({ seq: 2, record_sha256: digest, omitted: true })
          : l,
      );
    expect(failure(verifyLines(asOmitted("A".repeat(43))))).toMatchObject({ seq: 2, reason: "broken_chain" });
    // Replaced by a faithful omitted line (exports never omit one), the chain holds but
    // the key is unknown: the vote cannot be checked, and fails.
    const registration = JSON.parse(lines[1]!) as { receipt: string };
    const f = failure(verifyLines(asOmitted(jwsDigest(registration.receipt))));
    expect(f).toMatchObject({ seq: 3, reason: "bad_step_up" });
    expect(f.message).toContain("step_up check credential failed");
  });

  it("a registration line whose key was swapped after signing", async () => {
    const auth = SoftwareAuthenticator.create();
    const other = SoftwareAuthenticator.create();
    const chain = new TestChain(KEY);
    chain.passkey(auth);
    stepUpDecision(chain, auth);
    const lines = linesOf(await exportOf(chain.sources())).map((l, i) => {
      if (i !== 0) return l;
      const o = JSON.parse(l) as Record<string, unknown>;
      return JSON.stringify({ ...o, public_key: other.publicJwk });
    });
    expect(failure(verifyLines(lines))).toMatchObject({ seq: 1, reason: "edited_claim" });
  });

  it("refuses a registration whose key holds private material, or that registers a credential twice", async () => {
    const auth = SoftwareAuthenticator.create();
    const leaked = new TestChain(KEY);
    leaked.passkey(auth, "U0ALICE", { override: { public_key: { ...auth.publicJwk, d: "AAAA" } } });
    expect(failure(await verifyChain(leaked))).toMatchObject({ seq: 1, reason: "bad_passkey_registration" });
    const twice = new TestChain(KEY);
    twice.passkey(auth, "U0ALICE");
    twice.passkey(auth, "U0MALLORY");
    const f = failure(await verifyChain(twice));
    expect(f).toMatchObject({ seq: 2, reason: "bad_passkey_registration" });
    expect(f.message).toContain("already registered to U0ALICE at seq 1");
  });
});

describe("checkStepUp on its own", () => {
  it("accepts the original request's digest for a vote on revision 1 of an edited request", () => {
    const auth = SoftwareAuthenticator.create("ed25519");
    const passkeys = new Map([
      [auth.credentialId, { user: "U0A", team: "T0", publicKey: auth.publicJwk, seq: 1 }],
    ]);
    const proof = auth.stepUp({ action_id: "act_1", action_sha256: "orig", level: 0, user: "U0A" }, ORIGIN);
    const subject = {
      action_id: "act_1",
      action_sha256: "final",
      original_sha256: "orig",
      escalation_level: 0,
    };
    expect(
      checkStepUp({ user: "U0A", team: "T0", revision: 1, step_up: proof }, subject, passkeys, ORIGIN),
    ).toMatchObject({
      ok: true,
      level: 0,
    });
    expect(
      checkStepUp({ user: "U0A", team: "T0", revision: 2, step_up: proof }, subject, passkeys, ORIGIN),
    ).toMatchObject({
      ok: false,
      check: "challenge",
    });
  });
});
