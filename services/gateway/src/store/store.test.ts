import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSeed } from "@paygate/seed";
import type { NewTxn } from "../domain/model.js";
import { hashPassword, verifyPassword } from "../domain/password.js";
import { createSqliteCoordinatorLog } from "./coordinator-log.js";
import { openDb } from "./db.js";
import { createSqliteDirectory } from "./directory.js";
import { loadSeedOnce } from "./seed.js";
import { createSqliteSessions, createSqliteUsers } from "./users.js";

const SEED = parseSeed(`
banks: [bank-a, bank-b]
users:
  - { id: alice, username: alice, password: alice-demo-2026, roles: [customer] }
  - { id: bob, username: bob, password: bob-demo-2026, roles: [customer, merchant] }
accounts:
  - { id: bank-a/1001, owner: alice, currency: USD, opening_minor: 5000 }
  - { id: bank-b/2001, owner: bob, currency: USD, opening_minor: 0 }
`);

function tempDbFile(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "gateway-store-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "nested", "gateway.db");
}

let n = 0;
const newTxn = (over: Partial<NewTxn> = {}): NewTxn => ({
  txnId: `gateway-0:00000000-0000-4000-8000-${String(++n).padStart(12, "0")}`,
  callerUserId: "alice",
  idempotencyKey: "key-1",
  fingerprint: "fp-1",
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  fromBank: "bank-a",
  toBank: "bank-b",
  amountMinor: 2500n,
  currency: "USD",
  memo: "rent",
  createdAtMs: 1_000,
  ...over,
});

const fastHash = (pw: string) => hashPassword(pw, { N: 1024, r: 8, p: 1 });

test("the database is WAL with synchronous=FULL and INTEGERs read as bigint", (t) => {
  const db = openDb(tempDbFile(t));
  t.after(() => db.close());
  assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
  assert.equal(db.pragma("synchronous", { simple: true }), 2n);
  assert.equal(db.pragma("foreign_keys", { simple: true }), 1n);
});

test("close and reopen keeps the log, the decision and the idempotency key's owner", async (t) => {
  const file = tempDbFile(t);
  let db = openDb(file);
  await loadSeedOnce(db, SEED, fastHash, 1);
  let log = createSqliteCoordinatorLog(db);
  const first = await log.claim(newTxn());
  assert.ok(first.claimed);
  assert.equal(first.txn.status, "PENDING");
  assert.equal(first.txn.sequence, 0n);
  const dup = await log.claim(newTxn());
  assert.ok(!dup.claimed);
  assert.equal(dup.owner.txnId, first.txn.txnId);
  const d = log.decide({ txnId: first.txn.txnId, decision: "COMMIT", reason: "", participants: ["bank-a", "bank-b"], nowMs: 2_000, firstResendAtMs: 7_000 });
  assert.equal(d.decision, "COMMIT");
  log.ack(first.txn.txnId, "bank-a", 2_100);
  log.flush(); // acks are group-committed; the gateway flushes before it closes the database
  db.close();

  db = openDb(file);
  t.after(() => db.close());
  log = createSqliteCoordinatorLog(db);
  const txn = log.findTxn(first.txn.txnId);
  assert.equal(txn?.status, "COMMITTED");
  assert.equal(txn?.sequence, 1n);
  assert.equal(txn?.amountMinor, 2500n);
  assert.equal(txn?.decidedAtMs, 2_000);
  const again = await log.claim(newTxn());
  assert.ok(!again.claimed, "the unique (caller, key) survives a restart");
  assert.equal(again.owner.txnId, first.txn.txnId);
  // Insert-if-absent: a later ABORT does not overwrite the COMMIT.
  const late = log.decide({ txnId: first.txn.txnId, decision: "ABORT", reason: "participant_timeout", participants: ["bank-b"], nowMs: 3_000, firstResendAtMs: 3_000 });
  assert.equal(late.decision, "COMMIT");
  assert.equal(log.findDecision(first.txn.txnId)?.decision, "COMMIT");
  assert.equal(log.findTxn(first.txn.txnId)?.status, "COMMITTED");
  assert.deepEqual(log.dueAcks(6_999, 10), []);
  assert.deepEqual(log.dueAcks(7_000, 10), [{ txnId: first.txn.txnId, bank: "bank-b", decision: "COMMIT", attempts: 0 }]);
  assert.deepEqual(log.unackedDecisions(10).map((u) => [u.txnId, u.banks]), [[first.txn.txnId, ["bank-b"]]]);
  log.deferAck(first.txn.txnId, "bank-b", 1, 9_000, "participant_unavailable: down");
  assert.deepEqual(log.dueAcks(8_999, 10), []);
  assert.equal(log.rescheduleUnacked(100), 1);
  assert.equal(log.dueAcks(100, 10)[0]?.attempts, 1);
  log.ack(first.txn.txnId, "bank-b", 9_500);
  assert.deepEqual(log.unackedDecisions(10), []);
});

