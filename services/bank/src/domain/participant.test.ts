import { test } from "node:test";
import assert from "node:assert/strict";
import { AssertionError } from "@paygate/money";
import { abort, commit, prepare, type LegInput, type PrepareInput } from "./participant.js";
import { BALANCE_MINOR_MAX, deposit } from "./ledger.js";
import type { MemoryLedger } from "../../test-support/memory-ledger.js";
import { createSeededLedger, openTestAccounts, txnIdSequence } from "../../test-support/seeded-ledger.js";
import { reconcile } from "./reconcile.js";

const BANK = "bank-a";
const NOW = 1_700_000_000_000;
const txnId = txnIdSequence();

function setup(): MemoryLedger {
  return createSeededLedger(
    BANK,
    [
      { id: "bank-a/1001", owner: "alice", currency: "USD", openingMinor: 10_000n },
      { id: "bank-a/1002", owner: "bob", currency: "USD", openingMinor: 500n },
      { id: "bank-a/1003", owner: "alice", currency: "EUR", openingMinor: 7_000n },
      { id: "bank-b/2001", owner: "bob", currency: "USD", openingMinor: 999n },
    ],
    NOW,
  );
}

/** setup() plus bank-a/1009, 100 minor units below the balance maximum. */
const setupNearMax = (): MemoryLedger =>
  openTestAccounts(
    setup(),
    BANK,
    [{ id: "bank-a/1009", owner: "bob", currency: "USD", openingMinor: BALANCE_MINOR_MAX - 100n }],
    NOW,
  );

const debit = (accountId: string, amountMinor: bigint, extra: Partial<LegInput> = {}): LegInput => ({
  accountId,
  direction: "debit",
  amountMinor,
  currency: "USD",
  ownerUserId: "",
  ...extra,
});
const credit = (accountId: string, amountMinor: bigint, extra: Partial<LegInput> = {}): LegInput => ({
  accountId,
  direction: "credit",
  amountMinor,
  currency: "USD",
  ownerUserId: "",
  ...extra,
});

const doPrepare = (l: MemoryLedger, input: PrepareInput) => l.transact((tx) => prepare(tx, BANK, input, NOW));
const doCommit = (l: MemoryLedger, id: string) => l.transact((tx) => commit(tx, id, NOW + 1));
const doAbort = (l: MemoryLedger, id: string) => l.transact((tx) => abort(tx, id, NOW + 1));
const account = (l: MemoryLedger, id: string) => l.transact((tx) => tx.account(id))!;

/** After every money movement: the ledger proves itself and money is conserved. */
function assertConsistent(l: MemoryLedger): void {
  const r = reconcile(l.audit());
  assert.deepEqual(r.problems, []);
  assert.equal(r.consistent, true);
  for (const c of r.currencies) assert.equal(c.balanceMinor, c.depositedMinor + c.transferNetMinor, c.currency);
}

function vote(r: ReturnType<typeof doPrepare>) {
  assert.ok(r.ok, JSON.stringify(r));
  return r.value;
}

test("seed loads only this bank's accounts with an opening entry each", () => {
  const l = setup();
  assert.equal(l.audit().length, 3);
  assert.equal(
    l.transact((tx) => tx.account("bank-b/2001")),
    undefined,
  );
  assert.deepEqual(
    l.entries("bank-a/1001").map((e) => [e.kind, e.amountMinor, e.balanceAfterMinor]),
    [["opening", 10_000n, 10_000n]],
  );
  assertConsistent(l);
});

