/**
 * Passkeys and step-up (SPEC "Step-up: the approver's own passkey"): the use-cases behind
 * App Home's "Register a passkey", the registration page, and the step-up page that turns
 * an Approve click on a step-up level into a vote confirmed by the approver's own key.
 *
 * A Slack click proves only a Slack session. So on a step-up level the click casts
 * nothing: it earns a one-time link (5 minutes) bound to the action, level, revision and
 * person, with a nonce the server issued; the vote is cast only when an assertion over
 * the SPEC's challenge verifies, through Approvals.vote, so every rule a click obeys
 * (eligible, one vote a person, decided requests refuse) still holds. Registration asks a
 * person who already has a passkey to confirm with one of them, so a stolen Slack
 * session alone cannot add its own key.
 *
 * Links are single-use: redeemed atomically before the ceremony is verified, so a link
 * is good for one attempt, whatever its outcome. Only the SHA-256 of a link's token is
 * stored. The WebAuthn ceremonies themselves are behind the WebAuthn port (a well-kept
 * library in src/adapters/webauthn.ts), never parsed here.
 */
import { canonicalJson, sha256B64url } from "../domain/canonical.js";
import type { Voter } from "../domain/decision.js";
import { AppError } from "../domain/errors.js";
import { newId, type RandomBytes } from "../domain/ids.js";
import { stepUpChallenge } from "../domain/step-up.js";
import type { ActionRequest, PublicJwk, StepUpProof } from "../domain/types.js";
import type { Approvals } from "./approvals.js";
import {
  type ActionWithVotes,
  currentRequest,
  type PasskeyCredential,
  type PasskeyLink,
  type PasskeyStore,
  type Store,
} from "./ports.js";

/** How long a link lives (SPEC): registering 10 minutes, approving 5. */
export const LINK_TTL_MS = { register: 10 * 60_000, approve: 5 * 60_000 } as const;

/** A verified new credential, as the ceremony library gives it. */
export interface NewCredential {
  readonly credentialId: string;
  readonly publicKeyCose: string;
  readonly publicKey: PublicJwk;
  readonly counter: number;
  readonly transports: readonly string[];
}

/** A verified assertion: the counter to keep, and the bytes the record carries (base64url). */
export interface VerifiedAssertion {
  readonly newCounter: number;
  readonly authenticatorData: string;
  readonly clientDataJson: string;
  readonly signature: string;
}

/**
 * The WebAuthn ceremonies, for this service's relying party (PUBLIC_URL's host and
 * origin). User verification is always required. Verification throws PasskeyError
 * `ceremony_failed` with what did not hold.
 */
export interface WebAuthn {
  creationOptions(o: {
    readonly challenge: string;
    readonly user: string;
    readonly userName: string;
    readonly exclude: readonly PasskeyCredential[];
  }): Promise<object>;
  requestOptions(o: {
    readonly challenge: string;
    readonly allow: readonly PasskeyCredential[];
  }): Promise<object>;
  verifyRegistration(response: unknown, challenge: string): Promise<NewCredential>;
  verifyAssertion(
    response: unknown,
    challenge: string,
    credential: PasskeyCredential,
  ): Promise<VerifiedAssertion>;
  /** The credential id an assertion response names (before it is verified). */
  assertionCredentialId(response: unknown): string | null;
}

export type PasskeyCode =
  | "link_unknown"
  | "link_used"
  | "link_expired"
  | "wrong_page"
  | "no_passkey"
  | "not_your_passkey"
  | "confirmation_required"
  | "ceremony_failed"
  | "passkey_exists"
  | "refused"
  | "not_found";

/** Why a passkey page or a step-up was refused; `message` is for the person, safe to show. */
export class PasskeyError extends AppError<PasskeyCode> {
  override readonly name = "PasskeyError";
}

export interface PasskeysDeps {
  readonly store: PasskeyStore & Pick<Store, "getAction" | "appendEvents">;
  readonly approvals: Approvals;
  readonly webauthn: WebAuthn;
  /** PUBLIC_URL without a trailing slash. */
  readonly publicUrl: string;
  readonly issuer: string;
  readonly team: string;
  readonly random: RandomBytes;
  readonly now: () => Date;
  /** The voter as the directory knows them (names for the record). */
  readonly voterOf: (user: string) => Promise<Voter>;
}

/** What the registration page needs. */
export interface RegisterPage {
  readonly user: string;
  readonly existing: readonly PasskeyCredential[];
  readonly creation: object;
  /** Options to confirm with an existing passkey first; null for a first passkey. */
  readonly confirm: object | null;
  readonly expiresAt: number;
}

/** What the step-up page needs. */
export interface StepUpPage {
  readonly user: string;
  readonly action: ActionWithVotes;
  /** The revision the approval is for, shown as on the card. */
  readonly request: ActionRequest;
  readonly level: number;
  readonly comment: string | null;
  readonly options: object;
  readonly expiresAt: number;
}

