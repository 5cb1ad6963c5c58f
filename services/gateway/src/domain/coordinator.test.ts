import { test } from "node:test";
import assert from "node:assert/strict";
import type { FaultPoint } from "@paygate/faults";
import { retryableReasons } from "@paygate/vocab";
import type { Coordinator } from "./coordinator.js";
import type { PreparePlan } from "./rounds/plan.js";
import {
  createFakeBanks,
  createManualClock,
  createMemoryDirectory,
  createMemoryLog,
  hang,
  type FakeBanks,
  type ManualClock,
  type MemoryLog,
} from "../../test-support/fakes.js";
import type { Decision, DirectoryAccount, NewTxn, Result } from "./model.js";
import {
  askBeforeVoting,
  COMMIT_TIMEOUT_MS,
  createCapturingLogger,
  createGate,
  createTestCoordinator,
  holdFundsAt,
  loseAbortsTo,
  reasonOf,
  sequentialTxnIds,
  turn,
  txnIdOf,
  until,
  value,
  type Logged,
} from "../../test-support/test-harness.js";
import type { TransferRequest } from "./transfer-rules.js";
import { transferRequest as request } from "../../test-support/transfer-request.js";

const ACCOUNTS: DirectoryAccount[] = [
  { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
  { accountId: "bank-a/1002", bank: "bank-a", ownerUserId: "alice", currency: "EUR" },
  { accountId: "bank-a/1003", bank: "bank-a", ownerUserId: "carol", currency: "USD" },
  { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "bob", currency: "USD" },
];

interface Harness {
  coordinator: Coordinator;
  log: MemoryLog;
  banks: FakeBanks;
  clock: ManualClock;
  logged: Logged[];
  faultsHit: FaultPoint[];
}

/** A transfer as a process claims it before its prepares go out (what a crash leaves behind). */
function claimedTransfer(txnId: string, idempotencyKey: string, createdAtMs: number): NewTxn {
  return {
    txnId,
    callerUserId: "alice",
    idempotencyKey,
    fingerprint: "f",
    fromAccountId: "bank-a/1001",
    toAccountId: "bank-b/2001",
    fromBank: "bank-a",
    toBank: "bank-b",
    amountMinor: 1n,
    currency: "USD",
    memo: "",
    createdAtMs,
  };
}

function setup(
  overrides: { prepareTimeoutMs?: number; log?: MemoryLog; banks?: FakeBanks; clock?: ManualClock } = {},
): Harness {
  const directory = createMemoryDirectory(ACCOUNTS);
  const log = overrides.log ?? createMemoryLog(directory);
  const banks = overrides.banks ?? createFakeBanks();
  const clock = overrides.clock ?? createManualClock();
  const logger = createCapturingLogger();
  const faultsHit: FaultPoint[] = [];
  const inner = createTestCoordinator({
    log,
    directory,
    participants: banks,
    clock,
    logger,
    faultsHit,
    prepareTimeoutMs: overrides.prepareTimeoutMs,
    newTxnId: sequentialTxnIds(),
  });
  // A transfer may reply once its decision is durable, with its Commits/Aborts
  // still on the way; the fake banks answer within a turn, so the tests read
  // what was delivered one turn after the reply.
  const coordinator: Coordinator = {
    ...inner,
    transfer: async (caller, req) => {
      const out = await inner.transfer(caller, req);
      await turn();
      return out;
    },
  };
  return { coordinator, log, banks, clock, logged: logger.logged, faultsHit };
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
  assert.deepEqual(await h.log.unackedDecisions(10), []);
  assert.deepEqual(h.faultsHit, ["gateway.after_votes_before_decision", "gateway.after_commit_logged"]);
});

test("a same-bank transfer is one Prepare with both legs (one voter)", async () => {
  const h = setup();
  const txn = value(
    (await h.coordinator.transfer("carol", request({ fromAccountId: "bank-a/1003", toAccountId: "bank-a/1001" })))
      .result,
  );
  assert.equal(txn.status, "COMMITTED");
  assert.equal(h.banks.prepares.length, 1);
  assert.deepEqual(
    h.banks.prepares[0]?.legs.map((l) => l.direction),
    ["DEBIT", "CREDIT"],
  );
  assert.deepEqual(h.banks.commits, [{ bank: "bank-a", txnId: txn.txnId }]);
});

