// Standing holds (card authorizations) through the participant's prepare /
// commit / abort and the expiry sweep, on the in-memory ledger. After every
// step the ledger must prove itself: held = ACTIVE holds + prepared debits.
import { test } from "node:test";
import assert from "node:assert/strict";
import { abort, commit, prepare, type LegInput } from "./participant.js";
import { isReason } from "@paygate/vocab";
import { expireDueHolds, HOLD_NO_REASONS } from "./holds.js";
import type { MemoryLedger } from "../../test-support/memory-ledger.js";
import { createSeededLedger, txnIdSequence } from "../../test-support/seeded-ledger.js";
import { reconcile } from "./reconcile.js";

const BANK = "bank-a";
const NOW = 1_700_000_000_000;
const DAY_MS = 86_400_000;
const txnId = txnIdSequence();

function setup(): MemoryLedger {
  return createSeededLedger(
    BANK,
    [
      { id: "bank-a/1001", owner: "alice", currency: "USD", openingMinor: 10_000n },
      { id: "bank-a/1002", owner: "shop", currency: "USD", openingMinor: 0n },
      { id: "bank-a/1003", owner: "bob", currency: "USD", openingMinor: 500n },
    ],
    NOW,
  );
}

const authHold = (holdId: string, amountMinor: bigint, extra: Partial<LegInput> = {}): LegInput => ({
  accountId: "bank-a/1001",
  direction: "auth_hold",
  amountMinor,
  currency: "USD",
  ownerUserId: "alice",
  holdId,
  holdExpiresAtMs: NOW + 7 * DAY_MS,
  ...extra,
});
const capture = (holdId: string, amountMinor: bigint, extra: Partial<LegInput> = {}): LegInput => ({
  accountId: "bank-a/1001",
  direction: "capture",
  amountMinor,
  currency: "USD",
  ownerUserId: "",
  holdId,
  ...extra,
});
const release = (holdId: string, amountMinor: bigint): LegInput => ({
  accountId: "bank-a/1001",
  direction: "release",
  amountMinor,
  currency: "USD",
  ownerUserId: "",
  holdId,
});
const credit = (accountId: string, amountMinor: bigint): LegInput => ({
  accountId,
  direction: "credit",
  amountMinor,
  currency: "USD",
  ownerUserId: "",
});

function run(l: MemoryLedger, legs: LegInput[], at = NOW, decide: "commit" | "abort" | "none" = "commit") {
  const id = txnId();
  const r = l.transact((tx) => prepare(tx, BANK, { txnId: id, legs }, at));
  assert.ok(r.ok, JSON.stringify(r));
  if (r.value.vote === "yes" && decide !== "none") {
    const d = l.transact((tx) => (decide === "commit" ? commit(tx, id, at + 1) : abort(tx, id, at + 1)));
    assert.ok(d.ok, JSON.stringify(d));
  }
  return { id, vote: r.value };
}

const account = (l: MemoryLedger, id = "bank-a/1001") => l.transact((tx) => tx.account(id))!;
const money = (l: MemoryLedger, id = "bank-a/1001") => {
  const a = account(l, id);
  return { balance: a.balanceMinor, held: a.heldMinor, available: a.balanceMinor - a.heldMinor };
};

function assertConsistent(l: MemoryLedger): void {
  const r = reconcile(l.audit());
  assert.deepEqual(r.problems, []);
  for (const c of r.currencies) assert.equal(c.balanceMinor, c.depositedMinor + c.transferNetMinor, c.currency);
}

function noReason(v: { vote: string; reason?: string }): string | undefined {
  return v.vote === "no" ? v.reason : undefined;
}

test("auth_hold: prepare reserves like a debit, commit makes an ACTIVE hold that stays in held", () => {
  const l = setup();
  const { id } = run(l, [authHold("auth-1", 3_000n)], NOW, "none");
  assert.deepEqual(money(l), { balance: 10_000n, held: 3_000n, available: 7_000n });
  assert.equal(l.hold("auth-1"), undefined, "no standing hold before the commit");
  assertConsistent(l);
  assert.ok(l.transact((tx) => commit(tx, id, NOW + 1)).ok);
  assert.deepEqual(money(l), { balance: 10_000n, held: 3_000n, available: 7_000n });
  const h = l.hold("auth-1")!;
  assert.equal(h.state, "ACTIVE");
  assert.equal(h.amountMinor, 3_000n);
  assert.equal(h.expiresAtMs, NOW + 7 * DAY_MS);
  assert.deepEqual(
    l.entries("bank-a/1001").map((e) => e.kind),
    ["opening"],
    "a hold posts nothing",
  );
  assertConsistent(l);
});

