// Card payments' vocabulary and the ports the card use cases need: the card
// store (SQLite in production and tests), the credit bureau, 2PC rounds.
import type { DecisionRecord } from "./model.js";
import type { PreparePlan } from "./rounds/plan.js";

/**
 * An issued card. Only what must be stored: a random token, the last 4, a
 * keyed hash of the number (for lookup) and of the CVC (to check it) — never
 * the number or CVC themselves.
 */
export interface CardRecord {
  readonly cardId: string;
  readonly panHmac: string;
  readonly last4: string;
  readonly expMonth: number;
  readonly expYear: number;
  readonly cvcHash: string;
  readonly cardholderName: string;
  readonly accountId: string;
  readonly bank: string;
  readonly ownerUserId: string;
  readonly currency: string;
  readonly createdAtMs: number;
}

//   PENDING --risk no / bank NO--> DECLINED
//      |  (transient failure: the row is deleted, the key is free again)
//      v hold placed
//   APPROVED --capture--> CAPTURED (refunds up to captured)
//      |  \--void--> VOIDED
//      \--expires_at--> EXPIRED
export type AuthStatus = "PENDING" | "DECLINED" | "APPROVED" | "CAPTURED" | "VOIDED" | "EXPIRED";

/**
 * A capture or void round in flight on an authorization: one at a time, its
 * lock (DESIGN.md §6.5). Stored as its own row, apart from the authorization.
 */
export interface AuthOperation {
  readonly txnId: string;
  readonly kind: "capture" | "void";
  /** What a capture takes (0 for a void). */
  readonly amountMinor: bigint;
  /** The settlement item a capture settles ("" and -1 for a void). */
  readonly batchId: string;
  readonly itemIndex: number;
}

/** A refund whose round is in flight: its amount counts against the captured amount until decided. */
export interface RefundReservation {
  readonly refundTxnId: string;
  readonly authId: string;
  readonly amountMinor: bigint;
}

export interface AuthRecord {
  /** Also the hold id at the issuing bank. */
  readonly authId: string;
  /** The replica that created it: while PENDING, only that replica (or one that took it over) settles it. */
  readonly replica: string;
  /** Six characters [A-Z0-9], what the merchant settles with. */
  readonly authCode: string;
  readonly merchantUserId: string;
  readonly idempotencyKey: string;
  readonly fingerprint: string;
  readonly cardId: string;
  readonly cardLast4: string;
  readonly cardAccountId: string;
  readonly cardBank: string;
  readonly cardOwnerUserId: string;
  readonly merchantAccountId: string;
  readonly merchantBank: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly merchantReference: string;
  readonly status: AuthStatus;
  readonly declineReason: string;
  readonly riskScore: number;
  readonly riskApproved: boolean;
  /** "" until the risk rule ran. */
  readonly riskRule: string;
  /** The AUTH_HOLD round ("" until it starts). */
  readonly holdTxnId: string;
  /** The capture or void in flight, if any: one at a time per authorization. */
  readonly op: AuthOperation | null;
  readonly capturedMinor: bigint;
  readonly captureTxnId: string;
  readonly captureBatchId: string;
  readonly captureItemIndex: number;
  readonly refundedMinor: bigint;
  /** The sum of its refund reservations (refunds whose round is in flight). */
  readonly refundReservedMinor: bigint;
  readonly createdAtMs: number;
  readonly expiresAtMs: number;
  readonly updatedAtMs: number;
}

/** What a new authorization starts with before its risk rule and hold round: no operation, nothing captured or refunded. */
export const UNDECIDED_AUTHORIZATION = {
  status: "PENDING",
  declineReason: "",
  riskScore: 0,
  riskApproved: false,
  riskRule: "",
  holdTxnId: "",
  op: null,
  capturedMinor: 0n,
  captureTxnId: "",
  captureBatchId: "",
  captureItemIndex: -1,
  refundedMinor: 0n,
  refundReservedMinor: 0n,
} as const satisfies Partial<AuthRecord>;

