/**
 * `countersign audit export|checkpoint|verify|events`: the auditor's commands.
 * Exit codes: 0 ok, 1 a verification failed, 2 a usage error (bad option, unreadable
 * input file or JWKS). Results go to stdout; notes and the progress bar to stderr, so
 * `audit export > file` and `audit checkpoint > file` hold only the data.
 */
import { once } from "node:events";
import fs from "node:fs";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import type { Command } from "commander";
import { readSigningKey } from "../adapters/crypto/keyfile.js";
import { openAuditReader } from "../adapters/db/open-audit.js";
import { loadPolicyFile } from "../adapters/policy/load.js";
import { type Checkpoint, CheckpointError, signCheckpoint, verifyCheckpoint } from "../audit/checkpoint.js";
import { formatTimeline } from "../audit/events.js";
import { type ExportQuery, type ExportStats, parseExportQuery } from "../audit/export.js";
import { exportChunksParallel, type ParallelExportOptions } from "../audit/export-parallel.js";
import type { AuditReader } from "../audit/reader.js";
import { JwksError, parseJwks, type VerifyReport, verifyExport } from "../audit/verify.js";
import type { Config } from "../config.js";
import { publicUrlProblem } from "../domain/step-up.js";
import type { PublicJwk } from "../records/signing.js";

export interface AuditCliDeps {
  readonly loadConfig: () => Config;
}

/** Where the commands write; the process's own streams unless a test passes others. */
interface Io {
  readonly stdout: Writable;
  readonly stderr: Writable & { isTTY?: boolean };
}

const PROCESS_IO: Io = { stdout: process.stdout, stderr: process.stderr };

/** Exit 2 with a message, through commander (which honours the program's exitOverride). */
function usage(cmd: Command, message: string): never {
  return cmd.error(`countersign: ${message}`, { exitCode: 2, code: "countersign.usage" });
}

export function registerAuditCommands(program: Command, deps: AuditCliDeps): void {
  const audit = program
    .command("audit")
    .description("audit evidence: export the log, verify it offline, checkpoints, one action's path");

  audit
    .command("export")
    .description("write the decision records in seq order (JSONL with the requests, or CSV)")
    .option(
      "--since <time>",
      "records decided at or after this ISO 8601 time (2025-01-31 or 2025-01-31T09:00:00Z)",
    )
    .option("--until <time>", "records decided before this ISO 8601 time")
    .option("--agent <id>", "only this agent's records")
    .option("--region <region>", "only this region's records")
    .option("--verdict <verdict>", "only approved, denied, expired or cancelled records")
    .option("--format <format>", "jsonl (verifiable) or csv (for spreadsheets)", "jsonl")
    .option("--out <file>", "write here instead of stdout (written aside and renamed when complete)")
    .action(async (opts: Record<string, string | undefined>, cmd: Command) => {
      const { out, ...raw } = opts;
      const parsed = parseExportQuery(raw);
      if (!parsed.ok) usage(cmd, parsed.errors.map((e) => `--${e.path} ${e.message}`).join("; "));
      const reader = await openAuditReader(deps.loadConfig());
      try {
        const stats = await exportToFileOrStdout(reader, parsed.query, out, PROCESS_IO);
        PROCESS_IO.stderr.write(
          `exported ${stats.records} records (${stats.omitted} omitted)${out ? ` to ${out}` : ""}\n`,
        );
      } finally {
        await reader.close();
      }
    });

  audit
    .command("checkpoint")
    .description(
      "print a signed checkpoint of the log's head (keep it: it proves later that nothing up to it changed)",
    )
    .action(async () => {
      const config = deps.loadConfig();
      const issuer = loadPolicyFile(config.policyFile).issuer;
      const key = readSigningKey(config.signingKeyFile);
      const reader = await openAuditReader(config);
      try {
        const head = await reader.logHead();
        if (!(await reader.publishedKeys()).some((k) => k.kid === key.kid)) {
          PROCESS_IO.stderr.write(
            `note: key ${key.kid} is not in this installation's JWKS yet; a verifier needs it (it is published when serve starts)\n`,
          );
        }
        if (head.seq === 0)
          PROCESS_IO.stderr.write("note: the log is empty; this checkpoint says so (seq 0, head null)\n");
        PROCESS_IO.stdout.write(`${signCheckpoint(key, issuer, head, new Date())}\n`);
      } finally {
        await reader.close();
      }
    });

  audit
    .command("verify <file>")
    .description(
      "check an export's signatures, claims and chain (FILE - reads stdin); exit 1 naming the first bad seq",
    )
    .option(
      "--jwks <fileOrUrl>",
      "the JWKS to trust (a file, or an https URL fetched once); default: this installation's keys",
    )
    .option(
      "--checkpoint <file>",
      "a checkpoint (as `audit checkpoint` printed it) the export must reach and match",
    )
    .option(
      "--public-url <url>",
      "the installation's PUBLIC_URL: step-up assertions must be made at its origin (default: PUBLIC_URL from the environment; without either, all must name one origin, which is printed)",
    )
    .action(
      async (
        file: string,
        opts: { jwks?: string; checkpoint?: string; publicUrl?: string },
        cmd: Command,
      ) => {
        let publicUrl = opts.publicUrl ?? null;
        if (publicUrl !== null) {
          const problem = publicUrlProblem(publicUrl);
          if (problem !== null) usage(cmd, `--public-url ${problem}`);
        } else {
          publicUrl = deps.loadConfig().publicUrl ?? null;
        }
        const jwks = await keysFor(opts.jwks, deps, cmd, PROCESS_IO);
        let checkpoint: Checkpoint | null = null;
        if (opts.checkpoint) {
          const text = readInput(opts.checkpoint, "checkpoint", cmd);
          try {
            checkpoint = verifyCheckpoint(text, jwks);
          } catch (e) {
            if (!(e instanceof CheckpointError)) throw e;
            PROCESS_IO.stdout.write(`verification FAILED: checkpoint_mismatch: ${e.message}\n`);
            process.exitCode = 1;
            return;
          }
        }
        if (file !== "-" && !fs.existsSync(file)) usage(cmd, `no export at ${file}`);
        const input =
          file === "-"
            ? process.stdin.setEncoding("utf8")
            : fs.createReadStream(file, { encoding: "utf8", highWaterMark: 1 << 20 });
        const report = await verifyExport(input as AsyncIterable<string>, { jwks, checkpoint, publicUrl });
        PROCESS_IO.stdout.write(`${describeReport(report)}\n`);
        if (!report.ok) process.exitCode = 1;
      },
    );

  audit
    .command("events <actionId>")
    .description("one action's decision path: every event with time, actor and data, then its record")
    .action(async (actionId: string, _opts: unknown, cmd: Command) => {
      const reader = await openAuditReader(deps.loadConfig());
      try {
        const action = await reader.findAction(actionId);
        if (!action) usage(cmd, `no action ${actionId} in ${reader.where}`);
        PROCESS_IO.stdout.write(
          formatTimeline(
            action,
            await reader.actionEvents(actionId),
            await reader.actionRecord(actionId),
            (await reader.actionReceipts?.(actionId)) ?? [],
          ),
        );
      } finally {
        await reader.close();
      }
    });
}

