// The Node/V8 flags `countersign serve` runs with, and the relaunch that applies them.
//
// The server's heap churns (each request allocates and drops its rows, its card, its JSON)
// while what it retains stays small (about 40 MB after a full GC with 100,000 requests
// pending). With V8's defaults its resident memory is the high-water mark of that churn:
// an old generation let grow to up to 4x what survives before it is collected, and pages
// once touched stay resident. In the bench: 292 MB with 10,000 pending against 145 MB at
// rest. --heap-growing-percent=30 collects the old generation when it has grown 30% past
// what survived the last collection: 184 MB with 10,000 pending, for no CPU per request
// that the bench could tell apart (docs/performance.md, "Memory"). Also measured, not
// chosen: --max-semi-space-size=4 on top (158 MB, but 20-40% more CPU per request) and
// --optimize-for-size (143 MB, 2.4x the CPU per request: its 1 MB young generation).
//
// V8 sizes its heap when the process starts: these cannot be set by v8.setFlagsFromString
// (too late for the heap's layout), and Node refuses most V8 flags in NODE_OPTIONS. So
// when serve is started without them (`node bin/countersign.mjs serve`, the systemd unit
// in docs/deploy.md), the launcher starts serve again in a child process with them, and
// stays as a small parent that passes signals on and exits as the child does (its own RSS
// is about 44 MB, of which 7 MB its own: the rest is the node binary, shared with the child).
// Starting node with the flags
// (`node --heap-growing-percent=30 bin/countersign.mjs serve`)
// skips that parent.
// COUNTERSIGN_NODE_FLAGS replaces the list (space-separated; empty: none, no relaunch).
import { spawn } from "node:child_process";

export const SERVE_NODE_FLAGS = Object.freeze(["--heap-growing-percent=30"]);

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
