// The webhook events' bodies (DESIGN.md §12, the wire contract): pure
// builders the stores call inside the transaction that makes the change, so
// the event and its state change commit together. Bodies are snake_case JSON;
// amounts are decimal strings of minor units; times are ISO 8601 UTC.
//
// Event ids are deterministic ("evt_" + 24 hex of a sha256 over what tells
// the happening apart): a state change re-run after an unknown outcome builds
// the same id, and the outbox's unique index keeps one row.
import { createHash } from "node:crypto";
import type { AuthRecord, AuthStatus, BatchItemRecord, BatchRecord, RefundRecord } from "./cards-ports.js";
import type { CommittedTransfer, OutboxEvent, WebhookEventType } from "./webhooks-ports.js";

export const EVENT_ID_PATTERN = /^evt_[0-9a-f]{24}$/;

/** "evt_" + the first 24 hex digits of sha256 over the parts. */
export function eventIdOf(parts: readonly (string | number)[]): string {
  return `evt_${createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 24)}`;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The authorization as events carry it: what the merchant may see, nothing of the card beyond its last 4. */
export function authorizationObject(a: AuthRecord): Record<string, unknown> {
  return {
    object: "authorization",
    auth_code: a.authCode,
    status: a.status,
    amount_minor: a.amountMinor.toString(),
    captured_minor: a.capturedMinor.toString(),
    refunded_minor: a.refundedMinor.toString(),
    currency: a.currency,
    card_last4: a.cardLast4,
    merchant_account_id: a.merchantAccountId,
    merchant_reference: a.merchantReference,
    decline_reason: a.status === "DECLINED" ? a.declineReason : "",
    created_at: iso(a.createdAtMs),
    expires_at: iso(a.expiresAtMs),
  };
}

function outboxEvent(
  type: WebhookEventType,
  idParts: readonly (string | number)[],
  objectId: string,
  ownerUserId: string,
  createdAtMs: number,
  data: Record<string, unknown>,
): OutboxEvent {
  const eventId = eventIdOf([type, ...idParts]);
  const body = { id: eventId, type, created_at: iso(createdAtMs), object_id: objectId, data };
  return { eventId, type, objectId, ownerUserId, createdAtMs, bodyJson: JSON.stringify(body) };
}

const AUTH_STATUS_EVENTS: Partial<Record<AuthStatus, WebhookEventType>> = {
  APPROVED: "authorization.approved",
  DECLINED: "authorization.declined",
  VOIDED: "authorization.voided",
  EXPIRED: "authorization.expired",
};

/**
 * The events an authorization's change reports: a status reached (approved,
 * declined, voided, expired) or a capture (capture.succeeded, with the batch
 * item and round from the after record). None when the status stays.
 */
export function eventsForAuthChange(before: AuthRecord, after: AuthRecord, nowMs: number): OutboxEvent[] {
  if (before.status === after.status) return [];
  if (after.status === "CAPTURED") {
    const data = {
      object: "capture",
      auth_code: after.authCode,
      batch_id: after.captureBatchId,
      item_index: after.captureItemIndex,
      amount_minor: after.capturedMinor.toString(),
      captured_minor: after.capturedMinor.toString(),
      currency: after.currency,
      txn_id: after.captureTxnId,
      reason: "",
      authorization: authorizationObject(after),
    };
    return [
      outboxEvent(
        "capture.succeeded",
        [after.authId, after.captureBatchId, after.captureItemIndex],
        after.authCode,
        after.merchantUserId,
        nowMs,
        data,
      ),
    ];
  }
  const type = AUTH_STATUS_EVENTS[after.status];
  if (type === undefined) return [];
  return [outboxEvent(type, [after.authId], after.authCode, after.merchantUserId, nowMs, authorizationObject(after))];
}

/** An authorization stored in a final state right away (the card use cases insert PENDING; this covers any other writer). */
export function eventsForNewAuth(a: AuthRecord, nowMs: number): OutboxEvent[] {
  return eventsForAuthChange({ ...a, status: "PENDING" }, a, nowMs);
}

/**
 * A batch item's capture failed for good. `auth` is the authorization the
 * item names, only if it is the batch's merchant's (another's code, or no
 * such code: no event, the settlement.completed event still reports the item).
 */
export function captureFailedEvent(
  batch: Pick<BatchRecord, "batchId" | "merchantUserId">,
  item: Pick<BatchItemRecord, "index" | "amountMinor" | "reason">,
  auth: AuthRecord,
  nowMs: number,
): OutboxEvent | undefined {
  if (auth.merchantUserId !== batch.merchantUserId) return undefined;
  const data = {
    object: "capture",
    auth_code: auth.authCode,
    batch_id: batch.batchId,
    item_index: item.index,
    amount_minor: item.amountMinor.toString(),
    captured_minor: "0",
    currency: auth.currency,
    txn_id: "",
    reason: item.reason,
    authorization: authorizationObject(auth),
  };
  return outboxEvent(
    "capture.failed",
    [auth.authId, batch.batchId, item.index],
    auth.authCode,
    batch.merchantUserId,
    nowMs,
    data,
  );
}

/** A batch is done: every item's final result. */
export function settlementEvent(
  batch: Pick<BatchRecord, "batchId" | "merchantUserId">,
  items: readonly BatchItemRecord[],
  nowMs: number,
): OutboxEvent {
  const data = {
    object: "settlement",
    batch_id: batch.batchId,
    completed_at: iso(nowMs),
    items: [...items]
      .sort((a, b) => a.index - b.index)
      .map((it) => ({
        index: it.index,
        auth_code: it.authCode,
        status: it.status === "CAPTURED" ? "CAPTURED" : "FAILED",
        amount_minor: it.amountMinor.toString(),
        captured_minor: it.capturedMinor.toString(),
        reason: it.reason,
        txn_id: it.status === "CAPTURED" ? it.txnId : "",
      })),
  };
  return outboxEvent("settlement.completed", [batch.batchId], batch.batchId, batch.merchantUserId, nowMs, data);
}

/** A refund committed; `authAfter` is its authorization with the refund counted. Ordered with the authorization's events (object_id = auth code). */
export function refundEvent(refund: RefundRecord, authAfter: AuthRecord, nowMs: number): OutboxEvent {
  const data = {
    object: "refund",
    refund_id: refund.refundId,
    auth_code: authAfter.authCode,
    amount_minor: refund.amountMinor.toString(),
    currency: authAfter.currency,
    txn_id: refund.txnId,
    authorization: authorizationObject(authAfter),
  };
  return outboxEvent("refund.succeeded", [refund.refundId], authAfter.authCode, refund.merchantUserId, nowMs, data);
}

/** A committed transfer, for the payee account's owner; created when it was decided. */
export function transferEvent(t: CommittedTransfer): OutboxEvent {
  const data = {
    object: "transfer",
    txn_id: t.txnId,
    from_account_id: t.fromAccountId,
    to_account_id: t.toAccountId,
    amount_minor: t.amountMinor.toString(),
    currency: t.currency,
    memo: t.memo,
    committed_at: iso(t.decidedAtMs),
  };
  return outboxEvent("transfer.committed", [t.txnId], t.txnId, t.payeeUserId, t.decidedAtMs, data);
}
