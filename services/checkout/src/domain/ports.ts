// What the checkout's use cases need from the outside world: the gateway's
// card API and the merchant's own records. Adapters live in gateway-client.ts
// and store/; tests substitute fakes.
import type { CardDetails } from "./card.js";

// ---- the gateway ----

export interface AuthorizeCommand {
  /** Exactly once per key at the gateway. */
  readonly idempotencyKey: string;
  readonly card: CardDetails;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly merchantReference: string;
  readonly merchantAccountId: string;
}

export type AuthorizeResult =
  | {
      readonly kind: "approved";
      readonly authCode: string;
      readonly cardLast4: string;
      readonly expiresAtMs: number | null;
    }
  /** A verdict: the card was declined (or the request refused); nothing is held. */
  | { readonly kind: "declined"; readonly reason: string; readonly message: string }
  /** No verdict (network, timeout, a transient reason): sending the same key again is safe. */
  | { readonly kind: "unavailable"; readonly reason: string; readonly message: string };

export interface SettleItemCommand {
  readonly authCode: string;
  readonly amountMinor: bigint;
}

export interface SettleItemOutcome {
  readonly authCode: string;
  readonly status: "captured" | "failed";
  readonly reason: string;
  readonly capturedMinor: bigint;
  readonly transactionId: string;
}

export type SettleResult =
  | { readonly kind: "settled"; readonly gatewayBatchId: string; readonly items: readonly SettleItemOutcome[] }
  | { readonly kind: "unavailable"; readonly reason: string; readonly message: string }
  /** The whole batch was refused (a verdict): nothing was captured. */
  | { readonly kind: "rejected"; readonly reason: string; readonly message: string };

export interface CardGateway {
  authorize(command: AuthorizeCommand): Promise<AuthorizeResult>;
  settleBatch(idempotencyKey: string, items: readonly SettleItemCommand[]): Promise<SettleResult>;
}

// ---- the merchant's records ----

export type OrderState = "pending" | "approved" | "declined" | "unknown";
export type SettleState = "unsettled" | "in_batch" | "captured" | "failed";

/** One checkout attempt (a page's hidden key) and what became of it. */
export interface Order {
  readonly attemptKey: string;
  /** The merchant reference sent to the gateway. */
  readonly orderId: string;
  /** The key of the latest Authorize for this attempt (changes only on a retry with other details after a decline). */
  readonly gatewayKey: string;
  readonly fingerprint: string;
  readonly retries: number;
  readonly state: OrderState;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly cardLast4: string;
  readonly cardholderName: string;
  readonly authCode: string | null;
  /** Decline code, or the last transient reason while state is "unknown". */
  readonly reason: string | null;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  readonly settleState: SettleState;
  readonly settlementId: string | null;
  readonly capturedMinor: bigint;
  readonly settleReason: string | null;
  readonly settleAttempts: number;
  /** Captures that failed for a transient reason and were put back for a later batch. */
  readonly captureRetries: number;
  /** After a transient capture failure: no batch takes the order before this time (0 = any time). */
  readonly settleNotBeforeMs: number;
  /** The authorization's status as the gateway's last webhook about it said; null until one arrives. */
  readonly authStatus: AuthStatus | null;
  /** Refunded so far, as the last refund.succeeded said. */
  readonly refundedMinor: bigint;
}

export interface NewOrder {
  readonly attemptKey: string;
  readonly orderId: string;
  readonly fingerprint: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly cardLast4: string;
  readonly cardholderName: string;
  readonly nowMs: number;
}

export type SettlementState = "open" | "done" | "rejected";

export interface Settlement {
  readonly settlementId: string;
  /** Sent with every attempt of this batch: the gateway answers a resend from its record. */
  readonly idempotencyKey: string;
  readonly state: SettlementState;
  readonly itemCount: number;
  readonly totalMinor: bigint;
  readonly capturedMinor: bigint;
  readonly currency: string;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly gatewayBatchId: string | null;
  readonly createdAtMs: number;
  readonly finishedAtMs: number | null;
}

/** What the settlement decided about one item of an answered batch (settlement.ts), for the store to record. */
export type ItemSettlement =
  | {
      readonly kind: "captured";
      readonly authCode: string;
      readonly capturedMinor: bigint;
      readonly reason: string;
      readonly transactionId: string;
    }
  /** Final: the gateway will never capture it (expired, voided, amount too large, ...). */
  | { readonly kind: "failed"; readonly authCode: string; readonly reason: string; readonly transactionId: string }
  /** Not final: back to unsettled, for a later batch from notBeforeMs on. */
  | { readonly kind: "retry"; readonly authCode: string; readonly reason: string; readonly notBeforeMs: number };

