/**
 * Debian's Chromium, driven by playwright-core, for the browser tests: one launch with the
 * flags this machine needs (no sandbox as root, no background networking: the closed
 * network refuses Chromium's own connections). Nothing here downloads a browser.
 */
import fs from "node:fs";
import { type Browser, chromium } from "playwright-core";

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
