import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { openLedgerStore, StoreError, type LedgerStore } from "./ledger-store.js";
import { abort, commit, prepare } from "../domain/participant.js";
import { BALANCE_MINOR_MAX, deposit, openAccount, openSeedAccounts } from "../domain/ledger.js";
import { reconcile } from "../domain/reconcile.js";
import { issueLinkCode, seedHolders, verifyLink } from "../domain/links.js";

const BANK = "bank-a";
const NOW = 1_700_000_000_000;
const SEED = [
  { id: "bank-a/1001", owner: "alice", currency: "USD", openingMinor: 10_000n },
  { id: "bank-a/1002", owner: "bob", currency: "USD", openingMinor: 0n },
  { id: "bank-b/2001", owner: "bob", currency: "USD", openingMinor: 5_000n },
];
const T1 = "gateway-0:11111111-1111-4111-8111-111111111111";
const T2 = "gateway-1:22222222-2222-4222-8222-222222222222";
const T3 = "gateway-0:33333333-3333-4333-8333-333333333333";

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "bank-store-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Mirrors main.ts: the seed is read (counted here) only when the store is not seeded yet. */
function seedIfNeeded(store: LedgerStore, reads: { n: number }): void {
  if (store.isSeeded()) return;
  reads.n++;
  store.seed((tx) => openSeedAccounts(tx, BANK, SEED, NOW));
}

function assertConsistent(store: LedgerStore): void {
  const r = reconcile(store.audit());
  assert.deepEqual(r.problems, []);
  assert.equal(r.consistent, true);
  for (const c of r.currencies) assert.equal(c.balanceMinor, c.depositedMinor + c.transferNetMinor, c.currency);
}

test("restart keeps balances, prepared txns and their holds; the seed loads once", () => {
  withDir((dir) => {
    const reads = { n: 0 };
    let store = openLedgerStore({ dataDir: join(dir, "bank-a"), bank: BANK });
    seedIfNeeded(store, reads);
    assert.equal(store.accountCount(), 2);
    const legs = [
      {
        accountId: "bank-a/1001",
        direction: "debit" as const,
        amountMinor: 3_000n,
        currency: "USD",
        ownerUserId: "alice",
      },
      { accountId: "bank-a/1002", direction: "credit" as const, amountMinor: 3_000n, currency: "USD", ownerUserId: "" },
    ];
    const p1 = store.transact((tx) => prepare(tx, BANK, { txnId: T1, legs }, NOW));
    assert.deepEqual(p1, { ok: true, value: { vote: "yes", redelivered: false } });
    const p2 = store.transact((tx) =>
      prepare(tx, BANK, { txnId: T2, legs: [{ ...legs[0]!, amountMinor: 1_000n }] }, NOW + 5),
    );
    assert.ok(p2.ok && p2.value.vote === "yes");
    assert.ok(store.transact((tx) => commit(tx, T1, NOW + 10)).ok);
    const p3 = store.transact((tx) =>
      prepare(tx, BANK, { txnId: T3, legs: [{ ...legs[0]!, amountMinor: 6_001n }] }, NOW),
    );
    assert.ok(p3.ok && p3.value.vote === "no" && p3.value.reason === "insufficient_funds");
    assertConsistent(store);
    store.close();

    store = openLedgerStore({ dataDir: join(dir, "bank-a"), bank: BANK });
    seedIfNeeded(store, reads);
    assert.equal(reads.n, 1, "the seed is read at first start only");
    assert.equal(store.accountCount(), 2);
    const a = store.account("bank-a/1001")!;
    assert.deepEqual(
      [a.balanceMinor, a.heldMinor, a.ownerUserId, a.currency, a.status],
      [7_000n, 1_000n, "alice", "USD", "open"],
    );
    assert.equal(store.account("bank-a/1002")!.balanceMinor, 3_000n);
    assert.deepEqual(store.prepared(10), [{ txnId: T2, coordinator: "gateway-1", preparedAtMs: NOW + 5 }]);
    assert.deepEqual(store.preparedBefore(NOW + 5, 10), []);
    assert.deepEqual(
      store.preparedBefore(NOW + 6, 10).map((p) => p.txnId),
      [T2],
    );
    const t3 = store.txn(T3)!;
    assert.deepEqual(
      [t3.state, t3.voteReason, t3.tombstone, t3.preparedAtMs],
      ["ABORTED", "insufficient_funds", false, undefined],
    );
    assert.deepEqual(
      store.listEntries("bank-a/1001", 0n, 1000).map((e) => [e.kind, e.amountMinor, e.balanceAfterMinor]),
      [
        ["opening", 10_000n, 10_000n],
        ["transfer_debit", -3_000n, 7_000n],
      ],
    );
    // The hold survived: the prepared txn can still be aborted after the restart.
    assert.ok(store.transact((tx) => abort(tx, T2, NOW + 20)).ok);
    assert.equal(store.account("bank-a/1001")!.heldMinor, 0n);
    assert.deepEqual(store.prepared(10), []);
    assertConsistent(store);
    store.close();
  });
});

