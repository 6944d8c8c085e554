#!/usr/bin/env node
// Countersign runs the JavaScript that `npm run build` compiled into dist/ (`npm install`
// builds it), and falls back to its TypeScript sources through tsx's loader when dist/ is
// missing or older than any source: an edit is never silently ignored, and a build is
// never required to try one. Compiled, the server starts faster and holds about 60 MB
// less memory than under tsx's loader. COUNTERSIGN_FROM_SOURCE=1 forces the sources.
import { pathToFileURL } from "node:url";
import { compiledFor } from "./compiled.mjs";

const compiled = compiledFor("src/cli/main.ts");
if (compiled) {
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
