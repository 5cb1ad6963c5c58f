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
    store.claimOrder({
      attemptKey: key,
      orderId: `order-${i}`,
      fingerprint: "fp",
      amountMinor,
      currency: "USD",
      cardLast4: "4242",
      cardholderName: "A",
      nowMs: NOW + i,
    });
    const code = `C${String(i).padStart(5, "0")}`;
    store.recordApproved(key, code, "4242", NOW + i);
    codes.push(code);
  }
  return codes;
}

type Script = (key: string, items: readonly SettleItemCommand[], call: number) => SettleResult;

interface SetupOptions {
  batchItemsMax?: number;
  settleAttemptsMax?: number;
  captureRetriesMax?: number;
  captureRetryBaseMs?: number;
  captureRetryCapMs?: number;
}

function setup(script: Script, options: SetupOptions = {}) {
  const store = openCheckoutStore({ memory: true });
  const clock = { nowMs: NOW };
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
  const job = createSettlementJob({ store, gateway, newId: () => `stl-${++id}`, clock: () => clock.nowMs, ...options });
  return { store, job, calls, clock };
}

/** Each item as the gateway answers it: captured unless `failures` names a reason for its code. */
const answer =
  (failures: (code: string, call: number) => string | undefined): Script =>
  (_k, items, call) => ({
    kind: "settled",
    gatewayBatchId: `batch-${call}`,
    items: items.map((i) => {
      const reason = failures(i.authCode, call);
      return reason === undefined
        ? {
            authCode: i.authCode,
            status: "captured" as const,
            reason: "",
            capturedMinor: i.amountMinor,
            transactionId: `txn-${i.authCode}-${call}`,
          }
        : { authCode: i.authCode, status: "failed" as const, reason, capturedMinor: 0n, transactionId: "" };
    }),
  });

const TRANSIENT = [
  "participant_unavailable",
  "participant_timeout",
  "coordinator_restarted",
  "hold_in_use",
  "idempotency_key_in_use",
  "store_unavailable",
  "shutting_down",
];
const BUSINESS = [
  "authorization_expired",
  "authorization_voided",
  "amount_exceeds_authorization",
  "authorization_not_found",
  "invalid_amount",
];

const captureAll: Script = (_k, items) => ({
  kind: "settled",
  gatewayBatchId: "batch-1",
  items: items.map((i) => ({
    authCode: i.authCode,
    status: "captured",
    reason: "",
    capturedMinor: i.amountMinor,
    transactionId: `txn-${i.authCode}`,
  })),
});