test("prepare holds the debit; commit moves the money and journals every leg", () => {
  const l = setup();
  const id = txnId();
  assert.deepEqual(
    vote(doPrepare(l, { txnId: id, legs: [debit("bank-a/1001", 2_500n), credit("bank-a/1002", 2_500n)] })),
    { vote: "yes", redelivered: false },
  );
  assert.equal(account(l, "bank-a/1001").heldMinor, 2_500n);
  assert.equal(account(l, "bank-a/1001").balanceMinor, 10_000n);
  assert.equal(account(l, "bank-a/1002").balanceMinor, 500n);
  assertConsistent(l);

  const c = doCommit(l, id);
  assert.ok(c.ok && c.value.changed);
  assert.equal(account(l, "bank-a/1001").heldMinor, 0n);
  assert.equal(account(l, "bank-a/1001").balanceMinor, 7_500n);
  assert.equal(account(l, "bank-a/1002").balanceMinor, 3_000n);
  assert.deepEqual(
    l
      .entries("bank-a/1001")
      .map((e) => [e.kind, e.txnId, e.amountMinor, e.balanceAfterMinor])
      .at(-1),
    ["transfer_debit", id, -2_500n, 7_500n],
  );
  assert.deepEqual(
    l
      .entries("bank-a/1002")
      .map((e) => [e.kind, e.amountMinor, e.balanceAfterMinor])
      .at(-1),
    ["transfer_credit", 2_500n, 3_000n],
  );
  assertConsistent(l);
});

test("insufficient funds counts holds of other prepared txns, and the NO is remembered", () => {
  const l = setup();
  const first = txnId();
  assert.equal(vote(doPrepare(l, { txnId: first, legs: [debit("bank-a/1001", 6_000n)] })).vote, "yes");
  // 10,000 balance, 6,000 held: 4,001 is too much though the balance alone would allow it.
  const second = txnId();
  const no = vote(doPrepare(l, { txnId: second, legs: [debit("bank-a/1001", 4_001n)] }));
  assert.equal(no.vote, "no");
  assert.equal(no.vote === "no" && no.reason, "insufficient_funds");
  assert.equal(account(l, "bank-a/1001").heldMinor, 6_000n);
  // A duplicate of the refused Prepare says NO again, even after funds return.
  assert.ok(doAbort(l, first).ok);
  const again = vote(doPrepare(l, { txnId: second, legs: [debit("bank-a/1001", 4_001n)] }));
  assert.deepEqual(
    [again.vote, again.vote === "no" && again.reason, again.redelivered],
    ["no", "insufficient_funds", true],
  );
  assert.equal(account(l, "bank-a/1001").heldMinor, 0n);
  // Exactly the available amount is fine.
  assert.equal(vote(doPrepare(l, { txnId: txnId(), legs: [debit("bank-a/1001", 10_000n)] })).vote, "yes");
  assertConsistent(l);
});

test("debits of one account within one txn add up against its available balance", () => {
  const l = setup();
  const r = vote(doPrepare(l, { txnId: txnId(), legs: [debit("bank-a/1002", 300n), debit("bank-a/1002", 201n)] }));
  assert.equal(r.vote === "no" && r.reason, "insufficient_funds");
  assert.equal(account(l, "bank-a/1002").heldMinor, 0n);
  assertConsistent(l);
});

test("re-delivered prepare votes YES again without a second hold, also after commit", () => {
  const l = setup();
  const id = txnId();
  const legs = [debit("bank-a/1001", 1_000n), credit("bank-a/1002", 1_000n)];
  vote(doPrepare(l, { txnId: id, legs }));
  assert.deepEqual(vote(doPrepare(l, { txnId: id, legs })), { vote: "yes", redelivered: true });
  assert.equal(account(l, "bank-a/1001").heldMinor, 1_000n);
  assert.ok(doCommit(l, id).ok);
  assert.deepEqual(vote(doPrepare(l, { txnId: id, legs })), { vote: "yes", redelivered: true });
  assert.equal(account(l, "bank-a/1001").balanceMinor, 9_000n);
  assert.equal(account(l, "bank-a/1001").heldMinor, 0n);
  // The same txn id with other legs is a coordinator bug, not a retry.
  const reused = doPrepare(l, { txnId: id, legs: [debit("bank-a/1001", 999n), credit("bank-a/1002", 999n)] });
  assert.deepEqual(!reused.ok && reused.reason, "txn_id_reused");
  assertConsistent(l);
});

