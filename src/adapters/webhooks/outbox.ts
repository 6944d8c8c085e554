/**
 * The `webhook` effect: a verdict POSTed to the agent's callback_url, signed per Standard
 * Webhooks with the agent's secret. Written to the outbox with the verdict, so a crash
 * between the two still delivers, always with the same webhook-id (the decision id).
 * Every attempt is recorded; retries follow WEBHOOK_RETRY_DELAYS.
 */
import type { Logger } from "pino";
import { crashPoint } from "../../app/crash.js";
import type { EffectOutcome } from "../../app/effects.js";
import type { Effect, WebhookStore } from "../../app/ports.js";
import type { Policy } from "../../domain/types.js";
import { decidedRequestOf } from "../../records/decided.js";
import { deliverWebhook, nextDelayMs } from "./deliver.js";

export interface WebhookSenderOptions {
  readonly store: WebhookStore;
  readonly policy: Policy;
  readonly secrets: Readonly<Record<string, string | undefined>>;
  readonly scheduleMs: readonly number[];
  readonly log: Logger;
  readonly timeoutMs?: number;
}

export class WebhookSender {
  constructor(private readonly options: WebhookSenderOptions) {}

  /**
   * The body for a decided action: stable across attempts (its timestamp is the
   * decision's). A revocation (`receipt_seq` in the effect) is `decision.revoked`: the
   * approval's data plus the receipt, under the receipt's id. An approval's webhook not yet
   * delivered when its approval is revoked is not sent at all: the agent must not act on it.
   */
  async body(
    actionId: string,
    e?: Pick<Effect, "payload">,
  ): Promise<{ url: string; id: string; body: string; agentId: string } | "cancelled" | null> {
    const a = await this.options.store.getAction(actionId);
    const rec = await this.options.store.getRecord(actionId);
    if (!a || !rec || !a.request.callback_url) return null;
    const receipts = a.verdict === "approved" ? await this.options.store.getReceipts(actionId) : [];
    const revoked = receipts.find((r) => r.kind === "revoked");
    const forRevocation = e?.payload["receipt_seq"] !== undefined;
    if (revoked && !forRevocation) return "cancelled";
    if (forRevocation && !revoked) return null;
    const data = {
      action_id: a.id,
      request_id: a.requestId,
      agent_id: a.agentId,
      verdict: a.verdict,
      record: rec.jws,
      request: decidedRequestOf(a.request, rec.jws),
    };
    const body = JSON.stringify(
      revoked && forRevocation
        ? {
            type: "decision.revoked",
            timestamp: new Date(revoked.at).toISOString(),
            data: { ...data, receipt: revoked.jws },
          }
        : {
            type: `decision.${a.verdict}`,
            timestamp: new Date(a.decidedAt ?? Date.now()).toISOString(),
            data,
          },
    );
    return {
      url: a.request.callback_url,
      id: revoked && forRevocation ? revoked.receiptId : rec.decisionId,
      body,
      agentId: a.agentId,
    };
  }

  handle = async (e: Effect): Promise<EffectOutcome> => {
    const w = await this.body(e.actionId!, e);
    if (!w) return { kind: "done" };
    if (w === "cancelled") {
      await this.options.store.appendEvents(
        e.actionId,
        null,
        [{ type: "webhook_cancelled", actor: "system", data: { why: "the approval was revoked" } }],
        Date.now(),
      );
      return { kind: "done" };
    }
    const agent = this.options.policy.agents[w.agentId];
    const envName = agent?.webhook_secret_env;
    const secret = envName ? this.options.secrets[envName] : undefined;
    if (!agent || !secret) {
      return {
        kind: "dead",
        error: `no webhook secret for agent ${w.agentId} (webhook_secret_env ${envName ?? "unset"})`,
      };
    }
    // The policy may have changed since the request was accepted: judge the origin again.
    const origin = new URL(w.url).origin;
    const listed = agent.callback_origins.find((o) => o.origin === origin);
    if (!listed)
      return { kind: "dead", error: `callback origin of ${w.url} is no longer listed for ${w.agentId}` };

    const r = await deliverWebhook({
      url: w.url,
      secret,
      id: w.id,
      body: w.body,
      allowPrivate: listed.allow_private,
      ...(this.options.timeoutMs ? { timeoutMs: this.options.timeoutMs } : {}),
    });
    crashPoint("after_webhook_send");
    const now = Date.now();
    await this.options.store.recordWebhookAttempt({
      actionId: e.actionId!,
      webhookId: w.id,
      attempt: e.attempts,
      at: now,
      url: w.url,
      status: r.status,
      durationMs: r.durationMs,
      error: r.error,
      address: r.address,
    });
    await this.options.store.appendEvents(
      e.actionId,
      w.agentId,
      [
        {
          type: "webhook_attempt",
          actor: "system",
          data: {
            attempt: e.attempts,
            status: r.status,
            ok: r.ok,
            error: r.error,
            duration_ms: r.durationMs,
          },
        },
      ],
      now,
    );
    if (r.ok) return { kind: "done" };
    if (r.stop) return { kind: "dead", error: `the receiver answered ${r.status}: stop retrying` };
    const delay = nextDelayMs(e.attempts, this.options.scheduleMs, r.retryAfterMs);
    if (delay === null)
      return { kind: "dead", error: `gave up after ${e.attempts} attempts: ${r.error ?? r.status}` };
    return { kind: "retry", at: now + delay, error: r.error ?? `status ${r.status}` };
  };
}
