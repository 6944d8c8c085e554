import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestDigest } from "../../src/domain/canonical.js";
import type { ActionRequest, RecordClaims } from "../../src/domain/types.js";
import type { Demo } from "../../src/simulator/demo.js";
import { type DemoAgent, demoScript } from "../../src/simulator/demo-agent.js";
import { actAs, cardFor, demoContext, launchChromium, openPage, verifiedRecord } from "../support/browser.js";
import { startTestDemo, type TestDemo } from "../support/demo.js";

// Every run takes the screenshots; UPDATE_SCREENSHOTS=1 writes them into docs/ (the
// README's pictures), other runs into a temp folder so a test run leaves the tree clean.
const SHOTS =
  process.env.UPDATE_SCREENSHOTS === "1"
    ? fileURLToPath(new URL("../../docs/screenshots/", import.meta.url))
    : path.join(os.tmpdir(), "countersign-screenshots");

const ALICE = "U0ALICE001";
const BOB = "U0BOB00001";
const PRIYA = "U0PRIYA001";
const MARTA = "U0REQ00001";
const MALLORY = "U0MALLORY1";
const PAYMENTS = "C0PAYMENTS1";

let started: TestDemo | undefined;
let demo: Demo;
let agent: DemoAgent;
let browser: Browser;
let context: BrowserContext;
let script: ActionRequest[];

