import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logHead } from "../../src/adapters/db/sqlite-audit.js";
import { signCheckpoint, verifyCheckpoint } from "../../src/audit/checkpoint.js";
import { ExportVerifier, parseJwks, type VerifyReport, verifyExport } from "../../src/audit/verify.js";
import { decodeJws, jwsDigest, signJws } from "../../src/records/signing.js";
import { buildLog, exportText, ISSUER, linesOf, newKey, type TestLog } from "./log.js";

const KEY_A = newKey();
const KEY_B = newKey();
const JWKS = [KEY_A.publicJwk, KEY_B.publicJwk];

let log: TestLog;
let lines: string[];

beforeAll(async () => {
  // Ten records, the signing key rotated from A to B after the fifth.
  log = await buildLog(
    Array.from({ length: 10 }, (_, i) => ({
      key: i < 5 ? KEY_A : KEY_B,
      agent: i % 2 === 0 ? "billing-agent" : "crm-agent",
      verdict: i % 3 === 0 ? ("denied" as const) : ("approved" as const),
      reasonText: i % 3 === 0 ? '=HYPERLINK("http://evil")' : "",
    })),
  );
  const db = log.open();
  lines = linesOf(await exportText(db));
  db.close();
});
afterAll(() => log.cleanup());

function verify(
  ls: readonly string[],
  jwks = JWKS,
  checkpoint?: ReturnType<typeof verifyCheckpoint>,
): VerifyReport {
  const v = new ExportVerifier({ jwks, checkpoint: checkpoint ?? null });
  for (const l of ls) if (!v.push(l)) break;
  return v.finish();
}

function edit(i: number, change: (line: Record<string, unknown>) => void): string[] {
  const copy = [...lines];
  const obj = JSON.parse(copy[i]!) as Record<string, unknown>;
  change(obj);
  copy[i] = JSON.stringify(obj);
  return copy;
}

function failure(r: VerifyReport): { seq: number | null; reason: string } {
  expect(r.ok, JSON.stringify(r)).toBe(false);
  return r.ok ? { seq: null, reason: "ok" } : { seq: r.seq, reason: r.reason };
}

describe("audit verify: an intact export", () => {
  it("verifies every record across a key rotation, counting records per key", () => {
    const r = verify(lines);
    expect(r).toMatchObject({ ok: true, records: 10, omitted: 0, lastSeq: 10, headConfirmed: true });
    if (r.ok) expect(r.kids).toEqual({ [KEY_A.kid]: 5, [KEY_B.kid]: 5 });
  });

  it("the chain continues across the rotation: the first record signed with B points at the last signed with A", () => {
    const fifth = JSON.parse(lines[4]!) as { record: string };
    const sixth = JSON.parse(lines[5]!) as { record: string };
    expect(decodeJws(fifth.record).header["kid"]).toBe(KEY_A.kid);
    expect(decodeJws(sixth.record).header["kid"]).toBe(KEY_B.kid);
    expect(decodeJws(sixth.record).payload["prev"]).toBe(jwsDigest(fifth.record));
  });

  it("reports the head, which is what a checkpoint of the same log holds", () => {
    const db = log.open();
    const head = logHead(db);
    db.close();
    const r = verify(lines);
    expect(r.ok && r.head).toBe(head.head);
    expect(head.seq).toBe(10);
  });

  it("reads a stream of chunks split anywhere, CRLF line ends included", async () => {
    const text = `${lines.join("\r\n")}\r\n`;
    const chunks = text.match(/[\s\S]{1,777}/g)!;
    expect(await verifyExport(chunks, { jwks: JWKS })).toMatchObject({ ok: true, records: 10 });
  });

  it("an empty export verifies as zero records", async () => {
    expect(await verifyExport([""], { jwks: JWKS })).toMatchObject({
      ok: true,
      records: 0,
      lastSeq: 0,
      head: null,
    });
  });
});