export type AuthChange = Partial<
  Pick<
    AuthRecord,
    | "status"
    | "declineReason"
    | "riskScore"
    | "riskApproved"
    | "riskRule"
    | "holdTxnId"
    | "op"
    | "capturedMinor"
    | "captureTxnId"
    | "captureBatchId"
    | "captureItemIndex"
  >
>;

/** What the row must still look like for an update to apply (compare-and-set). */
export interface AuthExpect {
  readonly status?: AuthStatus;
  /** The txn id of the operation in flight ("" = none). */
  readonly opTxnId?: string;
}

export type ItemStatus = "" | "CAPTURED" | "FAILED";

export interface BatchRecord {
  readonly batchId: string;
  readonly merchantUserId: string;
  readonly idempotencyKey: string;
  readonly fingerprint: string;
  readonly status: "PENDING" | "DONE";
  /** The replica settling it while PENDING; another takes it over only once that replica's lease ran out. */
  readonly ownerReplica: string;
  readonly createdAtMs: number;
}

export interface BatchItemRecord {
  readonly batchId: string;
  readonly index: number;
  readonly authCode: string;
  readonly amountMinor: bigint;
  /** "" until the item has been processed. */
  readonly status: ItemStatus;
  readonly reason: string;
  readonly capturedMinor: bigint;
  readonly txnId: string;
}

export type RefundStatus = "PENDING" | "COMMITTED" | "FAILED";

export interface RefundRecord {
  readonly refundId: string;
  readonly merchantUserId: string;
  readonly idempotencyKey: string;
  readonly fingerprint: string;
  readonly authId: string;
  readonly amountMinor: bigint;
  readonly txnId: string;
  readonly status: RefundStatus;
  readonly reason: string;
  readonly createdAtMs: number;
}

/** What recording a refund reservation found. */
export type RefundStart =
  | { readonly started: true }
  | { readonly started: false; readonly existing: RefundRecord }
  | { readonly started: false; readonly refundableMinor: bigint };

/** How a refund's decided round ends. */
export type RefundEnd =
  | { readonly status: "COMMITTED" }
  | { readonly status: "FAILED"; readonly reason: string }
  | { readonly status: "RETRY" };

/**
 * The card store: SQLite (one replica) or PostgreSQL (shared by every
 * replica). Each method is one atomic, durable step; the multi-row ones
 * (startRefund, finishRefund, recordRisk) say what they guarantee. Compare-
 * and-set updates carry an `opId`: re-running the same update after an
 * unknown outcome (a connection lost during COMMIT) reports it as applied.
 */
export interface CardStore {
  /** False if a card with this number exists. */
  insertCard(card: CardRecord): Promise<boolean>;
  cardByPanHmac(panHmac: string): Promise<CardRecord | undefined>;

  authById(authId: string): Promise<AuthRecord | undefined>;
  authByCode(authCode: string): Promise<AuthRecord | undefined>;
  authByKey(merchantUserId: string, idempotencyKey: string): Promise<AuthRecord | undefined>;
  /** False if the (merchant, key) or the code is taken. */
  insertAuth(auth: AuthRecord): Promise<boolean>;
  /** Applies `change` only if the row still matches `expect` (or this very opId already applied it); true if it did. */
  updateAuth(authId: string, expect: AuthExpect, change: AuthChange, nowMs: number, opId: string): Promise<boolean>;
  /** Deletes a PENDING authorization (its key may be used again). */
  deleteAuth(authId: string): Promise<void>;
  /**
   * Records the risk rule's decision for a PENDING authorization if the card's
   * spend since `sinceMs` is still `spentMinor` (what the rule was given):
   * serialized per card, so two authorizations of one card cannot both fit
   * under the daily limit. False: the spend changed; read it again and re-run the rule.
   */
  recordRisk(
    authId: string,
    cardId: string,
    sinceMs: number,
    spentMinor: bigint,
    change: AuthChange,
    nowMs: number,
  ): Promise<boolean>;
  /** What the card has authorized since sinceMs (PENDING past the risk rule, APPROVED, CAPTURED), one authorization excluded. */
  spentSince(cardId: string, sinceMs: number, excludeAuthId: string): Promise<bigint>;
  /** PENDING authorizations, oldest first; of one replica when given. */
  pendingAuths(limit: number, replica?: string): Promise<AuthRecord[]>;
  /** Authorizations with a capture/void in flight whose round belongs to `replica` (txn id prefix); all when undefined. */
  authsWithOp(limit: number, replica?: string): Promise<AuthRecord[]>;
  /** APPROVED authorizations past expires_at with no capture/void in flight become EXPIRED; returns them. */
  expireDue(nowMs: number, limit: number): Promise<AuthRecord[]>;