test("commit and abort are idempotent; the opposite decision is refused", () => {
  const l = setup();
  const a = txnId();
  vote(doPrepare(l, { txnId: a, legs: [debit("bank-a/1001", 100n), credit("bank-a/1002", 100n)] }));
  assert.deepEqual(doCommit(l, a), { ok: true, value: { changed: true } });
  assert.deepEqual(doCommit(l, a), { ok: true, value: { changed: false } });
  const abortCommitted = doAbort(l, a);
  assert.equal(!abortCommitted.ok && abortCommitted.reason, "txn_committed");
  assert.equal(account(l, "bank-a/1001").balanceMinor, 9_900n);

  const b = txnId();
  vote(doPrepare(l, { txnId: b, legs: [debit("bank-a/1001", 300n)] }));
  assert.equal(account(l, "bank-a/1001").heldMinor, 300n);
  assert.deepEqual(doAbort(l, b), { ok: true, value: { changed: true } });
  assert.deepEqual(doAbort(l, b), { ok: true, value: { changed: false } });
  assert.equal(account(l, "bank-a/1001").heldMinor, 0n);
  const commitAborted = doCommit(l, b);
  assert.equal(!commitAborted.ok && commitAborted.reason, "txn_aborted");
  assert.equal(account(l, "bank-a/1001").balanceMinor, 9_900n);
  assertConsistent(l);
});

test("an abort for an unseen txn leaves a tombstone: the late prepare votes NO and holds nothing", () => {
  const l = setup();
  const id = txnId();
  assert.deepEqual(doAbort(l, id), { ok: true, value: { changed: true } });
  const t = l.transact((tx) => tx.txn(id))!;
  assert.deepEqual([t.state, t.tombstone], ["ABORTED", true]);
  const late = vote(doPrepare(l, { txnId: id, legs: [debit("bank-a/1001", 100n)] }));
  assert.deepEqual([late.vote, late.vote === "no" && late.reason], ["no", "txn_aborted"]);
  assert.equal(account(l, "bank-a/1001").heldMinor, 0n);
  const c = doCommit(l, id);
  assert.equal(!c.ok && c.reason, "txn_aborted");
  assertConsistent(l);
});

test("commit of an unknown txn is an error, never a silent no-op", () => {
  const l = setup();
  const c = doCommit(l, txnId());
  assert.equal(!c.ok && c.reason, "unknown_txn");
});

test("business failures vote NO with their reason and hold nothing", () => {
  const l = setup();
  const cases: Array<[LegInput[], string]> = [
    [[debit("bank-a/1003", 10n)], "currency_mismatch"], // EUR account
    [[credit("bank-a/1001", 10n, { currency: "EUR" })], "currency_mismatch"],
    [[debit("bank-a/1001", 10n, { ownerUserId: "bob" })], "not_account_owner"],
    [[debit("bank-a/9999", 10n)], "account_not_found"],
    [[credit("bank-b/2001", 10n)], "account_not_found"], // another bank's account
    [[debit("bank-a/1002", 501n), credit("bank-a/1001", 501n)], "insufficient_funds"],
  ];
  for (const [legs, reason] of cases) {
    const r = vote(doPrepare(l, { txnId: txnId(), legs }));
    assert.equal(
      r.vote === "no" && r.reason,
      reason,
      JSON.stringify(legs, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v)),
    );
  }
  // The owner check applies to debits only and passes for the real owner.
  assert.equal(
    vote(
      doPrepare(l, {
        txnId: txnId(),
        legs: [
          debit("bank-a/1001", 10n, { ownerUserId: "alice" }),
          credit("bank-a/1002", 10n, { ownerUserId: "alice" }),
        ],
      }),
    ).vote,
    "yes",
  );
  for (const id of ["bank-a/1001", "bank-a/1002", "bank-a/1003"])
    assert.equal(account(l, id).heldMinor, id === "bank-a/1001" ? 10n : 0n);
  assertConsistent(l);
});

