// The settlement job against the real SQLite store (in memory) and a
// scripted gateway: batches are recorded before they are sent, resent with
// the same key until answered, and every item's result lands on its order.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { openCheckoutStore, type OpenedCheckoutStore } from "../store/checkout-store.js";
import type { CardGateway, SettleItemCommand, SettleResult } from "./ports.js";
import { createSettlementJob } from "./settlement.js";

const NOW = Date.UTC(2026, 0, 15, 12);

function approvedOrders(store: OpenedCheckoutStore, n: number, amountMinor = 2399n): string[] {
  const codes: string[] = [];
  for (let i = 0; i < n; i++) {
    const key = `attempt-${String(i).padStart(16, "0")}`;
    store.claimOrder({ attemptKey: key, orderId: `order-${i}`, fingerprint: "fp", amountMinor, currency: "USD", cardLast4: "4242", cardholderName: "A", nowMs: NOW + i });
    const code = `C${String(i).padStart(5, "0")}`;
    store.recordApproved(key, code, "4242", NOW + i);
    codes.push(code);
  }
  return codes;
}

type Script = (key: string, items: readonly SettleItemCommand[], call: number) => SettleResult;

function setup(script: Script, options: { batchItemsMax?: number; settleAttemptsMax?: number } = {}) {
  const store = openCheckoutStore({ memory: true });
  const calls: Array<{ key: string; items: readonly SettleItemCommand[] }> = [];
  const gateway: CardGateway = {
    authorize: async () => {
      throw new Error("not used");
    },
    settleBatch: async (key, items) => {
      calls.push({ key, items });
      return script(key, items, calls.length);
    },
  };
  let id = 0;
  const job = createSettlementJob({ store, gateway, newId: () => `stl-${++id}`, clock: () => NOW, ...options });
  return { store, job, calls };
}

const captureAll: Script = (_k, items) => ({
  kind: "settled",
  gatewayBatchId: "batch-1",
  items: items.map((i) => ({ authCode: i.authCode, status: "captured", reason: "", capturedMinor: i.amountMinor, transactionId: `txn-${i.authCode}` })),
});

describe("settlement", () => {
  test("approved orders go out as one batch; every order ends captured; nothing is sent twice", async () => {
    const { store, job, calls } = setup(captureAll);
    const codes = approvedOrders(store, 3);
    const run = await job.runOnce();
    assert.equal(calls.length, 1);
    assert.deepEqual(calls[0]!.items.map((i) => i.authCode), codes);
    assert.deepEqual(calls[0]!.items.map((i) => i.amountMinor), [2399n, 2399n, 2399n]);
    assert.deepEqual(run.batches.map((b) => [b.state, b.itemCount, b.capturedMinor]), [["done", 3, 7197n]]);
    for (const o of store.listOrders(10)) assert.deepEqual([o.settleState, o.capturedMinor], ["captured", 2399n]);
    const items = store.settlementItems(run.batches[0]!.settlementId);
    assert.deepEqual(items.map((i) => [i.status, i.transactionId]), codes.map((c) => ["captured", `txn-${c}`]));
    await job.runOnce();
    assert.equal(calls.length, 1, "no unsettled orders: no batch");
  });

  test("an unanswered batch stays open and is resent with the same key and items before any new batch", async () => {
    const { store, job, calls } = setup((k, items, n) => (n === 1 ? { kind: "unavailable", reason: "gateway_unreachable", message: "down" } : captureAll(k, items, n)));
    approvedOrders(store, 2);
    const first = await job.runOnce();
    assert.deepEqual(first.batches.map((b) => b.state), ["open"]);
    assert.equal(first.openAfter, 1);
    assert.deepEqual(store.listOrders(10).map((o) => o.settleState), ["in_batch", "in_batch"]);
    const second = await job.runOnce();
    assert.equal(calls.length, 2);
    assert.equal(calls[1]!.key, calls[0]!.key);
    assert.deepEqual(calls[1]!.items, calls[0]!.items);
    assert.deepEqual(second.batches.map((b) => [b.state, b.attempts]), [["done", 2]]);
  });

  test("per-item failures land on their orders; the others are captured", async () => {
    const { store, job } = setup((_k, items) => ({
      kind: "settled",
      gatewayBatchId: "b",
      items: items.map((i, n) =>
        n === 1 ? { authCode: i.authCode, status: "failed", reason: "authorization_expired", capturedMinor: 0n, transactionId: "" } : { authCode: i.authCode, status: "captured", reason: "", capturedMinor: i.amountMinor, transactionId: "t" },
      ),
    }));
    approvedOrders(store, 3);
    const run = await job.runOnce();
    assert.equal(run.batches[0]!.capturedMinor, 2n * 2399n);
    const byOrder = new Map(store.listOrders(10).map((o) => [o.orderId, o]));
    assert.deepEqual([byOrder.get("order-1")?.settleState, byOrder.get("order-1")?.settleReason], ["failed", "authorization_expired"]);
    assert.equal(byOrder.get("order-0")?.settleState, "captured");
  });

  test("a batch refused as a whole releases its orders; after settleAttemptsMax refusals they are failed", async () => {
    const { store, job, calls } = setup(() => ({ kind: "rejected", reason: "permission_denied", message: "no" }), { settleAttemptsMax: 2 });
    approvedOrders(store, 1);
    const one = await job.runOnce();
    assert.deepEqual(one.batches.map((b) => b.state), ["rejected"]);
    assert.equal(store.listOrders(1)[0]!.settleState, "unsettled");
    await job.runOnce();
    assert.equal(store.listOrders(1)[0]!.settleState, "failed");
    await job.runOnce();
    assert.equal(calls.length, 2);
    assert.notEqual(calls[0]!.key, calls[1]!.key, "a new batch, a new key");
  });

  test("batchItemsMax splits the work; concurrent runs share one run", async () => {
    const { store, job, calls } = setup(captureAll, { batchItemsMax: 2 });
    approvedOrders(store, 5);
    const [a, b] = await Promise.all([job.runOnce(), job.runOnce()]);
    assert.equal(a, b);
    assert.deepEqual(calls.map((c) => c.items.length), [2, 2, 1]);
    assert.ok(store.listOrders(10).every((o) => o.settleState === "captured"));
  });

  test("an order is never in two batches, and declined orders are never settled", async () => {
    const { store, job, calls } = setup(captureAll);
    approvedOrders(store, 1);
    store.claimOrder({ attemptKey: "attempt-declined-00000", orderId: "order-d", fingerprint: "fp", amountMinor: 100n, currency: "USD", cardLast4: "0002", cardholderName: "B", nowMs: NOW });
    store.recordDeclined("attempt-declined-00000", "insufficient_funds", NOW);
    assert.ok(store.createSettlement("stl-x", "settle-x", 10, NOW));
    assert.equal(store.createSettlement("stl-y", "settle-y", 10, NOW), undefined);
    await job.runOnce();
    assert.deepEqual(calls.map((c) => c.key), ["settle-x"]);
    assert.equal(calls[0]!.items.length, 1);
  });
});
