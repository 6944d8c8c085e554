/**
 * `npm run bench [-- --quick | --scale=0.1] [--only=intake,records] [--out=FILE]`: every
 * measure beside its raw baseline, taken in this run on this Redis and disk. Prints a
 * Markdown table and writes bench/results.json. `--quick` runs every measure at small
 * sizes (a smoke test, under a minute); the full run uses the sizes; `--scale`
 * multiplies them, for profiling one measure without the full wait.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { Redis } from "ioredis";
import { REDIS_URL } from "../test/support/harness.js";
import { audit } from "./audit.js";
import { gateway } from "./gateway.js";
import { grants } from "./grants.js";
import { intake } from "./intake.js";
import {
  type BenchContext,
  interrupt,
  isInterrupted,
  log,
  machine,
  type Row,
  removeLeftovers,
  table,
} from "./lib.js";
import { pending } from "./pending.js";
import { records } from "./records.js";
import { release } from "./release.js";
import { COMPILED_SERVER } from "./rig.js";
import { scale } from "./scale.js";

const MEASURES: Record<string, (ctx: BenchContext) => Promise<Row[]>> = {
  intake,
  release,
  pending,
  records,
  audit,
  grants,
  gateway,
  scale,
};

const HERE = path.dirname(fileURLToPath(import.meta.url));

interface Args {
  readonly quick: boolean;
  readonly scale: number;
  readonly only: string[];
  readonly out: string;
}

function parseArgs(argv: readonly string[]): Args {
  let quick = false;
  let scale = 1;
  let only = Object.keys(MEASURES);
  let out = path.join(HERE, "results.json");
  for (const a of argv) {
    if (a === "--quick") quick = true;
    else if (a.startsWith("--only=")) {
      only = a
        .slice("--only=".length)
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      const unknown = only.filter((m) => !(m in MEASURES));
      if (unknown.length) {
        throw new Error(
          `--only: no measure ${unknown.join(", ")}; the measures are ${Object.keys(MEASURES).join(", ")}`,
        );
      }
    } else if (a.startsWith("--scale=")) {
      scale = Number(a.slice("--scale=".length));
      if (!(scale > 0 && scale <= 1))
        throw new Error(`--scale: expected a number in (0, 1], e.g. 0.1, got ${a}`);
    } else if (a.startsWith("--out=")) out = path.resolve(a.slice("--out=".length));
    else {
      throw new Error(
        `unknown option ${a}; use --quick, --scale=0.1, --only=${Object.keys(MEASURES).join(",")}, --out=FILE`,
      );
    }
  }
  if (quick && scale !== 1) throw new Error("--quick and --scale do not go together: quick sizes are fixed");
  return { quick, scale, only, out };
}

async function redisVersion(url: string): Promise<string> {
  const r = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await r.connect();
    const info = await r.info("server");
    return /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
  } catch (e) {
    throw new Error(`cannot reach Redis at ${url} (set REDIS_URL): ${(e as Error).message}`);
  } finally {
    r.disconnect();
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const notes: string[] = [];
  const ctx: BenchContext = {
    quick: args.quick,
    size: (full, quick) => (args.quick ? quick : Math.max(1, Math.round(full * args.scale))),
    redisUrl: REDIS_URL,
    note: (t) => {
      notes.push(t);
      log(`note: ${t}`);
    },
  };
  const mem = new Database(":memory:");
  const sqlite = (mem.prepare("select sqlite_version() as v").get() as { v: string }).v;
  mem.close();
  const box = machine(await redisVersion(REDIS_URL), sqlite);
  log(
    `${args.quick ? "quick" : "full"} run of ${args.only.join(", ")} on ${box.nproc} x ${box.cpu}, node ${box.node}`,
  );
  const started = Date.now();
  // Other work on a shared machine moves every number; the load beside them says how much.
  const loadBefore = os.loadavg()[0]!;
  // Ctrl-C or a kill mid-run: the measure in flight stops at its next wait and cleans up
  // after itself, then anything left (keys in the shared Redis, temp files) is removed. A
  // second signal, or a cleanup that hangs, ends it at once.
  const hardStop = () => void removeLeftovers(REDIS_URL).finally(() => process.exit(130));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (isInterrupted()) return hardStop();
      log(`${signal}: stopping; removing this run's Redis keys and temporary files`);
      interrupt(`interrupted by ${signal}`);
      setTimeout(hardStop, 45_000).unref();
    });
  }
  ctx.note(
    COMPILED_SERVER
      ? "server processes run the compiled build (dist/), as an installed Countersign does"
      : "server processes run the TypeScript sources under tsx (no current build: `npm run build`); expect about 60 MB more RSS",
  );
  if (!args.quick && args.scale !== 1) ctx.note(`sizes scaled to ${args.scale} of the issue's (--scale)`);
  const rows: Row[] = [];
  const failures: string[] = [];
  for (const name of args.only) {
    if (isInterrupted()) break;
    const t0 = Date.now();
    try {
      rows.push(...(await MEASURES[name]!(ctx)));
    } catch (e) {
      // One broken measure must not hide the others' numbers; the exit code still says so.
      failures.push(`${name}: ${(e as Error).stack ?? String(e)}`);
      log(`${name} FAILED: ${(e as Error).message}`);
    }
    log(`${name} took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  if (isInterrupted()) {
    await removeLeftovers(REDIS_URL);
    process.exit(130);
  }
  const result = {
    when: new Date(started).toISOString(),
    mode: args.quick ? "quick" : args.scale === 1 ? "full" : `scaled ${args.scale}`,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    machine: box,
    load: { before: round2(loadBefore), after: round2(os.loadavg()[0]!) },
    rows,
    notes,
    failures,
  };
  fs.writeFileSync(args.out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`\n${table(rows)}\n\n`);
  for (const n of notes) process.stdout.write(`- ${n}\n`);
  process.stdout.write(
    `\n${box.nproc} x ${box.cpu}, ${box.memoryMB} MB, node ${box.node}, Redis ${box.redis}, SQLite ${box.sqlite}; ` +
      `load average ${result.load.before} before, ${result.load.after} after; ` +
      `${result.mode} run in ${result.seconds} s; results in ${path.relative(process.cwd(), args.out)}\n`,
  );
  if (failures.length) {
    process.stderr.write(`\n${failures.length} measure(s) failed:\n${failures.join("\n\n")}\n`);
    process.exitCode = 1;
  }
}

await main();
