/**
 * The passkey pages (SPEC "Step-up"): `GET/POST /passkeys/register?t=TOKEN` and
 * `GET/POST /step-up?t=TOKEN`, on the same server as everything else.
 *
 * What keeps them safe:
 * - every agent-provided string is HTML-escaped (`html`), and page data travels as JSON
 *   in a non-executed <script type="application/json"> with `<` escaped;
 * - a strict CSP: no inline script or style, nothing from elsewhere, no framing;
 * - a POST must come from PUBLIC_URL's origin (Origin header), be JSON, and carry a CSRF
 *   token that is an HMAC of the link's token (so a page's token works for its link only);
 * - links are single-use and short-lived (the use-case spends them atomically).
 * The page says "approved" only after Approvals has committed the vote.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { type PasskeyCode, PasskeyError, type Passkeys } from "../../../app/passkeys.js";
import { showInvisible } from "../../../domain/text.js";
import { PAGE_CSS, PAGE_JS } from "./assets.js";

export interface PasskeyPagesDeps {
  readonly passkeys: Passkeys;
  /** PUBLIC_URL: POSTs must come from its origin. */
  readonly publicUrl: string;
  /** Keys the CSRF tokens; the same on every instance (derived from a shared secret). */
  readonly csrfKey: string;
}

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const STATUS: Record<PasskeyCode, number> = {
  link_unknown: 404,
  link_used: 410,
  link_expired: 410,
  wrong_page: 400,
  no_passkey: 409,
  not_your_passkey: 403,
  confirmation_required: 400,
  ceremony_failed: 400,
  passkey_exists: 409,
  refused: 409,
  not_found: 404,
};

/** Text for HTML, agent text included: markup characters escaped, invisible ones shown. */
export function html(s: string): string {
  return showInvisible(s).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string,
  );
}

