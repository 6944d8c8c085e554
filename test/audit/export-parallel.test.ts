/**
 * The export formatted on a worker thread (src/audit/export-parallel.ts) gives the bytes
 * the in-thread export gives, for every filter and format, fails on the same first bad
 * entry with the same message, and leaves no file behind when it fails.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { type ExportSource, exportChunks, parseExportQuery } from "../../src/audit/export.js";
import { exportChunksParallel, type ParallelExportOptions } from "../../src/audit/export-parallel.js";
import type { AuditReader } from "../../src/audit/reader.js";
import { ExportVerifier } from "../../src/audit/verify.js";
import { exportToFileOrStdout } from "../../src/cli/audit.js";
import { type Decided, TestChain } from "./chain.js";
import { linesOf, newKey } from "./log.js";

const KEY = newKey();
const PAYMENTS = { executor: "payments-api" } as const;

/** Decisions (one changed by approvers, one denied, another agent's), receipts, a passkey. */
function mixedLog(): TestChain {
  const chain = new TestChain(KEY);
  const d: Decided[] = [];
  for (let i = 0; i < 12; i++) {
    d.push(chain.decision(i % 4 === 1 ? { agent: "crm-agent", region: "us" } : {}));
    if (i % 3 === 0) chain.receipt(d[i]!, { kind: "redeemed", by: PAYMENTS });
  }
  d.push(chain.decision({ amounts: [100, 80] }));
  d.push(chain.decision({ verdict: "denied" }));
  chain.receipt(d[0]!, { kind: "outcome", by: PAYMENTS, status: "succeeded", detail: "refund re_1" });
  chain.receipt(d[1]!, { kind: "revoked", by: { cli: true }, reason_text: "wrong customer" });
  chain.passkey({ credentialId: "cred-1", publicJwk: KEY.publicJwk });
  d.push(chain.decision({ agent: "crm-agent", region: "us", amounts: [5] }));
  chain.receipt(d[12]!, { kind: "redeemed", by: PAYMENTS });
  d.push(chain.decision({ verdict: "expired", votes: () => [] }));
  return chain;
}

/** In pages of `size`: receipts and their decisions land on different pages. */
function paged(sources: readonly ExportSource[], size: number): ExportSource[][] {
  const pages: ExportSource[][] = [];
  for (let i = 0; i < sources.length; i += size) pages.push(sources.slice(i, i + size));
  return pages;
}

async function text(chunks: AsyncIterable<string | Uint8Array>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of chunks) parts.push(typeof c === "string" ? Buffer.from(c, "utf8") : Buffer.from(c));
  return Buffer.concat(parts).toString("utf8");
}

const QUERIES: Record<string, string>[] = [
  {},
  { agent: "crm-agent" },
  { region: "eu" },
  { verdict: "approved" },
  { since: "2025-03-01T10:03:00Z", until: "2025-03-01T10:09:00Z" },
  { format: "csv" },
  { format: "csv", agent: "crm-agent" },
];

describe("the export on a worker thread", () => {
  const chain = mixedLog();
  for (const joined of [true, false]) {
    for (const q of QUERIES) {
      it(`is byte for byte the in-thread export: ${JSON.stringify(q)}${joined ? "" : ", receipts not joined"}`, async () => {
        const parsed = parseExportQuery(q);
        if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
        const sources = chain.sources(joined);
        const inThread = await text(exportChunks(paged(sources, 3), parsed.query));
        expect(linesOf(inThread).length).toBeGreaterThan(0);
        for (const worker of ["only", "shared"] as const) {
          const stats = { records: 0, omitted: 0 };
          const expected = { records: 0, omitted: 0 };
          await text(exportChunks(paged(sources, 3), { ...parsed.query, stats: expected }));
          const got = await text(
            exportChunksParallel(paged(sources, 3), { ...parsed.query, stats, expectedRecords: 0, worker }),
          );
          expect(got, worker).toBe(inThread);
          expect(stats, worker).toEqual(expected);
        }
        if (parsed.query.format === "jsonl") {
          const v = new ExportVerifier({ jwks: [KEY.publicJwk] });
          for (const l of linesOf(inThread)) expect(v.push(l)).toBe(true);
          expect(v.finish()).toMatchObject({ ok: true });
        }
      });
    }
  }

  it("calls onProgress with the last seq of each page it has given out", async () => {
    const sources = chain.sources();
    const seen: number[] = [];
    await text(
      exportChunksParallel(paged(sources, 5), {
        format: "jsonl",
        filter: {},
        expectedRecords: 0,
        worker: "only",
        onProgress: (seq) => seen.push(seq),
      }),
    );
    expect(seen).toEqual(paged(sources, 5).map((p) => p[p.length - 1]!.seq));
  });
});

