// What the coordinator and admin record, as a port: @paygate/telemetry's
// GatewayMetrics satisfies it (main.ts passes that in), so the domain never
// imports prom-client. Without one, nothing is recorded.

export type TwoPcPhase = "claim" | "prepare" | "decision_log" | "commit";

export interface CoordinatorMetrics {
  /** One per transfer that reached a decision (replays are idempotency hits, not transfers). */
  readonly transfers: { inc(labels: { outcome: "committed" } | { outcome: "aborted"; reason: string }): void };
  /** Starts a phase; the returned function ends it. */
  readonly phaseDuration: { startTimer(labels: { phase: TwoPcPhase }): () => unknown };
  /** Each background re-send of a logged decision. */
  readonly redriveAttempts: { inc(labels: { decision: "commit" | "abort" }): void };
  /** A bank answered unknown_txn to a Commit we logged: an alarm. */
  readonly unknownTxn: { inc(labels: { bank: string }): void };
  readonly idempotency: { inc(labels: { result: "hit" | "miss" | "conflict" | "in_flight" }): void };
  /** 1 after a reconcile that proved conservation, 0 after one that did not. */
  readonly reconcileConserved: { set(conserved: boolean): void };
}

export const NO_METRICS: CoordinatorMetrics = {
  transfers: { inc: () => {} },
  phaseDuration: { startTimer: () => () => 0 },
  redriveAttempts: { inc: () => {} },
  unknownTxn: { inc: () => {} },
  idempotency: { inc: () => {} },
  reconcileConserved: { set: () => {} },
};
