import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { decodeWebhookSecret, webhookHeaders, webhookSignature } from "../../src/adapters/webhooks/sign.js";

// The Standard Webhooks specification's reference vector.
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TS = 1614265330;
const BODY = '{"test": 2432232314}';

describe("webhookSignature", () => {
  it("matches the Standard Webhooks test vector", () => {
    expect(webhookSignature(SECRET, ID, TS, BODY)).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  });

  it("agrees with the standardwebhooks package's own signer", () => {
    const body = JSON.stringify({ type: "decision.approved", data: { summary: "Rückerstattung €40 ✓" } });
    const ts = 1_760_000_000;
    expect(webhookSignature(SECRET, "dec_1", ts, body)).toBe(
      new Webhook(SECRET).sign("dec_1", new Date(ts * 1000), body),
    );
  });

  it("changes when the id, the timestamp or a byte of the body changes", () => {
    const base = webhookSignature(SECRET, ID, TS, BODY);
    expect(webhookSignature(SECRET, "msg_other", TS, BODY)).not.toBe(base);
    expect(webhookSignature(SECRET, ID, TS + 1, BODY)).not.toBe(base);
    expect(webhookSignature(SECRET, ID, TS, '{"test": 2432232315}')).not.toBe(base);
  });

  it("refuses a secret without the whsec_ prefix, with bad base64, or empty", () => {
    expect(() => webhookSignature("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ID, TS, BODY)).toThrow(/whsec_/);
    expect(() => decodeWebhookSecret("whsec_not base64!")).toThrow(/not base64/);
    expect(() => decodeWebhookSecret("whsec_")).toThrow(/not base64/);
  });

  it("refuses a timestamp that is not whole unix seconds", () => {
    expect(() => webhookSignature(SECRET, ID, 1614265330.5, BODY)).toThrow(/whole unix seconds/);
  });
});

describe("webhookHeaders", () => {
  it("produces headers that the standardwebhooks package verifies", () => {
    const body = JSON.stringify({ type: "decision.denied", timestamp: new Date().toISOString(), data: {} });
    const ts = Math.floor(Date.now() / 1000);
    const headers = webhookHeaders(SECRET, "dec_42", ts, body);
    expect(headers["content-type"]).toBe("application/json");
    expect(headers["webhook-id"]).toBe("dec_42");
    expect(headers["webhook-timestamp"]).toBe(String(ts));
    expect(new Webhook(SECRET).verify(body, headers)).toEqual(JSON.parse(body));
  });

  it("does not verify under another agent's secret", () => {
    const body = "{}";
    const headers = webhookHeaders(SECRET, "dec_42", Math.floor(Date.now() / 1000), body);
    const other = "whsec_QWxsIHRoZSB3b3JsZCdzIGEgc3RhZ2Uh";
    expect(() => new Webhook(other).verify(body, headers)).toThrow();
  });
});