  insertBatch(batch: BatchRecord, items: readonly BatchItemRecord[]): Promise<boolean>;
  batchByKey(merchantUserId: string, idempotencyKey: string): Promise<BatchRecord | undefined>;
  batchItems(batchId: string): Promise<BatchItemRecord[]>;
  /** Moves a PENDING batch to `replica` if it is still owned by `fromReplica`; true if it did. */
  takeBatch(batchId: string, fromReplica: string, replica: string): Promise<boolean>;
  /** Frees every PENDING batch `replica` owns but is not settling (not in `keep`): any replica may resume them. Returns how many. */
  releaseBatches(replica: string, keep: readonly string[]): Promise<number>;
  setBatchItem(
    batchId: string,
    index: number,
    result: Pick<BatchItemRecord, "status" | "reason" | "capturedMinor" | "txnId">,
  ): Promise<void>;
  finishBatch(batchId: string, nowMs: number): Promise<void>;

  /**
   * Inserts the refund PENDING and reserves its amount on the authorization
   * in one step, only while refunded + reserved + amount <= captured (every
   * replica's concurrent refunds see each other's reservations).
   */
  startRefund(refund: RefundRecord, nowMs: number): Promise<RefundStart>;
  /** The reservation becomes a refund (COMMITTED), goes (FAILED), or goes with the row (RETRY: nothing moved, the key may try again). */
  finishRefund(refundId: string, end: RefundEnd, nowMs: number): Promise<void>;
  refundByKey(merchantUserId: string, idempotencyKey: string): Promise<RefundRecord | undefined>;
  refundById(refundId: string): Promise<RefundRecord | undefined>;
  /** PENDING refunds whose round belongs to `replica` (txn id prefix); all when undefined. */
  pendingRefunds(limit: number, replica?: string): Promise<RefundRecord[]>;
}

export interface CreditReport {
  readonly userId: string;
  readonly score: number;
  readonly delinquencies: number;
}

export type CreditReportResult =
  | { readonly ok: true; readonly report: CreditReport }
  | { readonly ok: false; readonly reason: "user_not_found" | "bureau_unavailable"; readonly message: string };

/** The credit bureau. Implementations never throw. */
export interface CreditReports {
  fetch(userId: string): Promise<CreditReportResult>;
}

/** Two-phase-commit rounds (the coordinator). */
export interface Rounds {
  newTxnId(): string;
  runRound(txnId: string, kind: string, plan: readonly PreparePlan[]): Promise<DecisionRecord>;
  /** A round some process may have died in: its logged decision, or ABORT logged now (presumed abort). */
  settleRound(txnId: string, banks: readonly string[]): Promise<DecisionRecord>;
  /** True once the round is decided ABORT and every participant acknowledged it (its holds are gone). */
  abortDelivered(txnId: string): Promise<boolean>;
  /** The logged decision, if any (never presumes one). */
  decisionOf(txnId: string): Promise<DecisionRecord | undefined>;
  /** The round is being run by this process right now. */
  isRunning(txnId: string): boolean;
}

/** Keyed hashes of card data (the key lives in the gateway's data dir, not in the database). */
export interface CardHasher {
  panHmac(pan: string): string;
  cvcHash(cardId: string, cvc: string): string;
  cvcMatches(cardId: string, cvc: string, stored: string): boolean;
}
