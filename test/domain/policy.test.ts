import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadPolicyFile, parsePolicyText as parsePolicy } from "../../src/adapters/policy/load.js";
import { ConfigError, loadConfig, requirePublicUrl } from "../../src/config.js";
import {
  actionGlobMatches,
  effectiveRiskClass,
  isActionGlob,
  normalizeOrigin,
  PolicyError,
  type PolicyProblem,
  riskRank,
} from "../../src/domain/policy.js";
import { publicUrlProblem, stepUpUses, webAuthnRelyingParty } from "../../src/domain/step-up.js";
import type { Policy } from "../../src/domain/types.js";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "policies");
const SPEC_EXAMPLE = join(FIXTURES, "spec-example.yml");
const FILE = "/etc/countersign/policy.yml";

// A small valid policy, in parts, so each test can swap one part and still know every
// line number (lineOf finds them in the assembled text).
const HEAD = `issuer: https://cs.example.com
slack: { team_id: T0TEAM }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: Europe/Berlin }
  us: { tz: America/New_York }
`;
const AGENTS = `agents:
  bot:
    owners: { risk: U0RISK, ops: [U0OPS1, U0OPS2] }
    auth: { hmac_secret_env: BOT_SECRET }
    allowed_actions: ["payments.*"]
  vendor:
    owners: { ops: U0VOPS }
    auth: { public_key_file: keys/vendor.pub.pem }
    allowed_actions: ["crm.*"]
    vendor_managed: true
`;
const ROUTES = `routes:
  - name: all
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
`;

function policyText(parts: { head?: string; extra?: string; agents?: string; routes?: string } = {}): string {
  return (parts.head ?? HEAD) + (parts.extra ?? "") + (parts.agents ?? AGENTS) + (parts.routes ?? ROUTES);
}

function lineOf(text: string, marker: string): number {
  const lines = text.split("\n");
  const found = lines.findIndex((l) => l.includes(marker));
  if (found < 0 || lines.findIndex((l, i) => i > found && l.includes(marker)) >= 0) {
    throw new Error(`test bug: marker ${JSON.stringify(marker)} must occur on exactly one line`);
  }
  return found + 1;
}

function problemsOf(text: string): PolicyProblem[] {
  try {
    parsePolicy(text, FILE);
  } catch (err) {
    if (err instanceof PolicyError) return [...err.problems];
    throw err;
  }
  throw new Error("expected the policy to be refused, but it parsed");
}

/** Asserts a problem at the line holding `marker`, with that path and a message containing `message`. */
function expectProblem(text: string, marker: string, path: string, message: string): void {
  const problems = problemsOf(text);
  expect(problems).toContainEqual({
    line: lineOf(text, marker),
    column: expect.any(Number),
    path,
    message: expect.stringContaining(message),
  });
}

describe("parsePolicy: the README's example", () => {
  const text = readFileSync(SPEC_EXAMPLE, "utf8");

  it("parses to the expected Policy, defaults filled in", () => {
    const expected: Policy = {
      issuer: "https://countersign.example.com",
      slack: { team_id: "T0EXAMPLE" },
      risk_classes: ["low", "medium", "high", "critical"],
      regions: { eu: { tz: "Europe/Berlin" }, us: { tz: "America/New_York" } },
      defaults: {
        timeout_ms: 1_800_000,
        on_timeout: "deny",
        approval_valid_for_ms: 900_000,
        max_pending: 100,
      },
      actions: { "payments.refund": { min_risk: "high" } },
      agents: {
        "billing-agent": {
          id: "billing-agent",
          owners: { business: ["U0BIZ"], technical: ["U0TECH"], risk: ["U0RISK"] },
          auth: { kind: "hmac", secret_env: "BILLING_AGENT_SECRET" },
          webhook_secret_env: "BILLING_AGENT_WEBHOOK_SECRET",
          callback_origins: [{ origin: "https://billing.internal", allow_private: false }],
          allowed_actions: ["payments.*", "crm.read"],
          regions: ["eu"],
          vendor_managed: false,
          max_pending: 20,
        },
      },
      routes: [
        {
          name: "eu-high-payments",
          index: 0,
          when: {
            risk_class: ["high", "critical"],
            region: ["eu"],
            action: ["payments.*"],
            vendor_managed: false,
          },
          levels: [
            {
              approvers: { users: ["U0ALICE", "U0BOB"], groups: ["S0FINEU"], owners: ["risk"] },
              channel: "C0EUAPPROVALS",
              quorum: 2,
              timeout_ms: 1_800_000,
            },
            {
              approvers: { users: ["U0CFO"], groups: [], owners: [] },
              channel: "C0EUAPPROVALS",
              quorum: 1,
              timeout_ms: 900_000,
            },
          ],
          on_timeout: "escalate",
          business_hours: { days: ["mon", "tue", "wed", "thu", "fri"], start: "09:00", end: "18:00" },
        },
        {
          name: "low-auto",
          index: 1,
          when: { risk_class: ["low"], action: ["crm.read"] },
          auto: "approve",
          levels: [],
          on_timeout: "deny",
        },
      ],
      executors: {},
      sha256: createHash("sha256").update(Buffer.from(text, "utf8")).digest("base64url"),
      file: SPEC_EXAMPLE,
    };
    expect(parsePolicy(text, SPEC_EXAMPLE)).toEqual(expected);
  });

  it("hashes the file's exact bytes, unpadded base64url, so a comment change is a new policy", () => {
    const a = parsePolicy(text, SPEC_EXAMPLE).sha256;
    const b = parsePolicy(`${text}# reviewed\n`, SPEC_EXAMPLE).sha256;
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(b).not.toBe(a);
  });

  it("loads the same Policy from the file as from its text", () => {
    expect(loadPolicyFile(SPEC_EXAMPLE)).toEqual(parsePolicy(text, SPEC_EXAMPLE));
  });
});

