import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Every module specifier a file imports or re-exports, static or dynamic. */
function specifiers(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/g))
    found.push(m[1]!);
  for (const m of text.matchAll(/(?:^|\n)\s*import\s*["']([^"']+)["']/g)) found.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) found.push(m[1]!);
  return found;
}

// The core is given text, values, the clock and randomness: it reads no files, no
// environment and no network, and logs nothing, so it can be tested as plain functions.
const FORBIDDEN = [
  /^(node:)?(fs|fs\/promises|path|os|net|http|https|child_process|worker_threads|process)$/,
  /^(pino|ioredis|bullmq|pg|better-sqlite3|drizzle-orm(\/.*)?|@slack\/.*)$/,
];

describe("src/domain stays pure", () => {
  const files = sources(join(SRC, "domain"));

  it("finds the domain's modules", () => {
    expect(files.length).toBeGreaterThan(10);
  });

  for (const file of files) {
    const name = relative(SRC, file);
    it(`${name} imports no adapter, file system, network or logger`, () => {
      const text = readFileSync(file, "utf8");
      const bad = specifiers(text).filter(
        (s) =>
          FORBIDDEN.some((re) => re.test(s)) ||
          (s.startsWith(".") && !join(dirname(file), s).startsWith(join(SRC, "domain"))),
      );
      expect(bad).toEqual([]);
      expect(text).not.toMatch(/\bprocess\.env\b/);
    });
  }
});
