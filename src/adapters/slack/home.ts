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

export function renderHome(o: {
  readonly waiting: readonly Listed[];
  readonly decided: readonly Listed[];
  readonly owned: readonly Listed[];
}): Record<string, unknown> {
  // A home view holds 100 blocks: 3 headers and dividers, and lists of at most 30 each.
  const blocks: unknown[] = [
    { type: "header", text: { type: "plain_text", text: `Waiting for your vote (${o.waiting.length})` } },
    ...listBlocks(o.waiting, "Nothing waits for your vote right now.", 30),
    { type: "divider" },
    { type: "header", text: { type: "plain_text", text: "You decided recently" } },
    ...listBlocks(o.decided, "No votes from you yet.", 25),
  ];
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
