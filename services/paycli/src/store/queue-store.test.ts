import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyOutcome, claimEntry, createEntry, type QueuePolicy } from "../domain/queue.js";
import { openQueueStore } from "./queue-store.js";

const policy: QueuePolicy = { backoff: { baseMs: 1000, capMs: 60_000 }, attemptsMax: 5, claimLeaseMs: 15_000 };
const request = {
  userId: "alice",
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  amountMinor: 9_007_199_254_740_993n,
  currency: "USD",
  memo: "über rent",
};

function tempDb(t: { after: (fn: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), "paycli-store-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, "nested", "queue.db");
}

test("an entry survives close and reopen (a crash after enqueue) with the same key and request", (t) => {
  const file = tempDb(t);
  const key = crypto.randomUUID();
  const first = openQueueStore(file, { keepFinishedMax: 10 });
  const stored = first.insert(claimEntry(createEntry(key, request, 1000), 4242, 1000, policy));
  assert.ok(stored);
  // No orderly shutdown of the writer's state beyond closing the handle; the row is already durable.
  first.close();

  const second = openQueueStore(file, { keepFinishedMax: 10 });
  t.after(() => second.close());
  const again = second.get(key);
  assert.ok(again);
  assert.equal(again.key, key);
  assert.equal(again.state, "sending");
  assert.deepEqual(again.claim, { pid: 4242, expiresAt: 16_000 });
  // bigint round trip beyond 2^53: no float ever touches the amount.
  assert.equal(again.amountMinor, 9_007_199_254_740_993n);
  assert.equal(again.memo, "über rent");
  assert.deepEqual(
    second.pending(10).map((e) => e.key),
    [key],
  );
});

test("a duplicate key is not inserted twice", (t) => {
  const store = openQueueStore(tempDb(t), { keepFinishedMax: 10 });
  t.after(() => store.close());
  assert.ok(store.insert(createEntry("k", request, 1)));
  assert.equal(store.insert(createEntry("k", { ...request, memo: "other" }, 2)), undefined);
  assert.equal(store.get("k")?.memo, "über rent");
});

test("replace is compare-and-set: the second of two racing claims loses", (t) => {
  const store = openQueueStore(tempDb(t), { keepFinishedMax: 10 });
  t.after(() => store.close());
  const e = store.insert(createEntry("k", request, 1));
  assert.ok(e);
  const mine = store.replace(e, claimEntry(e, 1, 2, policy));
  assert.ok(mine);
  assert.equal(mine.version, e.version + 1);
  assert.equal(store.replace(e, claimEntry(e, 2, 2, policy)), undefined);
  assert.equal(store.get("k")?.claim?.pid, 1);
  const done = store.replace(
    mine,
    applyOutcome(mine, { kind: "committed", transactionId: "t1" }, 3, policy, Math.random),
  );
  assert.equal(done?.state, "committed");
  // A late outcome written against the old version cannot undo the commit.
  assert.equal(
    store.replace(
      mine,
      applyOutcome(
        mine,
        { kind: "transient", scope: "gateway", reason: "timeout", message: "x" },
        4,
        policy,
        Math.random,
      ),
    ),
    undefined,
  );
  assert.equal(store.get("k")?.state, "committed");
});

test("queue order, counts, and only the newest N finished entries are kept (gave_up is never pruned)", (t) => {
  const store = openQueueStore(tempDb(t), { keepFinishedMax: 2 });
  t.after(() => store.close());
  const finish = (key: string, now: number, outcome: Parameters<typeof applyOutcome>[1]) => {
    const e = store.insert(createEntry(key, request, now));
    assert.ok(e);
    const s = store.replace(e, claimEntry(e, 1, now, policy));
    assert.ok(s);
    return store.replace(s, applyOutcome(s, outcome, now, { ...policy, attemptsMax: 1 }, Math.random));
  };
  finish("c1", 10, { kind: "committed", transactionId: "t1" });
  finish("g1", 11, { kind: "transient", scope: "gateway", reason: "timeout", message: "slow" });
  finish("d1", 12, { kind: "declined", reason: "insufficient_funds", message: "no", transactionId: null });
  finish("c2", 13, { kind: "committed", transactionId: "t2" });
  store.insert(createEntry("q1", request, 14));
  store.insert(createEntry("q2", request, 15));

  assert.deepEqual(
    store.recent(10).map((e) => e.key),
    ["c2", "d1", "g1"],
  );
  assert.equal(store.get("c1"), undefined);
  assert.deepEqual(
    store.pending(10).map((e) => e.key),
    ["q1", "q2"],
  );
  assert.deepEqual(store.counts(), { queued: 2, sending: 0, committed: 1, declined: 1, gave_up: 1 });
});
