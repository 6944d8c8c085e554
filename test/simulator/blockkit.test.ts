import { describe, expect, it } from "vitest";
import { BLOCK_KIT_LIMITS, blockKitProblems, viewProblems } from "../../src/simulator/blockkit.js";

const plain = (text: string) => ({ type: "plain_text", text });
const mrkdwn = (text: string) => ({ type: "mrkdwn", text });
const button = (actionId: string, extra: Record<string, unknown> = {}) => ({
  type: "button",
  action_id: actionId,
  text: plain("Approve"),
  value: "v",
  ...extra,
});
const pointers = (problems: string[]) => problems.map((p) => /\[json-pointer:([^\]]*)\]$/.exec(p)?.[1]);

describe("blockKitProblems", () => {
  it("finds nothing wrong with a typical approval card", () => {
    const card = [
      { type: "header", text: plain("Deploy payments-api to prod") },
      { type: "section", text: { ...mrkdwn("*Agent:* deployer"), verbatim: true } },
      { type: "section", fields: [mrkdwn("*Risk:* high"), mrkdwn("*Region:* eu")] },
      {
        type: "section",
        text: mrkdwn("Details"),
        accessory: button("view_full", { text: plain("View full request") }),
      },
      { type: "context", elements: [mrkdwn("Deadline <!date^1733000000^{date_short_pretty}|soon>")] },
      { type: "divider" },
      {
        type: "actions",
        block_id: "decide",
        elements: [button("approve", { style: "primary" }), button("deny", { style: "danger" })],
      },
    ];
    expect(blockKitProblems(card, "message")).toEqual([]);
  });

  it("allows 50 blocks in a message but 100 in a modal or home tab", () => {
    const blocks = (n: number) => Array.from({ length: n }, () => ({ type: "divider" }));
    expect(blockKitProblems(blocks(50), "message")).toEqual([]);
    expect(pointers(blockKitProblems(blocks(51), "message"))).toEqual(["/blocks"]);
    expect(blockKitProblems(blocks(100), "modal")).toEqual([]);
    expect(blockKitProblems(blocks(100), "home")).toEqual([]);
    expect(pointers(blockKitProblems(blocks(101), "home"))).toEqual(["/blocks"]);
  });

  it("says what is wrong and where, with the length it saw", () => {
    const [problem] = blockKitProblems([{ type: "section", text: mrkdwn("x".repeat(3005)) }], "message");
    expect(problem).toBe(
      "must be less than 3001 characters (section text is 3005) [json-pointer:/blocks/0/text/text]",
    );
  });

  it("refuses a header that is mrkdwn, since markup could pass for the card's own text", () => {
    expect(pointers(blockKitProblems([{ type: "header", text: mrkdwn("*x*") }], "message"))).toEqual([
      "/blocks/0/text/type",
    ]);
  });

  it("refuses empty text, which Slack rejects and which would hide a field", () => {
    expect(pointers(blockKitProblems([{ type: "section", text: mrkdwn("") }], "message"))).toEqual([
      "/blocks/0/text/text",
    ]);
  });

  it("refuses a section with neither text nor fields", () => {
    expect(blockKitProblems([{ type: "section" }], "message")).toHaveLength(1);
  });

  it("checks button accessories in sections like buttons in actions", () => {
    const long = {
      type: "section",
      text: mrkdwn("x"),
      accessory: button("a", { text: plain("b".repeat(76)) }),
    };
    expect(pointers(blockKitProblems([long], "message"))).toEqual(["/blocks/0/accessory/text/text"]);
  });

  it("refuses an unknown button style", () => {
    expect(
      pointers(blockKitProblems([{ type: "actions", elements: [button("a", { style: "red" })] }], "message")),
    ).toEqual(["/blocks/0/elements/0/style"]);
  });

  it("finds a duplicate action_id across blocks, so a click cannot be ambiguous", () => {
    const problems = blockKitProblems(
      [
        { type: "section", text: mrkdwn("x"), accessory: button("approve") },
        { type: "actions", elements: [button("approve")] },
      ],
      "message",
    );
    expect(pointers(problems)).toEqual(["/blocks/1/elements/0/action_id"]);
    expect(problems[0]).toContain('"approve"');
  });

  it("checks confirmation dialogs", () => {
    const confirm = {
      title: plain("t".repeat(101)),
      text: mrkdwn("sure?"),
      confirm: plain("Yes"),
      deny: plain("No"),
    };
    expect(
      pointers(blockKitProblems([{ type: "actions", elements: [button("a", { confirm })] }], "message")),
    ).toEqual(["/blocks/0/elements/0/confirm/title/text"]);
  });

  it("checks select options and overflow menus", () => {
    const option = (t: string, v = "v") => ({ text: plain(t), value: v });
    const select = {
      type: "static_select",
      action_id: "s",
      placeholder: plain("Pick"),
      options: [option("o".repeat(76)), option("ok", "v".repeat(151))],
    };
    expect(pointers(blockKitProblems([{ type: "actions", elements: [select] }], "message"))).toEqual([
      "/blocks/0/elements/0/options/0/text/text",
      "/blocks/0/elements/0/options/1/value",
    ]);
    const overflow = {
      type: "overflow",
      action_id: "o",
      options: Array.from({ length: 6 }, (_, i) => option(`${i}`)),
    };
    expect(pointers(blockKitProblems([{ type: "actions", elements: [overflow] }], "message"))).toEqual([
      "/blocks/0/elements/0/options",
    ]);
  });

  it("refuses an unknown block type and a non-array", () => {
    expect(pointers(blockKitProblems([{ type: "sektion" }], "message"))).toEqual(["/blocks/0/type"]);
    expect(blockKitProblems({ type: "section" }, "message")).toHaveLength(1);
  });

  it("keeps the limits Slack documents", () => {
    expect(BLOCK_KIT_LIMITS).toMatchObject({
      sectionText: 3000,
      sectionField: 2000,
      sectionFields: 10,
      headerText: 150,
      buttonText: 75,
      buttonValue: 2000,
      id: 255,
      actionsElements: 25,
      contextElements: 10,
      viewTitle: 24,
      privateMetadata: 3000,
      messageText: 40000,
    });
  });
});

