import net from "node:net";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_IDS } from "../../src/adapters/slack/blocks.js";
import { PASSKEY_ACTION_IDS } from "../../src/adapters/slack/home.js";
import { checkStepUp, type RegisteredPasskey } from "../../src/audit/step-up.js";
import type { PasskeyRegisteredReceiptClaims, RecordClaims } from "../../src/domain/types.js";
import { verifyJws } from "../../src/records/signing.js";
import { launchChromium } from "../support/browser.js";
import { type Harness, request, startHarness } from "../support/harness.js";

const CHANNEL = "C0EUOPS";
const STEP_UP_ROUTE = `  - name: eu-ops-step-up
    when: { region: [eu], action: ["ops.*"] }
    approvers: { users: [U0ALICE, U0BOB] }
    channel: ${CHANNEL}
    quorum: 1
    timeout: 30m
    step_up: passkey
`;

let h: Harness;
let browser: Browser;
let origin: string;

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

beforeAll(async () => {
  const port = await freePort();
  origin = `http://localhost:${port}`;
  h = await startHarness({ extra: STEP_UP_ROUTE, env: { PORT: String(port), PUBLIC_URL: origin } });
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await h?.stop();
});

/** A browser profile with its own platform authenticator (a person's device). */
async function device(): Promise<{
  context: BrowserContext;
  page: Page;
  setVerified(v: boolean): Promise<void>;
  addAuthenticator(): Promise<void>;
}> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const options = {
    protocol: "ctap2" as const,
    transport: "internal" as const,
    hasResidentKey: true,
    hasUserVerification: true,
    isUserVerified: true,
    automaticPresenceSimulation: true,
  };
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", { options });
  return {
    context,
    page,
    addAuthenticator: async () => {
      await cdp.send("WebAuthn.addVirtualAuthenticator", { options: { ...options, transport: "usb" } });
    },
    setVerified: async (isUserVerified) => {
      await cdp.send("WebAuthn.setUserVerified", { authenticatorId, isUserVerified });
    },
  };
}

async function register(page: Page, user: string, label: string): Promise<void> {
  const link = await h.app.passkeys!.registrationLink(user);
  await page.goto(link.url);
  await page.fill("#cs-label", label);
  await page.click("#cs-go");
  await page.waitForSelector("#cs-status.ok, #cs-status.err");
  expect(await page.textContent("#cs-status")).toContain("is registered");
}

/** A step-up request and its card. */
async function stepUpCard(summary: string) {
  const req = request({ action: { type: "ops.deploy", summary }, region: "eu" });
  await h.submit(req);
  return h.card(req.request_id);
}

function notesFor(user: string): string[] {
  return h.sim
    .messages(CHANNEL)
    .filter((m) => m.ephemeral_for === user)
    .map((m) => m.text);
}

