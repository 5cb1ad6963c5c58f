import { test } from "node:test";
import assert from "node:assert/strict";
import type { FaultPoint } from "@paygate/faults";
import { createCoordinator, type Coordinator } from "./coordinator.js";
import { createDecidedFeed } from "./decided-feed.js";
import { createFakeBanks, createManualClock, createMemoryDirectory, createMemoryLog, hang, type FakeBanks, type ManualClock, type MemoryLog } from "./fakes.js";
import type { DirectoryAccount, Result } from "./model.js";
import type { TransferRequest } from "./transfer-rules.js";

const ACCOUNTS: DirectoryAccount[] = [
  { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
  { accountId: "bank-a/1002", bank: "bank-a", ownerUserId: "alice", currency: "EUR" },
  { accountId: "bank-a/1003", bank: "bank-a", ownerUserId: "carol", currency: "USD" },
  { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "bob", currency: "USD" },
];

interface Logged {
  level: "info" | "warn" | "error";
  fields: Record<string, unknown>;
  msg: string;
}

interface Harness {
  coordinator: Coordinator;
  log: MemoryLog;
  banks: FakeBanks;
  clock: ManualClock;
  logged: Logged[];
  faultsHit: FaultPoint[];
}

let ids = 0;
function setup(overrides: { prepareTimeoutMs?: number; log?: MemoryLog; banks?: FakeBanks; clock?: ManualClock } = {}): Harness {
  const directory = createMemoryDirectory(ACCOUNTS);
  const log = overrides.log ?? createMemoryLog(directory);
  const banks = overrides.banks ?? createFakeBanks();
  const clock = overrides.clock ?? createManualClock();
  const logged: Logged[] = [];
  const faultsHit: FaultPoint[] = [];
  const entry = (level: Logged["level"]) => (fields: object, msg: string) => void logged.push({ level, fields: fields as Record<string, unknown>, msg });
  const coordinator = createCoordinator({
    replica: "gateway-0",
    log,
    directory,
    participants: banks,
    clock,
    faults: { hit: (p) => void faultsHit.push(p) },
    feed: createDecidedFeed(),
    logger: { info: entry("info"), warn: entry("warn"), error: entry("error") },
    prepareTimeoutMs: overrides.prepareTimeoutMs ?? 10_000,
    commitTimeoutMs: 5_000,
    redriveIntervalMs: 1_000,
    redriveBackoffMaxMs: 8_000,
    newTxnId: () => `gateway-0:00000000-0000-4000-8000-${String(++ids).padStart(12, "0")}`,
  });
  return { coordinator, log, banks, clock, logged, faultsHit };
}

const request = (over: Partial<TransferRequest> = {}): TransferRequest => ({
  idempotencyKey: "key-1",
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  amountMinor: 2500n,
  currency: "USD",
  memo: "rent",
  ...over,
});

function value<T>(r: Result<T>): T {
  if (!r.ok) assert.fail(`expected ok, got ${r.reason}: ${r.message}`);
  return r.value;
}

function reasonOf(r: Result<unknown>): string {
  assert.ok(!r.ok, "expected a failure");
  return r.reason;
}

test("all votes YES: COMMIT is logged, both banks are told and acknowledge", async () => {
  const h = setup();
  const out = await h.coordinator.transfer("alice", request());
  const txn = value(out.result);
  assert.equal(txn.status, "COMMITTED");
  assert.equal(txn.sequence, 1n);
  assert.equal(out.replayed, false);
  assert.match(txn.txnId, /^gateway-0:/);
  assert.deepEqual(
    h.banks.prepares.map((p) => [p.bank, p.legs.map((l) => [l.accountId, l.direction, l.amountMinor, l.ownerUserId])]),
    [
      ["bank-a", [["bank-a/1001", "DEBIT", 2500n, "alice"]]],
      ["bank-b", [["bank-b/2001", "CREDIT", 2500n, ""]]],
    ],
  );
  assert.equal(h.log.decisions.get(txn.txnId)?.decision, "COMMIT");
  assert.deepEqual(h.banks.commits.map((c) => c.bank).sort(), ["bank-a", "bank-b"]);
  assert.equal(h.banks.aborts.length, 0);
  assert.deepEqual(h.log.unackedDecisions(10), []);
  assert.deepEqual(h.faultsHit, ["gateway.after_votes_before_decision", "gateway.after_commit_logged"]);
});

test("a same-bank transfer is one Prepare with both legs (one voter)", async () => {
  const h = setup();
  const txn = value((await h.coordinator.transfer("carol", request({ fromAccountId: "bank-a/1003", toAccountId: "bank-a/1001" }))).result);
  assert.equal(txn.status, "COMMITTED");
  assert.equal(h.banks.prepares.length, 1);
  assert.deepEqual(h.banks.prepares[0]?.legs.map((l) => l.direction), ["DEBIT", "CREDIT"]);
  assert.deepEqual(h.banks.commits, [{ bank: "bank-a", txnId: txn.txnId }]);
});

test("one NO vote aborts at both banks and declines with the bank's reason", async () => {
  const h = setup();
  h.banks.onPrepare = async (call) => (call.bank === "bank-a" ? { vote: "NO", reason: "insufficient_funds" } : { vote: "YES" });
  const out = await h.coordinator.transfer("alice", request());
  assert.ok(!out.result.ok);
  assert.equal(out.result.reason, "insufficient_funds");
  assert.equal(out.result.metadata?.transaction_id, out.txnId);
  assert.equal(h.log.decisions.get(out.txnId ?? "")?.decision, "ABORT");
  assert.equal(h.log.findTxn(out.txnId ?? "")?.status, "ABORTED");
  assert.equal(h.log.findTxn(out.txnId ?? "")?.declineReason, "insufficient_funds");
  assert.deepEqual(h.banks.aborts.map((a) => a.bank).sort(), ["bank-a", "bank-b"]);
  assert.equal(h.banks.commits.length, 0);
  assert.deepEqual(h.faultsHit, ["gateway.after_abort_logged"]);
});

test("a participant that does not answer in time aborts the txn (participant_timeout)", async () => {
  const h = setup({ prepareTimeoutMs: 20 });
  h.banks.onPrepare = async (call, signal) => (call.bank === "bank-b" ? hang(signal) : { vote: "YES" });
  const out = await h.coordinator.transfer("alice", request());
  assert.equal(reasonOf(out.result), "participant_timeout");
  assert.equal(h.log.decisions.get(out.txnId ?? "")?.decision, "ABORT");
  assert.deepEqual(h.banks.aborts.map((a) => a.bank).sort(), ["bank-a", "bank-b"]);
  assert.equal(h.banks.commits.length, 0);
});

test("a transport error from a participant aborts (participant_unavailable)", async () => {
  const h = setup();
  h.banks.onPrepare = async (call) => {
    if (call.bank === "bank-b") throw new Error("connection refused");
    return { vote: "YES" };
  };
  const out = await h.coordinator.transfer("alice", request());
  assert.equal(reasonOf(out.result), "participant_unavailable");
  assert.equal(h.banks.commits.length, 0);
});

test("GetDecision before the decision durably aborts; the later all-YES obeys ABORT", async () => {
  const h = setup();
  let answered: Result<string> | undefined;
  h.banks.onPrepare = async (call) => {
    // bank-b gives up waiting and asks the coordinator before the votes are counted.
    if (call.bank === "bank-b") answered = h.coordinator.getDecision(call.txnId, "bank-b");
    return { vote: "YES" };
  };
  const out = await h.coordinator.transfer("alice", request());
  assert.equal(value(answered ?? { ok: false, reason: "internal", message: "not asked" }), "ABORT");
  assert.equal(reasonOf(out.result), "participant_timeout");
  assert.equal(h.log.decisions.get(out.txnId ?? "")?.decision, "ABORT");
  assert.equal(h.banks.commits.length, 0, "nothing may commit once ABORT was answered");
  assert.deepEqual(h.banks.aborts.map((a) => a.bank).sort(), ["bank-a", "bank-b"]);
  assert.equal(value(h.coordinator.getDecision(out.txnId ?? "", "bank-a")), "ABORT");
  assert.ok(h.logged.some((l) => l.level === "warn" && l.msg.includes("obeying")));
});

test("GetDecision answers a logged COMMIT, validates ids and never presumes abort for another replica's txn", async () => {
  const h = setup();
  const txn = value((await h.coordinator.transfer("alice", request())).result);
  assert.equal(value(h.coordinator.getDecision(txn.txnId, "bank-b")), "COMMIT");
  assert.equal(reasonOf(h.coordinator.getDecision("not-a-txn", "bank-b")), "invalid_txn_id");
  const foreign = "gateway-1:00000000-0000-4000-8000-000000000001";
  assert.equal(reasonOf(h.coordinator.getDecision(foreign, "bank-b")), "invalid_txn_id");
  assert.equal(h.log.decisions.has(foreign), false);
  // Our own replica's txn we never heard of: presumed abort, logged first.
  const unknown = "gateway-0:11111111-2222-4333-8444-555555555555";
  assert.equal(value(h.coordinator.getDecision(unknown, "bank-b")), "ABORT");
  assert.equal(h.log.decisions.get(unknown)?.decision, "ABORT");
});

test("redrive resends an unacknowledged COMMIT with backoff until the bank acknowledges", async () => {
  const h = setup();
  let failuresLeft = 2;
  h.banks.onCommit = async (bank) => (bank === "bank-b" && failuresLeft-- > 0 ? { ok: false, reason: "participant_unavailable: down", transient: true } : { ok: true });
  const txn = value((await h.coordinator.transfer("alice", request())).result);
  assert.equal(txn.status, "COMMITTED", "the reply does not wait for every acknowledgement");
  assert.deepEqual(h.log.unackedDecisions(10).map((d) => [d.txnId, d.banks]), [[txn.txnId, ["bank-b"]]]);

  h.clock.advance(999);
  assert.equal(await h.coordinator.redriveOnce(), 0, "not due before the first backoff");
  h.clock.advance(1);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.equal(h.log.acks.get(txn.txnId)?.get("bank-b")?.attempts, 2);
  h.clock.advance(1_999);
  assert.equal(await h.coordinator.redriveOnce(), 0, "backoff doubled");
  h.clock.advance(1);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.deepEqual(h.log.unackedDecisions(10), []);
  assert.equal(h.banks.commits.filter((c) => c.bank === "bank-b").length, 3);
  h.clock.advance(60_000);
  assert.equal(await h.coordinator.redriveOnce(), 0, "acknowledged decisions are not resent");
});

test("a Commit answered unknown_txn raises an alarm and keeps being resent", async () => {
  const h = setup();
  h.banks.onCommit = async (bank) => (bank === "bank-b" ? { ok: false, reason: "unknown_txn", transient: false } : { ok: true });
  const txn = value((await h.coordinator.transfer("alice", request())).result);
  const alarm = h.logged.find((l) => l.level === "error" && l.fields.alarm === true);
  assert.equal(alarm?.fields.transactionId, txn.txnId);
  assert.equal(alarm?.fields.reason, "unknown_txn");
  h.clock.advance(60_000);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.equal(h.logged.filter((l) => l.fields.alarm === true).length, 2);
  assert.equal(h.log.unackedDecisions(10)[0]?.lastError, "unknown_txn");
});

test("recovery aborts PENDING txns without a decision and redrives unacknowledged decisions at once", async () => {
  const directory = createMemoryDirectory(ACCOUNTS);
  const log = createMemoryLog(directory);
  const clock = createManualClock();
  const before = setup({ log, clock });
  // A crash after COMMIT was logged but before any Commit was sent.
  before.banks.onCommit = async () => ({ ok: false, reason: "participant_unavailable: crash", transient: true });
  const committed = value((await before.coordinator.transfer("alice", request())).result);
  // A crash mid-prepare: the txn was claimed, no decision.
  const claim = await log.claim({
    txnId: "gateway-0:99999999-0000-4000-8000-000000000000",
    callerUserId: "alice",
    idempotencyKey: "key-2",
    fingerprint: "f",
    fromAccountId: "bank-a/1001",
    toAccountId: "bank-b/2001",
    fromBank: "bank-a",
    toBank: "bank-b",
    amountMinor: 1n,
    currency: "USD",
    memo: "",
    createdAtMs: clock.nowMs(),
  });
  assert.ok(claim.claimed);

  const after = setup({ log, clock });
  const report = await after.coordinator.recover();
  assert.equal(report.abortedPending, 1);
  const pending = log.findTxn(claim.txn.txnId);
  assert.equal(pending?.status, "ABORTED");
  assert.equal(pending?.declineReason, "coordinator_restarted");
  assert.deepEqual(after.banks.aborts.map((a) => a.bank).sort(), ["bank-a", "bank-b"]);
  assert.deepEqual(after.banks.commits.map((c) => c.txnId), [committed.txnId, committed.txnId]);
  assert.deepEqual(log.unackedDecisions(10), []);
  assert.deepEqual(log.pendingUndecided(10), []);
});

test("a repeated key with the same request replays the stored outcome without a second prepare", async () => {
  const h = setup();
  const first = await h.coordinator.transfer("alice", request());
  const second = await h.coordinator.transfer("alice", request());
  assert.deepEqual(value(second.result), value(first.result));
  assert.equal(second.replayed, true);
  assert.equal(h.banks.prepares.length, 2, "one prepare round only (two banks)");
  // The key is scoped per caller: bob's identical key is his own, new request.
  const bobs = value((await h.coordinator.transfer("bob", request({ fromAccountId: "bank-b/2001", toAccountId: "bank-a/1001" }))).result);
  assert.notEqual(bobs.txnId, value(first.result).txnId);
  assert.equal(bobs.status, "COMMITTED");
});

test("a declined request replays the same decline; a PENDING one says in use", async () => {
  const h = setup();
  h.banks.onPrepare = async () => ({ vote: "NO", reason: "insufficient_funds" });
  const first = await h.coordinator.transfer("alice", request());
  const again = await h.coordinator.transfer("alice", request());
  assert.equal(reasonOf(again.result), "insufficient_funds");
  assert.equal(again.txnId, first.txnId);
  assert.equal(h.banks.prepares.length, 2);

  const held: (() => void)[] = [];
  h.banks.onPrepare = () => new Promise((resolve) => void held.push(() => resolve({ vote: "YES" })));
  const inFlight = h.coordinator.transfer("alice", request({ idempotencyKey: "key-slow" }));
  const concurrent = await h.coordinator.transfer("alice", request({ idempotencyKey: "key-slow" }));
  assert.equal(reasonOf(concurrent.result), "idempotency_key_in_use");
  const pending = [...h.log.txns.values()].find((t) => t.status === "PENDING");
  assert.ok(!concurrent.result.ok && pending);
  assert.equal(concurrent.result.metadata?.transaction_id, pending.txnId);
  for (const release of held) release();
  assert.equal(value((await inFlight).result).status, "COMMITTED");
});

test("the same key with a different request is rejected as reused", async () => {
  const h = setup();
  await h.coordinator.transfer("alice", request());
  const out = await h.coordinator.transfer("alice", request({ amountMinor: 2501n }));
  assert.equal(reasonOf(out.result), "idempotency_key_reused");
  assert.equal(h.log.txns.size, 1);
});

test("after a transient abort the same key tries again as a new txn; the old one stays ABORTED", async () => {
  const h = setup();
  h.banks.onPrepare = async () => ({ vote: "NO", reason: "participant_unavailable" });
  const first = await h.coordinator.transfer("alice", request());
  assert.equal(reasonOf(first.result), "participant_unavailable");
  h.banks.onPrepare = async () => ({ vote: "YES" });
  const retry = await h.coordinator.transfer("alice", request());
  const txn = value(retry.result);
  assert.equal(retry.replayed, true);
  assert.notEqual(txn.txnId, first.txnId);
  assert.equal(txn.status, "COMMITTED");
  assert.equal(h.log.findTxn(first.txnId ?? "")?.status, "ABORTED");
  // And now the key is settled: a third try replays the commit.
  const third = await h.coordinator.transfer("alice", request());
  assert.equal(value(third.result).txnId, txn.txnId);
  assert.equal(h.banks.prepares.length, 4);
});

test("invalid requests are rejected before anything is stored", async () => {
  const h = setup();
  const cases: [Partial<TransferRequest>, string, string?][] = [
    [{ idempotencyKey: "" }, "idempotency_key_missing"],
    [{ idempotencyKey: "x".repeat(256) }, "idempotency_key_missing"],
    [{ idempotencyKey: "bad\nkey" }, "idempotency_key_missing"],
    [{ fromAccountId: "1001" }, "invalid_account_id"],
    [{ toAccountId: "bank-b/" }, "invalid_account_id"],
    [{ toAccountId: "bank-a/1001" }, "same_account"],
    [{ amountMinor: 0n }, "invalid_amount"],
    [{ amountMinor: -5n }, "invalid_amount"],
    [{ amountMinor: 9_223_372_036_854_775_808n }, "invalid_amount"],
    [{ currency: "usd" }, "invalid_currency"],
    [{ memo: "m".repeat(141) }, "memo_too_long"],
    [{ toAccountId: "bank-b/9999" }, "account_not_found"],
    [{ fromAccountId: "bank-b/2001", toAccountId: "bank-a/1001" }, "not_account_owner"],
    [{ toAccountId: "bank-a/1002" }, "currency_mismatch"],
    [{ currency: "EUR" }, "currency_mismatch"],
  ];
  for (const [over, reason] of cases) {
    const out = await h.coordinator.transfer("alice", request(over));
    assert.equal(reasonOf(out.result), reason, JSON.stringify(over, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)));
    assert.equal(out.txnId, undefined);
  }
  assert.equal(h.log.txns.size, 0);
  assert.equal(h.banks.prepares.length, 0);
  // A memo of exactly 140 characters (code points, not UTF-16 units) is fine.
  assert.equal(value((await h.coordinator.transfer("alice", request({ memo: "€".repeat(140) }))).result).status, "COMMITTED");
});

test("an admin does not bypass ownership for Transfer", async () => {
  const h = setup();
  const out = await h.coordinator.transfer("admin", request());
  assert.equal(reasonOf(out.result), "not_account_owner");
});

test("every decision lands in the history with increasing sequences", async () => {
  const h = setup();
  const a = value((await h.coordinator.transfer("alice", request({ idempotencyKey: "k1" }))).result);
  h.banks.onPrepare = async () => ({ vote: "NO", reason: "insufficient_funds" });
  await h.coordinator.transfer("alice", request({ idempotencyKey: "k2" }));
  const seen = h.log.listVisible("bob", 0n, 10);
  assert.deepEqual(seen.map((t) => [t.sequence, t.status]), [[1n, "COMMITTED"], [2n, "ABORTED"]]);
  assert.deepEqual(h.log.listVisible("alice", a.sequence, 10).map((t) => t.sequence), [2n]);
  assert.deepEqual(h.log.listVisible("carol", 0n, 10), []);
});
