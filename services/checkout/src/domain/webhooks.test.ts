// The webhook receiver's rules against the real SQLite store (in memory):
// only a verified, well-formed, fresh event changes orders; it does so once
// per event id; each type changes what docs/WEBHOOKS.md says; and a webhook
// that got there before the settlement batch's answer is not undone by it.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { signatureHeader } from "@paygate/webhook-signature";
import { openCheckoutStore } from "../store/checkout-store.js";
import type { CardGateway } from "./ports.js";
import { createSettlementJob } from "./settlement.js";
import { createWebhookReceiver, orderChangesOf } from "./webhooks.js";

const NOW = Date.UTC(2026, 0, 15, 12);
const SECRET = "whsec_" + "k".repeat(43);
const CODE = "AB12CD";
const KEY = "attempt-0000000000000001";

let seq = 0;
const nextId = () => `evt_${(++seq).toString(16).padStart(24, "0")}`;

function authorization(status: string, captured = "0", refunded = "0") {
  return {
    object: "authorization",
    auth_code: CODE,
    status,
    amount_minor: "2399",
    captured_minor: captured,
    refunded_minor: refunded,
    currency: "USD",
    card_last4: "4242",
    merchant_account_id: "bank-b/2003",
    merchant_reference: "order-1",
    decline_reason: "",
    created_at: "2026-01-15T12:00:00.000Z",
    expires_at: "2026-01-22T12:00:00.000Z",
  };
}

function event(type: string, data: unknown, id = nextId(), objectId = CODE): string {
  return JSON.stringify({ id, type, created_at: new Date(NOW).toISOString(), object_id: objectId, data });
}

const captureData = (status: "CAPTURED" | "APPROVED", captured: string, reason = "") => ({
  object: "capture",
  auth_code: CODE,
  batch_id: "b_1",
  item_index: 0,
  amount_minor: "2399",
  captured_minor: captured,
  currency: "USD",
  txn_id: captured === "0" ? "" : "gateway-0:1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
  reason,
  authorization: authorization(status, captured),
});

function setup() {
  const store = openCheckoutStore({ memory: true });
  store.addWebhookSecret({ endpointId: "we_1", secret: SECRET, createdAtMs: NOW }, NOW);
  store.claimOrder({
    attemptKey: KEY,
    orderId: "order-1",
    fingerprint: "fp",
    amountMinor: 2399n,
    currency: "USD",
    cardLast4: "4242",
    cardholderName: "A",
    nowMs: NOW,
  });
  store.recordApproved(KEY, CODE, "4242", NOW);
  const clock = { nowMs: NOW };
  const receiver = createWebhookReceiver({ store, toleranceSeconds: 300, clock: () => clock.nowMs });
  const deliver = (body: string, secrets = [SECRET], tSeconds = Math.floor(clock.nowMs / 1000)) =>
    receiver.receive(signatureHeader(secrets, body, tSeconds), body);
  return { store, receiver, clock, deliver, order: () => store.getOrder(KEY)! };
}