test("auth_hold: NO insufficient_funds beyond available (other holds count), and abort releases the reservation", () => {
  const l = setup();
  run(l, [authHold("auth-1", 8_000n)]);
  const second = run(l, [authHold("auth-2", 2_001n)]);
  assert.equal(noReason(second.vote), "insufficient_funds");
  assert.deepEqual(money(l), { balance: 10_000n, held: 8_000n, available: 2_000n });
  run(l, [authHold("auth-3", 2_000n)], NOW, "abort");
  assert.deepEqual(money(l), { balance: 10_000n, held: 8_000n, available: 2_000n });
  assert.equal(l.hold("auth-3"), undefined);
  // An aborted attempt leaves the hold id free for the retry.
  assert.equal(run(l, [authHold("auth-3", 2_000n)]).vote.vote, "yes");
  assert.equal(money(l).available, 0n);
  assertConsistent(l);
});

test("auth_hold: a hold id is placed once (while prepared and after commit)", () => {
  const l = setup();
  run(l, [authHold("auth-1", 100n)], NOW, "none");
  assert.equal(noReason(run(l, [authHold("auth-1", 100n)]).vote), "already_exists");
  const l2 = setup();
  run(l2, [authHold("auth-1", 100n)]);
  assert.equal(noReason(run(l2, [authHold("auth-1", 100n)]).vote), "already_exists");
  assert.equal(money(l2).held, 100n);
  assertConsistent(l);
  assertConsistent(l2);
});

test("a capture or release that arrives before its hold's Commit is hold_in_use (retryable), not hold_not_found", () => {
  const l = setup();
  run(l, [authHold("auth-1", 1_000n)], NOW, "none"); // the hold's round is PREPARED; its Commit is late
  assert.equal(noReason(run(l, [capture("auth-1", 500n)]).vote), "hold_in_use");
  assert.equal(noReason(run(l, [release("auth-1", 1_000n)]).vote), "hold_in_use");
  assert.equal(
    noReason(run(l, [capture("auth-9", 500n)]).vote),
    "hold_not_found",
    "a hold nobody placed is still not found",
  );
  assertConsistent(l);
});

test("auth_hold checks the owner like a debit", () => {
  const l = setup();
  assert.equal(noReason(run(l, [authHold("auth-1", 100n, { ownerUserId: "bob" })]).vote), "not_account_owner");
  assert.equal(money(l).held, 0n);
});

test("capture: partial capture debits the amount, releases the rest, credits the merchant, hold CAPTURED", () => {
  const l = setup();
  run(l, [authHold("auth-1", 3_000n)]);
  const { id } = run(l, [capture("auth-1", 1_200n), credit("bank-a/1002", 1_200n)], NOW + 10);
  assert.deepEqual(money(l), { balance: 8_800n, held: 0n, available: 8_800n });
  assert.equal(account(l, "bank-a/1002").balanceMinor, 1_200n);
  const h = l.hold("auth-1")!;
  assert.equal(h.state, "CAPTURED");
  assert.equal(h.capturedMinor, 1_200n);
  assert.equal(h.pinnedTxnId, "");
  const last = l.entries("bank-a/1001").at(-1)!;
  assert.deepEqual(
    [last.kind, last.amountMinor, last.balanceAfterMinor, last.txnId],
    ["capture_debit", -1_200n, 8_800n, id],
  );
  assertConsistent(l);
});

