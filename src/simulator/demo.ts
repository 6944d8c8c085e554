/**
 * `countersign demo`: Countersign, a local Slack stand-in with its web page, and an agent
 * that asks for approvals, in one command that needs only Node and Redis.
 *
 * Everything the demo writes lives in one data folder (policy, signing key, secrets,
 * database, log), so a second run picks up its history and a person can read or edit
 * the policy it runs. The app is started exactly as `serve` starts it, through
 * `startCountersign` with a Config; only Slack is simulated.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { type Logger, pino } from "pino";
import { ensureKeyFile } from "../adapters/crypto/keyfile.js";
import { loadConfig } from "../config.js";
import { type Countersign, startCountersign } from "../main.js";
import { DemoAgent, demoScript } from "./demo-agent.js";
import { SIM_APP_ID } from "./interactions.js";
import { type PageChannel, type PagePerson, SimPage } from "./page.js";
import { findOrStartRedis } from "./redis.js";
import { type SimUser, SlackApiSim } from "./slack-api.js";

export const DEMO_TEAM = "T0DEMO0001";
export const DEMO_PARTNER_TEAM = "T0PARTNER1";
export const DEMO_ISSUER = "https://countersign.demo.invalid";
export const DEMO_QUEUE_PREFIX = "countersign-demo";

function person(
  id: string,
  name: string,
  realName: string,
  role: string,
  extra: Partial<SimUser> = {},
): PagePerson {
  return {
    user: {
      id,
      team_id: DEMO_TEAM,
      name,
      real_name: realName,
      email: `${name}@demo.invalid`,
      tz: "Europe/Berlin",
      ...extra,
    },
    role,
  };
}

/** The demo's people, in the order the page's picker lists them. */
export const DEMO_PEOPLE: readonly PagePerson[] = [
  person("U0ALICE001", "alice", "Alice Moreau", "approver · payments"),
  person("U0BOB00001", "bob", "Bob Tanaka", "approver · payments", { tz: "America/New_York" }),
  person("U0PRIYA001", "priya", "Priya Raman", "risk owner of billing-agent · approver · payments", {
    tz: "Asia/Singapore",
  }),
  person("U0CFO00001", "chris", "Chris Osei", "CFO · escalation for payments"),
  person("U0SRE00001", "sam", "Sam Keller", "SRE on call (group S0SREONCALL) · approver · infrastructure"),
  person("U0SRE00002", "kim", "Kim Park", "SRE on call (group S0SREONCALL) · approver · infrastructure", {
    tz: "Asia/Singapore",
  }),
  person("U0DPO00001", "dana", "Dana Fischer", "data protection officer · approver · customer data"),
  person("U0CSM00001", "lena", "Lena Novak", "business owner of crm-agent · approver · customer data"),
  person("U0CISO0001", "jordan", "Jordan Lee", "CISO · escalation for infrastructure and customer data", {
    tz: "America/New_York",
  }),
  person("U0REQ00001", "marta", "Marta Silva", "support lead · agents act for her (gets verdict DMs)"),
  person("U0GUEST001", "gil", "Gil Guest", "guest account · listed as approver, never eligible", {
    is_restricted: true,
  }),
  {
    user: {
      id: "U0EXT00001",
      team_id: DEMO_PARTNER_TEAM,
      name: "olu",
      real_name: "Olu Partner",
      email: "olu@partner.invalid",
    },
    role: "outsider from another workspace (Slack Connect) · listed, never eligible",
  },
  person("U0MALLORY1", "mallory", "Mallory Vance", "not an approver of anything"),
];

export const DEMO_CHANNELS: readonly PageChannel[] = [
  { id: "C0PAYMENTS1", name: "payments-approvals", topic: "Refunds and payouts: 2 approvals, then the CFO" },
  { id: "C0INFRAOPS1", name: "infra-approvals", topic: "Production changes: 2 approvals, then the CISO" },
  { id: "C0CUSTDATA1", name: "customer-data-approvals", topic: "Exports of customer data: 2 approvals" },
];

const DEMO_GROUPS: Record<string, string[]> = { S0SREONCALL: ["U0SRE00001", "U0SRE00002"] };

