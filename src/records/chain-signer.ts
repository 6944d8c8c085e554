/**
 * Decision records signed on a second thread, in chain order, while the store's thread
 * goes on writing the rest of a group (docs/performance.md, issue 22).
 *
 * The chain makes record n's `prev` the digest of record n-1's JWS, so signing is one
 * sequence whoever does it. What can overlap is the rest: SqliteStore's group commit runs
 * up to 256 writes in one synchronous transaction, and each verdict's other statements
 * (the action, its events and effects, the close) take longer than its signature. So the
 * store takes each record's seq at once, posts the claims to this worker, and goes on;
 * the worker signs them in order, chaining each to the digest of the one before (it is
 * given the log's head digest with the first of a batch); before the COMMIT the store
 * waits for the signatures (Atomics.wait: better-sqlite3's transaction cannot span an
 * await) and inserts the records, so nothing is committed, let alone acknowledged,
 * before it is signed. The worker signs exactly what `signRecord` would: the same header
 * text, the same claims object (`{...claims, seq, prev}`), Ed25519 being deterministic.
 *
 * If the worker fails, is slow beyond `timeoutMs` or exits, `collect` throws and the
 * signer stays broken: the store's group then rolls back and runs again signing on its
 * own thread, as it does without a worker.
 */
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from "node:worker_threads";
import type { UnchainedClaims } from "../app/ports.js";
import { encodedHeader, type SigningKey } from "./signing.js";

/** One signed record, as the worker returns it. */
export interface ChainedSignature {
  readonly seq: number;
  readonly jws: string;
  readonly digest: string;
}

/**
 * The worker, plain JavaScript run with `eval` so that the same text serves the compiled
 * build and the sources under tsx. It takes every message already queued before it
 * answers, so a burst costs one answer per run of its loop rather than one per record.
 */
const WORKER_SOURCE = `
const { parentPort, workerData, receiveMessageOnPort } = require("node:worker_threads");
const { createPrivateKey, createHash, sign } = require("node:crypto");
const key = createPrivateKey(workerData.pem);
const header = workerData.header;
const out = workerData.port;
const flag = new Int32Array(workerData.flag);
let batch = -1;
let prev = null;
function one(m, results) {
  if (m.b !== batch) {
    batch = m.b;
    prev = m.prev;
  }
  for (let i = 0; i < m.s.length; i++) {
    const seq = m.s[i];
    const json = m.c[i] + "," + '"seq":' + JSON.stringify(seq) + ',"prev":' + JSON.stringify(prev) + "}";
    const payload = Buffer.from(json, "utf8").toString("base64url");
    const input = header + "." + payload;
    const jws = input + "." + sign(null, Buffer.from(input, "utf8"), key).toString("base64url");
    const digest = createHash("sha256").update(jws).digest("base64url");
    prev = digest;
    results.push({ b: m.b, s: seq, jws, digest });
  }
}
parentPort.on("message", (first) => {
  const results = [];
  try {
    one(first, results);
    for (let r = receiveMessageOnPort(parentPort); r; r = receiveMessageOnPort(parentPort)) one(r.message, results);
  } catch (e) {
    results.push({ b: batch, error: String(e && e.stack || e) });
  }
  out.postMessage(results);
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
});
`;

interface Answer {
  readonly b: number;
  readonly s?: number;
  readonly jws?: string;
  readonly digest?: string;
  readonly error?: string;
}

/**
 * Records per message to the worker. A message costs the store's thread far more than
 * cloning a record's claims (a profile of a storm put one message per record at twice
 * the signature it hands over), and a chunk still lets the worker start on a group's
 * first records while the store writes the rest.
 */
const CHUNK = 16;

export class ChainSigner {
  private worker: Worker | null = null;
  private port: MessagePort | null = null;
  private flag: Int32Array | null = null;
  private broken = false;
  private batch = 0;
  /** The head digest to send with the batch's first record; undefined once sent. */
  private startPrev: string | null | undefined;
  private posted = 0;
  /** Records handed over but not yet posted: they go to the worker CHUNK at a time. */
  private readonly seqs: number[] = [];
  /** Each record's claims as JSON without the closing brace (see post). */
  private readonly claims: string[] = [];
  private readonly received: ChainedSignature[] = [];

