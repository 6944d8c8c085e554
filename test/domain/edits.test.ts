/**
 * The edits module: diffs that are minimal RFC 6902 patches, replays that never touch their
 * inputs and name the edit and operation that fails. Digests are computed here with
 * `canonicalize` and node:crypto directly, not with our requestDigest.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { describe, expect, it } from "vitest";
import { applyEdits, checkEditChain, decidedRequest, diffRequest } from "../../src/domain/edits.js";
import type { JsonPatchOperation } from "../../src/domain/types.js";

/** SHA-256 of the RFC 8785 form, base64url: independent of src/domain/canonical.ts. */
function jcsDigest(v: unknown): string {
  return createHash("sha256").update(canonicalize(v)!, "utf8").digest("base64url");
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null) {
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
    Object.freeze(v);
  }
  return v;
}

const refund = () => ({
  request_id: "r-1",
  agent_id: "billing-agent",
  action: {
    type: "payments.refund",
    summary: "Refund order 1234",
    details: { order: "1234", amount: 120, currency: "EUR", note: "late delivery", notify: true },
    editable: ["/amount", "/note", "/notify"],
  },
  risk_class: "high",
  region: "eu",
  purpose: "customer complaint",
});

describe("diffRequest", () => {
  it("answers a changed scalar with one replace at its escaped pointer", () => {
    const prev = refund();
    const next = refund();
    next.action.details.amount = 80;
    expect(diffRequest(prev, next)).toEqual([{ op: "replace", path: "/action/details/amount", value: 80 }]);
  });

  it("gives one replace per changed scalar and nothing for what did not change", () => {
    const prev = refund();
    const next = refund();
    next.action.details.amount = 80;
    next.action.details.note = "partial";
    next.action.details.notify = false;
    const ops = diffRequest(prev, next);
    expect(ops).toHaveLength(3);
    expect(ops.every((o) => o.op === "replace")).toBe(true);
    expect(new Map(ops.map((o) => [o.path, o.value]))).toEqual(
      new Map<string, unknown>([
        ["/action/details/amount", 80],
        ["/action/details/note", "partial"],
        ["/action/details/notify", false],
      ]),
    );
  });

  it("is empty for equal documents, even when their members are in another order", () => {
    const a = refund();
    const { purpose, region, ...rest } = refund();
    expect(diffRequest(a, { purpose, ...rest, region })).toEqual([]);
  });

  it("changes a scalar to another type with a replace (a string amount is a change, not equal)", () => {
    expect(diffRequest({ amount: 5000 }, { amount: "5000" })).toEqual([
      { op: "replace", path: "/amount", value: "5000" },
    ]);
  });

  it("escapes ~ and / in member names as ~0 and ~1, and the patch applies back", () => {
    const prev = { details: { "a/b": 1, "m~n": "x", "~1": true, "": 0 } };
    const next = { details: { "a/b": 2, "m~n": "y", "~1": false, "": 1 } };
    const ops = diffRequest(prev, next);
    expect(ops.map((o) => o.path).sort()).toEqual(
      ["/details/", "/details/a~1b", "/details/m~0n", "/details/~01"].sort(),
    );
    expect(applyEdits(prev, [{ patch: ops }])).toEqual(next);
  });

  it("adds and removes members", () => {
    const ops = diffRequest({ a: 1, b: 2 }, { a: 1, c: 3 });
    expect(ops).toContainEqual({ op: "remove", path: "/b" });
    expect(ops).toContainEqual({ op: "add", path: "/c", value: 3 });
    expect(ops).toHaveLength(2);
  });

  it("replaces the whole document when the roots are unequal scalars or differ in kind", () => {
    expect(diffRequest(1, 2)).toEqual([{ op: "replace", path: "", value: 2 }]);
    expect(diffRequest({ a: 1 }, [1])).toEqual([{ op: "replace", path: "", value: [1] }]);
    expect(diffRequest("same", "same")).toEqual([]);
    expect(applyEdits({ a: 1 }, [{ patch: diffRequest({ a: 1 }, [1]) }])).toEqual([1]);
  });

  it("never changes its inputs, and its patch shares nothing with them", () => {
    const prev = deepFreeze({ a: { b: [1, 2] } });
    const next = { a: { b: [1, 2], c: { d: 1 } } };
    const ops = diffRequest(prev, next);
    (ops[0]!.value as { d: number }).d = 99;
    expect(next.a.c.d).toBe(1);
  });

  it("round-trips: applying the diff to prev gives next, digest for digest", () => {
    const prev = refund();
    const cases: unknown[] = [
      { ...prev, action: { ...prev.action, details: { ...prev.action.details, amount: 0.5 } } },
      { ...prev, action: { ...prev.action, details: { ...prev.action.details, note: "ünïcode ✓ \u2028" } } },
      { ...prev, context: { links: ["https://a.example/1", "https://a.example/2"] } },
      { ...prev, action: { ...prev.action, details: { list: [3, 2, 1], nested: { x: [{ y: null }] } } } },
    ];
    for (const next of cases) {
      const out = applyEdits(prev, [{ patch: diffRequest(prev, next) }]);
      expect(jcsDigest(out)).toBe(jcsDigest(next));
    }
  });
});

