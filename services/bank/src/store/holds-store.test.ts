// Standing holds on the real SQLite ledger: the audit query's view of held
// (ACTIVE holds + prepared debits), pins and holds surviving a restart, the
// sweep's query, and the v1 -> v2 migration of an existing ledger file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { openLedgerStore, type LedgerStore } from "./ledger-store.js";
import { abort, commit, prepare, type LegInput } from "../domain/participant.js";
import { expireDueHolds } from "../domain/holds.js";
import { openSeedAccounts } from "../domain/ledger.js";
import { reconcile } from "../domain/reconcile.js";

const BANK = "bank-a";
const NOW = 1_700_000_000_000;
const T = (n: number) => `gateway-0:00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "bank-holds-"));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function assertConsistent(store: LedgerStore): void {
  const r = reconcile(store.audit());
  assert.deepEqual(r.problems, []);
  for (const c of r.currencies) assert.equal(c.balanceMinor, c.depositedMinor + c.transferNetMinor, c.currency);
}

const leg = (
  direction: LegInput["direction"],
  accountId: string,
  amountMinor: bigint,
  holdId?: string,
  holdExpiresAtMs?: number,
): LegInput => ({
  accountId,
  direction,
  amountMinor,
  currency: "USD",
  ownerUserId: "",
  ...(holdId ? { holdId } : {}),
  ...(holdExpiresAtMs ? { holdExpiresAtMs } : {}),
});

function yes(store: LedgerStore, txnId: string, legs: LegInput[], at: number): void {
  const r = store.transact((tx) => prepare(tx, BANK, { txnId, legs }, at));
  assert.ok(r.ok && r.value.vote === "yes", JSON.stringify(r));
}

test("holds on SQLite: audit counts ACTIVE holds and prepared auth_holds; pins and holds survive a restart", () => {
  withDir((dir) => {
    let store = openLedgerStore({ dataDir: dir, bank: BANK });
    store.seed((tx) =>
      openSeedAccounts(
        tx,
        BANK,
        [
          { id: "bank-a/1001", owner: "alice", currency: "USD", openingMinor: 10_000n },
          { id: "bank-a/1002", owner: "shop", currency: "USD", openingMinor: 0n },
        ],
        NOW,
      ),
    );
    yes(store, T(1), [leg("auth_hold", "bank-a/1001", 4_000n, "auth-1", NOW + 1_000)], NOW);
    assertConsistent(store); // prepared auth_hold counts toward held
    assert.ok(store.transact((tx) => commit(tx, T(1), NOW)).ok);
    yes(store, T(2), [leg("auth_hold", "bank-a/1001", 1_000n, "auth-2", NOW + 1_000)], NOW);
    assert.ok(store.transact((tx) => commit(tx, T(2), NOW)).ok);
    assertConsistent(store); // ACTIVE holds count toward held
    // A capture claims auth-1; then the process "restarts".
    yes(store, T(3), [leg("capture", "bank-a/1001", 2_500n, "auth-1"), leg("credit", "bank-a/1002", 2_500n)], NOW + 10);
    store.close();

    store = openLedgerStore({ dataDir: dir, bank: BANK });
    assert.equal(store.hold("auth-1")?.pinnedTxnId, T(3));
    assert.equal(store.account("bank-a/1001")?.heldMinor, 5_000n);
    // Past the expiry: only the unclaimed hold is swept.
    const expired = store.transact((tx) => expireDueHolds(tx, NOW + 5_000));
    assert.deepEqual(
      expired.map((h) => h.holdId),
      ["auth-2"],
    );
    assert.equal(store.hold("auth-2")?.state, "EXPIRED");
    assertConsistent(store);
    assert.ok(store.transact((tx) => commit(tx, T(3), NOW + 5_000)).ok);
    const h = store.hold("auth-1")!;
    assert.deepEqual([h.state, h.capturedMinor, h.pinnedTxnId], ["CAPTURED", 2_500n, ""]);
    assert.deepEqual(
      [store.account("bank-a/1001")?.balanceMinor, store.account("bank-a/1001")?.heldMinor],
      [7_500n, 0n],
    );
    assert.equal(store.account("bank-a/1002")?.balanceMinor, 2_500n);
    assert.deepEqual(
      store.listEntries("bank-a/1001", 0n, 10).map((e) => e.kind),
      ["opening", "capture_debit"],
    );
    // The stored legs keep their hold fields (a re-delivered Prepare compares them).
    assert.deepEqual(
      store.transact((tx) => tx.txnLegs(T(1))).map((l) => [l.direction, l.holdId, l.holdExpiresAtMs]),
      [["auth_hold", "auth-1", NOW + 1_000]],
    );
    assertConsistent(store);

    // Abort of a release un-claims the hold; the hold table CHECKs hold.
    yes(store, T(4), [leg("auth_hold", "bank-a/1001", 100n, "auth-3", NOW + 100_000)], NOW);
    assert.ok(store.transact((tx) => commit(tx, T(4), NOW)).ok);
    yes(store, T(5), [leg("release", "bank-a/1001", 100n, "auth-3")], NOW);
    assert.ok(store.transact((tx) => abort(tx, T(5), NOW)).ok);
    assert.equal(store.hold("auth-3")?.pinnedTxnId, "");
    assertConsistent(store);
    store.close();
  });
});

// The v1 schema as shipped before card holds (kept here only to test the migration).
const V1 = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE accounts (account_id TEXT PRIMARY KEY, number INTEGER NOT NULL, owner_user_id TEXT NOT NULL, currency TEXT NOT NULL,
  balance_minor INTEGER NOT NULL, held_minor INTEGER NOT NULL CHECK (held_minor >= 0), status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
  opened_at_ms INTEGER NOT NULL, CHECK (balance_minor - held_minor >= 0)) STRICT;
CREATE TABLE entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT NOT NULL REFERENCES accounts (account_id), txn_id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('opening', 'deposit', 'transfer_debit', 'transfer_credit')), amount_minor INTEGER NOT NULL,
  balance_after_minor INTEGER NOT NULL, created_at_ms INTEGER NOT NULL) STRICT;
CREATE INDEX entries_by_account ON entries (account_id, seq);
CREATE TABLE txns (txn_id TEXT PRIMARY KEY, state TEXT NOT NULL CHECK (state IN ('PREPARED', 'COMMITTED', 'ABORTED')), coordinator TEXT NOT NULL,
  prepared_at_ms INTEGER, decided_at_ms INTEGER, tombstone INTEGER NOT NULL CHECK (tombstone IN (0, 1)), vote_reason TEXT) STRICT;
CREATE TABLE txn_legs (txn_id TEXT NOT NULL REFERENCES txns (txn_id), leg_index INTEGER NOT NULL, account_id TEXT NOT NULL REFERENCES accounts (account_id),
  direction TEXT NOT NULL CHECK (direction IN ('debit', 'credit')), amount_minor INTEGER NOT NULL CHECK (amount_minor > 0), currency TEXT NOT NULL,
  PRIMARY KEY (txn_id, leg_index)) STRICT, WITHOUT ROWID;
CREATE TABLE deposits (deposit_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts (account_id), amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
  currency TEXT NOT NULL, created_at_ms INTEGER NOT NULL) STRICT;
INSERT INTO meta VALUES ('bank_name', 'bank-a'), ('schema_version', '1'), ('seed_loaded', 'yes');
INSERT INTO accounts VALUES ('bank-a/1001', 1001, 'alice', 'USD', 900, 100, 'open', 0), ('bank-a/1002', 1002, 'bob', 'USD', 100, 0, 'open', 0);
INSERT INTO entries (account_id, txn_id, kind, amount_minor, balance_after_minor, created_at_ms) VALUES
  ('bank-a/1001', 'opening', 'opening', 1000, 1000, 0), ('bank-a/1002', 'opening', 'opening', 0, 0, 0),
  ('bank-a/1001', '${T(90)}', 'transfer_debit', -100, 900, 1), ('bank-a/1002', '${T(90)}', 'transfer_credit', 100, 100, 1);
INSERT INTO txns VALUES ('${T(90)}', 'COMMITTED', 'gateway-0', 1, 1, 0, NULL), ('${T(91)}', 'PREPARED', 'gateway-0', 2, NULL, 0, NULL);
INSERT INTO txn_legs VALUES ('${T(90)}', 0, 'bank-a/1001', 'debit', 100, 'USD'), ('${T(90)}', 1, 'bank-a/1002', 'credit', 100, 'USD'),
  ('${T(91)}', 0, 'bank-a/1001', 'debit', 100, 'USD');
`;

