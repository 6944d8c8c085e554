/**
 * `countersign`: the operator's and auditor's command line. Each command parses its
 * arguments, calls into the product, prints, and exits 0 on success, 1 on a finding
 * (a bad policy, a failed verification), 2 on a usage error.
 */

import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { Command, CommanderError } from "commander";
import { generateKeyFile, readSigningKey } from "../adapters/crypto/keyfile.js";
import { openStore } from "../adapters/db/open.js";
import { loadAgentKeys, loadPolicyFile } from "../adapters/policy/load.js";
import { RedeliveryError, redeliverWebhook } from "../app/approvals.js";
import { GrantRefusal, Grants } from "../app/grants.js";
import { ConfigError, loadConfig, requirePublicUrl } from "../config.js";
import { parseStrictJson } from "../domain/json.js";
import { effectiveRiskClass, PolicyError } from "../domain/policy.js";
import { checkRequestAgainstPolicy, validateRequest } from "../domain/request.js";
import { detailsRefusal, explainRoute } from "../domain/routing.js";
import { RejectionError } from "../domain/types.js";
import { applyHeapSettings, startCountersign } from "../main.js";
import { packagePath } from "../paths.js";
import { mintProof } from "../records/proof.js";
import { signReceipt } from "../records/signing.js";
import { registerAuditCommands } from "./audit.js";
import { agentSecret, InitRefused, runInit, webhookSecret } from "./init.js";

// A .env in the working directory (see .env.example) fills in what the environment does
// not already set; variables set by the process manager win.
if (fs.existsSync(".env")) process.loadEnvFile(".env");

const program = new Command()
  .name("countersign")
  .description("A human approval gate for autonomous agents.")
  .version(packageVersion(), "-V, --version", "print the version")
  .exitOverride()
  .showHelpAfterError();

program
  .command("init")
  .description(
    "start an installation here: a commented policy.yml, a .env with fresh secrets, the signing key",
  )
  .option("--dir <dir>", "where to write them", ".")
  .action((opts: { dir: string }) => {
    const { written } = runInit(path.resolve(opts.dir));
    for (const f of written) console.log(`wrote ${f}`);
    console.log(
      "next: put your Slack app's SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET in .env, your Slack ids in policy.yml, then `npx countersign policy check`",
    );
  });

program
  .command("serve")
  .description("run the gate: queue worker, Slack app, HTTP API, timers")
  .action(async () => {
    const config = loadConfig();
    applyHeapSettings(config);
    const app = await startCountersign(config);
    onSignal((signal) => {
      app.log.info({ signal }, "countersign: stopping");
      return app.stop().then(
        () => app.log.info("countersign: stopped"),
        (err: unknown) => {
          app.log.error({ err }, "countersign: stop failed");
          throw err;
        },
      );
    });
  });

program
  .command("demo")
  .description("run Countersign with a local Slack simulator and a demo agent (needs Node and Redis only)")
  .option("--data <dir>", "where the demo keeps its policy, keys and database", "./data/demo")
  .option("--port <port>", "the simulator page's port", "3001")
  .option("--no-agent", "do not start the demo agent")
  .option("--socket-mode", "connect the app to the simulator over Socket Mode instead of HTTP")
  .action(async (opts: { data: string; port: string; agent: boolean; socketMode?: boolean }) => {
    const { runDemo } = await import("../simulator/demo.js");
    await runDemo({
      dataDir: path.resolve(opts.data),
      pagePort: Number(opts.port),
      agent: opts.agent,
      socketMode: opts.socketMode === true,
    });
  });

program
  .command("migrate")
  .description("apply the database migrations (serve does this at start too)")
  .action(async () => {
    const config = loadConfig();
    const store = await openStore(config);
    await store.close();
    // A PostgreSQL URL may carry a password: name the database without it.
    console.log(
      `migrated ${config.databaseKind === "postgres" ? redactUrl(config.databasePath) : config.databasePath}`,
    );
  });