/** Each agent and the environment variable (in secrets.json) holding its HMAC secret. */
const AGENT_SECRET_ENV: Record<string, string> = {
  "billing-agent": "BILLING_AGENT_SECRET",
  "infra-agent": "INFRA_AGENT_SECRET",
  "crm-agent": "CRM_AGENT_SECRET",
};

/** The demo executor's secret; an older data folder's policy may not name the executor (then nothing is redeemed). */
const DEMO_EXECUTOR_SECRET_ENV = "DEMO_EXECUTOR_SECRET";
export const DEMO_EXECUTOR = "demo-executor";

/** The demo policy: three agents, three regions, quorum 2, a short escalation ladder, low risk auto-approved. */
export function demoPolicy(): string {
  return `# The demo's policy (written by \`countersign demo\`; edit it and restart the demo to try changes).
# Timeouts are short so that escalation can be watched: 2 minutes, then 1 more at the next level.
issuer: ${DEMO_ISSUER}
slack: { team_id: ${DEMO_TEAM} }
risk_classes: [low, medium, high, critical]
regions:
  eu: { tz: Europe/Berlin }
  us: { tz: America/New_York }
  apac: { tz: Asia/Singapore }
defaults: { timeout: 2m, on_timeout: deny, approval_valid_for: 15m, max_pending: 50 }
actions:
  payments.refund: { min_risk: medium }
  payments.payout: { min_risk: high }
  db.migrate: { min_risk: high }
  crm.export: { min_risk: high }
agents:
  billing-agent:
    owners: { business: U0CFO00001, technical: U0SRE00001, risk: U0PRIYA001 }
    auth: { hmac_secret_env: BILLING_AGENT_SECRET }
    allowed_actions: ["payments.*"]
    regions: [eu, us]
    max_pending: 20
  infra-agent:
    owners: { technical: U0SRE00002, risk: U0CISO0001 }
    auth: { hmac_secret_env: INFRA_AGENT_SECRET }
    allowed_actions: ["db.*", "infra.*"]
  crm-agent:
    owners: { business: U0CSM00001, risk: U0DPO00001 }
    auth: { hmac_secret_env: CRM_AGENT_SECRET }
    allowed_actions: ["crm.*"]
# The demo executor stands for the services that carry the actions out: the demo agent hands
# it each approval, it redeems the grant (once) and reports the outcome, so every card shows
# the whole life of an approval in its thread.
executors:
  demo-executor:
    auth: { hmac_secret_env: DEMO_EXECUTOR_SECRET }
    may_redeem: ["payments.*", "db.*", "infra.*", "crm.*"]
routes:
  - name: low-risk-reads
    when: { risk_class: [low], action: ["crm.read", "infra.read"] }
    auto: approve
  - name: payments
    when: { action: ["payments.*"] }
    # The guest and the outsider are listed to show that they never become eligible.
    approvers: { users: [U0ALICE001, U0BOB00001, U0GUEST001, U0EXT00001], owners: [risk] }
    channel: C0PAYMENTS1
    quorum: 2
    timeout: 2m
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CFO00001] }, quorum: 1, timeout: 1m }
  # Step-up: a click in Slack is not enough to delete production; each approval is
  # confirmed with the approver's own passkey (App Home: "Register a passkey" first).
  - name: production-deletes
    when: { action: ["infra.delete", "db.drop"] }
    approvers: { groups: [S0SREONCALL], owners: [technical] }
    channel: C0INFRAOPS1
    quorum: 1
    timeout: 5m
    step_up: passkey
  - name: infrastructure
    when: { action: ["db.*", "infra.*"] }
    approvers: { groups: [S0SREONCALL], owners: [technical] }
    channel: C0INFRAOPS1
    quorum: 2
    timeout: 2m
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CISO0001] }, quorum: 1, timeout: 1m }
  - name: customer-data
    when: { action: ["crm.*"] }
    approvers: { users: [U0DPO00001], owners: [business] }
    channel: C0CUSTDATA1
    quorum: 2
    timeout: 2m
    on_timeout: escalate
    escalation:
      - { approvers: { users: [U0CISO0001] }, quorum: 1, timeout: 1m }
`;
}

