/**
 * CSV for people with spreadsheets: RFC 4180 (comma, CRLF line ends, quotes doubled
 * inside quoted fields) and guarded against formula injection, since agents write the
 * summaries and reasons an auditor's spreadsheet will evaluate.
 */

/**
 * A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV
 * Injection"). The usual list names `=`, `+`, `-` and `@`; tab and carriage return are on
 * OWASP's list too, because some spreadsheets strip them and then see the next character.
 */
const FORMULA_START = /^[=+\-@\t\r]/;
const NEEDS_QUOTES = /[",\r\n]/;

/** One cell: a leading formula character gets a `'`, then RFC 4180 quoting where needed. */
export function csvCell(value: string | number): string {
  if (typeof value === "number") return String(value);
  const safe = FORMULA_START.test(value) ? `'${value}` : value;
  return NEEDS_QUOTES.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

export function csvRow(cells: readonly (string | number)[]): string {
  return `${cells.map(csvCell).join(",")}\r\n`;
}
