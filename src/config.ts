/**
 * The only reader of the environment. Parsed once, at start, into a read-only object;
 * services get the slice they need. Secrets have no defaults.
 */
import path from "node:path";
import { z } from "zod";
import { decodeWebhookSecret } from "./adapters/webhooks/sign.js";
import { parseDuration } from "./domain/duration.js";
import { publicUrlProblem, stepUpUses } from "./domain/step-up.js";
import type { Route } from "./domain/types.js";

const durationList = z
  .string()
  .default("5s,5m,30m,2h,5h,10h,14h,20h,24h")
  .transform((text, ctx) => {
    try {
      return text
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
        .map(parseDuration);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
      return z.NEVER;
    }
  })
  .refine((list) => list.length > 0, "at least one delay");

const EnvSchema = z.object({
  REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
  DATABASE_URL: z
    .string()
    .default("file:./data/countersign.db")
    .refine(
      (v) => v.startsWith("file:") || v === ":memory:" || /^postgres(ql)?:\/\//.test(v),
      "expected file:PATH (SQLite) or postgres://... (PostgreSQL)",
    ),
  SLACK_BOT_TOKEN: z.string().min(1).optional(),
  SLACK_SIGNING_SECRET: z.string().min(1).optional(),
  SLACK_APP_TOKEN: z.string().startsWith("xapp-", "an app-level token starts with xapp-").optional(),
  SLACK_API_URL: z.string().url().optional(),
  SLACK_CHANNEL_RATE: z.coerce.number().positive().max(1000).default(1),
  SLACK_CHANNEL_BURST: z.coerce.number().int().min(1).max(1000).default(3),
  SIGNING_KEY_FILE: z.string().default("./data/signing-key.pem"),
  POLICY_FILE: z.string().default("./policy.yml"),
  HOST: z.string().default("127.0.0.1"),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  INTAKE_QUEUE: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, "letters, digits, _ and -")
    .default("approval-requests"),
  QUEUE_PREFIX: z.string().min(1).default("bull"),
  AUDITOR_TOKENS: z.string().default(""),
  WEBHOOK_RETRY_DELAYS: durationList,
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  DATABASE_SCHEMA: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, "a PostgreSQL schema name: lower-case letters, digits, _")
    .optional(),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  QUEUE_LOCK_MS: z.coerce.number().int().min(1000).default(6_000),
  OUTBOX_LEASE_MS: z.coerce.number().int().min(1000).default(8_000),
  PUBLIC_URL: z
    .string()
    .url()
    .superRefine((text, ctx) => {
      const problem = publicUrlProblem(text);
      if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
    })
    .transform((text) => text.replace(/\/+$/, ""))
    .optional(),
  OUTBOX_HOLD_BACK_MS: z.coerce.number().int().min(0).max(600_000).default(2_000),
  SIGN_WORKER: z.enum(["on", "off"], "on or off").default("on"),
  HEAP_GROWING_PERCENT: z.coerce.number().int().min(0).max(1000).default(30),
  CRASH_POINT: z.enum(["after_intake", "after_card_post", "after_record", "after_webhook_send"]).optional(),
});

export interface Config {
  readonly redisUrl: string;
  /** sqlite: one file (the embedded default); postgres: a server shared by several instances. */
  readonly databaseKind: "sqlite" | "postgres";
  /** SQLite: an absolute file path, or ":memory:". PostgreSQL: the connection URL (never print it: it may hold a password). */
  readonly databasePath: string;
  /** PostgreSQL: a schema of its own (default: the server's search_path), and connections per process. */
  readonly databaseSchema: string | undefined;
  readonly databasePoolSize: number;
  readonly slack: {
    readonly botToken: string | undefined;
    readonly signingSecret: string | undefined;
    readonly appToken: string | undefined;
    readonly apiUrl: string | undefined;
    /** chat.postMessage per channel per second, and how many may go at once after a pause. */
    readonly channelRate: number;
    readonly channelBurst: number;
  };
  readonly signingKeyFile: string;
  readonly policyFile: string;
  readonly http: { readonly host: string; readonly port: number };
  /**
   * The base URL approvers' browsers reach (no trailing slash): passkey pages live under it,
   * and its origin and host are WebAuthn's origin and RP ID. Needed by a policy with
   * `step_up` (requirePublicUrl); undefined when unset.
   */
  readonly publicUrl: string | undefined;
  readonly queue: { readonly intake: string; readonly prefix: string };
  readonly auditorTokens: readonly string[];
  readonly webhookRetryDelaysMs: readonly number[];
  readonly logLevel: string;
  /**
   * How long a crashed process's work stays claimed before another takes it over: a
   * BullMQ job lock (renewed while alive) and an outbox lease.
   */
  readonly recovery: { readonly queueLockMs: number; readonly outboxLeaseMs: number };
  /** How far card updates, thread notes and DMs written during a burst are pushed back (0: never). */
  readonly outboxHoldBackMs: number;
  /**
   * Whether the SQLite store signs a group's decision records on a second thread
   * (src/records/chain-signer.ts) while it writes the rest of the group.
   */
  readonly signWorker: boolean;
  /**
   * serve's V8 old-generation growth: collect when the heap has grown this many per cent
   * past what survived the last collection (0: V8's own heuristic). See applyHeapSettings.
   */
  readonly heapGrowingPercent: number;
  /** Test-only: see src/app/crash.ts. */
  readonly crashPoint: "after_intake" | "after_card_post" | "after_record" | "after_webhook_send" | null;
  /** The environment itself, for the policy's named secrets (agent HMAC and webhook secrets). */
  readonly secrets: Readonly<Record<string, string | undefined>>;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError" as const;
}

