/**
 * The server under measurement, in a process of its own: `startCountersign` exactly as
 * `serve` runs it, so its RSS, its CPU profile and its event loop hold nothing of the
 * load generator or the Slack stand-in. Talks to bench/rig.ts over the IPC channel.
 *
 * argv[2] is a JSON ServerSpec (see rig.ts).
 */
import fs from "node:fs";
import v8 from "node:v8";
import { pino } from "pino";
import { loadConfig } from "../src/config.js";
import { applyHeapSettings, startCountersign } from "../src/main.js";

export interface ServerSpec {
  readonly env: Record<string, string>;
  readonly pollMs?: number;
  readonly sweepMs?: number;
}

export type ToServer =
  /** `gc`: collect garbage first (the server runs with --expose-gc), to see what is retained. */
  | { readonly type: "rss"; readonly gc?: boolean }
  /** CPU time used so far: on a shared machine, CPU per request says more than requests per second. */
  | { readonly type: "cpu" }
  | { readonly type: "stop" };

export type FromServer =
  | { readonly type: "ready"; readonly url: string; readonly webhookWired: boolean }
  | {
      readonly type: "rss";
      readonly rss: number;
      readonly heapUsed: number;
      /** Where the RSS is: V8's heap as committed, V8's malloc, the process's anonymous and file pages. */
      readonly detail: string;
    }
  /** User + system CPU time of this process since it started, in microseconds. */
  | { readonly type: "cpu"; readonly micros: number }
  | { readonly type: "stopped" }
  | { readonly type: "error"; readonly message: string };

function send(m: FromServer): void {
  process.send?.(m);
}

/**
 * EffectRunner keeps its handlers private; the benchmark only needs to know whether the
 * outbox can deliver webhooks at all, to measure them or say why not.
 */
function hasHandler(effects: unknown, kind: string): boolean {
  const handlers = (effects as { handlers?: unknown }).handlers;
  return handlers instanceof Map && handlers.has(kind);
}

const MB = 1024 * 1024;

function memoryDetail(mem: NodeJS.MemoryUsage): string {
  const h = v8.getHeapStatistics();
  let pages = "";
  try {
    const status = fs.readFileSync("/proc/self/status", "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN);
    pages = `; RssAnon ${(kb("RssAnon") / 1024).toFixed(0)} MB, RssFile ${(kb("RssFile") / 1024).toFixed(0)} MB`;
  } catch {
    // not Linux
  }
  return (
    `heap committed ${(mem.heapTotal / MB).toFixed(0)} MB (used ${(mem.heapUsed / MB).toFixed(0)}), ` +
    `external ${(mem.external / MB).toFixed(0)} MB, V8 malloc ${(h.malloced_memory / MB).toFixed(0)} MB ` +
    `(peak ${(h.peak_malloced_memory / MB).toFixed(0)})${pages}; node ${process.execArgv.join(" ")}`
  );
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "") as ServerSpec;
  const config = loadConfig(spec.env);
  // As serve does: the bench measures the heap users run.
  applyHeapSettings(config);
  const app = await startCountersign(config, {
    log: pino({ level: config.logLevel }, pino.destination(2)),
    ...(spec.pollMs ? { pollMs: spec.pollMs } : {}),
    ...(spec.sweepMs ? { sweepMs: spec.sweepMs } : {}),
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await app.stop();
    send({ type: "stopped" });
    // Exiting (rather than draining) also writes the --cpu-prof profile.
    process.exit(0);
  };
  process.on("message", (m: ToServer) => {
    if (m.type === "rss") {
      if (m.gc) (globalThis as { gc?: () => void }).gc?.();
      const mem = process.memoryUsage();
      send({ type: "rss", rss: mem.rss, heapUsed: mem.heapUsed, detail: memoryDetail(mem) });
    } else if (m.type === "cpu") {
      const u = process.cpuUsage();
      send({ type: "cpu", micros: u.user + u.system });
    } else if (m.type === "stop") void stop();
  });
  // The runner died or was stopped: never outlive it holding Redis keys and a database.
  process.on("disconnect", () => void stop());
  send({ type: "ready", url: app.url, webhookWired: hasHandler(app.effects, "webhook") });
}

main().catch((e: unknown) => {
  send({ type: "error", message: (e as Error).stack ?? String(e) });
  process.exit(1);
});
