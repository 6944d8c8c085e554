/**
 * docs/audit.md's "Checking one assertion by hand" block, run as written (with only the
 * export's name and the seq filled in) on records with real step-up votes, for each key
 * type; and `audit verify --public-url` in a real process. A command that stops working
 * on the page, or an assertion openssl would not accept, fails here.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportChunks, parseExportQuery } from "../../src/audit/export.js";
import type { StepUpProof } from "../../src/domain/types.js";
import { type AuthenticatorKeyType, SoftwareAuthenticator } from "../support/authenticator.js";
import { TestChain } from "./chain.js";
import { ROOT, runCli } from "./cli-run.js";
import { newKey } from "./log.js";

const DOC = fs.readFileSync(path.join(ROOT, "docs/audit.md"), "utf8");
const PUBLIC_URL = "https://approvals.example.com";
const KEY = newKey();

/** The first ```sh block after `heading`. */
function shBlock(heading: string): string {
  const at = DOC.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`docs/audit.md has no "${heading}" section`);
  const m = /```sh\n([\s\S]*?)```/.exec(DOC.slice(at));
  if (!m?.[1]) throw new Error(`no sh block after "${heading}"`);
  return m[1];
}

function bash(script: string, cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn("bash", ["-euo", "pipefail", "-c", script], {
      cwd,
      env: { PATH: process.env["PATH"] ?? "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.stderr.on("data", (d) => {
      out += d;
    });
    p.on("exit", (code) => resolve({ code, out }));
  });
}

let dir: string;
/** seq of the decision whose vote each key type confirmed; then one with a bad signature. */
const seqOf: Record<AuthenticatorKeyType | "tampered", number> = { p256: 0, ed25519: 0, rsa: 0, tampered: 0 };

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-stepup-docs-"));
  const chain = new TestChain(KEY);
  const decide = (auth: SoftwareAuthenticator, alter: (p: StepUpProof) => StepUpProof = (p) => p) =>
    chain.decision({
      escalationLevel: 1,
      votes: (s) => [
        {
          user: "U0ALICE",
          team: "T0TEST",
          vote: "approve",
          at: "2025-03-01T10:00:01.000Z",
          step_up: alter(
            auth.stepUp(
              { action_id: s.action_id, action_sha256: s.action_sha256, level: 0, user: "U0ALICE" },
              PUBLIC_URL,
            ),
          ),
        },
      ],
    }).seq;
  for (const type of ["p256", "ed25519", "rsa"] as const) {
    const auth = SoftwareAuthenticator.create(type);
    chain.passkey(auth);
    seqOf[type] = decide(auth);
  }
  const p256 = SoftwareAuthenticator.create("p256");
  chain.passkey(p256);
  // The authenticator data altered after signing (one flag bit), in a record the server signed.
  seqOf.tampered = decide(p256, (p) => {
    const bytes = Buffer.from(p.authenticator_data, "base64url");
    bytes[36] = bytes[36]! ^ 0x01;
    return { ...p, authenticator_data: bytes.toString("base64url") };
  });
  const parsed = parseExportQuery({});
  if (!parsed.ok) throw new Error("bad query");
  let text = "";
  for await (const chunk of exportChunks([chain.sources()], parsed.query)) text += chunk;
  fs.writeFileSync(path.join(dir, "all.jsonl"), text);
  // The good part of the log: everything before the tampered record.
  fs.writeFileSync(
    path.join(dir, "good.jsonl"),
    text
      .split("\n")
      .filter((l) => l !== "" && (JSON.parse(l) as { seq: number }).seq < seqOf.tampered)
      .map((l) => `${l}\n`)
      .join(""),
  );
  fs.writeFileSync(path.join(dir, "jwks.json"), JSON.stringify({ keys: [KEY.publicJwk] }));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function walkthrough(seq: number): string {
  const block = shBlock("#### Checking one assertion by hand");
  expect(block).toMatch(/^EXPORT=\S+ SEQ=\d+ /m);
  return block.replace(/^EXPORT=\S+ SEQ=\d+ /m, `EXPORT=all.jsonl SEQ=${seq} `);
}

