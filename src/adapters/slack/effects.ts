/**
 * The Slack side of the outbox: cards, card updates, thread notes and DMs. Each handler
 * is safe to run again (the outbox is at-least-once): a card is keyed on its action and
 * level, in our database and in the message's metadata, so a crash between Slack's answer
 * and our commit finds the posted card instead of posting a second.
 */
import type { WebClient } from "@slack/web-api";
import type { Logger } from "pino";
import { crashPoint } from "../../app/crash.js";
import type { EffectOutcome } from "../../app/effects.js";
import {
  type ActionWithVotes,
  type Card,
  currentRequest,
  type Effect,
  type SlackEffectStore,
} from "../../app/ports.js";
import { changesAllowed, changesOf } from "../../domain/change.js";
import type { Policy } from "../../domain/types.js";
import {
  type AfterVerdict,
  type CardInput,
  renderCard,
  renderChangeNote,
  renderDecidedCard,
  renderEscalationNote,
  renderGrantNote,
  renderPasskeyRegisteredDm,
  renderVerdictDm,
  renderVoteNote,
} from "./blocks.js";
import { renderReminder } from "./home.js";
import type { ChannelPacer } from "./pacer.js";

/** Errors that no retry will mend: the request still reaches its deadline, and operators see an event. */
const PERMANENT = new Set([
  "channel_not_found",
  "not_in_channel",
  "is_archived",
  "invalid_blocks",
  "invalid_auth",
  "not_authed",
  "account_inactive",
  "token_revoked",
  "msg_too_long",
  "no_text",
  "missing_scope",
  "restricted_action",
  "message_not_found",
  "cant_update_message",
  "user_not_found",
  "cannot_dm_bot",
]);

export const CARD_EVENT_TYPE = "countersign_card";

export class SlackEffects {
  constructor(
    private readonly client: WebClient,
    private readonly store: SlackEffectStore,
    private readonly policy: Policy,
    private readonly log: Logger,
    private readonly pacer: ChannelPacer,
  ) {}

  /** Null when this effect may post to `channel` now; else when to come back. */
  private paced(channel: string, e: Effect): EffectOutcome | null {
    const at = this.pacer.take(channel, `${e.id}`, Date.now());
    return at === null ? null : { kind: "defer", at };
  }

  /** Maps a thrown Slack error to an outcome; used around every handler. */
  guard(kind: string, fn: (e: Effect) => Promise<EffectOutcome>): (e: Effect) => Promise<EffectOutcome> {
    return async (e) => {
      try {
        return await fn(e);
      } catch (err) {
        const x = err as { code?: string; data?: { error?: string }; retryAfter?: number; message?: string };
        const slackError = x.data?.error;
        if (x.code === "slack_webapi_rate_limited_error") {
          return { kind: "retry", at: Date.now() + (x.retryAfter ?? 1) * 1000, error: "ratelimited" };
        }
        if (slackError && PERMANENT.has(slackError)) {
          await this.store.appendEvents(
            e.actionId,
            null,
            [
              {
                type: "slack_failed",
                actor: "system",
                data: { effect: kind, error: slackError, payload: e.payload },
              },
            ],
            Date.now(),
          );
          this.log.error(
            { action: e.actionId, effect: kind, error: slackError },
            `slack: ${kind} failed for good (${slackError}); the request still runs to its deadline`,
          );
          return { kind: "dead", error: slackError };
        }
        throw err;
      }
    };
  }

  postCard = async (e: Effect): Promise<EffectOutcome> => {
    const level = Number(e.payload.level);
    const a = await this.store.getAction(e.actionId!);
    if (a?.status !== "pending" || a.level !== level || a.eligible === null) return { kind: "done" };
    const existing = (await this.store.getCards(a.id)).find((c) => c.level === level);
    if (existing) return { kind: "done" };
    const channel = this.channelOf(a, level);
    if (!channel) return { kind: "dead", error: `route ${a.routeName} has no channel for level ${level}` };
    const wait = this.paced(channel, e);
    if (wait) return wait;

    // A retry may follow a post whose answer we never stored: look for the card first.
    let ts = e.attempts > 1 ? await this.findPosted(channel, a.id, level) : null;
    let postedIn = channel;
    if (!ts) {
      const { text, blocks } = renderCard(this.cardInput(a));
      const r = await this.client.chat.postMessage({
        channel,
        text,
        blocks: blocks as never,
        unfurl_links: false,
        unfurl_media: false,
        metadata: { event_type: CARD_EVENT_TYPE, event_payload: { action_id: a.id, level } },
      });
      ts = r.ts!;
      crashPoint("after_card_post");
      // Slack answers with the channel id, which is what later clicks carry.
      postedIn = r.channel ?? channel;
    }
    await this.save({ actionId: a.id, level, channel: postedIn, ts }, a);
    return { kind: "done" };
  };

  private async save(card: Card, a: ActionWithVotes): Promise<void> {
    if (!(await this.store.saveCard(card, Date.now()))) return;
    await this.store.appendEvents(
      a.id,
      a.agentId,
      [
        {
          type: "card_posted",
          actor: "system",
          data: { channel: card.channel, ts: card.ts, level: card.level },
        },
      ],
      Date.now(),
    );
    // A verdict that committed while we were posting found no card to update: do it now.
    const now = await this.store.getAction(a.id);
    if (now?.status === "decided") await this.updateOne(now, card);
  }