describe("audit verify: tampering is caught at the right seq, for the right reason", () => {
  it("an edited payload inside a record's JWS: bad signature", () => {
    const tampered = edit(3, (l) => {
      const [h, p, s] = (l["record"] as string).split(".");
      const payload = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
      payload["verdict"] = "approved";
      l["record"] = `${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`;
      l["verdict"] = "approved";
    });
    expect(failure(verify(tampered))).toEqual({ seq: 4, reason: "bad_signature" });
  });

  it("a line's decoded field edited beside an intact record: edited claim", () => {
    const tampered = edit(6, (l) => {
      l["verdict"] = "approved";
      l["reason_text"] = "";
    });
    expect(failure(verify(tampered))).toEqual({ seq: 7, reason: "edited_claim" });
  });

  it("the approvers list padded with a name that never voted: edited claim", () => {
    const tampered = edit(1, (l) => {
      l["approvers"] = ["U0ALICE", "U0MALLORY"];
    });
    expect(failure(verify(tampered))).toEqual({ seq: 2, reason: "edited_claim" });
  });

  it("the request edited (amount changed): edited claim, because it no longer hashes to action_sha256", () => {
    const tampered = edit(2, (l) => {
      (l["request"] as { action: { details: { amount: string } } }).action.details.amount = "12000.00";
    });
    const r = verify(tampered);
    expect(failure(r)).toEqual({ seq: 3, reason: "edited_claim" });
    expect(!r.ok && r.message).toMatch(/action_sha256/);
  });

  it("an unsigned field added to a line: edited claim", () => {
    const tampered = edit(0, (l) => {
      l["approved_by_auditor"] = true;
    });
    expect(failure(verify(tampered))).toEqual({ seq: 1, reason: "edited_claim" });
  });

  it("a dropped line: record dropped, naming the missing seq", () => {
    const tampered = lines.filter((_, i) => i !== 5);
    const r = verify(tampered);
    expect(failure(r)).toEqual({ seq: 6, reason: "record_dropped" });
    expect(!r.ok && r.message).toMatch(/seq 6 is missing/);
  });

  it("several consecutive lines dropped: named as a range", () => {
    const r = verify([...lines.slice(0, 2), ...lines.slice(5)]);
    expect(failure(r)).toEqual({ seq: 3, reason: "record_dropped" });
    expect(!r.ok && r.message).toMatch(/seq 3 to 5 are missing/);
  });

  it("the first line dropped: seq 1 is missing", () => {
    expect(failure(verify(lines.slice(1)))).toEqual({ seq: 1, reason: "record_dropped" });
  });

  it("two lines swapped: reordered, naming the seq out of its place", () => {
    const tampered = [...lines];
    [tampered[3], tampered[4]] = [tampered[4]!, tampered[3]!];
    const r = verify(tampered);
    expect(failure(r)).toEqual({ seq: 4, reason: "reordered" });
  });

  it("two distant lines swapped: still reordered, not dropped", () => {
    const tampered = [...lines];
    [tampered[1], tampered[8]] = [tampered[8]!, tampered[1]!];
    expect(failure(verify(tampered))).toEqual({ seq: 2, reason: "reordered" });
  });

  it("a line repeated: reordered", () => {
    const tampered = [...lines.slice(0, 4), lines[3]!, ...lines.slice(4)];
    expect(failure(verify(tampered))).toEqual({ seq: 4, reason: "reordered" });
  });

  it("a record re-signed with a foreign key: unknown key", () => {
    const mallory = newKey();
    const tampered = edit(5, (l) => {
      const payload = decodeJws(l["record"] as string).payload;
      l["record"] = signJws(mallory, "decision+jwt", payload);
    });
    const r = verify(tampered);
    expect(failure(r)).toEqual({ seq: 6, reason: "unknown_key" });
    expect(!r.ok && r.message).toContain(mallory.kid);
  });

  it("a record re-signed with a foreign key that claims a trusted kid: bad signature", () => {
    const mallory = newKey();
    const impostor = { ...mallory, kid: KEY_B.kid };
    const tampered = edit(7, (l) => {
      l["record"] = signJws(impostor, "decision+jwt", decodeJws(l["record"] as string).payload);
    });
    expect(failure(verify(tampered))).toEqual({ seq: 8, reason: "bad_signature" });
  });

  it("a checkpoint passed off as a record: refused for its typ", () => {
    const tampered = edit(0, (l) => {
      l["record"] = signJws(KEY_A, "checkpoint+jwt", decodeJws(l["record"] as string).payload);
    });
    expect(failure(verify(tampered))).toEqual({ seq: 1, reason: "bad_signature" });
  });

  it("a line moved from another log with the same keys: broken chain", async () => {
    const other = await buildLog([{ key: KEY_A }, { key: KEY_A }, { key: KEY_A }]);
    const db = other.open();
    const foreign = linesOf(await exportText(db));
    db.close();
    other.cleanup();
    // seq 3 of the other log signs a prev that is not our seq 2's digest.
    expect(failure(verify([...lines.slice(0, 2), foreign[2]!, ...lines.slice(3)]))).toEqual({
      seq: 3,
      reason: "broken_chain",
    });
  });

  it("a line that is not JSON: malformed, at the seq expected there", () => {
    const tampered = [...lines];
    tampered[2] = "seq,decided_at,agent_id";
    expect(failure(verify(tampered))).toEqual({ seq: 3, reason: "malformed" });
  });

  it("without the old key in the JWKS, the rotated log fails at its first record", () => {
    const r = verify(lines, [KEY_B.publicJwk]);
    expect(failure(r)).toEqual({ seq: 1, reason: "unknown_key" });
  });
});

