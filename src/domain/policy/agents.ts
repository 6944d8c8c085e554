/**
 * The agents section: who may ask, how each proves who it is (one fixed key), and where
 * its answers may be sent.
 */
import { isMap, isSeq } from "yaml";
import { parseMcpTools } from "../policy-mcp.js";
import type { AgentAuth, AgentPolicy, CallbackOrigin } from "../types.js";
import { actionGlobMatches, isActionGlob } from "./actions.js";
import {
  checkKnown,
  ENV_NAME,
  ENV_WHAT,
  type Known,
  NAME,
  NAME_WHAT,
  readSlackIds,
  SLACK_USER,
  setOwn,
} from "./names.js";
import type { Entry, Path, Reader } from "./yaml.js";

const AGENT_KEYS = [
  "owners",
  "auth",
  "webhook_secret_env",
  "callback_origins",
  "allowed_actions",
  "regions",
  "vendor_managed",
  "max_pending",
  "mcp_tools",
];

/**
 * Normalises a bare origin (`scheme://host[:port]`, http or https, no path, query or
 * userinfo) to the form URL.origin gives: lower-case host, default port dropped.
 * Returns the reason instead when `text` is not one.
 */
export function normalizeOrigin(text: string): { origin: string } | { reason: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { reason: `"${text}" is not a URL; expected an origin such as https://agent.example.com` };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { reason: `"${text}" must use http or https` };
  }
  if (url.username !== "" || url.password !== "") {
    return { reason: `"${text}" must not contain a user name or password` };
  }
  // Checked on the text, not the parsed URL: the URL parser forgives an empty "?" or "#".
  if (!/^[a-z]+:\/\/[^/?#@]+\/?$/i.test(text)) {
    return {
      reason: `"${text}" must be a bare origin (scheme://host[:port]) without a path, query or fragment`,
    };
  }
  return { origin: url.origin };
}

export function readAgent(
  r: Reader,
  e: Entry,
  known: Known,
  defaultMaxPending: number,
  resolveKeyFile: (written: string) => string,
): AgentPolicy | undefined {
  const fields = r.object(e.value, e.path, "the agent's settings", AGENT_KEYS, ["auth", "allowed_actions"]);
  if (fields === undefined) return undefined;
  const before = r.problems.length;

  const owners: Record<string, string[]> = {};
  const ownersEntry = fields.get("owners");
  if (ownersEntry) {
    for (const role of r.map(
      ownersEntry.value,
      ownersEntry.path,
      "owner roles (role: Slack user id or list)",
    ) ?? []) {
      if (!NAME.test(role.key)) {
        r.report(role.keyNode, role.path, `"${role.key}" is not a valid role name: expected ${NAME_WHAT}`);
        continue;
      }
      const ids = readSlackIds(r, role.value, role.path, SLACK_USER, "a Slack user id such as U0123ABCD");
      if (ids === undefined) continue;
      if (ids.length === 0) r.report(r.deref(role.value), role.path, `owner role "${role.key}" names nobody`);
      setOwn(owners, role.key, ids);
    }
  }

  const authEntry = fields.get("auth");
  const auth = authEntry ? readAuth(r, authEntry, resolveKeyFile, "the agent's proof key") : undefined;

  let webhookSecretEnv: string | undefined;
  const webhookEntry = fields.get("webhook_secret_env");
  if (webhookEntry) webhookSecretEnv = r.name(webhookEntry.value, webhookEntry.path, ENV_NAME, ENV_WHAT);

  const callbackOrigins: CallbackOrigin[] = [];
  const originsEntry = fields.get("callback_origins");
  if (originsEntry) {
    const node = r.deref(originsEntry.value);
    const items = isSeq(node)
      ? node.items.map((value, i) => ({ value, node: value, path: [...originsEntry.path, i] }))
      : [{ value: node, node, path: originsEntry.path }];
    for (const item of items) {
      const origin = readCallbackOrigin(r, item.value, item.path);
      if (origin === undefined) continue;
      if (callbackOrigins.some((o) => o.origin === origin.origin)) {
        r.report(r.deref(item.value), item.path, `origin ${origin.origin} is listed twice`);
        continue;
      }
      callbackOrigins.push(origin);
    }
    if (callbackOrigins.length > 0 && webhookSecretEnv === undefined && !fields.has("webhook_secret_env")) {
      r.report(
        originsEntry.keyNode,
        originsEntry.path,
        "callbacks are signed with the agent's webhook secret: set webhook_secret_env as well",
      );
    }
  }

  const allowedActions: string[] = [];
  const allowedEntry = fields.get("allowed_actions");
  if (allowedEntry) {
    const globs = r.strings(allowedEntry.value, allowedEntry.path, "an action glob such as payments.*");
    if (globs !== undefined && globs.length === 0) {
      r.report(
        r.deref(allowedEntry.value),
        allowedEntry.path,
        "list at least one action glob the agent may ask for",
      );
    }
    for (const g of globs ?? []) {
      if (isActionGlob(g.value)) allowedActions.push(g.value);
      else
        r.report(
          g.node,
          g.path,
          `"${g.value}" is not an action glob; expected dotted lower-case like payments.*`,
        );
    }
  }

  const regions: string[] = [];
  const regionsEntry = fields.get("regions");
  if (regionsEntry) {
    for (const item of r.strings(regionsEntry.value, regionsEntry.path, "a region") ?? []) {
      if (checkKnown(r, item, known.regions, "region")) regions.push(item.value);
    }
  }

  // After allowed_actions and regions: a rule whose action or region the agent could never
  // ask for is reported here rather than refused on every call.
  let mcpTools: AgentPolicy["mcp_tools"];
  const mcpEntry = fields.get("mcp_tools");
  if (mcpEntry) {
    const parsed = parseMcpTools(mcpEntry.value, {
      doc: r.doc,
      lines: r.lines,
      path: mcpEntry.path,
      riskClasses: [...(known.risk ?? [])],
      regions: [...(known.regions ?? [])],
      agentRegions: regions,
      actionAllowed: (type) => allowedActions.some((g) => actionGlobMatches(g, type)),
    });
    r.problems.push(...parsed.problems);
    mcpTools = parsed.rules;
  }

  const vendorEntry = fields.get("vendor_managed");
  const vendorManaged = vendorEntry ? (r.bool(vendorEntry.value, vendorEntry.path) ?? false) : false;
  const maxPendingEntry = fields.get("max_pending");
  const maxPending = maxPendingEntry
    ? (r.positiveInt(maxPendingEntry.value, maxPendingEntry.path) ?? defaultMaxPending)
    : defaultMaxPending;

  if (r.problems.length > before || auth === undefined) return undefined;
  return {
    id: e.key,
    owners,
    auth,
    ...(webhookSecretEnv !== undefined ? { webhook_secret_env: webhookSecretEnv } : {}),
    callback_origins: callbackOrigins,
    allowed_actions: allowedActions,
    regions,
    vendor_managed: vendorManaged,
    max_pending: maxPending,
    ...(mcpTools !== undefined ? { mcp_tools: mcpTools } : {}),
  };
}