describe("verification comes first", () => {
  test("a tampered body, a wrong secret, an old or future timestamp, no or a garbled header: refused, nothing stored", () => {
    const { receiver, deliver, order } = setup();
    const body = event("capture.succeeded", captureData("CAPTURED", "2399"));
    const t = Math.floor(NOW / 1000);
    const tampered = body.replace('"captured_minor":"2399"', '"captured_minor":"1"');
    assert.notEqual(tampered, body);
    const outcomes = [
      receiver.receive(signatureHeader([SECRET], body, t), tampered),
      deliver(body, ["whsec_" + "x".repeat(43)]),
      deliver(body, [SECRET], t - 301),
      deliver(body, [SECRET], t + 301),
      receiver.receive(undefined, body),
      receiver.receive("t=1,v1=zz", body),
    ];
    assert.deepEqual(
      outcomes.map((o) => (o.kind === "refused" ? o.reason : o.kind)),
      [
        "signature_mismatch",
        "signature_mismatch",
        "timestamp_out_of_tolerance",
        "timestamp_out_of_tolerance",
        "missing_signature",
        "malformed_signature",
      ],
    );
    assert.deepEqual(
      [order().settleState, order().authStatus],
      ["unsettled", null],
      "no refused event changed the order",
    );
    // The same body, properly signed, is then applied: the refusals stored no event id either.
    assert.equal(deliver(body).kind, "stored");
    assert.equal(order().settleState, "captured");
  });

  test("a signed body that is not an event is malformed_event, and is not stored", () => {
    const { deliver, store } = setup();
    for (const body of [
      "not json",
      "[]",
      JSON.stringify({ id: "evt_1", type: "x.y", created_at: "now", object_id: CODE, data: {} }),
      event("capture.succeeded", { auth_code: CODE }),
    ]) {
      const o = deliver(body);
      assert.deepEqual(o.kind === "refused" ? o.reason : o.kind, "malformed_event", body);
    }
    assert.equal(store.getOrder(KEY)?.settleState, "unsettled");
  });

  test("every stored secret verifies until it expires: a rolled one during its grace, then not", () => {
    const { store, deliver, clock } = setup();
    const next = "whsec_" + "n".repeat(43);
    store.addWebhookSecret({ endpointId: "we_1", secret: next, createdAtMs: NOW }, NOW + 60_000);
    assert.deepEqual(store.webhookSecrets(NOW).sort(), [next, SECRET].sort());
    assert.equal(
      deliver(event("authorization.approved", authorization("APPROVED"))).kind,
      "stored",
      "the old secret, within its grace",
    );
    assert.equal(deliver(event("authorization.approved", authorization("APPROVED")), [next]).kind, "stored");
    clock.nowMs = NOW + 60_001;
    const late = deliver(event("authorization.approved", authorization("APPROVED")));
    assert.deepEqual(late.kind === "refused" && late.reason, "signature_mismatch");
    assert.equal(deliver(event("authorization.approved", authorization("APPROVED")), [next]).kind, "stored");
    assert.equal(store.hasWebhookSecret("we_1", clock.nowMs), true);
    assert.equal(store.hasWebhookSecret("we_2", clock.nowMs), false);
  });
});

describe("once per event id", () => {
  test("a redelivery is a duplicate and changes nothing, even after later events", () => {
    const { deliver, order } = setup();
    const refund1 = event("refund.succeeded", {
      object: "refund",
      refund_id: "r1",
      auth_code: CODE,
      amount_minor: "400",
      currency: "USD",
      txn_id: "t",
      authorization: authorization("CAPTURED", "2399", "400"),
    });
    assert.deepEqual(deliver(refund1), {
      kind: "stored",
      eventId: JSON.parse(refund1).id,
      type: "refund.succeeded",
      ordersChanged: 1,
    });
    const again = deliver(refund1);
    assert.equal(again.kind, "duplicate");
    assert.equal(order().refundedMinor, 400n);
  });

  test("an event about no order of this shop is stored (and acknowledged) with nothing changed; an unknown type too", () => {
    const { deliver, order } = setup();
    const other = event(
      "authorization.expired",
      { ...authorization("EXPIRED"), auth_code: "ZZ99ZZ" },
      nextId(),
      "ZZ99ZZ",
    );
    const first = deliver(other);
    assert.deepEqual(first.kind === "stored" && first.ordersChanged, 0);
    const unknown = event("payout.paid", { anything: true });
    const o = deliver(unknown);
    assert.deepEqual(o.kind === "stored" && o.ordersChanged, 0);
    assert.equal(deliver(unknown).kind, "duplicate");
    assert.deepEqual([order().settleState, order().authStatus], ["unsettled", null]);
  });
});