describe("audit verify: filtered exports", () => {
  it("an agent filter gives omitted lines for the others, and the chain still verifies", async () => {
    const db = log.open();
    const filtered = linesOf(await exportText(db, { agent: "crm-agent" }));
    db.close();
    expect(filtered).toHaveLength(10);
    const parsed = filtered.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.filter((l) => l["omitted"] === true)).toHaveLength(5);
    for (const l of parsed) {
      if (l["omitted"]) expect(Object.keys(l).sort()).toEqual(["omitted", "record_sha256", "seq"]);
      else expect(l["agent_id"]).toBe("crm-agent");
    }
    expect(verify(filtered)).toMatchObject({ ok: true, records: 5, omitted: 5, lastSeq: 10 });
  });

  it("an omitted line stands for the real record: its record_sha256 is that record's digest", async () => {
    const db = log.open();
    const filtered = linesOf(await exportText(db, { verdict: "denied" }));
    db.close();
    filtered.forEach((l, i) => {
      const o = JSON.parse(l) as { omitted?: boolean; record_sha256?: string };
      const full = JSON.parse(lines[i]!) as { record: string };
      if (o.omitted) expect(o.record_sha256).toBe(jwsDigest(full.record));
    });
    expect(verify(filtered)).toMatchObject({ ok: true, records: 4, omitted: 6 });
  });

  it("since/until bound decided_at (since inclusive, until exclusive); records outside become omitted lines", async () => {
    const db = log.open();
    // Records are decided at 10:00, 10:01, ... 10:09.
    const filtered = linesOf(
      await exportText(db, { since: "2025-03-01T10:02:00Z", until: "2025-03-01T10:05:00Z" }),
    );
    db.close();
    const kept = filtered.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => !l["omitted"]);
    expect(kept.map((l) => l["seq"])).toEqual([3, 4, 5]);
    expect(verify(filtered)).toMatchObject({ ok: true, records: 3, omitted: 7 });
  });

  it("a forged omitted line (wrong record_sha256) breaks the chain at that line", async () => {
    const db = log.open();
    const filtered = linesOf(await exportText(db, { agent: "crm-agent" }));
    db.close();
    filtered[2] = JSON.stringify({ seq: 3, record_sha256: jwsDigest("something else"), omitted: true });
    expect(failure(verify(filtered))).toEqual({ seq: 3, reason: "broken_chain" });
  });

  it("an omitted line removed from a filtered export is a dropped record, not a filter gap", async () => {
    const db = log.open();
    const filtered = linesOf(await exportText(db, { agent: "crm-agent" })).filter((_, i) => i !== 4);
    db.close();
    expect(failure(verify(filtered))).toEqual({ seq: 5, reason: "record_dropped" });
  });

  it("a filter that matches nothing still carries the whole chain", async () => {
    const db = log.open();
    const filtered = linesOf(await exportText(db, { region: "us" }));
    db.close();
    // The head is then an omitted line's word for it, and the report says so.
    expect(verify(filtered)).toMatchObject({ ok: true, records: 0, omitted: 10, headConfirmed: false });
  });
});

