/**
 * Standard Webhooks v1 signatures: the receiver verifies with any
 * Standard Webhooks library, so the signed content and encodings must match it exactly:
 * HMAC-SHA256 over `${id}.${timestamp}.${body}`, keyed with the base64-decoded part of
 * the `whsec_` secret, sent as `v1,<base64>`.
 */
import { createHmac } from "node:crypto";

const PREFIX = "whsec_";
// Node's base64 decoder skips characters outside the alphabet: a mistyped secret would
// quietly become a different key, and every signature would fail at the receiver.
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The HMAC key of a `whsec_<base64>` secret. Throws naming what is wrong, so a bad secret
 * can be caught when the configuration is loaded rather than at the first delivery.
 */
export function decodeWebhookSecret(secret: string): Buffer {
  if (typeof secret !== "string" || !secret.startsWith(PREFIX)) {
    throw new Error(`a webhook secret must start with "${PREFIX}" followed by base64 (Standard Webhooks)`);
  }
  const b64 = secret.slice(PREFIX.length);
  if (!BASE64.test(b64)) {
    throw new Error(`the webhook secret after "${PREFIX}" is not base64 (A-Z, a-z, 0-9, +, /, = padding)`);
  }
  const key = Buffer.from(b64, "base64");
  if (key.length === 0) throw new Error("the webhook secret is empty after decoding");
  return key;
}

/** `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. */
export function webhookSignature(secret: string, id: string, timestampS: number, body: string): string {
  if (!Number.isSafeInteger(timestampS) || timestampS < 0) {
    throw new Error(`webhook timestamp must be whole unix seconds, got ${timestampS}`);
  }
  const mac = createHmac("sha256", decodeWebhookSecret(secret))
    .update(`${id}.${timestampS}.${body}`, "utf8")
    .digest("base64");
  return `v1,${mac}`;
}

/** The headers of one delivery attempt; `body` must be sent byte for byte as signed. */
export function webhookHeaders(
  secret: string,
  id: string,
  timestampS: number,
  body: string,
): Record<string, string> {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestampS),
    "webhook-signature": webhookSignature(secret, id, timestampS, body),
    "content-type": "application/json",
  };
}
