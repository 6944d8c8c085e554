/**
 * The step-up challenge (SPEC "Step-up: the approver's own passkey"): what an approver's
 * passkey signs to confirm one approval. It binds the action as decided, the escalation
 * level, the person and a single-use nonce, so an assertion can never be replayed for
 * another action, revision, level or approver. The server issues it; `audit verify`
 * recomputes it offline from the record.
 */
import { canonicalJson, sha256B64url } from "./canonical.js";

export interface StepUpChallengeInput {
  readonly action_id: string;
  /** The digest of the revision the approver was shown. */
  readonly action_sha256: string;
  /** Numbered as the record's `route.escalation_level`. */
  readonly level: number;
  /** The approver's Slack user id. */
  readonly user: string;
  /** Issued by the server, single-use (base64url). */
  readonly nonce: string;
}

/** base64url SHA-256 of the RFC 8785 JSON `{action_id, action_sha256, level, user, nonce}`. */
export function stepUpChallenge(input: StepUpChallengeInput): string {
  const { action_id, action_sha256, level, user, nonce } = input;
  return sha256B64url(canonicalJson({ action_id, action_sha256, level, user, nonce }));
}