/** Clicks Approve as `user` and returns the ephemeral note it brought (a new one). */
async function approveClick(user: string, card: { channel: string; ts: string }): Promise<string> {
  const before = notesFor(user).length;
  await h.click(user, card, ACTION_IDS.approve);
  for (let i = 0; i < 100; i++) {
    const notes = notesFor(user);
    if (notes.length > before) return notes[notes.length - 1]!;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Approve gave ${user} no ephemeral note`);
}

function linkIn(text: string): string {
  const m = /<(http[^|>]+\/step-up\?t=[^|>]+)\|/.exec(text);
  if (!m) throw new Error(`no step-up link in ${text}`);
  return m[1]!;
}

async function votesOf(actionId: string) {
  return (await h.app.store.getAction(actionId))!;
}

describe("passkeys and step-up in Chromium", () => {
  let alice: Awaited<ReturnType<typeof device>>;

  it("an approver without a passkey is told how to register one, and Approve casts nothing", async () => {
    const card = await stepUpCard("Deploy v1 to prod");
    const note = await approveClick("U0ALICE", card);
    expect(note).toContain("Register a passkey");
    expect(note).toContain("Nothing was cast");
    const a = await votesOf(card.actionId);
    expect(a.status).toBe("pending");
    expect(a.votes).toEqual([]);
  });

  it("registers a passkey, then approves with it: the record's vote carries step_up, verified offline", async () => {
    alice = await device();
    await register(alice.page, "U0ALICE", "alice laptop");
    const [entry] = await h.sql<{ jws: string; seq: number }>(
      "SELECT jws, seq FROM records WHERE kind = 'passkey_registered' ORDER BY seq",
    );
    const keys = (await h.app.store.signingKeys()).map((k) => k.publicJwk as never);
    const reg = verifyJws(entry!.jws, keys, "receipt+jwt")
      .payload as unknown as PasskeyRegisteredReceiptClaims;
    expect(reg).toMatchObject({ kind: "passkey_registered", user: "U0ALICE", team: "T0TEST" });
    expect(reg.public_key.kty).toBe("EC");
    // Announced by DM, through the outbox (committed with the registration).
    await h.sim.waitForCall(
      "chat.postMessage",
      (c) => String(c.args.text).includes("alice laptop") && String(c.args.text).includes("was registered"),
    );
    const dm = h.sim.messages(h.sim.dmChannel("U0ALICE")).map((m) => m.text);
    expect(dm.some((t) => t.includes("alice laptop") && t.includes("was registered"))).toBe(true);

    const card = await stepUpCard("Deploy <b>v2</b> & <script>alert(1)</script> to prod");
    const link = linkIn(await approveClick("U0ALICE", card));
    expect((await votesOf(card.actionId)).votes).toEqual([]); // the click cast nothing

    await alice.page.goto(link);
    // Agent text is shown as text, never as markup.
    expect(await alice.page.textContent("h1")).toBe("Deploy <b>v2</b> & <script>alert(1)</script> to prod");
    expect(await alice.page.locator("main b, main script").count()).toBe(0);
    await alice.page.click("#cs-go");
    await alice.page.waitForSelector("#cs-status.ok, #cs-status.err");
    expect(await alice.page.textContent("#cs-status")).toContain("Approved: your vote is recorded");

    const a = await votesOf(card.actionId);
    expect(a.verdict).toBe("approved");
    const record = (await h.app.store.getRecord(card.actionId))!;
    const claims = verifyJws(record.jws, keys, "decision+jwt").payload as unknown as RecordClaims;
    const vote = claims.votes[0]!;
    expect(vote.user).toBe("U0ALICE");
    expect(vote.step_up).toMatchObject({ method: "webauthn", credential_id: reg.credential_id });
    expect(vote.step_up!.public_key).toEqual(reg.public_key);
    const registered = new Map<string, RegisteredPasskey>([
      [reg.credential_id, { user: reg.user, team: reg.team, publicKey: reg.public_key, seq: entry!.seq }],
    ]);
    const subject = { ...claims, escalation_level: claims.route.escalation_level };
    const checked = checkStepUp({ ...vote, step_up: vote.step_up }, subject, registered, origin);
    expect(checked).toMatchObject({ ok: true, origin, level: 0 });
    // The same proof with one signature byte changed fails offline.
    const sig = Buffer.from(vote.step_up!.signature, "base64url");
    sig[sig.length - 1]! ^= 1;
    const bad = { ...vote, step_up: { ...vote.step_up!, signature: sig.toString("base64url") } };
    expect(checkStepUp(bad, subject, registered, origin)).toMatchObject({ ok: false, check: "signature" });

    // The link again: used.
    const again = await alice.page.goto(link);
    expect(again?.status()).toBe(410);
    expect(await alice.page.textContent("main")).toContain("already used");
  });

  it("refuses a tampered link, and a link whose assertion comes from another person's passkey", async () => {
    const card = await stepUpCard("Deploy v3 to prod");
    // Bob registers his own passkey on his own device.
    const bob = await device();
    await register(bob.page, "U0BOB", "bob phone");
    const link = linkIn(await approveClick("U0BOB", card));

    const tampered = link.replace(/t=(.)/, (_m, c: string) => `t=${c === "A" ? "B" : "A"}`);
    const r = await alice.page.goto(tampered);
    expect(r?.status()).toBe(404);
    expect(await alice.page.textContent("main")).toContain("not valid");

    // Bob's link opened on Alice's device: her discoverable passkey answers, the server refuses it.
    await alice.page.goto(link);
    const answer = await alice.page.evaluate(async () => {
      // The browser's globals, untyped here (the tests compile without the DOM library).
      // biome-ignore lint/suspicious/noExplicitAny: browser globals
      const { document, navigator, location } = globalThis as any;
      const data = JSON.parse(document.getElementById("cs-data").textContent);
      const b64 = (s: string) =>
        Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
      const u = (b: ArrayBuffer) =>
        btoa(String.fromCharCode(...new Uint8Array(b)))
          .replace(/\+/g, "-")
          .replace(/\//g, "_")
          .replace(/=+$/, "");
      const c = await navigator.credentials.get({
        publicKey: {
          challenge: b64(data.options.challenge),
          rpId: data.options.rpId,
          userVerification: "required",
        },
      });
      const resp = c.response;
      const assertion = {
        id: c.id,
        rawId: u(c.rawId),
        type: c.type,
        clientExtensionResults: {},
        response: {
          clientDataJSON: u(resp.clientDataJSON),
          authenticatorData: u(resp.authenticatorData),
          signature: u(resp.signature),
        },
      };
      const res = await fetch(location.pathname, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ t: data.t, csrf: data.csrf, assertion }),
      });
      return { status: res.status, body: await res.json() };
    });
    expect(answer.status).toBe(403);
    expect(answer.body).toMatchObject({ ok: false, code: "not_your_passkey" });
    const events = await h.app.store.listEvents(card.actionId);
    expect(events.find((e) => e.type === "step_up_refused")?.data).toMatchObject({
      code: "not_your_passkey",
    });
    expect((await votesOf(card.actionId)).votes).toEqual([]);
    await bob.context.close();
  });

  it("refuses an assertion without user verification, and a POST from another origin", async () => {
    const card = await stepUpCard("Deploy v4 to prod");
    const link = linkIn(await approveClick("U0ALICE", card));
    const t = new URL(link).searchParams.get("t")!;

    // Another origin: refused before anything is spent.
    const cross = await fetch(`${origin}/step-up`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: "https://evil.example" },
      body: JSON.stringify({ t, csrf: "x", assertion: {} }),
    });
    expect(cross.status).toBe(400);

    await alice.setVerified(false);
    try {
      await alice.page.goto(link);
      await alice.page.click("#cs-go");
      await alice.page.waitForSelector("#cs-status.ok, #cs-status.err");
      expect(await alice.page.getAttribute("#cs-status", "class")).toContain("err");
    } finally {
      await alice.setVerified(true);
    }
    const a = await votesOf(card.actionId);
    expect(a.status).toBe("pending");
    expect(a.votes).toEqual([]);
  });

  it("a second passkey needs the first to confirm it", async () => {
    // Without the confirmation: refused, and the link is spent.
    const first = await h.app.passkeys!.registrationLink("U0ALICE");
    await alice.page.goto(first.url);
    expect(await alice.page.textContent("main")).toContain("you first confirm with one of them");
    const refused = await alice.page.evaluate(async () => {
      // biome-ignore lint/suspicious/noExplicitAny: browser globals
      const { document, location } = globalThis as any;
      const data = JSON.parse(document.getElementById("cs-data").textContent);
      const res = await fetch(location.pathname, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ t: data.t, csrf: data.csrf, credential: {} }),
      });
      return { status: res.status, body: await res.json() };
    });
    expect(refused).toMatchObject({ status: 400, body: { ok: false, code: "confirmation_required" } });

    // With a security key beside the laptop's authenticator: the laptop's passkey confirms, the key registers.
    await alice.addAuthenticator();
    await register(alice.page, "U0ALICE", "alice security key");
    const mine = await h.app.passkeys!.list("U0ALICE");
    expect(mine.map((k) => k.label)).toEqual(["alice laptop", "alice security key"]);
    // App Home lists them, each with Remove, under "Register a passkey".
    await h.sim.openHome({ user: { id: "U0ALICE", team_id: "T0TEST", name: "alice" }, ...h.target });
    const pub = await h.sim.waitForCall(
      "views.publish",
      (c) => c.args.user_id === "U0ALICE" && JSON.stringify(c.args.view).includes("alice security key"),
    );
    const home = JSON.stringify(pub.args.view);
    expect(home).toContain("Your passkeys (2)");
    expect(home).toContain("alice laptop");
    expect(home).toContain(PASSKEY_ACTION_IDS.register);
    expect(home.split(PASSKEY_ACTION_IDS.remove).length - 1).toBe(2);
    // Remove (as the button does) takes one away, and only the owner's.
    expect(await h.app.passkeys!.remove("U0BOB", mine[0]!.credentialId)).toBe(false);
    expect(await h.app.passkeys!.remove("U0ALICE", mine[0]!.credentialId)).toBe(true);
    expect((await h.app.passkeys!.list("U0ALICE")).map((k) => k.label)).toEqual(["alice security key"]);

    // Alice's two and Bob's one, each an entry of the log.
    const entries = await h.sql("SELECT seq FROM records WHERE kind = 'passkey_registered'");
    expect(entries).toHaveLength(3);
    await alice.context.close();
  });
});
