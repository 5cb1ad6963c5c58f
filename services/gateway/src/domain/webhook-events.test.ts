import { test } from "node:test";
import assert from "node:assert/strict";
import { UNDECIDED_AUTHORIZATION, type AuthRecord, type BatchItemRecord, type RefundRecord } from "./cards-ports.js";
import {
  captureFailedEvent,
  EVENT_ID_PATTERN,
  eventsForAuthChange,
  eventsForNewAuth,
  refundEvent,
  settlementEvent,
  transferEvent,
} from "./webhook-events.js";
import type { OutboxEvent } from "./webhooks-ports.js";

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5, 678);

const pending: AuthRecord = {
  authId: "auth_1",
  replica: "gateway-0",
  authCode: "AB12CD",
  merchantUserId: "merchant-1",
  idempotencyKey: "k1",
  fingerprint: "fp",
  cardId: "card_1",
  cardLast4: "4242",
  cardAccountId: "bank-a/1001",
  cardBank: "bank-a",
  cardOwnerUserId: "alice",
  merchantAccountId: "bank-b/2001",
  merchantBank: "bank-b",
  amountMinor: 12_345n,
  currency: "EUR",
  merchantReference: "order-7",
  ...UNDECIDED_AUTHORIZATION,
  createdAtMs: T0,
  expiresAtMs: T0 + 7 * 86_400_000,
  updatedAtMs: T0,
};
const approved: AuthRecord = { ...pending, status: "APPROVED", holdTxnId: "gateway-0:h1" };
const captured: AuthRecord = {
  ...approved,
  status: "CAPTURED",
  capturedMinor: 10_000n,
  captureTxnId: "gateway-0:c1",
  captureBatchId: "batch_9",
  captureItemIndex: 3,
};

const body = (e: OutboxEvent) =>
  JSON.parse(e.bodyJson) as {
    id: string;
    type: string;
    created_at: string;
    object_id: string;
    data: Record<string, unknown>;
  };

test("authorization transitions: one event each, typed by the status reached, with the authorization as it now is", () => {
  const cases: [AuthRecord, AuthRecord, string][] = [
    [pending, approved, "authorization.approved"],
    [pending, { ...pending, status: "DECLINED", declineReason: "insufficient_funds" }, "authorization.declined"],
    [approved, { ...approved, status: "VOIDED" }, "authorization.voided"],
    [approved, { ...approved, status: "EXPIRED" }, "authorization.expired"],
  ];
  for (const [before, after, type] of cases) {
    const events = eventsForAuthChange(before, after, T0 + 1);
    assert.equal(events.length, 1, type);
    const e = events[0]!;
    assert.equal(e.type, type);
    assert.equal(e.objectId, "AB12CD");
    assert.equal(e.ownerUserId, "merchant-1");
    assert.equal(e.createdAtMs, T0 + 1);
    assert.match(e.eventId, EVENT_ID_PATTERN);
    const b = body(e);
    assert.deepEqual(Object.keys(b), ["id", "type", "created_at", "object_id", "data"]);
    assert.equal(b.id, e.eventId);
    assert.equal(b.type, type);
    assert.equal(b.created_at, "2026-01-02T03:04:05.679Z");
    assert.equal(b.object_id, "AB12CD");
    assert.deepEqual(b.data, {
      object: "authorization",
      auth_code: "AB12CD",
      status: after.status,
      amount_minor: "12345",
      captured_minor: "0",
      refunded_minor: "0",
      currency: "EUR",
      card_last4: "4242",
      merchant_account_id: "bank-b/2001",
      merchant_reference: "order-7",
      decline_reason: after.status === "DECLINED" ? "insufficient_funds" : "",
      created_at: "2026-01-02T03:04:05.678Z",
      expires_at: "2026-01-09T03:04:05.678Z",
    });
  }
});

test("no event when the status stays (a lock, a risk score) or leaves PENDING for nothing reportable", () => {
  assert.deepEqual(
    eventsForAuthChange(
      approved,
      { ...approved, op: { txnId: "x", kind: "capture", amountMinor: 0n, batchId: "", itemIndex: -1 } },
      T0,
    ),
    [],
  );
  assert.deepEqual(eventsForAuthChange(pending, { ...pending, riskScore: 700, riskApproved: true }, T0), []);
  assert.deepEqual(eventsForNewAuth(pending, T0), []);
  assert.equal(
    eventsForNewAuth({ ...pending, status: "DECLINED", declineReason: "risk_declined" }, T0)[0]?.type,
    "authorization.declined",
  );
});

test("capture.succeeded: batch, item and round from the captured record; its id tells captures apart", () => {
  const [e] = eventsForAuthChange(approved, captured, T0);
  assert.equal(e?.type, "capture.succeeded");
  const b = body(e!);
  assert.equal(b.object_id, "AB12CD");
  const { authorization, ...rest } = b.data;
  assert.deepEqual(rest, {
    object: "capture",
    auth_code: "AB12CD",
    batch_id: "batch_9",
    item_index: 3,
    amount_minor: "10000",
    captured_minor: "10000",
    currency: "EUR",
    txn_id: "gateway-0:c1",
    reason: "",
  });
  assert.equal((authorization as { status: string }).status, "CAPTURED");
  assert.equal((authorization as { captured_minor: string }).captured_minor, "10000");
});