describe("docs/audit.md: checking one step-up assertion by hand", () => {
  it.each([
    ["p256", "Verified OK"],
    ["ed25519", "Signature Verified Successfully"],
    ["rsa", "Verified OK"],
  ] as const)(
    "a %s assertion: openssl verifies it, and the challenge, RP ID hash and flags match",
    async (type, ok) => {
      const r = await bash(walkthrough(seqOf[type]), dir);
      expect(r.code, r.out).toBe(0);
      const lines = r.out.trim().split("\n");
      expect(lines[0]).toBe(ok);
      const client = JSON.parse(lines[1]!) as { type: string; origin: string; challenge: string };
      expect(client).toMatchObject({ type: "webauthn.get", origin: PUBLIC_URL });
      // The challenge recomputed by the walkthrough (level 0) equals the one the passkey signed.
      expect(lines[2]).toBe(client.challenge);
      // The RP ID hash in the authenticator data equals SHA-256 of the RP ID.
      expect(lines[3]).toMatch(/^[0-9a-f]{64}$/);
      expect(lines[3]).toBe(lines[4]);
      expect(lines[5]!.trim()).toBe("05");
    },
  );

  it("openssl refuses an assertion whose authenticator data was altered", async () => {
    const r = await bash(walkthrough(seqOf.tampered), dir);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("Verification failure");
  });
});

describe("countersign audit verify --public-url", () => {
  const env = (extra: Record<string, string> = {}) => ({ HOME: dir, LOG_LEVEL: "silent", ...extra });
  const file = (name: string) => path.join(dir, name);

  it("checks every assertion at PUBLIC_URL's origin (the flag, or PUBLIC_URL from the environment)", async () => {
    const flag = await runCli(
      ["audit", "verify", file("good.jsonl"), "--jwks", file("jwks.json"), "--public-url", PUBLIC_URL],
      env(),
    );
    expect(flag.code, flag.stdout + flag.stderr).toBe(0);
    expect(flag.stdout).toContain(`; 3 step-up assertions checked at ${PUBLIC_URL}`);
    const fromEnv = await runCli(
      ["audit", "verify", file("good.jsonl"), "--jwks", file("jwks.json")],
      env({ PUBLIC_URL }),
    );
    expect(fromEnv.stdout).toContain(`; 3 step-up assertions checked at ${PUBLIC_URL}`);
  });

  it("fails on another origin, and on altered assertion bytes, naming the seq, the voter and the check", async () => {
    const other = await runCli(
      [
        "audit",
        "verify",
        file("good.jsonl"),
        "--jwks",
        file("jwks.json"),
        "--public-url",
        "https://countersign.example.com",
      ],
      env(),
    );
    expect(other.code).toBe(1);
    expect(other.stdout).toContain(
      `verification FAILED at seq ${seqOf.p256}, line ${seqOf.p256}: bad_step_up: record seq ${seqOf.p256}: the vote by U0ALICE (votes[0]): step_up check origin failed`,
    );
    const tampered = await runCli(["audit", "verify", file("all.jsonl"), "--jwks", file("jwks.json")], env());
    expect(tampered.code).toBe(1);
    expect(tampered.stdout).toContain(
      `bad_step_up: record seq ${seqOf.tampered}: the vote by U0ALICE (votes[0]): step_up check signature failed`,
    );
  });

  it("refuses a --public-url that WebAuthn could never use (exit 2)", async () => {
    const r = await runCli(
      ["audit", "verify", file("good.jsonl"), "--jwks", file("jwks.json"), "--public-url", "http://10.0.0.1"],
      env(),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--public-url");
    expect(r.stderr).toContain("IP address");
  });
});
