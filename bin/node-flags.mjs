// The Node/V8 flags `countersign serve` runs with, and the relaunch that applies them.
//
// --optimize-for-size: V8 keeps a small young generation and grows the old one less
// eagerly before collecting it. The server's heap churns (each request allocates and drops
// its rows, its card, its JSON) while what it retains stays small (about 40 MB after a full
// GC with 100,000 requests pending), so without it the resident memory is the high-water
// mark of that churn: in the bench, 290-320 MB with 100,000 pending against about 150 MB
// with it, for a few percent more CPU per request (docs/performance.md, "Memory").
//
// V8 reads this flag when the process starts: it cannot go in NODE_OPTIONS (Node refuses
// it there) and v8.setFlagsFromString is too late for the heap's layout. So when serve is
// started without it (`node bin/countersign.mjs serve`, the systemd unit in docs/deploy.md),
// the launcher starts serve again in a child process with the flag, and stays as a small
// parent that passes signals on and exits as the child does. Starting node with the flags
// (`node --optimize-for-size bin/countersign.mjs serve`) skips that parent.
// COUNTERSIGN_NODE_FLAGS replaces the list (space-separated; empty: none, no relaunch).
import { spawn } from "node:child_process";

export const SERVE_NODE_FLAGS = Object.freeze(["--optimize-for-size"]);

/** The commands the flags are for: the long-running server. */
const COMMANDS = new Set(["serve"]);

/**
 * The flags the current process lacks for the command in `args` (process.argv after the
 * script), or [] when it needs none or has them all.
 */
export function missingNodeFlags(args, execArgv, env) {
  const command = args.find((a) => !a.startsWith("-"));
  if (!command || !COMMANDS.has(command)) return [];
  const wanted =
    env.COUNTERSIGN_NODE_FLAGS === undefined
      ? SERVE_NODE_FLAGS
      : env.COUNTERSIGN_NODE_FLAGS.split(/\s+/).filter(Boolean);
  return wanted.filter((f) => !execArgv.includes(f));
}

/** Signals passed on to the child: a stop (SIGTERM, SIGINT) or a reload request (SIGHUP). */
const FORWARDED = ["SIGTERM", "SIGINT", "SIGHUP"];

/**
 * Runs `script` with `args` in a child node process that has `flags` besides this process's
 * own execArgv, with this process's stdio and environment, and exits as the child exits
 * (its code, or the signal that ended it). Never returns.
 */
export function relaunch(flags, script, args) {
  const child = spawn(process.execPath, [...flags, ...process.execArgv, script, ...args], {
    stdio: "inherit",
    // serve ends at once if this parent is killed outright (src/cli/main.ts, watchLauncher).
    env: { ...process.env, COUNTERSIGN_LAUNCHER_PID: String(process.pid) },
  });
  for (const sig of FORWARDED) {
    // A signal sent to the process group (Ctrl-C, systemd's stop) reaches the child too;
    // serve takes a repeat within a moment as the same stop (src/cli/main.ts).
    process.on(sig, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    });
  }
  // Under npm, `sh -c` can die on SIGTERM without passing it on: losing our parent means
  // stop (the same rule serve applies to itself, src/cli/main.ts).
  if (process.env.npm_lifecycle_event !== undefined) {
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) child.kill("SIGTERM");
    }, 500).unref();
  }
  child.on("error", (err) => {
    console.error(`countersign: could not start node with ${flags.join(" ")}: ${err.message}`);
    process.exit(1);
  });
  child.on("exit", (code, signal) => {
    if (signal) {
      for (const sig of FORWARDED) process.removeAllListeners(sig);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
}