test("capture: refusals are NO votes that change nothing", () => {
  const l = setup();
  run(l, [authHold("auth-1", 3_000n)]);
  const before = money(l);
  assert.equal(noReason(run(l, [capture("auth-1", 3_001n)]).vote), "amount_exceeds_authorization");
  assert.equal(noReason(run(l, [capture("nope", 1n)]).vote), "hold_not_found");
  assert.equal(
    noReason(run(l, [capture("auth-1", 1n, { accountId: "bank-a/1003" })]).vote),
    "hold_not_found",
    "the hold is on another account",
  );
  assert.equal(noReason(run(l, [capture("auth-1", 1n, { currency: "EUR" })]).vote), "currency_mismatch");
  assert.equal(
    noReason(run(l, [capture("auth-1", 100n)], NOW + 7 * DAY_MS).vote),
    "authorization_expired",
    "at expiry the hold can no longer be captured",
  );
  assert.deepEqual(money(l), before);
  assert.equal(l.hold("auth-1")!.state, "ACTIVE");
  assert.equal(l.hold("auth-1")!.pinnedTxnId, "");
  // The full amount is still capturable.
  run(l, [capture("auth-1", 3_000n)]);
  assert.deepEqual(money(l), { balance: 7_000n, held: 0n, available: 7_000n });
  assert.equal(noReason(run(l, [capture("auth-1", 1n)]).vote), "already_captured");
  assert.equal(noReason(run(l, [release("auth-1", 3_000n)]).vote), "already_captured");
  assertConsistent(l);
});

test("release (void): the whole hold goes back to available; later captures say authorization_voided", () => {
  const l = setup();
  run(l, [authHold("auth-1", 3_000n)]);
  run(l, [release("auth-1", 3_000n)]);
  assert.deepEqual(money(l), { balance: 10_000n, held: 0n, available: 10_000n });
  assert.equal(l.hold("auth-1")!.state, "RELEASED");
  assert.equal(noReason(run(l, [capture("auth-1", 1n)]).vote), "authorization_voided");
  assert.equal(noReason(run(l, [release("auth-1", 3_000n)]).vote), "authorization_voided");
  assertConsistent(l);
});

test("a prepared capture claims the hold: a concurrent release or capture votes hold_in_use; abort frees it", () => {
  const l = setup();
  run(l, [authHold("auth-1", 3_000n)]);
  const first = run(l, [capture("auth-1", 1_000n)], NOW + 5, "none");
  assert.equal(first.vote.vote, "yes");
  assert.equal(l.hold("auth-1")!.pinnedTxnId, first.id);
  assert.equal(noReason(run(l, [release("auth-1", 3_000n)]).vote), "hold_in_use");
  assert.equal(noReason(run(l, [capture("auth-1", 500n)]).vote), "hold_in_use");
  // A re-delivered Prepare of the same txn is still YES (and does not claim twice).
  const again = l.transact((tx) => prepare(tx, BANK, { txnId: first.id, legs: [capture("auth-1", 1_000n)] }, NOW + 6));
  assert.deepEqual(again, { ok: true, value: { vote: "yes", redelivered: true } });
  assertConsistent(l);
  assert.ok(l.transact((tx) => abort(tx, first.id, NOW + 7)).ok);
  assert.equal(l.hold("auth-1")!.pinnedTxnId, "");
  assert.deepEqual(money(l), { balance: 10_000n, held: 3_000n, available: 7_000n });
  run(l, [release("auth-1", 3_000n)]);
  assert.equal(money(l).held, 0n);
  assertConsistent(l);
});

test("expiry: the sweep releases ACTIVE holds past expires_at (EXPIRED) and leaves the others", () => {
  const l = setup();
  run(l, [authHold("auth-1", 1_000n, { holdExpiresAtMs: NOW + 1_000 })]);
  run(l, [authHold("auth-2", 2_000n, { holdExpiresAtMs: NOW + 5_000 })]);
  assert.deepEqual(
    l.transact((tx) => expireDueHolds(tx, NOW + 999)),
    [],
  );
  const expired = l.transact((tx) => expireDueHolds(tx, NOW + 1_000));
  assert.deepEqual(
    expired.map((h) => h.holdId),
    ["auth-1"],
  );
  assert.equal(l.hold("auth-1")!.state, "EXPIRED");
  assert.equal(l.hold("auth-2")!.state, "ACTIVE");
  assert.deepEqual(money(l), { balance: 10_000n, held: 2_000n, available: 8_000n });
  assert.equal(noReason(run(l, [capture("auth-1", 1n)], NOW + 2_000).vote), "authorization_expired");
  assert.deepEqual(
    l.transact((tx) => expireDueHolds(tx, NOW + 1_000)),
    [],
    "an expired hold is expired once",
  );
  assertConsistent(l);
});