  private async findPosted(channel: string, actionId: string, level: number): Promise<string | null> {
    const r = await this.client.conversations.history({ channel, limit: 100, include_all_metadata: true });
    for (const m of r.messages ?? []) {
      const md = (m as { metadata?: { event_type?: string; event_payload?: Record<string, unknown> } })
        .metadata;
      if (
        md?.event_type === CARD_EVENT_TYPE &&
        md.event_payload?.action_id === actionId &&
        Number(md.event_payload?.level) === level &&
        m.ts
      ) {
        return m.ts;
      }
    }
    return null;
  }

  /** A verdict redraws every card of the action; a vote redraws the current card's tally. */
  updateCard = async (e: Effect): Promise<EffectOutcome> => {
    const a = await this.store.getAction(e.actionId!);
    if (!a) return { kind: "done" };
    const cards = await this.store.getCards(a.id);
    if (a.status === "decided") {
      for (const card of cards) await this.updateOne(a, card);
      return { kind: "done" };
    }
    const card = cards.find((c) => c.level === a.level);
    if (!card) return { kind: "done" };
    const { text, blocks } = renderCard(this.cardInput(a));
    await this.client.chat.update({ channel: card.channel, ts: card.ts, text, blocks: blocks as never });
    return { kind: "done" };
  };

  /** Half the time to a level's deadline: a nudge, once, to those who have not voted. */
  remind = async (e: Effect): Promise<EffectOutcome> => {
    const level = Number(e.payload.level);
    const a = await this.store.getAction(e.actionId!);
    if (a?.status !== "pending" || a.level !== level || !a.eligible || !a.deadlineAt) return { kind: "done" };
    const voted = new Set(a.votes.map((v) => v.user));
    const waitingOn = a.eligible.filter((u) => !voted.has(u));
    if (!waitingOn.length) return { kind: "done" };
    const card = (await this.store.getCards(a.id)).find((c) => c.level === level);
    if (!card) return { kind: "done" };
    const wait = this.paced(card.channel, e);
    if (wait) return wait;
    const approvals = a.votes.filter((v) => v.vote === "approve").length;
    await this.client.chat.postMessage({
      channel: card.channel,
      thread_ts: card.ts,
      text: renderReminder({ waitingOn, deadline: new Date(a.deadlineAt), approvals, quorum: a.quorum }),
    });
    await this.store.appendEvents(
      a.id,
      a.agentId,
      [{ type: "reminded", actor: "system", data: { level, users: waitingOn } }],
      Date.now(),
    );
    return { kind: "done" };
  };

  private async updateOne(a: ActionWithVotes, card: Card): Promise<void> {
    const rec = await this.store.getRecord(a.id);
    const { text, blocks } = renderDecidedCard(
      this.cardInput(a, card.level),
      {
        verdict: a.verdict!,
        reasonCode: a.reasonCode!,
        reasonText: rec ? reasonTextOf(rec.jws) : "",
        decidedAt: new Date(a.decidedAt ?? Date.now()),
        votes: a.votes,
      },
      // Only the last level's card offers Revoke: that is where its eligible approvers are.
      a.verdict === "approved" && rec
        ? await this.afterVerdict(a, rec.jws, card.level === a.level)
        : undefined,
    );
    await this.client.chat.update({ channel: card.channel, ts: card.ts, text, blocks: blocks as never });
  }

  /** The receipts of an approval as the card shows them, and whether Revoke is still offered. */
  private async afterVerdict(
    a: ActionWithVotes,
    recordJws: string,
    lastLevel: boolean,
  ): Promise<AfterVerdict> {
    const receipts = await this.store.getReceipts(a.id);
    const claims = (r: { jws: string }) => claimsOf(r.jws);
    const redeemed = receipts.find((r) => r.kind === "redeemed");
    const outcome = receipts.find((r) => r.kind === "outcome");
    const revoked = receipts.find((r) => r.kind === "revoked");
    const validUntil = Date.parse(String(claimsOf(recordJws)["valid_until"] ?? ""));
    const o = outcome ? claims(outcome) : null;
    const rv = revoked ? (claims(revoked)["by"] as { user?: string } | undefined) : undefined;
    return {
      ...(redeemed
        ? {
            redeemedAt: new Date(redeemed.at),
            redeemedBy: String((claims(redeemed)["by"] as { executor?: string } | undefined)?.executor ?? ""),
          }
        : {}),
      ...(o ? { outcome: `${String(o["status"])}${o["detail"] ? `: ${String(o["detail"])}` : ""}` } : {}),
      ...(revoked
        ? { revokedAt: new Date(revoked.at), ...(rv?.user ? { revokedBy: `<@${rv.user}>` } : {}) }
        : {}),
      revocable: lastLevel && !redeemed && !revoked && Date.now() < validUntil,
    };
  }