export function loadConfig(
  env: Readonly<Record<string, string | undefined>> = process.env,
  cwd = process.cwd(),
): Config {
  // An empty value means unset, as in a copied .env.example (`SLACK_APP_TOKEN=`).
  const given = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = EnvSchema.safeParse(given);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid environment:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  const postgres = /^postgres(ql)?:\/\//.test(e.DATABASE_URL);
  const dbPath = postgres
    ? e.DATABASE_URL
    : e.DATABASE_URL === ":memory:"
      ? ":memory:"
      : path.resolve(cwd, e.DATABASE_URL.slice("file:".length));
  return Object.freeze({
    redisUrl: e.REDIS_URL,
    databaseKind: postgres ? "postgres" : "sqlite",
    databasePath: dbPath,
    databaseSchema: e.DATABASE_SCHEMA,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    slack: Object.freeze({
      botToken: e.SLACK_BOT_TOKEN,
      signingSecret: e.SLACK_SIGNING_SECRET,
      appToken: e.SLACK_APP_TOKEN,
      apiUrl: e.SLACK_API_URL,
      channelRate: e.SLACK_CHANNEL_RATE,
      channelBurst: e.SLACK_CHANNEL_BURST,
    }),
    signingKeyFile: path.resolve(cwd, e.SIGNING_KEY_FILE),
    policyFile: path.resolve(cwd, e.POLICY_FILE),
    http: Object.freeze({ host: e.HOST, port: e.PORT }),
    publicUrl: e.PUBLIC_URL,
    queue: Object.freeze({ intake: e.INTAKE_QUEUE, prefix: e.QUEUE_PREFIX }),
    auditorTokens: Object.freeze(
      e.AUDITOR_TOKENS.split(",")
        .map((s) => s.trim())
        .filter(Boolean),
    ),
    webhookRetryDelaysMs: Object.freeze(e.WEBHOOK_RETRY_DELAYS),
    logLevel: e.LOG_LEVEL,
    recovery: Object.freeze({ queueLockMs: e.QUEUE_LOCK_MS, outboxLeaseMs: e.OUTBOX_LEASE_MS }),
    outboxHoldBackMs: e.OUTBOX_HOLD_BACK_MS,
    signWorker: e.SIGN_WORKER === "on",
    heapGrowingPercent: e.HEAP_GROWING_PERCENT,
    crashPoint: e.CRASH_POINT ?? null,
    secrets: Object.freeze({ ...env }),
  });
}

/** `serve` needs Slack credentials; other commands (migrate, keys, audit) do not. */
export function requireSlack(config: Config): { botToken: string; signingSecret: string } {
  const missing = [
    config.slack.botToken ? null : "SLACK_BOT_TOKEN",
    config.slack.signingSecret ? null : "SLACK_SIGNING_SECRET",
  ].filter(Boolean);
  if (missing.length > 0) throw new ConfigError(`missing ${missing.join(" and ")} (see .env.example)`);
  return { botToken: config.slack.botToken!, signingSecret: config.slack.signingSecret! };
}

/**
 * Every agent's webhook secret, checked at start: a missing variable or a value that is
 * not `whsec_<base64>` would otherwise surface only at the first webhook, which is then
 * retried for days against a secret that can never sign.
 */
export function checkWebhookSecrets(
  agents: Readonly<Record<string, { readonly webhook_secret_env?: string | undefined }>>,
  env: Readonly<Record<string, string | undefined>>,
): void {
  const problems: string[] = [];
  for (const [id, agent] of Object.entries(agents)) {
    const name = agent.webhook_secret_env;
    if (name === undefined) continue;
    const value = env[name];
    if (value === undefined || value === "") {
      problems.push(
        `  ${name}: not set (agent "${id}"'s webhook secret; \`npx countersign agent secret\` prints a fresh one)`,
      );
      continue;
    }
    try {
      decodeWebhookSecret(value);
    } catch (e) {
      problems.push(`  ${name}: ${(e as Error).message} (agent "${id}"'s webhook secret)`);
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid environment:\n${problems.join("\n")}`);
}

/**
 * A policy that asks for step-up needs PUBLIC_URL: without it no passkey page can be
 * linked and no assertion's origin checked, so a step-up level could never decide.
 * `policy check` and `serve` both refuse such a policy with this message.
 */
export function requirePublicUrl(
  policy: { readonly file: string; readonly routes: readonly Route[] },
  publicUrl: string | undefined,
): void {
  if (publicUrl !== undefined) return;
  const uses = stepUpUses(policy.routes);
  if (uses.length === 0) return;
  throw new ConfigError(
    `${policy.file}: step_up: passkey (${uses.join("; ")}) needs PUBLIC_URL, the base URL approvers' browsers reach (a domain name, e.g. https://countersign.example.com); set it in .env`,
  );
}
