// Settle a batch (DESIGN.md §6.3): exactly once per (merchant, key). Items
// naming one code capture in order, different codes concurrently. Transient
// item failures are not stored, so the batch stays PENDING and sending it
// again retries them. A PENDING batch is owned by the replica settling it;
// another resumes it only when that owner is done or its lease ran out.
import { randomUUID } from "node:crypto";
import type { BatchItemRecord, BatchRecord } from "../cards-ports.js";
import { fail, ok, type Result } from "../model.js";
import { checkIdempotencyKey } from "../transfer-rules.js";
import { captureItem, type SettleItemResult } from "./capture.js";
import { fingerprintOf, INSERT_ATTEMPTS_MAX, type CardOutcome, type CardsContext } from "./context.js";

export interface SettleItemInput {
  readonly authCode: string;
  readonly amountMinor: bigint;
}

export interface Settlement {
  readonly batchId: string;
  readonly results: readonly SettleItemResult[];
}

export const SETTLE_ITEMS_MAX = 500;
/** Captures of one batch in flight at once (their prepares and commits share batched RPCs and fsyncs). */
const SETTLE_CONCURRENCY = 64;
const AUTH_CODE_LENGTH_MAX = 64;

const storedResult = (it: BatchItemRecord): SettleItemResult => ({
  authCode: it.authCode,
  status: it.status === "CAPTURED" ? "CAPTURED" : "FAILED",
  reason: it.reason,
  capturedMinor: it.capturedMinor,
  txnId: it.txnId,
  final: true,
});

type BatchStart =
  | { readonly batch: BatchRecord; readonly replayed: boolean }
  | { readonly failure: Result<Settlement>; readonly replayed: boolean };

/** Finds or creates the batch and makes this replica its owner while it settles. */
async function startBatch(
  ctx: CardsContext,
  merchantUserId: string,
  idempotencyKey: string,
  fingerprint: string,
  items: readonly SettleItemInput[],
): Promise<BatchStart> {
  const { store, replica } = ctx;
  for (let attempt = 0; attempt < INSERT_ATTEMPTS_MAX; attempt++) {
    const batch = await store.batchByKey(merchantUserId, idempotencyKey);
    if (!batch) {
      const created: BatchRecord = {
        batchId: `batch_${randomUUID()}`,
        merchantUserId,
        idempotencyKey,
        fingerprint,
        status: "PENDING",
        ownerReplica: replica,
        createdAtMs: ctx.clock.nowMs(),
      };
      const rows = items.map((i, index) => ({
        batchId: created.batchId,
        index,
        authCode: i.authCode,
        amountMinor: i.amountMinor,
        status: "" as const,
        reason: "",
        capturedMinor: 0n,
        txnId: "",
      }));
      if (await store.insertBatch(created, rows)) return { batch: created, replayed: false };
      continue; // another request created it first
    }
    const inUse = {
      failure: fail("idempotency_key_in_use", "this batch is still being settled; retry with the same key", {
        batch_id: batch.batchId,
      }),
      replayed: true,
    };
    if (batch.fingerprint !== fingerprint)
      return {
        failure: fail("idempotency_key_reused", "this idempotency key was used for a different batch"),
        replayed: true,
      };
    if (batch.status === "DONE") return { batch, replayed: true };
    if (ctx.runningBatches.has(batch.batchId)) return inUse;
    // PENDING: free (its last run left items to retry), ours from before a
    // restart, or a dead replica's. A live replica's is in progress.
    const owner = batch.ownerReplica;
    if (owner !== "" && owner !== replica && (await ctx.isReplicaAlive(owner))) return inUse;
    if (!(await store.takeBatch(batch.batchId, owner, replica))) return inUse;
    return { batch: { ...batch, ownerReplica: replica }, replayed: true };
  }
  return {
    failure: fail("idempotency_key_in_use", "this batch is still being settled; retry with the same key"),
    replayed: true,
  };
}

async function runBatch(ctx: CardsContext, merchantUserId: string, batchId: string): Promise<SettleItemResult[]> {
  const items = await ctx.store.batchItems(batchId);
  const results = new Map<number, SettleItemResult>();
  // Different authorizations settle concurrently; the items naming one code run
  // one at a time, in order, so the same code twice captures once, deterministically.
  const byCode = new Map<string, BatchItemRecord[]>();
  for (const item of items) {
    if (item.status !== "") continue;
    const same = byCode.get(item.authCode);
    if (same) same.push(item);
    else byCode.set(item.authCode, [item]);
  }
  await forEachConcurrently([...byCode.values()], SETTLE_CONCURRENCY, async (sameCode) => {
    for (const item of sameCode) {
      const r = await captureItem(ctx, merchantUserId, batchId, item);
      results.set(item.index, r);
      // Only a final result is the item's; a transient one is retried when the batch is sent again.
      if (r.final)
        await ctx.store.setBatchItem(batchId, item.index, {
          status: r.status,
          reason: r.reason,
          capturedMinor: r.capturedMinor,
          txnId: r.txnId,
        });
    }
  });
  return items.map((it) => results.get(it.index) ?? storedResult(it));
}

function checkItems(items: readonly SettleItemInput[]): Result<void> {
  if (items.length === 0 || items.length > SETTLE_ITEMS_MAX)
    return fail("invalid_argument", `a batch has 1 to ${SETTLE_ITEMS_MAX} items`, { field: "items" });
  // Unknown codes fail per item, but what is stored and echoed stays small.
  if (items.some((i) => i.authCode.length > AUTH_CODE_LENGTH_MAX))
    return fail("invalid_argument", `auth codes are at most ${AUTH_CODE_LENGTH_MAX} characters`, {
      field: "items.auth_code",
    });
  return ok(undefined);
}

export async function settleBatch(
  ctx: CardsContext,
  merchantUserId: string,
  idempotencyKey: string,
  items: readonly SettleItemInput[],
): Promise<CardOutcome<Settlement>> {
  const { store } = ctx;
  const key = checkIdempotencyKey(idempotencyKey);
  if (!key.ok) return { result: key, replayed: false };
  const shape = checkItems(items);
  if (!shape.ok) return { result: shape, replayed: false };
  const fingerprint = fingerprintOf(["settle.v1", ...items.map((i) => [i.authCode, i.amountMinor])]);
  const started = await startBatch(ctx, merchantUserId, idempotencyKey, fingerprint, items);
  if ("failure" in started) return { result: started.failure, replayed: started.replayed };
  const { batch, replayed } = started;
  if (batch.status === "DONE")
    return {
      result: ok({ batchId: batch.batchId, results: (await store.batchItems(batch.batchId)).map(storedResult) }),
      replayed,
    };
  ctx.runningBatches.add(batch.batchId);
  let results: SettleItemResult[];
  try {
    results = await runBatch(ctx, merchantUserId, batch.batchId);
    if (results.every((r) => r.final)) await store.finishBatch(batch.batchId, ctx.clock.nowMs());
  } finally {
    ctx.runningBatches.delete(batch.batchId);
    // Whatever is left may be resumed by any replica that receives the batch
    // again. If the store cannot take this now, the orphan sweep frees it
    // (recover releases every batch this replica owns but is not settling).
    await store.takeBatch(batch.batchId, ctx.replica, "").catch(() => false);
  }
  return { result: ok({ batchId: batch.batchId, results }), replayed };
}

/**
 * Runs fn over the items with at most `limit` in flight. After a failure no
 * new item starts; it rejects with that failure once the running ones stop.
 */
async function forEachConcurrently<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (!failed && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  });
  const first = (await Promise.allSettled(workers)).find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (first) throw first.reason;
}
