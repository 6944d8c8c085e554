/**
 * The worker thread of a parallel export (export-parallel.ts): it formats the pages the
 * main thread posts, in the order they come, with one ExportFormatter for the whole
 * export, and posts back each page's text. The main thread reads and writes meanwhile.
 */
import { parentPort } from "node:worker_threads";
import { ExportError, ExportFormatter } from "./export.js";
import type { FromWorker, ToWorker } from "./export-parallel.js";

const port = parentPort;
if (!port) throw new Error("export-worker.ts runs as a worker thread of export-parallel.ts");

const ENCODER = new TextEncoder();
let formatter: ExportFormatter | null = null;
let failed = false;

port.on("message", (m: ToWorker) => {
  if (failed) return;
  if (m.type === "start") {
    formatter = new ExportFormatter(m.query);
    return;
  }
  try {
    if (!formatter) throw new Error("export worker: a page came before the export's query");
    let text = "";
    for (const r of m.rows) text += formatter.entry(r);
    const { records, omitted } = formatter.stats;
    const last = m.rows[m.rows.length - 1];
    // Sent as UTF-8 bytes whose memory moves to the main thread (no copy): it writes them
    // as they are, where a string would be copied over and then encoded by the write.
    const bytes = ENCODER.encode(text);
    port?.postMessage(
      { type: "page", bytes, records, omitted, lastSeq: last ? last.seq : 0 } satisfies FromWorker,
      [bytes.buffer],
    );
  } catch (e) {
    // The first bad entry ends the export: the main thread throws this, as in-thread it would.
    failed = true;
    post({ type: "error", message: (e as Error).message, exportError: e instanceof ExportError });
  }
});

function post(m: FromWorker): void {
  port?.postMessage(m);
}

post({ type: "ready" });
