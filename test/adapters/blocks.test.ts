import { describe, expect, it } from "vitest";
import {
  ACTION_IDS,
  actionsBlockId,
  buttonValue,
  CALLBACK_IDS,
  type CardInput,
  type Decision,
  parseActionsBlockId,
  parseButtonValue,
  parseModalMetadata,
  renderApproveCommentModal,
  renderCard,
  renderDecidedCard,
  renderDenyModal,
  renderEscalationNote,
  renderNotApproverNote,
  renderRequestModal,
  renderVerdictDm,
  renderVoteNote,
  requestModalPages,
} from "../../src/adapters/slack/blocks.js";
import type { ActionRequest, ReasonCode, Verdict, Vote } from "../../src/domain/types.js";
import { blockKitProblems, viewProblems } from "../../src/simulator/blockkit.js";

// ---------------------------------------------------------------------------
// Checkers written for these tests

type Json = Record<string, unknown>;

/** Our own reading of Slack's limits (Slack's Block Kit reference), independent of the code. */
function limitProblems(blocks: unknown[], maxBlocks: number): string[] {
  const p: string[] = [];
  const over = (where: string, s: unknown, max: number) => {
    if (typeof s !== "string") p.push(`${where}: not a string`);
    else if (s.length > max) p.push(`${where}: ${s.length} > ${max}`);
    else if (s.length === 0) p.push(`${where}: empty`);
  };
  if (blocks.length > maxBlocks) p.push(`${blocks.length} blocks > ${maxBlocks}`);
  const blockIds = new Set<string>();
  blocks.forEach((raw, i) => {
    const b = raw as Json;
    if (b.block_id !== undefined) {
      over(`${i}.block_id`, b.block_id, 255);
      if (blockIds.has(b.block_id as string)) p.push(`${i}: duplicate block_id`);
      blockIds.add(b.block_id as string);
    }
    if (b.type === "header") over(`${i}.header`, (b.text as Json).text, 150);
    if (b.type === "section") {
      if (b.text !== undefined) over(`${i}.text`, (b.text as Json).text, 3000);
      const fields = (b.fields ?? []) as Json[];
      if (fields.length > 10) p.push(`${i}: ${fields.length} fields`);
      fields.forEach((f, j) => {
        over(`${i}.fields.${j}`, f.text, 2000);
      });
    }
    if (b.type === "context") {
      for (const e of b.elements as Json[]) over(`${i}.context`, e.text, 3000);
    }
    if (b.type === "actions") {
      const els = b.elements as Json[];
      if (els.length > 25) p.push(`${i}: ${els.length} elements`);
      const ids = new Set<string>();
      for (const e of els) {
        over(`${i}.button.text`, (e.text as Json).text, 75);
        over(`${i}.button.value`, e.value, 2000);
        over(`${i}.button.action_id`, e.action_id, 255);
        if (ids.has(e.action_id as string)) p.push(`${i}: duplicate action_id`);
        ids.add(e.action_id as string);
      }
    }
  });
  return p;
}

/** Every mrkdwn text object in a JSON value, with its verbatim flag. */
function mrkdwnTexts(v: unknown, out: { text: string; verbatim: unknown }[] = []) {
  if (Array.isArray(v)) for (const x of v) mrkdwnTexts(x, out);
  else if (v !== null && typeof v === "object") {
    const o = v as Json;
    if (o.type === "mrkdwn") out.push({ text: o.text as string, verbatim: o.verbatim });
    for (const x of Object.values(o)) mrkdwnTexts(x, out);
  }
  return out;
}

const MENTION = /<@([UW][A-Z0-9]+)>/g;
const DATE_TOKEN = /<!date\^\d+\^\{date_short_pretty\} at \{time\}\|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ>/g;

/**
 * Problems with one piece of mrkdwn: markup that we did not put there. The only tokens
 * allowed are mentions of ids in `allowedIds` and our date tokens; `>` only as our quote
 * bar at the start of a line; `&` only as an entity.
 */
