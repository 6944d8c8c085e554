/**
 * The benchmark as a smoke test: `npm run bench -- --quick` must run every measure to the
 * end and report each beside its baseline. Never a timed test: no number is judged here,
 * only that each one was taken.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { PG_URL } from "./support/harness.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Every row the runner must report, by id. */
const MEASURES = [
  "intake.throughput",
  "intake.card_p50_fixed",
  "intake.card_p99_fixed",
  "intake.card_p99_fixed_vs_floor",
  "intake.card_p50_full",
  "intake.card_p99_full",
  "intake.floor",
  "intake.vs_floor",
  "release.complete_p50",
  "release.complete_p99",
  "release.webhook_p50",
  "release.webhook_p99",
  "pending.rss",
  "pending.lateness_p50",
  "pending.lateness_p99",
  "pending.lateness_p99_vs_floor",
  "records.per_second",
  "records.vs_inserts",
  "records.sequential",
  "records.sequential_vs_inserts",
  "records.grouped_inserts",
  "records.vs_floor",
  "records.raw_parts",
  "grants.redeem_per_second",
  "grants.redeem_p99",
  "grants.raw_parts",
  "grants.redeem_vs_signing",
  "gateway.passthrough_p50",
  "gateway.passthrough_p99",
  "gateway.passthrough_per_second",
  "audit.export",
  "audit.verify",
  // A quick run scales one configuration: PostgreSQL with two instances (bench/scale.ts).
  "scale.pg2.intake",
  "scale.pg2.click_p50",
  "scale.pg2.click_p99",
];

/** Rows allowed to have no value, and the reason they must then give. */
const MAY_BE_NA: Record<string, RegExp> = {
  "release.webhook_p50": /webhooks not wired/,
  "release.webhook_p99": /webhooks not wired/,
};

interface ResultRow {
  id: string;
  value: number | null;
  baseline: number | null;
  baselineOf: string;
  note?: string;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-bench-test-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function runQuick(
  out: string,
): Promise<{ code: number | null; pid: number | undefined; stdout: string; stderr: string }> {
  // The same command as `npm run bench -- --quick`, with the results written aside so a
  // test run never replaces bench/results.json.
  const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts", "--quick", `--out=${out}`], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => {
    stdout += d;
  });
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  return new Promise((resolve) =>
    child.on("close", (code) => resolve({ code, pid: child.pid, stdout, stderr })),
  );
}

describe("npm run bench -- --quick", () => {
  it("runs every measure to the end and reports each beside its raw baseline", {
    timeout: 300_000,
  }, async () => {
    const out = path.join(dir, "results.json");
    const r = await runQuick(out);
    expect(r.code, `bench exited ${r.code}:\n${r.stderr.slice(-4000)}`).toBe(0);

    const results = JSON.parse(fs.readFileSync(out, "utf8")) as {
      mode: string;
      rows: ResultRow[];
      failures: string[];
      machine: { nproc: number; node: string; cpu: string };
    };
    expect(results.mode).toBe("quick");
    expect(results.failures).toEqual([]);
    expect(results.machine.nproc).toBeGreaterThan(0);
    expect(results.rows.map((x) => x.id).sort()).toEqual([...MEASURES].sort());
    for (const row of results.rows) {
      expect(row.baseline, `${row.id} has no baseline`).toEqual(expect.any(Number));
      expect(row.baselineOf, `${row.id} does not say what its baseline is`).not.toBe("");
      if (row.value === null) {
        expect(MAY_BE_NA[row.id], `${row.id} has no value`).toBeDefined();
        expect(row.note).toMatch(MAY_BE_NA[row.id]!);
      } else {
        expect(Number.isFinite(row.value), `${row.id} is ${row.value}`).toBe(true);
      }
    }

    // The printed table carries the same rows, each with its baseline.
    expect(r.stdout).toContain("| measure | value | baseline | ratio | target | pass? |");
    expect(r.stdout.match(/^\| (?!measure|---)/gm)).toHaveLength(MEASURES.length);

    // The scale measure's PostgreSQL schemas (named after the runner's pid) are dropped.
    const db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    try {
      const left = await db.query("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", [
        `bench_${r.pid}_%`,
      ]);
      expect(left.rows).toEqual([]);
    } finally {
      await db.end();
    }
  });

  it("refuses an unknown measure by name instead of running something else", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/run.ts", "--only=nonsense"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/--only: no measure nonsense; the measures are intake, release/);
  });
});