describe("what each event does to the order", () => {
  test("authorization.expired / voided: an unsettled order will never be captured", () => {
    for (const [type, status, reason] of [
      ["authorization.expired", "EXPIRED", "authorization_expired"],
      ["authorization.voided", "VOIDED", "authorization_voided"],
    ] as const) {
      const { deliver, order } = setup();
      assert.deepEqual(deliver(event(type, authorization(status))).kind, "stored");
      assert.deepEqual(
        [order().authStatus, order().settleState, order().settleReason],
        [status, "failed", reason],
        type,
      );
    }
  });

  test("capture.succeeded: captured with the amount; capture.failed notes the reason and leaves the order to the settlement job", () => {
    const { deliver, order } = setup();
    deliver(event("capture.failed", captureData("APPROVED", "0", "bank_unavailable")));
    assert.deepEqual(
      [order().settleState, order().settleReason, order().authStatus],
      ["unsettled", "bank_unavailable", "APPROVED"],
    );
    deliver(event("capture.succeeded", captureData("CAPTURED", "2000")));
    assert.deepEqual(
      [order().settleState, order().capturedMinor, order().settleReason, order().authStatus],
      ["captured", 2000n, null, "CAPTURED"],
    );
    // A late failure report does not undo a capture.
    deliver(event("capture.failed", captureData("CAPTURED", "0", "already_captured")));
    assert.deepEqual([order().settleState, order().capturedMinor], ["captured", 2000n]);
  });

  test("refund.succeeded: the refunded total; an older total never lowers it", () => {
    const { deliver, order } = setup();
    const refund = (total: string) =>
      event("refund.succeeded", {
        object: "refund",
        refund_id: `r${total}`,
        auth_code: CODE,
        amount_minor: "1",
        currency: "USD",
        txn_id: "t",
        authorization: authorization("CAPTURED", "2399", total),
      });
    deliver(refund("500"));
    deliver(refund("300"));
    assert.equal(order().refundedMinor, 500n);
  });

  test("settlement.completed: each item as a capture success or failure", () => {
    const captured = {
      index: 0,
      auth_code: CODE,
      status: "CAPTURED",
      amount_minor: "2399",
      captured_minor: "2399",
      reason: "",
      txn_id: "t",
    };
    const changes = orderChangesOf("settlement.completed", {
      object: "settlement",
      batch_id: "b_1",
      completed_at: "2026-01-15T12:00:00.000Z",
      items: [
        captured,
        {
          index: 1,
          auth_code: "EF34GH",
          status: "FAILED",
          amount_minor: "100",
          captured_minor: "0",
          reason: "authorization_expired",
          txn_id: "",
        },
      ],
    });
    assert.deepEqual(changes, [
      { authCode: CODE, capturedMinor: 2399n },
      { authCode: "EF34GH", captureFailedReason: "authorization_expired" },
    ]);
    const { deliver, order } = setup();
    deliver(
      event(
        "settlement.completed",
        {
          object: "settlement",
          batch_id: "b_1",
          completed_at: "x",
          items: [captured],
        },
        nextId(),
        "b_1",
      ),
    );
    assert.deepEqual([order().settleState, order().capturedMinor], ["captured", 2399n]);
  });

  test("a capture heard by webhook while the order is in a batch: the batch's answer, whatever it says, does not undo it", async () => {
    for (const answer of ["captured", "failed_transient", "unavailable_then_rejected"] as const) {
      const { store, deliver, order } = setup();
      let calls = 0;
      const gateway: CardGateway = {
        authorize: async () => {
          throw new Error("not used");
        },
        settleBatch: async (_key, items) => {
          calls++;
          // The gateway captured and its webhook arrived before the batch's answer.
          if (calls === 1) deliver(event("capture.succeeded", captureData("CAPTURED", "2399")));
          if (answer === "unavailable_then_rejected")
            return { kind: "rejected", reason: "invalid_argument", message: "x" };
          return {
            kind: "settled",
            gatewayBatchId: "b_1",
            items: items.map((i) => ({
              authCode: i.authCode,
              status: answer === "captured" ? "captured" : "failed",
              reason: answer === "captured" ? "" : "bank_unavailable",
              capturedMinor: answer === "captured" ? i.amountMinor : 0n,
              transactionId: "",
            })),
          };
        },
      };
      const job = createSettlementJob({ store, gateway, newId: () => "stl-1", clock: () => NOW });
      await job.runOnce();
      assert.deepEqual([order().settleState, order().capturedMinor], ["captured", 2399n], answer);
      assert.equal(store.openSettlements(10).length, 0, answer);
    }
  });
});