export type StepUpRequest =
  | { readonly kind: "link"; readonly url: string; readonly expiresAt: number }
  | { readonly kind: "no_passkey"; readonly message: string }
  | { readonly kind: "refused"; readonly reason: string }
  | { readonly kind: "counted" | "not_found" };

export const NO_PASSKEY_MESSAGE =
  "This request needs your passkey to approve, and you have none yet. Open Countersign's App Home in Slack, choose “Register a passkey”, follow the link, then click Approve again. Nothing was cast.";

export class Passkeys {
  constructor(private readonly deps: PasskeysDeps) {}

  /** Whether an Approve on this action's current level must be confirmed with a passkey. */
  needsStepUp(a: Pick<ActionWithVotes, "routeName" | "level">, level = a.level): boolean {
    const route = this.deps.approvals.policy.routes.find((r) => r.name === a.routeName);
    return route?.levels[level]?.step_up === "passkey";
  }

  /** App Home's list. */
  list(user: string, team = this.deps.team): Promise<PasskeyCredential[]> {
    return this.deps.store.passkeysOf(team, user);
  }

  /** App Home's Remove: only the person's own credential; an audit event. False if it is not theirs. */
  remove(user: string, credentialId: string, team = this.deps.team): Promise<boolean> {
    return this.deps.store.removePasskey(team, user, credentialId, this.deps.now().getTime());
  }

  /** App Home's "Register a passkey": a one-time link (10 minutes). */
  async registrationLink(user: string): Promise<{ url: string; expiresAt: number }> {
    const { token, link } = this.newLink({ purpose: "register", user });
    await this.deps.store.savePasskeyLink(link);
    return { url: `${this.deps.publicUrl}/passkeys/register?t=${token}`, expiresAt: link.expiresAt };
  }

  /**
   * An Approve (with or without a comment) on a step-up level: nothing is cast. Judged by
   * the same rules as a vote first, so a person who may not vote gets the refusal, not a
   * link; a person with no passkey is told how to register one.
   */
  async requestStepUp(
    actionId: string,
    voter: Voter,
    ballot: { readonly cardLevel: number; readonly comment?: string },
  ): Promise<StepUpRequest> {
    const may = await this.deps.approvals.mayVote(actionId, voter, {
      vote: "approve",
      cardLevel: ballot.cardLevel,
    });
    if (may.kind === "refused") return { kind: "refused", reason: may.reason };
    if (may.kind !== "ok") return { kind: may.kind };
    const a = await this.deps.store.getAction(actionId);
    if (!a) return { kind: "not_found" };
    const now = this.deps.now().getTime();
    const keys = await this.deps.store.passkeysOf(this.deps.team, voter.user);
    if (!keys.length) {
      await this.deps.store.appendEvents(
        actionId,
        a.agentId,
        [
          {
            type: "step_up_refused",
            actor: `slack:${voter.user}`,
            data: { code: "no_passkey", level: a.level },
          },
        ],
        now,
      );
      return { kind: "no_passkey", message: NO_PASSKEY_MESSAGE };
    }
    const shown = currentRequest(a);
    const { token, link } = this.newLink({
      purpose: "approve",
      user: voter.user,
      team: this.deps.team,
      actionId,
      level: ballot.cardLevel,
      // The revision the approver is shown now: the passkey confirms exactly that one.
      actionSha256: shown.sha256,
      revision: shown.revision,
      comment: ballot.comment ?? null,
    });
    await this.deps.store.savePasskeyLink(link);
    await this.deps.store.appendEvents(
      actionId,
      a.agentId,
      [{ type: "step_up_requested", actor: `slack:${voter.user}`, data: { level: ballot.cardLevel } }],
      now,
    );
    return { kind: "link", url: `${this.deps.publicUrl}/step-up?t=${token}`, expiresAt: link.expiresAt };
  }

  async registerPage(token: string): Promise<RegisterPage> {
    const link = await this.openLink(token, "register");
    const existing = await this.deps.store.passkeysOf(link.team, link.user);
    return {
      user: link.user,
      existing,
      creation: await this.deps.webauthn.creationOptions({
        challenge: link.nonce,
        user: link.user,
        userName: `${link.user}@${new URL(this.deps.publicUrl).hostname}`,
        exclude: existing,
      }),
      confirm: existing.length
        ? await this.deps.webauthn.requestOptions({ challenge: confirmChallenge(link), allow: existing })
        : null,
      expiresAt: link.expiresAt,
    };
  }

