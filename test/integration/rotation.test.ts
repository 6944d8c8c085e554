/**
 * Key rotation on a running installation, then an auditor's session with the real CLI:
 * export, JWKS, checkpoint, verify across the rotation.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyFile } from "../../src/adapters/crypto/keyfile.js";
import type { RecordClaims } from "../../src/domain/types.js";
import { eventually, type Harness, request, startHarness } from "../support/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const autoRead = (n: number) =>
  request({ risk_class: "low", action: { type: "crm.read", summary: `Read customer ${n}` } });

async function decide(n: number): Promise<string> {
  const r = (await (await h.submit(autoRead(n))).waitUntilFinished(h.events, 10_000)) as { record: string };
  return r.record;
}

describe("key rotation on a running installation", () => {
  it("signs with the new key, keeps the old in the JWKS, and the chain verifies across it", async () => {
    const before = await decide(1);
    const oldKid = h.app.signingKey.kid;
    const { key, retired } = generateKeyFile(path.join(h.dir, "signing-key.pem"));
    expect(retired).toContain(oldKid);
    await eventually(async () => h.app.signingKey.kid === key.kid, "the service to pick up the new key");
    const after = await decide(2);
    expect(decodeProtectedHeader(before).kid).toBe(oldKid);
    expect(decodeProtectedHeader(after).kid).toBe(key.kid);
    const c = decodeJwt(after) as unknown as RecordClaims;
    expect(c.seq).toBe((decodeJwt(before) as unknown as RecordClaims).seq + 1);

    const jwks = (await (await fetch(`${h.app.url}/.well-known/jwks.json`)).json()) as {
      keys: { kid: string }[];
    };
    expect(jwks.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, key.kid]));

    // The auditor's session, as the README shows it.
    const env = {
      ...process.env,
      ...h.dbEnv,
      SIGNING_KEY_FILE: path.join(h.dir, "signing-key.pem"),
      POLICY_FILE: path.join(h.dir, "policy.yml"),
      LOG_LEVEL: "silent",
    };
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ["bin/countersign.mjs", ...args], { env });
    const out = path.join(h.dir, "audit.jsonl");
    await run(["audit", "export", "--out", out]);
    fs.writeFileSync(path.join(h.dir, "jwks.json"), (await run(["keys", "jwks"])).stdout);
    fs.writeFileSync(path.join(h.dir, "checkpoint.jws"), (await run(["audit", "checkpoint"])).stdout.trim());
    const verified = await run([
      "audit",
      "verify",
      out,
      "--jwks",
      path.join(h.dir, "jwks.json"),
      "--checkpoint",
      path.join(h.dir, "checkpoint.jws"),
    ]);
    expect(verified.stdout).toMatch(/^verified 2 entries \(2 decisions, 0 receipts/m);

    // Without the old key, the first record no longer verifies: the JWKS must keep it.
    fs.writeFileSync(
      path.join(h.dir, "new-only.json"),
      JSON.stringify({ keys: jwks.keys.filter((k) => k.kid === key.kid) }),
    );
    const failed = await run(["audit", "verify", out, "--jwks", path.join(h.dir, "new-only.json")]).catch(
      (e) => e,
    );
    expect(failed.code).toBe(1);
    expect(`${failed.stdout}${failed.stderr}`).toMatch(/seq 1.*unknown/i);
    // Five CLI processes, each compiling the CLI at start: seconds apiece on a busy machine.
  }, 150_000);
});