/** The one-line outcome of a verification, as printed. */
export function describeReport(r: VerifyReport): string {
  if (!r.ok) {
    const where = [r.seq !== null ? `seq ${r.seq}` : null, r.line !== null ? `line ${r.line}` : null]
      .filter(Boolean)
      .join(", ");
    return `verification FAILED${where ? ` at ${where}` : ""}: ${r.reason}: ${r.message}`;
  }
  const keys = Object.entries(r.kids)
    .map(([kid, n]) => `${kid} (${n})`)
    .join(", ");
  const unconfirmed = r.headConfirmed ? "" : " (an omitted record's digest: only a checkpoint confirms it)";
  const span = r.lastSeq > 0 ? `, seq 1-${r.lastSeq}, head ${r.head}${unconfirmed}` : ": the export is empty";
  const signed = keys ? `; signed by ${keys}` : "";
  const cp = r.checkpoint
    ? `; matches the checkpoint of seq ${r.checkpoint.seq} signed ${new Date(r.checkpoint.iat * 1000).toISOString()}`
    : "";
  const stepUps =
    r.stepUps === 0
      ? ""
      : r.stepUpOriginGiven
        ? `; ${r.stepUps} step-up assertions checked at ${r.stepUpOrigin}`
        : `; ${r.stepUps} step-up assertions checked, all made at ${r.stepUpOrigin} (not checked against PUBLIC_URL: pass --public-url to require it)`;
  return `verified ${r.records} entries (${r.decisions} decisions, ${r.receipts} receipts, ${r.omitted} omitted)${span}${signed}${cp}${stepUps}`;
}

