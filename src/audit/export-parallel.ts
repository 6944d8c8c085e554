/**
 * The audit export on two threads: a worker formats page n (export-worker.ts) while this
 * thread reads page n+1 and writes page n-1. Formatting (decoding each payload, building
 * each line) cost half as much again as the reads and writes (0.66x the raw read + write
 * on one thread); on a machine with a free core the export runs near the speed of
 * reading and writing the stored rows. This thread formats a page itself only when it
 * would otherwise wait for the worker (not started yet, or behind).
 *
 * The output is the same bytes as exportChunks gives in-thread (both threads run the same
 * ExportFormatter; the pages are written in seq order whoever formatted them), and memory
 * stays bounded: at most MAX_PAGES_IN_FLIGHT pages are read ahead of what has been
 * written. Small exports, and any export whose worker cannot start, are formatted
 * in-thread.
 */
import { Worker } from "node:worker_threads";
import {
  ExportError,
  ExportFormatter,
  type ExportOptions,
  type ExportQuery,
  type ExportSource,
  exportChunks,
  exportHeader,
} from "./export.js";

/** Messages to the worker: the query once, then the pages in seq order. */
export type ToWorker =
  | { readonly type: "start"; readonly query: ExportQuery }
  | { readonly type: "page"; readonly rows: readonly ExportSource[] };

/** Messages from the worker: ready once, then one text per page, or the first error. */
export type FromWorker =
  | { readonly type: "ready" }
  | {
      readonly type: "page";
      /** The page's text, UTF-8. */
      readonly bytes: Uint8Array;
      /** The worker's counts so far (not this page's). */
      readonly records: number;
      readonly omitted: number;
      readonly lastSeq: number;
    }
  | { readonly type: "error"; readonly message: string; readonly exportError: boolean };

/** Pages read ahead of the one being written: enough to keep both threads busy. */
const MAX_PAGES_IN_FLIGHT = 4;
/** Pages sent to the worker ahead of the one being written; this thread formats one only while it waits for them. */
const WORKER_AHEAD = 2;
/** Below this many records a worker's start-up (0.1-0.5 s) is not worth it. */
const PARALLEL_MIN_RECORDS = 20_000;
/** A filtered export waits this long at most for its worker, then runs in-thread. */
const WORKER_START_TIMEOUT_MS = 15_000;

export interface ParallelExportOptions extends ExportOptions {
  /** How many records the export will read at most (its last seq): small ones stay in-thread. */
  readonly expectedRecords: number;
  /**
   * "auto" (the default): a worker for large exports. For tests: "never" formats
   * in-thread; "shared" as "auto" whatever the size, but waiting for the worker to start
   * so both threads format; "only" sends every page to the worker. Those two fail when
   * the worker cannot start, instead of formatting in-thread.
   */
  readonly worker?: "auto" | "never" | "shared" | "only";
}

/**
 * The export as text chunks, as exportChunks gives them, formatted partly or wholly by a
 * worker thread when the export is large enough and the worker starts: then each chunk is
 * one page's text, as a string or as UTF-8 bytes.
 */
export async function* exportChunksParallel(
  pages: AsyncIterable<readonly ExportSource[]> | Iterable<readonly ExportSource[]>,
  opts: ParallelExportOptions,
): AsyncGenerator<string | Uint8Array> {
  const mode = opts.worker ?? "auto";
  if (mode === "never" || (mode === "auto" && opts.expectedRecords < PARALLEL_MIN_RECORDS)) {
    yield* exportChunks(pages, opts);
    return;
  }
  const f = opts.filter;
  // An unfiltered export's entries do not depend on each other, so this thread can format
  // any page itself. A filtered one may carry what it kept from one entry to the next
  // (ExportFormatter's keptApprovals): one thread formats it all, every entry in order.
  const unfiltered =
    f.agent === undefined &&
    f.region === undefined &&
    f.verdict === undefined &&
    f.since === undefined &&
    f.until === undefined;
  const worker = startWorker();
  // "only" and "shared" are the tests' modes: they must see the worker format, not a fallback.
  const test = mode === "only" || mode === "shared";
  if (!worker) {
    if (test) throw new Error("the export's worker thread could not be made");
    yield* exportChunks(pages, opts);
    return;
  }
  try {
    const share = mode !== "only" && unfiltered;
    // "auto" does not wait for an unfiltered export's worker: this thread formats until it is ready.
    if ((!share || test) && !(await worker.started(WORKER_START_TIMEOUT_MS))) {
      if (test) throw new Error("the export's worker thread did not start");
      yield* exportChunks(pages, opts);
      return;
    }
    yield* formatWithWorker(worker, share, pages, opts);
  } finally {
    await worker.stop();
  }
}

/** Where the worker's code is: beside this module, compiled (dist/) or as TypeScript. */
function workerSource(): { code: string | URL; eval: boolean } {
  const self = import.meta.url;
  if (!self.endsWith(".ts")) return { code: new URL("./export-worker.js", self), eval: false };
  // Running from the sources (tsx, vitest): a worker does not inherit the parent's loader,
  // so it registers tsx's own before importing the TypeScript entry. tsx's ESM entry is
  // found from here (a bare name would be looked up from the working directory);
  // import.meta.resolve is there under tsx, not always under a test runner.
  const entry = new URL("./export-worker.ts", self).href;
  let api = "tsx/esm/api";
  try {
    if (typeof import.meta.resolve === "function") api = import.meta.resolve(api);
  } catch {
    // Left to the worker's own resolution; if that fails too, the export runs in-thread.
  }
  const code = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return { code, eval: true };
}

