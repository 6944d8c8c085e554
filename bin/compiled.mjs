// Whether the compiled build in dist/ is current: present, and newer than every source
// it is built from. Shared by the CLI (bin/countersign.mjs) and the benchmark's server
// launcher, so both run what `npm install` built and never a stale copy of an edit.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/** The newest modification time of the files under `dir` ending in `ext` (0 if none). */
function newest(dir, ext) {
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  let max = 0;
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) max = Math.max(max, newest(p, ext));
    else if (e.name.endsWith(ext)) max = Math.max(max, fs.statSync(p).mtimeMs);
  }
  return max;
}

/**
 * The compiled file for `source` (a path from the package root, e.g. "src/cli/main.ts"),
 * or null when it must run from source: no build, a build older than any source, or
 * COUNTERSIGN_FROM_SOURCE=1.
 */
export function compiledFor(source) {
  if (process.env.COUNTERSIGN_FROM_SOURCE === "1") return null;
  const file = path.join(ROOT, "dist", source.replace(/\.ts$/, ".js"));
  if (!fs.existsSync(file)) return null;
  const sources = Math.max(
    newest(path.join(ROOT, "src"), ".ts"),
    newest(path.join(ROOT, "db"), ".ts"),
    fs.statSync(path.join(ROOT, source)).mtimeMs,
  );
  return newest(path.join(ROOT, "dist"), ".js") >= sources ? file : null;
}
