// The merchant's settlement job: approved, unsettled authorizations go to the
// gateway as one SettleBatch. A batch is written down (its items and its
// idempotency key) before it is sent, so a batch whose answer was lost — a
// timeout, a crash — is sent again with the same key and the gateway answers
// from its record instead of capturing twice.
//
// An item the gateway answers FAILED is final only for a business reason
// (expired, voided, amount too large, not found...). A transient one
// (a bank down, a round the coordinator is still deciding, the hold claimed
// by another batch) goes back to unsettled and a later batch tries its auth
// code again: a capture resent is safe, the gateway answers already_captured
// for a code captured before.
import { reasonClass } from "@paygate/vocab";
import type {
  CardGateway,
  CheckoutStore,
  ItemSettlement,
  SettleItemOutcome,
  Settlement,
  SettlementItem,
} from "./ports.js";

export interface SettlementDeps {
  readonly store: CheckoutStore;
  readonly gateway: CardGateway;
  readonly newId: () => string;
  readonly clock?: () => number;
  /** Items per SettleBatch. */
  readonly batchItemsMax?: number;
  /** Batches sent per run (open ones included); the rest wait for the next run. */
  readonly batchesPerRunMax?: number;
  /** Whole-batch refusals an authorization survives before it is marked failed. */
  readonly settleAttemptsMax?: number;
  /**
   * Settlement tries an order gets when its capture keeps failing for a
   * transient reason, before it is marked failed (with that reason) for a
   * person to look at. With the default backoff, 24 tries span about 17 hours:
   * long enough for a bank outage or a coordinator's recovery to end, well
   * inside the authorization's lifetime (7 days by default at the gateway), so
   * the last try still finds the hold.
   */
  readonly captureRetriesMax?: number;
  /**
   * Wait before the first retry; it doubles per try up to captureRetryCapMs.
   * Transient causes clear in seconds to minutes; backing off keeps every run
   * (and every POST /settle) from hammering a bank that is down.
   */
  readonly captureRetryBaseMs?: number;
  readonly captureRetryCapMs?: number;
  readonly onError?: (message: string, facts: Record<string, unknown>) => void;
}

/** The next try's wait after `tries` transient failures (1 = the first): base, 2 base, 4 base, ... up to cap. */
export function captureRetryDelayMs(tries: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.min(Math.max(tries - 1, 0), 30));
}

export interface SettlementRun {
  readonly batches: readonly Settlement[];
  /** Unsent or unanswered batches left for the next run. */
  readonly openAfter: number;
}

export interface SettlementJob {
  /** One run; concurrent callers share the run in progress. */
  runOnce(): Promise<SettlementRun>;
  /** Runs every intervalMs (after the previous run ends) until stop(). */
  start(intervalMs: number): void;
  stop(): Promise<void>;
}

