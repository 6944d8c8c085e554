/**
 * Debian's Chromium, driven by playwright-core, for the browser tests: one launch with the
 * flags this machine needs (no sandbox as root, no background networking: the closed
 * network refuses Chromium's own connections). Nothing here downloads a browser.
 */
import fs from "node:fs";
import { compactVerify, createLocalJWKSet } from "jose";
import { type Browser, type BrowserContext, chromium, type Locator, type Page } from "playwright-core";
import type { ActionRequest, RecordClaims } from "../../src/domain/types.js";

export const CHROMIUM = "/usr/bin/chromium";

/** Launches headless Chromium, or fails at once saying how to install it. */
export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium; .ci/run does this). ` +
        "These tests never download a browser.",
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * A context as the demo-page tests see the simulator: a desktop viewport, English, Berlin
 * time, and steps that fail in seconds, naming themselves, rather than let a test time out
 * (generous: CI runs other suites beside these on two cores).
 */
export async function demoContext(browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    locale: "en-US",
    timezoneId: "Europe/Berlin",
  });
  context.setDefaultTimeout(20_000);
  return context;
}

/** Opens `url` in a new tab whose script errors fail the test. */
export async function openPage(context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage();
  page.on("pageerror", (err) => {
    throw new Error(`the page threw: ${err.message}`);
  });
  await page.goto(url);
  return page;
}

/** Picks the person the simulator page acts as. */
export async function actAs(page: Page, user: string): Promise<void> {
  await page.getByTestId("user-picker").selectOption(user);
}

/** An action's card on the simulator page, by its summary: the top-level message, not a note about it in its thread. */
export function cardFor(page: Page, r: ActionRequest): Locator {
  return page
    .locator('[data-testid="message"]:not([data-reply])')
    .filter({ hasText: r.action.summary })
    .first();
}

/** A decision record's claims and header `typ`, its signature checked against the app's published JWKS. */
export async function verifiedRecord(
  appUrl: string,
  record: string,
): Promise<{ claims: RecordClaims; typ: unknown }> {
  const res = await fetch(`${appUrl}/.well-known/jwks.json`);
  const jwks = (await res.json()) as Parameters<typeof createLocalJWKSet>[0];
  const { payload, protectedHeader } = await compactVerify(record, createLocalJWKSet(jwks));
  return { claims: JSON.parse(new TextDecoder().decode(payload)) as RecordClaims, typ: protectedHeader.typ };
}
