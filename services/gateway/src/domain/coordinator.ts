// The two-phase-commit coordinator (DESIGN.md §3): the round engine
// (rounds/engine.ts: votes, decision, delivery, redrive, recovery,
// GetDecision) with the transfer use case on top (rounds/transfer.ts). The
// card use cases run their rounds through the same engine (cards.ts, as
// `rounds`). This is the composition main.ts, the tests and the simulator use.
import type { IdempotencyClaims } from "./ports.js";
import { createRoundEngine, type RoundEngine, type RoundEngineOptions } from "./rounds/engine.js";
import { createTransfer, type TransferOptions, type TransferOutcome } from "./rounds/transfer.js";
import type { TransferRequest } from "./transfer-rules.js";

export type { EventLogger } from "./ports.js";
export type { TransferOutcome } from "./rounds/transfer.js";

export interface CoordinatorOptions
  extends RoundEngineOptions,
    Pick<TransferOptions, "directory" | "replyAfterDelivery"> {
  /** Defaults to the log itself; a Redis fast path wraps it later. */
  readonly claims?: IdempotencyClaims;
}

/** Transfers, and the engine's rounds for the card use cases, recovery, the redrive loop and GetDecision. */
export interface Coordinator extends Omit<RoundEngine, "decideAndDeliver" | "whileRunning"> {
  transfer(callerUserId: string, req: TransferRequest): Promise<TransferOutcome>;
}

export function createCoordinator(o: CoordinatorOptions): Coordinator {
  const engine = createRoundEngine(o);
  const transfer = createTransfer({
    engine,
    claims: o.claims ?? o.log,
    directory: o.directory,
    clock: o.clock,
    logger: o.logger,
    metrics: o.metrics,
    replyAfterDelivery: o.replyAfterDelivery,
  });
  return { ...engine, transfer };
}