test("the unique index refuses a second owner of a key even outside the claim logic", async (t) => {
  const db = openDb(tempDbFile(t));
  t.after(() => db.close());
  const log = createSqliteCoordinatorLog(db);
  const first = await log.claim(newTxn());
  assert.ok(first.claimed);
  assert.throws(
    () =>
      db
        .prepare(`INSERT INTO txns (txn_id, caller_user_id, idempotency_key, fingerprint, from_account_id, to_account_id, from_bank, to_bank,
          amount_minor, currency, memo, status, created_at) VALUES ('x', 'alice', 'key-1', 'fp', 'a/1', 'b/1', 'a', 'b', 1, 'USD', '', 'PENDING', 0)`)
        .run(),
    /UNIQUE constraint failed/,
  );
  // Another caller may use the same key.
  assert.ok((await log.claim(newTxn({ callerUserId: "bob" }))).claimed);
});

test("reclaim moves the key from an ABORTED txn only; the old txn stays in the log", async (t) => {
  const db = openDb(tempDbFile(t));
  t.after(() => db.close());
  const log = createSqliteCoordinatorLog(db);
  const first = await log.claim(newTxn());
  assert.ok(first.claimed);
  const whilePending = await log.reclaim(first.txn.txnId, newTxn());
  assert.ok(!whilePending.claimed, "a PENDING owner keeps its key");
  log.decide({ txnId: first.txn.txnId, decision: "ABORT", reason: "participant_timeout", participants: ["bank-a", "bank-b"], nowMs: 2_000, firstResendAtMs: 2_000 });
  const retry = await log.reclaim(first.txn.txnId, newTxn());
  assert.ok(retry.claimed);
  assert.notEqual(retry.txn.txnId, first.txn.txnId);
  assert.equal(log.findTxn(first.txn.txnId)?.status, "ABORTED");
  assert.equal(log.findTxn(first.txn.txnId)?.declineReason, "participant_timeout");
  // A concurrent second retry finds the new owner.
  const loser = await log.reclaim(first.txn.txnId, newTxn());
  assert.ok(!loser.claimed);
  assert.equal(loser.owner.txnId, retry.txn.txnId);
});

test("a decision for a txn the log never saw is kept (presumed abort) with its acks", (t) => {
  const db = openDb(tempDbFile(t));
  t.after(() => db.close());
  const log = createSqliteCoordinatorLog(db);
  const id = "gateway-0:11111111-2222-4333-8444-555555555555";
  const d = log.decide({ txnId: id, decision: "ABORT", reason: "participant_timeout", participants: ["bank-b"], nowMs: 5, firstResendAtMs: 5 });
  assert.equal(d.decision, "ABORT");
  assert.equal(log.findTxn(id), undefined);
  assert.equal(log.decide({ txnId: id, decision: "COMMIT", reason: "", participants: ["bank-b"], nowMs: 6, firstResendAtMs: 6 }).decision, "ABORT");
  assert.deepEqual(log.dueAcks(5, 10).map((a) => [a.txnId, a.bank, a.decision]), [[id, "bank-b", "ABORT"]]);
});