/** JSON safe inside a <script type="application/json">: no `<` can close it. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

export function csrfToken(key: string, token: string): string {
  return createHmac("sha256", key).update(`passkey-page:${token}`).digest("base64url");
}

function page(title: string, body: string, data?: object): string {
  const script = data
    ? `<script type="application/json" id="cs-data">${scriptJson(data)}</script><script src="/passkeys/assets/page.js" defer></script>`
    : "";
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><title>${html(title)} · Countersign</title><link rel="stylesheet" href="/passkeys/assets/page.css"></head>
<body><div class="topbar"><div class="brand"><span class="logo">✓</span>Countersign<span class="sub">${html(title)}</span></div></div>
<main>${body}</main>${script}</body></html>`;
}

function send(reply: FastifyReply, status: number, body: string) {
  return reply
    .status(status)
    .header("content-security-policy", CSP)
    .header("x-content-type-options", "nosniff")
    .header("cache-control", "no-store")
    .header("referrer-policy", "no-referrer")
    .type("text/html; charset=utf-8")
    .send(body);
}

function errorPage(reply: FastifyReply, e: unknown) {
  if (!(e instanceof PasskeyError)) throw e;
  return send(
    reply,
    STATUS[e.code] ?? 400,
    page("Passkey", `<h1>This link cannot be used</h1><p>${html(e.message)}</p>`),
  );
}

const until = (ms: number) => new Date(ms).toISOString().replace("T", " ").slice(0, 16);

export function registerPasskeyPages(app: FastifyInstance, deps: PasskeyPagesDeps): void {
  const origin = new URL(deps.publicUrl).origin;

  app.get("/passkeys/assets/page.css", async (_req, reply) =>
    reply.type("text/css; charset=utf-8").header("cache-control", "public, max-age=300").send(PAGE_CSS),
  );
  app.get("/passkeys/assets/page.js", async (_req, reply) =>
    reply.type("text/javascript; charset=utf-8").header("cache-control", "public, max-age=300").send(PAGE_JS),
  );

  app.get("/passkeys/register", async (req, reply) => {
    const t = tokenOf(req);
    try {
      const p = await deps.passkeys.registerPage(t);
      const keys = p.existing.length
        ? `<p>You have ${p.existing.length} passkey(s):</p><ul class="keys">${p.existing
            .map(
              (k) => `<li>${html(k.label)} <span class="muted">added ${until(k.createdAt)} UTC</span></li>`,
            )
            .join("")}</ul><p>To add another, you first confirm with one of them.</p>`
        : "<p>Your passkey confirms approvals that need more than a Slack click.</p>";
      return send(
        reply,
        200,
        page(
          "Register a passkey",
          `<h1>Register a passkey for ${html(p.user)}</h1>${keys}
<label for="cs-label">A name for it (e.g. "work laptop")</label><input id="cs-label" type="text" maxlength="64">
<p><button id="cs-go" type="button">Register a passkey</button></p>
<p class="muted">This link works once, until ${until(p.expiresAt)} UTC.</p><div id="cs-status" class="status" role="status"></div>`,
          { page: "register", t, csrf: csrfToken(deps.csrfKey, t), creation: p.creation, confirm: p.confirm },
        ),
      );
    } catch (e) {
      return errorPage(reply, e);
    }
  });

  app.get("/step-up", async (req, reply) => {
    const t = tokenOf(req);
    try {
      const p = await deps.passkeys.stepUpPage(t);
      const r = p.request;
      const details =
        r.action.details === undefined
          ? ""
          : `<dt>Details</dt><dd><pre>${html(JSON.stringify(r.action.details, null, 2))}</pre></dd>`;
      return send(
        reply,
        200,
        page(
          "Approve with your passkey",
          `<h1>${html(r.action.summary)}</h1>
<dl><dt>Action</dt><dd>${html(r.action.type)}</dd><dt>Agent</dt><dd>${html(p.action.agentId)}</dd>
<dt>Risk</dt><dd>${html(p.action.riskClass)}</dd><dt>Region</dt><dd>${html(p.action.region)}</dd>
<dt>Purpose</dt><dd>${html(r.purpose)}</dd>${details}
<dt>Request id</dt><dd>${html(p.action.id)}</dd><dt>Level</dt><dd>${p.level + 1}</dd>
${p.comment ? `<dt>Your comment</dt><dd>${html(p.comment)}</dd>` : ""}</dl>
<p>This request needs your own passkey: your approval is signed by it and kept in the decision record.</p>
<p><button id="cs-go" type="button">Approve with my passkey</button></p>
<p class="muted">Approving as ${html(p.user)}. This link works once, until ${until(p.expiresAt)} UTC. To deny, use Deny on the card in Slack.</p>
<div id="cs-status" class="status" role="status"></div>`,
          { page: "step-up", t, csrf: csrfToken(deps.csrfKey, t), options: p.options },
        ),
      );
    } catch (e) {
      return errorPage(reply, e);
    }
  });

  /** Origin, content type and CSRF token, before anything is spent. */
  function checkPost(req: FastifyRequest): { t: string; body: Record<string, unknown> } {
    if (req.headers.origin !== origin)
      throw new PasskeyError("wrong_page", `this page only accepts posts from ${origin}`);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const t = typeof body["t"] === "string" ? body["t"] : "";
    const csrf = typeof body["csrf"] === "string" ? body["csrf"] : "";
    const want = Buffer.from(csrfToken(deps.csrfKey, t));
    const got = Buffer.from(csrf);
    if (!t || got.length !== want.length || !timingSafeEqual(got, want))
      throw Object.assign(
        new PasskeyError("refused", "the page's form token is missing or wrong: reload the page"),
        {
          csrf: true,
        },
      );
    return { t, body };
  }

  async function answer(reply: FastifyReply, work: () => Promise<string>) {
    reply.header("cache-control", "no-store");
    try {
      return reply.status(200).send({ ok: true, message: await work() });
    } catch (e) {
      if (!(e instanceof PasskeyError)) throw e;
      const status = (e as { csrf?: boolean }).csrf ? 403 : (STATUS[e.code] ?? 400);
      return reply.status(status).send({ ok: false, code: e.code, message: e.message });
    }
  }

  app.post("/passkeys/register", async (req, reply) =>
    answer(reply, async () => {
      const { t, body } = checkPost(req);
      const c = await deps.passkeys.completeRegistration(t, {
        credential: body["credential"],
        ...(body["confirmation"] ? { confirmation: body["confirmation"] } : {}),
        ...(typeof body["label"] === "string" ? { label: body["label"] } : {}),
      });
      return `Your passkey “${c.label}” is registered. You can close this page.`;
    }),
  );

  app.post("/step-up", async (req, reply) =>
    answer(reply, async () => {
      const { t, body } = checkPost(req);
      const r = await deps.passkeys.completeStepUp(t, body["assertion"]);
      return r.decided
        ? "Approved: your vote is recorded, and it completed the approval."
        : "Approved: your vote is recorded. The request waits for the other approvals.";
    }),
  );
}

function tokenOf(req: FastifyRequest): string {
  const t = (req.query as Record<string, unknown>)["t"];
  return typeof t === "string" ? t.slice(0, 200) : "";
}