function markupProblems(text: string, allowedIds: ReadonlySet<string>): string[] {
  const p: string[] = [];
  for (const m of text.matchAll(MENTION)) {
    if (!allowedIds.has(m[1]!)) p.push(`mention of ${m[1]} is not ours`);
  }
  const rest = text.replace(MENTION, "").replace(DATE_TOKEN, "").replace(/^>/gm, "");
  if (/[<>]/.test(rest)) p.push(`raw < or > in ${JSON.stringify(rest.slice(0, 200))}`);
  if (/&(?!amp;|lt;|gt;)/.test(rest)) p.push(`bare & in ${JSON.stringify(rest.slice(0, 200))}`);
  if (/<!(?!date\^)|<http|<#|<!subteam/.test(text)) p.push("forbidden token");
  return p;
}

function allMarkupProblems(rendered: { text?: string; blocks?: unknown[] } | Json, ids: ReadonlySet<string>) {
  const p: string[] = [];
  for (const t of mrkdwnTexts(rendered)) {
    if (t.verbatim !== true) p.push(`not verbatim: ${t.text.slice(0, 80)}`);
    p.push(...markupProblems(t.text, ids));
  }
  if (typeof rendered.text === "string") p.push(...markupProblems(rendered.text, ids));
  return p;
}

// ---------------------------------------------------------------------------
// Inputs

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NASTY = [
  "<!channel>",
  "<!here>",
  "<https://evil.example|click>",
  "<@U0EVIL>",
  "<#C0GENERAL>",
  "<!subteam^S0ALL>",
  "<!date^1^{time}|x>",
  "&",
  "&amp;",
  "&gt;",
  "<",
  ">",
  "\n*Risk class:* low\n",
  "\r\n",
  "\u202E",
  "\u200B",
  "\u0000",
  "\u0085",
  "😀",
  "👨‍👩‍👧",
  "\u{E0041}",
  "а",
  "```",
  "`",
  "_",
  "~",
  ":tada:",
  "[U+202E]",
  "https://evil.example/x",
  "a",
  " ",
];

type Fill = (codePoints: number) => string;

const repeatFill =
  (unit: string): Fill =>
  (n) =>
    unit.repeat(n);

function nastyFill(seed: number): Fill {
  const next = rng(seed);
  return (n) => {
    const cps: string[] = [];
    while (cps.length < n) cps.push(...NASTY[Math.floor(next() * NASTY.length)]!);
    return cps.slice(0, n).join("");
  };
}

/** About `bytes` of JSON: a 32-deep chain plus wide levels of long values. */
function bigTree(fill: Fill, bytes: number): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  let node = root;
  for (let d = 0; d < 31; d++) {
    const child: Record<string, unknown> = { [`k${d}`]: fill(8) };
    node[`level${d}`] = child;
    node = child;
  }
  let i = 0;
  while (Buffer.byteLength(JSON.stringify(root)) < bytes) {
    root[`${fill(6)}${i}`] = i % 3 === 0 ? [fill(200), i, null, { x: fill(40) }] : fill(300);
    i++;
  }
  return root;
}

function maxRequest(fill: Fill): ActionRequest {
  return {
    request_id: "req-1",
    agent_id: fill(64),
    action: {
      type: fill(128),
      summary: fill(300),
      details: bigTree(fill, 30_000),
      systems: Array.from({ length: 20 }, () => fill(128)),
    },
    risk_class: fill(40),
    region: fill(40),
    purpose: fill(1000),
    on_behalf_of: { slack_user: "U0EVIL", email: fill(254) },
    callback_url: "https://billing.internal/cb",
    timeout_s: 3600,
    context: bigTree(fill, 7_000),
  };
}

const ELIGIBLE = Array.from({ length: 500 }, (_, i) => `U${String(i).padStart(9, "0")}`);
const OWNER_IDS = ["U0RISK", "U0BIZ", "U0TECH"];

function maxCard(fill: Fill): CardInput {
  const votes: Vote[] = ELIGIBLE.slice(0, 60).map((user, i) => ({
    user,
    team: "T0EXAMPLE",
    real_name: fill(80),
    vote: i === 59 ? "deny" : "approve",
    at: "2025-03-01T10:00:00.000Z",
    comment: fill(1000),
  }));
  return {
    actionId: "act_0123456789abcdefABCDEF",
    request: maxRequest(fill),
    riskClass: fill(40),
    agentOwners: Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`${fill(20)}${i}`, OWNER_IDS])),
    routeName: fill(120),
    level: 3,
    quorum: 50,
    eligible: ELIGIBLE,
    deadline: new Date("2025-03-01T12:00:00Z"),
    votes,
  };
}

const OUR_IDS = new Set([...ELIGIBLE, ...OWNER_IDS, "U0ALICE", "U0BOB", "U0CAROL", "U0RISK"]);

function simpleRequest(over: Partial<ActionRequest> = {}): ActionRequest {
  return {
    request_id: "req-1",
    agent_id: "billing-agent",
    action: {
      type: "payments.refund",
      summary: "Refund €120 to ACME",
      details: { amount: 120, currency: "EUR", customer: { id: "c_1", name: "ACME GmbH" } },
      systems: ["stripe", "ledger"],
    },
    risk_class: "high",
    region: "eu",
    purpose: "The customer was charged twice.",
    on_behalf_of: { slack_user: "U0ANN", email: "ann@example.com" },
    ...over,
  };
}