const keys = program.command("keys").description("the Ed25519 key that signs decision records");
keys
  .command("generate")
  .description("create a signing key (an existing one is kept beside it, retired, and stays in the JWKS)")
  .action(async () => {
    const config = loadConfig();
    const { key, retired } = generateKeyFile(config.signingKeyFile);
    const store = await openStore(config);
    await store.registerSigningKey(key.kid, key.publicJwk, Date.now());
    await store.close();
    console.log(`generated ${config.signingKeyFile} (kid ${key.kid})`);
    if (retired) {
      console.log(`the previous key was moved to ${retired}; keep it archived (docs/audit.md)`);
      console.log("a running service picks the new key up within seconds; the old one stays in the JWKS");
    }
  });
keys
  .command("jwks")
  .description("print the JWKS (every key that ever signed), for offline verification")
  .action(async () => {
    const config = loadConfig();
    const store = await openStore(config);
    const list = await store.signingKeys();
    await store.close();
    if (!list.length && fs.existsSync(config.signingKeyFile))
      list.push({ kid: "", publicJwk: readSigningKey(config.signingKeyFile).publicJwk });
    console.log(JSON.stringify({ keys: list.map((k) => k.publicJwk) }, null, 2));
  });

const policy = program.command("policy").description("the policy file");
policy
  .command("check [file]")
  .description("validate a policy file; with --explain, say which route a request would take and why")
  .option("--explain <request>", "an ActionRequest: inline JSON, or a file (REQUEST.json or @REQUEST.json)")
  .action((file: string | undefined, opts: { explain?: string }) => {
    const config = loadConfig();
    const p = loadPolicyFile(path.resolve(file ?? config.policyFile));
    requirePublicUrl(p, config.publicUrl);
    const agents = Object.keys(p.agents).length;
    console.log(`${p.file}: ok (${agents} agent(s), ${p.routes.length} route(s), sha256 ${p.sha256})`);
    if (!opts.explain) return;
    const { text, source } = explainInput(opts.explain);
    let parsed: unknown;
    try {
      parsed = parseStrictJson(text);
    } catch (e) {
      throw new UsageError(`--explain: ${source} is not valid JSON: ${(e as Error).message}`);
    }
    let request: ReturnType<typeof validateRequest>;
    try {
      request = validateRequest(parsed);
    } catch (e) {
      if (e instanceof RejectionError) console.error(`--explain: ${source} is not a valid request:`);
      throw e;
    }
    const { agent, riskClass } = checkRequestAgainstPolicy(p, request);
    const d = explainRoute(p, {
      agent,
      action_type: request.action.type,
      risk_class: riskClass,
      region: request.region,
      details: request.action.details,
    });
    if (riskClass !== request.risk_class) {
      console.log(`risk class: ${request.risk_class} raised to ${riskClass} by the policy's actions floor`);
    } else {
      console.log(`risk class: ${effectiveRiskClass(p, request.action.type, request.risk_class)}`);
    }
    for (const step of d.explanation)
      console.log(`  ${step.matched ? "✔" : step.refused ? "⛔" : "✘"} ${step.route}: ${step.because}`);
    // A details condition that fails closed refuses the request at intake: say so, and
    // exit 1 as for any other refusal (the thrown error prints its code and field).
    if (d.refusal) {
      console.log(`refused at route ${d.refusal.route}: no later route is tried (details fail closed)`);
      throw detailsRefusal(d.refusal);
    }
    if (!d.route) console.log("no route matches: the request would be denied (reason_code no_route)");
    else if (d.route.auto) console.log(`route ${d.route.name}: auto-${d.route.auto} (reason_code policy)`);
    else {
      const l = d.route.levels[0]!;
      const stepUp = d.route.levels.flatMap((level, i) => (level.step_up ? [i] : []));
      console.log(
        `route ${d.route.name}: quorum ${l.quorum} in ${l.channel}, ${d.route.levels.length - 1} escalation level(s), on_timeout ${d.route.on_timeout}${stepUp.length ? `; step_up passkey at level ${stepUp.join(", ")}` : ""}`,
      );
    }
  });

