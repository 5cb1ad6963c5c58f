// The coordinator's vocabulary. Times are epoch milliseconds (numbers: they are
// not money); amounts are bigint minor units.

export type Role = "customer" | "merchant" | "admin";
export const ROLES: readonly Role[] = ["customer", "merchant", "admin"];

export type TxnStatus = "PENDING" | "COMMITTED" | "ABORTED";
export type Decision = "COMMIT" | "ABORT";

export interface DirectoryAccount {
  readonly accountId: string;
  readonly bank: string;
  readonly ownerUserId: string;
  readonly currency: string;
}

export interface TxnRecord {
  readonly txnId: string;
  /**
   * Position in the decided history, assigned when the decision is logged (0n
   * while PENDING): ListTransactions streams txns in the order they were
   * decided, so resuming after a sequence never skips one decided later.
   */
  readonly sequence: bigint;
  readonly callerUserId: string;
  readonly idempotencyKey: string;
  readonly fingerprint: string;
  readonly fromAccountId: string;
  readonly toAccountId: string;
  readonly fromBank: string;
  readonly toBank: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly memo: string;
  readonly status: TxnStatus;
  /** Why it was aborted ("" unless ABORTED). */
  readonly declineReason: string;
  readonly createdAtMs: number;
  /** 0 while PENDING. */
  readonly decidedAtMs: number;
}

export type NewTxn = Omit<TxnRecord, "sequence" | "status" | "declineReason" | "decidedAtMs">;

export interface DecisionRecord {
  readonly txnId: string;
  readonly decision: Decision;
  /** Abort reason ("" for COMMIT). */
  readonly reason: string;
  readonly decidedAtMs: number;
}

/**
 * A two-phase-commit round that is not a transfer (a card hold, capture,
 * release or refund): registered before its prepares go out, so any replica
 * knows its participants (GetDecision refuses other banks) and a replica that
 * takes over a dead one finds the rounds it left undecided.
 */
export interface RoundRecord {
  readonly txnId: string;
  /** What the round does, for logs: "auth_hold", "capture", "release", "refund". */
  readonly kind: string;
  readonly banks: readonly string[];
  readonly createdAtMs: number;
}

/** What logging a decision returns: the winner, and the transfer it settled (undefined for a round). */
export interface Decided {
  readonly decision: DecisionRecord;
  readonly txn: TxnRecord | undefined;
}

/** One participant that still has to acknowledge a logged decision. */
export interface AckTask {
  readonly txnId: string;
  readonly bank: string;
  readonly decision: Decision;
  readonly attempts: number;
}

export interface UnackedDecision {
  readonly txnId: string;
  readonly decision: Decision;
  readonly decidedAtMs: number;
  readonly banks: readonly string[];
  /** Last failure of a resend, e.g. "unknown_txn" ("" if none yet). */
  readonly lastError: string;
}

// Expected failures are values (the vocabulary's one Result shape); routes
// turn them into Connect errors.
export { fail, ok, type Failure, type Result } from "@paygate/vocab";

/**
 * Abort reasons after which nothing moved and the same request may succeed:
 * a retry with the same idempotency key gets a fresh txn instead of a replay.
 */
export const TRANSIENT_ABORT_REASONS: ReadonlySet<string> = new Set([
  "participant_timeout",
  "participant_unavailable",
  "coordinator_restarted",
]);
