/**
 * What `serve` loads before it knows its configuration. The PostgreSQL driver (pg and
 * drizzle's PostgreSQL side), the WebAuthn library and date-fns's index are resident memory
 * that a configuration may not need (about 15, 12 and 18 MB of RSS), so start-up loads the
 * first two only when configured and takes single functions from date-fns. The static
 * import graph of the CLI must not reach them; configured, each still loads and works.
 */
import fs from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";

const ROOT = path.resolve(import.meta.dirname, "..");

/** Modules a file loads when it is loaded: static imports and re-exports, never `import type` or `import()`. */
function staticImportsOf(source: string): string[] {
  const specs: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s+(?!type\s)[^'"]*?\sfrom\s*["']([^"']+)["']/gms,
    /^\s*import\s*["']([^"']+)["']/gm,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) specs.push(m[1]!);
  return specs;
}

/** Every package (bare specifier) reached from `entry` through static imports of our own files. */
function packagesReached(entry: string): Map<string, string> {
  const reached = new Map<string, string>();
  const seen = new Set<string>();
  const walk = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of staticImportsOf(fs.readFileSync(file, "utf8"))) {
      if (spec.startsWith(".")) walk(path.resolve(path.dirname(file), spec).replace(/\.js$/, ".ts"));
      else if (!spec.startsWith("node:") && !reached.has(spec)) reached.set(spec, path.relative(ROOT, file));
    }
  };
  walk(entry);
  return reached;
}

describe("start-up loads what the configuration needs", () => {
  it("the import scan tells a static import from a type-only or a dynamic one", () => {
    expect(
      staticImportsOf(
        `import type { A } from "pg";\nimport { b, type C } from "./b.js";\nexport { d } from "date-fns";\n` +
          `import "./side.js";\nconst e = await import("./webauthn.js");`,
      ),
    ).toEqual(["./b.js", "date-fns", "./side.js"]);
  });

  it("the CLI's static import graph reaches neither pg, nor WebAuthn, nor date-fns's index", () => {
    const reached = packagesReached(path.join(ROOT, "src/cli/main.ts"));
    // The scan is live: what serve always needs is found.
    for (const p of ["bullmq", "better-sqlite3", "fastify", "@slack/bolt", "date-fns/addDays"])
      expect([...reached.keys()]).toContain(p);
    const heavy = [...reached].filter(
      ([p]) =>
        p === "pg" ||
        p.startsWith("drizzle-orm/node-postgres") ||
        p.startsWith("@simplewebauthn/") ||
        p === "date-fns",
    );
    expect(heavy.map(([p, by]) => `${p} (imported by ${by})`)).toEqual([]);
  });
});

describe("a lazily loaded part loads when configured", () => {
  let h: Harness | undefined;
  afterAll(async () => {
    await h?.stop();
  });

  it("with PUBLIC_URL, passkeys work: a registration page carries WebAuthn's options", async () => {
    h = await startHarness({ env: { PUBLIC_URL: "http://localhost:3000" } });
    const passkeys = h.app.passkeys;
    expect(passkeys).not.toBeNull();
    const link = await passkeys!.registrationLink("U0ALICE");
    const page = await passkeys!.registerPage(new URL(link.url).searchParams.get("t")!);
    // Made by @simplewebauthn/server: a fresh challenge, for this relying party.
    const creation = page.creation as { challenge?: string; rp?: { id?: string } };
    expect(creation.challenge).toMatch(/^[\w-]{16,}$/);
    expect(creation.rp?.id).toBe("localhost");
  });
});
