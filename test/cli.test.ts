/** The operator's CLI in real processes: policy check, agent token, migrate, keys. */
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestDigest } from "../src/domain/canonical.js";
import { BILLING_SECRET, OPS_SECRET, request, testPolicy } from "./support/harness.js";

let dir: string;
let env: NodeJS.ProcessEnv;
const run = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
  promisify(execFile)(process.execPath, ["bin/countersign.mjs", ...args], {
    env: { ...env, ...extra },
    // A server that should have refused to start is killed rather than left running.
    timeout: 60_000,
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-cli-"));
  fs.writeFileSync(path.join(dir, "policy.yml"), testPolicy());
  env = {
    ...process.env,
    POLICY_FILE: path.join(dir, "policy.yml"),
    DATABASE_URL: `file:${path.join(dir, "cs.db")}`,
    SIGNING_KEY_FILE: path.join(dir, "key.pem"),
    BILLING_AGENT_SECRET: BILLING_SECRET,
    LOG_LEVEL: "silent",
  };
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("countersign policy check", () => {
  it("says ok for a good file and explains which route a request takes, and why", async () => {
    const ok = await run(["policy", "check"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/ok \(2 agent\(s\), 3 route\(s\)/);
    const req = request({ risk_class: "medium" });
    const r = await run(["policy", "check", "--explain", JSON.stringify(req)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("raised to high");
    expect(r.stdout).toMatch(/✘ low-auto: /);
    expect(r.stdout).toMatch(/✔ eu-high-payments/);
    expect(r.stdout).toContain(
      "route eu-high-payments: quorum 2 in C0EUAPPROVALS, 1 escalation level(s), on_timeout escalate",
    );
  });

  it("stops on a bad file with the file, line and reason of every problem (exit 1)", async () => {
    const bad = path.join(dir, "bad.yml");
    fs.writeFileSync(
      bad,
      testPolicy()
        .replace("quorum: 2", "quorum: 0")
        .replace("  - name: us-ops", "  - name: us-ops\n    whn: {}"),
    );
    const r = await run(["policy", "check", bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${bad}:32:13: routes.1.quorum: expected a whole number of at least 1`);
    expect(r.stderr).toContain(`${bad}:38:5: routes.2.whn: unknown key "whn"`);
  });

  it("refuses to start the service with a bad policy, naming the line", async () => {
    const bad = path.join(dir, "bad2.yml");
    fs.writeFileSync(bad, testPolicy().replace("quorum: 2", "quorum: many"));
    const r = await run(["serve"], {
      POLICY_FILE: bad,
      SLACK_BOT_TOKEN: "xoxb-x",
      SLACK_SIGNING_SECRET: "s",
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad2\.yml:\d+:\d+: .*quorum/);
  });
  it("refuses a policy with step_up while PUBLIC_URL is unset, in policy check and at serve start", async () => {
    const stepUp = path.join(dir, "step-up.yml");
    fs.writeFileSync(stepUp, testPolicy().replace("quorum: 2", "quorum: 2\n    step_up: passkey"));
    const refused = await run(["policy", "check", stepUp], { PUBLIC_URL: "" });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `${stepUp}: step_up: passkey (route eu-high-payments; route eu-high-payments, escalation level 1) needs PUBLIC_URL`,
    );
    const ok = await run(
      ["policy", "check", stepUp, "--explain", JSON.stringify(request({ risk_class: "medium" }))],
      {
        PUBLIC_URL: "http://localhost:3000",
      },
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("on_timeout escalate; step_up passkey at level 0, 1");
    const serve = await run(["serve"], {
      POLICY_FILE: stepUp,
      PUBLIC_URL: "",
      SLACK_BOT_TOKEN: "xoxb-x",
      SLACK_SIGNING_SECRET: "s",
    });
    expect(serve.code).toBe(1);
    expect(serve.stderr).toContain("needs PUBLIC_URL");
    // PUBLIC_URL's own checks (a domain name, not an IP) are in test/domain/policy.test.ts.
  }, 120_000);
});

describe("countersign agent token, migrate, keys", () => {
  it("mints a proof bound to a request file, for curl", async () => {
    const req = request();
    const file = path.join(dir, "req.json");
    fs.writeFileSync(file, JSON.stringify(req));
    const r = await run(["agent", "token", "billing-agent", "--request", file]);
    expect(r.code).toBe(0);
    const claims = decodeJwt(r.stdout.trim());
    expect(claims).toMatchObject({
      iss: "billing-agent",
      aud: "https://countersign.test",
      req: requestDigest(req),
    });
    expect(claims.exp! - claims.iat!).toBe(120);
  });

  it("refuses an unknown agent with a usage error (exit 2)", async () => {
    const r = await run(["agent", "token", "ghost"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("ghost");
  });

  it("migrates, generates a key, and prints the JWKS with every key", async () => {
    expect((await run(["migrate"])).stdout).toContain("migrated");
    const first = await run(["keys", "generate"]);
    expect(first.stdout).toMatch(/kid \S+/);
    const second = await run(["keys", "generate"]);
    expect(second.stdout).toMatch(/retired/);
    const jwks = JSON.parse((await run(["keys", "jwks"])).stdout) as { keys: { kid: string; kty: string }[] };
    expect(jwks.keys).toHaveLength(2);
    expect(jwks.keys.every((k) => k.kty === "OKP")).toBe(true);
  });
});

describe("a .env file", () => {
  it("fills in what the environment does not set; empty values count as unset", async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-env-"));
    fs.writeFileSync(path.join(work, "policy.yml"), testPolicy());
    fs.writeFileSync(
      path.join(work, ".env"),
      "POLICY_FILE=./policy.yml\nSLACK_APP_TOKEN=\nDATABASE_SCHEMA=\n",
    );
    const bin = path.resolve("bin/countersign.mjs");
    const { POLICY_FILE: _unset, ...rest } = env;
    const r = await promisify(execFile)(process.execPath, [bin, "policy", "check"], { cwd: work, env: rest });
    expect(r.stdout).toContain(`${path.join(work, "policy.yml")}: ok`);
    fs.rmSync(work, { recursive: true, force: true });
  });
});

describe("countersign --version, --explain FILE, agent secret", () => {
  it("prints the package's version", async () => {
    const pkg = JSON.parse(fs.readFileSync("package.json", "utf8")) as { version: string };
    const r = await run(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it("takes --explain as a plain path, @path or inline JSON; a missing file is named", async () => {
    const file = path.join(dir, "explain.json");
    fs.writeFileSync(file, JSON.stringify(request()));
    for (const arg of [file, `@${file}`]) {
      const r = await run(["policy", "check", "--explain", arg]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("route eu-high-payments");
    }
    const missing = await run(["policy", "check", "--explain", path.join(dir, "nope.json")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`cannot read ${path.join(dir, "nope.json")}: no such file`);
    fs.writeFileSync(file, "[1]");
    const bad = await run(["policy", "check", "--explain", file]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${file} is not a valid request`);
    expect(bad.stderr).not.toMatch(/^\s+: /m);
  });

  it("prints fresh agent secrets: 32 bytes for HMAC, whsec_ for webhooks", async () => {
    const r = await run(["agent", "secret"]);
    expect(r.stdout).toMatch(/hmac_secret_env value: +[A-Za-z0-9_-]{43}\n/);
    expect(r.stdout).toMatch(/webhook_secret_env value: whsec_[A-Za-z0-9+/]{43}=\n/);
    expect((await run(["agent", "secret", "--webhook"])).stdout).toMatch(/^whsec_\S+\n$/);
  });
});

describe("serve checks webhook secrets at start", () => {
  const serveEnv = {
    SLACK_BOT_TOKEN: "xoxb-x",
    SLACK_SIGNING_SECRET: "s",
    PORT: "0",
    OPS_AGENT_SECRET: OPS_SECRET,
  };
  it("stops naming a missing webhook_secret_env variable", async () => {
    const r = await run(["serve"], { ...serveEnv, BILLING_AGENT_WEBHOOK_SECRET: "" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/BILLING_AGENT_WEBHOOK_SECRET: not set \(agent "billing-agent"/);
  });

  it("stops naming a value that is not whsec_ and base64", async () => {
    const wrong = await run(["serve"], { ...serveEnv, BILLING_AGENT_WEBHOOK_SECRET: "hunter2" });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/BILLING_AGENT_WEBHOOK_SECRET: a webhook secret must start with "whsec_"/);
    const notB64 = await run(["serve"], { ...serveEnv, BILLING_AGENT_WEBHOOK_SECRET: "whsec_not*base64!" });
    expect(notB64.code).toBe(1);
    expect(notB64.stderr).toMatch(
      /BILLING_AGENT_WEBHOOK_SECRET: the webhook secret after "whsec_" is not base64/,
    );
  });
});
