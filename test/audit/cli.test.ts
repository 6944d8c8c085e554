/**
 * The audit commands as an auditor runs them (see cli-run.ts): a real process, real
 * files, exit codes, on a SQLite log. test/audit/postgres.test.ts runs them on PostgreSQL.
 */
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKeyPem, loadSigningKey } from "../../src/records/signing.js";
import { ROOT, type Run, runCli } from "./cli-run.js";
import { buildLog, linesOf, newKey, type TestLog } from "./log.js";

const POLICY = path.join(ROOT, "test/fixtures/policies/spec-example.yml");

let log: TestLog;
let env: Record<string, string>;
const PEM = generateSigningKeyPem();
const KEY = loadSigningKey(PEM);

function run(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  return runCli(args, { ...env, ...extraEnv });
}

beforeAll(async () => {
  log = await buildLog(
    [
      {},
      { agent: "crm-agent" },
      { verdict: "denied", reasonText: "not this week" },
      {},
      { agent: "crm-agent" },
    ],
    KEY,
  );
  fs.writeFileSync(path.join(log.dir, "signing-key.pem"), PEM, { mode: 0o600 });
  fs.writeFileSync(
    path.join(log.dir, "jwks.json"),
    JSON.stringify({ keys: [newKey().publicJwk, KEY.publicJwk] }),
  );
  env = {
    ...log.env,
    SIGNING_KEY_FILE: path.join(log.dir, "signing-key.pem"),
    POLICY_FILE: POLICY,
  };
});
afterAll(() => log.cleanup());

const file = (name: string) => path.join(log.dir, name);

describe("countersign audit export and verify", () => {
  it("exports to --out and verifies it with the installation's keys, saying so", async () => {
    const ex = await run(["audit", "export", "--out", file("all.jsonl")]);
    expect(ex).toMatchObject({ code: 0, stdout: "" });
    expect(ex.stderr).toContain(`exported 5 records (0 omitted) to ${file("all.jsonl")}`);
    expect(fs.existsSync(file("all.jsonl.partial"))).toBe(false);
    const v = await run(["audit", "verify", file("all.jsonl")]);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(
      /^verified 5 entries \(5 decisions, 0 receipts, 0 omitted\), seq 1-5, head [\w-]{43}; signed by [\w-]+ \(5\)\n$/,
    );
    expect(v.stderr).toMatch(/checking against this installation's 1 key\(s\)/);
  });

  it("verifies a filtered export offline with a JWKS file", async () => {
    const ex = await run(["audit", "export", "--agent", "crm-agent", "--out", file("crm.jsonl")]);
    expect(ex.code).toBe(0);
    const v = await run(["audit", "verify", file("crm.jsonl"), "--jwks", file("jwks.json")], {
      DATABASE_URL: "file:/nonexistent/countersign.db",
    });
    expect(v).toMatchObject({ code: 0, stderr: "" });
    expect(v.stdout).toMatch(/^verified 2 entries \(2 decisions, 0 receipts, 3 omitted\)/);
  });

  it("fetches the JWKS once from a URL", async () => {
    let hits = 0;
    const server = http.createServer((_req, res) => {
      hits++;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ keys: [KEY.publicJwk] }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
    try {
      await run(["audit", "export", "--out", file("url.jsonl")]);
      const v = await run(["audit", "verify", file("url.jsonl"), "--jwks", url]);
      expect(v.code).toBe(0);
      expect(hits).toBe(1);
    } finally {
      server.close();
    }
  });

  it("exits 1 naming the first bad seq and why", async () => {
    await run(["audit", "export", "--out", file("t.jsonl")]);
    const lines = linesOf(fs.readFileSync(file("t.jsonl"), "utf8"));
    const third = JSON.parse(lines[2]!) as Record<string, unknown>;
    third["verdict"] = "approved";
    lines[2] = JSON.stringify(third);
    fs.writeFileSync(file("t.jsonl"), `${lines.join("\n")}\n`);
    const v = await run(["audit", "verify", file("t.jsonl"), "--jwks", file("jwks.json")]);
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(
      /^verification FAILED at seq 3, line 3: edited_claim: the line for seq 3 says verdict "approved"/,
    );
  });

  it("reads the export from stdin with FILE -", async () => {
    await run(["audit", "export", "--out", file("s.jsonl")]);
    const v = await runCli(["audit", "verify", "-", "--jwks", file("jwks.json")], env, file("s.jsonl"));
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^verified 5 entries/);
  });

  it("writes CSV to stdout", async () => {
    const ex = await run(["audit", "export", "--format", "csv", "--verdict", "denied"]);
    expect(ex.code).toBe(0);
    const rows = ex.stdout.split("\r\n").filter(Boolean);
    expect(rows[0]!.startsWith("seq,decided_at,agent_id,")).toBe(true);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatch(/^3,.*,denied,approvers,not this week,/);
  });

  it("exits 2 on a bad option or a missing file", async () => {
    const bad = await run(["audit", "export", "--verdict", "maybe", "--since", "last week"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--since .* is not an ISO 8601 date/);
    expect(bad.stderr).toMatch(/--verdict must be one of approved, denied, expired, cancelled/);
    const missing = await run(["audit", "verify", file("nope.jsonl"), "--jwks", file("jwks.json")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`no export at ${file("nope.jsonl")}`);
    const badJwks = await run(["audit", "verify", file("all.jsonl"), "--jwks", file("all.jsonl")]);
    expect(badJwks.code).toBe(2);
    expect(badJwks.stderr).toMatch(/is not JSON/);
  });
});

describe("countersign audit checkpoint", () => {
  it("prints a checkpoint that a later verify matches, and a foreign one fails", async () => {
    const cp = await run(["audit", "checkpoint"]);
    expect(cp.code).toBe(0);
    expect(cp.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    fs.writeFileSync(file("cp.jws"), cp.stdout);
    await run(["audit", "export", "--out", file("c.jsonl")]);
    const ok = await run([
      "audit",
      "verify",
      file("c.jsonl"),
      "--checkpoint",
      file("cp.jws"),
      "--jwks",
      file("jwks.json"),
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/matches the checkpoint of seq 5 signed/);

    // The same checkpoint, but from a key the JWKS does not hold.
    const other = generateSigningKeyPem();
    fs.writeFileSync(file("other.pem"), other, { mode: 0o600 });
    const foreign = await run(["audit", "checkpoint"], { SIGNING_KEY_FILE: file("other.pem") });
    expect(foreign.code).toBe(0);
    expect(foreign.stderr).toMatch(/is not in this installation's JWKS/);
    fs.writeFileSync(file("cp2.jws"), foreign.stdout);
    const bad = await run([
      "audit",
      "verify",
      file("c.jsonl"),
      "--checkpoint",
      file("cp2.jws"),
      "--jwks",
      file("jwks.json"),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(
      /^verification FAILED: checkpoint_mismatch: the checkpoint does not verify: unknown key/,
    );
  });
});

describe("countersign audit events", () => {
  it("prints the decision path, ending with the record", async () => {
    const r = await run(["audit", "events", log.actionIds[2]!]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/agent:billing-agent\s+received/);
    expect(r.stdout).toMatch(/record seq 3: denied/);
  });

  it("exits 2 for an unknown action", async () => {
    const r = await run(["audit", "events", "act_nope"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("no action act_nope");
  });
});