beforeAll(async () => {
  started = await startTestDemo({ name: "browser" });
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

function recordClaims(record: string): Promise<{ claims: RecordClaims; typ: unknown }> {
  return verifiedRecord(demo.appUrl, record);
}

describe("the demo page in Chromium", () => {
  it("approves with two approvers' clicks: the card turns approved and the agent's job completes with a record that verifies", async () => {
    const req = script[0]!;
    const job = await agent.submit(req);
    const page = await openDemoPage();
    await actAs(page, MALLORY);
    await page.getByTestId(`channel-${PAYMENTS}`).click();
    const card = cardFor(page, req);
    await card.getByTestId("button-cs_approve").waitFor();

    // Someone who may not vote gets a note only they can see; the vote does not count.
    await card.getByTestId("button-cs_approve").click();
    const note = page.getByTestId("message").filter({ hasText: "not an approver" });
    await note.getByTestId("only-visible-to-you").waitFor();
    await actAs(page, ALICE);
    await note.waitFor({ state: "detached" });
    await card.getByText("0 of 2 approvals").waitFor();
    await page.screenshot({ path: path.join(SHOTS, "pending-card.png") });

    await card.getByTestId("button-cs_approve").click();
    // A vote below the quorum is noted in the card's thread; the card changes at the verdict.
    await card.getByTestId("thread-toggle").getByText("1 reply").waitFor();
    await actAs(page, BOB);
    await card.getByTestId("button-cs_approve").click();
    await card.getByText("Approved by").waitFor();
    expect(await card.getByTestId("button-cs_approve").count()).toBe(0);

    // The quorum votes are noted in the card's thread.
    await card.getByTestId("thread-toggle").click();
    await card.getByTestId("thread").getByText("approved (2 of 2)").waitFor();
    await card.evaluate((el) => el.scrollIntoView({ block: "start" }));
    await page.screenshot({ path: path.join(SHOTS, "decided-card.png") });

    const outcome = await agent.outcome(job, req, 10_000);
    expect(outcome.verdict).toBe("approved");
    const { claims, typ } = await recordClaims(outcome.record);
    expect(typ).toBe("decision+jwt");
    expect(claims).toMatchObject({
      sub: "billing-agent",
      request_id: req.request_id,
      action_sha256: requestDigest(req),
      verdict: "approved",
      reason_code: "approvers",
      route: { name: "payments", quorum: 2, escalation_level: 0 },
    });
    expect(claims.votes.map((v) => v.user)).toEqual([ALICE, BOB]);
    await page.close();
  });

  it("denies with the reason typed into the modal, and the record carries that reason", async () => {
    const req = script[4]!;
    const reason = "Order #7730 was already refunded by the bank's chargeback on 3 March.";
    const job = await agent.submit(req);
    const page = await openDemoPage();
    await actAs(page, PRIYA);
    await page.getByTestId(`channel-${PAYMENTS}`).click();
    const card = cardFor(page, req);
    await card.getByTestId("button-cs_deny").click();

    const modal = page.getByTestId("modal");
    await modal.waitFor();
    // An empty reason is refused by the app, and the modal stays open saying why.
    await modal.getByTestId("modal-submit").click();
    await modal.getByTestId("modal-error-reason").getByText("Say why").waitFor();
    await modal.getByTestId("modal-input-reason").fill(reason);
    expect(await modal.getByTestId("modal-error-reason").textContent()).toBe("");
    await page.screenshot({ path: path.join(SHOTS, "deny-modal.png") });
    await modal.getByTestId("modal-submit").click();
    await modal.waitFor({ state: "detached" });
    await card.getByText("Denied by").waitFor();
    await card.getByText(reason).first().waitFor();

    const outcome = await agent.outcome(job, req, 10_000);
    const { claims } = await recordClaims(outcome.record);
    expect(claims).toMatchObject({
      verdict: "denied",
      reason_code: "approvers",
      reason_text: reason,
      action_sha256: requestDigest(req),
    });
    expect(claims.votes).toMatchObject([{ user: PRIYA, vote: "deny", comment: reason }]);

    // The person the agent acted for is told in a DM.
    await actAs(page, MARTA);
    await page.locator('[data-testid^="channel-D"]').click();
    await page
      .getByTestId("message")
      .filter({ hasText: req.action.summary })
      .getByText("Denied by")
      .waitFor();
    await page.close();
  });

  it("shows an agent's attempt at markup as plain text: no @channel, no link, hidden characters made visible", async () => {
    const req = script[3]!;
    expect(req.purpose).toContain("<!channel>");
    await agent.submit(req);
    const page = await openDemoPage();
    await actAs(page, "U0DPO00001");
    await page.getByTestId("channel-C0CUSTDATA1").click();
    const card = cardFor(page, req);
    await card.getByTestId("button-cs_approve").waitFor();
    const purpose = card.locator("blockquote").filter({ hasText: "Marketing asked" });
    // Emphasis is rendered, as Slack renders it; the quote bar keeps it apart from the card's own text.
    expect(await purpose.textContent()).toContain("<!channel> URGENT: approve now");
    expect(await purpose.textContent()).toContain("[U+200B]");
    expect(await purpose.textContent()).toContain("<https://evil.example|click here>");
    expect(await card.locator("a").count()).toBe(0);
    expect(await card.locator(".mention").filter({ hasText: "@channel" }).count()).toBe(0);
    await card.evaluate((el) => el.scrollIntoView({ block: "start" }));
    await page.screenshot({ path: path.join(SHOTS, "untrusted-text.png") });
    await page.close();
  });
  it("keeps the person just picked when a refresh asked for the previous one answers after the pick", async () => {
    const page = await openDemoPage();
    const picker = page.getByTestId("user-picker");
    await picker.locator(`option[value="${PRIYA}"]`).waitFor({ state: "attached" });
    // From now on the page's state requests for anyone but Priya are held until released.
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let held = 0;
    await page.route("**/page/state*", async (route) => {
      if (new URL(route.request().url()).searchParams.get("user") !== PRIYA) {
        held++;
        await released;
      }
      await route.continue();
    });
    // A new card makes the page refresh, as the person it shows now.
    const base = script[0]!;
    await agent.submit({ ...base, request_id: `${base.request_id}-picker` });
    await expect.poll(() => held, { timeout: 10_000 }).toBeGreaterThan(0);
    await actAs(page, PRIYA);
    const asPriya = page.waitForResponse((r) => r.url().includes(`/page/state?user=${PRIYA}`));
    release();
    // The held answer was the previous person's: the page asks again as Priya and stays hers.
    await asPriya;
    await expect.poll(() => picker.inputValue()).toBe(PRIYA);
    await page.close();
  });
});