export function createSettlementJob(deps: SettlementDeps): SettlementJob {
  const clock = deps.clock ?? Date.now;
  const batchItemsMax = deps.batchItemsMax ?? 500;
  const batchesPerRunMax = deps.batchesPerRunMax ?? 20;
  const settleAttemptsMax = deps.settleAttemptsMax ?? 3;
  const captureRetriesMax = deps.captureRetriesMax ?? 24;
  const captureRetryBaseMs = deps.captureRetryBaseMs ?? 30_000;
  const captureRetryCapMs = deps.captureRetryCapMs ?? 3_600_000;
  let running: Promise<SettlementRun> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  /** What one answered item means for its order. */
  function settleItem(item: SettlementItem, o: SettleItemOutcome, nowMs: number): ItemSettlement {
    // Captured earlier (a lost answer, a batch resent under another key): the money is the merchant's
    // already, the whole amount of the item.
    const capturedEarlier = o.status !== "captured" && o.reason === "already_captured";
    if (o.status === "captured" || capturedEarlier)
      return {
        kind: "captured",
        authCode: o.authCode,
        capturedMinor: capturedEarlier ? item.amountMinor : o.capturedMinor,
        reason: o.reason,
        transactionId: o.transactionId,
      };
    // "unknown" (internal, or a reason newer than this build) is retried too: it is not known to be
    // final, resending is safe, and the bound below ends it.
    if (reasonClass(o.reason) === "final")
      return { kind: "failed", authCode: o.authCode, reason: o.reason, transactionId: o.transactionId };
    const tries = (deps.store.getOrder(item.attemptKey)?.captureRetries ?? 0) + 1;
    if (tries >= captureRetriesMax) {
      deps.onError?.("capture kept failing for a transient reason; the order is marked failed", {
        attemptKey: item.attemptKey,
        authCode: o.authCode,
        reason: o.reason,
        tries,
      });
      return { kind: "failed", authCode: o.authCode, reason: o.reason, transactionId: o.transactionId };
    }
    return {
      kind: "retry",
      authCode: o.authCode,
      reason: o.reason,
      notBeforeMs: nowMs + captureRetryDelayMs(tries, captureRetryBaseMs, captureRetryCapMs),
    };
  }

  async function send(batch: Settlement): Promise<Settlement> {
    const items = deps.store.settlementItems(batch.settlementId);
    const r = await deps.gateway.settleBatch(
      batch.idempotencyKey,
      items.map((i) => ({ authCode: i.authCode, amountMinor: i.amountMinor })),
    );
    switch (r.kind) {
      case "settled": {
        const nowMs = clock();
        const byCode = new Map(items.map((i) => [i.authCode, i]));
        // An answer for a code this batch does not hold is dropped; the store releases items left without one.
        const results = r.items.flatMap((o) => {
          const item = byCode.get(o.authCode);
          return item ? [settleItem(item, o, nowMs)] : [];
        });
        return deps.store.completeSettlement(batch.settlementId, r.gatewayBatchId, results, nowMs);
      }
      case "unavailable":
        deps.onError?.("settlement batch not answered; it will be resent with the same key", {
          settlementId: batch.settlementId,
          reason: r.reason,
        });
        return deps.store.noteSettlementAttempt(batch.settlementId, `${r.reason}: ${r.message}`);
      case "rejected":
        deps.onError?.("settlement batch refused by the gateway", {
          settlementId: batch.settlementId,
          reason: r.reason,
          message: r.message,
        });
        return deps.store.rejectSettlement(batch.settlementId, `${r.reason}: ${r.message}`, settleAttemptsMax, clock());
    }
  }

  async function run(): Promise<SettlementRun> {
    const batches: Settlement[] = [];
    let budget = batchesPerRunMax;
    // Unanswered batches first: their orders are theirs until the gateway answers.
    for (const open of deps.store.openSettlements(budget)) {
      budget--;
      const after = await send(open);
      batches.push(after);
      // Unreachable: new batches would only pile up; refused: its orders wait for the next run.
      if (after.state !== "done") return { batches, openAfter: deps.store.openSettlements(batchesPerRunMax).length };
    }
    while (budget > 0) {
      budget--;
      const id = deps.newId();
      const batch = deps.store.createSettlement(id, `settle-${id}`, batchItemsMax, clock());
      if (!batch) break;
      const after = await send(batch);
      batches.push(after);
      if (after.state !== "done") break;
    }
    return { batches, openAfter: deps.store.openSettlements(batchesPerRunMax).length };
  }

  const job: SettlementJob = {
    runOnce() {
      if (!running) {
        running = run().finally(() => {
          running = undefined;
        });
      }
      return running;
    },
    start(intervalMs) {
      const tick = () => {
        timer = setTimeout(() => {
          job.runOnce().then(
            () => !stopped && tick(),
            (e: unknown) => {
              deps.onError?.("settlement run failed", { err: e instanceof Error ? e.message : String(e) });
              if (!stopped) tick();
            },
          );
        }, intervalMs);
        timer.unref();
      };
      tick();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
  return job;
}