test("the ledger file is in WAL mode, belongs to one bank and is seeded at most once", () => {
  withDir((dir) => {
    const store = openLedgerStore({ dataDir: dir, bank: BANK });
    store.close();
    const db = new Database(join(dir, "ledger.db"));
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    db.close();
    assert.throws(() => openLedgerStore({ dataDir: dir, bank: "bank-b" }), StoreError);
    const again = openLedgerStore({ dataDir: dir, bank: BANK });
    again.seed(() => 0);
    assert.throws(() => again.seed(() => 0), StoreError);
    again.close();
  });
});

test("credits prepared on an account are counted against the balance maximum, across a restart; decided ones are not", () => {
  withDir((dir) => {
    const near = [{ id: "bank-a/1009", owner: "bob", currency: "USD", openingMinor: BALANCE_MINOR_MAX - 100n }];
    let store = openLedgerStore({ dataDir: dir, bank: BANK });
    store.seed((tx) => openSeedAccounts(tx, BANK, [...SEED, ...near], NOW));
    const credit = (amountMinor: bigint) => [
      { accountId: "bank-a/1009", direction: "credit" as const, amountMinor, currency: "USD", ownerUserId: "" },
    ];
    assert.deepEqual(
      store.transact((tx) => prepare(tx, BANK, { txnId: T1, legs: credit(60n) }, NOW)),
      { ok: true, value: { vote: "yes", redelivered: false } },
    );
    assert.equal(
      store.transact((tx) => tx.preparedCreditMinor?.("bank-a/1009")),
      60n,
    );
    assert.equal(
      store.transact((tx) => tx.preparedCreditMinor?.("bank-a/1001")),
      0n,
    );
    store.close();
    store = openLedgerStore({ dataDir: dir, bank: BANK });
    const no = store.transact((tx) => prepare(tx, BANK, { txnId: T2, legs: credit(60n) }, NOW));
    assert.ok(
      no.ok && no.value.vote === "no" && no.value.reason === "balance_limit_exceeded",
      JSON.stringify(no.ok && no.value),
    );
    assert.ok(store.transact((tx) => abort(tx, T1, NOW + 1)).ok);
    assert.equal(
      store.transact((tx) => tx.preparedCreditMinor?.("bank-a/1009")),
      0n,
      "an aborted credit no longer counts",
    );
    assert.ok(store.transact((tx) => prepare(tx, BANK, { txnId: T3, legs: credit(100n) }, NOW)).ok);
    assert.ok(store.transact((tx) => commit(tx, T3, NOW + 2)).ok);
    assert.equal(store.account("bank-a/1009")?.balanceMinor, BALANCE_MINOR_MAX);
    assertConsistent(store);
    store.close();
  });
});

test("listEntries pages by sequence; open account picks the next number; deposits are journaled", () => {
  withDir((dir) => {
    const store = openLedgerStore({ dataDir: dir, bank: BANK });
    store.seed((tx) => openSeedAccounts(tx, BANK, SEED, NOW));
    const opened = store.transact((tx) =>
      openAccount(tx, BANK, { ownerUserId: "carol", currency: "EUR", accountId: "" }, NOW),
    );
    assert.ok(opened.ok);
    assert.equal(opened.value.accountId, "bank-a/1003");
    for (let i = 0; i < 5; i++)
      assert.ok(
        store.transact((tx) =>
          deposit(tx, BANK, { depositId: `d-${i}`, accountId: "bank-a/1003", amountMinor: 100n, currency: "EUR" }, NOW),
        ).ok,
      );
    const all = store.listEntries("bank-a/1003", 0n, 1000);
    assert.deepEqual(
      all.map((e) => e.balanceAfterMinor),
      [0n, 100n, 200n, 300n, 400n, 500n],
    );
    const page = store.listEntries("bank-a/1003", all[2]!.sequence, 2);
    assert.deepEqual(
      page.map((e) => e.sequence),
      [all[3]!.sequence, all[4]!.sequence],
    );
    assertConsistent(store);
    store.close();
  });
});