function simpleCard(over: Partial<CardInput> = {}): CardInput {
  return {
    actionId: "act_01",
    request: simpleRequest(),
    riskClass: "high",
    agentOwners: { risk: ["U0RISK"] },
    routeName: "eu-high-payments",
    level: 0,
    quorum: 2,
    eligible: ["U0ALICE", "U0BOB"],
    deadline: new Date("2025-03-01T12:00:00Z"),
    votes: [],
    ...over,
  };
}

function withAction(a: Partial<ActionRequest["action"]>, over: Partial<ActionRequest> = {}): ActionRequest {
  const r = simpleRequest(over);
  return { ...r, action: { ...r.action, ...a } };
}

const vote = (user: string, v: "approve" | "deny", comment?: string): Vote => ({
  user,
  team: "T0EXAMPLE",
  vote: v,
  at: "2025-03-01T11:00:00Z",
  ...(comment === undefined ? {} : { comment }),
});

const decision = (
  verdict: Verdict,
  reasonCode: ReasonCode,
  reasonText = "",
  votes: Vote[] = [],
): Decision => ({
  verdict,
  reasonCode,
  reasonText,
  decidedAt: new Date("2025-03-01T11:30:00Z"),
  votes,
});

function blocksOf(r: { blocks: unknown[] }): Json[] {
  return r.blocks as Json[];
}

function allMrkdwn(r: unknown): string {
  return mrkdwnTexts(r)
    .map((t) => t.text)
    .join("\n");
}

const FILLS: [string, Fill][] = [
  ["`&<>` everywhere (grows 4-5x when escaped)", repeatFill("&<>")],
  ["control characters (each shown as an 8-character marker)", repeatFill("\u0001")],
  ["tag characters (astral, each shown as a 9-character marker)", repeatFill("\u{E0041}")],
  ["emoji (two UTF-16 units each)", repeatFill("😀")],
  ["ZWJ emoji sequences", repeatFill("👨‍👩‍👧")],
  ...Array.from({ length: 8 }, (_, i): [string, Fill] => [`mixed hostile text, seed ${i}`, nastyFill(i + 1)]),
];

const ALL_DECISIONS: Decision[] = [
  decision("approved", "approvers", "", [vote("U0ALICE", "approve", "ok &"), vote("U0BOB", "approve")]),
  decision("approved", "policy"),
  decision("denied", "approvers", "<!channel> no", [vote("U0CAROL", "deny", "<!channel> no")]),
  decision("denied", "no_route"),
  decision("denied", "no_eligible_approvers"),
  decision("denied", "policy"),
  decision("expired", "timeout"),
  decision("cancelled", "cancelled", "<https://evil|agent note>"),
];

// ---------------------------------------------------------------------------

describe("renderCard stays within every Block Kit limit, whatever the agent sends", () => {
  it.each(FILLS)("maximal request of %s", (_name, fill) => {
    const card = renderCard(maxCard(fill));
    expect(limitProblems(card.blocks, 50)).toEqual([]);
    expect(blockKitProblems(card.blocks, "message")).toEqual([]);
    expect(card.text.length).toBeLessThanOrEqual(3000);
    expect(allMarkupProblems(card, OUR_IDS)).toEqual([]);
  });

  it.each(FILLS)("decided card (every verdict) for a maximal request of %s", (_name, fill) => {
    const input = maxCard(fill);
    for (const d of [...ALL_DECISIONS, decision("denied", "approvers", fill(1000), input.votes.slice())]) {
      const card = renderDecidedCard(input, d);
      expect(limitProblems(card.blocks, 50)).toEqual([]);
      expect(blockKitProblems(card.blocks, "message")).toEqual([]);
      expect(card.text.length).toBeLessThanOrEqual(3000);
      expect(allMarkupProblems(card, OUR_IDS)).toEqual([]);
    }
  });

  it("fits a request with no optional fields", () => {
    const r: ActionRequest = {
      request_id: "r",
      agent_id: "a",
      action: { type: "x.y", summary: "" },
      risk_class: "low",
      region: "eu",
      purpose: "",
    };
    const card = renderCard(simpleCard({ request: r, eligible: [], agentOwners: {} }));
    expect(blockKitProblems(card.blocks, "message")).toEqual([]);
    expect(limitProblems(card.blocks, 50)).toEqual([]);
  });
});