const agentCmd = program.command("agent").description("tools for agents");
agentCmd
  .command("secret")
  .description(
    "print fresh secrets for a new agent: an HMAC secret (hmac_secret_env) and a whsec_ webhook secret",
  )
  .option("--webhook", "print only a webhook secret (whsec_...)")
  .option("--hmac", "print only an HMAC secret (32 random bytes)")
  .action((opts: { webhook?: boolean; hmac?: boolean }) => {
    const both = !opts.webhook && !opts.hmac;
    if (both || opts.hmac) console.log(`${both ? "hmac_secret_env value:    " : ""}${agentSecret()}`);
    if (both || opts.webhook) console.log(`${both ? "webhook_secret_env value: " : ""}${webhookSecret()}`);
  });
agentCmd
  .command("token <agentId>")
  .description(
    "mint a proof (a short-lived JWT) for curl, from the agent's (or an executor's) secret or private key",
  )
  .option(
    "--key <file>",
    "the agent's Ed25519 private key (PEM); HMAC agents use their secret from the environment",
  )
  .option("--request <file>", "bind the proof to this request body (its `req` claim)")
  .option("--ttl <seconds>", "lifetime, at most 300", "120")
  .action(async (agentId: string, opts: { key?: string; request?: string; ttl: string }) => {
    const config = loadConfig();
    const p = loadPolicyFile(config.policyFile);
    // An executor proves who it is the same way (docs/agents.md, "For the service that executes").
    const executors = p.executors ?? {};
    const agent = Object.hasOwn(p.agents, agentId)
      ? p.agents[agentId]
      : Object.hasOwn(executors, agentId)
        ? executors[agentId]
        : undefined;
    if (!agent) throw new UsageError(`no agent or executor ${agentId} in ${p.file}`);
    let key: Parameters<typeof mintProof>[0]["key"];
    if (opts.key) key = { kind: "eddsa-private", privateKeyPem: fs.readFileSync(opts.key, "utf8") };
    else if (agent.auth.kind === "hmac") {
      const k = loadAgentKeys(
        Object.hasOwn(p.agents, agentId)
          ? { ...p, agents: { [agentId]: p.agents[agentId]! }, executors: {} }
          : { ...p, agents: {}, executors: { [agentId]: executors[agentId]! } },
        config.secrets,
      ).get(agentId);
      if (k?.kind !== "hmac") throw new UsageError(`no HMAC secret for ${agentId}`);
      key = k;
    } else throw new UsageError(`agent ${agentId} signs with Ed25519: pass its private key with --key FILE`);
    const request = opts.request ? parseStrictJson(fs.readFileSync(opts.request, "utf8")) : undefined;
    const ttl = Number(opts.ttl);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 300) throw new UsageError("--ttl must be 1-300 seconds");
    console.log(await mintProof({ agentId, audience: p.issuer, key, request, ttlSeconds: ttl }));
  });

registerAuditCommands(program, { loadConfig });

program
  .command("mcp")
  .description(
    "an MCP server over stdio: the tools request_approval and get_approval, as AGENT_ID (docs/mcp.md)",
  )
  .requiredOption("--agent <agentId>", "the agent in the policy that asks")
  .option(
    "--key <file>",
    "the agent's Ed25519 private key (PEM); HMAC agents use their secret from the environment",
  )
  .option("--jwks <file>", "a pinned JWKS; default: Countersign's /.well-known/jwks.json")
  .option("--url <url>", "Countersign's base URL (default: COUNTERSIGN_URL)")
  .action(async (opts: { agent: string; key?: string; jwks?: string; url?: string }) => {
    const config = loadConfig();
    const { runMcp } = await import("../mcp/run.js");
    await runMcp({
      agentId: opts.agent,
      url: opts.url ?? config.secrets["COUNTERSIGN_URL"] ?? "",
      policyFile: config.policyFile,
      secrets: config.secrets,
      ...(opts.key ? { keyFile: opts.key } : {}),
      ...(opts.jwks ? { jwksFile: opts.jwks } : {}),
    });
  });