/** An agent's or an executor's proof key: exactly one of an HMAC secret's variable or an Ed25519 public key file. */
export function readAuth(
  r: Reader,
  authEntry: Entry,
  resolveKeyFile: (written: string) => string,
  what: string,
): AgentAuth | undefined {
  let auth: AgentAuth | undefined;
  const a = r.object(authEntry.value, authEntry.path, what, ["hmac_secret_env", "public_key_file"]);
  if (a !== undefined) {
    const hmac = a.get("hmac_secret_env");
    const pub = a.get("public_key_file");
    if (hmac && pub) {
      r.report(
        r.deref(authEntry.value),
        authEntry.path,
        "give exactly one of hmac_secret_env or public_key_file, not both: the proof's algorithm must be fixed",
      );
    } else if (hmac) {
      const name = r.name(hmac.value, hmac.path, ENV_NAME, ENV_WHAT);
      if (name !== undefined) auth = { kind: "hmac", secret_env: name };
    } else if (pub) {
      const path = r.string(pub.value, pub.path, "the path of a PEM public key file");
      if (path !== undefined) auth = { kind: "eddsa", public_key_file: resolveKeyFile(path) };
    } else {
      r.report(
        r.deref(authEntry.value),
        authEntry.path,
        "needs hmac_secret_env (an environment variable holding the shared secret) or public_key_file (an Ed25519 PEM)",
        authEntry.keyNode,
      );
    }
  }
  return auth;
}

function readCallbackOrigin(r: Reader, raw: unknown, path: Path): CallbackOrigin | undefined {
  const node = r.deref(raw);
  let text: string | undefined;
  let textNode: unknown = node;
  let textPath = path;
  let allowPrivate = false;
  if (isMap(node)) {
    const fields = r.object(node, path, "a callback origin", ["origin", "allow_private"], ["origin"]);
    const origin = fields?.get("origin");
    if (origin) {
      text = r.string(origin.value, origin.path, "an origin such as https://agent.example.com");
      textNode = r.deref(origin.value);
      textPath = origin.path;
    }
    const allow = fields?.get("allow_private");
    if (allow) allowPrivate = r.bool(allow.value, allow.path) ?? false;
  } else {
    text = r.string(node, path, "an origin such as https://agent.example.com, or { origin, allow_private }");
  }
  if (text === undefined) return undefined;
  const result = normalizeOrigin(text);
  if ("reason" in result) {
    r.report(textNode, textPath, result.reason);
    return undefined;
  }
  return { origin: result.origin, allow_private: allowPrivate };
}