describe("audit verify with a checkpoint", () => {
  function checkpointOf(seq: number, head: string | null, key = KEY_B): string {
    return signCheckpoint(key, ISSUER, { seq, head }, new Date("2025-03-02T00:00:00Z"));
  }

  it("a checkpoint of the head verifies and is matched", () => {
    const head = (JSON.parse(lines[9]!) as { record: string }).record;
    const cp = verifyCheckpoint(checkpointOf(10, jwsDigest(head)), JWKS);
    expect(verify(lines, JWKS, cp)).toMatchObject({ ok: true, checkpoint: { seq: 10, iss: ISSUER } });
  });

  it("an older checkpoint is matched at its seq while the log has grown", () => {
    const fourth = (JSON.parse(lines[3]!) as { record: string }).record;
    const cp = verifyCheckpoint(checkpointOf(4, jwsDigest(fourth), KEY_A), JWKS);
    expect(verify(lines, JWKS, cp)).toMatchObject({ ok: true });
  });

  it("a log rewritten before the checkpoint's seq fails against it", () => {
    const cp = verifyCheckpoint(checkpointOf(4, jwsDigest("the record as it was")), JWKS);
    expect(failure(verify(lines, JWKS, cp))).toEqual({ seq: 4, reason: "checkpoint_mismatch" });
  });

  it("an export cut short of the checkpoint: the records at the end were dropped", () => {
    const head = (JSON.parse(lines[9]!) as { record: string }).record;
    const cp = verifyCheckpoint(checkpointOf(10, jwsDigest(head)), JWKS);
    const r = verify(lines.slice(0, 8), JWKS, cp);
    expect(failure(r)).toEqual({ seq: 9, reason: "record_dropped" });
    expect(!r.ok && r.message).toMatch(/records 9 to 10 are missing/);
  });

  it("a checkpoint signed by a foreign key is refused", () => {
    expect(() => verifyCheckpoint(checkpointOf(10, jwsDigest("x"), newKey()), JWKS)).toThrow(/unknown key/);
  });

  it("a checkpoint whose payload was edited is refused", () => {
    const [h, , s] = checkpointOf(4, jwsDigest("x")).split(".");
    const forged = Buffer.from(
      JSON.stringify({ ver: 1, iss: ISSUER, seq: 3, head: jwsDigest("y"), iat: 1 }),
    ).toString("base64url");
    expect(() => verifyCheckpoint(`${h}.${forged}.${s}`, JWKS)).toThrow(/bad signature/);
  });

  it("a decision record is not accepted as a checkpoint", () => {
    const record = (JSON.parse(lines[0]!) as { record: string }).record;
    expect(() => verifyCheckpoint(record, JWKS)).toThrow(/typ decision\+jwt is not checkpoint\+jwt/);
  });

  it("an empty log's checkpoint is seq 0 with head null, and an empty export matches it", () => {
    const cp = verifyCheckpoint(checkpointOf(0, null), JWKS);
    expect(cp).toMatchObject({ seq: 0, head: null });
    expect(verify([], JWKS, cp)).toMatchObject({ ok: true, records: 0 });
    expect(verify(lines, JWKS, cp)).toMatchObject({ ok: true, records: 10 });
  });
});

describe("JWKS parsing", () => {
  it("keeps Ed25519 keys and skips others", () => {
    const keys = parseJwks(
      { keys: [{ kty: "RSA", kid: "r", n: "x", e: "AQAB" }, KEY_A.publicJwk] },
      "jwks.json",
    );
    expect(keys).toEqual([KEY_A.publicJwk]);
  });

  it("refuses a document with no usable key, naming its source", () => {
    expect(() => parseJwks({ keys: [] }, "jwks.json")).toThrow(/jwks.json holds no Ed25519 key/);
    expect(() => parseJwks([KEY_A.publicJwk], "jwks.json")).toThrow(/jwks.json is not a JWKS/);
  });
});
