/**
 * What an approver finds without hunting through channels: `/approvals` (ephemeral, the
 * requests waiting for their vote now) and the App Home tab (waiting, decided recently,
 * and for an agent's owners, their agents' recent requests). Agent text goes through the
 * same escaping as the card.
 */
import type { ActionRow } from "../../app/ports.js";
import { dateToken, inline } from "./blocks.js";

export interface Listed {
  readonly action: ActionRow;
  /** A link to the card, when Slack gave one. */
  readonly permalink?: string | null;
}

const VERDICT_ICON: Record<string, string> = {
  approved: "✅",
  denied: "⛔",
  expired: "⌛",
  cancelled: "🚫",
  pending: "⏳",
};

/** One line per request: icon, summary (agent text, escaped), agent, route, deadline, link. */
export function listLine(l: Listed): string {
  const a = l.action;
  const status = a.status === "pending" ? "pending" : (a.verdict ?? "pending");
  const when =
    a.status === "pending"
      ? a.deadlineAt
        ? `due ${dateToken(new Date(a.deadlineAt))}`
        : "no deadline"
      : `${status} ${dateToken(new Date(a.decidedAt ?? a.requestedAt))}`;
  const link = l.permalink ? ` · <${l.permalink}|open the card>` : "";
  return `${VERDICT_ICON[status] ?? "•"} *${inline(a.request.action.summary, 150)}*\n${inline(a.agentId, 64)} · ${inline(a.riskClass, 32)} · ${inline(a.region, 32)} · ${when}${link}`;
}

function listBlocks(items: readonly Listed[], empty: string, max: number): unknown[] {
  if (!items.length)
    return [{ type: "section", text: { type: "mrkdwn", text: `_${empty}_`, verbatim: true } }];
  const shown = items.slice(0, max).map((l) => ({
    type: "section",
    text: { type: "mrkdwn", text: listLine(l), verbatim: true },
  }));
  if (items.length > max) {
    shown.push({
      type: "section",
      text: { type: "mrkdwn", text: `_and ${items.length - max} more_`, verbatim: true },
    });
  }
  return shown;
}

export function renderApprovalsList(items: readonly Listed[]): { text: string; blocks: unknown[] } {
  const n = items.length;
  return {
    text: n ? `${n} request(s) wait for your vote` : "Nothing waits for your vote",
    blocks: [
      { type: "header", text: { type: "plain_text", text: `Waiting for your vote (${n})`, emoji: false } },
      ...listBlocks(items, "Nothing waits for your vote right now.", 40),
    ],
  };
}

/** The App Home buttons of the passkey section (SPEC "Step-up"). */
export const PASSKEY_ACTION_IDS = { register: "cs_passkey_register", remove: "cs_passkey_remove" } as const;

/** One of the person's passkeys as App Home lists it. */
export interface ListedPasskey {
  readonly credentialId: string;
  readonly label: string;
  readonly createdAt: number;
}

/** "Your passkeys": the list with Remove, and "Register a passkey". Labels are the person's own text, escaped. */
export function passkeyBlocks(keys: readonly ListedPasskey[]): unknown[] {
  const blocks: unknown[] = [
    { type: "header", text: { type: "plain_text", text: `Your passkeys (${keys.length})` } },
    {
      type: "section",
      text: {
        type: "mrkdwn",
        verbatim: true,
        text: keys.length
          ? "Routes marked step-up need your passkey to approve."
          : "_You have no passkey yet. Routes marked step-up need one to approve._",
      },
    },
  ];
  for (const k of keys.slice(0, 10)) {
    blocks.push({
      type: "section",
      text: {
        type: "mrkdwn",
        verbatim: true,
        text: `🔑 *${inline(k.label, 64)}* · added ${dateToken(new Date(k.createdAt))}`,
      },
      accessory: {
        type: "button",
        action_id: PASSKEY_ACTION_IDS.remove,
        value: k.credentialId.slice(0, 1900),
        text: { type: "plain_text", text: "Remove" },
        style: "danger",
        confirm: {
          title: { type: "plain_text", text: "Remove this passkey?" },
          text: { type: "plain_text", text: "It can no longer confirm your approvals." },
          confirm: { type: "plain_text", text: "Remove" },
          deny: { type: "plain_text", text: "Keep" },
        },
      },
    });
  }
  blocks.push({
    type: "actions",
    elements: [
      {
        type: "button",
        action_id: PASSKEY_ACTION_IDS.register,
        text: { type: "plain_text", text: "Register a passkey" },
        style: "primary",
      },
    ],
  });
  return blocks;
}

export function renderHome(o: {
  readonly waiting: readonly Listed[];
  readonly decided: readonly Listed[];
  readonly owned: readonly Listed[];
  /** Present when passkeys are on (PUBLIC_URL set). */
  readonly passkeys?: readonly ListedPasskey[];
}): Record<string, unknown> {
  // A home view holds 100 blocks: 3 headers and dividers, and lists of at most 30 each.
  // With the passkey section (up to 13 blocks and a divider) the first two lists are
  // shorter, so the whole stays under 100.
  const blocks: unknown[] = [
    { type: "header", text: { type: "plain_text", text: `Waiting for your vote (${o.waiting.length})` } },
    ...listBlocks(o.waiting, "Nothing waits for your vote right now.", o.passkeys ? 16 : 30),
    { type: "divider" },
    { type: "header", text: { type: "plain_text", text: "You decided recently" } },
    ...listBlocks(o.decided, "No votes from you yet.", o.passkeys ? 15 : 25),
  ];
  if (o.passkeys) blocks.push({ type: "divider" }, ...passkeyBlocks(o.passkeys));
  if (o.owned.length) {
    blocks.push(
      { type: "divider" },
      { type: "header", text: { type: "plain_text", text: "Your agents' recent requests" } },
      ...listBlocks(o.owned, "", 30),
    );
  }
  return { type: "home", blocks };
}

export function renderReminder(o: {
  waitingOn: readonly string[];
  deadline: Date;
  approvals: number;
  quorum: number;
}): string {
  const who = o.waitingOn.map((u) => `<@${u}>`).join(" ");
  return `⏰ Reminder for ${who}: half the time to the deadline (${dateToken(o.deadline)}) has passed, with ${o.approvals} of ${o.quorum} approvals so far.`;
}
