/**
 * RFC 6902 patches between revisions of a request (SPEC "Changes before approval").
 * Local stand-in with the signatures helper C2 owns on branch edits-audit; the lead keeps
 * C2's version at merge. fast-json-patch is a kept library: its `compare` writes the
 * patch, its `applyPatch` replays it (on a copy: the original is never changed).
 */
import jsonpatch from "fast-json-patch";
import type { JsonPatchOperation } from "./types.js";

/** The operations that turn `prev` into `next`. */
export function diffRequest(prev: unknown, next: unknown): JsonPatchOperation[] {
  return jsonpatch.compare(prev as object, next as object) as JsonPatchOperation[];
}

/** The request after each edit's patch, in order, applied to a copy of `original`. */
export function applyEdits(
  original: unknown,
  edits: readonly { readonly patch: readonly JsonPatchOperation[] }[],
): unknown {
  let doc = structuredClone(original);
  for (const e of edits) {
    doc = jsonpatch.applyPatch(doc, e.patch as jsonpatch.Operation[], true, false).newDocument;
  }
  return doc;
}