  /**
   * The registration page's POST: the link is spent, the existing-passkey confirmation (if
   * the person has one) and the new credential are verified, and the credential is stored
   * with its `passkey_registered` entry of the log in one transaction. Announced by DM.
   */
  async completeRegistration(
    token: string,
    body: { readonly credential: unknown; readonly confirmation?: unknown; readonly label?: string },
  ): Promise<PasskeyCredential> {
    const link = await this.spendLink(token, "register");
    const existing = await this.deps.store.passkeysOf(link.team, link.user);
    if (existing.length) {
      if (body.confirmation === undefined || body.confirmation === null)
        throw new PasskeyError(
          "confirmation_required",
          "you already have a passkey: confirm the new one with an existing one first",
        );
      const old = this.ownCredential(existing, body.confirmation);
      const checked = await this.deps.webauthn.verifyAssertion(
        body.confirmation,
        confirmChallenge(link),
        old,
      );
      await this.deps.store.setPasskeyCounter(old.credentialId, checked.newCounter);
    }
    const c = await this.deps.webauthn.verifyRegistration(body.credential, link.nonce);
    const now = this.deps.now().getTime();
    const credential: PasskeyCredential = {
      credentialId: c.credentialId,
      team: link.team,
      user: link.user,
      publicKeyCose: c.publicKeyCose,
      publicKey: c.publicKey,
      counter: c.counter,
      label: cleanLabel(body.label, existing.length + 1),
      transports: c.transports,
      createdAt: now,
    };
    try {
      await this.deps.store.registerPasskey(
        credential,
        {
          ver: 1,
          iss: this.deps.issuer,
          jti: newId("rct", now, this.deps.random),
          iat: Math.floor(now / 1000),
          at: new Date(now).toISOString(),
          kind: "passkey_registered",
          user: link.user,
          team: link.team,
          credential_id: credential.credentialId,
          public_key: credential.publicKey,
        },
        now,
      );
    } catch (e) {
      if ((e as { code?: string }).code === "passkey_exists")
        throw new PasskeyError("passkey_exists", "this passkey is already registered");
      throw e;
    }
    return credential;
  }

  async stepUpPage(token: string): Promise<StepUpPage> {
    const link = await this.openLink(token, "approve");
    const { action, level } = await this.linkAction(link);
    const keys = await this.deps.store.passkeysOf(link.team, link.user);
    if (!keys.length) throw new PasskeyError("no_passkey", NO_PASSKEY_MESSAGE);
    return {
      user: link.user,
      action,
      request: currentRequest(action).request,
      level,
      comment: link.comment,
      options: await this.deps.webauthn.requestOptions({
        challenge: this.challengeOf(link, level),
        allow: keys,
      }),
      expiresAt: link.expiresAt,
    };
  }

  /**
   * The step-up page's POST: the link is spent, the assertion verified against the
   * approver's own credential and the SPEC's challenge, and the vote cast through
   * Approvals with the proof. Resolves only once the vote is committed.
   */
  async completeStepUp(token: string, response: unknown): Promise<{ readonly decided: boolean }> {
    const link = await this.spendLink(token, "approve");
    const { action, level } = await this.linkAction(link);
    const keys = await this.deps.store.passkeysOf(link.team, link.user);
    const challenge = this.challengeOf(link, level);
    let credential: PasskeyCredential;
    let checked: VerifiedAssertion;
    try {
      credential = this.ownCredential(keys, response);
      checked = await this.deps.webauthn.verifyAssertion(response, challenge, credential);
    } catch (e) {
      // Kept for the audit trail: someone held the link and failed to confirm it.
      const code = e instanceof PasskeyError ? e.code : "ceremony_failed";
      await this.refusedEvent(action, link.user, code, (e as Error).message);
      throw e;
    }
    await this.deps.store.setPasskeyCounter(credential.credentialId, checked.newCounter);
    const step_up: StepUpProof = {
      method: "webauthn",
      credential_id: credential.credentialId,
      public_key: credential.publicKey,
      authenticator_data: checked.authenticatorData,
      client_data_json: checked.clientDataJson,
      signature: checked.signature,
      nonce: link.nonce,
    };
    const voter = await this.deps.voterOf(link.user);
    const r = await this.deps.approvals.vote(action.id, voter, {
      vote: "approve",
      cardLevel: level,
      // For the revision the page showed: a change since then makes this approval stale.
      ...(link.revision !== null ? { revision: link.revision } : {}),
      ...(link.comment ? { comment: link.comment } : {}),
      step_up,
    });
    if (r.kind === "not_found") throw new PasskeyError("not_found", "the request no longer exists");
    if (r.kind === "refused")
      throw new PasskeyError("refused", `your approval was not recorded: ${r.reason}`);
    return { decided: r.action.status === "decided" };
  }

  private challengeOf(link: PasskeyLink, level: number): string {
    return stepUpChallenge({
      action_id: link.actionId ?? "",
      action_sha256: link.actionSha256 ?? "",
      level,
      user: link.user,
      nonce: link.nonce,
    });
  }

