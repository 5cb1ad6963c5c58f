import { test } from "node:test";
import assert from "node:assert/strict";
import type { Coordinator, TransferOutcome } from "../domain/coordinator.js";
import {
  createFakeBanks,
  createManualClock,
  createMemoryDirectory,
  createMemoryLog,
  type FakeBanks,
  type MemoryLog,
} from "../../test-support/fakes.js";
import type { DirectoryAccount } from "../domain/model.js";
import { createTestCoordinator, sequentialTxnIds } from "../../test-support/test-harness.js";
import { transferRequest as request } from "../../test-support/transfer-request.js";
import { createMemoryCache, type IdempotencyCache } from "./cache.js";
import { withIdempotencyFastPath } from "./fast-path.js";
import { cacheKey, decodeRecord, encodeRecord } from "./record.js";

const ACCOUNTS: DirectoryAccount[] = [
  { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
  { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "bob", currency: "USD" },
];

interface Harness {
  fast: Coordinator;
  log: MemoryLog;
  banks: FakeBanks;
  cache: ReturnType<typeof createMemoryCache>;
  /** Calls that reached the coordinator (and so the log). */
  innerCalls: number;
  warnings: string[];
  metrics: { results: string[]; redisErrors: number };
}

function setup(
  o: { cache?: IdempotencyCache; bootId?: string; log?: MemoryLog; memory?: ReturnType<typeof createMemoryCache> } = {},
): Harness {
  const directory = createMemoryDirectory(ACCOUNTS);
  const log = o.log ?? createMemoryLog(directory);
  const banks = createFakeBanks();
  const memory = o.memory ?? createMemoryCache();
  const warnings: string[] = [];
  const logger = { info: () => {}, warn: (_f: object, msg: string) => void warnings.push(msg), error: () => {} };
  const inner = createTestCoordinator({
    log,
    directory,
    participants: banks,
    clock: createManualClock(),
    logger,
    newTxnId: sequentialTxnIds(),
  });
  const h: Harness = {
    fast: inner,
    log,
    banks,
    cache: memory,
    innerCalls: 0,
    warnings,
    metrics: { results: [], redisErrors: 0 },
  };
  const counted: Coordinator = {
    ...inner,
    transfer: (caller, req) => {
      h.innerCalls++;
      return inner.transfer(caller, req);
    },
  };
  h.fast = withIdempotencyFastPath({
    inner: counted,
    cache: o.cache ?? memory,
    directory,
    replica: "gateway-0",
    bootId: o.bootId ?? "boot-1",
    ttlMs: 86_400_000,
    logger,
    metrics: {
      idempotency: { inc: ({ result }) => void h.metrics.results.push(result) },
      idempotencyRedisErrors: { inc: () => void h.metrics.redisErrors++ },
    },
  });
  return h;
}

const stored = (h: Harness, key = "key-1") => {
  const raw = h.cache.entries.get(cacheKey("alice", key))?.value;
  return raw === undefined ? undefined : decodeRecord(raw);
};

function reasonOf(out: TransferOutcome): string {
  return out.result.ok ? "ok" : out.result.reason;
}

test("a repeat of a finished transfer is answered from the cache, identical, without the log or a bank", async () => {
  const h = setup();
  const first = await h.fast.transfer("alice", request());
  assert.ok(first.result.ok);
  assert.equal(first.replayed, false);
  assert.equal(stored(h)?.state, "done");
  const prepares = h.banks.prepares.length;
  const again = await h.fast.transfer("alice", request());
  assert.deepEqual(again.result, first.result);
  assert.equal(again.txnId, first.txnId);
  assert.equal(again.replayed, true);
  assert.equal(h.innerCalls, 1, "the repeat never reached the coordinator");
  assert.equal(h.banks.prepares.length, prepares);
  assert.deepEqual(h.metrics.results, ["hit"]);
});

test("the same key with another request is idempotency_key_reused and names the key's transaction", async () => {
  const h = setup();
  const first = await h.fast.transfer("alice", request());
  const other = await h.fast.transfer("alice", request({ amountMinor: 9999n }));
  assert.equal(reasonOf(other), "idempotency_key_reused");
  assert.equal(!other.result.ok && other.result.metadata?.transaction_id, first.txnId);
  assert.equal(h.innerCalls, 1);
  assert.equal(h.log.txns.size, 1, "nothing new in the log");
});

test("keys are scoped by caller: another user's same key is a new transfer", async () => {
  const h = setup();
  await h.fast.transfer("alice", request());
  const bob = await h.fast.transfer("bob", request({ fromAccountId: "bank-b/2001", toAccountId: "bank-a/1001" }));
  assert.ok(bob.result.ok);
  assert.equal(bob.replayed, false);
  assert.equal(h.log.txns.size, 2);
});

test("a repeat while the first is in flight is idempotency_key_in_use; then the stored outcome", async () => {
  const h = setup();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  h.banks.onPrepare = async () => {
    await gate;
    return { vote: "YES" };
  };
  const first = h.fast.transfer("alice", request());
  // Let the claim land and the coordinator reach the banks.
  while (h.banks.prepares.length === 0) await new Promise((r) => setImmediate(r));
  assert.equal(stored(h)?.state, "in_flight");
  const during = await h.fast.transfer("alice", request());
  assert.equal(reasonOf(during), "idempotency_key_in_use");
  const reused = await h.fast.transfer("alice", request({ memo: "other" }));
  assert.equal(reasonOf(reused), "idempotency_key_reused");
  release();
  const done = await first;
  assert.ok(done.result.ok);
  const after = await h.fast.transfer("alice", request());
  assert.equal(after.txnId, done.txnId);
  assert.equal(h.innerCalls, 1);
});

test("50 concurrent repeats: one transfer runs, the rest get in_use or the stored outcome", async () => {
  const h = setup();
  h.banks.onPrepare = async () => {
    await new Promise((r) => setTimeout(r, 5));
    return { vote: "YES" };
  };
  const outs = await Promise.all(Array.from({ length: 50 }, () => h.fast.transfer("alice", request())));
  const committed = outs.filter((o) => o.result.ok);
  assert.ok(committed.length >= 1);
  assert.equal(new Set(committed.map((o) => o.txnId)).size, 1);
  for (const o of outs) assert.ok(o.result.ok || reasonOf(o) === "idempotency_key_in_use", reasonOf(o));
  assert.equal(h.banks.prepares.length, 2, "one prepare round (two banks)");
  assert.equal(h.log.txns.size, 1);
});

test("a request that fails validation is not stored: fixed, the same key succeeds", async () => {
  const h = setup();
  const bad = await h.fast.transfer("alice", request({ amountMinor: 0n }));
  assert.equal(reasonOf(bad), "invalid_amount");
  const unknown = await h.fast.transfer("alice", request({ toAccountId: "bank-b/9999" }));
  assert.equal(reasonOf(unknown), "account_not_found");
  assert.equal(h.cache.entries.size, 0);
  const fixed = await h.fast.transfer("alice", request());
  assert.ok(fixed.result.ok);
  assert.equal(fixed.replayed, false);
});

test("a business decline is final and replayed identically from the cache", async () => {
  const h = setup();
  h.banks.onPrepare = async (call) =>
    call.bank === "bank-a" ? { vote: "NO", reason: "insufficient_funds" } : { vote: "YES" };
  const first = await h.fast.transfer("alice", request());
  assert.equal(reasonOf(first), "insufficient_funds");
  assert.equal(stored(h)?.state, "done");
  h.banks.onPrepare = async () => ({ vote: "YES" });
  const again = await h.fast.transfer("alice", request());
  assert.deepEqual(again.result, first.result);
  assert.equal(h.innerCalls, 1);
});

test("a transient abort frees the key in the cache too: the retry runs as a new txn", async () => {
  const h = setup();
  h.banks.onPrepare = async (call) =>
    call.bank === "bank-b" ? { vote: "NO", reason: "participant_unavailable" } : { vote: "YES" };
  const first = await h.fast.transfer("alice", request());
  assert.equal(reasonOf(first), "participant_unavailable");
  assert.equal(stored(h), undefined, "claim released");
  h.banks.onPrepare = async () => ({ vote: "YES" });
  const retry = await h.fast.transfer("alice", request());
  assert.ok(retry.result.ok);
  assert.notEqual(retry.txnId, first.txnId);
  assert.equal(stored(h)?.state, "done");
});

test("cache flushed: the log answers the repeat (no second movement) and the cache is filled again", async () => {
  const h = setup();
  const first = await h.fast.transfer("alice", request());
  h.cache.entries.clear();
  const again = await h.fast.transfer("alice", request());
  assert.deepEqual(again.result, first.result);
  assert.equal(again.replayed, true);
  assert.equal(h.innerCalls, 2, "the log was asked");
  assert.equal(h.log.txns.size, 1);
  assert.equal(h.banks.prepares.length, 2, "no bank heard of it again");
  assert.equal(stored(h)?.state, "done");
  h.cache.entries.clear();
  const other = await h.fast.transfer("alice", request({ amountMinor: 1n }));
  assert.equal(reasonOf(other), "idempotency_key_reused", "the log knows the fingerprint too");
  assert.equal(stored(h), undefined, "a conflict answered by the log is not cached under our fingerprint");
});

test("cache down: payments continue exactly once, repeats come from the log, errors are counted and logged once", async () => {
  const boom = async () => {
    throw new Error("ECONNREFUSED");
  };
  const h = setup({ cache: { claim: boom, swap: boom, put: boom, release: boom } });
  const first = await h.fast.transfer("alice", request());
  assert.ok(first.result.ok);
  const again = await h.fast.transfer("alice", request());
  assert.equal(again.txnId, first.txnId);
  assert.equal(again.replayed, true);
  assert.equal(reasonOf(await h.fast.transfer("alice", request({ memo: "x" }))), "idempotency_key_reused");
  assert.equal(h.log.txns.size, 1);
  assert.equal(h.banks.prepares.length, 2);
  assert.ok(h.metrics.redisErrors >= 3);
  assert.equal(h.warnings.filter((w) => w.startsWith("idempotency cache failed")).length, 1, "throttled");
});

test("an in-flight claim left by a dead earlier run of this replica is taken over; the log decides", async () => {
  const memory = createMemoryCache();
  const directory = createMemoryDirectory(ACCOUNTS);
  const log = createMemoryLog(directory);
  const before = setup({ memory, log, bootId: "boot-1" });
  const first = await before.fast.transfer("alice", request());
  assert.ok(first.result.ok);
  // As if boot-1 had died after the log committed but before the cache heard the outcome.
  memory.entries.set(cacheKey("alice", "key-1"), {
    value: encodeRecord({
      state: "in_flight",
      fingerprint: decodeRecordFp(memory),
      owner: "gateway-0/boot-1",
      token: "t",
    }),
    expiresAtMs: Date.now() + 60_000,
  });
  const after = setup({ memory, log, bootId: "boot-2" });
  const again = await after.fast.transfer("alice", request());
  assert.equal(again.txnId, first.txnId);
  assert.ok(again.result.ok);
  assert.equal(log.txns.size, 1);
  assert.equal(stored(after)?.state, "done");
  // Another replica's claim is never cleared here: only its own log knows whether it moved money.
  memory.entries.set(cacheKey("alice", "key-2"), {
    value: encodeRecord({ state: "in_flight", fingerprint: decodeRecordFp(memory), owner: "gateway-1/x", token: "t" }),
    expiresAtMs: Date.now() + 60_000,
  });
  assert.equal(
    reasonOf(await after.fast.transfer("alice", request({ idempotencyKey: "key-2" }))),
    "idempotency_key_in_use",
  );
  assert.equal(after.innerCalls, 1);
});

test("a stale claim of this replica for another request that never reached the log does not block the key", async () => {
  const h = setup({ bootId: "boot-2" });
  h.cache.entries.set(cacheKey("alice", "key-1"), {
    value: encodeRecord({ state: "in_flight", fingerprint: "another-request", owner: "gateway-0/boot-1", token: "t" }),
    expiresAtMs: Date.now() + 60_000,
  });
  const out = await h.fast.transfer("alice", request());
  assert.ok(out.result.ok, "the log had never seen the key: this request runs");
  assert.equal(stored(h)?.state, "done");
});

test("this run's own claim whose outcome could not be stored is cleared by the next repeat", async () => {
  const memory = createMemoryCache();
  let failPut = true;
  const flaky: IdempotencyCache = {
    ...memory,
    put: async (k, v, ttl) => {
      if (failPut) throw new Error("timeout");
      return memory.put(k, v, ttl);
    },
  };
  const h = setup({ cache: flaky, memory });
  const first = await h.fast.transfer("alice", request());
  assert.ok(first.result.ok);
  assert.equal(stored(h)?.state, "in_flight", "the outcome never reached the cache");
  failPut = false;
  const again = await h.fast.transfer("alice", request());
  assert.equal(again.txnId, first.txnId, "answered by the log, not run again");
  assert.equal(h.log.txns.size, 1);
  assert.equal(stored(h)?.state, "done");
});

function decodeRecordFp(memory: ReturnType<typeof createMemoryCache>): string {
  const r = decodeRecord(memory.entries.get(cacheKey("alice", "key-1"))!.value);
  assert.ok(r);
  return r.fingerprint;
}

test("an unreadable cache value is ignored: the log answers", async () => {
  const h = setup();
  const first = await h.fast.transfer("alice", request());
  h.cache.entries.set(cacheKey("alice", "key-1"), { value: "{not json", expiresAtMs: Date.now() + 60_000 });
  const again = await h.fast.transfer("alice", request());
  assert.equal(again.txnId, first.txnId);
  assert.equal(h.log.txns.size, 1);
  assert.equal(h.metrics.redisErrors, 1);
});

test("records survive encode/decode exactly; malformed ones decode to undefined", async () => {
  const h = setup();
  const out = await h.fast.transfer("alice", request({ amountMinor: 9_007_199_254_740_993n }));
  assert.equal(reasonOf(out), "invalid_amount", "past AMOUNT_MINOR_MAX");
  const ok = await h.fast.transfer("alice", request());
  assert.ok(ok.result.ok && ok.txnId);
  const done = { state: "done" as const, fingerprint: "fp", txnId: ok.txnId, result: ok.result };
  assert.deepEqual(decodeRecord(encodeRecord(done)), done);
  const failure = {
    state: "done" as const,
    fingerprint: "fp",
    txnId: "t",
    result: {
      ok: false as const,
      reason: "insufficient_funds" as const,
      message: "m",
      metadata: { transaction_id: "t" },
    },
  };
  assert.deepEqual(decodeRecord(encodeRecord(failure)), failure);
  for (const bad of [
    "",
    "null",
    "[]",
    '{"v":2,"state":"done"}',
    '{"v":1,"state":"done","fp":"x","txnId":"t","result":{"ok":true,"txn":{}}}',
    '{"v":1,"state":"in_flight","fp":"x"}',
  ]) {
    assert.equal(decodeRecord(bad), undefined, bad);
  }
});