describe("viewProblems", () => {
  const modal = (extra: Record<string, unknown> = {}) => ({
    type: "modal",
    title: plain("Deny request"),
    submit: plain("Deny"),
    close: plain("Cancel"),
    callback_id: "deny",
    private_metadata: "act_1",
    blocks: [
      {
        type: "input",
        block_id: "reason",
        label: plain("Reason"),
        element: { type: "plain_text_input", action_id: "text", multiline: true },
      },
    ],
    ...extra,
  });

  it("accepts a deny-reason modal at its limits", () => {
    expect(viewProblems(modal(), "modal")).toEqual([]);
    const full = modal({
      title: plain("t".repeat(24)),
      submit: plain("s".repeat(24)),
      close: plain("c".repeat(24)),
      private_metadata: "m".repeat(3000),
      callback_id: "c".repeat(255),
    });
    expect(viewProblems(full, "modal")).toEqual([]);
  });

  it("names each view field over its limit", () => {
    const bad = modal({
      title: plain("t".repeat(25)),
      submit: plain("s".repeat(25)),
      close: plain("c".repeat(25)),
      private_metadata: "m".repeat(3001),
      callback_id: "c".repeat(256),
    });
    expect(pointers(viewProblems(bad, "modal"))).toEqual([
      "/view/title/text",
      "/view/submit/text",
      "/view/close/text",
      "/view/private_metadata",
      "/view/callback_id",
    ]);
  });

  it("requires a submit button when the modal asks for input", () => {
    const { submit: _omit, ...noSubmit } = modal();
    expect(pointers(viewProblems(noSubmit, "modal"))).toEqual(["/view/submit"]);
  });

  it("checks input labels and the blocks inside the view", () => {
    const label = modal({
      blocks: [{ type: "input", label: plain("l".repeat(2001)), element: { type: "plain_text_input" } }],
    });
    expect(pointers(viewProblems(label, "modal"))).toEqual(["/view/blocks/0/label/text"]);
  });

  it("refuses a home view sent as a modal and a view without a title", () => {
    expect(pointers(viewProblems({ type: "home", blocks: [] }, "modal"))).toContain("/view/type");
    const { title: _omit, ...untitled } = modal();
    expect(pointers(viewProblems(untitled, "modal"))).toEqual(["/view/title"]);
    expect(viewProblems({ type: "home", blocks: [] }, "home")).toEqual([]);
  });
});
