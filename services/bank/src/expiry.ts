// The hold expiry sweeper: the bank releases card authorization holds past
// their expiry on its own, without waiting to be told (DESIGN.md §6). Holds
// claimed by a PREPARED capture or release are skipped: that txn voted YES and
// its commit must still find the hold.
import { AssertionError } from "@paygate/money";
import { EXPIRE_BATCH_MAX } from "./domain/holds.js";
import type { Hold } from "./domain/types.js";

export interface ExpiryLogger {
  info(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

export interface HoldExpiryOptions {
  /** One bounded sweep; returns the holds it expired. */
  readonly expireHolds: () => Hold[];
  readonly intervalMs: number;
  readonly logger: ExpiryLogger;
  /** Full batches swept back to back per tick before waiting for the next one. */
  readonly batchesPerTickMax?: number;
}

export interface HoldExpiry {
  /** One tick: sweeps until a batch comes back short (bounded); returns how many expired. */
  sweepOnce(): number;
  start(): void;
  stop(): Promise<void>;
}

const BATCHES_PER_TICK_MAX = 20;

export function createHoldExpiry(o: HoldExpiryOptions): HoldExpiry {
  const batchesMax = o.batchesPerTickMax ?? BATCHES_PER_TICK_MAX;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  function sweepOnce(): number {
    let total = 0;
    for (let i = 0; i < batchesMax; i++) {
      const expired = o.expireHolds();
      total += expired.length;
      for (const h of expired)
        o.logger.info(
          { holdId: h.holdId, accountId: h.accountId, amountMinor: h.amountMinor.toString(), currency: h.currency },
          "hold expired; released",
        );
      if (expired.length < EXPIRE_BATCH_MAX) break;
    }
    return total;
  }

  const tick = () => {
    try {
      sweepOnce();
    } catch (e) {
      // A broken invariant already reached onInvariantBroken (the process exits); anything else is retried next tick.
      if (!(e instanceof AssertionError))
        o.logger.error({ err: e instanceof Error ? e.message : String(e) }, "hold expiry sweep failed");
    }
    if (!stopped) timer = setTimeout(tick, o.intervalMs);
  };

  return {
    sweepOnce,
    start() {
      stopped = false;
      timer = setTimeout(tick, o.intervalMs);
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
