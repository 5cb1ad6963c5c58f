// The merchant's settlement job: approved, unsettled authorizations go to the
// gateway as one SettleBatch. A batch is written down (its items and its
// idempotency key) before it is sent, so a batch whose answer was lost — a
// timeout, a crash — is sent again with the same key and the gateway answers
// from its record instead of capturing twice.
import type { CardGateway, CheckoutStore, Settlement } from "./ports.js";

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
  readonly onError?: (message: string, facts: Record<string, unknown>) => void;
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
  let running: Promise<SettlementRun> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  async function send(batch: Settlement): Promise<Settlement> {
    const items = deps.store.settlementItems(batch.settlementId).map((i) => ({ authCode: i.authCode, amountMinor: i.amountMinor }));
    const r = await deps.gateway.settleBatch(batch.idempotencyKey, items);
    switch (r.kind) {
      case "settled":
        return deps.store.completeSettlement(batch.settlementId, r.gatewayBatchId, r.items, clock());
      case "unavailable":
        deps.onError?.("settlement batch not answered; it will be resent with the same key", { settlementId: batch.settlementId, reason: r.reason });
        return deps.store.noteSettlementAttempt(batch.settlementId, `${r.reason}: ${r.message}`);
      case "rejected":
        deps.onError?.("settlement batch refused by the gateway", { settlementId: batch.settlementId, reason: r.reason, message: r.message });
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