program
  .command("grants")
  .description("approvals after their verdict")
  .command("revoke <actionId>")
  .description(
    "revoke an approval nothing has redeemed yet (a receipt in the log; the agent gets decision.revoked)",
  )
  .requiredOption("--reason <text>", "why, kept in the receipt's reason_text")
  .action(async (actionId: string, opts: { reason: string }) => {
    const config = loadConfig();
    const p = loadPolicyFile(config.policyFile);
    const key = readSigningKey(config.signingKeyFile);
    const store = await openStore(config);
    try {
      await store.registerSigningKey(key.kid, key.publicJwk, Date.now());
      store.setReceiptSigner((claims) => ({ jws: signReceipt(key, claims), kid: key.kid }));
      const grants = new Grants({
        store,
        policy: p,
        random: randomBytes,
        verifyRecord: () => Promise.reject(new Error("the CLI redeems nothing")),
      });
      const r = await grants.revoke(actionId, { cli: true }, opts.reason);
      console.log(
        `revoked ${actionId}: receipt seq ${r.seq} (${r.receiptId}) at ${new Date(r.at).toISOString()}`,
      );
      console.log("a running server sends the agent its decision.revoked webhook and updates the card");
    } catch (e) {
      if (e instanceof GrantRefusal) throw new UsageError(`${e.code}: ${e.message}`, 1);
      throw e;
    } finally {
      await store.close();
    }
  });

program
  .command("mcp-gateway")
  .description(
    "an MCP gateway over stdio: forwards tool calls to the upstream MCP server CMD, gated by AGENT_ID's mcp_tools (docs/mcp.md)",
  )
  .usage("--agent AGENT_ID [--executor EXECUTOR_ID] -- CMD ARGS...")
  .requiredOption("--agent <agentId>", "the agent in the policy whose mcp_tools apply and that asks")
  .option(
    "--executor <executorId>",
    "the executor that redeems each approval (required when a rule needs approval)",
  )
  .option(
    "--key <file>",
    "the agent's Ed25519 private key (PEM); HMAC agents use their secret from the environment",
  )
  .option(
    "--executor-key <file>",
    "the executor's Ed25519 private key (PEM); HMAC executors use their secret from the environment",
  )
  .option("--jwks <file>", "a pinned JWKS; default: Countersign's /.well-known/jwks.json")
  .option("--url <url>", "Countersign's base URL (default: COUNTERSIGN_URL)")
  .argument("<command...>", "the upstream MCP server's command and arguments, after --")
  .action(
    async (
      command: string[],
      opts: {
        agent: string;
        executor?: string;
        key?: string;
        executorKey?: string;
        jwks?: string;
        url?: string;
      },
    ) => {
      const config = loadConfig();
      const { runGateway } = await import("../mcp/gateway-run.js");
      await runGateway({
        agentId: opts.agent,
        url: opts.url ?? config.secrets["COUNTERSIGN_URL"] ?? "",
        policyFile: config.policyFile,
        secrets: config.secrets,
        command,
        ...(opts.executor ? { executorId: opts.executor } : {}),
        ...(opts.executorKey ? { executorKeyFile: opts.executorKey } : {}),
        ...(opts.key ? { keyFile: opts.key } : {}),
        ...(opts.jwks ? { jwksFile: opts.jwks } : {}),
      });
    },
  );

const webhooks = program.command("webhooks").description("webhook deliveries, for operators");
webhooks
  .command("list <actionId>")
  .description("every delivery attempt for an action: time, status, duration, error")
  .action(async (actionId: string) => {
    const store = await openStore(loadConfig());
    try {
      const attempts = await store.webhookAttempts(actionId);
      if (!attempts.length) console.log(`no webhook attempts for ${actionId}`);
      for (const a of attempts) {
        const what =
          a.status === null ? `error: ${a.error}` : `HTTP ${a.status}${a.error ? ` (${a.error})` : ""}`;
        console.log(
          `#${a.attempt}  ${new Date(a.at).toISOString()}  ${what}  ${a.durationMs} ms  ${a.url}  id ${a.webhookId}`,
        );
      }
    } finally {
      await store.close();
    }
  });