test("one NO vote aborts at both banks and declines with the bank's reason", async () => {
  const h = setup();
  h.banks.onPrepare = async (call) =>
    call.bank === "bank-a" ? { vote: "NO", reason: "insufficient_funds" } : { vote: "YES" };
  const out = await h.coordinator.transfer("alice", request());
  assert.ok(!out.result.ok);
  assert.equal(out.result.reason, "insufficient_funds");
  assert.equal(out.result.metadata?.transaction_id, out.txnId);
  assert.equal(h.log.decisions.get(out.txnId ?? "")?.decision, "ABORT");
  assert.equal((await h.log.findTxn(out.txnId ?? ""))?.status, "ABORTED");
  assert.equal((await h.log.findTxn(out.txnId ?? ""))?.declineReason, "insufficient_funds");
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
  let answered: Result<Decision> | undefined;
  h.banks.onPrepare = async (call) => {
    // bank-b gives up waiting and asks the coordinator before the votes are counted.
    if (call.bank === "bank-b") answered = await h.coordinator.getDecision(call.txnId, "bank-b");
    return { vote: "YES" };
  };
  const out = await h.coordinator.transfer("alice", request());
  assert.equal(value(answered ?? { ok: false, reason: "internal", message: "not asked" }), "ABORT");
  assert.equal(reasonOf(out.result), "participant_timeout");
  assert.equal(h.log.decisions.get(out.txnId ?? "")?.decision, "ABORT");
  assert.equal(h.banks.commits.length, 0, "nothing may commit once ABORT was answered");
  assert.deepEqual(h.banks.aborts.map((a) => a.bank).sort(), ["bank-a", "bank-b"]);
  assert.equal(value(await h.coordinator.getDecision(out.txnId ?? "", "bank-a")), "ABORT");
  assert.ok(h.logged.some((l) => l.level === "warn" && l.msg.includes("obeying")));
});

test("GetDecision answers a logged COMMIT, validates ids and never presumes abort for another replica's txn", async () => {
  const h = setup();
  const txn = value((await h.coordinator.transfer("alice", request())).result);
  assert.equal(value(await h.coordinator.getDecision(txn.txnId, "bank-b")), "COMMIT");
  assert.equal(reasonOf(await h.coordinator.getDecision("not-a-txn", "bank-b")), "invalid_txn_id");
  const foreign = "gateway-1:00000000-0000-4000-8000-000000000001";
  assert.equal(reasonOf(await h.coordinator.getDecision(foreign, "bank-b")), "invalid_txn_id");
  assert.equal(h.log.decisions.has(foreign), false);
  // Our own replica's txn we never heard of: presumed abort, logged first.
  const unknown = "gateway-0:11111111-2222-4333-8444-555555555555";
  assert.equal(value(await h.coordinator.getDecision(unknown, "bank-b")), "ABORT");
  assert.equal(h.log.decisions.get(unknown)?.decision, "ABORT");
});

test("redrive resends an unacknowledged COMMIT with backoff until the bank acknowledges", async () => {
  const h = setup();
  let failuresLeft = 2;
  h.banks.onCommit = async (bank) =>
    bank === "bank-b" && failuresLeft-- > 0
      ? { ok: false, reason: "participant_unavailable: down", transient: true }
      : { ok: true };
  const txn = value((await h.coordinator.transfer("alice", request())).result);
  assert.equal(txn.status, "COMMITTED", "the reply does not wait for every acknowledgement");
  assert.deepEqual(
    (await h.log.unackedDecisions(10)).map((d) => [d.txnId, d.banks]),
    [[txn.txnId, ["bank-b"]]],
  );

  h.clock.advance(999);
  assert.equal(await h.coordinator.redriveOnce(), 0, "not due before the first backoff");
  h.clock.advance(1);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.equal(h.log.acks.get(txn.txnId)?.get("bank-b")?.attempts, 2);
  h.clock.advance(1_999);
  assert.equal(await h.coordinator.redriveOnce(), 0, "backoff doubled");
  h.clock.advance(1);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.deepEqual(await h.log.unackedDecisions(10), []);
  assert.equal(h.banks.commits.filter((c) => c.bank === "bank-b").length, 3);
  h.clock.advance(60_000);
  assert.equal(await h.coordinator.redriveOnce(), 0, "acknowledged decisions are not resent");
});