describe("agent text on the card is text, never markup", () => {
  const hostile = "<!channel> <https://evil.example|click> <@U0EVIL> & *bold*";
  const r = withAction(
    { summary: hostile, systems: [hostile], details: { [hostile]: hostile } },
    { purpose: hostile, context: { link: hostile }, on_behalf_of: { slack_user: "U0EVIL", email: hostile } },
  );
  const card = renderCard(simpleCard({ request: r }));
  const json = JSON.stringify(card);
  const md = allMrkdwn(card);

  it("cannot mention @channel or anyone the agent names", () => {
    expect(md).not.toContain("<!channel>");
    expect(md).toContain("&lt;!channel&gt;");
    expect(md).not.toContain("<@U0EVIL>");
    expect(md).toContain("&lt;@U0EVIL&gt;");
  });

  it("puts the agent's summary raw only in plain_text, which Slack renders without markup", () => {
    expect(blocksOf(card)[0]!.text).toEqual({ type: "plain_text", text: hostile, emoji: false });
    const inPlainText = json.replace(JSON.stringify(hostile), "");
    expect(inPlainText).not.toContain("<!channel>");
    expect(inPlainText).not.toContain("<@U0EVIL>");
  });

  it("cannot make a link", () => {
    expect(md).not.toContain("<https://");
    expect(md).toContain("&lt;https://evil.example|click&gt;");
  });

  it("escapes & so the agent's text cannot spell an entity or token", () => {
    expect(md).toContain("&amp; *bold*");
  });

  it("keeps *bold* as the agent's literal characters inside verbatim sections", () => {
    const purpose = mrkdwnTexts(card).find((t) => t.text.startsWith("*Purpose:*"))!;
    expect(purpose.text).toContain("*bold*");
    expect(purpose.verbatim).toBe(true);
  });

  it("marks every mrkdwn text object verbatim, and the fallback text is escaped too", () => {
    expect(allMarkupProblems(card, OUR_IDS)).toEqual([]);
    expect(card.text).toContain("&lt;!channel&gt;");
  });

  it("shows the on_behalf_of Slack user as text, not as a mention", () => {
    const r2 = simpleRequest({ on_behalf_of: { slack_user: "U0ANN" } });
    const c2 = renderCard(simpleCard({ request: r2 }));
    expect(JSON.stringify(c2)).not.toContain("<@U0ANN>");
    expect(allMrkdwn(c2)).toContain("*On behalf of:* Slack user U0ANN");
  });

  it("cannot start a line that passes for one of the card's own labels", () => {
    const fake = "x\n*Risk class:* low\n*Deadline:* next year";
    const r3 = withAction(
      { summary: fake, systems: [fake], details: { note: fake, [fake]: 1 } },
      { purpose: fake, context: { c: fake }, on_behalf_of: { email: fake } },
    );
    const c3 = renderCard(simpleCard({ request: r3, riskClass: "high" }));
    const lines = allMrkdwn(c3).split("\n");
    expect(lines.filter((l) => l.startsWith("*Risk class:*"))).toEqual(["*Risk class:* high"]);
    expect(lines.filter((l) => l.startsWith("*Deadline:*"))).toHaveLength(1);
    // The purpose's lines are all inside the quote bar.
    expect(lines).toContain(">*Risk class:* low");
  });

  it("keeps a long agent line inside the quote bar when it wraps across sections", () => {
    const c = renderCard(simpleCard({ request: simpleRequest({ purpose: "&".repeat(1000) }) }));
    const blocks = blocksOf(c);
    const first = blocks.findIndex((b) =>
      ((b.text as Json | undefined)?.text as string)?.startsWith("*Purpose:*"),
    );
    const purpose: string[] = [];
    for (let i = first; i < blocks.length; i++) {
      const t = (blocks[i]!.text as Json | undefined)?.text as string | undefined;
      if (t === undefined || (i > first && t.startsWith("*"))) break;
      purpose.push(t);
    }
    expect(purpose.length).toBeGreaterThan(1);
    const lines = purpose.join("\n").split("\n");
    expect(lines.filter((l) => l !== "*Purpose:*" && !l.startsWith(">"))).toEqual([]);
    expect((purpose.join("").match(/&amp;/g) ?? []).length).toBe(1000);
  });

  it("never turns a policy entry that is not a Slack user id into markup", () => {
    const c = renderCard(
      simpleCard({ agentOwners: { risk: ["<!channel>", "alice"] }, eligible: ["<!here>", "U0ALICE"] }),
    );
    expect(allMarkupProblems(c, OUR_IDS)).toEqual([]);
    expect(allMrkdwn(c)).toContain("Owners: risk &lt;!channel&gt; alice");
    expect(allMrkdwn(c)).toContain("*Approvers:* &lt;!here&gt; <@U0ALICE>");
  });

  it("shows a right-to-left override and zero-width characters as [U+XXXX] and says to look closely", () => {
    const r4 = withAction({ summary: "invoice\u202Efdp.exe" }, { purpose: "pay\u200Bnow" });
    const c4 = renderCard(simpleCard({ request: r4 }));
    const header = blocksOf(c4)[0]!;
    expect((header.text as Json).text).toBe("invoice[U+202E]fdp.exe");
    expect(JSON.stringify(c4)).not.toMatch(/[\u202E\u200B]/);
    expect(allMrkdwn(c4)).toContain(">pay[U+200B]now");
    expect(allMrkdwn(c4)).toMatch(/Look closely[\s\S]*Hidden or control characters[^\n]*summary, purpose/);
  });

  it("flags words that mix Latin with Cyrillic look-alikes, and only then", () => {
    const flagged = renderCard(simpleCard({ request: withAction({ summary: "Pay pаypal invoice" }) }));
    expect(allMrkdwn(flagged)).toMatch(/mix Latin with Cyrillic or Greek[^\n]*summary/);
    const clean = renderCard(simpleCard());
    expect(allMrkdwn(clean)).not.toContain("Look closely");
  });

  it("shows context values as text that is never a link", () => {
    const r5 = simpleRequest({
      context: { ticket: "https://jira.example/X-1", pr: "<https://gh.example/1>" },
    });
    const md5 = allMrkdwn(renderCard(simpleCard({ request: r5 })));
    expect(md5).toContain(">ticket: https://jira.example/X-1");
    expect(md5).toContain(">pr: &lt;https://gh.example/1&gt;");
  });
});

