/**
 * "Approve with changes" in Slack (SPEC "Changes before approval"), against the simulator
 * with signed payloads: the modal's inputs by JSON type, a change clearing an earlier
 * approval at quorum 2, the card and thread showing old → new, a stale click refused, and
 * forged or re-routing submissions refused in the modal with nothing changed.
 */
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS, CALLBACK_IDS } from "../../src/adapters/slack/blocks.js";
import type { RecordClaims } from "../../src/domain/types.js";
import type { SimInputValue } from "../../src/simulator/interactions.js";
import { blockActionsPayload, sendSigned, viewSubmissionPayload } from "../../src/simulator/interactions.js";
import {
  eventually,
  type Harness,
  request,
  SIGNING_SECRET,
  startHarness,
  testPolicy,
  USERS,
} from "../support/harness.js";

const who = (id: string) => {
  const u = USERS.find((x) => x.id === id)!;
  return { id: u.id, team_id: u.team_id, name: u.name };
};

// Refunds over 1,000 go to the CFO: a change of the amount past it would take another route.
const POLICY = testPolicy({ quorum: 2 }).replace(
  "  - name: eu-high-payments",
  `  - name: big-refunds
    when: { action: ["payments.refund"], details: { "/amount": { gt: 1000 } } }
    approvers: { users: [U0CFO] }
    channel: C0CFO
    quorum: 1
    timeout: 30m
  - name: eu-high-payments`,
);

const editableRequest = () =>
  request({
    action: {
      type: "payments.refund",
      summary: "Refund order 1234 (EUR 120.00)",
      details: { amount: 120, note: "duplicate <!channel>", notify: true, customer: "8812" },
      editable: ["/amount", "/note", "/notify"],
    },
  });

