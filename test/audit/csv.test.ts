import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { csvCell } from "../../src/audit/csv.js";
import { CSV_COLUMNS } from "../../src/audit/export.js";
import { decodeJws } from "../../src/records/signing.js";
import { buildLog, exportText, linesOf, type TestLog } from "./log.js";

/** An RFC 4180 reader, independent of the writer: quoted fields, doubled quotes, CRLF or LF. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i += 2;
        continue;
      }
      if (c === '"') {
        quoted = false;
        i++;
        continue;
      }
      cell += c;
      i++;
      continue;
    }
    if (c === '"') {
      if (cell !== "") throw new Error(`a quote inside an unquoted field at ${i}`);
      quoted = true;
    } else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\r" && text[i + 1] === "\n") {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
      i++;
    } else if (c === "\n" || c === "\r") {
      throw new Error(`a bare line break outside quotes at ${i}`);
    } else {
      cell += c;
    }
    i++;
  }
  if (quoted) throw new Error("unterminated quoted field");
  if (cell !== "" || row.length) throw new Error("the last row has no CRLF");
  return rows;
}

const NASTY = [
  { summary: '=HYPERLINK("http://evil.example","click")', reasonText: "" },
  { summary: '+1 refund, then "more"', reasonText: "-2 because, well" },
  { summary: "@SUM(A1:A9)", reasonText: "line one\nline two\r\nline three" },
  { summary: "plain summary", reasonText: "\t=tab first" },
  { summary: "Ünïcödé ☕ summary, with comma", reasonText: "", verdict: "denied" as const },
];

let log: TestLog;
beforeAll(async () => {
  log = await buildLog(NASTY.map((n, i) => ({ ...n, agent: i === 4 ? "crm-agent" : "billing-agent" })));
});
afterAll(() => log.cleanup());

describe("CSV export", () => {
  it("has exactly the documented columns (docs/audit.md) as its header", async () => {
    const db = log.open();
    const rows = parseCsv(await exportText(db, { format: "csv" }));
    db.close();
    expect(rows[0]).toEqual([
      "seq",
      "decided_at",
      "agent_id",
      "action_type",
      "summary",
      "risk_class",
      "region",
      "verdict",
      "reason_code",
      "reason_text",
      "approvers",
      "action_id",
      "decision_id",
      "record",
      "redeemed_at",
      "outcome",
      "revoked_at",
    ]);
    expect(CSV_COLUMNS).toEqual(rows[0]);
  });

  it("round-trips through an RFC 4180 parser: every cell is the signed value, formula starts defused", async () => {
    const db = log.open();
    const text = await exportText(db, { format: "csv" });
    const jsonl = linesOf(await exportText(db)).map((l) => JSON.parse(l) as Record<string, unknown>);
    db.close();
    const [header, ...rows] = parseCsv(text);
    expect(rows).toHaveLength(NASTY.length);
    rows.forEach((row, i) => {
      const cells = Object.fromEntries(header!.map((h, j) => [h, row[j]!]));
      const line = jsonl[i]!;
      const defuse = (s: string) => (/^[=+\-@\t\r]/.test(s) ? `'${s}` : s);
      expect(cells["seq"]).toBe(String(i + 1));
      expect(cells["summary"]).toBe(defuse(NASTY[i]!.summary));
      expect(cells["reason_text"]).toBe(defuse(NASTY[i]!.reasonText));
      expect(cells["decided_at"]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      expect(cells["decided_at"]).toBe(line["decided_at"]);
      expect(cells["agent_id"]).toBe(line["agent_id"]);
      expect(cells["verdict"]).toBe(line["verdict"]);
      expect(cells["approvers"]).toBe((line["approvers"] as string[]).join(" "));
      expect(cells["decision_id"]).toBe(line["decision_id"]);
      // The record cell is the JWS itself, untouched: a spreadsheet user can still verify it.
      expect(cells["record"]).toBe(line["record"]);
      expect(decodeJws(cells["record"]!).payload["summary"]).toBe(NASTY[i]!.summary);
    });
  });

  it("no cell of a row starts with a formula character", async () => {
    const db = log.open();
    const [, ...rows] = parseCsv(await exportText(db, { format: "csv" }));
    db.close();
    for (const row of rows) for (const cell of row) expect(cell).not.toMatch(/^[=+\-@\t\r]/);
  });

  it("omitted records are not rows: a filtered CSV has only the matching records", async () => {
    const db = log.open();
    const [, ...rows] = parseCsv(await exportText(db, { format: "csv", agent: "crm-agent" }));
    db.close();
    expect(rows.map((r) => r[0])).toEqual(["5"]);
    expect(rows[0]![2]).toBe("crm-agent");
  });

  it("quotes only what needs it and doubles quotes inside", () => {
    expect(csvCell("plain")).toBe("plain");
    expect(csvCell('say "hi", twice')).toBe('"say ""hi"", twice"');
    expect(csvCell("-1")).toBe("'-1");
    expect(csvCell("=1,2")).toBe(`"'=1,2"`);
    expect(csvCell(42)).toBe("42");
  });
});

// OWASP's CSV injection list has tab and carriage return beside = + - @: a spreadsheet
// may strip either and then read the formula behind it.
describe("CSV export: cells that start with a tab or a carriage return", () => {
  const TRICKS = [
    { summary: "\t=cmd|' /C calc'!A0", reasonText: '\r=HYPERLINK("http://evil.example")' },
    { summary: "\r+1 refund", reasonText: "\t@SUM(A1:A9)" },
  ];
  let tricks: TestLog;
  beforeAll(async () => {
    tricks = await buildLog(TRICKS.map((t) => ({ ...t, agent: "billing-agent" })));
  });
  afterAll(() => tricks.cleanup());

  it("prefixes each such cell with a quote, and the rest of the cell is the signed text", async () => {
    const db = tricks.open();
    const [header, ...rows] = parseCsv(await exportText(db, { format: "csv" }));
    db.close();
    expect(rows).toHaveLength(TRICKS.length);
    rows.forEach((row, i) => {
      const cells = Object.fromEntries(header!.map((h, j) => [h, row[j]!]));
      expect(cells["summary"]).toBe(`'${TRICKS[i]!.summary}`);
      expect(cells["reason_text"]).toBe(`'${TRICKS[i]!.reasonText}`);
    });
  });

  it("quotes a cell with a carriage return after the prefix", () => {
    expect(csvCell("\t=1")).toBe("'\t=1");
    expect(csvCell("\r=1")).toBe(`"'\r=1"`);
  });
});
