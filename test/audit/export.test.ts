/**
 * The JSONL line is built by concatenation (for speed): it must be byte for byte the line
 * that JSON.stringify of the line object gives, which is what `audit verify` and older
 * exports read. And what the database holds must not be able to break a line.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lastSeq, recordsInOrder } from "../../src/adapters/db/sqlite-audit.js";
import { type ExportSource, exportChunks, lineFields } from "../../src/audit/export.js";
import { verifyExport } from "../../src/audit/verify.js";
import { decodeJws } from "../../src/records/signing.js";
import { buildLog, exportText, linesOf, newKey, type TestLog } from "./log.js";

const KEY = newKey();
let log: TestLog;

beforeAll(async () => {
  log = await buildLog(
    [
      { summary: 'Quotes "inside", a backslash \\ and a tab\t', reasonText: "" },
      {
        summary: "Line\nbreaks\r\nand U+2028\u2028 U+2029\u2029",
        verdict: "denied",
        reasonText: '=HYPERLINK("http://evil")\n\u0000\u001b[2J',
        votes: [
          { user: 'U0"QUOTE', team: "T0TEST", vote: "approve", at: "2025-03-01T10:01:00.000Z" },
          { user: "U0BOB", team: "T0TEST", vote: "deny", at: "2025-03-01T10:01:30.000Z", comment: "no" },
        ],
      },
      {
        summary: "Ünïcödé ☕ 🧾 \u202e bidi",
        details: {
          "10": "integer-like keys come first",
          "2": "in ascending order",
          b: [1e21, 0.1, -0, 1.5e-7, 2 ** 53],
          nested: { "": null, emoji: "🧾", ctl: "\u0001\u007f" },
        },
      },
      { verdict: "expired", votes: [] },
    ],
    KEY,
  );
});
afterAll(() => log?.cleanup());

/** The line as the exporter wrote it before it was built by hand. */
function stringifiedLine(r: ExportSource): string {
  const claims = decodeJws(r.jws).payload;
  return `${JSON.stringify({ ...lineFields(claims), seq: r.seq, record: r.jws, request: JSON.parse(r.requestJson!) })}\n`;
}

describe("the JSONL export line", () => {
  it("is byte for byte JSON.stringify of the line object, for awkward content", async () => {
    const db = log.open();
    try {
      const expected = [...recordsInOrder(db, lastSeq(db))].map(stringifiedLine).join("");
      const text = await exportText(db);
      expect(text).toBe(expected);
      expect(linesOf(text)).toHaveLength(4);
      expect(await verifyExport([text], { jwks: [KEY.publicJwk] })).toMatchObject({ ok: true, records: 4 });
    } finally {
      db.close();
    }
  });

  it("an omitted line is byte for byte JSON.stringify of {seq, record_sha256, omitted}", async () => {
    const db = log.open();
    try {
      const text = await exportText(db, { verdict: "denied" });
      const lines = linesOf(text);
      expect(lines).toHaveLength(4);
      for (const l of [lines[0]!, lines[2]!, lines[3]!]) {
        const o = JSON.parse(l) as { seq: number; record_sha256: string; omitted: true };
        expect(l).toBe(JSON.stringify({ seq: o.seq, record_sha256: o.record_sha256, omitted: true }));
      }
    } finally {
      db.close();
    }
  });
});

describe("what the database holds cannot break a line", () => {
  async function exportOf(rows: ExportSource[]): Promise<string> {
    let text = "";
    for await (const chunk of exportChunks([rows], { format: "jsonl", filter: {} })) text += chunk;
    return text;
  }
  let good: ExportSource;
  beforeAll(() => {
    const db = log.open();
    good = [...recordsInOrder(db, 1)][0]!;
    db.close();
  });

  it("a request spread over two lines is refused, naming the seq", async () => {
    const bad = { ...good, requestJson: good.requestJson!.replace(",", ",\n") };
    await expect(exportOf([bad])).rejects.toThrow(
      /^record seq 1: the stored request is not a one-line JSON object$/,
    );
  });

  it("a request that is not an object is refused", async () => {
    await expect(exportOf([{ ...good, requestJson: '"just text"' }])).rejects.toThrow(
      /not a one-line JSON object/,
    );
  });

  it("a record text with a quote in it stays inside its line (verify then judges it)", async () => {
    const odd = { ...good, jws: `${good.jws}"},"verdict":"approved` };
    const lines = linesOf(await exportOf([odd]));
    expect(lines).toHaveLength(1);
    expect((JSON.parse(lines[0]!) as { record: string }).record).toBe(odd.jws);
  });

  it("a record whose action row is missing is refused", async () => {
    await expect(exportOf([{ ...good, requestJson: null }])).rejects.toThrow(
      /^record seq 1 has no stored request \(its action row is missing\)$/,
    );
  });

  it("a record that is not a JWS is refused, saying why", async () => {
    await expect(exportOf([{ ...good, jws: "not-a-jws" }])).rejects.toThrow(
      /^record seq 1 in the database is not a readable JWS: expected three non-empty parts/,
    );
    const [h, , s] = good.jws.split(".");
    await expect(
      exportOf([{ ...good, jws: `${h}.${Buffer.from("[1]").toString("base64url")}.${s}` }]),
    ).rejects.toThrow(/its payload is not a JSON object/);
    await expect(exportOf([{ ...good, jws: `${h}.bm90IGpzb24.${s}` }])).rejects.toThrow(
      /its payload is not base64url-encoded JSON/,
    );
  });
});