test("pending txns without a decision are found; history lists decided txns visible to a user", async (t) => {
  const db = openDb(tempDbFile(t));
  t.after(() => db.close());
  await loadSeedOnce(db, SEED, fastHash, 1);
  const log = createSqliteCoordinatorLog(db);
  const a = await log.claim(newTxn({ idempotencyKey: "a" }));
  const b = await log.claim(newTxn({ idempotencyKey: "b" }));
  assert.ok(a.claimed && b.claimed);
  assert.deepEqual(log.pendingUndecided(10).map((x) => x.txnId), [a.txn.txnId, b.txn.txnId]);
  // Decided in the opposite order: the history follows decision order.
  log.decide({ txnId: b.txn.txnId, decision: "ABORT", reason: "insufficient_funds", participants: ["bank-a"], nowMs: 10, firstResendAtMs: 10 });
  log.decide({ txnId: a.txn.txnId, decision: "COMMIT", reason: "", participants: ["bank-a"], nowMs: 11, firstResendAtMs: 11 });
  assert.deepEqual(log.pendingUndecided(10), []);
  assert.deepEqual(log.listVisible("bob", 0n, 10).map((x) => [x.txnId, x.sequence]), [[b.txn.txnId, 1n], [a.txn.txnId, 2n]]);
  assert.deepEqual(log.listVisible("alice", 1n, 10).map((x) => x.txnId), [a.txn.txnId]);
  assert.deepEqual(log.listVisible("alice", 0n, 1).map((x) => x.txnId), [b.txn.txnId]);
  assert.deepEqual(log.listVisible("mallory", 0n, 10), []);
});

test("the seed loads once: users with scrypt hashes and the account directory", async (t) => {
  const file = tempDbFile(t);
  const db = openDb(file);
  t.after(() => db.close());
  const first = await loadSeedOnce(db, SEED, fastHash, 1);
  assert.deepEqual(first, { loaded: true, users: 2, accounts: 2 });
  const second = await loadSeedOnce(db, SEED, fastHash, 2);
  assert.equal(second.loaded, false);
  const users = createSqliteUsers(db);
  const alice = users.byUsername("alice");
  assert.ok(alice && (await verifyPassword("alice-demo-2026", alice.passwordHash)));
  assert.deepEqual(users.byId("bob")?.roles, ["customer", "merchant"]);
  const dir = createSqliteDirectory(db);
  assert.deepEqual(dir.find("bank-b/2001"), { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "bob", currency: "USD" });
  assert.deepEqual(dir.ownedBy("alice").map((a) => a.accountId), ["bank-a/1001"]);
  assert.equal(dir.add({ accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "bob", currency: "USD" }, 3), false);
});

test("users and sessions: unique usernames, login state, session purge", async (t) => {
  const db = openDb(tempDbFile(t));
  t.after(() => db.close());
  const users = createSqliteUsers(db);
  const sessions = createSqliteSessions(db);
  assert.ok(users.create({ userId: "carol", username: "carol", passwordHash: "h", roles: ["customer"], displayName: "Carol" }, 1));
  assert.equal(users.create({ userId: "carol2", username: "carol", passwordHash: "h", roles: ["customer"], displayName: "C" }, 1), false);
  users.setLoginState("carol", 2, 99);
  assert.deepEqual([users.byId("carol")?.failedLogins, users.byId("carol")?.lockedUntilMs], [2, 99]);
  sessions.create({ tokenHash: "t1", userId: "carol", expiresAtMs: 100 }, 1);
  sessions.create({ tokenHash: "t2", userId: "carol", expiresAtMs: 200 }, 1);
  assert.equal(sessions.find("t1")?.expiresAtMs, 100);
  assert.equal(sessions.purgeExpired(150, 10), 1);
  assert.equal(sessions.find("t1"), undefined);
  sessions.revoke("t2");
  assert.equal(sessions.find("t2"), undefined);
});
