import { compactVerify, createLocalJWKSet } from "jose";
import type { Browser, BrowserContext, CDPSession, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ActionRequest, RecordClaims } from "../../src/domain/types.js";
import type { Demo } from "../../src/simulator/demo.js";
import { type DemoAgent, demoScript } from "../../src/simulator/demo-agent.js";
import { launchChromium } from "../support/browser.js";
import { startTestDemo, type TestDemo } from "../support/demo.js";

const SAM = "U0SRE00001";
const MARTA = "U0REQ00001";
const INFRA = "C0INFRAOPS1";

let started: TestDemo | undefined;
let demo: Demo;
let agent: DemoAgent;
let browser: Browser;
let context: BrowserContext;

beforeAll(async () => {
  started = await startTestDemo({ name: "stepup" });
  ({ demo, agent } = started);
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US" });
  context.setDefaultTimeout(20_000);
}, 60_000);

afterAll(async () => {
  await context?.close();
  await browser?.close();
  await started?.stop();
});

/** A platform authenticator in this tab (Chrome keeps virtual authenticators per tab). */
async function platformAuthenticator(page: Page): Promise<{ cdp: CDPSession; id: string }> {
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return { cdp, id: authenticatorId };
}

/** Clicks a link and returns the tab it opened (the page's links open in a new tab). */
async function followToNewTab(link: ReturnType<Page["locator"]>): Promise<Page> {
  expect(await link.getAttribute("target")).toBe("_blank");
  expect(await link.getAttribute("rel")).toContain("noopener");
  const [tab] = await Promise.all([context.waitForEvent("page"), link.click()]);
  await tab.waitForLoadState("domcontentloaded");
  return tab;
}

describe("step-up in the demo page, in Chromium", () => {
  it("Sam registers a passkey from App Home, then approves the agent's delete with it", async () => {
    const page = await context.newPage();
    page.on("pageerror", (err) => {
      throw new Error(`the page threw: ${err.message}`);
    });
    await page.goto(demo.pageUrl);
    await page.getByTestId("user-picker").selectOption(SAM);

    // App Home: opening it sends app_home_opened; the app publishes Sam's home.
    const opened = demo.sim.calls.filter((c) => c.method === "views.publish").length;
    await page.getByTestId("app-home").click();
    const home = page.getByTestId("app-home-view");
    await home.getByText("Your passkeys (0)").waitFor();
    const published = demo.sim.calls.filter((c) => c.method === "views.publish");
    expect(published.length).toBe(opened + 1);
    expect(published.at(-1)!.args.user_id).toBe(SAM);

    // "Register a passkey" on Home: a block_actions from the home view; the link comes by DM.
    await home.getByTestId("button-cs_passkey_register").click();
    const dm = demo.sim.dmChannel(SAM);
    await page.getByTestId(`channel-${dm}`).click();
    const regLink = page
      .getByTestId("message")
      .filter({ hasText: "Register a passkey for Countersign" })
      .getByRole("link", { name: "this one-time link" });
    await regLink.waitFor();
    expect(await regLink.getAttribute("href")).toMatch(/^http:\/\/localhost:\d+\/passkeys\/register\?/);
    const regTab = await followToNewTab(regLink);
    const device = await platformAuthenticator(regTab);
    await regTab.fill("#cs-label", "sam laptop");
    await regTab.click("#cs-go");
    await regTab.waitForSelector("#cs-status.ok, #cs-status.err");
    expect(await regTab.textContent("#cs-status")).toContain("is registered");
    const { credentials } = await device.cdp.send("WebAuthn.getCredentials", {
      authenticatorId: device.id,
    });
    expect(credentials).toHaveLength(1);

    // Opening Home again publishes it afresh: the passkey is listed, with Remove.
    await page.getByTestId(`channel-${INFRA}`).click();
    await page.getByTestId("app-home").click();
    await home.getByText("Your passkeys (1)").waitFor();
    await home.getByText("sam laptop").waitFor();
    expect(await home.getByTestId("button-cs_passkey_remove").count()).toBe(1);

    // The demo agent's delete takes the step-up route (submitted now rather than at its time).
    const script = demoScript({ requester: MARTA, requesterEmail: "marta@demo.invalid" });
    const item = script.find((s) => s.request.action.type === "infra.delete");
    expect(item, "the demo script sends an infra.delete").toBeDefined();
    const req: ActionRequest = item!.request;
    const job = await agent.submit(req);

    await page.getByTestId(`channel-${INFRA}`).click();
    const card = page.getByTestId("message").filter({ hasText: req.action.summary }).first();
    await card.getByTestId("button-cs_approve").click();
    const note = page.getByTestId("message").filter({ hasText: "needs your passkey to approve" });
    await note.getByTestId("only-visible-to-you").waitFor();
    const row = await demo.app.store.getActionByRequest(req.agent_id, req.request_id);
    expect((await demo.app.store.getAction(row!.id))?.votes).toEqual([]); // the click cast nothing

    const stepLink = note.getByRole("link", { name: "this one-time link" });
    expect(await stepLink.getAttribute("href")).toMatch(/^http:\/\/localhost:\d+\/step-up\?t=/);
    const stepTab = await followToNewTab(stepLink);
    // The same device: this tab's authenticator holds the passkey registered above.
    const here = await platformAuthenticator(stepTab);
    await here.cdp.send("WebAuthn.addCredential", { authenticatorId: here.id, credential: credentials[0]! });
    expect(await stepTab.textContent("h1")).toBe(req.action.summary);
    await stepTab.click("#cs-go");
    await stepTab.waitForSelector("#cs-status.ok, #cs-status.err");
    expect(await stepTab.textContent("#cs-status")).toContain("Approved: your vote is recorded");

    // Back on the simulator page the card turns approved, and the agent's record verifies.
    await card.getByText("Approved by").waitFor();
    expect(await card.getByTestId("button-cs_approve").count()).toBe(0);
    const outcome = await agent.outcome(job, req, 10_000);
    expect(outcome.verdict).toBe("approved");
    const jwks = (await (await fetch(`${demo.appUrl}/.well-known/jwks.json`)).json()) as Parameters<
      typeof createLocalJWKSet
    >[0];
    const { payload } = await compactVerify(outcome.record, createLocalJWKSet(jwks));
    const claims = JSON.parse(new TextDecoder().decode(payload)) as RecordClaims;
    expect(claims.route.name).toBe("production-deletes");
    expect(claims.votes.map((v) => v.user)).toEqual([SAM]);
    expect(claims.votes[0]!.step_up).toMatchObject({ method: "webauthn" });
    await Promise.all([regTab.close(), stepTab.close(), page.close()]);
  }, 90_000);
});