test("a Commit answered unknown_txn raises an alarm and keeps being resent", async () => {
  const h = setup();
  h.banks.onCommit = async (bank) =>
    bank === "bank-b" ? { ok: false, reason: "unknown_txn", transient: false } : { ok: true };
  const txn = value((await h.coordinator.transfer("alice", request())).result);
  const alarm = h.logged.find((l) => l.level === "error" && l.fields.alarm === true);
  assert.equal(alarm?.fields.transactionId, txn.txnId);
  assert.equal(alarm?.fields.reason, "unknown_txn");
  h.clock.advance(60_000);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.equal(h.logged.filter((l) => l.fields.alarm === true).length, 2);
  assert.equal((await h.log.unackedDecisions(10))[0]?.lastError, "unknown_txn");
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
  const claim = await log.claim(
    claimedTransfer("gateway-0:99999999-0000-4000-8000-000000000000", "key-2", clock.nowMs()),
  );
  assert.ok(claim.claimed);

  const after = setup({ log, clock });
  const report = await after.coordinator.recover();
  assert.equal(report.abortedPending, 1);
  const pending = await log.findTxn(claim.txn.txnId);
  assert.equal(pending?.status, "ABORTED");
  assert.equal(pending?.declineReason, "coordinator_restarted");
  assert.deepEqual(after.banks.aborts.map((a) => a.bank).sort(), ["bank-a", "bank-b"]);
  assert.deepEqual(
    after.banks.commits.map((c) => c.txnId),
    [committed.txnId, committed.txnId],
  );
  assert.deepEqual(await log.unackedDecisions(10), []);
  assert.deepEqual(await log.pendingUndecided(10), []);
});

test("a repeated key with the same request replays the stored outcome without a second prepare", async () => {
  const h = setup();
  const first = await h.coordinator.transfer("alice", request());
  const second = await h.coordinator.transfer("alice", request());
  assert.deepEqual(value(second.result), value(first.result));
  assert.equal(second.replayed, true);
  assert.equal(h.banks.prepares.length, 2, "one prepare round only (two banks)");
  // The key is scoped per caller: bob's identical key is his own, new request.
  const bobs = value(
    (await h.coordinator.transfer("bob", request({ fromAccountId: "bank-b/2001", toAccountId: "bank-a/1001" }))).result,
  );
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
  assert.equal((await h.log.findTxn(first.txnId ?? ""))?.status, "ABORTED");
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
    assert.equal(
      reasonOf(out.result),
      reason,
      JSON.stringify(over, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)),
    );
    assert.equal(out.txnId, undefined);
  }
  assert.equal(h.log.txns.size, 0);
  assert.equal(h.banks.prepares.length, 0);
  // A memo of exactly 140 characters (code points, not UTF-16 units) is fine.
  assert.equal(
    value((await h.coordinator.transfer("alice", request({ memo: "€".repeat(140) }))).result).status,
    "COMMITTED",
  );
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
  const seen = await h.log.listVisible("bob", 0n, 10);
  assert.deepEqual(
    seen.map((t) => [t.sequence, t.status]),
    [
      [1n, "COMMITTED"],
      [2n, "ABORTED"],
    ],
  );
  assert.deepEqual(
    (await h.log.listVisible("alice", a.sequence, 10)).map((t) => t.sequence),
    [2n],
  );
  assert.deepEqual(await h.log.listVisible("carol", 0n, 10), []);
});

// ---- issue 13 #2: a retry must not meet the first attempt's own hold ----------

/**
 * The first attempt aborts transiently (bank-b answers `reason`) after bank-a
 * held exactly what alice has, and its Abort to bank-a is lost. bank-b is
 * back afterwards; bank-a's Aborts stay lost until the test says so.
 */
async function strandedFirstAttempt(h: Harness, reason: "participant_unavailable" | "participant_timeout") {
  const bankA = holdFundsAt(h.banks, "bank-a", 2_500n);
  bankA.othersVote = async () => ({ vote: "NO", reason });
  bankA.abortsReach = false;
  const first = await h.coordinator.transfer("alice", request());
  assert.equal(reasonOf(first.result), reason);
  assert.equal(bankA.holds.get(first.txnId ?? ""), 2_500n, "the first attempt's hold is still at bank-a");
  bankA.othersVote = async () => ({ vote: "YES" });
  return { bankA, first };
}

