/**
 * "Approve with changes" in real Chromium against the demo (issue #20): an approver opens
 * the modal from a refund card, changes the amount, and the card shows the change and who
 * made it; a second approver approves; the agent's record binds the original, the edit and
 * the decided revision. Digests are computed here with `canonicalize` and node:crypto, not
 * with our own canonical JSON.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import canonicalize from "canonicalize";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ActionRequest, RecordClaims } from "../../src/domain/types.js";
import type { Demo } from "../../src/simulator/demo.js";
import { type DemoAgent, demoScript } from "../../src/simulator/demo-agent.js";
import { actAs, cardFor, demoContext, launchChromium, openPage, verifiedRecord } from "../support/browser.js";
import { startTestDemo, type TestDemo } from "../support/demo.js";

const SHOTS = path.join(os.tmpdir(), "countersign-screenshots");

const ALICE = "U0ALICE001";
const BOB = "U0BOB00001";
const PRIYA = "U0PRIYA001";
const MARTA = "U0REQ00001";
const PAYMENTS = "C0PAYMENTS1";

let started: TestDemo | undefined;
let demo: Demo;
let agent: DemoAgent;
let browser: Browser;
let context: BrowserContext;
let script: ActionRequest[];
/** What the demo agent printed, as a person running the demo reads it. */
const printed: string[] = [];

/** The request digest, computed independently of src/domain/canonical.ts: RFC 8785 via `canonicalize`. */
function digest(v: unknown): string {
  return createHash("sha256").update(canonicalize(v)!, "utf8").digest("base64url");
}

/** `req` with one member of its details replaced, built by hand (not with our patch code). */
function withDetail(req: ActionRequest, key: string, value: unknown): ActionRequest {
  const copy = structuredClone(req) as ActionRequest & { action: { details: Record<string, unknown> } };
  copy.action.details[key] = value;
  return copy;
}

beforeAll(async () => {
  // With the demo executor: an approval the demo agent itself asked for is handed on to it.
  started = await startTestDemo({
    name: "browser-revisions",
    withExecutor: true,
    print: (l) => printed.push(l),
  });
  ({ demo, agent } = started);
  script = demoScript({ requester: MARTA, requesterEmail: "marta@demo.invalid" }).map((s) => s.request);
  browser = await launchChromium();
  context = await demoContext(browser);
  fs.mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await started?.stop();
});

function openDemoPage(): Promise<Page> {
  return openPage(context, demo.pageUrl);
}

function field(modal: Locator, pointer: string): { input: Locator; error: Locator } {
  return {
    input: modal.getByTestId(`modal-input-cs_f|${pointer}`),
    error: modal.getByTestId(`modal-error-cs_f|${pointer}`),
  };
}

async function recordClaims(record: string): Promise<RecordClaims> {
  return (await verifiedRecord(demo.appUrl, record)).claims;
}

async function actionIdOf(req: ActionRequest): Promise<string> {
  const row = await demo.app.store.getActionByRequest(req.agent_id, req.request_id);
  if (!row) throw new Error(`no action stored for ${req.request_id}`);
  return row.id;
}

