/**
 * Runs the audit commands as an auditor does: a real process, real files, exit codes.
 * The program is built the way src/cli/main.ts builds it (exitOverride, usage errors
 * exit 2, other errors exit 1 with their message), with only the audit commands registered.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export const ENTRY = `
import { Command, CommanderError } from "commander";
import { registerAuditCommands } from "./src/cli/audit.js";
import { loadConfig } from "./src/config.js";
const program = new Command().name("countersign").exitOverride();
registerAuditCommands(program, { loadConfig: () => loadConfig() });
try {
  await program.parseAsync(process.argv.slice(1), { from: "user" });
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  console.error("countersign: " + e.message);
  process.exit(1);
}
`;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `countersign ARGS` with exactly this environment (plus PATH); `stdin` is piped from a file when given. */
export function runCli(args: string[], env: Record<string, string>, stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", ENTRY, ...args],
      {
        cwd: ROOT,
        env: { PATH: process.env["PATH"] ?? "", ...env },
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? 1) : 0;
        resolve({ code: typeof code === "number" ? code : 1, stdout, stderr });
      },
    );
    if (stdin !== undefined) fs.createReadStream(stdin).pipe(child.stdin!);
  });
}