describe("applyEdits", () => {
  it("applies each edit to the result of the one before", () => {
    const original = refund();
    const r1 = refund();
    r1.action.details.amount = 100;
    const r2 = structuredClone(r1);
    r2.action.details.amount = 90;
    r2.action.details.note = "goodwill";
    const edits = [{ patch: diffRequest(original, r1) }, { patch: diffRequest(r1, r2) }];
    expect(jcsDigest(applyEdits(original, edits))).toBe(jcsDigest(r2));
  });

  it("gives the original itself (an equal copy) when there are no edits", () => {
    const original = refund();
    const out = applyEdits(original, []);
    expect(out).toEqual(original);
    expect(out).not.toBe(original);
  });

  it("never changes the original or the patches, even when a later op edits an added value", () => {
    const original = deepFreeze(refund());
    const patch = deepFreeze([
      { op: "add", path: "/action/details/extra", value: { n: 1 } },
      { op: "replace", path: "/action/details/extra/n", value: 2 },
    ] as JsonPatchOperation[]);
    const out = applyEdits(original, [{ patch }]) as ReturnType<typeof refund>;
    expect((out.action.details as Record<string, unknown>)["extra"]).toEqual({ n: 2 });
    expect(patch[0]!.value).toEqual({ n: 1 });
    expect(original.action.details).not.toHaveProperty("extra");
  });

  it("passes a test op that holds", () => {
    const out = applyEdits(refund(), [
      {
        patch: [
          { op: "test", path: "/action/details/amount", value: 120 },
          { op: "replace", path: "/action/details/amount", value: 60 },
        ],
      },
    ]) as ReturnType<typeof refund>;
    expect(out.action.details.amount).toBe(60);
  });

  it("refuses a failing test op, naming the edit, the operation and why", () => {
    const ok = { patch: [{ op: "replace", path: "/action/details/amount", value: 100 }] as const };
    const bad = { patch: [{ op: "test", path: "/action/details/amount", value: 120 }] as const };
    expect(() => applyEdits(refund(), [ok, bad])).toThrow(
      'edits[1].patch[0] ("test" at "/action/details/amount") does not apply: its test failed',
    );
  });

  it("refuses a path that does not exist, naming it", () => {
    expect(() =>
      applyEdits(refund(), [
        {
          patch: [
            { op: "replace", path: "/action/details/note", value: "x" },
            { op: "replace", path: "/action/details/missing", value: 1 },
          ],
        },
      ]),
    ).toThrow(
      'edits[0].patch[1] ("replace" at "/action/details/missing") does not apply: its path does not exist',
    );
  });

  it("refuses malformed operations and patches with a reason", () => {
    const cases: [unknown, string][] = [
      [[{ op: "bogus", path: "/a" }], "its op is not one of"],
      [[{ op: "replace", path: "a", value: 1 }], "its path is not a JSON Pointer"],
      [[{ op: "replace", path: "/a" }], "it has no value"],
      [[{ op: "add", path: "/__proto__/polluted", value: 1 }], "__proto__"],
      [{ op: "replace", path: "/a", value: 1 }, "edits[0]: patch is not an array"],
    ];
    for (const [patch, why] of cases) {
      expect(() => applyEdits({ a: 0 }, [{ patch: patch as JsonPatchOperation[] }])).toThrow(why);
    }
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
  });
});