test("a v1 ledger file is migrated in place: rows kept, new kinds and directions allowed", () => {
  withDir((dir) => {
    mkdirSync(dir, { recursive: true });
    const raw = new Database(join(dir, "ledger.db"));
    raw.exec(V1);
    raw.close();
    const store = openLedgerStore({ dataDir: dir, bank: BANK });
    assert.deepEqual(
      store.listEntries("bank-a/1001", 0n, 10).map((e) => [e.sequence, e.kind]),
      [
        [1n, "opening"],
        [3n, "transfer_debit"],
      ],
    );
    assert.equal(store.txn(T(91))?.state, "PREPARED");
    assertConsistent(store);
    // New entries continue the sequence; card legs now fit the CHECKs.
    yes(store, T(92), [leg("auth_hold", "bank-a/1001", 300n, "auth-1", NOW)], NOW);
    assert.ok(store.transact((tx) => commit(tx, T(92), NOW)).ok);
    yes(store, T(93), [leg("capture", "bank-a/1001", 300n, "auth-1"), leg("credit", "bank-a/1002", 300n)], NOW - 1);
    assert.ok(store.transact((tx) => commit(tx, T(93), NOW)).ok);
    assert.equal(store.listEntries("bank-a/1001", 0n, 10).at(-1)?.sequence, 5n);
    assertConsistent(store);
    store.close();
    const again = openLedgerStore({ dataDir: dir, bank: BANK });
    assert.equal(again.hold("auth-1")?.state, "CAPTURED");
    again.close();
  });
});