describe("renderCard: the facts", () => {
  const card = renderCard(
    simpleCard({ votes: [vote("U0ALICE", "approve", "fine by me")], riskClass: "critical" }),
  );
  const md = allMrkdwn(card);

  it("puts the summary in the header as plain text", () => {
    expect(blocksOf(card)[0]).toEqual({
      type: "header",
      text: { type: "plain_text", text: "Refund €120 to ACME", emoji: false },
    });
  });

  it("names the agent with its owners as mentions (owner ids come from our policy)", () => {
    expect(md).toContain("*Agent:* billing-agent\nOwners: risk <@U0RISK>");
  });

  it("says when the policy raised the risk class", () => {
    expect(md).toContain("*Risk class:* critical (raised from high by policy)");
    expect(allMrkdwn(renderCard(simpleCard()))).toContain("*Risk class:* high");
    expect(allMrkdwn(renderCard(simpleCard()))).not.toContain("raised from");
  });

  it("shows region, route with level and quorum, systems, purpose and on whose behalf", () => {
    expect(md).toContain("*Region:* eu");
    expect(md).toContain("*Route:* eu-high-payments · level 0 (first) · quorum 2");
    expect(md).toContain("*Systems:* stripe, ledger");
    expect(md).toContain("*Purpose:*\n>The customer was charged twice.");
    expect(md).toContain("*On behalf of:* Slack user U0ANN · ann@example.com");
  });

  it("gives the deadline as a Slack date token with an ISO fallback", () => {
    const unix = Date.parse("2025-03-01T12:00:00Z") / 1000;
    expect(md).toContain(`*Deadline:* <!date^${unix}^{date_short_pretty} at {time}|2025-03-01T12:00:00Z>`);
  });

  it("renders details as readable key: value lines with dotted paths", () => {
    expect(md).toContain(">amount: 120\n>currency: EUR\n>customer.id: c_1\n>customer.name: ACME GmbH");
  });

  it("writes a key containing a dot so that it cannot read as a nested path", () => {
    const r = withAction({ details: { "a.b": 1, a: { b: 2 } } });
    const m = allMrkdwn(renderCard(simpleCard({ request: r })));
    expect(m).toContain('>["a.b"]: 1');
    expect(m).toContain(">a.b: 2");
  });

  it("mentions the approvers with the tally, and lists votes so far", () => {
    expect(md).toContain("*Approvers:* <@U0ALICE> <@U0BOB> — 1 of 2 approvals");
    expect(md).toMatch(/✅ <@U0ALICE> approved <!date\^\d+\^[^>]+>: fine by me/);
  });

  it("cuts 30 KB of details with a note of how much was cut", () => {
    const big = withAction({ details: bigTree(repeatFill("x"), 30_000) });
    const m = allMrkdwn(renderCard(simpleCard({ request: big })));
    expect(m).toMatch(/_… [\d,]+ more characters cut here: “View full request” shows everything\._/);
  });

  it("cuts one huge value short so the other details still show", () => {
    const big = withAction({ details: { blob: "y".repeat(20_000), after: "still here" } });
    const m = allMrkdwn(renderCard(simpleCard({ request: big })));
    expect(m).toMatch(/>blob: y+… \(19,[\d]{3} more characters cut\)/);
    expect(m).toContain(">after: still here");
  });

  it("mentions a large approver group only as far as it fits, then says how many more", () => {
    const c = renderCard(simpleCard({ eligible: ELIGIBLE }));
    const approvers = mrkdwnTexts(c).find((t) => t.text.startsWith("*Approvers:*"))!.text;
    expect(approvers.length).toBeLessThanOrEqual(3000);
    expect(approvers).toMatch(/<@U000000000> .* and [\d,]+ more — 0 of 2 approvals$/);
  });
});

