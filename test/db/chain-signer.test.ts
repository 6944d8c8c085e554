/**
 * Decisions signed on a second thread (src/records/chain-signer.ts): the log a group of
 * verdicts leaves must be the very log signing each where it is written leaves, record
 * for record, and a worker that fails must cost nothing but the time to fall back.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { verdictFixture } from "../../bench/setup.js";
import { SqliteStore } from "../../src/adapters/db/sqlite.js";
import { decisionEffects } from "../../src/app/approvals.js";
import type { AdmitInput } from "../../src/app/ports.js";
import { loadConfig } from "../../src/config.js";
import { sha256B64url } from "../../src/domain/canonical.js";
import { ChainSigner } from "../../src/records/chain-signer.js";
import {
  generateSigningKeyPem,
  loadSigningKey,
  recordSigner,
  signingKeyOf,
  signRecord,
} from "../../src/records/signing.js";

const KEY = loadSigningKey(generateSigningKeyPem());
const dirs: string[] = [];

function newStore(): SqliteStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cs-chain-"));
  dirs.push(dir);
  return new SqliteStore(path.join(dir, "c.db"));
}

afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function inputs(n: number): AdmitInput[] {
  const now = Date.now();
  return Array.from({ length: n }, () => {
    const f = verdictFixture(new Date(now));
    return {
      action: f.action,
      proof: { jti: randomUUID(), exp: Math.floor(now / 1000) + 300 },
      job: null,
      maxPending: 1_000,
      events: [],
      effects: (a) => decisionEffects(a, f.action.request),
      decision: { outcome: f.outcome, claims: f.claims },
      now,
    };
  });
}

interface Row {
  seq: number;
  action_id: string;
  jws: string;
  digest: string;
  kid: string;
}

/** Every record is what signRecord gives for its claims, chained to the one before. */
function expectOneChain(store: SqliteStore, n: number): void {
  const rows = store.sqlite
    .prepare("SELECT seq, action_id, jws, digest, kid FROM records ORDER BY seq")
    .all() as Row[];
  expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  let prev: string | null = null;
  for (const r of rows) {
    const payload = JSON.parse(Buffer.from(r.jws.split(".")[1] as string, "base64url").toString("utf8"));
    expect(payload.seq).toBe(r.seq);
    expect(payload.prev).toBe(prev);
    const { seq: _s, prev: _p, ...claims } = payload;
    expect(r.jws).toBe(signRecord(KEY, { ...claims, seq: r.seq, prev }));
    expect(r.digest).toBe(sha256B64url(r.jws));
    expect(r.kid).toBe(KEY.kid);
    const action = store.sqlite.prepare("SELECT record_seq FROM actions WHERE id = ?").get(r.action_id) as {
      record_seq: number;
    };
    expect(action.record_seq).toBe(r.seq);
    prev = r.digest;
  }
}

