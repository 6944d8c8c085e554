/** `countersign policy check --explain` on a route with details conditions, in a real process. */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request, testPolicy } from "./support/harness.js";

let dir: string;
let policyFile: string;
const run = (args: string[]) =>
  promisify(execFile)(process.execPath, ["bin/countersign.mjs", ...args], {
    env: { ...process.env, POLICY_FILE: policyFile, LOG_LEVEL: "silent" },
    timeout: 60_000,
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );

const BIG_REFUNDS = `  - name: big-refunds
    when: { action: ["payments.refund"], details: { "/amount": { gt: 1000 }, "/currency": { in: [EUR, USD] } } }
    approvers: { users: [U0CFO] }
    channel: C0EUAPPROVALS
`;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-cli-details-"));
  policyFile = path.join(dir, "policy.yml");
  const text = testPolicy().replace("  - name: eu-high-payments", `${BIG_REFUNDS}  - name: eu-high-payments`);
  if (!text.includes("big-refunds")) throw new Error("test bug: route not inserted");
  fs.writeFileSync(policyFile, text);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const explain = (details: unknown) =>
  run(["policy", "check", "--explain", JSON.stringify(request({ action: { details } as never }))]);

describe("countersign policy check --explain with details conditions", () => {
  it("says which details condition failed, and where the request goes instead", async () => {
    const r = await explain({ amount: 500, currency: "GBP" });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      '  ✘ big-refunds: details /amount 500 not > 1000; details /currency "GBP" not in ["EUR", "USD"]\n',
    );
    expect(r.stdout).toMatch(/✔ eu-high-payments: /);
  });

  it("says which conditions held on a match", async () => {
    const r = await explain({ amount: 5000, currency: "EUR" });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      '  ✔ big-refunds: action payments.refund matches payments.refund; details /amount 5000 > 1000; details /currency "EUR" in ["EUR", "USD"]\n',
    );
    expect(r.stdout).toContain("route big-refunds: quorum 1 in C0EUAPPROVALS");
  });

  it("shows the refusal of a mistyped member and exits 1 like any refusal", async () => {
    const r = await explain({ amount: "5000", currency: "EUR" });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      '  ⛔ big-refunds: action.details/amount: route "big-refunds" compares /amount with numbers, but the request has a string ("5000")\n',
    );
    expect(r.stdout).toContain("refused at route big-refunds: no later route is tried");
    expect(r.stdout).not.toContain("eu-high-payments");
    expect(r.stderr).toContain(
      'rejected: invalid_request: action.details/amount: route "big-refunds" compares /amount with numbers, but the request has a string ("5000")',
    );
    expect(r.stderr).toContain('  action.details/amount: route "big-refunds" compares /amount');
  });

  it("reports a bad condition in the file with its line", async () => {
    const bad = path.join(dir, "bad.yml");
    const text = fs.readFileSync(policyFile, "utf8").replace("{ gt: 1000 }", '{ gt: "1000" }');
    fs.writeFileSync(bad, text);
    const line = text.split("\n").findIndex((l) => l.includes('gt: "1000"')) + 1;
    const r = await run(["policy", "check", bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `${bad}:${line}:\\d+: routes\\.1\\.when\\.details\\["/amount"\\]\\.gt: gt compares numbers; expected a number, got the text "1000"`,
      ),
    );
  });
});