describe("parsePolicy: values filled in and normalised", () => {
  it("fills the documented defaults when defaults is left out", () => {
    const p = parsePolicy(policyText(), FILE);
    expect(p.defaults).toEqual({
      timeout_ms: 30 * 60_000,
      on_timeout: "deny",
      approval_valid_for_ms: 15 * 60_000,
      max_pending: 100,
    });
    expect(p.agents["bot"]).toMatchObject({ max_pending: 100, vendor_managed: false, regions: [] });
    expect(p.routes[0]!.levels[0]).toMatchObject({ quorum: 1, timeout_ms: 30 * 60_000 });
    expect(p.routes[0]!.on_timeout).toBe("deny");
  });

  it("lets an agent inherit max_pending and a route its timeout from the file's defaults", () => {
    const p = parsePolicy(policyText({ extra: "defaults: { timeout: 1h30m, max_pending: 7 }\n" }), FILE);
    expect(p.agents["bot"]!.max_pending).toBe(7);
    expect(p.routes[0]!.levels[0]!.timeout_ms).toBe(5_400_000);
  });

  it("gives escalation levels the route's channel, quorum and timeout unless they set their own", () => {
    const routes = `routes:
  - name: ladder
    when: {}
    approvers: { users: [U0A, U0B, U0C] }
    channel: C0FIRST
    quorum: 2
    timeout: 2h
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0D, U0E] } }
      - { approvers: { users: [U0CFO] }, quorum: 1, channel: C0EXEC, timeout: 15m }
`;
    const levels = parsePolicy(policyText({ routes }), FILE).routes[0]!.levels;
    expect(levels.map((l) => [l.channel, l.quorum, l.timeout_ms])).toEqual([
      ["C0FIRST", 2, 7_200_000],
      ["C0FIRST", 2, 7_200_000],
      ["C0EXEC", 1, 900_000],
    ]);
  });

  it("resolves public_key_file against the policy file's folder without reading it", () => {
    const p = parsePolicy(policyText(), FILE);
    expect(p.agents["vendor"]!.auth).toEqual({
      kind: "eddsa",
      public_key_file: "/etc/countersign/keys/vendor.pub.pem",
    });
  });

  it("normalises callback origins (lower-case host, default port dropped) and keeps allow_private", () => {
    const agents = `agents:
  bot:
    auth: { hmac_secret_env: BOT_SECRET }
    webhook_secret_env: BOT_WEBHOOK
    callback_origins: ["HTTPS://Billing.Example.COM:443/", { origin: "http://127.0.0.1:8080", allow_private: true }]
    allowed_actions: "payments.*"
`;
    const p = parsePolicy(policyText({ agents }), FILE);
    expect(p.agents["bot"]!.callback_origins).toEqual([
      { origin: "https://billing.example.com", allow_private: false },
      { origin: "http://127.0.0.1:8080", allow_private: true },
    ]);
    expect(p.agents["bot"]!.allowed_actions).toEqual(["payments.*"]);
  });

  it("accepts one string where a list of route conditions is expected", () => {
    const routes = `routes:
  - name: one
    when: { risk_class: high, region: eu, action: "payments.*", agent: bot }
    approvers: { users: U0ALICE, owners: risk }
    channel: C0APPROVALS
`;
    const route = parsePolicy(policyText({ routes }), FILE).routes[0]!;
    expect(route.when).toEqual({
      risk_class: ["high"],
      region: ["eu"],
      action: ["payments.*"],
      agent: ["bot"],
    });
    expect(route.levels[0]!.approvers).toEqual({ users: ["U0ALICE"], groups: [], owners: ["risk"] });
  });

  it("keeps an agent id such as __proto__ as an ordinary entry, never as the object's prototype", () => {
    const agents = AGENTS.replace("  bot:", "  __proto__:");
    const routes = ROUTES.replace("when: {}", "when: { agent: [__proto__] }");
    const p = parsePolicy(policyText({ agents, routes }), FILE);
    expect(Object.hasOwn(p.agents, "__proto__")).toBe(true);
    expect(Object.getPrototypeOf(p.agents)).toBe(Object.prototype);
    expect(Object.keys(p.agents)).toEqual(["__proto__", "vendor"]);
  });
});

