import { describe, expect, it } from "vitest";
import { canonicalJson, requestDigest, sha256B64url } from "../../src/domain/canonical.js";

// RFC 8785 section 3.2.2, input and output as printed in the RFC.
const RFC8785_INPUT = String.raw`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`;
const RFC8785_OUTPUT = String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`;
// SHA-256 of RFC8785_OUTPUT's UTF-8 bytes, computed outside Node (openssl dgst | basenc --base64url), unpadded.
const RFC8785_OUTPUT_SHA256 = "LV4BoxjQ8IeatWjEviicix9k74khpTxid9XgaZeLqss";

describe("canonicalJson (RFC 8785)", () => {
  it("produces the RFC's canonical form of its own example", () => {
    expect(canonicalJson(JSON.parse(RFC8785_INPUT))).toBe(RFC8785_OUTPUT);
  });

  it("sorts member names by UTF-16 code units, as RFC 8785 section 3.2.3 shows", () => {
    const input = JSON.parse(String.raw`{
      "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"
    }`);
    // Read the names off the text: JSON.parse would move the integer-like "1" to the front.
    const names = [...canonicalJson(input).matchAll(/"((?:[^"\\]|\\.)*)":/g)].map((m) =>
      JSON.parse(`"${m[1]}"`),
    );
    expect(names).toEqual(["\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00", "\ufb33"]);
  });

  it("does not depend on the order members were written in", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: "x" } })).toBe(
      canonicalJson({ a: { c: "x", d: [3, { y: 2, z: 1 }] }, b: 1 }),
    );
  });

  it("refuses values with no canonical form", () => {
    expect(() => canonicalJson(undefined)).toThrow(/only JSON values/);
    expect(() => canonicalJson({ a: Number.NaN })).toThrow();
    expect(() => canonicalJson({ a: "\ud800" })).toThrow();
  });
});

describe("digests", () => {
  it("sha256B64url is unpadded base64url of SHA-256 (FIPS 180-2 'abc' vector)", () => {
    // ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    expect(sha256B64url("abc")).toBe("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    expect(sha256B64url(new TextEncoder().encode("abc"))).toBe("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
  });

  it("hashes strings as UTF-8", () => {
    expect(sha256B64url("€")).toBe(sha256B64url(new Uint8Array([0xe2, 0x82, 0xac])));
  });

  it("requestDigest is SHA-256 over the canonical JSON: the RFC example gives a fixed digest", () => {
    expect(requestDigest(JSON.parse(RFC8785_INPUT))).toBe(RFC8785_OUTPUT_SHA256);
  });

  it("two spellings of the same request have one digest; a changed value another", () => {
    const a = JSON.parse('{"request_id":"r1","action":{"type":"payments.refund","summary":"Refund 10 EUR"}}');
    const b = JSON.parse(
      '{ "action": { "summary": "Refund 10 EUR", "type": "payments.refund" }, "request_id": "r1" }',
    );
    expect(requestDigest(a)).toBe(requestDigest(b));
    expect(requestDigest({ ...a, request_id: "r2" })).not.toBe(requestDigest(a));
  });
});