test("a hold asked for by duration expires on this bank's clock, counted from its prepare; a resent Prepare is the same request", () => {
  const l = setup();
  // The gateway's clock says nothing here: only how long. The bank prepares at NOW + 250 by its own clock.
  const id = txnId();
  const legs = [authHold("auth-ttl", 1_000n, { holdExpiresAtMs: undefined, holdTtlMs: 60_000 })];
  const first = l.transact((tx) => prepare(tx, BANK, { txnId: id, legs }, NOW + 250));
  assert.ok(first.ok && first.value.vote === "yes");
  // The resend arrives later (a retry): same txn, same duration, so the same YES and still one hold.
  const again = l.transact((tx) => prepare(tx, BANK, { txnId: id, legs }, NOW + 5_000));
  assert.ok(again.ok && again.value.vote === "yes" && again.value.redelivered, JSON.stringify(again));
  assert.ok(l.transact((tx) => commit(tx, id, NOW + 300)).ok);
  assert.equal(l.hold("auth-ttl")!.expiresAtMs, NOW + 250 + 60_000, "expiry = the bank's prepare time + the duration");
  assert.deepEqual(
    l.transact((tx) => expireDueHolds(tx, NOW + 60_249)),
    [],
  );
  assert.deepEqual(
    l.transact((tx) => expireDueHolds(tx, NOW + 60_250)).map((h) => h.holdId),
    ["auth-ttl"],
  );
  const bad = l.transact((tx) =>
    prepare(
      tx,
      BANK,
      { txnId: txnId(), legs: [authHold("auth-bad", 1n, { holdExpiresAtMs: undefined, holdTtlMs: 0 })] },
      NOW,
    ),
  );
  assert.ok(!bad.ok && bad.reason === "invalid_argument");
  assertConsistent(l);
});

test("expiry never takes a hold claimed by a prepared capture: its commit still succeeds after the expiry time", () => {
  const l = setup();
  run(l, [authHold("auth-1", 1_000n, { holdExpiresAtMs: NOW + 1_000 })]);
  const cap = run(l, [capture("auth-1", 600n), credit("bank-a/1002", 600n)], NOW + 500, "none");
  assert.equal(cap.vote.vote, "yes");
  assert.deepEqual(
    l.transact((tx) => expireDueHolds(tx, NOW + 60_000)),
    [],
    "pinned: not expired",
  );
  assert.ok(l.transact((tx) => commit(tx, cap.id, NOW + 60_000)).ok);
  assert.equal(l.hold("auth-1")!.state, "CAPTURED");
  assert.deepEqual(money(l), { balance: 9_400n, held: 0n, available: 9_400n });
  assertConsistent(l);
});

test("an aborted capture past the expiry leaves the hold for the sweeper", () => {
  const l = setup();
  run(l, [authHold("auth-1", 1_000n, { holdExpiresAtMs: NOW + 1_000 })]);
  const cap = run(l, [capture("auth-1", 600n)], NOW + 500, "none");
  assert.ok(l.transact((tx) => abort(tx, cap.id, NOW + 2_000)).ok);
  assert.deepEqual(
    l.transact((tx) => expireDueHolds(tx, NOW + 2_000)).map((h) => h.holdId),
    ["auth-1"],
  );
  assert.deepEqual(money(l), { balance: 10_000n, held: 0n, available: 10_000n });
  assertConsistent(l);
});

test("malformed hold legs are rejected before anything is recorded", () => {
  const l = setup();
  const bad = (legs: LegInput[]) => {
    const r = l.transact((tx) => prepare(tx, BANK, { txnId: txnId(), legs }, NOW));
    assert.ok(!r.ok, JSON.stringify(r));
    return r.reason;
  };
  assert.equal(bad([authHold("", 100n)]), "invalid_argument");
  assert.equal(bad([authHold("auth-1", 100n, { holdExpiresAtMs: 0 })]), "invalid_argument");
  assert.equal(bad([capture("bad id!", 1n)]), "invalid_argument");
  assert.equal(bad([{ ...credit("bank-a/1002", 1n), holdId: "auth-1" }]), "invalid_argument");
  assert.equal(bad([capture("auth-1", 1n), release("auth-1", 1n)]), "invalid_argument");
  assert.deepEqual(money(l), { balance: 10_000n, held: 0n, available: 10_000n });
});

test("every NO reason of a hold leg is in the shared error table", () => {
  for (const r of HOLD_NO_REASONS) assert.ok(isReason(r), r);
});
