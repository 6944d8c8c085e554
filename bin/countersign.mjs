#!/usr/bin/env node
// Countersign runs from its TypeScript sources through tsx's loader (no build step to
// forget): the same files the tests and the type-checker see.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