  threadNote = async (e: Effect): Promise<EffectOutcome> => {
    const level = Number(e.payload.level);
    const cards = await this.store.getCards(e.actionId!);
    const card = cards.find((c) => c.level === level);
    if (!card) {
      // The card is not out yet (or never will be): wait a little for it, then let the note go.
      return e.attempts < 10
        ? { kind: "retry", at: Date.now() + 1_000, error: "card not posted yet" }
        : { kind: "done" };
    }
    const a = await this.store.getAction(e.actionId!);
    if (!a) return { kind: "done" };
    let text: string;
    const grantNote = e.payload.note;
    if (grantNote === "redeemed" || grantNote === "outcome" || grantNote === "revoked") {
      const r = (await this.store.getReceipts(a.id)).find((x) => x.kind === grantNote);
      if (!r) return { kind: "done" };
      const c = claimsOf(r.jws);
      const by = (c["by"] ?? {}) as { executor?: string; agent?: string; user?: string };
      text = renderGrantNote(grantNote, {
        ...(by.executor ? { executor: by.executor } : {}),
        ...(by.agent ? { agent: by.agent } : {}),
        ...(by.user ? { user: by.user } : {}),
        ...(typeof c["status"] === "string" ? { status: c["status"] } : {}),
        ...(typeof c["detail"] === "string" ? { detail: c["detail"] } : {}),
        ...(typeof c["reason_text"] === "string" ? { reason: c["reason_text"] } : {}),
      });
    } else if (e.payload.note === "changed") {
      const n = Number(e.payload.revision);
      const r = a.revisions.find((x) => x.revision === n);
      if (!r) return { kind: "done" };
      text = renderChangeNote({
        user: r.edit.user,
        revision: n,
        stepUp: e.payload.step_up === true,
        changes: changesOf(a.request, a.revisions).filter((c) => c.revision === n),
        ...(r.comment ? { comment: r.comment } : {}),
      });
    } else if (e.payload.note === "vote") {
      const v = a.votes.find((x) => x.user === e.payload.user);
      if (!v) return { kind: "done" };
      text = renderVoteNote(v, {
        approvals: a.votes.filter((x) => x.vote === "approve").length,
        quorum: a.quorum,
      });
    } else {
      const to = Number(e.payload.to_level);
      const eligible = a.level === to && a.eligible ? a.eligible : [];
      text = renderEscalationNote(level, to, eligible, new Date(Number(e.payload.deadline)));
    }
    const wait = this.paced(card.channel, e);
    if (wait) return wait;
    await this.client.chat.postMessage({ channel: card.channel, thread_ts: card.ts, text });
    return { kind: "done" };
  };

  dm = async (e: Effect): Promise<EffectOutcome> => {
    if (e.payload.why === "passkey_registered") {
      const open = await this.client.conversations.open({ users: String(e.payload.to) });
      const text = renderPasskeyRegisteredDm(String(e.payload.label ?? ""));
      await this.client.chat.postMessage({ channel: open.channel!.id!, text });
      return { kind: "done" };
    }
    const a = await this.store.getAction(e.actionId!);
    if (a?.status !== "decided") return { kind: "done" };
    const rec = await this.store.getRecord(a.id);
    const open = await this.client.conversations.open({ users: String(e.payload.to) });
    const text = renderVerdictDm({
      request: a.request,
      decision: {
        verdict: a.verdict!,
        reasonCode: a.reasonCode!,
        reasonText: rec ? reasonTextOf(rec.jws) : "",
        decidedAt: new Date(a.decidedAt ?? Date.now()),
        votes: a.votes,
      },
    });
    await this.client.chat.postMessage({ channel: open.channel!.id!, text });
    return { kind: "done" };
  };

  private channelOf(a: ActionWithVotes, level: number): string | null {
    const route = this.policy.routes.find((r) => r.name === a.routeName);
    return route?.levels[level]?.channel ?? null;
  }

  cardInput(a: ActionWithVotes, level = a.level): CardInput {
    const current = currentRequest(a);
    return {
      actionId: a.id,
      // The revision as it stands: the agent's request until approvers change it.
      request: current.request,
      revision: current.revision,
      editable: a.status === "pending" ? changesAllowed(this.policy, a.actionType, a.request) : [],
      changes: changesOf(a.request, a.revisions),
      riskClass: a.riskClass,
      agentOwners: this.policy.agents[a.agentId]?.owners ?? {},
      routeName: a.routeName ?? "",
      level,
      quorum: a.quorum,
      eligible: a.eligible ?? [],
      deadline: new Date(a.deadlineAt ?? a.requestedAt),
      votes: a.votes,
    };
  }
}

/** The claims of a JWS of our own log (it was verified when written). */
function claimsOf(jws: string): Record<string, unknown> {
  try {
    return JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString("utf8")) as Record<
      string,
      unknown
    >;
  } catch {
    return {};
  }
}

/** The record is the authority on what was decided; the card shows its reason text. */
function reasonTextOf(jws: string): string {
  const part = jws.split(".")[1] ?? "";
  try {
    const claims = JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as { reason_text?: string };
    return claims.reason_text ?? "";
  } catch {
    return "";
  }
}
