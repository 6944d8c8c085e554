/**
 * The step-up challenge (SPEC "Step-up: the approver's own passkey"): what an approver's
 * passkey signs to confirm one approval. It binds the action as decided, the escalation
 * level, the person and a single-use nonce, so an assertion can never be replayed for
 * another action, revision, level or approver. The server issues it; `audit verify`
 * recomputes it offline from the record.
 */
import { canonicalJson, sha256B64url } from "./canonical.js";
import type { Route } from "./types.js";

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

/**
 * Why `text` cannot be PUBLIC_URL, or null when it can. WebAuthn binds a passkey to an RP ID,
 * which must be a domain name: an IP address never works as one (`localhost` does, for
 * tests). The origin the browser reports must equal PUBLIC_URL's, so the URL names only
 * a scheme, a host and a port, with at most a path below which the pages live.
 */
export function publicUrlProblem(text: string): string | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `${JSON.stringify(text)} is not an absolute URL (expected e.g. https://countersign.example.com)`;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return `${JSON.stringify(text)} must be http:// or https://, not ${url.protocol}`;
  }
  if (url.username !== "" || url.password !== "")
    return `${JSON.stringify(text)} must not carry a user name or password`;
  if (url.search !== "" || url.hash !== "")
    return `${JSON.stringify(text)} must not have a query or fragment`;
  // URL normalises IPv4 in any spelling (127.1, 0x7f.0.0.1) to dotted decimal; IPv6 keeps its brackets.
  if (/^\d+\.\d+\.\d+\.\d+$/.test(url.hostname) || url.hostname.startsWith("[")) {
    return `${JSON.stringify(text)} has an IP address as its host; WebAuthn needs a domain name (localhost for tests)`;
  }
  return null;
}

/** What WebAuthn checks against PUBLIC_URL: the origin browsers report, and the RP ID (its host). */
export function webAuthnRelyingParty(publicUrl: string): { readonly origin: string; readonly rpId: string } {
  const url = new URL(publicUrl);
  return { origin: url.origin, rpId: url.hostname };
}

/** Where a policy asks for step-up, as `route NAME` or `route NAME, escalation level N`, in file order. */
export function stepUpUses(routes: readonly Route[]): string[] {
  const out: string[] = [];
  for (const route of routes) {
    route.levels.forEach((level, i) => {
      if (level.step_up === undefined) return;
      out.push(i === 0 ? `route ${route.name}` : `route ${route.name}, escalation level ${i}`);
    });
  }
  return out;
}