describe("renderCard: buttons", () => {
  const card = renderCard(simpleCard({ actionId: "act_01", level: 1 }));
  const actions = blocksOf(card).find((b) => b.type === "actions")!;
  const buttons = actions.elements as Json[];

  it("offers Approve, Approve with comment, Deny and View full request with the right styles", () => {
    expect(buttons.map((b) => [b.action_id, (b.text as Json).text, b.style])).toEqual([
      [ACTION_IDS.approve, "Approve", "primary"],
      [ACTION_IDS.approveWithComment, "Approve with comment", undefined],
      [ACTION_IDS.deny, "Deny", "danger"],
      [ACTION_IDS.viewFull, "View full request", undefined],
    ]);
  });

  it("ties every button and the block to this action and level, so a click counts only for its card", () => {
    expect(new Set(buttons.map((b) => b.value))).toEqual(new Set(["act_01|1"]));
    expect(actions.block_id).toBe("cs_actions|act_01|1");
    expect(parseActionsBlockId(actions.block_id as string)).toEqual({
      actionId: "act_01",
      level: 1,
      revision: 1,
    });
    const other = blocksOf(renderCard(simpleCard({ actionId: "act_01", level: 2 }))).find(
      (b) => b.type === "actions",
    )!;
    expect(other.block_id).not.toBe(actions.block_id);
  });

  it("round-trips button values and refuses anything it could not have produced", () => {
    expect(parseButtonValue(buttonValue("act_x", 0))).toEqual({ actionId: "act_x", level: 0, revision: 1 });
    expect(parseButtonValue(buttonValue("act_x", 12))).toEqual({ actionId: "act_x", level: 12, revision: 1 });
    // After a change the revision is carried; a value without one reads as revision 1.
    expect(buttonValue("act_x", 0, 3)).toBe("act_x|0|r3");
    expect(parseButtonValue("act_x|0|r3")).toEqual({ actionId: "act_x", level: 0, revision: 3 });
    expect(parseButtonValue("act_x|0|r0")).toBeNull();
    for (const bad of [
      "",
      "act_x",
      "act_x|",
      "|1",
      "act_x|-1",
      "act_x|1.5",
      "a|b|1",
      "act x|1",
      "act_x|1\n",
    ]) {
      expect(parseButtonValue(bad)).toBeNull();
    }
    expect(parseActionsBlockId("act_x|1")).toBeNull();
    expect(actionsBlockId("act_x", 0)).toBe("cs_actions|act_x|0");
  });

  it("refuses to build a card for an action id that would not fit or parse", () => {
    expect(() => renderCard(simpleCard({ actionId: "a|b" }))).toThrow(
      /action id .* must be 1-200 characters/,
    );
    expect(() => renderCard(simpleCard({ actionId: "x".repeat(201) }))).toThrow(/action id/);
    expect(() => buttonValue("act_x", -1)).toThrow(/escalation level -1 must be an integer/);
  });
});

describe("renderDecidedCard", () => {
  const input = simpleCard();
  const textOf = (d: Decision) => allMrkdwn(renderDecidedCard(input, d));

  it("drops the buttons and keeps the facts", () => {
    const c = renderDecidedCard(input, ALL_DECISIONS[0]!);
    expect(blocksOf(c).some((b) => b.type === "actions")).toBe(false);
    expect(allMrkdwn(c)).toContain("*Route:* eu-high-payments");
    expect(c.text).toBe("Approved: Refund €120 to ACME (billing-agent)");
  });

  it("says who approved and when", () => {
    const unix = Date.parse("2025-03-01T11:30:00Z") / 1000;
    expect(textOf(ALL_DECISIONS[0]!)).toContain(
      `✅ Approved by <@U0ALICE>, <@U0BOB> at <!date^${unix}^{date_short_pretty} at {time}|2025-03-01T11:30:00Z>`,
    );
  });

  it("says who denied and why, escaping the reason", () => {
    expect(textOf(ALL_DECISIONS[2]!)).toMatch(/⛔ Denied by <@U0CAROL> at <!date[^>]+>: &lt;!channel&gt; no/);
  });

  it("explains expiry, cancellation, no route, no eligible approvers and policy verdicts", () => {
    expect(textOf(decision("expired", "timeout"))).toContain("⌛ Expired: no decision before the deadline");
    expect(textOf(ALL_DECISIONS[7]!)).toMatch(
      /🚫 Cancelled by the agent at <!date[^>]+>: &lt;https:\/\/evil/,
    );
    expect(textOf(decision("denied", "no_route"))).toContain("no route in the policy matches this request");
    expect(textOf(decision("denied", "no_eligible_approvers"))).toContain("no eligible approvers");
    expect(textOf(decision("approved", "policy"))).toContain("✅ Approved by policy");
  });
});