describe("Approve with changes in Slack", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ policy: POLICY });
  });
  afterAll(async () => {
    await h?.stop();
  });

  const openModal = async (user: string, card: { channel: string; ts: string }) => {
    // Only a modal this click opened: an earlier test's may still be open.
    const before = new Set([...h.sim.views()].map((v) => v.id));
    const clicked = await h.click(user, card, ACTION_IDS.approveWithChanges);
    expect(clicked.status).toBe(200);
    return eventually(
      async () =>
        [...h.sim.views()]
          .reverse()
          .find(
            (v) =>
              v.user === user &&
              !before.has(v.id) &&
              v.kind === "modal" &&
              !v.closed &&
              (v.view as { callback_id?: string }).callback_id === CALLBACK_IDS.changes,
          ),
      `the changes modal for ${user}`,
    );
  };

  /** A signed view_submission straight from the "client", as a forger would send it. */
  const forge = (
    user: string,
    view: NonNullable<Awaited<ReturnType<typeof openModal>>>,
    values: Record<string, SimInputValue>,
  ) =>
    sendSigned(
      "interaction",
      viewSubmissionPayload({
        user: who(user),
        view,
        values: Object.fromEntries(Object.entries(values).map(([b, v]) => [b, { [b]: v }])),
      }),
      { url: h.slackUrl, signingSecret: SIGNING_SECRET },
    );

  it("quorum 2: Alice approves, Bob changes the amount (Alice's approval cleared), Alice approves again: the record binds the change", async () => {
    const req = editableRequest();
    const job = await h.submit(req);
    const card = await h.card(req.request_id);
    const id = card.actionId;
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    await eventually(
      async () => ((await h.app.store.getAction(id))?.votes.length ?? 0) === 1 || undefined,
      "Alice's vote",
    );

    const modal = await openModal("U0BOB", card);
    const blocks = (modal.view as { blocks: { block_id?: string; element?: Record<string, unknown> }[] })
      .blocks;
    const el = (b: string) => blocks.find((x) => x.block_id === b)?.element;
    expect(el("cs_f|/amount")).toMatchObject({
      type: "number_input",
      initial_value: "120",
      is_decimal_allowed: false,
    });
    expect(el("cs_f|/notify")).toMatchObject({ type: "static_select", initial_option: { value: "true" } });
    expect(el("cs_f|/note")).toMatchObject({
      type: "plain_text_input",
      initial_value: "duplicate <!channel>",
    });
    expect(el("cs_f|/customer")).toBeUndefined();

    // As the page submits: every input's text, typed by the simulator from the view.
    const r = await h.sim.submitView({
      user: who("U0BOB"),
      viewId: modal.id,
      values: {
        "cs_f|/amount": { "cs_f|/amount": { type: "plain_text_input", value: "100" } },
        "cs_f|/notify": { "cs_f|/notify": { type: "plain_text_input", value: "false" } },
        "cs_f|/note": { "cs_f|/note": { type: "plain_text_input", value: "duplicate <!channel>" } },
        comment: { comment: { type: "plain_text_input", value: "partial refund" } },
      },
      ...h.target,
    });
    expect(r.status).toBe(200);
    expect(r.body).not.toContain("errors");
    const after = await h.app.store.getAction(id);
    expect(after?.revision).toBe(2);
    expect(after?.votes.map((v) => [v.user, v.revision])).toEqual([["U0BOB", 2]]);

    // The card shows the change, old → new, escaped; its buttons now carry revision 2.
    const update = await h.sim.waitForCall("chat.update", (c) =>
      JSON.stringify(c.args).includes("Changed by approvers"),
    );
    const shown = JSON.stringify(update.args.blocks);
    expect(shown).toContain("amount: 120 → 100");
    expect(shown).toContain("notify: true → false");
    expect(shown).toContain(`${id}|0|r2`);
    expect(shown).not.toContain("<!channel>");
    await h.sim.waitForCall("chat.postMessage", (c) =>
      String(c.args.text ?? "").includes("changed the request"),
    );

    // Alice's stale button (revision 1) is refused with a note; nothing changes.
    const message = h.sim.messages(card.channel).find((m) => m.ts === card.ts)!;
    await sendSigned(
      "interaction",
      blockActionsPayload({
        user: who("U0ALICE"),
        message,
        actionId: ACTION_IDS.approve,
        value: `${id}|0`,
        triggerId: h.sim.newTriggerId("U0ALICE"),
      }),
      { url: h.slackUrl, signingSecret: SIGNING_SECRET },
    );
    await h.sim.waitForCall("chat.postEphemeral", (c) =>
      String(c.args.text).includes("the request was changed since you saw it"),
    );
    expect((await h.app.store.getAction(id))?.votes).toHaveLength(1);

    // Alice approves the card as it is now: approved, with the edit in the record.
    await h.click("U0ALICE", card, ACTION_IDS.approve);
    const done = (await job.waitUntilFinished(h.events, 10_000)) as { record: string };
    const c = decodeJwt(done.record) as unknown as RecordClaims;
    expect(c.verdict).toBe("approved");
    expect(c.original_sha256).toBe(after!.requestSha256);
    expect(c.action_sha256).toBe(after!.revisions[0]!.sha256);
    expect(c.edits?.[0]?.user).toBe("U0BOB");
    expect(c.votes.map((v) => [v.user, v.revision])).toEqual([
      ["U0BOB", 2],
      ["U0ALICE", 2],
    ]);
  });

  it("refuses in the modal a forged pointer, a wrong type and a change that would take another route; nothing changes", async () => {
    const req = editableRequest();
    await h.submit(req);
    const card = await h.card(req.request_id);
    const modal = await openModal("U0BOB", card);
    const text = (v: string): SimInputValue => ({ type: "plain_text_input", value: v });
    const num = (v: string): SimInputValue => ({ type: "number_input", value: v });

    const forged = await forge("U0BOB", modal, { "cs_f|/customer": text("9999") });
    expect(JSON.parse(forged.body)).toMatchObject({ response_action: "errors" });
    expect(JSON.parse(forged.body).errors["cs_f|/customer"]).toMatch(/not one of the members/);

    const wrongType = await forge("U0BOB", modal, { "cs_f|/amount": text("100") });
    expect(JSON.parse(wrongType.body).errors["cs_f|/amount"]).toMatch(/must be a number/);

    const notANumber = await forge("U0BOB", modal, { "cs_f|/amount": num("lots") });
    expect(JSON.parse(notANumber.body).errors["cs_f|/amount"]).toBe("Enter a number for /amount.");

    const rerouted = await forge("U0BOB", modal, { "cs_f|/amount": num("5000") });
    expect(JSON.parse(rerouted.body).errors["cs_f|/amount"]).toMatch(
      /route big-refunds, not route eu-high-payments/,
    );

    const a = await h.app.store.getAction(card.actionId);
    expect(a?.revision).toBe(1);
    expect(a?.votes).toEqual([]);
    const refused = (await h.app.store.listEvents(card.actionId)).filter((e) => e.type === "change_refused");
    expect(refused.map((e) => e.data?.code)).toEqual(["not_editable", "wrong_type", "reroute"]);
  });

  it("a stale modal (the request changed since it opened) is refused in the modal", async () => {
    const req = editableRequest();
    await h.submit(req);
    const card = await h.card(req.request_id);
    const bobs = await openModal("U0BOB", card);
    const alices = await openModal("U0ALICE", card);
    const first = await forge("U0ALICE", alices, { "cs_f|/amount": { type: "number_input", value: "90" } });
    expect(first.body).not.toContain("errors");
    const second = await forge("U0BOB", bobs, { "cs_f|/amount": { type: "number_input", value: "80" } });
    expect(JSON.parse(second.body).errors["cs_f|/amount"]).toMatch(/changed since you saw it/);
    const a = await h.app.store.getAction(card.actionId);
    expect(a?.revision).toBe(2);
    expect(a?.revisions[0]?.request.action.details).toMatchObject({ amount: 90 });
  });
});