describe("decidedRequest", () => {
  it("is the agent's request when the record has no edits", () => {
    const original = refund();
    expect(jcsDigest(decidedRequest(original, {}))).toBe(jcsDigest(original));
  });

  it("is the last revision when it has edits", () => {
    const original = refund();
    const decided = refund();
    decided.action.details.amount = 75;
    const edits = [
      { user: "U0ALICE", team: "T1", at: "2026-01-01T00:00:00.000Z", patch: diffRequest(original, decided) },
    ];
    expect(jcsDigest(decidedRequest(original, { edits }))).toBe(jcsDigest(decided));
    expect(original.action.details.amount).toBe(120);
  });
});

describe("checkEditChain", () => {
  const edited = () => {
    const original = refund();
    const decided = refund();
    decided.action.details.amount = 75;
    decided.action.details.note = "half";
    const edits = [
      { user: "U0ALICE", team: "T1", at: "2026-01-01T00:00:00.000Z", patch: diffRequest(original, decided) },
    ];
    return {
      original,
      decided,
      claims: { action_sha256: jcsDigest(decided), original_sha256: jcsDigest(original), edits },
    };
  };

  it("gives the decided revision when every link holds", () => {
    const { original, decided, claims } = edited();
    const r = checkEditChain(original, claims, jcsDigest);
    expect(r.ok && jcsDigest(r.decided)).toBe(jcsDigest(decided));
    expect(r.ok && r.revised).toBe(true);
  });

  it("gives the original when nothing changed and action_sha256 is its digest", () => {
    const original = refund();
    const r = checkEditChain(original, { action_sha256: jcsDigest(original) }, jcsDigest);
    expect(r).toEqual({ ok: true, decided: original, revised: false });
    expect(checkEditChain(original, { action_sha256: "x" }, jcsDigest)).toMatchObject({
      ok: false,
      step: "action_sha256",
    });
  });

  it("names original_sha256 when the original is not the agent's", () => {
    const { original, claims } = edited();
    original.purpose = "something else";
    expect(checkEditChain(original, claims, jcsDigest)).toMatchObject({ ok: false, step: "original_sha256" });
  });

  it("names action_sha256 when the edits do not give the decided revision", () => {
    const { original, claims } = edited();
    const other = refund();
    other.action.details.amount = 1;
    expect(checkEditChain(original, { ...claims, action_sha256: jcsDigest(other) }, jcsDigest)).toMatchObject(
      {
        ok: false,
        step: "action_sha256",
      },
    );
  });

  it("refuses an edit outside the agent's editable pointers, naming it", () => {
    const { original, claims } = edited();
    const sneaky = structuredClone(original);
    sneaky.action.details.currency = "USD";
    const edits = [{ ...claims.edits[0]!, patch: diffRequest(original, sneaky) }];
    const r = checkEditChain(original, { ...claims, edits, action_sha256: jcsDigest(sneaky) }, jcsDigest);
    expect(r).toMatchObject({ ok: false, step: "edits" });
    expect(!r.ok && r.reason).toContain('"replace" at "/action/details/currency"');
  });

  it("refuses edits without original_sha256, and original_sha256 without edits", () => {
    const { original, claims } = edited();
    const { original_sha256: _o, ...noOriginal } = claims;
    const { edits: _e, ...noEdits } = claims;
    expect(checkEditChain(original, noOriginal, jcsDigest)).toMatchObject({ ok: false, step: "edits" });
    expect(checkEditChain(original, noEdits, jcsDigest)).toMatchObject({ ok: false, step: "edits" });
    expect(checkEditChain(original, { ...claims, edits: [] }, jcsDigest)).toMatchObject({
      ok: false,
      step: "edits",
    });
  });

  it("refuses an edit that does not apply (a failing test op), with the edit's index", () => {
    const { original, claims } = edited();
    const edits = [
      ...claims.edits,
      { ...claims.edits[0]!, patch: [{ op: "test" as const, path: "/action/details/amount", value: 120 }] },
    ];
    const r = checkEditChain(original, { ...claims, edits }, jcsDigest);
    expect(r).toMatchObject({ ok: false, step: "edits" });
    expect(!r.ok && r.reason).toContain("edits[1].patch[0]");
  });
});