describe("thread notes, ephemeral notes and DMs", () => {
  it("notes an approval with the tally and an escaped comment", () => {
    expect(renderVoteNote(vote("U0ALICE", "approve", "ok <!here>"), { approvals: 1, quorum: 2 })).toBe(
      "✅ <@U0ALICE> approved (1 of 2): ok &lt;!here&gt;",
    );
  });

  it("notes a denial with its escaped reason on one line", () => {
    expect(renderVoteNote(vote("U0BOB", "deny", "no\n*Approved*"), { approvals: 0, quorum: 2 })).toBe(
      "⛔ <@U0BOB> denied: no↵*Approved*",
    );
  });

  it("keeps a vote note within 3000 characters and free of markup for a huge comment", () => {
    const note = renderVoteNote(vote("U0BOB", "deny", "<>&".repeat(2000)), { approvals: 0, quorum: 2 });
    expect(note.length).toBeLessThanOrEqual(3000);
    expect(markupProblems(note, OUR_IDS)).toEqual([]);
  });

  it("notes an escalation with the new approvers and deadline", () => {
    const note = renderEscalationNote(0, 1, ["U0CAROL"], new Date("2025-03-01T12:00:00Z"));
    expect(note).toMatch(
      /^⏫ Escalated from level 0 \(first\) to escalation level 1\. Approvers now: <@U0CAROL>\. New deadline: <!date\^\d+\^/,
    );
    expect(renderEscalationNote(1, 2, ELIGIBLE, new Date(0)).length).toBeLessThanOrEqual(3000);
  });

  it("tells a non-approver why, escaped", () => {
    expect(renderNotApproverNote("you are <b>not</b> listed")).toBe(
      "You are not an approver of this request: you are &lt;b&gt;not&lt;/b&gt; listed",
    );
  });

  it("tells the on_behalf_of person the verdict, with the agent's summary escaped", () => {
    const dm = renderVerdictDm({
      request: withAction({ summary: "Refund <!channel>" }),
      decision: ALL_DECISIONS[2]!,
    });
    expect(dm).toMatch(
      /^Your request through billing-agent \(payments\.refund\): “Refund &lt;!channel&gt;”\n⛔ Denied by <@U0CAROL>/,
    );
    expect(markupProblems(dm, OUR_IDS)).toEqual([]);
  });

  it("keeps DMs safe and short for a maximal request", () => {
    for (const [, fill] of FILLS) {
      const dm = renderVerdictDm({
        request: maxRequest(fill),
        decision: decision("cancelled", "cancelled", fill(1000)),
      });
      expect(dm.length).toBeLessThanOrEqual(3000);
      expect(markupProblems(dm, OUR_IDS)).toEqual([]);
    }
  });
});