async function keysFor(
  source: string | undefined,
  deps: AuditCliDeps,
  cmd: Command,
  io: Io,
): Promise<PublicJwk[]> {
  if (source) {
    try {
      return parseJwks(await readJwks(source, cmd), source);
    } catch (e) {
      if (e instanceof JwksError) usage(cmd, e.message);
      throw e;
    }
  }
  const config = deps.loadConfig();
  const reader = await openAuditReader(config);
  const where = reader.where;
  let keys: PublicJwk[];
  try {
    keys = await reader.publishedKeys();
  } finally {
    await reader.close();
  }
  if (keys.length === 0 && fs.existsSync(config.signingKeyFile)) {
    keys = [readSigningKey(config.signingKeyFile).publicJwk];
  }
  if (keys.length === 0) usage(cmd, `no keys in ${where}; pass the JWKS with --jwks`);
  io.stderr.write(
    `note: checking against this installation's ${keys.length} key(s) from ${where}; for a check that does not trust this installation, pass --jwks with a JWKS you archived\n`,
  );
  return keys;
}

async function readJwks(source: string, cmd: Command): Promise<unknown> {
  if (/^https?:\/\//i.test(source)) {
    let res: Response;
    try {
      res = await fetch(source, {
        signal: AbortSignal.timeout(10_000),
        headers: { accept: "application/json" },
      });
    } catch (e) {
      usage(cmd, `cannot fetch the JWKS from ${source}: ${(e as Error).message}`);
    }
    if (!res.ok) usage(cmd, `fetching the JWKS from ${source} answered HTTP ${res.status}`);
    try {
      return await res.json();
    } catch {
      usage(cmd, `the JWKS at ${source} is not JSON`);
    }
  }
  try {
    return JSON.parse(readInput(source, "JWKS", cmd));
  } catch (e) {
    if (e instanceof SyntaxError) usage(cmd, `the JWKS file ${source} is not JSON`);
    throw e;
  }
}

function readInput(file: string, what: string, cmd: Command): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (e) {
    usage(
      cmd,
      `cannot read the ${what} file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

/**
 * Writes the export to `out` (atomically: FILE.partial, renamed when complete, so an
 * interrupted export never looks like a whole one) or to stdout.
 */
export async function exportToFileOrStdout(
  reader: AuditReader,
  query: ExportQuery,
  out: string | undefined,
  io: Io,
  worker: ParallelExportOptions["worker"] = "auto",
): Promise<ExportStats> {
  // The export is the log as it was now: records decided meanwhile wait for the next one.
  const upTo = await reader.lastSeq();
  const stats: ExportStats = { records: 0, omitted: 0 };
  const bar = progressBar(io.stderr, upTo);
  // Formatted on a worker thread while this one reads and writes (export-parallel.ts).
  const chunks = exportChunksParallel(reader.records(upTo), {
    ...query,
    stats,
    expectedRecords: upTo,
    worker,
    ...(bar ? { onProgress: bar.update } : {}),
  });
  try {
    if (!out) {
      await writeChunks(io.stdout, chunks);
      return stats;
    }
    const partial = `${out}.partial`;
    // Exports carry the requests' details: readable by their owner only, like the database.
    // A buffer of 1 MB (the default is 16 KB, less than one chunk) lets the next chunks be
    // made while the disk writes this one, instead of waiting for each write in turn.
    const file = fs.createWriteStream(partial, { flags: "w", mode: 0o600, highWaterMark: 1 << 20 });
    try {
      await writeChunks(file, chunks);
      file.end();
      await finished(file);
      fs.renameSync(partial, out);
    } catch (e) {
      file.destroy();
      fs.rmSync(partial, { force: true });
      throw e;
    }
    return stats;
  } finally {
    bar?.done();
  }
}

/** Writes chunk by chunk, waiting for `drain` whenever the stream's buffer is full. */
async function writeChunks(out: Writable, chunks: AsyncIterable<string | Uint8Array>): Promise<void> {
  let failed: Error | null = null;
  const onError = (e: Error) => {
    failed = e;
  };
  out.on("error", onError);
  try {
    for await (const chunk of chunks) {
      if (failed) throw failed;
      if (!out.write(chunk)) await once(out, "drain");
    }
    if (failed) throw failed;
  } finally {
    out.off("error", onError);
  }
}

/** Below this many records an export is over before a bar would be worth drawing. */
const PROGRESS_MIN_RECORDS = 20_000;

function progressBar(
  stderr: Io["stderr"],
  total: number,
): { update: (seq: number) => void; done: () => void } | null {
  if (!stderr.isTTY || total < PROGRESS_MIN_RECORDS) return null;
  let last = 0;
  return {
    update: (seq) => {
      const t = Date.now();
      if (t - last < 200) return;
      last = t;
      const width = 30;
      const filled = Math.round((seq / total) * width);
      const pct = Math.floor((seq / total) * 100);
      stderr.write(
        `\rexporting [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${pct}% ${seq}/${total} records`,
      );
    },
    done: () => {
      stderr.write("\r\x1b[2K");
    },
  };
}