test("event ids are deterministic over what happened, and differ between happenings", () => {
  const a = eventsForAuthChange(pending, approved, T0)[0]!;
  const again = eventsForAuthChange(pending, { ...approved, updatedAtMs: T0 + 999 }, T0 + 999)[0]!;
  assert.equal(a.eventId, again.eventId, "a re-run of the same change builds the same id");
  const other = eventsForAuthChange({ ...pending, authId: "auth_2" }, { ...approved, authId: "auth_2" }, T0)[0]!;
  assert.notEqual(a.eventId, other.eventId);
  const expired = eventsForAuthChange(approved, { ...approved, status: "EXPIRED" }, T0)[0]!;
  assert.notEqual(a.eventId, expired.eventId);
  const cap = eventsForAuthChange(approved, captured, T0)[0]!;
  const capElsewhere = eventsForAuthChange(approved, { ...captured, captureItemIndex: 4 }, T0)[0]!;
  assert.notEqual(cap.eventId, capElsewhere.eventId);
});

test("capture.failed: the asked amount, nothing captured, the reason; only for the batch merchant's own authorization", () => {
  const batch = { batchId: "batch_9", merchantUserId: "merchant-1" };
  const item = { index: 2, amountMinor: 99_999n, reason: "amount_exceeds_authorization" };
  const e = captureFailedEvent(batch, item, approved, T0)!;
  assert.equal(e.type, "capture.failed");
  assert.equal(e.objectId, "AB12CD");
  const { authorization, ...rest } = body(e).data;
  assert.deepEqual(rest, {
    object: "capture",
    auth_code: "AB12CD",
    batch_id: "batch_9",
    item_index: 2,
    amount_minor: "99999",
    captured_minor: "0",
    currency: "EUR",
    txn_id: "",
    reason: "amount_exceeds_authorization",
  });
  assert.equal((authorization as { status: string }).status, "APPROVED");
  assert.notEqual(captureFailedEvent(batch, { ...item, index: 3 }, approved, T0)!.eventId, e.eventId);
  assert.equal(captureFailedEvent({ ...batch, merchantUserId: "someone-else" }, item, approved, T0), undefined);
});

test("settlement.completed: every item in index order, failures with no txn id", () => {
  const items: BatchItemRecord[] = [
    {
      batchId: "batch_9",
      index: 1,
      authCode: "ZZZZZZ",
      amountMinor: 5n,
      status: "FAILED",
      reason: "authorization_not_found",
      capturedMinor: 0n,
      txnId: "gateway-0:x",
    },
    {
      batchId: "batch_9",
      index: 0,
      authCode: "AB12CD",
      amountMinor: 10_000n,
      status: "CAPTURED",
      reason: "",
      capturedMinor: 10_000n,
      txnId: "gateway-0:c1",
    },
  ];
  const e = settlementEvent({ batchId: "batch_9", merchantUserId: "merchant-1" }, items, T0);
  assert.equal(e.type, "settlement.completed");
  assert.equal(e.objectId, "batch_9");
  assert.equal(e.ownerUserId, "merchant-1");
  assert.deepEqual(body(e).data, {
    object: "settlement",
    batch_id: "batch_9",
    completed_at: "2026-01-02T03:04:05.678Z",
    items: [
      {
        index: 0,
        auth_code: "AB12CD",
        status: "CAPTURED",
        amount_minor: "10000",
        captured_minor: "10000",
        reason: "",
        txn_id: "gateway-0:c1",
      },
      {
        index: 1,
        auth_code: "ZZZZZZ",
        status: "FAILED",
        amount_minor: "5",
        captured_minor: "0",
        reason: "authorization_not_found",
        txn_id: "",
      },
    ],
  });
});

test("refund.succeeded: ordered with the authorization's events (object = auth code), the authorization with the refund counted", () => {
  const refund: RefundRecord = {
    refundId: "refund_1",
    merchantUserId: "merchant-1",
    idempotencyKey: "r1",
    fingerprint: "rfp",
    authId: "auth_1",
    amountMinor: 2_500n,
    txnId: "gateway-0:r1",
    status: "COMMITTED",
    reason: "",
    createdAtMs: T0,
  };
  const e = refundEvent(refund, { ...captured, refundedMinor: 2_500n }, T0);
  assert.equal(e.type, "refund.succeeded");
  assert.equal(e.objectId, "AB12CD");
  const { authorization, ...rest } = body(e).data;
  assert.deepEqual(rest, {
    object: "refund",
    refund_id: "refund_1",
    auth_code: "AB12CD",
    amount_minor: "2500",
    currency: "EUR",
    txn_id: "gateway-0:r1",
  });
  assert.equal((authorization as { refunded_minor: string }).refunded_minor, "2500");
  assert.notEqual(refundEvent({ ...refund, refundId: "refund_2" }, captured, T0).eventId, e.eventId);
});

test("transfer.committed: for the payee's owner, created when decided, amounts as decimal strings past 2^53", () => {
  const e = transferEvent({
    txnId: "gateway-0:t1",
    fromAccountId: "bank-a/1001",
    toAccountId: "bank-b/2001",
    amountMinor: 9_007_199_254_740_993n,
    currency: "USD",
    memo: "rent",
    decidedAtMs: T0,
    payeeUserId: "bob",
  });
  assert.equal(e.type, "transfer.committed");
  assert.equal(e.objectId, "gateway-0:t1");
  assert.equal(e.ownerUserId, "bob");
  assert.equal(e.createdAtMs, T0);
  assert.deepEqual(body(e).data, {
    object: "transfer",
    txn_id: "gateway-0:t1",
    from_account_id: "bank-a/1001",
    to_account_id: "bank-b/2001",
    amount_minor: "9007199254740993",
    currency: "USD",
    memo: "rent",
    committed_at: "2026-01-02T03:04:05.678Z",
  });
});
