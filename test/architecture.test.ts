/**
 * The layering rule: the decision core (src/domain) and the use-cases (src/app) depend on
 * ports, never on what implements them. Neither may import an adapter, a module that
 * reaches the file system, processes or the network, or a logger implementation; app
 * code logs through the Logger port (src/app/ports.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "..");
const SRC = path.join(ROOT, "src");

/** Node modules that reach outside the process's memory: files, processes, network, workers. */
const IO_MODULES = new Set([
  "fs",
  "fs/promises",
  "path",
  "child_process",
  "cluster",
  "dgram",
  "dns",
  "http",
  "https",
  "http2",
  "net",
  "tls",
  "os",
  "process",
  "readline",
  "worker_threads",
]);

/** Packages that implement logging or talk to the outside: only adapters may use them. */
const FORBIDDEN_PACKAGES = [
  "pino",
  "winston",
  "bunyan",
  "better-sqlite3",
  "pg",
  "drizzle-orm",
  "ioredis",
  "bullmq",
  "@slack/",
  "fastify",
];

function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return filesUnder(p);
    return e.name.endsWith(".ts") ? [p] : [];
  });
}

/** Every module a file imports or re-exports, statically or dynamically. */
function importsOf(source: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s[^'"]*?\sfrom\s*["']([^"']+)["']/gms,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
    /\brequire\(\s*["']([^"']+)["']\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) specs.push(m[1]!);
  return specs;
}

/** Why `spec`, imported by `file`, breaks the rule; null when it does not. */
function violation(file: string, spec: string): string | null {
  if (spec.startsWith(".")) {
    const target = path.resolve(path.dirname(file), spec);
    const rel = path.relative(SRC, target).split(path.sep).join("/");
    if (rel.startsWith("adapters/") || rel === "adapters") return `imports the adapter ${rel}`;
    if (rel === "main" || rel.startsWith("main.") || rel.startsWith("cli/") || rel.startsWith("simulator/"))
      return `imports ${rel}, which wires or drives the app`;
    return null;
  }
  const name = spec.startsWith("node:") ? spec.slice("node:".length) : spec;
  if (IO_MODULES.has(name)) return `imports ${spec}, which reaches outside the process`;
  const pkg = FORBIDDEN_PACKAGES.find((p) =>
    p.endsWith("/") ? name.startsWith(p) : name === p || name.startsWith(`${p}/`),
  );
  if (pkg) return `imports ${spec}, an implementation only an adapter may use`;
  return null;
}

describe("layering", () => {
  it("the rule itself catches each kind of forbidden import", () => {
    const file = path.join(SRC, "app", "x.ts");
    expect(violation(file, "../adapters/db/sqlite.js")).toMatch(/adapter/);
    expect(violation(file, "node:fs")).toMatch(/outside the process/);
    expect(violation(file, "path")).toMatch(/outside the process/);
    expect(violation(file, "node:child_process")).toMatch(/outside the process/);
    expect(violation(file, "pino")).toMatch(/only an adapter/);
    expect(violation(file, "@slack/bolt")).toMatch(/only an adapter/);
    expect(violation(file, "../main.js")).toMatch(/wires/);
    expect(violation(file, "./ports.js")).toBeNull();
    expect(violation(file, "../domain/types.js")).toBeNull();
    expect(violation(file, "node:crypto")).toBeNull();
    expect(
      importsOf(
        `import type { X } from "pino";\nexport { y } from "../adapters/a.js";\nawait import("node:fs")`,
      ),
    ).toEqual(["pino", "../adapters/a.js", "node:fs"]);
  });

  for (const layer of ["domain", "app"]) {
    it(`no file in src/${layer} imports an adapter, a file system or process module, or a logger`, () => {
      const found: string[] = [];
      for (const file of filesUnder(path.join(SRC, layer))) {
        for (const spec of importsOf(fs.readFileSync(file, "utf8"))) {
          const why = violation(file, spec);
          if (why) found.push(`${path.relative(ROOT, file)} ${why}`);
        }
      }
      expect(found).toEqual([]);
    });
  }
});