describe("settlement", () => {
  test("approved orders go out as one batch; every order ends captured; nothing is sent twice", async () => {
    const { store, job, calls } = setup(captureAll);
    const codes = approvedOrders(store, 3);
    const run = await job.runOnce();
    assert.equal(calls.length, 1);
    assert.deepEqual(
      calls[0]!.items.map((i) => i.authCode),
      codes,
    );
    assert.deepEqual(
      calls[0]!.items.map((i) => i.amountMinor),
      [2399n, 2399n, 2399n],
    );
    assert.deepEqual(
      run.batches.map((b) => [b.state, b.itemCount, b.capturedMinor]),
      [["done", 3, 7197n]],
    );
    for (const o of store.listOrders(10)) assert.deepEqual([o.settleState, o.capturedMinor], ["captured", 2399n]);
    const items = store.settlementItems(run.batches[0]!.settlementId);
    assert.deepEqual(
      items.map((i) => [i.status, i.transactionId]),
      codes.map((c) => ["captured", `txn-${c}`]),
    );
    await job.runOnce();
    assert.equal(calls.length, 1, "no unsettled orders: no batch");
  });

  test("an unanswered batch stays open and is resent with the same key and items before any new batch", async () => {
    const { store, job, calls } = setup((k, items, n) =>
      n === 1 ? { kind: "unavailable", reason: "gateway_unreachable", message: "down" } : captureAll(k, items, n),
    );
    approvedOrders(store, 2);
    const first = await job.runOnce();
    assert.deepEqual(
      first.batches.map((b) => b.state),
      ["open"],
    );
    assert.equal(first.openAfter, 1);
    assert.deepEqual(
      store.listOrders(10).map((o) => o.settleState),
      ["in_batch", "in_batch"],
    );
    const second = await job.runOnce();
    assert.equal(calls.length, 2);
    assert.equal(calls[1]!.key, calls[0]!.key);
    assert.deepEqual(calls[1]!.items, calls[0]!.items);
    assert.deepEqual(
      second.batches.map((b) => [b.state, b.attempts]),
      [["done", 2]],
    );
  });

  test("per-item failures land on their orders; the others are captured", async () => {
    const { store, job } = setup((_k, items) => ({
      kind: "settled",
      gatewayBatchId: "b",
      items: items.map((i, n) =>
        n === 1
          ? {
              authCode: i.authCode,
              status: "failed",
              reason: "authorization_expired",
              capturedMinor: 0n,
              transactionId: "",
            }
          : { authCode: i.authCode, status: "captured", reason: "", capturedMinor: i.amountMinor, transactionId: "t" },
      ),
    }));
    approvedOrders(store, 3);
    const run = await job.runOnce();
    assert.equal(run.batches[0]!.capturedMinor, 2n * 2399n);
    const byOrder = new Map(store.listOrders(10).map((o) => [o.orderId, o]));
    assert.deepEqual(
      [byOrder.get("order-1")?.settleState, byOrder.get("order-1")?.settleReason],
      ["failed", "authorization_expired"],
    );
    assert.equal(byOrder.get("order-0")?.settleState, "captured");
  });

  test("a capture that failed for a transient reason stays pending and is retried in a later run; business failures are final", async () => {
    const { store, job, calls, clock } = setup(
      answer((code, call) =>
        call === 1
          ? ({ C00001: "participant_unavailable", C00002: "authorization_expired" } as Record<string, string>)[code]
          : undefined,
      ),
      { captureRetryBaseMs: 30_000 },
    );
    const codes = approvedOrders(store, 3);
    await job.runOnce();
    const byOrder = () => new Map(store.listOrders(10).map((o) => [o.orderId, o]));
    assert.deepEqual(
      [
        byOrder().get("order-0")?.settleState,
        byOrder().get("order-2")?.settleState,
        byOrder().get("order-2")?.settleReason,
      ],
      ["captured", "failed", "authorization_expired"],
    );
    const waiting = byOrder().get("order-1")!;
    assert.deepEqual(
      [
        waiting.settleState,
        waiting.settleReason,
        waiting.captureRetries,
        waiting.settleAttempts,
        waiting.capturedMinor,
      ],
      ["unsettled", "participant_unavailable", 1, 0, 0n],
      "not failed: the gateway may still capture it",
    );

    // Backing off: a run right away sends nothing.
    await job.runOnce();
    assert.equal(calls.length, 1);
    clock.nowMs += 30_000;
    const later = await job.runOnce();
    assert.deepEqual(
      calls.map((c) => c.items.map((i) => i.authCode)),
      [codes, ["C00001"]],
      "only the waiting order, under its own auth code",
    );
    assert.deepEqual(
      later.batches.map((b) => [b.state, b.capturedMinor]),
      [["done", 2399n]],
    );
    assert.deepEqual(
      [byOrder().get("order-1")?.settleState, byOrder().get("order-1")?.capturedMinor],
      ["captured", 2399n],
    );
    assert.deepEqual(
      [byOrder().get("order-2")?.settleState, calls.length],
      ["failed", 2],
      "a final failure is never sent again",
    );
  });

  test("every retryable reason keeps the order pending; every business failure (and already_captured as captured) is final", async () => {
    const reasons = [...TRANSIENT, ...BUSINESS, "already_captured"];
    const { store, job } = setup(answer((code) => reasons[Number(code.slice(1))]));
    approvedOrders(store, reasons.length);
    await job.runOnce();
    const byOrder = new Map(store.listOrders(100).map((o) => [o.orderId, o]));
    reasons.forEach((reason, i) => {
      const o = byOrder.get(`order-${i}`)!;
      const expected = TRANSIENT.includes(reason) ? "unsettled" : reason === "already_captured" ? "captured" : "failed";
      assert.deepEqual([reason, o.settleState, o.settleReason], [reason, expected, reason]);
    });
  });

  test("transient retries are bounded and back off: the wait doubles up to a cap; after captureRetriesMax the order is failed", async () => {
    const { store, job, calls, clock } = setup(
      answer(() => "participant_timeout"),
      { captureRetriesMax: 4, captureRetryBaseMs: 1_000, captureRetryCapMs: 3_000 },
    );
    approvedOrders(store, 1);
    const waits: number[] = [];
    for (let run = 0; run < 10 && store.listOrders(1)[0]!.settleState !== "failed"; run++) {
      const sent = calls.length;
      await job.runOnce();
      assert.equal(calls.length, sent + 1, `run ${run} sends the order`);
      const o = store.listOrders(1)[0]!;
      if (o.settleState === "failed") break;
      waits.push(o.settleNotBeforeMs - clock.nowMs);
      clock.nowMs += 999;
      await job.runOnce();
      assert.equal(calls.length, sent + 1, "not before its time");
      clock.nowMs = o.settleNotBeforeMs;
    }
    assert.deepEqual(waits, [1_000, 2_000, 3_000], "doubling, capped");
    const o = store.listOrders(1)[0]!;
    // Four tries: three sent it back to wait, the fourth marked it failed.
    assert.deepEqual(
      [o.settleState, o.settleReason, o.captureRetries, calls.length],
      ["failed", "participant_timeout", 3, 4],
    );
  });

  test("a batch refused as a whole releases its orders; after settleAttemptsMax refusals they are failed", async () => {
    const { store, job, calls } = setup(() => ({ kind: "rejected", reason: "permission_denied", message: "no" }), {
      settleAttemptsMax: 2,
    });
    approvedOrders(store, 1);
    const one = await job.runOnce();
    assert.deepEqual(
      one.batches.map((b) => b.state),
      ["rejected"],
    );
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
    assert.deepEqual(
      calls.map((c) => c.items.length),
      [2, 2, 1],
    );
    assert.ok(store.listOrders(10).every((o) => o.settleState === "captured"));
  });

  test("an order is never in two batches, and declined orders are never settled", async () => {
    const { store, job, calls } = setup(captureAll);
    approvedOrders(store, 1);
    store.claimOrder({
      attemptKey: "attempt-declined-00000",
      orderId: "order-d",
      fingerprint: "fp",
      amountMinor: 100n,
      currency: "USD",
      cardLast4: "0002",
      cardholderName: "B",
      nowMs: NOW,
    });
    store.recordDeclined("attempt-declined-00000", "insufficient_funds", NOW);
    assert.ok(store.createSettlement("stl-x", "settle-x", 10, NOW));
    assert.equal(store.createSettlement("stl-y", "settle-y", 10, NOW), undefined);
    await job.runOnce();
    assert.deepEqual(
      calls.map((c) => c.key),
      ["settle-x"],
    );
    assert.equal(calls[0]!.items.length, 1);
  });
});