test("a retry after a transient abort whose Abort has not reached the debit bank answers participant_unavailable (no prepare) until the Abort is acknowledged, then runs as a new txn", async () => {
  const h = setup();
  const { bankA, first } = await strandedFirstAttempt(h, "participant_unavailable");
  const prepares = h.banks.prepares.length;
  const abortsOfFirst = () => h.banks.aborts.filter((a) => a.bank === "bank-a" && a.txnId === first.txnId).length;
  const abortsBefore = abortsOfFirst();
  for (let i = 0; i < 2; i++) {
    const retry = await h.coordinator.transfer("alice", request());
    // Before the fix the retry ran at once, met its own hold and got insufficient_funds: final for the key.
    assert.equal(reasonOf(retry.result), "participant_unavailable");
    assert.ok(retryableReasons.has("participant_unavailable"));
    assert.equal(retry.txnId, first.txnId, "still the first attempt's txn");
    assert.equal(retry.replayed, true);
  }
  assert.equal(h.banks.prepares.length, prepares, "no Prepare while the old hold stands");
  assert.equal(h.log.txns.size, 1, "no new txn");
  assert.equal(abortsOfFirst() - abortsBefore, 2, "each retry resent the Abort");

  bankA.abortsReach = true;
  const third = await h.coordinator.transfer("alice", request());
  const txn = value(third.result);
  assert.notEqual(txn.txnId, first.txnId);
  assert.equal(txn.status, "COMMITTED");
  assert.deepEqual(await h.log.unackedBanks(first.txnId ?? ""), [], "the old Abort is acknowledged");
  assert.equal((await h.log.findTxn(first.txnId ?? ""))?.status, "ABORTED");
  assert.deepEqual([bankA.holds.size, bankA.availableMinor], [0, 0n], "the money moved once");
  assert.equal(
    value((await h.coordinator.transfer("alice", request())).result).txnId,
    txn.txnId,
    "now the key replays the commit",
  );
});

test("a retry runs as soon as the redrive loop has delivered the old Abort", async () => {
  const h = setup();
  const { bankA, first } = await strandedFirstAttempt(h, "participant_timeout");
  bankA.abortsReach = true;
  h.clock.advance(COMMIT_TIMEOUT_MS);
  assert.equal(await h.coordinator.redriveOnce(), 1, "the lost Abort is resent");
  assert.equal(bankA.holds.size, 0);
  const retry = value((await h.coordinator.transfer("alice", request())).result);
  assert.equal(retry.status, "COMMITTED");
  assert.notEqual(retry.txnId, first.txnId);
});

// ---- issue 13 #3: only a participant may ask for a decision --------------------

test("GetDecision from a bank that is not a participant of a transfer is refused (not_participant) and logs no decision", async () => {
  const h = setup();
  let asked: Result<Decision> | undefined;
  let decidedWhenAsked = true;
  h.banks.onPrepare = async (call) => {
    if (call.bank === "bank-b") {
      asked = await h.coordinator.getDecision(call.txnId, "bank-c");
      decidedWhenAsked = h.log.decisions.has(call.txnId);
    }
    return { vote: "YES" };
  };
  const out = await h.coordinator.transfer("alice", request());
  // Before the fix any bank's question was a presumed abort: the transfer would have been aborted.
  assert.equal(reasonOf(asked ?? { ok: true, value: "ABORT" }), "not_participant");
  assert.equal(decidedWhenAsked, false, "the refused question logged no decision");
  const txn = value(out.result);
  assert.equal(txn.status, "COMMITTED");
  assert.ok(!h.logged.some((l) => l.msg.startsWith("presumed abort")));
  // Decided, the answer is still not for strangers; the participants get it.
  assert.equal(reasonOf(await h.coordinator.getDecision(txn.txnId, "bank-c")), "not_participant");
  assert.equal(value(await h.coordinator.getDecision(txn.txnId, "bank-a")), "COMMIT");
});

const capturePlan: PreparePlan[] = [
  {
    bank: "bank-a",
    legs: [
      {
        accountId: "bank-a/1001",
        direction: "CAPTURE",
        amountMinor: 700n,
        currency: "USD",
        ownerUserId: "",
        holdId: "auth_1",
      },
    ],
  },
  {
    bank: "bank-b",
    legs: [{ accountId: "bank-b/2001", direction: "CREDIT", amountMinor: 700n, currency: "USD", ownerUserId: "" }],
  },
];

test("GetDecision about a card round from a bank outside the round is refused; the round commits", async () => {
  const h = setup();
  const txnId = h.coordinator.newTxnId();
  let asked: Result<Decision> | undefined;
  h.banks.onPrepare = async (call) => {
    asked = await h.coordinator.getDecision(call.txnId, "bank-c");
    return { vote: "YES" };
  };
  const d = await h.coordinator.runRound(txnId, "capture", capturePlan);
  // Before the fix a round was known only by its decision: any bank's question aborted it.
  assert.equal(reasonOf(asked ?? { ok: true, value: "ABORT" }), "not_participant");
  assert.equal(d.decision, "COMMIT");
  assert.deepEqual((await h.log.findRound(txnId))?.banks, ["bank-a", "bank-b"], "registered before its prepares");
});

// ---- issue 13 #4: a presumed abort of a round is redriven to every participant --