  constructor(
    private readonly key: SigningKey,
    private readonly timeoutMs = 10_000,
  ) {}

  get kid(): string {
    return this.key.kid;
  }

  /** False once the worker has failed: the caller signs on its own thread from then on. */
  get usable(): boolean {
    return !this.broken;
  }

  /** Starts a chain of records after the log's head `prev` (null: the first record of the log). */
  begin(prev: string | null): void {
    this.batch++;
    this.startPrev = prev;
    this.posted = 0;
    this.seqs.length = 0;
    this.claims.length = 0;
    this.received.length = 0;
  }

  /** Hands the worker the next record of the chain begun; its signature comes with collect. */
  /**
   * False, and nothing posted, for claims this cannot hand over as text: the store then
   * signs them in place. The claims go as JSON text (cloning the object for the worker
   * cost more than its signature); the worker appends seq and prev, which gives the text
   * of `{...claims, seq, prev}` exactly when the claims have keys of their own and
   * neither a seq nor a prev among them, as UnchainedClaims never has.
   */
  post(claims: UnchainedClaims, seq: number): boolean {
    if (Object.hasOwn(claims, "seq") || Object.hasOwn(claims, "prev")) return false;
    const json = JSON.stringify(claims);
    if (json.length < 3 || json[json.length - 1] !== "}") return false;
    this.seqs.push(seq);
    this.claims.push(json.slice(0, -1));
    this.posted++;
    if (this.seqs.length >= CHUNK) this.send();
    return true;
  }

  /** Posts the records handed over since the last post, as one message. */
  private send(): void {
    if (!this.seqs.length) return;
    const w = this.start();
    const m: { b: number; s: number[]; c: string[]; prev?: string | null } = {
      b: this.batch,
      s: this.seqs.splice(0),
      c: this.claims.splice(0),
    };
    if (this.startPrev !== undefined) {
      m.prev = this.startPrev;
      this.startPrev = undefined;
    }
    w.postMessage(m);
  }

  /** Waits for the signatures of every record posted since begin or the last collect, in chain order. */
  collect(): ChainedSignature[] {
    if (!this.broken) this.send();
    const port = this.port;
    const flag = this.flag;
    if (this.broken || !port || !flag) throw this.fail("the signing worker is not running");
    const until = Date.now() + this.timeoutMs;
    while (this.received.length < this.posted) {
      // Read the counter before looking at the port: an answer posted after the look moves
      // the counter after this read, so the wait below cannot sleep through it.
      const seen = Atomics.load(flag, 0);
      const got = receiveMessageOnPort(port);
      if (got) {
        for (const a of got.message as Answer[]) {
          if (a.b !== this.batch) continue; // an abandoned batch (its group rolled back)
          if (a.error !== undefined) throw this.fail(`the signing worker failed: ${a.error}`);
          this.received.push({ seq: a.s as number, jws: a.jws as string, digest: a.digest as string });
        }
        continue;
      }
      const left = until - Date.now();
      if (left <= 0 || Atomics.wait(flag, 0, seen, left) === "timed-out")
        throw this.fail(`the signing worker did not answer within ${this.timeoutMs} ms`);
    }
    // The chain goes on from here if more records are posted without a new begin.
    this.posted = 0;
    return this.received.splice(0);
  }

  close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    this.port?.close();
    this.port = null;
    this.broken = true;
    return w ? w.terminate().then(() => undefined) : Promise.resolve();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    if (this.broken) throw this.fail("the signing worker is not running");
    const { port1, port2 } = new MessageChannel();
    const flag = new SharedArrayBuffer(4);
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        pem: this.key.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
        header: encodedHeader(this.key, "decision+jwt"),
        port: port2,
        flag,
      },
      transferList: [port2],
    });
    worker.unref();
    worker.on("error", () => {
      this.broken = true;
    });
    worker.on("exit", () => {
      this.broken = true;
    });
    port1.unref();
    this.worker = worker;
    this.port = port1;
    this.flag = new Int32Array(flag);
    return worker;
  }

  private fail(message: string): Error {
    this.broken = true;
    const w = this.worker;
    this.worker = null;
    void w?.terminate();
    return new Error(message);
  }
}
