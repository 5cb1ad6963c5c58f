// Card payments' vocabulary and the ports the card use cases need: the card
// store (SQLite in production and tests), the credit bureau, 2PC rounds.
import type { DecisionRecord } from "./model.js";
import type { PreparePlan } from "./coordinator.js";

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
export type AuthOp = "" | "capture" | "void";

export interface AuthRecord {
  /** Also the hold id at the issuing bank. */
  readonly authId: string;
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
  /** A capture or void round in flight ("" = none): one at a time per authorization. */
  readonly opTxnId: string;
  readonly opKind: AuthOp;
  readonly opAmountMinor: bigint;
  readonly opBatchId: string;
  readonly opItemIndex: number;
  readonly capturedMinor: bigint;
  readonly captureTxnId: string;
  readonly captureBatchId: string;
  readonly captureItemIndex: number;
  readonly refundedMinor: bigint;
  /** Refunds whose round is in flight: counted against the captured amount until decided. */
  readonly refundReservedMinor: bigint;
  readonly createdAtMs: number;
  readonly expiresAtMs: number;
  readonly updatedAtMs: number;
}

export type AuthChange = Partial<
  Pick<
    AuthRecord,
    | "status"
    | "declineReason"
    | "riskScore"
    | "riskApproved"
    | "riskRule"
    | "holdTxnId"
    | "opTxnId"
    | "opKind"
    | "opAmountMinor"
    | "opBatchId"
    | "opItemIndex"
    | "capturedMinor"
    | "captureTxnId"
    | "captureBatchId"
    | "captureItemIndex"
  >
>;

/** What the row must still look like for an update to apply (compare-and-set). */
export interface AuthExpect {
  readonly status?: AuthStatus;
  readonly opTxnId?: string;
}

export type ItemStatus = "" | "CAPTURED" | "FAILED";

export interface BatchRecord {
  readonly batchId: string;
  readonly merchantUserId: string;
  readonly idempotencyKey: string;
  readonly fingerprint: string;
  readonly status: "PENDING" | "DONE";
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

/**
 * The card store. Synchronous (a local SQLite file): a sequence of calls with
 * no await in between cannot interleave with another request, and
 * `atomically` makes such a sequence one durable transaction.
 */
export interface CardStore {
  atomically<T>(fn: () => T): T;

  /** False if a card with this number exists. */
  insertCard(card: CardRecord): boolean;
  cardByPanHmac(panHmac: string): CardRecord | undefined;

  authById(authId: string): AuthRecord | undefined;
  authByCode(authCode: string): AuthRecord | undefined;
  authByKey(merchantUserId: string, idempotencyKey: string): AuthRecord | undefined;
  /** False if the (merchant, key) or the code is taken. */
  insertAuth(auth: AuthRecord): boolean;
  /** Applies `change` only if the row still matches `expect`; true if it did. */
  updateAuth(authId: string, expect: AuthExpect, change: AuthChange, nowMs: number): boolean;
  deleteAuth(authId: string): void;
  /** refunded += refundedDelta, reserved += reservedDelta (the table refuses refunded + reserved > captured). */
  adjustRefunds(authId: string, refundedDeltaMinor: bigint, reservedDeltaMinor: bigint, nowMs: number): void;
  /** What the card has authorized since sinceMs (PENDING past the risk rule, APPROVED, CAPTURED), one authorization excluded. */
  spentSince(cardId: string, sinceMs: number, excludeAuthId: string): bigint;
  pendingAuths(limit: number): AuthRecord[];
  authsWithOp(limit: number): AuthRecord[];
  /** APPROVED authorizations past expires_at with no capture/void in flight become EXPIRED; returns them. */
  expireDue(nowMs: number, limit: number): AuthRecord[];

  insertBatch(batch: BatchRecord, items: readonly BatchItemRecord[]): void;
  batchByKey(merchantUserId: string, idempotencyKey: string): BatchRecord | undefined;
  batchItems(batchId: string): BatchItemRecord[];
  setBatchItem(batchId: string, index: number, result: Pick<BatchItemRecord, "status" | "reason" | "capturedMinor" | "txnId">): void;
  finishBatch(batchId: string, nowMs: number): void;

  insertRefund(refund: RefundRecord): void;
  refundByKey(merchantUserId: string, idempotencyKey: string): RefundRecord | undefined;
  refundById(refundId: string): RefundRecord | undefined;
  decideRefund(refundId: string, status: "COMMITTED" | "FAILED", reason: string, nowMs: number): void;
  deleteRefund(refundId: string): void;
  pendingRefunds(limit: number): RefundRecord[];
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
  runRound(txnId: string, plan: readonly PreparePlan[]): Promise<DecisionRecord>;
  settleRound(txnId: string, banks: readonly string[]): DecisionRecord;
}

/** Keyed hashes of card data (the key lives in the gateway's data dir, not in the database). */
export interface CardHasher {
  panHmac(pan: string): string;
  cvcHash(cardId: string, cvc: string): string;
  cvcMatches(cardId: string, cvc: string, stored: string): boolean;
}
