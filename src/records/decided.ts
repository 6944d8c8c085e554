/**
 * The request a stored record decided, for everything that hands it back to the agent
 * (the job's result, `GET /v1/actions/:id`, the webhook) and for the audit export. The
 * store keeps the agent's own request; approvers' changes live in the signed record as
 * `edits` (SPEC "Changes before approval"). Replaying them here, from the one signed
 * source, means what the agent is told to execute can never drift from what was signed:
 * its digest is the record's `action_sha256`.
 */
import { decidedRequest } from "../domain/edits.js";
import type { ActionRequest, Edit } from "../domain/types.js";
import { decodeJws } from "./signing.js";

/** The edits a record's JWS carries; [] when approvers changed nothing. */
export function recordEdits(recordJws: string): readonly Edit[] {
  const edits = decodeJws(recordJws).payload["edits"];
  if (edits === undefined) return [];
  if (!Array.isArray(edits)) throw new Error("the record's edits is not an array of {user, team, at, patch}");
  return edits as Edit[];
}

/** The agent's `original` request as the record decided it: with the record's edits applied. */
export function decidedRequestOf(original: ActionRequest, recordJws: string): ActionRequest {
  const edits = recordEdits(recordJws);
  return edits.length === 0 ? original : decidedRequest(original, { edits });
}