describe("decisions signed on a second thread", () => {
  it("recordSigner carries its key; a plain function carries none", () => {
    expect(signingKeyOf(recordSigner(KEY))).toBe(KEY);
    expect(signingKeyOf((c: never) => c)).toBeUndefined();
    // SIGN_WORKER=off: the signer signs the same, on the store's own thread.
    expect(signingKeyOf(recordSigner(KEY, { secondThread: false }))).toBeUndefined();
    expect(loadConfig({}, "/tmp").signWorker).toBe(true);
    expect(loadConfig({ SIGN_WORKER: "off" }, "/tmp").signWorker).toBe(false);
    expect(() => loadConfig({ SIGN_WORKER: "no" }, "/tmp")).toThrow(/SIGN_WORKER/);
  });

  it("a group of verdicts leaves the same one chain as signing each in place, and answers with the signed records", async () => {
    const store = newStore();
    store.setSigner(recordSigner(KEY));
    const chain = (store as unknown as { chainSigner: ChainSigner }).chainSigner;
    let collected = 0;
    const collect = chain.collect.bind(chain);
    chain.collect = () => {
      const got = collect();
      collected += got.length;
      return got;
    };
    try {
      // Groups of up to 256: a log that starts empty, then groups after it.
      for (const round of [300, 40]) {
        const done = await Promise.all(inputs(round).map((i) => store.admit(i)));
        for (const r of done) {
          expect(r.kind).toBe("created");
          expect(r.record?.jws).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
          expect(r.record?.digest).toBe(sha256B64url(r.record?.jws ?? ""));
        }
      }
      expectOneChain(store, 340);
      // Signed on the worker, not here (a group of one is signed in place).
      expect(collected).toBeGreaterThanOrEqual(330);
    } finally {
      await store.close();
    }
  });

  it("a write that fails in a group with signed decisions fails alone; the chain stays whole", async () => {
    const store = newStore();
    store.setSigner(recordSigner(KEY));
    try {
      const ins = inputs(50);
      // The same proof twice: the second admit is refused (replayed_proof), mid-group.
      const bad = { ...inputs(1)[0]!, proof: ins[10]!.proof };
      const results = await Promise.allSettled(
        [...ins.slice(0, 25), bad, ...ins.slice(25)].map((i) => store.admit(i)),
      );
      expect(results.filter((r) => r.status === "rejected")).toHaveLength(1);
      expect(results[25]?.status).toBe("rejected");
      expectOneChain(store, 50);
    } finally {
      await store.close();
    }
  });

  it("a worker that fails makes the group sign on the store's thread instead", async () => {
    const store = newStore();
    store.setSigner(recordSigner(KEY));
    try {
      // A worker that never answers: its first group times out, rolls back and runs again here.
      const chain = (store as unknown as { chainSigner: ChainSigner }).chainSigner;
      expect(chain).toBeInstanceOf(ChainSigner);
      (chain as unknown as { timeoutMs: number }).timeoutMs = 200;
      chain.post = function (this: ChainSigner) {
        (this as unknown as { posted: number }).posted++;
        (this as unknown as { start(): void }).start();
        return true;
      };
      const done = await Promise.all(inputs(30).map((i) => store.admit(i)));
      expect(done.every((r) => r.kind === "created" && r.record !== null)).toBe(true);
      expect(chain.usable).toBe(false);
      await Promise.all(inputs(30).map((i) => store.admit(i)));
      expectOneChain(store, 60);
    } finally {
      await store.close();
    }
  });

  it("the worker signs what signRecord signs, chained from the head it is given", () => {
    const signer = new ChainSigner(KEY);
    try {
      const claims = inputs(3).map((i) => i.decision!.claims);
      signer.begin("h".repeat(43));
      for (const [i, c] of claims.entries()) expect(signer.post(c, 7 + i)).toBe(true);
      // Claims that carry a seq or prev of their own cannot be spliced as text: refused, signed in place.
      expect(signer.post({ ...claims[0]!, seq: 1 } as never, 10)).toBe(false);
      const got = signer.collect();
      // The chain goes on after a collect without a new begin.
      for (const [i, c] of claims.slice(0, 2).entries()) signer.post(c, 10 + i);
      const more = signer.collect();
      expect(more.map((m) => m.seq)).toEqual([10, 11]);
      expect(more[0]?.jws).toBe(signRecord(KEY, { ...claims[0]!, seq: 10, prev: got[2]!.digest }));
      expect(more[1]?.jws).toBe(signRecord(KEY, { ...claims[1]!, seq: 11, prev: more[0]!.digest }));
      let prev: string | null = "h".repeat(43);
      got.forEach((g, i) => {
        expect(g.seq).toBe(7 + i);
        expect(g.jws).toBe(signRecord(KEY, { ...claims[i]!, seq: 7 + i, prev }));
        prev = g.digest;
      });
    } finally {
      void signer.close();
    }
  });
});