/** The worker and what it said. Before it is ready, its failing to start is no export failure. */
interface ExportWorker {
  readonly ready: () => boolean;
  /** Whether next() would answer at once. */
  readonly answered: () => boolean;
  /** True once ready; false if it failed to start or did not within `ms`. */
  readonly started: (ms: number) => Promise<boolean>;
  /** Its next answer to a page; throws what stopped it (an error, an exit) once ready. */
  readonly next: () => Promise<FromWorker>;
  readonly post: (m: ToWorker) => void;
  readonly stop: () => Promise<void>;
}

function startWorker(): ExportWorker | null {
  let worker: Worker;
  try {
    const src = workerSource();
    // A small young generation: the worker's garbage is a page at a time, and V8's default
    // for a second isolate held about 60 MB more resident memory for no speed (100,000
    // records: 235 MB peak against 303 MB; one thread alone, 152-167 MB).
    worker = new Worker(src.code, { eval: src.eval, resourceLimits: { maxYoungGenerationSizeMb: 8 } });
  } catch {
    return null;
  }
  let state: "starting" | "ready" | "failed" = "starting";
  const arrived: FromWorker[] = [];
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const waitForNews = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
    });
  worker.on("message", (m: FromWorker) => {
    if (m.type === "ready") state = "ready";
    else arrived.push(m);
    notify();
  });
  const fail = (e: Error) => {
    if (state === "starting") state = "failed";
    else failure ??= e;
    notify();
  };
  worker.on("error", fail);
  worker.on("exit", (code: number) =>
    fail(new Error(`the export's worker thread stopped (exit code ${code})`)),
  );
  return {
    ready: () => state === "ready",
    answered: () => arrived.length > 0 || failure !== null,
    started: async (ms) => {
      const timer = setTimeout(notify, ms);
      const t0 = Date.now();
      while (state === "starting" && Date.now() - t0 < ms) await waitForNews();
      clearTimeout(timer);
      return state === "ready";
    },
    next: async () => {
      for (;;) {
        const m = arrived.shift();
        if (m) return m;
        if (failure) throw failure;
        await waitForNews();
      }
    },
    post: (m) => worker.postMessage(m),
    stop: async () => {
      worker.removeAllListeners();
      // Whatever the worker does while it is being stopped, the export has its outcome.
      worker.on("error", () => {});
      await worker.terminate();
    },
  };
}

async function* formatWithWorker(
  worker: ExportWorker,
  share: boolean,
  pages: AsyncIterable<readonly ExportSource[]> | Iterable<readonly ExportSource[]>,
  opts: ParallelExportOptions,
): AsyncGenerator<string | Uint8Array> {
  const stats = opts.stats ?? { records: 0, omitted: 0 };
  const source =
    Symbol.asyncIterator in pages
      ? (pages as AsyncIterable<readonly ExportSource[]>)[Symbol.asyncIterator]()
      : (pages as Iterable<readonly ExportSource[]>)[Symbol.iterator]();
  const here = new ExportFormatter(opts);
  // The pages read and not yet given to the consumer, in seq order: formatted here (the
  // text, or the error its first bad entry threw, raised when its turn comes so that the
  // export fails on the first bad seq as in-thread) or by the worker (null: its answers
  // come in the order the pages were sent).
  const slots: ({ readonly text: string; readonly lastSeq: number } | { readonly error: unknown } | null)[] =
    [];
  let atWorker = 0;
  let workerCounts = { records: 0, omitted: 0 };
  let reading = true;
  /** The next page that has rows, or null at the end. */
  const nextPage = async (): Promise<readonly ExportSource[] | null> => {
    for (;;) {
      const page = await source.next();
      if (page.done) {
        reading = false;
        return null;
      }
      if (page.value.length > 0) return page.value;
    }
  };
  try {
    worker.post({ type: "start", query: { format: opts.format, filter: opts.filter } });
    const header = exportHeader(opts.format);
    if (header) yield header;
    for (;;) {
      // Keep the worker WORKER_AHEAD pages ahead (every page, when it formats them all).
      while (
        reading &&
        slots.length < MAX_PAGES_IN_FLIGHT &&
        (!share || (worker.ready() && atWorker < WORKER_AHEAD))
      ) {
        const rows = await nextPage();
        if (!rows) break;
        worker.post({ type: "page", rows });
        slots.push(null);
        atWorker++;
      }
      // Rather than wait for the worker (not started yet, or behind), format a page here.
      const waiting = slots.length === 0 || (slots[0] === null && !worker.answered());
      if (share && reading && waiting && slots.length < MAX_PAGES_IN_FLIGHT) {
        const rows = await nextPage();
        if (rows) {
          try {
            let text = "";
            for (const r of rows) text += here.entry(r);
            slots.push({ text, lastSeq: rows[rows.length - 1]!.seq });
          } catch (e) {
            slots.push({ error: e });
            reading = false;
          }
        }
        continue;
      }
      const slot = slots.shift();
      if (slot === undefined) return;
      let out: string | Uint8Array;
      let lastSeq: number;
      if (slot === null) {
        const m = await worker.next();
        if (m.type === "error") throw m.exportError ? new ExportError(m.message) : new Error(m.message);
        if (m.type !== "page") throw new Error(`the export's worker thread answered ${m.type} to a page`);
        atWorker--;
        workerCounts = m;
        out = m.bytes;
        lastSeq = m.lastSeq;
      } else if ("error" in slot) {
        throw slot.error;
      } else {
        out = slot.text;
        lastSeq = slot.lastSeq;
      }
      stats.records = workerCounts.records + here.stats.records;
      stats.omitted = workerCounts.omitted + here.stats.omitted;
      if (opts.onProgress) opts.onProgress(lastSeq);
      if (out.length > 0) yield out;
    }
  } finally {
    if (reading) await source.return?.();
  }
}