test("transactAll applies many operations in one transaction and rolls all back on a throw", () => {
  withDir((dir) => {
    const store = openLedgerStore({ dataDir: dir, bank: BANK });
    store.seed((tx) => openSeedAccounts(tx, BANK, SEED, NOW));
    const ids = [T1, T2, T3];
    const debit = (txnId: string) => (tx: Parameters<Parameters<LedgerStore["transact"]>[0]>[0]) =>
      prepare(
        tx,
        BANK,
        {
          txnId,
          legs: [
            { accountId: "bank-a/1001", direction: "debit", amountMinor: 4_000n, currency: "USD", ownerUserId: "" },
          ],
        },
        NOW,
      );
    const votes = store.transactAll(ids.map(debit));
    // The third sees the holds of the first two in the same transaction.
    assert.deepEqual(
      votes.map((v) => v.ok && v.value.vote),
      ["yes", "yes", "no"],
    );
    assert.equal(store.account("bank-a/1001")!.heldMinor, 8_000n);
    assert.throws(() =>
      store.transactAll([
        (tx) => commit(tx, T1, NOW),
        () => {
          throw new Error("boom");
        },
      ]),
    );
    assert.equal(store.txn(T1)!.state, "PREPARED");
    assert.equal(store.account("bank-a/1001")!.balanceMinor, 10_000n);
    assertConsistent(store);
    store.close();
  });
});

test("reconciliation reads the file independently and notices a tampered balance", () => {
  withDir((dir) => {
    const store = openLedgerStore({ dataDir: dir, bank: BANK });
    store.seed((tx) => openSeedAccounts(tx, BANK, SEED, NOW));
    store.close();
    const db = new Database(join(dir, "ledger.db"));
    db.prepare("UPDATE accounts SET balance_minor = balance_minor + 1 WHERE account_id = 'bank-a/1002'").run();
    db.close();
    const reopened = openLedgerStore({ dataDir: dir, bank: BANK });
    const r = reconcile(reopened.audit());
    assert.equal(r.consistent, false);
    assert.match(r.problems.join("\n"), /bank-a\/1002: balance 1 != sum of entries 0/);
    assert.match(r.problems.join("\n"), /bank-a\/1002: balance 1 != last balance_after 0/);
    reopened.close();
  });
});

test("linking on SQLite: the owner, failed attempts and the lock survive a restart; a failure rolls nothing else back", () => {
  withDir((dir) => {
    let store = openLedgerStore({ dataDir: dir, bank: BANK });
    store.seed((tx, links) => {
      openSeedAccounts(
        tx,
        BANK,
        [...SEED, { id: "bank-a/1004", owner: "", currency: "USD", openingMinor: 20_000n }],
        NOW,
      );
      return seedHolders(
        links,
        BANK,
        [
          { id: "bank-a/1004", holder: "Dana Newcomer", linkCode: "DANA-2026-LINK" },
          { id: "bank-a/1005", holder: "Nobody Here", linkCode: "ABCD-EFGH-JKLM" },
        ],
        NOW,
      );
    });
    const verify = (linkCode: string, userId = "dana") =>
      store.transactLinks((tx) =>
        verifyLink(tx, BANK, { accountId: "bank-a/1004", holderName: "Dana Newcomer", linkCode, userId }, NOW, 3),
      );
    assert.equal(store.account("bank-a/1004")?.ownerUserId, "");
    assert.deepEqual([verify("WRONG-CODE-1").ok, verify("WRONG-CODE-2").ok], [false, false]);
    store.close();
    store = openLedgerStore({ dataDir: dir, bank: BANK });
    const third = verify("WRONG-CODE-3");
    assert.equal(!third.ok && third.reason, "link_locked", "the two failures before the restart counted");
    store.close();
    store = openLedgerStore({ dataDir: dir, bank: BANK });
    const right = verify("DANA-2026-LINK");
    assert.equal(!right.ok && right.reason, "link_locked", "the lock survived the restart");
    assert.ok(
      store.transactLinks((tx) =>
        issueLinkCode(tx, BANK, { accountId: "bank-a/1004", holderName: "" }, NOW, () => "K7QF9XMB3TRW"),
      ).ok,
    );
    assert.ok(verify("K7QF-9XMB-3TRW").ok);
    store.close();
    store = openLedgerStore({ dataDir: dir, bank: BANK });
    assert.equal(store.account("bank-a/1004")?.ownerUserId, "dana");
    assertConsistent(store);
    store.close();
  });
});
