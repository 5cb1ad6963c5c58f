import { test } from "node:test";
import assert from "node:assert/strict";
import { createSeededRandom } from "./backoff.js";
import { applyOutcome, claimEntry, createEntry, isClaimable, retryEntry, type QueuePolicy } from "./queue.js";

const policy: QueuePolicy = { backoff: { baseMs: 1000, capMs: 60_000 }, attemptsMax: 3, claimLeaseMs: 15_000 };
const request = {
  userId: "alice",
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  amountMinor: 1250n,
  currency: "USD",
  memo: "rent",
};
const alive = () => true;
const t0 = 1_000_000;

function sending(now = t0) {
  return claimEntry(createEntry("k-1", request, now), 4242, now, policy);
}

test("a new entry is queued, due now, with no attempts", () => {
  const e = createEntry("k-1", request, t0);
  assert.equal(e.state, "queued");
  assert.equal(e.attempts, 0);
  assert.equal(e.nextAttemptAt, t0);
  assert.ok(isClaimable(e, { now: t0, claimAlive: alive }));
});

test("claim: queued -> sending, holding a lease", () => {
  const e = sending();
  assert.equal(e.state, "sending");
  assert.deepEqual(e.claim, { pid: 4242, expiresAt: t0 + 15_000 });
  assert.equal(e.key, "k-1");
});

test("transient failure: back to queued with attempts+1 and a full-jitter next attempt, same key", () => {
  const random = createSeededRandom(1);
  const e = applyOutcome(
    sending(),
    { kind: "transient", scope: "gateway", reason: "gateway_unreachable", message: "connect ECONNREFUSED" },
    t0 + 10,
    policy,
    random,
  );
  assert.equal(e.state, "queued");
  assert.equal(e.attempts, 1);
  assert.equal(e.key, "k-1");
  assert.equal(e.claim, null);
  assert.equal(e.lastReason, "gateway_unreachable");
  assert.ok(
    e.nextAttemptAt !== null && e.nextAttemptAt >= t0 + 10 && e.nextAttemptAt <= t0 + 10 + 1000,
    `next ${e.nextAttemptAt}`,
  );
  // Not due before its time, unless forced (queue flush).
  assert.equal(isClaimable(e, { now: t0 + 9, claimAlive: alive }), false);
  assert.ok(isClaimable(e, { now: t0 + 9, force: true, claimAlive: alive }));
  assert.ok(isClaimable(e, { now: e.nextAttemptAt, claimAlive: alive }));

  const again = applyOutcome(
    claimEntry(e, 1, t0 + 5000, policy),
    { kind: "transient", scope: "entry", reason: "idempotency_key_in_use", message: "in flight" },
    t0 + 5000,
    policy,
    () => 0.9999999,
  );
  assert.equal(again.attempts, 2);
  // The second retry waits up to base * 2^1.
  assert.equal(again.nextAttemptAt, t0 + 5000 + 2000);
});

test("decline: terminal with its reason and transaction id, never claimable again", () => {
  const e = applyOutcome(
    sending(),
    { kind: "declined", reason: "insufficient_funds", message: "available 5.00 USD", transactionId: "gw-0/t1" },
    t0 + 1,
    policy,
    Math.random,
  );
  assert.equal(e.state, "declined");
  assert.equal(e.lastReason, "insufficient_funds");
  assert.equal(e.transactionId, "gw-0/t1");
  assert.equal(e.nextAttemptAt, null);
  assert.equal(isClaimable(e, { now: t0 + 10_000_000, force: true, claimAlive: alive }), false);
  assert.throws(() => claimEntry(e, 1, t0, policy), /cannot claim/);
});

test("commit: terminal with the transaction id", () => {
  const e = applyOutcome(sending(), { kind: "committed", transactionId: "gw-0/t2" }, t0 + 1, policy, Math.random);
  assert.equal(e.state, "committed");
  assert.equal(e.attempts, 1);
  assert.equal(e.transactionId, "gw-0/t2");
  assert.equal(isClaimable(e, { now: t0 + 10_000_000, force: true, claimAlive: alive }), false);
  assert.throws(
    () => applyOutcome(e, { kind: "committed", transactionId: "x" }, t0, policy, Math.random),
    /only to a sending entry/,
  );
});

test("attempts max: the last transient failure gives up with a clear state; retry puts it back with the same key", () => {
  let e = sending();
  const transient = { kind: "transient", scope: "gateway", reason: "timeout", message: "deadline exceeded" } as const;
  e = applyOutcome(e, transient, t0, policy, () => 0);
  e = applyOutcome(claimEntry(e, 1, t0, policy), transient, t0, policy, () => 0);
  assert.equal(e.state, "queued");
  e = applyOutcome(claimEntry(e, 1, t0, policy), transient, t0 + 7, policy, () => 0);
  assert.equal(e.state, "gave_up");
  assert.equal(e.attempts, 3);
  assert.equal(e.nextAttemptAt, null);
  assert.match(e.lastError ?? "", /gave up after 3 attempts.*queue retry k-1/);
  assert.equal(isClaimable(e, { now: t0 + 10_000_000, force: true, claimAlive: alive }), false);

  const back = retryEntry(e, t0 + 100);
  assert.equal(back.state, "queued");
  assert.equal(back.attempts, 0);
  assert.equal(back.key, "k-1");
  assert.ok(isClaimable(back, { now: t0 + 100, claimAlive: alive }));
});

test("session expired: stays queued, due at once, attempts unchanged, tells the user to log in", () => {
  const e = applyOutcome(
    sending(),
    { kind: "needs_login", reason: "session_expired", message: "session expired" },
    t0 + 3,
    policy,
    Math.random,
  );
  assert.equal(e.state, "queued");
  assert.equal(e.attempts, 0);
  assert.equal(e.nextAttemptAt, t0 + 3);
  assert.match(e.lastError ?? "", /paycli login/);
});

test("a sending entry is reclaimable only once its sender is gone or its lease ran out", () => {
  const e = sending();
  assert.equal(isClaimable(e, { now: t0 + 1, claimAlive: alive }), false);
  assert.equal(isClaimable(e, { now: t0 + 1, force: true, claimAlive: alive }), false);
  assert.ok(isClaimable(e, { now: t0 + 1, claimAlive: () => false }));
  assert.ok(isClaimable(e, { now: t0 + 15_000, claimAlive: alive }));
  const reclaimed = claimEntry(e, 77, t0 + 15_000, policy);
  assert.equal(reclaimed.claim?.pid, 77);
  assert.equal(reclaimed.key, "k-1");
});