test("a round aborted through GetDecision has acks for all its participants: the Abort is redriven until acknowledged and counts as in doubt until then", async () => {
  const h = setup();
  const txnId = h.coordinator.newTxnId();
  // bank-a's prepare timed out on its side: it asks, and the coordinator presumes abort.
  askBeforeVoting(h.banks, h.coordinator, "bank-a");
  const bankB = loseAbortsTo(h.banks, "bank-b");
  const d = await h.coordinator.runRound(txnId, "capture", capturePlan);
  assert.deepEqual([d.decision, d.reason], ["ABORT", "participant_timeout"]);
  assert.equal(h.banks.commits.length, 0);
  // Before the fix the presumed abort named only the asking bank: bank-b's failed Abort was never resent.
  assert.deepEqual([...(h.log.acks.get(txnId)?.keys() ?? [])].sort(), ["bank-a", "bank-b"]);
  assert.deepEqual(await h.log.unackedBanks(txnId), ["bank-b"]);
  assert.equal((await h.log.inDoubtSummary(h.clock.nowMs())).count, 1);

  h.clock.advance(1_000);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.deepEqual(await h.log.unackedBanks(txnId), ["bank-b"], "still down");
  bankB.down = false;
  h.clock.advance(2_000);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.deepEqual(await h.log.unackedBanks(txnId), []);
  assert.equal((await h.log.inDoubtSummary(h.clock.nowMs())).count, 0);
  assert.equal(h.banks.aborts.filter((a) => a.bank === "bank-b" && a.txnId === txnId).length, 3);
});

// ---- the orphan sweep and takeover -------------------------------------------

test("abortUndecided aborts a dead replica's PENDING txn and undecided round (the redrive tells the banks) and never a txn this process runs", async () => {
  const h = setup();
  const now = h.clock.nowMs();
  const deadTxn = txnIdOf(9_001, "gateway-1");
  const deadRound = txnIdOf(9_002, "gateway-1");
  assert.ok((await h.log.claim(claimedTransfer(deadTxn, "dead-key", now))).claimed);
  await h.log.registerRound({ txnId: deadRound, kind: "capture", banks: ["bank-a", "bank-b"], createdAtMs: now });
  const otherLive = txnIdOf(9_003, "gateway-2");
  assert.ok((await h.log.claim(claimedTransfer(otherLive, "live-key", now))).claimed);

  // Our own transfer is between its claim and its decision.
  const gate = createGate();
  h.banks.onPrepare = () => gate.wait(() => ({ vote: "YES" }));
  const running = h.coordinator.transfer("alice", request({ idempotencyKey: "running" }));
  await until("its prepares", () => gate.waiting === 2);
  const runningId = h.banks.prepares[0]!.txnId;
  assert.equal(h.coordinator.isRunning(runningId), true);

  assert.deepEqual(await h.coordinator.abortUndecided("gateway-1", Number.MAX_SAFE_INTEGER), {
    abortedPending: 1,
    abortedRounds: 1,
  });
  const aborted = await h.log.findTxn(deadTxn);
  assert.deepEqual([aborted?.status, aborted?.declineReason], ["ABORTED", "coordinator_restarted"]);
  assert.deepEqual(h.log.decisions.get(deadRound)?.reason, "coordinator_restarted");
  assert.deepEqual(await h.log.unackedBanks(deadRound), ["bank-a", "bank-b"]);
  assert.equal((await h.log.findTxn(otherLive))?.status, "PENDING", "another replica's txn is not touched");

  // The sweep of this replica's own orphans skips what it runs, however old.
  h.clock.advance(60_000);
  assert.deepEqual(await h.coordinator.abortUndecided("gateway-0", h.clock.nowMs()), {
    abortedPending: 0,
    abortedRounds: 0,
  });
  assert.equal(h.log.decisions.has(runningId), false);
  gate.open();
  assert.equal(value((await running).result).status, "COMMITTED");

  assert.equal(await h.coordinator.redriveOnce(), 4, "Aborts for both of the dead replica's txns, at both banks");
  assert.deepEqual(await h.log.unackedDecisions(10), []);
});

test("abortUndecided takes only what was created before the cut-off: a claim whose request died, not one just made", async () => {
  const h = setup();
  const now = h.clock.nowMs();
  const old = txnIdOf(9_101);
  const fresh = txnIdOf(9_102);
  await h.log.claim(claimedTransfer(old, "old", now - 1));
  await h.log.claim(claimedTransfer(fresh, "fresh", now));
  assert.deepEqual(await h.coordinator.abortUndecided("gateway-0", now), { abortedPending: 1, abortedRounds: 0 });
  assert.equal((await h.log.findTxn(old))?.status, "ABORTED");
  assert.equal((await h.log.findTxn(fresh))?.status, "PENDING");
});