  /** The credential an assertion names, if it is one of this person's own. */
  private ownCredential(keys: readonly PasskeyCredential[], response: unknown): PasskeyCredential {
    const id = this.deps.webauthn.assertionCredentialId(response);
    const own = keys.find((k) => k.credentialId === id);
    if (!own)
      throw new PasskeyError(
        "not_your_passkey",
        "that passkey is not one registered to you: use your own passkey, registered from App Home",
      );
    return own;
  }

  private async linkAction(link: PasskeyLink): Promise<{ action: ActionWithVotes; level: number }> {
    const action = link.actionId ? await this.deps.store.getAction(link.actionId) : null;
    if (!action || link.level === null) throw new PasskeyError("not_found", "the request no longer exists");
    if (action.status === "decided")
      throw new PasskeyError("refused", `this request has already been decided (${action.verdict ?? ""})`);
    if (action.level !== link.level)
      throw new PasskeyError(
        "refused",
        "the request moved to another escalation level: approve on its new card",
      );
    if (currentRequest(action).sha256 !== link.actionSha256)
      throw new PasskeyError(
        "refused",
        "the request changed since you clicked Approve: look at it again in Slack",
      );
    return { action, level: link.level };
  }

  private async refusedEvent(
    a: ActionWithVotes,
    user: string,
    code: PasskeyCode,
    reason: string,
  ): Promise<void> {
    await this.deps.store.appendEvents(
      a.id,
      a.agentId,
      [{ type: "step_up_refused", actor: `slack:${user}`, data: { code, reason: reason.slice(0, 500) } }],
      this.deps.now().getTime(),
    );
  }

  /** A link for a page view: must exist, be for this page, unused and unexpired. */
  private async openLink(token: string, purpose: PasskeyLink["purpose"]): Promise<PasskeyLink> {
    const link = await this.deps.store.getPasskeyLink(tokenHash(token));
    return checkLink(link, purpose, this.deps.now().getTime());
  }

  /** Spends the link (atomically, once); refuses it when used, expired, unknown or for another page. */
  private async spendLink(token: string, purpose: PasskeyLink["purpose"]): Promise<PasskeyLink> {
    const hash = tokenHash(token);
    const now = this.deps.now().getTime();
    const seen = await this.deps.store.getPasskeyLink(hash);
    checkLink(seen, purpose, now);
    const spent = await this.deps.store.redeemPasskeyLink(hash, now);
    if (!spent) throw new PasskeyError("link_used", "this link was already used: ask for a new one in Slack");
    return spent;
  }

  private newLink(o: {
    purpose: PasskeyLink["purpose"];
    user: string;
    team?: string;
    actionId?: string;
    level?: number;
    actionSha256?: string;
    revision?: number;
    comment?: string | null;
  }): { token: string; link: PasskeyLink } {
    const now = this.deps.now().getTime();
    const token = Buffer.from(this.deps.random(32)).toString("base64url");
    const nonce = Buffer.from(this.deps.random(16)).toString("base64url");
    return {
      token,
      link: {
        tokenHash: tokenHash(token),
        purpose: o.purpose,
        team: o.team ?? this.deps.team,
        user: o.user,
        actionId: o.actionId ?? null,
        level: o.level ?? null,
        actionSha256: o.actionSha256 ?? null,
        revision: o.revision ?? null,
        comment: o.comment ?? null,
        nonce,
        createdAt: now,
        expiresAt: now + LINK_TTL_MS[o.purpose],
        usedAt: null,
      },
    };
  }
}

/** What a link's token is stored as. */
export function tokenHash(token: string): string {
  return sha256B64url(`countersign-passkey-link:${token}`);
}

function checkLink(link: PasskeyLink | null, purpose: PasskeyLink["purpose"], now: number): PasskeyLink {
  if (!link) throw new PasskeyError("link_unknown", "this link is not valid: ask for a new one in Slack");
  if (link.purpose !== purpose) throw new PasskeyError("wrong_page", "this link is for another page");
  if (link.usedAt !== null)
    throw new PasskeyError("link_used", "this link was already used: ask for a new one in Slack");
  if (link.expiresAt <= now)
    throw new PasskeyError("link_expired", "this link has expired: ask for a new one in Slack");
  return link;
}

/** What an existing passkey signs to confirm a new one: bound to this registration link. */
function confirmChallenge(link: PasskeyLink): string {
  return sha256B64url(canonicalJson({ purpose: "passkey_register", user: link.user, nonce: link.nonce }));
}

function cleanLabel(label: string | undefined, n: number): string {
  const l = (label ?? "")
    .replace(/[\u0000-\u001f\u007f]/g, "")
    .trim()
    .slice(0, 64);
  return l || `passkey ${n}`;
}