export interface DemoFiles {
  readonly dataDir: string;
  readonly policyFile: string;
  readonly keyFile: string;
  readonly secretsFile: string;
  readonly dbFile: string;
  readonly logFile: string;
  /** SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and each agent's secret, by variable name. */
  readonly secrets: Readonly<Record<string, string>>;
  /** True when this run created the folder's files (false: a previous run's are reused). */
  readonly fresh: boolean;
}

/**
 * Creates what is missing in the data folder and keeps what is there: an edited policy,
 * the signing key (old records must keep verifying) and the secrets (agents' proofs).
 */
export function prepareDataDir(dataDir: string): DemoFiles {
  fs.mkdirSync(dataDir, { recursive: true });
  const files = {
    policyFile: path.join(dataDir, "policy.yml"),
    keyFile: path.join(dataDir, "signing-key.pem"),
    secretsFile: path.join(dataDir, "secrets.json"),
    dbFile: path.join(dataDir, "countersign.db"),
    logFile: path.join(dataDir, "countersign.log"),
  };
  const fresh = !fs.existsSync(files.policyFile);
  if (fresh) fs.writeFileSync(files.policyFile, demoPolicy());
  ensureKeyFile(files.keyFile);

  let secrets: Record<string, string> = {};
  if (fs.existsSync(files.secretsFile)) {
    try {
      const parsed: unknown = JSON.parse(fs.readFileSync(files.secretsFile, "utf8"));
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
        throw new Error("not an object");
      for (const [k, v] of Object.entries(parsed)) if (typeof v === "string") secrets[k] = v;
    } catch (err) {
      throw new Error(
        `${files.secretsFile} is not a JSON object of strings (${(err as Error).message}): fix it or delete it to generate new secrets`,
      );
    }
  }
  const wanted: Record<string, () => string> = {
    SLACK_BOT_TOKEN: () => `xoxb-demo-${randomBytes(12).toString("hex")}`,
    SLACK_SIGNING_SECRET: () => randomBytes(16).toString("hex"),
  };
  for (const env of [...Object.values(AGENT_SECRET_ENV), DEMO_EXECUTOR_SECRET_ENV])
    wanted[env] = () => randomBytes(32).toString("base64url");
  let changed = false;
  for (const [k, make] of Object.entries(wanted)) {
    if (!secrets[k]) {
      secrets = { ...secrets, [k]: make() };
      changed = true;
    }
  }
  if (changed) fs.writeFileSync(files.secretsFile, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  return { dataDir, ...files, secrets, fresh };
}

export interface DemoOptions {
  readonly dataDir: string;
  /** The simulator page's port; 0 picks a free one. */
  readonly pagePort: number;
  readonly redisUrl: string;
  /** BullMQ key prefix; default `countersign-demo`. */
  readonly queuePrefix?: string;
  /** Default: info-level JSON lines appended to `<dataDir>/countersign.log`. */
  readonly log?: Logger;
  readonly logLevel?: string;
  /** Passed to startCountersign (tests shorten them). */
  readonly pollMs?: number;
  readonly sweepMs?: number;
  /**
   * Run the app in Socket Mode (SLACK_APP_TOKEN set): it opens a socket on the simulator
   * and every click, submission and command travels over it instead of to /slack/events.
   */
  readonly socketMode?: boolean;
}

export interface Demo {
  readonly pageUrl: string;
  readonly appUrl: string;
  readonly sim: SlackApiSim;
  readonly page: SimPage;
  readonly app: Countersign;
  readonly files: DemoFiles;
  readonly redisUrl: string;
  readonly queuePrefix: string;
  /** How Slack reaches the app: signed requests to /slack/events, or Socket Mode. */
  readonly mode: "http" | "socket";
  readonly issuer: string;
  /** Agent id -> its HMAC secret, for a demo agent. */
  readonly agentSecrets: Readonly<Record<string, string>>;
  /** The demo executor, when the policy names it. */
  readonly executor: { readonly id: string; readonly secret: string } | null;
  /** Display names by Slack user id. */
  readonly names: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

/** Starts the simulator with its page, then Countersign against it. Redis must already answer. */
export async function startDemo(o: DemoOptions): Promise<Demo> {
  const files = prepareDataDir(o.dataDir);
  const page = new SimPage({ people: DEMO_PEOPLE, channels: DEMO_CHANNELS, title: "Countersign demo" });
  // Made fresh each run and never written to secrets.json: a token there would be read
  // back as SLACK_APP_TOKEN and switch every later run to Socket Mode.
  const appToken = o.socketMode ? `xapp-1-${SIM_APP_ID}-${randomBytes(12).toString("hex")}` : undefined;
  let sim: SlackApiSim;
  try {
    sim = await SlackApiSim.start({
      port: o.pagePort,
      host: "127.0.0.1",
      botToken: files.secrets.SLACK_BOT_TOKEN!,
      teamId: DEMO_TEAM,
      teamDomain: "countersign-demo",
      users: DEMO_PEOPLE.map((p) => p.user),
      usergroups: DEMO_GROUPS,
      channels: DEMO_CHANNELS.map((c) => c.id),
      onOtherRequest: page.handler,
      ...(appToken ? { socketMode: { appToken } } : {}),
    });
  } catch (err) {
    page.close();
    if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") {
      throw new Error(`port ${o.pagePort} is already in use: pass --port with a free one (or 0 for any)`);
    }
    throw err;
  }
  const queuePrefix = o.queuePrefix ?? DEMO_QUEUE_PREFIX;
  const logLevel = o.logLevel ?? "info";
  const log = o.log ?? pino({ level: logLevel }, pino.destination({ dest: files.logFile, sync: true }));
  let app: Countersign;
  try {
    // The passkey pages are served by the app itself: PUBLIC_URL is its own address, on a
    // port chosen now (WebAuthn needs a domain name: localhost, not 127.0.0.1).
    const appPort = await freePort();
    const config = loadConfig({
      ...files.secrets,
      PUBLIC_URL: `http://localhost:${appPort}`,
      REDIS_URL: o.redisUrl,
      DATABASE_URL: `file:${files.dbFile}`,
      SLACK_API_URL: sim.url,
      SIGNING_KEY_FILE: files.keyFile,
      POLICY_FILE: files.policyFile,
      HOST: "127.0.0.1",
      PORT: String(appPort),
      QUEUE_PREFIX: queuePrefix,
      LOG_LEVEL: logLevel,
      ...(appToken ? { SLACK_APP_TOKEN: appToken } : {}),
    });
    app = await startCountersign(config, {
      log,
      ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
      ...(o.sweepMs !== undefined ? { sweepMs: o.sweepMs } : {}),
    });
  } catch (err) {
    page.close();
    await sim.close();
    throw err;
  }
  page.connect(
    appToken
      ? { sim }
      : { sim, appUrl: `${app.url}/slack/events`, signingSecret: files.secrets.SLACK_SIGNING_SECRET! },
  );

  const agentSecrets: Record<string, string> = {};
  for (const [agent, env] of Object.entries(AGENT_SECRET_ENV)) {
    const secret = files.secrets[env];
    if (secret !== undefined) agentSecrets[agent] = secret;
  }
  const names: Record<string, string> = {};
  for (const p of DEMO_PEOPLE) names[p.user.id] = p.user.real_name ?? p.user.name;

  let stopping: Promise<void> | null = null;
  return {
    pageUrl: `${sim.origin}/`,
    appUrl: app.url,
    sim,
    page,
    app,
    files,
    redisUrl: o.redisUrl,
    queuePrefix,
    mode: appToken ? "socket" : "http",
    issuer: app.policy.issuer,
    agentSecrets,
    executor:
      app.policy.executors?.[DEMO_EXECUTOR] && files.secrets[DEMO_EXECUTOR_SECRET_ENV]
        ? { id: DEMO_EXECUTOR, secret: files.secrets[DEMO_EXECUTOR_SECRET_ENV]! }
        : null,
    names,
    stop() {
      stopping ??= (async () => {
        await app.stop();
        page.close();
        await sim.close();
      })();
      return stopping;
    },
  };
}

/**
 * The CLI's `demo`: finds or starts Redis, starts the demo, prints the page's URL first
 * and a short guide, runs the demo agent, and on Ctrl-C (SIGINT/SIGTERM) stops it all
 * and returns.
 */
export async function runDemo(o: {
  dataDir: string;
  pagePort: number;
  agent: boolean;
  socketMode?: boolean;
}): Promise<void> {
  // The environment is read by config.ts alone: REDIS_URL and LOG_LEVEL apply to the demo too.
  const env = loadConfig();
  const redis = await findOrStartRedis(env.redisUrl);
  let demo: Demo;
  try {
    demo = await startDemo({
      dataDir: o.dataDir,
      pagePort: o.pagePort,
      redisUrl: redis.url,
      logLevel: env.logLevel,
      socketMode: o.socketMode ?? false,
    });
  } catch (err) {
    await redis.stop();
    throw err;
  }
  const relative = path.relative(process.cwd(), demo.files.dataDir);
  const rel = relative === "" ? "." : relative.startsWith("..") ? demo.files.dataDir : relative;
  const lines = [
    `Countersign demo: open ${demo.pageUrl}`,
    "",
    "  1. At the top of the page, pick who you are: approvers, owners, a guest, an outsider, a non-approver.",
    "  2. Cards arrive in #payments-approvals, #infra-approvals and #customer-data-approvals as the agent asks.",
    "     Approve needs 2 approvers; Deny asks for a reason. Left alone, a card escalates after 2 minutes",
    "     and ends 1 minute later. Low-risk reads are approved by policy at once.",
    demo.mode === "socket"
      ? "  3. Socket Mode: the app holds a socket open to the simulator; every click is an envelope on it,"
      : "  3. Every click is a real signed Slack payload to the app's /slack/events;",
    demo.mode === "socket"
      ? "     answered by the app's ack. Every verdict below comes with its signed record, checked against the JWKS."
      : "     every verdict below comes with its signed record, verified against the app's JWKS.",
    '  4. Step-up: as Sam, open "Countersign · Home" under Apps, click Register a passkey and follow the DM\'s',
    "     link (this browser's passkey: Touch ID, Windows Hello, a phone). Deletes in #infra-approvals then",
    "     need it: Approve sends a one-time link to confirm with the passkey.",
    "",
    `  app        ${demo.appUrl} (JWKS at /.well-known/jwks.json, log in ${path.join(rel, "countersign.log")})`,
    `  redis      ${redis.started ? `${redis.url} (a private redis-server, stopped on exit)` : redis.url}`,
    `  data       ${rel}/ (policy.yml, signing-key.pem, secrets.json, countersign.db)${demo.files.fresh ? "" : ", reused from the last run"}`,
    `  Ctrl-C stops everything.${o.agent ? "" : " (--no-agent: no requests will be sent.)"}`,
    "",
  ];
  console.log(lines.join("\n"));

  let agent: DemoAgent | null = null;
  if (o.agent) {
    agent = await DemoAgent.start({
      redisUrl: redis.url,
      prefix: demo.queuePrefix,
      issuer: demo.issuer,
      secrets: demo.agentSecrets,
      appUrl: demo.appUrl,
      names: demo.names,
      ...(demo.executor ? { executor: demo.executor } : {}),
    });
    const requester = DEMO_PEOPLE.find((p) => p.user.id === "U0REQ00001")!.user;
    agent.run(demoScript({ requester: requester.id, requesterEmail: requester.email ?? "" }));
  }

  await new Promise<void>((resolve) => {
    const onSignal = () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      // A second Ctrl-C during a slow stop ends the process at once.
      const force = () => process.exit(1);
      process.once("SIGINT", force);
      process.once("SIGTERM", force);
      resolve();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
  console.log("\nstopping…");
  await agent?.stop();
  await demo.stop();
  await redis.stop();
  console.log(`stopped; the demo's data stays in ${rel}/ for the next run`);
  process.exit(0);
}

/** A port free now, for the app (and so its PUBLIC_URL) before it starts. */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", resolve);
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}