test("malformed prepares are rejected and record nothing", () => {
  const l = setup();
  const good = txnId();
  const cases: Array<[PrepareInput, string]> = [
    [{ txnId: "not-a-txn-id", legs: [debit("bank-a/1001", 1n)] }, "invalid_txn_id"],
    [{ txnId: "Gateway-0:00000000-0000-4000-8000-000000000000", legs: [debit("bank-a/1001", 1n)] }, "invalid_txn_id"],
    [{ txnId: good, legs: [] }, "invalid_argument"],
    [{ txnId: good, legs: Array.from({ length: 17 }, () => credit("bank-a/1001", 1n)) }, "invalid_argument"],
    [{ txnId: good, legs: [{ ...debit("bank-a/1001", 1n), direction: "unspecified" }] }, "invalid_argument"],
    [{ txnId: good, legs: [debit("bank-a/1001", 0n)] }, "invalid_amount"],
    [{ txnId: good, legs: [debit("bank-a/1001", -5n)] }, "invalid_amount"],
    [{ txnId: good, legs: [debit("bank-a/1001", 10n ** 15n)] }, "invalid_amount"],
    [{ txnId: good, legs: [debit("bank-a/1001", 1n, { currency: "usd" })] }, "invalid_currency"],
    [{ txnId: good, legs: [debit("1001", 1n)] }, "invalid_account_id"],
  ];
  for (const [input, reason] of cases) {
    const r = doPrepare(l, input);
    assert.equal(!r.ok && r.reason, reason);
  }
  assert.equal(
    l.transact((tx) => tx.txn(good)),
    undefined,
  );
  assert.equal(vote(doPrepare(l, { txnId: good, legs: [debit("bank-a/1001", 1n)] })).vote, "yes");
});

test("a broken invariant inside a write is an assertion and rolls the write back", () => {
  const l = setup();
  const id = txnId();
  vote(doPrepare(l, { txnId: id, legs: [debit("bank-a/1002", 400n), credit("bank-a/1001", 400n)] }));
  // Corrupt the hold behind the rules' back: the commit must refuse to apply.
  l.transact((tx) => tx.setAccountAmounts("bank-a/1002", 500n, 100n));
  assert.throws(() => doCommit(l, id), AssertionError);
  assert.equal(l.transact((tx) => tx.txn(id))!.state, "PREPARED");
  assert.equal(account(l, "bank-a/1001").balanceMinor, 10_000n);
  assert.equal(l.entries("bank-a/1001").length, 1);
  // And reconciliation notices the corruption.
  const r = reconcile(l.audit());
  assert.equal(r.consistent, false);
  assert.match(r.problems.join("\n"), /bank-a\/1002: held 100 != active holds 400/);
});

test("deposits are idempotent on deposit_id and count as deposited", () => {
  const l = setup();
  const input = { depositId: "dep-1", accountId: "bank-a/1002", amountMinor: 250n, currency: "USD" };
  const first = l.transact((tx) => deposit(tx, BANK, input, NOW));
  assert.ok(first.ok && first.value.changed);
  assert.equal(first.value.account.balanceMinor, 750n);
  const again = l.transact((tx) => deposit(tx, BANK, input, NOW));
  assert.ok(again.ok && !again.value.changed);
  assert.equal(again.value.account.balanceMinor, 750n);
  const reused = l.transact((tx) => deposit(tx, BANK, { ...input, amountMinor: 251n }, NOW));
  assert.equal(!reused.ok && reused.reason, "idempotency_key_reused");
  const wrongCurrency = l.transact((tx) => deposit(tx, BANK, { ...input, depositId: "dep-2", currency: "EUR" }, NOW));
  assert.equal(!wrongCurrency.ok && wrongCurrency.reason, "currency_mismatch");
  const missing = l.transact((tx) =>
    deposit(tx, BANK, { ...input, depositId: "dep-3", accountId: "bank-a/4242" }, NOW),
  );
  assert.equal(!missing.ok && missing.reason, "account_not_found");
  assert.deepEqual(
    l
      .entries("bank-a/1002")
      .map((e) => [e.kind, e.txnId, e.amountMinor, e.balanceAfterMinor])
      .at(-1),
    ["deposit", "dep-1", 250n, 750n],
  );
  const usd = reconcile(l.audit()).currencies.find((c) => c.currency === "USD")!;
  assert.equal(usd.depositedMinor, 10_750n);
  assertConsistent(l);
});