describe("Approve with changes in Chromium", () => {
  it("changes a refund's amount in the modal: the card shows old → new and who, a second approval decides, and the record covers the revision", async () => {
    const req = script[0]!;
    expect(req.action.details?.["amount"]).toBe("240.00");
    const job = await agent.submit(req);
    const page = await openDemoPage();
    await actAs(page, ALICE);
    await page.getByTestId(`channel-${PAYMENTS}`).click();
    const card = cardFor(page, req);
    await card.getByText("0 of 2 approvals").waitFor();

    await card.getByTestId("button-cs_approve_changes").click();
    const modal = page.getByTestId("modal");
    await modal.waitFor();
    const amount = field(modal, "/amount");
    // One input per editable pointer, prefilled with the current value: the amount is a string.
    expect(await amount.input.getAttribute("type")).toBe("text");
    expect(await amount.input.inputValue()).toBe("240.00");
    expect(await field(modal, "/note").input.inputValue()).toBe("Duplicate charge, refund in full");
    await amount.input.fill("200.00");
    await modal.getByTestId("modal-input-comment").fill("Only the second charge is refunded.");
    await page.screenshot({ path: path.join(SHOTS, "changes-modal.png") });
    await modal.getByTestId("modal-submit").click();
    await modal.waitFor({ state: "detached" });

    // The card shows the change, old → new, and who made it; the editor's approval counts.
    await card.getByText("Changed by approvers").waitFor();
    await card.getByText("1 of 2 approvals").waitFor();
    const cardText = (await card.textContent()) ?? "";
    // Strings are quoted, as the agent's text; the details show the revision.
    expect(cardText).toContain("/amount: “240.00” → “200.00” (@Alice Moreau, revision 2)");
    expect(cardText).toContain("amount: 200.00currency: EUR");
    expect(cardText).not.toContain("/note:");
    await card.evaluate((el) => el.scrollIntoView({ block: "start" }));
    await page.screenshot({ path: path.join(SHOTS, "changed-card.png") });

    const actionId = await actionIdOf(req);
    const pending = await demo.app.store.getAction(actionId);
    expect(pending?.status).toBe("pending");
    expect(pending?.revisions).toHaveLength(1);
    expect(pending?.votes.map((v) => [v.user, v.vote])).toEqual([[ALICE, "approve"]]);

    // The route needs two: Bob approves the revision the card now shows.
    await actAs(page, BOB);
    await card.getByTestId("button-cs_approve").click();
    await card.getByText("Approved by").waitFor();
    expect(await card.getByTestId("button-cs_approve").count()).toBe(0);
    expect(await card.getByTestId("button-cs_approve_changes").count()).toBe(0);
    // The decided card still says what was changed, by whom.
    expect(await card.textContent()).toContain("/amount: “240.00” → “200.00” (@Alice Moreau, revision 2)");

    // What the agent gets: its record verifies over the chain, and the job hands it the revision.
    const outcome = await agent.outcome(job, req, 10_000);
    const decided = withDetail(req, "amount", "200.00");
    expect(outcome.verdict).toBe("approved");
    expect(outcome.request).toEqual(decided);
    expect(outcome.decided).toEqual(decided);
    const claims = await recordClaims(outcome.record);
    expect(claims.action_sha256).toBe(digest(decided));
    expect(claims.original_sha256).toBe(digest(req));
    expect(claims.action_sha256).not.toBe(claims.original_sha256);
    expect(claims.edits).toHaveLength(1);
    expect(claims.edits![0]).toMatchObject({
      user: ALICE,
      patch: [{ op: "replace", path: "/action/details/amount", value: "200.00" }],
    });
    expect(claims.votes.map((v) => [v.user, v.vote])).toEqual([
      [ALICE, "approve"],
      [BOB, "approve"],
    ]);
    expect(claims.votes[0]?.comment).toBe("Only the second charge is refunded.");

    // The stored record is the one the agent got.
    const stored = await demo.app.store.getRecord(actionId);
    expect(stored?.jws).toBe(outcome.record);
    await page.close();
  });

  it("refuses a non-number typed into a number field in the modal, naming the field, and changes nothing; a number then goes through", async () => {
    // The demo's amounts are strings; this refund carries a JSON number, so its input is a number input.
    const base = script[4]!;
    const req: ActionRequest = {
      ...withDetail(base, "amount", 18.5),
      request_id: `${base.request_id}-n`,
      action: {
        ...withDetail(base, "amount", 18.5).action,
        summary: "Refund the duplicate capture on order #7731 (USD 18.50)",
      },
    };
    const job = await agent.submit(req);
    const page = await openDemoPage();
    await actAs(page, PRIYA);
    await page.getByTestId(`channel-${PAYMENTS}`).click();
    const card = cardFor(page, req);
    await card.getByText("0 of 2 approvals").waitFor();
    await card.getByTestId("button-cs_approve_changes").click();
    const modal = page.getByTestId("modal");
    await modal.waitFor();
    const amount = field(modal, "/amount");
    expect(await amount.input.getAttribute("type")).toBe("number");
    expect(await amount.input.inputValue()).toBe("18.5");

    // Chromium swallows letters in a number input, but keeps a half-typed exponent: not a number.
    await amount.input.fill("");
    await amount.input.pressSequentially("1e");
    expect(
      await amount.input.evaluate(
        (el) => (el as unknown as { validity: { badInput: boolean } }).validity.badInput,
      ),
    ).toBe(true);
    await modal.getByTestId("modal-submit").click();
    await amount.error.getByText("Enter a number for /amount.").waitFor();
    // Only that field is blamed; the modal stays open.
    expect(await field(modal, "/note").error.textContent()).toBe("");
    expect(await modal.isVisible()).toBe(true);

    // Nothing changed: no revision, no vote, and the card is as it was.
    const actionId = await actionIdOf(req);
    const after = await demo.app.store.getAction(actionId);
    expect(after?.revisions).toEqual([]);
    expect(after?.votes).toEqual([]);
    expect(await card.getByText("0 of 2 approvals").count()).toBe(1);
    expect(await card.textContent()).not.toContain("Changed by approvers");
    expect(await card.getByTestId("thread-toggle").count()).toBe(0);

    // Corrected, the same modal goes through: the number arrives as a JSON number.
    await amount.input.fill("15");
    expect(await amount.error.textContent()).toBe("");
    await modal.getByTestId("modal-submit").click();
    await modal.waitFor({ state: "detached" });
    await card.getByText("1 of 2 approvals").waitFor();
    expect(await card.textContent()).toMatch(/\/amount: 18\.5 → 15 \(@Priya Raman, revision 2\)/);

    await actAs(page, ALICE);
    await card.getByTestId("button-cs_approve").click();
    await card.getByText("Approved by").waitFor();
    const outcome = await agent.outcome(job, req, 10_000);
    const decided = withDetail(req, "amount", 15);
    expect(outcome.request).toEqual(decided);
    const claims = await recordClaims(outcome.record);
    expect(claims.action_sha256).toBe(digest(decided));
    expect(claims.original_sha256).toBe(digest(req));
    expect(claims.edits?.map((e) => e.patch)).toEqual([
      [{ op: "replace", path: "/action/details/amount", value: 15 }],
    ]);
    await page.close();
  });

  it("in the demo's own run, the agent verifies the changed approval and its executor carries out the revision", async () => {
    const req = script[4]!;
    expect(req.action.details?.["amount"]).toBe("18.50");
    agent.run([{ atMs: 0, request: req }]);
    const page = await openDemoPage();
    await actAs(page, PRIYA);
    await page.getByTestId(`channel-${PAYMENTS}`).click();
    const card = cardFor(page, req);
    await card.getByTestId("button-cs_approve_changes").click();
    const modal = page.getByTestId("modal");
    await field(modal, "/amount").input.fill("9.25");
    await modal.getByTestId("modal-submit").click();
    await modal.waitFor({ state: "detached" });
    await card.getByText("1 of 2 approvals").waitFor();
    await actAs(page, BOB);
    await card.getByTestId("button-cs_approve").click();
    await card.getByText("Approved by").waitFor();

    // The executor waits 3 s after the verdict (so a person can watch), then redeems.
    const about = (l: string) => l.includes(req.action.summary) || l.includes("demo-executor");
    const deadline = Date.now() + 15_000;
    while (!printed.some((l) => l.includes("demo-executor reported the outcome")) && Date.now() < deadline) {
      if (printed.some((l) => l.includes("did not act") || l.includes("did NOT verify"))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const mine = printed.filter(about).join("\n");
    expect(mine).toContain(`✔ APPROVED billing-agent “${req.action.summary}” by Priya Raman, Bob Tanaka`);
    expect(mine).toContain("approvers' change checked: original → edits → action_sha256");
    expect(mine).not.toContain("did NOT verify");
    expect(mine).not.toContain("did not act");
    expect(mine).toContain("demo-executor redeemed the approval");
    expect(mine).toContain("demo-executor reported the outcome");

    // The grant was redeemed for the revision (9.25), which Countersign checked against action_sha256.
    const actionId = await actionIdOf(req);
    const stored = await demo.app.store.getRecord(actionId);
    expect((await recordClaims(stored!.jws)).action_sha256).toBe(digest(withDetail(req, "amount", "9.25")));
    await page.close();
  });
});
