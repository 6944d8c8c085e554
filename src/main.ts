/**
 * Wires Countersign together: configuration in, a running service out. The CLI's `serve`
 * and `demo`, and the integration tests, all start the product through this one function.
 */
import { createHash, randomBytes } from "node:crypto";
import v8 from "node:v8";
import type Database from "better-sqlite3";
import type { FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import { type Logger, pino } from "pino";
import { readSigningKey } from "./adapters/crypto/keyfile.js";
import { type OpenedStore, openStore } from "./adapters/db/open.js";
import { openAuditReader } from "./adapters/db/open-audit.js";
import { SqliteAuditReader } from "./adapters/db/sqlite-audit.js";
import { registerAgentRoutes } from "./adapters/http/agent-routes.js";
import { registerAuditRoutes } from "./adapters/http/audit-routes.js";
import { registerPasskeyPages } from "./adapters/http/pages/passkeys.js";
import { buildHttp } from "./adapters/http/server.js";
import { loadAgentKeys, loadPolicyFile } from "./adapters/policy/load.js";
import { Intake } from "./adapters/queue/intake.js";
import { Timers } from "./adapters/queue/timers.js";
import { VerdictBus } from "./adapters/queue/verdicts.js";
import { createSlackApp } from "./adapters/slack/bolt.js";
import { SlackDirectory } from "./adapters/slack/directory.js";
import { SlackEffects } from "./adapters/slack/effects.js";
import { ChannelPacer } from "./adapters/slack/pacer.js";
import { throttledWarn } from "./adapters/throttle.js";
import { WebhookSender } from "./adapters/webhooks/outbox.js";
import { Approvals } from "./app/approvals.js";
import { armCrashPoint } from "./app/crash.js";
import { EffectRunner } from "./app/effects.js";
import { Grants } from "./app/grants.js";
import { Passkeys } from "./app/passkeys.js";
import type { AuditReader } from "./audit/reader.js";
import { type Config, checkWebhookSecrets, requirePublicUrl, requireSlack } from "./config.js";
import type { Policy, RecordClaims } from "./domain/types.js";
import { verifyProof } from "./records/proof.js";
import { type PublicJwk, recordSigner, type SigningKey, signReceipt, verifyJws } from "./records/signing.js";

export interface Countersign {
  readonly url: string;
  readonly port: number;
  readonly policy: Policy;
  readonly store: OpenedStore;
  /** The SQLite handle, for tests; null on PostgreSQL. */
  readonly sqlite: Database.Database | null;
  readonly approvals: Approvals;
  readonly grants: Grants;
  /** Passkeys and step-up; null without PUBLIC_URL. */
  readonly passkeys: Passkeys | null;
  readonly intake: Intake;
  readonly timers: Timers;
  readonly effects: EffectRunner;
  readonly signingKey: SigningKey;
  readonly log: Logger;
  stop(): Promise<void>;
}

export interface StartOptions {
  readonly log?: Logger;
  /** Effect poll interval and timer sweep interval, ms (tests shorten them). */
  readonly pollMs?: number;
  readonly sweepMs?: number;
  readonly timersQueue?: string;
  /** How often the signing key file is checked for a rotation (ms). */
  readonly keyCheckMs?: number;
}

/**
 * The server's heap, set before it starts (serve, and the bench's server). Its heap churns
 * (each request allocates and drops its rows, its card, its JSON) while what it retains
 * stays small: about 40 MB after a full GC with 100,000 requests pending. With V8's default
 * growth the old generation may grow to several times what survives before it is
 * collected, and pages once touched stay resident: 286-319 MB of RSS with 100,000 pending,
 * 184 MB with a growth of 30% (docs/performance.md, "Memory"). The flag is read at each
 * collection, so setting it once the process runs takes effect. Not set by
 * startCountersign itself: it is the whole process's, and tests start servers in theirs.
 */
export function applyHeapSettings(config: Pick<Config, "heapGrowingPercent">): void {
  if (config.heapGrowingPercent > 0) {
    v8.setFlagsFromString(`--heap-growing-percent=${config.heapGrowingPercent}`);
  }
}

export async function startCountersign(config: Config, o: StartOptions = {}): Promise<Countersign> {
  const log = o.log ?? pino({ level: config.logLevel });
  const slackCreds = requireSlack(config);
  // Everything that can be wrong in the files is found before anything starts.
  const policy = loadPolicyFile(config.policyFile);
  requirePublicUrl(policy, config.publicUrl);
  const agentKeys = loadAgentKeys(policy, config.secrets);
  checkWebhookSecrets(policy.agents, config.secrets);
  let signingKey = readSigningKey(config.signingKeyFile);
  // Passkeys' WebAuthn library (~12 MB of RSS) is loaded only where step-up can run: with
  // PUBLIC_URL. Loaded before the store opens, so a failure leaves nothing open.
  const webauthn = config.publicUrl
    ? (await import("./adapters/webauthn.js")).createWebAuthn(config.publicUrl)
    : null;

  const store = await openStore(config);
  // The auditor API's read side. On SQLite it reads through the store's own connection (an
  // in-memory database has no other); on PostgreSQL through a small pool of its own, so an
  // auditor's export never holds a connection the deciders need. That pool connects as the
  // store's does, with no extra startup parameter, so it works wherever the store does.
  let auditReader: AuditReader;
  try {
    auditReader = store.sqlite
      ? new SqliteAuditReader(store.sqlite, config.databasePath, false)
      : await openAuditReader(config, { readOnlySession: false });
  } catch (e) {
    await store.close();
    throw e;
  }
  await store.registerSigningKey(signingKey.kid, signingKey.publicJwk, Date.now());
  const useKey = (key: SigningKey) => {
    signingKey = key;
    store.setSigner(recordSigner(key, { secondThread: config.signWorker }));
    store.setReceiptSigner((claims) => ({ jws: signReceipt(key, claims), kid: key.kid }));
  };
  useKey(signingKey);
  // `countersign keys generate` on a running installation: the new key is published in the
  // JWKS (kept in the database with every old one) before it signs anything.
  const keyWatch = setInterval(() => {
    let next: SigningKey;
    try {
      next = readSigningKey(config.signingKeyFile);
    } catch (err) {
      log.error({ err }, "signing key: cannot read the key file; still signing with the current key");
      return;
    }
    if (next.kid === signingKey.kid) return;
    store.registerSigningKey(next.kid, next.publicJwk, Date.now()).then(
      () => {
        log.info({ from: signingKey.kid, to: next.kid }, "signing key: rotated");
        useKey(next);
      },
      (err) => log.error({ err }, "signing key: could not publish the new key; not rotating"),
    );
  }, o.keyCheckMs ?? 5_000);
  keyWatch.unref();

  // BullMQ needs maxRetriesPerRequest: null so a Redis outage pauses work instead of failing it.
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null, lazyConnect: false });
  redis.on("error", throttledWarn(log, "redis: connection error (retrying)"));
  // A separate client for health checks that fails fast instead of queueing while Redis is away.
  const probe = new Redis(config.redisUrl, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    lazyConnect: true,
  });
  probe.on("error", () => {});

  const verdicts = new VerdictBus(redis, config.queue.prefix, log.child({ part: "verdicts" }));
  // Not awaited: with Redis away at start, the subscription comes up when it returns,
  // and the HTTP server (health, readiness) must not wait for it.
  void verdicts.start();
  armCrashPoint(config.crashPoint);
  const effects = new EffectRunner(store, log.child({ part: "outbox" }), Date.now, {
    pollMs: o.pollMs ?? 500,
    leaseMs: config.recovery.outboxLeaseMs,
    holdBackMs: config.outboxHoldBackMs,
  });
  const slack = createSlackApp({
    botToken: slackCreds.botToken,
    signingSecret: slackCreds.signingSecret,
    ...(config.slack.appToken ? { appToken: config.slack.appToken } : {}),
    ...(config.slack.apiUrl ? { apiUrl: config.slack.apiUrl } : {}),
    log,
    store,
    directory: (client) => new SlackDirectory(client),
  });
  const approvals: Approvals = new Approvals({
    store,
    policy,
    directory: slack.directory,
    now: () => new Date(),
    random: randomBytes,
    onDecided: (id) => verdicts.decided(id),
    proofs: {
      async verify(token, v) {
        const c = await verifyProof(token, {
          policy,
          keys: agentKeys,
          now: v.judgedAt,
          expectedAgent: v.agentId,
          expectedDigest: v.digest,
        });
        return { jti: c.jti, exp: c.exp };
      },
    },
  });

  const grants = new Grants({
    store,
    policy,
    random: randomBytes,
    // Every key that ever signed (the log's JWKS): a record signed before a rotation still redeems.
    async verifyRecord(jws) {
      const keys = (await store.signingKeys()).map((k) => k.publicJwk as PublicJwk);
      return verifyJws(jws, keys, "decision+jwt").payload as unknown as RecordClaims;
    },
  });
  // Passkeys and step-up (SPEC "Step-up") need PUBLIC_URL: the pages' origin and the RP ID.
  const passkeys =
    config.publicUrl && webauthn
      ? new Passkeys({
          store,
          approvals,
          webauthn,
          publicUrl: config.publicUrl,
          issuer: policy.issuer,
          team: policy.slack.team_id,
          random: randomBytes,
          now: () => new Date(),
          voterOf: async (user) => {
            const u = await slack.directory.user(user);
            return {
              user,
              team: u?.team ?? policy.slack.team_id,
              isGuest: u ? u.isGuest : true,
              ...(u?.email ? { email: u.email } : {}),
              ...(u?.realName ? { realName: u.realName } : {}),
            };
          },
        })
      : null;
  slack.attach(approvals, grants, passkeys ?? undefined);

  const intake = new Intake(approvals, store, log.child({ part: "intake" }), {
    queue: config.queue.intake,
    prefix: config.queue.prefix,
    connection: redis,
    lockMs: config.recovery.queueLockMs,
  });
  const timers = new Timers(approvals, store, log.child({ part: "timers" }), {
    queue: o.timersQueue ?? "countersign-timers",
    prefix: config.queue.prefix,
    connection: redis,
    sweepMs: o.sweepMs ?? 1_000,
  });
  const slackFx = new SlackEffects(
    slack.client,
    store,
    policy,
    log.child({ part: "slack" }),
    new ChannelPacer(config.slack.channelRate, config.slack.channelBurst),
  );
  effects
    .on("start_level", async (e) => {
      await approvals.startLevel(e.actionId!, Number(e.payload.level));
      return { kind: "done" };
    })
    .on("post_card", slackFx.guard("post_card", slackFx.postCard))
    .on("update_card", slackFx.guard("update_card", slackFx.updateCard))
    .on("thread_note", slackFx.guard("thread_note", slackFx.threadNote))
    .on("dm", slackFx.guard("dm", slackFx.dm))
    .on("remind", slackFx.guard("remind", slackFx.remind))
    .on("release", (e) => intake.release(e))
    .on("timer", (e) => timers.schedule(e))
    .on(
      "webhook",
      new WebhookSender({
        store,
        policy,
        secrets: config.secrets,
        scheduleMs: config.webhookRetryDelaysMs,
        log: log.child({ part: "webhooks" }),
      }).handle,
    );

  const redisPing = async () => {
    if (probe.status === "wait") await probe.connect().catch(() => {});
    await probe.ping();
  };
  const http = buildHttp({
    store,
    routes: [
      (app) =>
        registerAuditRoutes(app, {
          reader: auditReader,
          auditorTokens: config.auditorTokens,
          get signingKey() {
            return signingKey;
          },
          issuer: policy.issuer,
        }),
      (app) =>
        registerAgentRoutes(app, {
          store,
          approvals,
          verdicts,
          grants,
          redisReady: redisPing,
          async verifyToken(token, v) {
            return verifyProof(token, { policy, keys: agentKeys, now: new Date(), ...v });
          },
        }),
      ...(passkeys && config.publicUrl
        ? [
            (app: FastifyInstance) =>
              registerPasskeyPages(app, {
                passkeys,
                publicUrl: config.publicUrl!,
                // The same on every instance: a page rendered by one can be posted to another.
                csrfKey: createHash("sha256")
                  .update(`countersign-passkey-csrf:${slackCreds.signingSecret}`)
                  .digest("hex"),
              }),
          ]
        : []),
    ],
    slackListener: slack.requestListener,
    redisPing,
    metrics: async () => {
      const all = await store.pendingEffectCount();
      const due = await store.pendingEffectCount(Date.now());
      return metricsText(due, all - due);
    },
  });
  await http.listen({ host: config.http.host, port: config.http.port });
  const address = http.server.address();
  const port = typeof address === "object" && address ? address.port : config.http.port;

  effects.start();
  timers.start();
  intake.start();
  // The database is the truth: verdicts committed and not yet released are released now.
  intake.releaseUnreleased().then(
    (n) => n && log.info({ verdicts: n }, "start: released verdicts left unreleased"),
    (err) => log.error({ err }, "start: could not release unreleased verdicts; their effects will"),
  );
  await slack.start();
  const url = `http://${config.http.host}:${port}`;
  log.info(
    {
      url,
      port,
      policy: config.policyFile,
      kid: signingKey.kid,
      heap_growing_percent: config.heapGrowingPercent,
    },
    "countersign: serving",
  );

  let stopping: Promise<void> | null = null;
  return {
    url,
    port,
    policy,
    store,
    sqlite: store.sqlite,
    approvals,
    grants,
    passkeys,
    intake,
    timers,
    effects,
    get signingKey() {
      return signingKey;
    },
    log,
    stop() {
      stopping ??= (async () => {
        // Each step that waits on the outside world (Redis, a slow client, Slack) gets a
        // bound. With Redis down, BullMQ's close would wait for a reconnection that may
        // never come; what a step leaves unfinished is abandoned, and nothing is lost by
        // it: the database holds every action, timer and effect, and the next start (or
        // another instance, once the lock or lease lapses) carries them out.
        const step = async (name: string, f: () => Promise<unknown>, boundMs: number, leaves: string) => {
          const t = Date.now();
          let timer: NodeJS.Timeout | undefined;
          const done = await Promise.race([
            f().then(
              () => true,
              (err: unknown) => {
                log.warn({ err }, `stop: ${name} failed; going on`);
                return true;
              },
            ),
            new Promise<false>((r) => {
              timer = setTimeout(() => r(false), boundMs);
            }),
          ]);
          clearTimeout(timer);
          if (done) log.debug({ ms: Date.now() - t }, `stop: ${name}`);
          else
            log.warn({ part: name, after_ms: boundMs }, `stop: ${name} did not finish; abandoned ${leaves}`);
        };
        const redisUp = redis.status === "ready";
        if (!redisUp) log.warn({ redis: redis.status }, "stop: Redis is unreachable; not waiting for it");
        // With Redis up a worker finishes its current job (usually milliseconds); down, it cannot.
        const queueMs = redisUp ? 5_000 : 1_000;
        clearInterval(keyWatch);
        await step("http", () => http.close(), 3_000, "open requests (long-polls re-read the database)");
        await step(
          "intake",
          () => intake.stop(),
          queueMs,
          "the intake queue's jobs in flight (taken again after their lock lapses)",
        );
        await step("timers", () => timers.stop(), queueMs, "the timer queue (timers are in the database)");
        await step(
          "effects",
          () => effects.stop(),
          5_000,
          "outbox effects in flight (retried after their lease lapses)",
        );
        await step("slack", () => slack.stop(), 3_000, "the Slack connection");
        await step("verdicts", () => verdicts.stop(), 1_000, "the verdict subscription");
        redis.disconnect();
        probe.disconnect();
        await auditReader.close();
        await store.close();
      })();
      return stopping;
    },
  };
}

/**
 * `countersign_outbox_pending` counts only effects that are due: it returns to 0 when the
 * outbox keeps up, so an alert on it means work is stuck. Effects scheduled for later (a
 * reminder at half a deadline) are a separate gauge; counted in, they never let it fall to 0.
 */
function metricsText(dueEffects: number, laterEffects: number): string {
  const mem = process.memoryUsage();
  return [
    "# HELP countersign_outbox_pending Effects due and not yet carried out.",
    "# TYPE countersign_outbox_pending gauge",
    `countersign_outbox_pending ${dueEffects}`,
    "# HELP countersign_outbox_scheduled Effects scheduled for later (reminders, webhook retries).",
    "# TYPE countersign_outbox_scheduled gauge",
    `countersign_outbox_scheduled ${Math.max(0, laterEffects)}`,
    "# HELP process_resident_memory_bytes Resident memory size in bytes.",
    "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${mem.rss}`,
    "",
  ].join("\n");
}