/** The log with entry `seq` replaced by something that is not a JWS. */
function broken(seq: number): ExportSource[] {
  return mixedLog()
    .sources()
    .map((r) => (r.seq === seq ? { ...r, jws: "not-a-jws" } : r));
}

async function failureOf(chunks: AsyncIterable<string | Uint8Array>): Promise<Error> {
  try {
    await text(chunks);
  } catch (e) {
    return e as Error;
  }
  throw new Error("the export did not fail");
}

describe("a bad entry in the worker's export", () => {
  for (const worker of ["only", "shared"] satisfies ParallelExportOptions["worker"][]) {
    it(`fails with the in-thread export's ExportError (${worker})`, async () => {
      for (const seq of [2, 11]) {
        const sources = broken(seq);
        const expected = await failureOf(exportChunks(paged(sources, 3), { format: "jsonl", filter: {} }));
        expect(expected.name).toBe("ExportError");
        expect(expected.message).toContain(`record seq ${seq} `);
        const got = await failureOf(
          exportChunksParallel(paged(sources, 3), {
            format: "jsonl",
            filter: {},
            expectedRecords: 0,
            worker,
          }),
        );
        expect(got.name).toBe("ExportError");
        expect(got.message).toBe(expected.message);
      }
    });
  }

  it("reports the first bad seq when a later page, formatted on the other thread, is bad too", async () => {
    // Pages of two: pages 1-2 go to the worker, 3 onwards are formatted here while it works.
    const sources = broken(4).map((r) => (r.seq === 5 || r.seq === 20 ? { ...r, jws: "a.b" } : r));
    const got = await failureOf(
      exportChunksParallel(paged(sources, 2), {
        format: "jsonl",
        filter: {},
        expectedRecords: 0,
        worker: "shared",
      }),
    );
    expect(got.message).toContain("record seq 4 ");
  });
});

describe("audit export --out with the worker", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cs-export-parallel-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const discard = () =>
    new Writable({
      write(_c, _e, cb) {
        cb();
      },
    });
  const readerOf = (sources: readonly ExportSource[]): AuditReader =>
    ({
      where: "test",
      lastSeq: async () => sources.length,
      async *records() {
        yield* paged(sources, 3);
      },
    }) as unknown as AuditReader;

  it("writes the in-thread export's bytes", async () => {
    const sources = mixedLog().sources();
    const a = path.join(dir, "a.jsonl");
    const b = path.join(dir, "b.jsonl");
    const io = { stdout: discard(), stderr: discard() };
    const q = { format: "jsonl", filter: {} } as const;
    const sa = await exportToFileOrStdout(readerOf(sources), q, a, io, "never");
    const sb = await exportToFileOrStdout(readerOf(sources), q, b, io, "only");
    expect(sb).toEqual(sa);
    expect(fs.readFileSync(b)).toEqual(fs.readFileSync(a));
  });

  it("leaves no file (nor FILE.partial) when an entry is bad", async () => {
    const out = path.join(dir, "bad.jsonl");
    const io = { stdout: discard(), stderr: discard() };
    await expect(
      exportToFileOrStdout(readerOf(broken(9)), { format: "jsonl", filter: {} }, out, io, "only"),
    ).rejects.toThrow(/record seq 9 in the database is not a readable JWS/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(`${out}.partial`)).toBe(false);
  });
});
