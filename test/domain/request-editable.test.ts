/**
 * `action.editable` (SPEC "Changes before approval"): at most 20 JSON Pointers into
 * `action.details`, each naming an existing string, number or boolean, no duplicates.
 * Errors name the entry (`action.editable.2`) like every other field error.
 */
import { describe, expect, it } from "vitest";
import { requestDigest } from "../../src/domain/canonical.js";
import { validateRequest } from "../../src/domain/request.js";
import { type FieldError, RejectionError } from "../../src/domain/types.js";

const DETAILS = {
  amount: 120,
  currency: "EUR",
  express: false,
  note: null,
  lines: [{ sku: "A1", qty: 2 }],
  customer: { id: "c-8812", "a/b": "slash", "m~n": "tilde" },
};

/** `details` "absent" leaves action.details out. */
function request(editable: unknown, details: unknown = DETAILS): Record<string, unknown> {
  return {
    request_id: "r1",
    agent_id: "billing-agent",
    action: {
      type: "payments.refund",
      summary: "Refund 120 EUR",
      ...(details !== "absent" && { details }),
      ...(editable !== undefined && { editable }),
    },
    risk_class: "high",
    region: "eu",
    purpose: "Duplicate charge",
  };
}

function errorsOf(input: unknown): readonly FieldError[] {
  try {
    validateRequest(input);
  } catch (err) {
    if (err instanceof RejectionError) {
      expect(err.code).toBe("invalid_request");
      return err.errors;
    }
    throw err;
  }
  throw new Error("expected the request to be refused");
}

describe("action.editable", () => {
  it("accepts pointers to strings, numbers and booleans, nested, in arrays and escaped", () => {
    const editable = ["/amount", "/currency", "/express", "/lines/0/qty", "/customer/a~1b", "/customer/m~0n"];
    const r = validateRequest(request(editable));
    expect(r.action.editable).toEqual(editable);
  });

  it("keeps editable in the request, after systems, so it is part of the digest", () => {
    const a = validateRequest(request(["/amount"]));
    const b = validateRequest(request(["/currency"]));
    const none = validateRequest(request(undefined));
    expect(Object.keys(a.action)).toEqual(["type", "summary", "details", "editable"]);
    expect(requestDigest(a)).not.toBe(requestDigest(b));
    expect(requestDigest(a)).not.toBe(requestDigest(none));
    expect(none.action).not.toHaveProperty("editable");
  });

  it("accepts an empty list", () => {
    expect(validateRequest(request([])).action.editable).toEqual([]);
  });

  it("refuses 21 pointers, and still checks each one", () => {
    const details = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`f${i}`, i]));
    const editable = Array.from({ length: 21 }, (_, i) => `/f${i}`);
    expect(errorsOf(request(editable, details))).toEqual([
      { path: "action.editable", message: "has 21 entries; at most 20 are allowed" },
    ]);
    editable[3] = "/nope";
    expect(errorsOf(request(editable, details))).toEqual([
      { path: "action.editable", message: "has 21 entries; at most 20 are allowed" },
      { path: "action.editable.3", message: "names /nope, which is not a member of action.details" },
    ]);
  });

  it("refuses a pointer to an object, an array or null", () => {
    expect(errorsOf(request(["/amount", "/customer", "/lines", "/note"]))).toEqual([
      {
        path: "action.editable.1",
        message: "names /customer, which is an object; only a string, number or boolean can be editable",
      },
      {
        path: "action.editable.2",
        message: "names /lines, which is an array; only a string, number or boolean can be editable",
      },
      {
        path: "action.editable.3",
        message: "names /note, which is null; only a string, number or boolean can be editable",
      },
    ]);
  });

  it("refuses a pointer to a missing member, past an array's end, or with no details at all", () => {
    expect(errorsOf(request(["/amount", "/refund_amount", "/lines/1/qty", "/lines/-"]))).toEqual([
      { path: "action.editable.1", message: "names /refund_amount, which is not a member of action.details" },
      { path: "action.editable.2", message: "names /lines/1/qty, which is not a member of action.details" },
      { path: "action.editable.3", message: "names /lines/-, which is not a member of action.details" },
    ]);
    expect(errorsOf(request(["/amount"], "absent"))).toEqual([
      {
        path: "action.editable.0",
        message: "names /amount in action.details, but the request has no details",
      },
    ]);
  });

  it("refuses a duplicate, naming where it first appeared", () => {
    expect(errorsOf(request(["/amount", "/currency", "/amount"]))).toEqual([
      { path: "action.editable.2", message: 'repeats "/amount" (already at action.editable.0)' },
    ]);
  });

  it("refuses what is not a JSON Pointer", () => {
    expect(errorsOf(request(["amount", "/a~2", "", 5]))).toEqual([
      { path: "action.editable.0", message: '"amount" is not a JSON Pointer: it must start with "/"' },
      {
        path: "action.editable.1",
        message: '"/a~2" has "~" not followed by 0 or 1 at character 3; write ~0 for "~" and ~1 for "/"',
      },
      { path: "action.editable.2", message: '"" is not a JSON Pointer: it must start with "/"' },
      { path: "action.editable.3", message: "must be a JSON Pointer string such as /amount, not a number" },
    ]);
    expect(errorsOf(request("/amount"))).toEqual([
      { path: "action.editable", message: "must be an array of JSON Pointers such as /amount, not a string" },
    ]);
  });

  it("reports editable problems in field order with the others", () => {
    const input = request(["/nope"]);
    (input.action as Record<string, unknown>).summary = "";
    input.purpose = "";
    expect(errorsOf(input).map((e) => e.path)).toEqual(["action.summary", "action.editable.0", "purpose"]);
  });

  it("suggests editable for a misspelt member", () => {
    const input = request(undefined);
    (input.action as Record<string, unknown>).editables = ["/amount"];
    expect(errorsOf(input)).toEqual([
      { path: "action.editables", message: 'unknown field; did you mean "editable"?' },
    ]);
  });
});