describe("voting modals", () => {
  const o = {
    actionId: "act_01",
    level: 1,
    cardChannel: "C0EUAPPROVALS",
    cardTs: "1700000000.000100",
    summary: "Refund <!channel>\u202E",
  };

  it("asks for a deny reason of 1-1000 characters and carries the card it came from", () => {
    const m = renderDenyModal(o);
    expect(m).toMatchObject({
      type: "modal",
      callback_id: CALLBACK_IDS.deny,
      title: { type: "plain_text", text: "Deny request" },
      submit: { type: "plain_text", text: "Deny" },
      close: { type: "plain_text", text: "Cancel" },
    });
    const input = (m.blocks as Json[]).find((b) => b.type === "input")!;
    expect(input).toMatchObject({
      block_id: "reason",
      element: {
        type: "plain_text_input",
        action_id: "reason",
        multiline: true,
        min_length: 1,
        max_length: 1000,
      },
    });
    expect(parseModalMetadata(m.private_metadata as string)).toEqual({
      actionId: "act_01",
      level: 1,
      channel: "C0EUAPPROVALS",
      ts: "1700000000.000100",
      revision: 1,
    });
    expect(viewProblems(m, "modal")).toEqual([]);
  });

  it("asks for a required comment before approving", () => {
    const m = renderApproveCommentModal(o);
    expect(m).toMatchObject({
      callback_id: CALLBACK_IDS.approveComment,
      title: { text: "Approve with comment" },
      submit: { text: "Approve" },
    });
    const input = (m.blocks as Json[]).find((b) => b.type === "input")!;
    expect(input).toMatchObject({ block_id: "comment", element: { action_id: "comment", min_length: 1 } });
    expect(input.optional).toBeUndefined();
    expect(viewProblems(m, "modal")).toEqual([]);
  });

  it("shows the agent's summary as plain text with hidden characters visible, within limits", () => {
    const m = renderDenyModal({ ...o, summary: "&<>\u0001".repeat(300) });
    expect(viewProblems(m, "modal")).toEqual([]);
    const first = (renderDenyModal(o).blocks as Json[])[0]!;
    expect(first.text).toEqual({
      type: "plain_text",
      text: "Request: Refund <!channel>[U+202E]",
      emoji: false,
    });
  });

  it("refuses private_metadata it did not write", () => {
    for (const bad of [
      "",
      "{",
      "[]",
      "null",
      '{"actionId":"a|b","level":1,"channel":"C","ts":"1"}',
      '{"actionId":"a"}',
    ]) {
      expect(parseModalMetadata(bad)).toBeNull();
    }
  });
});

describe("View full request modal", () => {
  it("shows a small request whole on one page, without a page line", () => {
    const r = withAction({ details: { note: "line 1\nline 2 <!here>" } });
    const m = renderRequestModal({ request: r, riskClass: "critical", agentOwners: { risk: ["U0RISK"] } });
    expect(viewProblems(m, "modal")).toEqual([]);
    expect(requestModalPages(r)).toBe(1);
    const md = allMrkdwn(m);
    expect(md).not.toContain("Page 1");
    expect(md).toContain("*Risk class as the policy made it:* critical (raised from high by policy)");
    expect(md).toContain("*Agent owners:* risk <@U0RISK>");
    expect(md).toContain("• action.details.note:\n>line 1\n>line 2 &lt;!here&gt;");
    expect(md).toContain("• on_behalf_of.slack_user: U0ANN");
    expect(allMarkupProblems(m, OUR_IDS)).toEqual([]);
  });

  it("shows everything, uncut and not repeated, across pages when it does not fit in one", () => {
    // Beyond what validation lets through (32 KiB): the renderer must not depend on it.
    const fill = repeatFill("&");
    const r = withAction({ details: bigTree(fill, 80_000) }, { purpose: fill(1000) });
    const pages = requestModalPages(r);
    expect(pages).toBeGreaterThan(1);
    let all = "";
    for (let page = 1; page <= pages; page++) {
      const m = renderRequestModal({ request: r, riskClass: "high", agentOwners: {}, page });
      expect(viewProblems(m, "modal")).toEqual([]);
      expect(limitProblems(m.blocks as unknown[], 100)).toEqual([]);
      expect(allMrkdwn(m)).toContain(`Page ${page} of ${pages}`);
      expect(allMarkupProblems(m, OUR_IDS)).toEqual([]);
      all += allMrkdwn(m);
    }
    expect(all).not.toMatch(/characters cut/);
    // Each leaf is one line: its path (every key above it) and its value.
    const amps = (s: string) => (s.match(/&/g) ?? []).length;
    const expected = (v: unknown, above: number): number => {
      if (v !== null && typeof v === "object") {
        const entries = Object.entries(v as Json);
        if (entries.length === 0) return above;
        return entries.reduce((n, [k, c]) => n + expected(c, above + (Array.isArray(v) ? 0 : amps(k))), 0);
      }
      return above + (typeof v === "string" ? amps(v) : 0);
    };
    expect((all.match(/&amp;/g) ?? []).length).toBe(expected(r, 0));
  });

  it("clamps a page out of range to the nearest page", () => {
    const r = simpleRequest();
    const m = renderRequestModal({ request: r, riskClass: "high", agentOwners: {}, page: 9 });
    expect(m.private_metadata).toBe('{"page":1}');
  });

  it.each(FILLS)("stays within modal limits for a maximal request of %s", (_name, fill) => {
    const r = maxRequest(fill);
    const pages = requestModalPages(r);
    for (let page = 1; page <= pages; page++) {
      const m = renderRequestModal({
        request: r,
        riskClass: fill(40),
        agentOwners: { [fill(20)]: OWNER_IDS },
        page,
      });
      expect(viewProblems(m, "modal")).toEqual([]);
      expect(allMarkupProblems(m, OUR_IDS)).toEqual([]);
    }
  });
});
