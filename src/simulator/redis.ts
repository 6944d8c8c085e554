/**
 * Find a Redis for the demo, or start a private one.
 *
 * The demo promises "Node and Redis only": someone trying Countersign on a laptop may
 * have `redis-server` installed but not running, and should not have to learn how to
 * start it. The private server keeps nothing on disk (`--save ''`, no AOF) and binds to
 * loopback only, so it cannot outlive the demo's data or be reached from the network.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import os from "node:os";
import { Redis } from "ioredis";

export interface FoundRedis {
  /** The URL to connect to: the one asked for, or the private server's. */
  readonly url: string;
  /** True when this process started the server (and `stop` ends it). */
  readonly started: boolean;
  stop(): Promise<void>;
}

export class RedisUnavailableError extends Error {
  override readonly name = "RedisUnavailableError" as const;
}

/** What answered a PING: a Redis (`ok`), a Redis that refused us (`refused`), or nothing. */
type Probe = { kind: "ok" } | { kind: "refused"; why: string } | { kind: "absent"; why: string };

export async function probeRedis(url: string, timeoutMs = 1500): Promise<Probe> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    // One attempt: a probe that retries forever never answers "nobody is there".
    retryStrategy: () => null,
  });
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    return { kind: "absent", why: (err as Error).message };
  }
  try {
    await client.ping();
    return { kind: "ok" };
  } catch (err) {
    return { kind: "refused", why: (err as Error).message };
  } finally {
    client.disconnect();
  }
}

/** A free TCP port on loopback (the OS picks it; the tiny race until redis binds it is acceptable here). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Whether `redis-server` can be started from PATH. */
export function hasRedisServer(binary = "redis-server"): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(binary, ["--version"], { stdio: "ignore" });
    child.once("error", () => resolve(false));
    child.once("exit", (code) => resolve(code === 0));
  });
}

export interface FindRedisOptions {
  /** Default `redis-server` (looked up in PATH). */
  binary?: string;
  /** How long to wait for a started server to answer; default 5000 ms. */
  startTimeoutMs?: number;
}

/**
 * Uses the Redis at `url` when one answers there. Otherwise starts a private
 * `redis-server` on a free loopback port, when the binary is installed, and returns its
 * URL. Throws RedisUnavailableError, in one line saying what to do, when neither works.
 */
export async function findOrStartRedis(url: string, o: FindRedisOptions = {}): Promise<FoundRedis> {
  const probe = await probeRedis(url);
  if (probe.kind === "ok") return { url, started: false, stop: async () => {} };
  if (probe.kind === "refused") {
    // Something is there and speaks Redis, but will not serve us (a password, a replica
    // that is loading...): starting another server beside it would hide the real problem.
    throw new RedisUnavailableError(`the Redis at ${url} answered but refused a PING: ${probe.why}`);
  }
  const binary = o.binary ?? "redis-server";
  if (!(await hasRedisServer(binary))) {
    throw new RedisUnavailableError(
      `no Redis answers at ${url} and ${binary} is not installed: install Redis 6.2 or newer ` +
        "(apt-get install redis-server, brew install redis) or set REDIS_URL to a running one",
    );
  }
  return startPrivateRedis(binary, o.startTimeoutMs ?? 5000);
}

async function startPrivateRedis(binary: string, timeoutMs: number): Promise<FoundRedis> {
  const port = await freePort();
  const child = spawn(
    binary,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", os.tmpdir()],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const keep = (b: Buffer) => {
    output = (output + b.toString("utf8")).slice(-2000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", () => {
    exited = true;
  });
  // If the demo dies without its cleanup (an uncaught error), the server must not linger.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) {
      process.off("exit", killOnExit);
      throw new RedisUnavailableError(
        `${binary} exited at start (port ${port}): ${lastLine(output) || "no output"}`,
      );
    }
    if ((await probeRedis(url, 300)).kind === "ok") break;
    if (Date.now() > deadline) {
      await stopChild(child, exitedPromise);
      process.off("exit", killOnExit);
      throw new RedisUnavailableError(
        `${binary} did not answer on port ${port} within ${timeoutMs} ms: ${lastLine(output) || "no output"}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  let stopping: Promise<void> | null = null;
  return {
    url,
    started: true,
    stop() {
      stopping ??= (async () => {
        await stopChild(child, exitedPromise);
        process.off("exit", killOnExit);
      })();
      return stopping;
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean)
      .at(-1) ?? ""
  );
}