describe("parsePolicy: refusals name the line, the path and the reason", () => {
  it("formats every problem as file:line:column: path: message, one per line", () => {
    const text = policyText({
      head: HEAD.replace("T0TEAM", "t0team").replace("Europe/Berlin", "Europe/Berln"),
    });
    let error: unknown;
    try {
      parsePolicy(text, FILE);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PolicyError);
    const e = error as PolicyError;
    expect(e.name).toBe("PolicyError");
    expect(e.file).toBe(FILE);
    expect(e.message.split("\n")).toEqual([
      `${FILE}:2:19: slack.team_id: "t0team" is not valid: expected a Slack workspace id such as T0123ABCD`,
      `${FILE}:5:13: regions.eu.tz: "Europe/Berln" is not a known IANA time zone (e.g. Europe/Berlin)`,
    ]);
  });

  it("collects all problems in one pass, in file order", () => {
    const text = policyText({
      head: HEAD.replace("https://cs.example.com", "not a url"),
      routes: ROUTES.replace("when: {}", "when: { risk_class: [extreme] }").replace(
        "C0APPROVALS",
        "#approvals",
      ),
    });
    const problems = problemsOf(text);
    expect(problems.map((p) => p.path)).toEqual(["issuer", "routes.0.when.risk_class.0", "routes.0.channel"]);
    expect(problems.map((p) => p.line)).toEqual([1, lineOf(text, "extreme"), lineOf(text, "#approvals")]);
  });

  describe("YAML itself", () => {
    it("refuses a syntax error with its line", () => {
      const text = policyText({ extra: "defaults: { timeout: [30m\n" });
      const problems = problemsOf(text);
      // Nothing after a syntax error is judged: the tree it leaves is not the file's meaning.
      expect(problems.length).toBeGreaterThan(0);
      expect(problems.every((p) => p.message.startsWith("YAML syntax error: "))).toBe(true);
      expect(problems[0]!.line).toBeGreaterThanOrEqual(lineOf(text, "defaults:"));
    });

    it("refuses a duplicate key at the second occurrence, which would silently replace the first", () => {
      const agents = AGENTS.replace(
        '    allowed_actions: ["payments.*"]\n',
        '    allowed_actions: ["payments.*"]\n    allowed_actions: ["*"]\n',
      );
      const text = policyText({ agents });
      expectProblem(
        text,
        'allowed_actions: ["*"]',
        "agents.bot.allowed_actions",
        "duplicate key allowed_actions",
      );
    });

    it("refuses an empty file", () => {
      expect(problemsOf("# nothing here\n")).toEqual([
        { line: 1, column: 1, path: "", message: expect.stringContaining("the policy file is empty") },
      ]);
    });

    it("refuses a file whose aliases would expand without bound (billion laughs)", () => {
      const bomb = [
        'a: &a ["x","x","x","x","x","x","x","x","x"]',
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
        "",
      ].join("\n");
      expect(problemsOf(bomb)[0]!.message).toContain("expands too many aliases");
    });

    it("refuses a list where the policy map belongs", () => {
      expect(problemsOf("- issuer\n")[0]!.message).toBe("expected the policy (a map), got a list");
    });
  });

  describe("top level", () => {
    it("refuses an unknown top-level key", () => {
      const text = policyText({ extra: "defualts: { timeout: 1h }\n" });
      expectProblem(text, "defualts", "defualts", 'unknown key "defualts"; expected one of issuer, slack');
    });

    it("requires issuer, slack, risk_classes, regions, agents and routes", () => {
      const problems = problemsOf("defaults: { timeout: 1h }\n");
      expect(problems.map((p) => p.path)).toEqual([
        "issuer",
        "slack",
        "risk_classes",
        "regions",
        "agents",
        "routes",
      ]);
      expect(problems.every((p) => p.line === 1 && p.message.endsWith("is required here"))).toBe(true);
    });

    it("refuses an issuer that is not an http(s) URL", () => {
      const text = policyText({ head: HEAD.replace("https://cs.example.com", "ftp://cs.example.com") });
      expectProblem(text, "issuer:", "issuer", '"ftp://cs.example.com" is not an http(s) URL');
    });

    it("requires slack.team_id", () => {
      const text = policyText({ head: HEAD.replace("{ team_id: T0TEAM }", "{ }") });
      expectProblem(text, "slack:", "slack.team_id", "team_id is required here");
    });

    it("refuses an empty risk_classes list", () => {
      const text = policyText({ head: HEAD.replace("[low, medium, high, critical]", "[]") });
      expectProblem(text, "risk_classes", "risk_classes", "list at least one risk class");
    });

    it("refuses a risk class listed twice, since the order must be unambiguous", () => {
      const text = policyText({ head: HEAD.replace("[low, medium, high, critical]", "[low, high, low]") });
      expectProblem(text, "risk_classes", "risk_classes.2", 'risk class "low" is listed twice');
    });

    it("refuses a region whose tz is not an IANA time zone", () => {
      const text = policyText({ head: HEAD.replace("America/New_York", "America/Gotham") });
      expectProblem(text, "Gotham", "regions.us.tz", '"America/Gotham" is not a known IANA time zone');
    });

    it("refuses a duration without a unit in defaults", () => {
      const text = policyText({ extra: "defaults:\n  approval_valid_for: 15\n" });
      expectProblem(text, "approval_valid_for", "defaults.approval_valid_for", "15 has no unit");
    });

    it("refuses a misspelt duration and an unknown on_timeout in defaults", () => {
      const text = policyText({ extra: "defaults:\n  timeout: 30 minutes\n  on_timeout: ignore\n" });
      expectProblem(text, "30 minutes", "defaults.timeout", "expected a duration like 90s, 30m, 4h or 2d");
      expectProblem(text, "ignore", "defaults.on_timeout", "expected one of deny, escalate");
    });

    it("refuses a zero max_pending", () => {
      const text = policyText({ extra: "defaults: { max_pending: 0 }\n" });
      expectProblem(text, "max_pending", "defaults.max_pending", "expected a whole number of at least 1");
    });
  });

  describe("actions", () => {
    it("refuses a glob that is not dotted lower-case", () => {
      const text = policyText({ extra: "actions:\n  Payments.Refund: { min_risk: high }\n" });
      expectProblem(text, "Payments.Refund", 'actions["Payments.Refund"]', "is not an action glob");
    });

    it("refuses a min_risk that is not one of the risk classes", () => {
      const text = policyText({ extra: "actions:\n  payments.refund: { min_risk: severe }\n" });
      expectProblem(
        text,
        "severe",
        'actions["payments.refund"].min_risk',
        'unknown risk class "severe" (known: low, medium, high, critical)',
      );
    });
  });

  describe("agents", () => {
    it("refuses an agent id outside [A-Za-z0-9._:-]{1,128}", () => {
      const text = policyText({ agents: AGENTS.replace("  bot:", "  bad bot:") });
      expectProblem(text, "bad bot:", 'agents["bad bot"]', "is not a valid agent id");
    });

    it("refuses auth with both a shared secret and a public key: the algorithm must be fixed", () => {
      const agents = AGENTS.replace(
        "{ hmac_secret_env: BOT_SECRET }",
        "{ hmac_secret_env: BOT_SECRET, public_key_file: bot.pem }",
      );
      const text = policyText({ agents });
      expectProblem(
        text,
        "public_key_file: bot.pem",
        "agents.bot.auth",
        "give exactly one of hmac_secret_env or public_key_file",
      );
    });

    it("refuses auth with neither a shared secret nor a public key", () => {
      const text = policyText({ agents: AGENTS.replace("{ hmac_secret_env: BOT_SECRET }", "{}") });
      expectProblem(text, "auth: {}", "agents.bot.auth", "needs hmac_secret_env");
    });

    it("refuses an environment variable name that is not one", () => {
      const text = policyText({ agents: AGENTS.replace("BOT_SECRET", "bot-secret") });
      expectProblem(
        text,
        "bot-secret",
        "agents.bot.auth.hmac_secret_env",
        "expected an environment variable name",
      );
    });

    it.each([
      ["https://billing.example.com/hook", "without a path, query or fragment"],
      ["https://billing.example.com?x=1", "without a path, query or fragment"],
      ["https://billing.example.com#top", "without a path, query or fragment"],
      ["https://user:pw@billing.example.com", "must not contain a user name or password"],
      ["ftp://billing.example.com", "must use http or https"],
      ["billing.example.com", "is not a URL"],
    ])("refuses the callback origin %s", (origin, message) => {
      const agents = AGENTS.replace(
        '    allowed_actions: ["payments.*"]\n',
        `    allowed_actions: ["payments.*"]\n    webhook_secret_env: BOT_WH\n    callback_origins: ["${origin}"]\n`,
      );
      const text = policyText({ agents });
      expectProblem(text, "callback_origins", "agents.bot.callback_origins.0", message);
    });

    it("refuses callback origins without a webhook secret to sign the callbacks", () => {
      const agents = AGENTS.replace(
        '    allowed_actions: ["payments.*"]\n',
        '    allowed_actions: ["payments.*"]\n    callback_origins: ["https://bot.example.com"]\n',
      );
      const text = policyText({ agents });
      expectProblem(
        text,
        "callback_origins",
        "agents.bot.callback_origins",
        "set webhook_secret_env as well",
      );
    });

    it("refuses an agent that may ask for nothing", () => {
      const text = policyText({ agents: AGENTS.replace('["payments.*"]', "[]") });
      expectProblem(
        text,
        "allowed_actions: []",
        "agents.bot.allowed_actions",
        "list at least one action glob",
      );
    });

    it("refuses an allowed action that is not a glob", () => {
      const text = policyText({ agents: AGENTS.replace('["payments.*"]', '["payments/*"]') });
      expectProblem(text, "payments/*", "agents.bot.allowed_actions.0", "is not an action glob");
    });

    it("refuses an agent region the policy does not define", () => {
      const agents = AGENTS.replace(
        "    vendor_managed: true\n",
        "    vendor_managed: true\n    regions: [eu, apac]\n",
      );
      const text = policyText({ agents });
      expectProblem(text, "apac", "agents.vendor.regions.1", 'unknown region "apac" (known: eu, us)');
    });

    it("refuses an unknown agent setting instead of ignoring it", () => {
      const agents = AGENTS.replace("    vendor_managed: true\n", "    vendor_manged: true\n");
      const text = policyText({ agents });
      expectProblem(text, "vendor_manged", "agents.vendor.vendor_manged", 'unknown key "vendor_manged"');
    });

    it("refuses an owner that is not a Slack user id", () => {
      const text = policyText({ agents: AGENTS.replace("risk: U0RISK", "risk: '@rita'") });
      expectProblem(text, "@rita", "agents.bot.owners.risk", "expected a Slack user id such as U0123ABCD");
    });
  });

  describe("routes", () => {
    const route = (body: string): string => policyText({ routes: `routes:\n${body}` });

    it("refuses two routes with the same name", () => {
      const text = route(`  - name: dup
    when: { action: ["crm.*"] }
    auto: deny
  - name: dup # again
    when: { action: ["crm.*"] }
    auto: approve
`);
      expectProblem(text, "dup # again", "routes.1.name", 'route name "dup" is already used by routes.0');
    });

    it("refuses a misspelt when key, which would otherwise silently widen the route", () => {
      const text = route(`  - name: typo
    when: { risk_clas: [high] }
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
`);
      expectProblem(
        text,
        "risk_clas:",
        "routes.0.when.risk_clas",
        'unknown key "risk_clas"; a route can match on',
      );
    });

    it("requires when, so a forgotten one is not a catch-all", () => {
      const text = route(`  - name: nowhen
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
`);
      expectProblem(
        text,
        "name: nowhen",
        "routes.0.when",
        "when is required; write when: {} to match every request",
      );
    });

    it("refuses an empty condition list, which would match nothing", () => {
      const text = route(`  - name: empty
    when: { region: [] }
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
`);
      expectProblem(text, "region: []", "routes.0.when.region", "an empty list matches nothing");
    });

    it.each([
      ["risk_class: [high, extreme]", "routes.0.when.risk_class.1", 'unknown risk class "extreme"'],
      ["region: [eu, mars]", "routes.0.when.region.1", 'unknown region "mars"'],
      ["agent: [bot, ghost]", "routes.0.when.agent.1", 'unknown agent "ghost" (known: bot, vendor)'],
      ['action: ["Payments"]', "routes.0.when.action.0", "is not an action glob"],
      ["vendor_managed: maybe", "routes.0.when.vendor_managed", "expected true or false"],
    ])("refuses the condition %s", (condition, path, message) => {
      const text = route(`  - name: r
    when: { ${condition} }
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
`);
      expectProblem(text, condition, path, message);
    });

    it("refuses an auto route that does not name its actions", () => {
      const text = route(`  - name: approve-everything
    when: { risk_class: [low] }
    auto: approve
`);
      expectProblem(text, "risk_class: [low]", "routes.0.when", "an auto route must name its actions");
    });

    it("refuses an auto value other than approve or deny", () => {
      const text = route(`  - name: a
    when: { action: ["crm.read"] }
    auto: yes
`);
      expectProblem(text, "auto: yes", "routes.0.auto", "expected one of approve, deny");
    });

    it("refuses approvers on an auto route, which decides at once", () => {
      const text = route(`  - name: a
    when: { action: ["crm.read"] }
    auto: approve
    approvers: { users: [U0ALICE] }
`);
      expectProblem(text, "approvers:", "routes.0.approvers", "an auto route decides at once");
    });

    it("requires approvers and a channel on a route that asks people", () => {
      const text = route(`  - name: people
    when: {}
    quorum: 1
`);
      expectProblem(text, "name: people", "routes.0.approvers", "approvers is required");
      expectProblem(text, "name: people", "routes.0.channel", "channel is required");
    });

    it("refuses approvers that name nobody", () => {
      const text = route(`  - name: nobody
    when: {}
    approvers: { users: [] }
    channel: C0APPROVALS
`);
      expectProblem(text, "users: []", "routes.0.approvers", "names nobody");
    });

    it("refuses a quorum below 1", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    quorum: 0
`);
      expectProblem(text, "quorum: 0", "routes.0.quorum", "expected a whole number of at least 1");
    });

    it("refuses a quorum that the listed users and owners can never reach", () => {
      const text = route(`  - name: q
    when: { agent: [bot] }
    approvers: { users: [U0ALICE, U0RISK], owners: [risk] }
    channel: C0APPROVALS
    quorum: 3
`);
      // U0RISK is both a user and the risk owner: two distinct people, not three.
      expectProblem(text, "quorum: 3", "routes.0.quorum", "quorum 3 but only 2 approvers listed");
    });

    it("counts owner roles with several people towards the quorum", () => {
      const text = route(`  - name: q
    when: { agent: [bot] }
    approvers: { users: [U0ALICE], owners: [ops] }
    channel: C0APPROVALS
    quorum: 3
`);
      expect(parsePolicy(text, FILE).routes[0]!.levels[0]!.quorum).toBe(3);
    });

    it("passes a large quorum when a group is listed, since groups are resolved at run time", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE], groups: [S0FIN] }
    channel: C0APPROVALS
    quorum: 5
`);
      expect(parsePolicy(text, FILE).routes[0]!.levels[0]!.quorum).toBe(5);
    });

    it("counts approvals carried over from earlier levels towards an escalation level's quorum", () => {
      // Alice approves at level 0 (one short of its quorum), the level times out, and the
      // CFO's approval makes two: the escalation level can decide.
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0APPROVALS
    quorum: 2
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] } }
`);
      expect(parsePolicy(text, FILE).routes[0]!.levels.map((l) => l.quorum)).toEqual([2, 2]);
    });

    it("counts carried approvals only up to one short of the earlier quorum, which would have decided", () => {
      // At most one approval (Alice's or Bob's) can carry over, and the CFO makes two of three.
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0APPROVALS
    quorum: 2
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] }, quorum: 3 }
`);
      expectProblem(
        text,
        "U0CFO",
        "routes.0.escalation.0.quorum",
        "quorum 3 but only 1 approver listed, and at most 1 approval carries over from earlier levels: this level could never decide",
      );
    });

    it("refuses an escalation level after a quorum of 1, since any approval there decides", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0APPROVALS
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] }, quorum: 2 }
`);
      expectProblem(
        text,
        "U0CFO",
        "routes.0.escalation.0.quorum",
        "quorum 2 but only 1 approver listed, and no approval carries over from earlier levels",
      );
    });

    it("counts a person named at both levels once", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE, U0BOB, U0CFO] }
    channel: C0APPROVALS
    quorum: 3
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0BOB, U0CFO] }, quorum: 4 }
`);
      // Two approvals could carry over, but Bob and the CFO are already counted here:
      // only Alice's is another person's.
      expectProblem(
        text,
        "quorum: 4",
        "routes.0.escalation.0.quorum",
        "quorum 4 but only 2 approvers listed, and at most 1 approval carries over",
      );
    });

    it("lets an earlier level's group supply carried approvals, since its members are known only at run time", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { groups: [S0FIN] }
    channel: C0APPROVALS
    quorum: 3
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] } }
`);
      expect(parsePolicy(text, FILE).routes[0]!.levels.map((l) => l.quorum)).toEqual([3, 3]);
    });

    it("refuses on_timeout: escalate without escalation levels", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    on_timeout: escalate
`);
      expectProblem(text, "on_timeout: escalate", "routes.0.on_timeout", "no escalation levels");
    });

    it("refuses an inherited on_timeout: escalate on a route without escalation levels", () => {
      const text = policyText({ extra: "defaults: { on_timeout: escalate }\n" });
      expectProblem(text, "name: all", "routes.0.on_timeout", "escalate (from defaults)");
    });

    it("refuses an escalation level without approvers", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    on_timeout: escalate
    escalation:
      - { quorum: 1, timeout: 15m }
`);
      expectProblem(text, "timeout: 15m", "routes.0.escalation.0.approvers", "approvers is required");
    });

    it("refuses an owner role that no agent has", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { owners: [legal] }
    channel: C0APPROVALS
`);
      expectProblem(
        text,
        "legal",
        "routes.0.approvers.owners.0",
        'owner role "legal" is not defined for any agent this route can match (bot, vendor)',
      );
    });

    it("refuses an owner role that only agents the route cannot match have", () => {
      const text = route(`  - name: q
    when: { agent: [vendor] }
    approvers: { owners: [risk] }
    channel: C0APPROVALS
`);
      expectProblem(text, "owners: [risk]", "routes.0.approvers.owners.0", "this route can match (vendor)");
    });

    it("judges owner roles against the agents a vendor_managed condition leaves", () => {
      const text = route(`  - name: q
    when: { vendor_managed: true }
    approvers: { owners: [risk] }
    channel: C0APPROVALS
`);
      expectProblem(text, "owners: [risk]", "routes.0.approvers.owners.0", "this route can match (vendor)");
    });

    it("refuses business hours that end before they start", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    business_hours: { days: [mon], start: "18:00", end: "09:00" }
`);
      expectProblem(
        text,
        "business_hours",
        "routes.0.business_hours.end",
        "end 09:00 must be after start 18:00",
      );
    });

    it.each([
      [
        '{ days: [mon, funday], start: "09:00", end: "18:00" }',
        "routes.0.business_hours.days.1",
        "is not a weekday",
      ],
      [
        '{ days: [mon, mon], start: "09:00", end: "18:00" }',
        "routes.0.business_hours.days.1",
        "is listed twice",
      ],
      ['{ days: [], start: "09:00", end: "18:00" }', "routes.0.business_hours.days", "list at least one day"],
      ['{ days: [mon], start: "9:00", end: "18:00" }', "routes.0.business_hours.start", "24-hour time"],
      ['{ days: [mon], start: "09:00", end: "25:00" }', "routes.0.business_hours.end", "24-hour time"],
      ['{ days: [mon], start: "09:00" }', "routes.0.business_hours.end", "end is required here"],
    ])("refuses business_hours %s", (hours, path, message) => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    business_hours: ${hours}
`);
      expectProblem(text, "business_hours", path, message);
    });

    it('accepts business hours that run to "24:00"', () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    business_hours: { days: [sat, sun], start: "00:00", end: "24:00" }
`);
      expect(parsePolicy(text, FILE).routes[0]!.business_hours).toEqual({
        days: ["sat", "sun"],
        start: "00:00",
        end: "24:00",
      });
    });

    it("refuses a route timeout of zero", () => {
      const text = route(`  - name: q
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    timeout: 0s
`);
      expectProblem(text, "timeout: 0s", "routes.0.timeout", "longer than 0s");
    });
  });
});

describe("loadPolicyFile", () => {
  it("reports a missing file as a PolicyError at line 0 naming the file", () => {
    const missing = join(FIXTURES, "does-not-exist.yml");
    expect(() => loadPolicyFile(missing)).toThrow(PolicyError);
    try {
      loadPolicyFile(missing);
    } catch (err) {
      const e = err as PolicyError;
      expect(e.file).toBe(missing);
      expect(e.problems).toEqual([
        { line: 0, column: 0, path: "", message: expect.stringContaining("does not exist") },
      ]);
      expect(e.message).toBe(`${missing}:0:0: ${e.problems[0]!.message}`);
    }
  });
});

describe("actionGlobMatches", () => {
  it.each([
    ["payments.*", "payments.refund", true],
    ["payments.*", "payments.refund.partial", true],
    ["payments.*", "payments", false],
    ["payments.*", "paymentsx.refund", false],
    ["payments.*", "crm.payments.refund", false],
    ["*", "payments.refund", true],
    ["*", "crm", true],
    ["payments.re*", "payments.refund", true],
    ["payments.re*", "payments.re", true],
    ["payments.re*", "payments.refund.partial", false],
    ["payments.re*", "payments.charge", false],
    ["payments.*.partial", "payments.refund.partial", true],
    ["payments.*.partial", "payments.partial", false],
    ["crm.read", "crm.read", true],
    ["crm.read", "crm.readx", false],
    ["crm.read", "crmxread", false],
    ["*", "Payments.Refund", false],
    ["*", "payments..refund", false],
  ])("%s against %s -> %s", (pattern, type, expected) => {
    expect(actionGlobMatches(pattern, type)).toBe(expected);
  });

  it("knows which patterns are globs", () => {
    expect(["*", "payments.*", "payments.re*", "a_b.c1"].every(isActionGlob)).toBe(true);
    expect(["", "Payments", "payments.", ".x", "pay ments", "payments/*", "a..b"].some(isActionGlob)).toBe(
      false,
    );
  });
});

describe("effectiveRiskClass and riskRank", () => {
  const policy = parsePolicy(
    policyText({
      extra: `actions:
  payments.*: { min_risk: medium }
  payments.refund: { min_risk: high }
  crm.read: { min_risk: low }
`,
    }),
    FILE,
  );

  it("raises a request to the floor of the matching actions entry", () => {
    expect(effectiveRiskClass(policy, "payments.charge", "low")).toBe("medium");
  });

  it("takes the highest floor when several entries match", () => {
    expect(effectiveRiskClass(policy, "payments.refund", "low")).toBe("high");
  });

  it("never lowers what the agent asked for", () => {
    expect(effectiveRiskClass(policy, "payments.refund", "critical")).toBe("critical");
    expect(effectiveRiskClass(policy, "crm.read", "high")).toBe("high");
  });

  it("leaves an action without a floor as requested", () => {
    expect(effectiveRiskClass(policy, "tickets.close", "low")).toBe("low");
  });

  it("refuses a risk class the policy does not know rather than mapping it onto one", () => {
    expect(() => effectiveRiskClass(policy, "payments.refund", "none")).toThrow('unknown risk class "none"');
  });

  it("ranks risk classes in the file's rising order", () => {
    expect(["low", "medium", "high", "critical", "extreme"].map((r) => riskRank(policy, r))).toEqual([
      0, 1, 2, 3, -1,
    ]);
  });
});

describe("normalizeOrigin", () => {
  it("drops default ports and lower-cases the host", () => {
    expect(normalizeOrigin("HTTP://Example.COM:80")).toEqual({ origin: "http://example.com" });
    expect(normalizeOrigin("https://example.com:8443")).toEqual({ origin: "https://example.com:8443" });
    expect(normalizeOrigin("http://[::1]:3000")).toEqual({ origin: "http://[::1]:3000" });
  });

  it("refuses anything beyond scheme, host and port", () => {
    for (const text of [
      "https://example.com/x",
      "https://example.com?",
      "https://a@example.com",
      "file:///etc",
    ]) {
      expect(normalizeOrigin(text)).toHaveProperty("reason");
    }
  });
});

describe("parsePolicy: executors", () => {
  const executors = (body: string) => policyText({ routes: `${ROUTES}executors:\n${body}` });

  it("reads an executor: its proof key, may_redeem globs and for_agents", () => {
    const p = parsePolicy(
      executors(`  payments-api:
    auth: { hmac_secret_env: PAYMENTS_SECRET }
    may_redeem: ["payments.*"]
    for_agents: [bot]
  deployer:
    auth: { public_key_file: keys/deployer.pub.pem }
    may_redeem: ["ops.deploy"]
`),
      FILE,
    );
    expect(p.executors).toEqual({
      "payments-api": {
        id: "payments-api",
        auth: { kind: "hmac", secret_env: "PAYMENTS_SECRET" },
        may_redeem: ["payments.*"],
        for_agents: ["bot"],
      },
      deployer: {
        id: "deployer",
        auth: { kind: "eddsa", public_key_file: "/etc/countersign/keys/deployer.pub.pem" },
        may_redeem: ["ops.deploy"],
        for_agents: [],
      },
    });
  });

  it("refuses an id that is both an agent and an executor, at the executor's line", () => {
    const text = executors(`  bot:  # both
    auth: { hmac_secret_env: X_SECRET }
    may_redeem: ["payments.*"]
`);
    expectProblem(text, "bot:  # both", "executors.bot", "both an agent and an executor");
  });

  it("refuses a bad glob, an unknown agent in for_agents and a missing auth, each at its line", () => {
    const text = executors(`  payments-api:
    may_redeem: ["Payments Refund"]  # glob
    for_agents: [ghost]  # ghost
`);
    expectProblem(text, "# glob", "executors.payments-api.may_redeem.0", "is not an action glob");
    expectProblem(text, "# ghost", "executors.payments-api.for_agents.0", 'unknown agent "ghost"');
    expect(problemsOf(text).some((p) => p.message.includes("auth"))).toBe(true);
  });
});

describe("parsePolicy: step_up", () => {
  const routes = (body: string): string => policyText({ routes: `routes:\n${body}` });

  it("step_up on a route applies to its every level; on an escalation entry, to that level only", () => {
    const text = routes(`  - name: whole
    when: { action: ["payments.*"] }
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0APPROVALS
    step_up: passkey
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] } }
  - name: top-only
    when: {}
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0APPROVALS
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] }, step_up: passkey }
`);
    const p = parsePolicy(text, FILE);
    expect(p.routes[0]!.levels.map((l) => l.step_up)).toEqual(["passkey", "passkey"]);
    expect(p.routes[1]!.levels.map((l) => l.step_up)).toEqual([undefined, "passkey"]);
    // A level without step-up has no step_up key at all, so policies without it parse as before.
    expect(Object.hasOwn(p.routes[1]!.levels[0]!, "step_up")).toBe(false);
    expect(stepUpUses(p.routes)).toEqual([
      "route whole",
      "route whole, escalation level 1",
      "route top-only, escalation level 1",
    ]);
  });

  it("refuses any other value, on its line", () => {
    const text = routes(`  - name: r
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    step_up: totp # bad
`);
    expectProblem(text, "# bad", "routes.0.step_up", "passkey");
    const esc = routes(`  - name: r
    when: {}
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0APPROVALS
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] }, step_up: true } # bad
`);
    expectProblem(esc, "# bad", "routes.0.escalation.0.step_up", "passkey");
  });

  it("refuses step_up on an auto route", () => {
    const text = routes(`  - name: r
    when: { action: ["crm.read"] }
    auto: approve
    step_up: passkey # here
