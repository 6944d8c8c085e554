/**
 * What every measure shares: result rows with their baseline and target, percentiles,
 * the machine description, and small timing helpers. A row's ratio is what the issue
 * judges: absolute times on a shared 2-core machine say little on their own.
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import type { SlackCall } from "../src/simulator/slack-api.js";
import { deleteKeys, dropSchema as dropTestSchema } from "../test/support/harness.js";

export type Target =
  /** value / baseline must be at least `x` (throughputs). */
  | { readonly kind: "ratio_min"; readonly x: number }
  /** value / baseline must be at most `x` (a latency against its floor). */
  | { readonly kind: "ratio_max"; readonly x: number }
  /** value must be at most `v` in the row's unit (latencies, memory). */
  | { readonly kind: "max"; readonly v: number }
  /** value must be at least `v` in the row's unit. */
  | { readonly kind: "min"; readonly v: number }
  | { readonly kind: "none" };

export interface Row {
  /** Stable key, e.g. "intake.throughput_full". */
  readonly id: string;
  readonly measure: string;
  readonly unit: string;
  /** Null when the measure could not be taken here (say why in `note`). */
  readonly value: number | null;
  readonly baseline: number | null;
  /** What the baseline is, in words. */
  readonly baselineOf: string;
  /** value / baseline. */
  readonly ratio: number | null;
  readonly target: Target;
  /** Null when the row has no target, or no value. */
  readonly pass: boolean | null;
  readonly note?: string;
}