export interface SettlementItem {
  readonly settlementId: string;
  readonly attemptKey: string;
  readonly orderId: string;
  readonly authCode: string;
  readonly amountMinor: bigint;
  readonly status: "pending" | "captured" | "failed";
  readonly reason: string | null;
  readonly capturedMinor: bigint;
  readonly transactionId: string | null;
}

export interface CheckoutStore extends WebhookInbox, WebhookSecretStore {
  /** Inserts the attempt if new; either way returns the stored row. */
  claimOrder(order: NewOrder): { readonly created: boolean; readonly order: Order };
  /** Another try after a decline, with other details and a fresh gateway key. */
  retryOrder(
    attemptKey: string,
    change: { fingerprint: string; gatewayKey: string; cardLast4: string; cardholderName: string; nowMs: number },
  ): Order;
  recordApproved(attemptKey: string, authCode: string, cardLast4: string, nowMs: number): Order;
  recordDeclined(attemptKey: string, reason: string, nowMs: number): Order;
  recordUnknown(attemptKey: string, reason: string, nowMs: number): Order;
  getOrder(attemptKey: string): Order | undefined;
  listOrders(limit: number): Order[];

  /** Open batches first (they must be resent with their own key before anything new). */
  openSettlements(limit: number): Settlement[];
  /** Puts up to itemsMax approved, unsettled orders due at nowMs into a new open batch; undefined if there are none. */
  createSettlement(
    settlementId: string,
    idempotencyKey: string,
    itemsMax: number,
    nowMs: number,
  ): Settlement | undefined;
  settlementItems(settlementId: string): SettlementItem[];
  /** Records each item's result on it and on its order; an item without a result goes back to unsettled. */
  completeSettlement(
    settlementId: string,
    gatewayBatchId: string,
    results: readonly ItemSettlement[],
    nowMs: number,
  ): Settlement;
  noteSettlementAttempt(settlementId: string, error: string): Settlement;
  /** The batch was refused as a whole: its orders go back to unsettled (or failed after attemptsMax tries). */
  rejectSettlement(settlementId: string, reason: string, attemptsMax: number, nowMs: number): Settlement;
  listSettlements(limit: number): Settlement[];
}

// ---- webhooks from the gateway (webhooks.ts, webhook-registration.ts) ----

/** The gateway's authorization statuses, as its events spell them. */
export type AuthStatus = "APPROVED" | "DECLINED" | "CAPTURED" | "VOIDED" | "EXPIRED";

/** What one event changes on the order holding `authCode` (an order of another shop, or none, is left alone). */
export interface OrderChange {
  readonly authCode: string;
  readonly authStatus?: AuthStatus;
  /** Expired or voided: an order not yet in a batch will never be captured (settle state failed). */
  readonly closed?: "expired" | "voided";
  /** Captured, this much: the order is captured whatever its settle state was. */
  readonly capturedMinor?: bigint;
  /** A capture failed for this reason; the settle state stays as it is (the settlement job decides). */
  readonly captureFailedReason?: string;
  /** Refunded so far (a total; never lowers what is recorded). */
  readonly refundedMinor?: bigint;
}

/** The facts of a verified event the store keeps with its id. */
export interface ReceivedEvent {
  readonly eventId: string;
  readonly type: string;
  readonly objectId: string;
  readonly createdAtMs: number;
}

export interface WebhookInbox {
  /** The secrets a signature may match now: the current one, and replaced ones until they expire. */
  webhookSecrets(nowMs: number): string[];
  /**
   * Records the event id and applies the changes, in one transaction; a
   * known id is a duplicate and changes nothing.
   */
  applyWebhookEvent(
    event: ReceivedEvent,
    changes: readonly OrderChange[],
    nowMs: number,
  ): { readonly duplicate: boolean; readonly ordersChanged: number };
}

export interface WebhookSecretStore {
  /** Whether a secret of this endpoint is usable at nowMs. */
  hasWebhookSecret(endpointId: string, nowMs: number): boolean;
  /** `secret` becomes the current one (durably); secrets current until now expire at `previousExpireAtMs`. */
  addWebhookSecret(
    secret: { readonly endpointId: string; readonly secret: string; readonly createdAtMs: number },
    previousExpireAtMs: number,
  ): void;
}

/** The gateway's WebhookService as the merchant; each call throws when it gets no answer or a refusal. */
export interface WebhookAdmin {
  listEndpoints(): Promise<
    Array<{ readonly endpointId: string; readonly url: string; readonly eventTypes: readonly string[] }>
  >;
  createEndpoint(
    url: string,
    eventTypes: readonly string[],
  ): Promise<{ readonly endpointId: string; readonly secret: string }>;
  rollSecret(
    endpointId: string,
    overlapSeconds: number,
  ): Promise<{ readonly secret: string; readonly previousExpiresAtMs: number }>;
}