`);
    expectProblem(
      text,
      "# here",
      "routes.0.step_up",
      "an auto route decides at once, so step_up has no meaning",
    );
  });

  it("counts no carried approval at a step-up level: its own approvers must reach the quorum", () => {
    // Without step-up, Alice's approval from level 0 and the CFO's make two (see above);
    // at a step-up level only approvals confirmed there count, and the CFO alone is one.
    const text = routes(`  - name: q
    when: {}
    approvers: { users: [U0ALICE, U0BOB] }
    channel: C0APPROVALS
    quorum: 2
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO] }, step_up: passkey }
`);
    expectProblem(
      text,
      "U0CFO",
      "routes.0.escalation.0.quorum",
      "quorum 2 but only 1 approver listed, and approvals from earlier levels do not count at a step_up level: this level could never decide",
    );
  });
});

describe("PUBLIC_URL and step_up", () => {
  const stepUpPolicy = (): Policy =>
    parsePolicy(
      policyText({
        routes: `routes:
  - name: big
    when: {}
    approvers: { users: [U0ALICE] }
    channel: C0APPROVALS
    step_up: passkey
`,
      }),
      FILE,
    );

  it("a policy with step_up needs PUBLIC_URL; one without does not", () => {
    expect(() => requirePublicUrl(stepUpPolicy(), undefined)).toThrow(
      `${FILE}: step_up: passkey (route big) needs PUBLIC_URL`,
    );
    expect(() => requirePublicUrl(stepUpPolicy(), "https://cs.example.com")).not.toThrow();
    expect(() => requirePublicUrl(parsePolicy(policyText(), FILE), undefined)).not.toThrow();
  });

  it("HEAP_GROWING_PERCENT: 30 unless set, 0 for V8's own, and nothing that is not a whole percentage", () => {
    expect(loadConfig({}, "/tmp").heapGrowingPercent).toBe(30);
    expect(loadConfig({ HEAP_GROWING_PERCENT: "0" }, "/tmp").heapGrowingPercent).toBe(0);
    for (const bad of ["-1", "12.5", "lots"]) {
      expect(() => loadConfig({ HEAP_GROWING_PERCENT: bad }, "/tmp"), bad).toThrow(/HEAP_GROWING_PERCENT/);
    }
  });

  it("PUBLIC_URL must be an absolute http(s) URL whose host is a domain name", () => {
    const load = (url: string) => loadConfig({ PUBLIC_URL: url }, "/tmp");
    expect(load("https://cs.example.com/").publicUrl).toBe("https://cs.example.com");
    expect(load("http://localhost:3000").publicUrl).toBe("http://localhost:3000");
    expect(loadConfig({}, "/tmp").publicUrl).toBeUndefined();
    for (const [url, why] of [
      ["http://127.0.0.1:3000", "IP address"],
      ["http://127.1", "IP address"],
      ["http://[::1]:3000", "IP address"],
      ["ftp://cs.example.com", "http:// or https://"],
      ["cs.example.com", "PUBLIC_URL"],
      ["https://cs.example.com/?x=1", "query"],
    ] as const) {
      expect(() => load(url), url).toThrow(ConfigError);
      expect(() => load(url), url).toThrow(why);
    }
  });

  it("the WebAuthn origin and RP ID come from PUBLIC_URL", () => {
    expect(webAuthnRelyingParty("https://cs.example.com:8443/approvals")).toEqual({
      origin: "https://cs.example.com:8443",
      rpId: "cs.example.com",
    });
    expect(publicUrlProblem("http://localhost")).toBeNull();
  });
});