webhooks
  .command("redeliver <actionId>")
  .description("send the verdict's webhook again (same webhook-id); a running server picks it up")
  .action(async (actionId: string) => {
    const store = await openStore(loadConfig());
    try {
      let callbackUrl: string;
      try {
        ({ callbackUrl } = await redeliverWebhook(store, actionId, Date.now()));
      } catch (e) {
        throw e instanceof RedeliveryError ? new UsageError(e.message) : e;
      }
      console.log(`queued a redelivery of ${actionId}'s webhook to ${callbackUrl}`);
    } finally {
      await store.close();
    }
  });

class UsageError extends Error {
  /** 2 for a usage error; 1 for a refusal (the approval could not be revoked). */
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(packagePath("package.json"), "utf8")) as { version: string }).version;
}

/**
 * --explain's argument: JSON when it starts with `{`, otherwise a file (a leading `@` is
 * accepted, as curl writes it). The error names the file as given.
 */
function explainInput(arg: string): { text: string; source: string } {
  if (arg.trimStart().startsWith("{")) return { text: arg, source: "the inline request" };
  const file = arg.startsWith("@") ? arg.slice(1) : arg;
  if (file === "")
    throw new UsageError("--explain needs inline JSON or a file name, e.g. --explain request.json");
  try {
    return { text: fs.readFileSync(file, "utf8"), source: file };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(
      `--explain: cannot read ${path.resolve(file)}: ${code === "ENOENT" ? "no such file" : (code ?? (e as Error).message)}`,
    );
  }
}

function redactUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

/** How long a stop may take before the process exits anyway (the database holds everything). */
const STOP_DEADLINE_MS = 10_000;

function onSignal(stop: (signal: NodeJS.Signals) => Promise<void>): void {
  let once = false;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      // A second Ctrl-C means "now".
      if (once) process.exit(1);
      once = true;
      // A last resort: the stop bounds its own steps, so this fires only if one of them
      // ignores its bound. Nothing is lost by exiting: what was not done is in the database.
      setTimeout(() => {
        console.error(`countersign: did not stop within ${STOP_DEADLINE_MS / 1000} s; exiting anyway`);
        process.exit(1);
      }, STOP_DEADLINE_MS).unref();
      stop(sig).then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
  watchNpmParent();
}

/**
 * Under `npx`/`npm exec`/`npm run`, npm starts us through `sh -c`. On SIGTERM npm passes
 * the signal to that shell and exits; dash dies without passing it on, and we would keep
 * running with the port bound, orphaned. So when npm started us, losing our parent is
 * taken as the SIGTERM it was meant to be. (Run directly, by systemd or `node
 * bin/countersign.mjs`, signals arrive as sent and a parent that goes away is left alone:
 * docs/deploy.md.)
 */
function watchNpmParent(): void {
  if (process.env.npm_lifecycle_event === undefined) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.emit("SIGTERM", "SIGTERM");
  }, 500);
  timer.unref();
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  if (e instanceof PolicyError || e instanceof ConfigError || e instanceof RejectionError) {
    console.error(e instanceof RejectionError ? e.failedReason : e.message);
    // A problem with the request as a whole has an empty path: say so rather than print ": reason".
    if (e instanceof RejectionError)
      for (const x of e.errors) console.error(`  ${x.path === "" ? "(the request)" : x.path}: ${x.message}`);
    process.exit(1);
  }
  if (e instanceof InitRefused) {
    console.error(`countersign init: ${e.message}`);
    process.exit(1);
  }
  if (e instanceof UsageError) {
    console.error(`countersign: ${e.message}`);
    process.exit(e.exitCode);
  }
  console.error(`countersign: ${(e as Error).message}`);
  process.exit(1);
}
