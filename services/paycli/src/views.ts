// Plain shapes of what the gateway tells us, free of protobuf and Connect, so
// commands and the queue runner can use them without importing the transport.

export type TransactionStatusName = "pending" | "committed" | "aborted" | "unknown";

export interface TransactionView {
  readonly transactionId: string;
  readonly sequence: bigint;
  readonly status: TransactionStatusName;
  readonly declineReason: string;
  readonly fromAccountId: string;
  readonly toAccountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly memo: string;
  readonly idempotencyKey: string;
  readonly createdAt: Date | null;
  readonly decidedAt: Date | null;
  readonly initiatedByUserId: string;
}

/** The same account view the gateway answers with. */
export type { AccountView } from "@paygate/vocab";

export type RoleName = "customer" | "merchant" | "admin";

export interface LoginView {
  readonly token: string;
  readonly expiresAt: Date | null;
  readonly userId: string;
  readonly roles: RoleName[];
}

export interface UserView {
  readonly userId: string;
  readonly username: string;
  readonly roles: RoleName[];
  readonly displayName: string;
}

export interface ReconcileView {
  readonly conserved: boolean;
  readonly currencies: {
    currency: string;
    balanceMinor: bigint;
    heldMinor: bigint;
    depositedMinor: bigint;
    conserved: boolean;
  }[];
  readonly banks: {
    bank: string;
    reachable: boolean;
    ledgerConsistent: boolean;
    problems: string[];
    preparedCount: bigint;
  }[];
  readonly inDoubt: { transactionId: string; where: string; state: string; ageMs: bigint }[];
}

export interface WebhookEndpointView {
  readonly endpointId: string;
  readonly url: string;
  readonly eventTypes: string[];
  readonly status: "enabled" | "disabled" | "unknown";
  readonly createdAt: Date | null;
}

export type WebhookDeliveryStatusName = "pending" | "delivered" | "failed" | "unknown";

export interface WebhookDeliveryView {
  readonly deliveryId: string;
  readonly endpointId: string;
  readonly eventId: string;
  readonly eventType: string;
  readonly objectId: string;
  readonly status: WebhookDeliveryStatusName;
  readonly attempts: number;
  readonly nextAttemptAt: Date | null;
  readonly lastStatusCode: number;
  readonly lastError: string;
  readonly createdAt: Date | null;
  readonly deliveredAt: Date | null;
}

export interface WebhookAttemptView {
  readonly attempt: number;
  readonly at: Date | null;
  readonly statusCode: number;
  readonly latencyMs: bigint;
  readonly error: string;
}
