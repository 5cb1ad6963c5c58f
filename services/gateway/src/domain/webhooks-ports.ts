// Webhooks' vocabulary and the store port they need (DESIGN.md §12). An event
// is written by the store in the same transaction as the state change it
// reports (the transactional outbox): card changes insert their event rows
// next to the row they change; a committed transfer's decision row is itself
// the outbox record, from which `materializeTransferEvents` makes events.

export const WEBHOOK_EVENT_TYPES = [
  "authorization.approved",
  "authorization.declined",
  "authorization.voided",
  "authorization.expired",
  "capture.succeeded",
  "capture.failed",
  "settlement.completed",
  "refund.succeeded",
  "transfer.committed",
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export function isWebhookEventType(value: string): value is WebhookEventType {
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(value);
}

/** One event, as written to the outbox. */
export interface OutboxEvent {
  /**
   * "evt_" + a deterministic digest of what happened (type, object, and what
   * tells two such events apart, e.g. the batch of a failed capture): the
   * same state change re-run after an unknown outcome writes it once.
   */
  readonly eventId: string;
  readonly type: WebhookEventType;
  /** What the event is about, and what ordering is kept per: an auth code, a batch id, a refund id, a txn id. */
  readonly objectId: string;
  /** The user whose endpoints receive it: the merchant, or the payee account's owner. */
  readonly ownerUserId: string;
  readonly createdAtMs: number;
  /** The event body sent to endpoints (see webhook-events.ts for its shape): the object as it now is. */
  readonly bodyJson: string;
}

/** A stored event: the outbox row, with its position (increasing in commit order for one object). */
export interface StoredEvent extends OutboxEvent {
  readonly seq: bigint;
}

export type EndpointStatus = "ENABLED" | "DISABLED";

export interface WebhookEndpoint {
  readonly endpointId: string;
  readonly ownerUserId: string;
  /** https://host[:port]/path, checked when registered. */
  readonly url: string;
  readonly eventTypes: readonly WebhookEventType[];
  readonly status: EndpointStatus;
  readonly createdAtMs: number;
}

export interface WebhookSecret {
  readonly endpointId: string;
  /** "whsec_" + 32 random bytes, base64url. */
  readonly secret: string;
  readonly createdAtMs: number;
  /** undefined: the current secret. A rolled-out secret keeps signing until then (the overlap). */
  readonly expiresAtMs: number | undefined;
}

export type DeliveryStatus = "PENDING" | "DELIVERED" | "FAILED";

/** One event to one endpoint. */
export interface WebhookDelivery {
  readonly deliveryId: string;
  readonly endpointId: string;
  readonly eventId: string;
  readonly eventSeq: bigint;
  readonly eventType: WebhookEventType;
  readonly objectId: string;
  readonly status: DeliveryStatus;
  readonly attempts: number;
  readonly nextAttemptAtMs: number;
  /** HTTP status of the last attempt (0: no response). */
  readonly lastStatusCode: number;
  readonly lastError: string;
  readonly createdAtMs: number;
  /** 0 until delivered. */
  readonly deliveredAtMs: number;
}

/** What a replica claimed to deliver now: the delivery, its event's body and where it goes. */
export interface ClaimedDelivery {
  readonly delivery: WebhookDelivery;
  readonly event: StoredEvent;
  readonly endpoint: WebhookEndpoint;
}

export interface DeliveryAttempt {
  readonly deliveryId: string;
  /** 1, 2, ... */
  readonly attempt: number;
  readonly atMs: number;
  /** 0: no HTTP response (timeout, refused, TLS error). */
  readonly statusCode: number;
  readonly latencyMs: number;
  /** "" on success; what went wrong otherwise (never a secret). */
  readonly error: string;
  readonly replica: string;
}

/** How an attempt leaves its delivery. */
export type AttemptOutcome =
  | { readonly status: "DELIVERED" }
  | { readonly status: "PENDING"; readonly nextAttemptAtMs: number }
  | { readonly status: "FAILED" };

export interface WebhookStats {
  /** PENDING deliveries. */
  readonly backlog: number;
  /** Age of the oldest PENDING delivery's event (0 when none). */
  readonly oldestPendingAgeMs: number;
}

/**
 * The webhook store: SQLite (one replica) or PostgreSQL (every replica). Each
 * method is one atomic, durable step.
 */
export interface WebhookStore {
  /** Stores the endpoint and its first secret together. */
  createEndpoint(endpoint: WebhookEndpoint, secret: WebhookSecret): Promise<void>;
  endpointById(endpointId: string): Promise<WebhookEndpoint | undefined>;
  endpointsOf(ownerUserId: string): Promise<WebhookEndpoint[]>;
  /** Disabled endpoints get no new deliveries; their pending ones stay (and resume if enabled again). */
  setEndpointStatus(endpointId: string, status: EndpointStatus): Promise<boolean>;
  /** Deletes the endpoint with its secrets and deliveries. */
  deleteEndpoint(endpointId: string): Promise<boolean>;
  /** The current secret gets `previousExpiresAtMs`, `next` becomes current; secrets past their expiry are dropped. */
  rollSecret(endpointId: string, next: WebhookSecret, previousExpiresAtMs: number, nowMs: number): Promise<void>;
  /** The secrets that sign now: the current one and any still within their overlap. */
  signingSecrets(endpointId: string, nowMs: number): Promise<WebhookSecret[]>;

  /**
   * Committed transfers not yet looked at (a cursor over the decision log's
   * history sequence): for each whose payee account's owner has an enabled
   * endpoint subscribed to transfer.committed, inserts that event (body built
   * by `transferEvent`); advances the cursor. One transaction; returns how many events.
   */
  materializeTransferEvents(limit: number, build: (t: CommittedTransfer) => OutboxEvent): Promise<number>;

  /**
   * Events not yet fanned out, oldest first: one PENDING delivery (due now) per
   * enabled endpoint of the event's owner subscribed to its type; marks the
   * events fanned out. One transaction; returns how many events.
   */
  fanOut(limit: number, nowMs: number, newDeliveryId: () => string): Promise<number>;

  /**
   * Claims up to `limit` PENDING deliveries due by `nowMs` and not claimed by a
   * live claim, oldest event first, for `replica` until `claimUntilMs`. A
   * delivery waits while an earlier PENDING delivery of the same object to the
   * same endpoint exists (in order per object).
   */
  claimDue(replica: string, nowMs: number, claimUntilMs: number, limit: number): Promise<ClaimedDelivery[]>;
  /** Appends the attempt and moves the delivery, if `replica` still holds its claim; false otherwise (nothing written). */
  recordAttempt(attempt: DeliveryAttempt, outcome: AttemptOutcome): Promise<boolean>;

  deliveryById(deliveryId: string): Promise<WebhookDelivery | undefined>;
  /** Newest first; `beforeSeq` pages. */
  deliveriesOf(endpointId: string, limit: number, beforeSeq?: bigint): Promise<WebhookDelivery[]>;
  attemptsOf(deliveryId: string): Promise<DeliveryAttempt[]>;
  /** A FAILED or DELIVERED delivery becomes PENDING and due now (its attempts stay); false if it is PENDING already or unknown. */
  redeliver(deliveryId: string, nowMs: number): Promise<boolean>;

  stats(nowMs: number): Promise<WebhookStats>;
}

/** What `materializeTransferEvents` hands the event builder. */
export interface CommittedTransfer {
  readonly txnId: string;
  readonly fromAccountId: string;
  readonly toAccountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly memo: string;
  readonly decidedAtMs: number;
  /** The payee account's owner (the event's receiver). */
  readonly payeeUserId: string;
}