export function row(r: {
  id: string;
  measure: string;
  unit: string;
  value: number | null;
  baseline: number | null;
  baselineOf: string;
  target?: Target;
  note?: string;
}): Row {
  const target = r.target ?? { kind: "none" };
  const ratio = r.value !== null && r.baseline !== null && r.baseline > 0 ? r.value / r.baseline : null;
  let pass: boolean | null = null;
  if (r.value !== null) {
    if (target.kind === "max") pass = r.value <= target.v;
    else if (target.kind === "min") pass = r.value >= target.v;
    else if (target.kind === "ratio_min") pass = ratio === null ? null : ratio >= target.x;
    else if (target.kind === "ratio_max") pass = ratio === null ? null : ratio <= target.x;
  }
  return {
    id: r.id,
    measure: r.measure,
    unit: r.unit,
    value: r.value,
    baseline: r.baseline,
    baselineOf: r.baselineOf,
    ratio,
    target,
    pass,
    ...(r.note ? { note: r.note } : {}),
  };
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples; null for none. */
/** The action whose card this stand-in call posted (a successful chat.postMessage with a card's metadata), if any. */
export function postedCardAction(c: SlackCall): string | undefined {
  if (c.method !== "chat.postMessage" || c.response.ok !== true) return undefined;
  const md = c.args.metadata as { event_payload?: { action_id?: string } } | undefined;
  return md?.event_payload?.action_id;
}

export function percentile(samples: readonly number[], p: number): number | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

let interrupted: string | null = null;

/**
 * Ends the measure in flight at its next wait: sleep and until throw from then on, so its
 * own cleanup (finally blocks) runs before the process exits.
 */
export function interrupt(reason: string): void {
  interrupted = reason;
  // Nothing of a server is worth a graceful stop now; its keys and files go anyway.
  for (const child of leftovers.children) child.kill("SIGKILL");
}

export function isInterrupted(): boolean {
  return interrupted !== null;
}

function checkInterrupted(): void {
  if (interrupted !== null) throw new Error(`benchmark: ${interrupted}`);
}

export async function sleep(ms: number): Promise<void> {
  checkInterrupted();
  await new Promise((r) => setTimeout(r, ms));
  checkInterrupted();
}

/**
 * Polls `test` until it returns true, failing after `ms` with `what` in the message, so a
 * stuck measure ends the run with a reason instead of hanging.
 */
export async function until(test: () => boolean | Promise<boolean>, what: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await test()) return;
    if (Date.now() > deadline) throw new Error(`benchmark: timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Operations per second over a wall-clock span measured with hrtime. */
export function perSecond(count: number, startNs: bigint, endNs: bigint): number {
  const s = Number(endNs - startNs) / 1e9;
  return s > 0 ? count / s : 0;
}

export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

export interface Machine {
  readonly nproc: number;
  readonly memoryMB: number;
  readonly node: string;
  readonly cpu: string;
  readonly redis: string;
  readonly sqlite: string;
  readonly platform: string;
}

export function machine(redisVersion: string, sqliteVersion: string): Machine {
  let cpu = os.cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m?.[1]) cpu = m[1].trim();
  } catch {
    // Not Linux: os.cpus() already named the model.
  }
  let nproc = os.availableParallelism();
  try {
    nproc = Number(execFileSync("nproc", { encoding: "utf8" }).trim()) || nproc;
  } catch {
    // No nproc binary: the runtime's count stands.
  }
  return {
    nproc,
    memoryMB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    cpu,
    redis: redisVersion,
    sqlite: sqliteVersion,
    platform: `${os.platform()} ${os.release()}`,
  };
}

function fmtNumber(v: number | null, unit: string): string {
  if (v === null) return "n/a";
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  const n = v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return unit ? `${n} ${unit}` : n;
}

export function fmtTarget(t: Target, unit: string): string {
  switch (t.kind) {
    case "ratio_min":
      return `>= ${t.x}x baseline`;
    case "ratio_max":
      return `<= ${t.x}x baseline`;
    case "max":
      return `<= ${fmtNumber(t.v, unit)}`;
    case "min":
      return `>= ${fmtNumber(t.v, unit)}`;
    case "none":
      return "-";
  }
}

/** The table as Markdown, so the same text prints and goes into docs/performance.md. */
export function table(rows: readonly Row[]): string {
  const head = ["measure", "value", "baseline", "ratio", "target", "pass?"];
  const lines = rows.map((r) => [
    r.measure,
    `${r.value === null ? "n/a" : fmtNumber(r.value, r.unit)}${r.note ? ` (${r.note})` : ""}`,
    r.baseline === null ? "-" : `${fmtNumber(r.baseline, r.unit)} (${r.baselineOf})`,
    r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`,
    fmtTarget(r.target, r.unit),
    r.pass === null ? "-" : r.pass ? "yes" : "**NO**",
  ]);
  const out = [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`];
  for (const l of lines) out.push(`| ${l.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`);
  return out.join("\n");
}

/** The context every measure receives from the runner. */
export interface BenchContext {
  readonly quick: boolean;
  /** The size to run: `quick` in a quick run, else `full` times --scale (at least 1). */
  size(full: number, quick: number): number;
  readonly redisUrl: string;
  /** Notes for the output: scaled sizes, settings that differ from production. */
  note(text: string): void;
}

// What a run leaves behind until each measure cleans up after itself: an interrupted run
// (Ctrl-C) removes it all on the way out instead of leaving keys in the shared Redis.
const leftovers = {
  dirs: new Set<string>(),
  prefixes: new Set<string>(),
  children: new Set<ChildProcess>(),
  /** PostgreSQL schemas of this run, with the URL of their database. */
  schemas: new Map<string, string>(),
};

/** A server process to end before its keys are deleted, so it cannot write them again. */
export function trackChild(child: ChildProcess): void {
  leftovers.children.add(child);
  child.once("exit", () => leftovers.children.delete(child));
}

/** A fresh temporary directory under os.tmpdir(), removed by removeDir or on interrupt. */
export function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `countersign-bench-${label}-`));
  leftovers.dirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  leftovers.dirs.delete(dir);
}

/** A fresh Redis key prefix, of this run only; its keys are deleted on interrupt until released. */
export function newPrefix(): string {
  const prefix = `bench-${randomUUID()}`;
  leftovers.prefixes.add(prefix);
  return prefix;
}

/** The prefix's keys are gone: nothing left to clean up. */
export function releasePrefix(prefix: string): void {
  leftovers.prefixes.delete(prefix);
}

/**
 * A fresh PostgreSQL schema name, of this run only: the servers create it (and migrate it)
 * at start; dropSchema, or an interrupt, drops it. Other schemas in the database are never
 * touched.
 */
export function newSchema(url: string): string {
  // The runner's pid in the name lets a caller (test/bench.test.ts) check that none is left.
  const schema = `bench_${process.pid}_${randomUUID().replaceAll("-", "")}`;
  leftovers.schemas.set(schema, url);
  return schema;
}

export async function dropSchema(url: string, schema: string): Promise<void> {
  await dropTestSchema(schema, url);
  leftovers.schemas.delete(schema);
}

/** Deletes every key under a pattern, in pages (never the whole Redis): the tests' own. */
export { deleteKeys };

/** Removes whatever the measures in flight have not cleaned up yet. */
export async function removeLeftovers(redisUrl: string): Promise<void> {
  await Promise.all(
    [...leftovers.children].map((child) => {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGKILL");
      return exited;
    }),
  );
  for (const dir of leftovers.dirs) removeDir(dir);
  for (const [schema, url] of leftovers.schemas) {
    await dropSchema(url, schema).catch((e: unknown) =>
      log(`could not drop PostgreSQL schema ${schema}: ${(e as Error).message}; drop it by hand`),
    );
  }
  if (leftovers.prefixes.size === 0) return;
  // A killed process's last writes can still be in flight to Redis; let them land first.
  await sleep(300);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  try {
    for (const prefix of leftovers.prefixes) {
      await deleteKeys(redis, `${prefix}:*`);
      releasePrefix(prefix);
    }
  } finally {
    redis.disconnect();
  }
}

/**
 * The next IPC message of `type` from a child process (a benchmark server, the floor).
 * Rejects on the child's `error` message, on its exit, or after `ms`, naming `who` and
 * adding the last lines of its stderr (`tail`) when there are any.
 */
export function childMessage<M extends { type: string; message?: string }, K extends M["type"]>(
  child: ChildProcess,
  type: K,
  ms: number,
  who: string,
  tail: readonly string[] = [],
): Promise<Extract<M, { type: K }>> {
  const withTail = (text: string) => (tail.length ? `${text}:\n${tail.join("\n")}` : text);
  return new Promise((resolve, reject) => {
    const done = (f: () => void) => {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
      f();
    };
    const onMessage = (m: M) => {
      if (m.type === "error") done(() => reject(new Error(`${who} failed: ${m.message}`)));
      else if (m.type === type) done(() => resolve(m as Extract<M, { type: K }>));
    };
    const onExit = (code: number | null) =>
      done(() => reject(new Error(withTail(`${who} exited (${code}) before "${type}"`))));
    const timer = setTimeout(
      () => done(() => reject(new Error(withTail(`${who} sent no "${type}" within ${ms} ms`)))),
      ms,
    );
    child.on("message", onMessage);
    child.on("exit", onExit);
  });
}
