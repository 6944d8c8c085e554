/**
 * Passkeys on both stores (SQLite file, PostgreSQL schema): credentials per Slack user,
 * their `passkey_registered` entries chained into the one log, and one-time links that
 * are spent exactly once even when redeemed concurrently from two handles (two processes).
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PostgresStore } from "../../src/adapters/db/postgres.js";
import { SqliteStore } from "../../src/adapters/db/sqlite.js";
import type { PasskeyCredential, PasskeyLink, Store } from "../../src/app/ports.js";
import { sha256B64url } from "../../src/domain/canonical.js";
import type { PasskeyRegisteredReceiptClaims } from "../../src/domain/types.js";
import { generateSigningKeyPem, loadSigningKey, signReceipt, verifyJws } from "../../src/records/signing.js";
import { dropSchema, PG_URL } from "../support/harness.js";

const KEY = loadSigningKey(generateSigningKeyPem());
const T0 = Date.parse("2030-01-07T09:00:00Z");

type Opened = Store & { setReceiptSigner(s: (c: never) => { jws: string; kid: string }): void };

interface Backend {
  readonly name: string;
  create(): Promise<{ open(): Promise<Store>; drop(): Promise<void> }>;
}

function withSigner<S extends Store>(s: S): S {
  (s as unknown as Opened).setReceiptSigner(((c: PasskeyRegisteredReceiptClaims) => ({
    jws: signReceipt(KEY, c),
    kid: KEY.kid,
  })) as never);
  return s;
}

const backends: Backend[] = [
  {
    name: "sqlite",
    async create() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "countersign-passkeys-"));
      const file = path.join(dir, "store.db");
      const opened: Store[] = [];
      return {
        async open() {
          const s = withSigner(new SqliteStore(file));
          opened.push(s);
          return s;
        },
        async drop() {
          for (const s of opened) await s.close();
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: "postgres",
    async create() {
      const schema = `test_${randomUUID().replaceAll("-", "")}`;
      const opened: Store[] = [];
      return {
        async open() {
          const s = withSigner(await PostgresStore.open(PG_URL, { schema, poolSize: 4 }));
          opened.push(s);
          return s;
        },
        async drop() {
          for (const s of opened) await s.close();
          await dropSchema(schema);
        },
      };
    },
  },
];

function credential(over: Partial<PasskeyCredential> = {}): PasskeyCredential {
  return {
    credentialId: `cred-${randomUUID()}`,
    team: "T0TEST",
    user: "U0ALICE",
    publicKeyCose: "pQECAyYgASFYIA",
    publicKey: { kty: "EC", crv: "P-256", x: "xx", y: "yy" },
    counter: 0,
    label: "laptop",
    transports: ["internal"],
    createdAt: T0,
    ...over,
  };
}

function claims(c: PasskeyCredential, at: number): Omit<PasskeyRegisteredReceiptClaims, "seq" | "prev"> {
  return {
    ver: 1,
    iss: "https://countersign.test",
    jti: `rct_${randomUUID()}`,
    iat: Math.floor(at / 1000),
    at: new Date(at).toISOString(),
    kind: "passkey_registered",
    user: c.user,
    team: c.team,
    credential_id: c.credentialId,
    public_key: c.publicKey,
  };
}

function link(over: Partial<PasskeyLink> = {}): PasskeyLink {
  return {
    tokenHash: sha256B64url(randomUUID()),
    purpose: "approve",
    team: "T0TEST",
    user: "U0ALICE",
    actionId: "act_x",
    level: 1,
    actionSha256: "digest",
    revision: null,
    comment: "looks right",
    nonce: "nonce-1",
    createdAt: T0,
    expiresAt: T0 + 5 * 60_000,
    usedAt: null,
    ...over,
  };
}

for (const b of backends) {
  describe(`passkeys on ${b.name}`, () => {
    let env: Awaited<ReturnType<Backend["create"]>>;
    let store: Store;
    beforeEach(async () => {
      env = await b.create();
      store = await env.open();
    });
    afterEach(async () => env.drop());

    it("keeps credentials per user, chains each registration into the log, and removes only the owner's", async () => {
      const a1 = credential();
      const a2 = credential({ label: "phone", createdAt: T0 + 1 });
      const bob = credential({ user: "U0BOB" });
      const r1 = await store.registerPasskey(a1, claims(a1, T0), T0);
      const r2 = await store.registerPasskey(a2, claims(a2, T0 + 1), T0 + 1);
      await store.registerPasskey(bob, claims(bob, T0 + 2), T0 + 2);
      expect([r1.seq, r2.seq]).toEqual([1, 2]);
      const p1 = verifyJws(r1.jws, [KEY.publicJwk], "receipt+jwt")
        .payload as unknown as PasskeyRegisteredReceiptClaims;
      const p2 = verifyJws(r2.jws, [KEY.publicJwk], "receipt+jwt")
        .payload as unknown as PasskeyRegisteredReceiptClaims;
      expect(p1).toMatchObject({
        kind: "passkey_registered",
        seq: 1,
        prev: null,
        credential_id: a1.credentialId,
      });
      expect(p2.prev).toBe(sha256B64url(r1.jws));
      expect(p2.public_key).toEqual(a2.publicKey);
      // Each registration's DM to its owner is in the outbox, committed with it.
      const dms = (await store.claimEffects(T0 + 10, 10, 1000)).filter((e) => e.kind === "dm");
      expect(dms.map((e) => [e.actionId, e.payload.to, e.payload.why, e.payload.label])).toEqual([
        [null, "U0ALICE", "passkey_registered", "laptop"],
        [null, "U0ALICE", "passkey_registered", "phone"],
        [null, "U0BOB", "passkey_registered", a1.label],
      ]);

      const mine = await store.passkeysOf("T0TEST", "U0ALICE");
      expect(mine.map((c) => c.label)).toEqual(["laptop", "phone"]);
      expect(mine[0]).toEqual(a1);
      expect(await store.getPasskey(bob.credentialId)).toEqual(bob);

      await expect(store.registerPasskey(a1, claims(a1, T0 + 3), T0 + 3)).rejects.toMatchObject({
        code: "passkey_exists",
      });

      expect(await store.removePasskey("T0TEST", "U0ALICE", bob.credentialId, T0 + 4)).toBe(false);
      expect(await store.removePasskey("T0TEST", "U0ALICE", a1.credentialId, T0 + 4)).toBe(true);
      expect((await store.passkeysOf("T0TEST", "U0ALICE")).map((c) => c.credentialId)).toEqual([
        a2.credentialId,
      ]);
      await store.setPasskeyCounter(a2.credentialId, 7);
      expect((await store.getPasskey(a2.credentialId))?.counter).toBe(7);
    });

    it("spends a link once, refuses it expired, and lets exactly one of concurrent redemptions through", async () => {
      const l = link();
      await store.savePasskeyLink(l);
      expect(await store.getPasskeyLink(l.tokenHash)).toEqual(l);
      expect(await store.redeemPasskeyLink(l.tokenHash, l.expiresAt)).toBeNull(); // at expiry: expired
      const spent = await store.redeemPasskeyLink(l.tokenHash, T0 + 1000);
      expect(spent).toEqual({ ...l, usedAt: T0 + 1000 });
      expect(await store.redeemPasskeyLink(l.tokenHash, T0 + 2000)).toBeNull();
      expect(await store.redeemPasskeyLink(sha256B64url("unknown"), T0)).toBeNull();

      const other = await env.open();
      const links = Array.from({ length: 10 }, () =>
        link({ purpose: "register", actionId: null, level: null }),
      );
      for (const x of links) await store.savePasskeyLink(x);
      for (const x of links) {
        const got = await Promise.all(
          [store, other, store, other].map((s) => s.redeemPasskeyLink(x.tokenHash, T0 + 10)),
        );
        expect(got.filter((g) => g !== null)).toHaveLength(1);
      }
    });
  });
}
