/**
 * Files the running code reads from the package (the SQL migrations), found from the
 * package's root rather than from this module's place: the same code runs from `src/`
 * under tsx and from `dist/src/` when built, one folder deeper.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

let root: string | null = null;

/** The nearest folder above this module that holds package.json. */
export function packageRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, "package.json"))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  root = dir;
  return root;
}

/** A path inside the package, e.g. `packagePath("db", "migrations")`. */
export function packagePath(...parts: string[]): string {
  return path.join(packageRoot(), ...parts);
}
