// Exactly-once transfers with the Redis fast path (DESIGN.md §4) over real
// processes: a real redis-server, two banks and the gateway, mTLS, SQLite.
// Redis answers repeats; when it is flushed or killed the coordinator log's
// unique (caller, key) index still answers them, and money moves at most once
// per key whatever happens. Balances at both banks are the proof.
import { after, before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  PaymentService,
  TransactionStatus,
  TransferResponseSchema,
  type TransferRequestSchema,
  type TransferResponse,
} from "@paygate/proto/gateway";
import { errorInfo } from "@paygate/rpc";
import { RedisServer, rejectsWith, Stack } from "@paygate/testkit";

type Req = MessageInitShape<typeof TransferRequestSchema>;

describe("idempotency with Redis", () => {
  let redis: RedisServer;
  let stack: Stack;
  let alice: ReturnType<typeof stack.client<typeof PaymentService>>;
  let bob: ReturnType<typeof stack.client<typeof PaymentService>>;
  // For the report: repeats sent (the history shows what moved).
  const totals = { duplicates: 0 };

  before(async () => {
    redis = await RedisServer.start();
    // A loaded test machine can stall Redis replies past the 200 ms default; a timeout
    // would be answered correctly by the log, but the assertions on Redis's contents need it.
    stack = await Stack.start({ redisUrl: redis.url, gatewayEnv: { REDIS_COMMAND_TIMEOUT_MS: "2000" } });
    alice = stack.client(PaymentService, await stack.login("alice"));
    bob = stack.client(PaymentService, await stack.login("bob"));
    await until("the gateway's Redis connection", () => stack.gateway.find("idempotency cache connected").length > 0);
  });
  after(async () => {
    await stack?.close();
    await redis?.close();
  });

  const request = (over: Partial<Req> = {}): Req => ({
    idempotencyKey: randomUUID(),
    fromAccountId: "bank-a/1001",
    toAccountId: "bank-b/2001",
    amountMinor: 700n,
    currency: "USD",
    memo: "idem",
    ...over,
  });

  async function balances(): Promise<{ alice: bigint; bob: bigint }> {
    const [a, b] = await Promise.all([
      alice.getBalance({ accountId: "bank-a/1001" }),
      bob.getBalance({ accountId: "bank-b/2001" }),
    ]);
    return { alice: a.accounts[0]!.balanceMinor, bob: b.accounts[0]!.balanceMinor };
  }

  /** Asserts alice -> bob moved exactly `amount` since `before`. */
  async function movedOnce(before: { alice: bigint; bob: bigint }, amount: bigint): Promise<void> {
    const now = await balances();
    assert.equal(now.alice, before.alice - amount, "alice debited exactly once");
    assert.equal(now.bob, before.bob + amount, "bob credited exactly once");
  }

  const bytes = (r: TransferResponse) => Buffer.from(toBinary(TransferResponseSchema, r)).toString("hex");
  const stored = async (key: string) => {
    const raw = await redis.get(`idem:alice:${key}`);
    return raw === undefined ? undefined : (JSON.parse(raw) as { state: string; txnId?: string; fp: string });
  };
  const retryLines = (key: string) =>
    stack.gateway.find((l) => l.msg === "rpc" && l.idempotencyKey === key && l.retry === true).length;

  /** 50 calls with one key at once: one movement; every answer is the committed txn or "in use". */
  async function storm(t: TestContext, req: Req): Promise<string> {
    const settled = await Promise.allSettled(Array.from({ length: 50 }, () => alice.transfer(req)));
    totals.duplicates += 49;
    const committed = new Set<string>();
    let inUse = 0;
    for (const s of settled) {
      if (s.status === "fulfilled") {
        assert.equal(s.value.transaction?.status, TransactionStatus.COMMITTED);
        committed.add(s.value.transaction!.transactionId);
      } else {
        const info = errorInfo(s.reason);
        assert.equal(info.reason, "idempotency_key_in_use", `unexpected ${info.reason}: ${info.message}`);
        assert.equal(info.code, Code.Aborted);
        inUse++;
      }
    }
    // Every "in use" was retryable: the same key now answers with the one txn.
    const final = await alice.transfer(req);
    totals.duplicates++;
    committed.add(final.transaction!.transactionId);
    assert.equal(committed.size, 1, "one txn for the key");
    t.diagnostic(`50 concurrent calls: ${50 - inUse} answered committed, ${inUse} idempotency_key_in_use`);
    return [...committed][0]!;
  }

  test("a repeat after completion gets the identical response, answered by Redis, marked as a retry", async () => {
    const before = await balances();
    const req = request({ memo: "lunch" });
    const key = req.idempotencyKey!;
    const first = await alice.transfer(req);
    assert.equal(first.transaction?.status, TransactionStatus.COMMITTED);
    const rec = await stored(key);
    assert.equal(rec?.state, "done");
    assert.equal(rec?.txnId, first.transaction?.transactionId);
    for (let i = 0; i < 3; i++) {
      const again = await alice.transfer(req);
      totals.duplicates++;
      assert.equal(again.transaction?.transactionId, first.transaction?.transactionId);
      assert.equal(again.transaction?.status, first.transaction?.status);
      assert.equal(again.transaction?.sequence, first.transaction?.sequence);
      assert.equal(bytes(again), bytes(first), "byte for byte");
    }
    // The rpc log line is written as the answer leaves: wait for it to reach us, then count exactly.
    await until("the repeats' log lines", () => retryLines(key) >= 3);
    assert.equal(retryLines(key), 3, "each repeat's log line says retry");
    await movedOnce(before, 700n);

    // Proof that Redis (not the log) answers: mark the stored outcome and see the mark come back.
    const raw = (await redis.get(`idem:alice:${key}`))!;
    await redis.command(
      "SET",
      `idem:alice:${key}`,
      raw.replace('"memo":"lunch"', '"memo":"from-redis"'),
      "PX",
      "60000",
    );
    assert.equal((await alice.transfer(req)).transaction?.memo, "from-redis");
    await redis.command("SET", `idem:alice:${key}`, raw, "PX", "60000");
    totals.duplicates++;
    await stack.assertConserved();
  });

  test("50 concurrent calls with one key move money once", async (t) => {
    const before = await balances();
    await storm(t, request({ amountMinor: 1300n }));
    await movedOnce(before, 1300n);
    await stack.assertConserved();
  });

  test("the same key with different parameters is idempotency_key_reused and moves nothing", async () => {
    const req = request();
    const first = await alice.transfer(req);
    const before = await balances();
    for (const change of [{ amountMinor: 701n }, { toAccountId: "bank-a/1002" }, { memo: "other" }]) {
      const info = await rejectsWith(
        alice.transfer({ ...req, ...change }),
        Code.InvalidArgument,
        "idempotency_key_reused",
      );
      totals.duplicates++;
      assert.equal(info.metadata.transaction_id, first.transaction?.transactionId);
    }
    await movedOnce(before, 0n);
    await stack.assertConserved();
  });

  test("a business decline is stored too: the repeat gets the same error", async () => {
    const before = await balances();
    const req = request({ amountMinor: 50_000_000n });
    const first = await rejectsWith(alice.transfer(req), Code.FailedPrecondition, "insufficient_funds");
    const again = await rejectsWith(alice.transfer(req), Code.FailedPrecondition, "insufficient_funds");
    totals.duplicates++;
    assert.deepEqual(again, first);
    assert.equal((await stored(req.idempotencyKey!))?.state, "done");
    await movedOnce(before, 0n);
    await stack.assertConserved();
  });

  test("failed validation is not stored: fix the request, same key, and it goes through", async () => {
    const before = await balances();
    const req = request();
    await rejectsWith(alice.transfer({ ...req, amountMinor: 0n }), Code.InvalidArgument, "invalid_amount");
    await rejectsWith(alice.transfer({ ...req, toAccountId: "bank-b/9999" }), Code.NotFound, "account_not_found");
    assert.equal(await stored(req.idempotencyKey!), undefined, "nothing stored for an invalid request");
    const fixed = await alice.transfer(req);
    assert.equal(fixed.transaction?.status, TransactionStatus.COMMITTED);
    await movedOnce(before, 700n);
    await stack.assertConserved();
  });

  test("in flight: a repeat gets idempotency_key_in_use; a transient abort frees the key for a retry", async () => {
    const before = await balances();
    const req = request({ amountMinor: 900n });
    const key = req.idempotencyKey!;
    stack.bank("bank-b").freeze();
    let first: Promise<unknown>;
    try {
      first = alice.transfer(req).then(
        () => assert.fail("bank-b is frozen: the first attempt cannot commit"),
        (e: unknown) => errorInfo(e),
      );
      await until("the in-flight claim in Redis", async () => (await stored(key))?.state === "in_flight");
      await rejectsWith(alice.transfer(req), Code.Aborted, "idempotency_key_in_use");
      totals.duplicates++;
      const info = (await first) as ReturnType<typeof errorInfo>;
      assert.equal(info.reason, "participant_timeout");
      assert.equal(await stored(key), undefined, "the transient abort released the claim");
    } finally {
      stack.bank("bank-b").thaw();
    }
    const retry = await alice.transfer(req);
    totals.duplicates++;
    assert.equal(retry.transaction?.status, TransactionStatus.COMMITTED);
    await movedOnce(before, 900n);
    await stack.assertConserved();
  });

  test("after FLUSHALL the log answers: same response, still once, reuse still refused", async (t) => {
    const before = await balances();
    const req = request({ amountMinor: 1100n });
    const first = await alice.transfer(req);
    await redis.flushAll();
    const again = await alice.transfer(req);
    totals.duplicates++;
    assert.equal(bytes(again), bytes(first), "the log's answer is byte for byte the original");
    assert.equal((await stored(req.idempotencyKey!))?.state, "done", "and Redis learns it again");
    await redis.flushAll();
    await rejectsWith(alice.transfer({ ...req, amountMinor: 1n }), Code.InvalidArgument, "idempotency_key_reused");
    totals.duplicates++;
    await movedOnce(before, 1100n);

    // A storm on a finished key with Redis empty, and one on a fresh key right after a flush.
    const b2 = await balances();
    await redis.flushAll();
    const txn = await storm(t, req);
    assert.equal(txn, first.transaction?.transactionId);
    await movedOnce(b2, 0n);
    const b3 = await balances();
    await redis.flushAll();
    await storm(t, request({ amountMinor: 1200n }));
    await movedOnce(b3, 1200n);
    await stack.assertConserved();
  });

  test("Redis killed: payments continue exactly once from the log; restarted, Redis answers again", async (t) => {
    const settledBefore = await alice.transfer(request({ amountMinor: 100n }));
    await redis.crash();
    const before = await balances();

    const req = request({ amountMinor: 1500n });
    const first = await alice.transfer(req);
    assert.equal(first.transaction?.status, TransactionStatus.COMMITTED);
    const again = await alice.transfer(req);
    totals.duplicates++;
    assert.equal(bytes(again), bytes(first));
    await until("the repeat's log line", () => retryLines(req.idempotencyKey!) >= 1);
    assert.equal(retryLines(req.idempotencyKey!), 1);
    await rejectsWith(alice.transfer({ ...req, memo: "changed" }), Code.InvalidArgument, "idempotency_key_reused");
    totals.duplicates++;
    await movedOnce(before, 1500n);
    // A key finished while Redis was up is answered by the log now.
    const old = await alice.transfer(
      request({ amountMinor: 100n, idempotencyKey: settledBefore.transaction!.idempotencyKey }),
    );
    totals.duplicates++;
    assert.equal(old.transaction?.transactionId, settledBefore.transaction?.transactionId);

    const b2 = await balances();
    await storm(t, request({ amountMinor: 1600n }));
    await movedOnce(b2, 1600n);
    assert.ok(
      stack.gateway
        .find((l) => l.level === 40 || l.level === "warn")
        .some((l) => String(l.msg).startsWith("idempotency cache")),
      "the outage is logged",
    );
    const metrics = await (await fetch(`http://127.0.0.1:${stack.gateway.metricsPort}/metrics`)).text();
    const errors = Number(/^paygate_idempotency_redis_errors_total(?:\{[^}]*\})? (\d+)/m.exec(metrics)?.[1] ?? "0");
    assert.ok(errors > 0, "Redis errors are counted");
    await stack.assertConserved();

    // Back up (empty: no persistence). The gateway reconnects by itself.
    const connects = stack.gateway.find("idempotency cache connected").length;
    await redis.restart();
    await until("the gateway to reconnect", () => stack.gateway.find("idempotency cache connected").length > connects);
    const b3 = await balances();
    const req3 = request({ amountMinor: 1700n });
    const r3 = await alice.transfer(req3);
    assert.equal((await stored(req3.idempotencyKey!))?.state, "done", "the fast path is back");
    assert.equal(bytes(await alice.transfer(req3)), bytes(r3));
    totals.duplicates++;
    // The key done during the outage: the log answers, then Redis has it.
    assert.equal(bytes(await alice.transfer(req)), bytes(first));
    totals.duplicates++;
    await movedOnce(b3, 1700n);
    await stack.assertConserved();
  });

  test("over the whole suite, every key committed at most one transfer", async (t) => {
    const committedByKey = new Map<string, number>();
    let moved = 0n;
    for await (const m of alice.listTransactions({ afterSequence: 0n })) {
      const txn = m.transaction!;
      if (txn.status !== TransactionStatus.COMMITTED) continue;
      committedByKey.set(txn.idempotencyKey, (committedByKey.get(txn.idempotencyKey) ?? 0) + 1);
      moved += txn.amountMinor;
    }
    for (const [key, n] of committedByKey) assert.equal(n, 1, `key ${key} committed ${n} times`);
    t.diagnostic(
      `duplicates sent: ${totals.duplicates}; transfers committed: ${committedByKey.size} (one per key); moved ${moved} minor units`,
    );
    assert.ok(totals.duplicates > 150);
    await stack.assertConserved();
  });
});

async function until(what: string, cond: () => boolean | Promise<boolean>, attemptsMax = 200): Promise<void> {
  for (let i = 0; i < attemptsMax; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`gave up waiting for ${what}`);
}