test("a credit past the balance maximum votes NO balance_limit_exceeded, counting credits prepared but not committed", () => {
  const l = setupNearMax();
  const first = txnId();
  assert.equal(
    vote(doPrepare(l, { txnId: first, legs: [debit("bank-a/1001", 60n), credit("bank-a/1009", 60n)] })).vote,
    "yes",
  );
  // Alone it would fit (max - 100 + 60); with the first one still prepared it would not.
  const second = txnId();
  const no = vote(doPrepare(l, { txnId: second, legs: [debit("bank-a/1001", 60n), credit("bank-a/1009", 60n)] }));
  assert.deepEqual(no.vote === "no" && [no.reason, no.redelivered], ["balance_limit_exceeded", false]);
  assert.equal(account(l, "bank-a/1001").heldMinor, 60n, "the NO holds nothing");
  const again = vote(doPrepare(l, { txnId: second, legs: [debit("bank-a/1001", 60n), credit("bank-a/1009", 60n)] }));
  assert.equal(again.vote === "no" && again.reason, "balance_limit_exceeded", "the NO is remembered");
  // Two credits to the same account in one txn add up too.
  const split = vote(doPrepare(l, { txnId: txnId(), legs: [credit("bank-a/1009", 30n), credit("bank-a/1009", 11n)] }));
  assert.equal(split.vote === "no" && split.reason, "balance_limit_exceeded");
  // Exactly up to the maximum is fine, and so is the same credit once the first one is aborted.
  const exact = txnId();
  assert.equal(vote(doPrepare(l, { txnId: exact, legs: [credit("bank-a/1009", 40n)] })).vote, "yes");
  assert.ok(doCommit(l, exact).ok);
  assert.ok(doAbort(l, first).ok);
  const retry = txnId();
  assert.equal(
    vote(doPrepare(l, { txnId: retry, legs: [debit("bank-a/1001", 60n), credit("bank-a/1009", 60n)] })).vote,
    "yes",
  );
  assert.ok(doCommit(l, retry).ok);
  assert.equal(account(l, "bank-a/1009").balanceMinor, BALANCE_MINOR_MAX);
  assertConsistent(l);
});

test("a deposit past the balance maximum is balance_limit_exceeded, prepared credits counted", () => {
  const l = setupNearMax();
  assert.equal(vote(doPrepare(l, { txnId: txnId(), legs: [credit("bank-a/1009", 60n)] })).vote, "yes");
  const over = l.transact((tx) =>
    deposit(tx, BANK, { depositId: "admin:dep-9", accountId: "bank-a/1009", amountMinor: 41n, currency: "USD" }, NOW),
  );
  assert.equal(!over.ok && over.reason, "balance_limit_exceeded");
  const fits = l.transact((tx) =>
    deposit(tx, BANK, { depositId: "admin:dep-10", accountId: "bank-a/1009", amountMinor: 40n, currency: "USD" }, NOW),
  );
  assert.ok(fits.ok);
  assertConsistent(l);
});

test("txn ids follow the gateway's rule: a replica name and a lowercase UUID", () => {
  const l = setup();
  for (const bad of [
    "gateway-0:" + "0".repeat(36),
    "0gw:00000000-0000-4000-8000-000000000001",
    "gateway-0:--------0000-4000-8000-0000000000011",
  ]) {
    const r = doPrepare(l, { txnId: bad, legs: [debit("bank-a/1001", 1n)] });
    assert.equal(!r.ok && r.reason, "invalid_txn_id", bad);
  }
});

test("a deposit id made of the gateway's prefix and any valid idempotency key is accepted", () => {
  const l = setup();
  for (const key of ["k".repeat(100), "-", "_x", "a.b:c"]) {
    const r = l.transact((tx) =>
      deposit(tx, BANK, { depositId: `admin:${key}`, accountId: "bank-a/1002", amountMinor: 1n, currency: "USD" }, NOW),
    );
    assert.ok(r.ok, r.ok ? key : `${key}: ${r.reason} ${r.message}`);
  }
});
