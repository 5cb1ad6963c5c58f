// Webhooks over the real stack (DESIGN.md §12, docs/WEBHOOKS.md): banks,
// gateway, credit bureau and the merchant's checkout as processes, a real
// HTTPS receiver in this process verifying every delivery with
// @paygate/webhook-signature. Every event type arrives once and verified; a
// receiver that was down gets everything afterwards, in order per object; a
// gateway killed before a send or after the receiver's 2xx delivers after its
// restart, the duplicate deduped by the checkout; the checkout refuses forged,
// re-keyed and replayed posts; a rolled secret works through its overlap and
// not after; URLs outside the allow-list are refused. Money conserved after
// each test that moves any.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { Code, type Client } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import {
  AdminService,
  CardService,
  PaymentService,
  WebhookDeliveryStatus,
  WebhookService,
  type IssueCardResponse,
} from "@paygate/proto/gateway";
import { authorizeRequest, freePort, rejectsWith, Stack, testCerts } from "@paygate/testkit";
import { signatureHeader } from "@paygate/webhook-signature";
import { eventually, WebhookReceiver, type Delivery } from "./webhooks-support.js";

const CARD_EVENTS = [
  "authorization.approved",
  "authorization.declined",
  "authorization.voided",
  "authorization.expired",
  "capture.succeeded",
  "capture.failed",
  "settlement.completed",
  "refund.succeeded",
];
const SHOP = "/shop";
const CAROL = "/carol";
const CART_MINOR = 2399n;
const HOLD_TTL_MS = 8000;
const MERCHANT_LOGIN = { username: "shop", password: "shop-test-password" };
const merchantAuth = {
  authorization: `Basic ${Buffer.from(`${MERCHANT_LOGIN.username}:${MERCHANT_LOGIN.password}`).toString("base64")}`,
};

interface Ctx {
  stack: Stack;
  receiver: WebhookReceiver;
  admin: Client<typeof AdminService>;
  shop: Client<typeof CardService>;
  shopHooks: Client<typeof WebhookService>;
  carolHooks: Client<typeof WebhookService>;
  shopEndpointId: string;
  webhookPort: number;
  card: IssueCardResponse;
  empty: IssueCardResponse;
}

const authorizeReq = authorizeRequest;

const ofObject = (ds: readonly Delivery[], objectId: string) => ds.filter((d) => d.objectId === objectId);
const typesOf = (ds: readonly Delivery[]) => ds.map((d) => d.type);

/** The checkout's orders as its back office shows them. */
async function checkoutOrders(c: Ctx): Promise<
  Array<{
    attemptKey: string;
    authCode: string | null;
    state: string;
    settleState: string;
    settleReason: string | null;
    capturedMinor: string;
    authStatus: string | null;
    refundedMinor: string;
  }>
> {
  const res = await fetch(`${c.stack.checkoutUrl}/merchant?format=json`, { headers: merchantAuth });
  return ((await res.json()) as { orders: Awaited<ReturnType<typeof checkoutOrders>> }).orders;
}

/** Pays the demo cart at the checkout with `card`; returns the order's attempt key and auth code. */
async function payAtCheckout(c: Ctx, card: IssueCardResponse): Promise<{ attemptKey: string; authCode: string }> {
  const attemptKey = `wh-${randomUUID().replace(/-/g, "")}`;
  const res = await fetch(`${c.stack.checkoutUrl}/make-payment`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({
      idempotencyKey: attemptKey,
      cardholderName: "Test Holder",
      cardNumber: card.number,
      expiry: `${String(card.expMonth).padStart(2, "0")}/${String(card.expYear % 100).padStart(2, "0")}`,
      cvc: card.cvc,
    }),
  });
  const json = (await res.json()) as { status: string; authCode: string };
  assert.equal(json.status, "approved", JSON.stringify(json));
  return { attemptKey, authCode: json.authCode };
}

/** The checkout's own record of its signing secrets (its SQLite file, read-only). */
function checkoutSecrets(c: Ctx): string[] {
  const db = new Database(join(c.stack.dir, "checkout", "checkout.db"), { readonly: true, fileMustExist: true });
  try {
    return (
      db
        .prepare("SELECT secret FROM webhook_secrets WHERE expires_at_ms IS NULL OR expires_at_ms > ?")
        .all(Date.now()) as Array<{ secret: string }>
    ).map((r) => r.secret);
  } finally {
    db.close();
  }
}

/** The checkout's "webhook" log lines for one event id. */
const checkoutLines = (c: Ctx, eventId: string) =>
  c.stack.checkout!.find((l) => l.msg === "webhook" && l.eventId === eventId);

async function allDelivered(c: Ctx, endpointId: string, hooks = c.shopHooks): Promise<void> {
  await eventually(async () => {
    const r = await hooks.listDeliveries({ endpointId, pageSize: 200 });
    return r.deliveries.every((d) => d.status === WebhookDeliveryStatus.DELIVERED) ? true : undefined;
  }, `every delivery of ${endpointId} delivered`);
}

/** Every delivery of every endpoint of the shop's and carol's delivered (nothing in flight). */
async function everythingDelivered(c: Ctx): Promise<void> {
  for (const hooks of [c.shopHooks, c.carolHooks]) {
    for (const e of (await hooks.listEndpoints({})).endpoints) await allDelivered(c, e.endpointId, hooks);
  }
}

describe("webhooks", () => {
  let c: Ctx;

  before(async () => {
    const receiver = new WebhookReceiver(testCerts());
    await receiver.start();
    const webhookPort = await freePort();
    const stack = await Stack.start({
      bureau: true,
      gatewayEnv: {
        WEBHOOK_ALLOW_LOOPBACK: "true",
        WEBHOOK_ALLOWED_HOSTS: "127.0.0.1,localhost",
        WEBHOOK_RETRY_BASE_MS: "100",
        WEBHOOK_RETRY_MAX_MS: "500",
        WEBHOOK_POLL_MS: "50",
        WEBHOOK_TIMEOUT_MS: "2000",
        AUTH_HOLD_TTL_MS: String(HOLD_TTL_MS),
        AUTH_EXPIRY_INTERVAL_MS: "200",
      },
      checkout: {
        env: {
          CHECKOUT_WEBHOOK_PORT: String(webhookPort),
          CHECKOUT_WEBHOOK_URL: `https://127.0.0.1:${webhookPort}/webhooks/paygate`,
          CHECKOUT_WEBHOOK_REGISTER_RETRY_MS: "100",
          CHECKOUT_WEBHOOK_REGISTER_RETRY_MAX_MS: "1000",
        },
      },
    });
    const admin = stack.client(AdminService, await stack.login("admin"));
    const shopToken = await stack.login("shop");
    const shopHooks = stack.client(WebhookService, shopToken);
    const carolHooks = stack.client(WebhookService, await stack.login("carol"));
    const created = await shopHooks.createEndpoint({ url: receiver.url(SHOP), eventTypes: CARD_EVENTS });
    receiver.secrets.set(SHOP, [created.secret]);
    const carolEndpoint = await carolHooks.createEndpoint({
      url: receiver.url(CAROL),
      eventTypes: ["transfer.committed"],
    });
    receiver.secrets.set(CAROL, [carolEndpoint.secret]);
    const issue = (accountId: string) =>
      admin.issueCard({ accountId, cardholderName: "Test Holder", number: "", cvc: "", expMonth: 0, expYear: 0 });
    c = {
      stack,
      receiver,
      admin,
      shop: stack.client(CardService, shopToken),
      shopHooks,
      carolHooks,
      shopEndpointId: created.endpoint!.endpointId,
      webhookPort,
      card: await issue("bank-a/1001"),
      // carol's account is empty: authorizations on it are declined.
      empty: await issue("bank-b/2002"),
    };
    // The checkout registered its own endpoint by itself.
    await eventually(
      () => (stack.checkout!.find("webhook endpoint registered").length > 0 ? true : undefined),
      "the checkout registered its endpoint",
    );
  });
  after(async () => {
    await c?.stack.close();
    await c?.receiver.stop();
  });

  test("the checkout registered its endpoint with the events it consumes and holds its secret", async () => {
    const endpoints = (await c.shopHooks.listEndpoints({})).endpoints;
    const mine = endpoints.filter((e) => e.url === `https://127.0.0.1:${c.webhookPort}/webhooks/paygate`);
    assert.equal(mine.length, 1);
    assert.deepEqual([...mine[0]!.eventTypes].sort(), [
      "authorization.expired",
      "authorization.voided",
      "capture.failed",
      "capture.succeeded",
      "refund.succeeded",
      "settlement.completed",
    ]);
    assert.equal(checkoutSecrets(c).length, 1);
    assert.equal(c.stack.checkout!.find("webhook endpoint registered").at(-1)?.outcome, "created");
  });

  test("every event type arrives exactly once, verified; transfer.committed only to a payee owner with an endpoint", async () => {
    const auth = async (amountMinor: bigint) =>
      (await c.shop.authorize(authorizeReq(c.card, amountMinor))).authorization!;
    const approvedOnly = await auth(1_000n); // left alone: it expires after HOLD_TTL_MS
    const voided = await auth(1_100n);
    await c.shop.void({ authCode: voided.authCode });
    const captured = await auth(1_200n);
    const tooMuch = await auth(1_300n);
    const batch = await c.shop.settleBatch({
      idempotencyKey: randomUUID(),
      items: [
        { authCode: captured.authCode, amountMinor: 1_200n },
        { authCode: tooMuch.authCode, amountMinor: 1_301n },
      ],
    });
    await c.shop.refund({ idempotencyKey: randomUUID(), authCode: captured.authCode, amountMinor: 200n });
    await c.shop.void({ authCode: tooMuch.authCode });
    const declinedReq = authorizeReq(c.empty, 500n);
    await rejectsWith(c.shop.authorize(declinedReq), Code.FailedPrecondition, "insufficient_funds");

    // bob (no endpoint) is paid first, carol (an endpoint) second: once carol's event is in, bob's transfer was looked at.
    const alice = c.stack.client(PaymentService, await c.stack.login("alice"));
    const bob = c.stack.client(PaymentService, await c.stack.login("bob"));
    const toBob = (
      await alice.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1001",
        toAccountId: "bank-b/2001",
        amountMinor: 300n,
        currency: "USD",
        memo: "to bob",
      })
    ).transaction!;
    const toCarol = (
      await bob.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1002",
        toAccountId: "bank-b/2002",
        amountMinor: 400n,
        currency: "USD",
        memo: "to carol",
      })
    ).transaction!;

    const carolGot = await c.receiver.waitFor(
      CAROL,
      (ds) => ds.some((d) => d.objectId === toCarol.transactionId),
      "transfer.committed to carol",
    );
    const shopGot = await c.receiver.waitFor(
      SHOP,
      (ds) =>
        ofObject(ds, approvedOnly.authCode).some((d) => d.type === "authorization.expired") &&
        ofObject(ds, captured.authCode).some((d) => d.type === "refund.succeeded") &&
        ofObject(ds, tooMuch.authCode).some((d) => d.type === "authorization.voided") &&
        ofObject(ds, voided.authCode).some((d) => d.type === "authorization.voided") &&
        ds.some((d) => d.type === "settlement.completed" && d.objectId === batch.batchId) &&
        ds.some(
          (d) => d.type === "authorization.declined" && d.data.merchant_reference === declinedReq.merchantReference,
        ),
      "every card event",
    );
    assert.deepEqual(typesOf(ofObject(shopGot, approvedOnly.authCode)), [
      "authorization.approved",
      "authorization.expired",
    ]);
    assert.deepEqual(typesOf(ofObject(shopGot, voided.authCode)), ["authorization.approved", "authorization.voided"]);
    assert.deepEqual(typesOf(ofObject(shopGot, captured.authCode)), [
      "authorization.approved",
      "capture.succeeded",
      "refund.succeeded",
    ]);
    assert.deepEqual(typesOf(ofObject(shopGot, tooMuch.authCode)), [
      "authorization.approved",
      "capture.failed",
      "authorization.voided",
    ]);
    const declined = shopGot.filter(
      (d) => d.type === "authorization.declined" && d.data.merchant_reference === declinedReq.merchantReference,
    );
    assert.equal(declined.length, 1);
    assert.equal(declined[0]!.data.decline_reason, "insufficient_funds");

    // The bodies say what happened.
    const capture = ofObject(shopGot, captured.authCode).find((d) => d.type === "capture.succeeded")!;
    assert.deepEqual(
      [
        capture.data.captured_minor,
        capture.data.batch_id,
        (capture.data.authorization as Record<string, unknown>).status,
      ],
      ["1200", batch.batchId, "CAPTURED"],
    );
    const failed = ofObject(shopGot, tooMuch.authCode).find((d) => d.type === "capture.failed")!;
    assert.deepEqual([failed.data.captured_minor, failed.data.reason], ["0", "amount_exceeds_authorization"]);
    const refund = ofObject(shopGot, captured.authCode).find((d) => d.type === "refund.succeeded")!;
    assert.deepEqual(
      [refund.data.amount_minor, (refund.data.authorization as Record<string, unknown>).refunded_minor],
      ["200", "200"],
    );
    const settlement = shopGot.find((d) => d.type === "settlement.completed" && d.objectId === batch.batchId)!;
    assert.deepEqual(
      (settlement.data.items as Array<Record<string, unknown>>).map((i) => [i.auth_code, i.status]),
      [
        [captured.authCode, "CAPTURED"],
        [tooMuch.authCode, "FAILED"],
      ],
    );
    const transfer = carolGot.find((d) => d.objectId === toCarol.transactionId)!;
    assert.deepEqual(
      [transfer.type, transfer.data.amount_minor, transfer.data.to_account_id, transfer.data.memo],
      ["transfer.committed", "400", "bank-b/2002", "to carol"],
    );

    // Nobody heard of bob's transfer: he has no endpoint, and it is not carol's or the shop's.
    assert.equal(c.receiver.deliveries.filter((d) => d.objectId === toBob.transactionId).length, 0);
    // Exactly once: every delivery recorded delivered at its first attempt, every event id seen once, every one verified.
    await allDelivered(c, c.shopEndpointId);
    const deliveries = (await c.shopHooks.listDeliveries({ endpointId: c.shopEndpointId, pageSize: 200 })).deliveries;
    assert.ok(
      deliveries.every((d) => d.attempts === 1),
      "one attempt each",
    );
    const ids = c.receiver.deliveries.filter((d) => d.path === SHOP || d.path === CAROL).map((d) => d.eventId);
    assert.equal(new Set(ids).size, ids.length, "no event id twice");
    assert.ok(c.receiver.deliveries.every((d) => d.verified && d.headerEventId === d.eventId));
    await c.stack.assertConserved();
  });

  test("a receiver down for a while gets everything after it comes back, in order per object", async () => {
    await c.receiver.stop();
    const before = c.receiver.deliveries.length;
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) {
      const a = (await c.shop.authorize(authorizeReq(c.card, 500n + BigInt(i)))).authorization!;
      codes.push(a.authCode);
    }
    await c.shop.settleBatch({
      idempotencyKey: randomUUID(),
      items: codes.map((authCode, i) => ({ authCode, amountMinor: 500n + BigInt(i) })),
    });
    for (const code of codes) {
      await c.shop.refund({ idempotencyKey: randomUUID(), authCode: code, amountMinor: 100n });
      await c.shop.refund({ idempotencyKey: randomUUID(), authCode: code, amountMinor: 50n });
    }
    // The gateway is trying, and failing, meanwhile.
    await eventually(async () => {
      const r = await c.shopHooks.listDeliveries({ endpointId: c.shopEndpointId, pageSize: 50 });
      return r.deliveries.some(
        (d) => d.status === WebhookDeliveryStatus.PENDING && d.attempts >= 2 && d.lastError !== "",
      )
        ? true
        : undefined;
    }, "a pending delivery retried");
    assert.equal(c.receiver.deliveries.length, before, "nothing got through while down");

    await c.receiver.start();
    const got = await c.receiver.waitFor(
      SHOP,
      (ds) => codes.every((code) => ofObject(ds, code).filter((d) => d.type === "refund.succeeded").length === 2),
      "every event after the receiver came back",
    );
    for (const code of codes) {
      const mine = ofObject(got, code);
      assert.deepEqual(
        typesOf(mine),
        ["authorization.approved", "capture.succeeded", "refund.succeeded", "refund.succeeded"],
        code,
      );
      assert.deepEqual(
        mine
          .filter((d) => d.type === "refund.succeeded")
          .map((d) => (d.data.authorization as Record<string, unknown>).refunded_minor),
        ["100", "150"],
        "refunds in commit order",
      );
    }
    await allDelivered(c, c.shopEndpointId);
    await c.stack.assertConserved();
  });

  test("a rolled secret: a receiver holding only the old one verifies through the overlap, and not after it", async () => {
    const oldSecret = c.receiver.secrets.get(SHOP)![0]!;
    const rolled = await c.shopHooks.rollSecret({ endpointId: c.shopEndpointId, overlapSeconds: 4n });
    assert.notEqual(rolled.secret, oldSecret);
    const during = (await c.shop.authorize(authorizeReq(c.card, 700n))).authorization!;
    const inOverlap = ofObject(
      await c.receiver.waitFor(SHOP, (ds) => ofObject(ds, during.authCode).length > 0, "the event during the overlap"),
      during.authCode,
    )[0]!;
    assert.equal(inOverlap.v1Count, 2, "signed with both secrets during the overlap");
    await c.shop.void({ authCode: during.authCode });

    // Past the overlap the old secret no longer signs: the old-secret receiver refuses, the gateway retries.
    const overlapEndsMs = timestampMs(rolled.previousExpiresAt!);
    await new Promise((r) => setTimeout(r, Math.max(0, overlapEndsMs - Date.now()) + 100));
    const afterAuth = (await c.shop.authorize(authorizeReq(c.card, 800n))).authorization!;
    await eventually(
      () => (c.receiver.deliveries.some((d) => d.objectId === afterAuth.authCode && !d.verified) ? true : undefined),
      "a delivery signed only with the new secret",
    );
    const refused = c.receiver.deliveries.filter((d) => d.objectId === afterAuth.authCode);
    assert.ok(refused.every((d) => !d.verified && d.v1Count === 1));
    // Given the new secret, the receiver takes the retry.
    c.receiver.secrets.set(SHOP, [rolled.secret]);
    await c.receiver.waitFor(
      SHOP,
      (ds) => ofObject(ds, afterAuth.authCode).length > 0,
      "the retry after the receiver switched",
    );
    await c.shop.void({ authCode: afterAuth.authCode });
    await allDelivered(c, c.shopEndpointId);
    await c.stack.assertConserved();
  });

  test("an endpoint URL outside the allow-list, not https, or with credentials is refused with its reason and creates nothing", async () => {
    const count = async () => (await c.shopHooks.listEndpoints({})).endpoints.length;
    const before = await count();
    await rejectsWith(
      c.shopHooks.createEndpoint({ url: "https://example.com/hooks", eventTypes: ["capture.succeeded"] }),
      Code.PermissionDenied,
      "webhook_host_not_allowed",
    );
    await rejectsWith(
      c.shopHooks.createEndpoint({ url: `http://127.0.0.1:${c.receiver.port}/x`, eventTypes: ["capture.succeeded"] }),
      Code.InvalidArgument,
      "invalid_webhook_url",
    );
    await rejectsWith(
      c.shopHooks.createEndpoint({
        url: `https://user:pw@127.0.0.1:${c.receiver.port}/x`,
        eventTypes: ["capture.succeeded"],
      }),
      Code.InvalidArgument,
      "invalid_webhook_url",
    );
    await rejectsWith(
      c.shopHooks.createEndpoint({ url: c.receiver.url("/typo"), eventTypes: ["capture.succeded"] }),
      Code.InvalidArgument,
      "invalid_event_type",
    );
    assert.equal(await count(), before);
  });

  test("the checkout refuses a tampered body, a wrong secret and an old timestamp; a properly signed post is taken", async () => {
    const [secret] = checkoutSecrets(c);
    assert.ok(secret, "the checkout stored its secret");
    const url = `https://127.0.0.1:${c.webhookPort}/webhooks/paygate`;
    const body = JSON.stringify({
      id: `evt_${randomUUID().replace(/-/g, "").slice(0, 24)}`,
      type: "test.ping",
      created_at: new Date().toISOString(),
      object_id: "ping",
      data: {},
    });
    const now = Math.floor(Date.now() / 1000);
    const post = async (b: string, signature: string) => {
      const { request } = await import("node:https");
      const ca = (await import("node:fs")).readFileSync(join(c.stack.certs, "ca.crt"));
      return new Promise<{ status: number; reason?: string }>((resolve, reject) => {
        const req = request(
          url,
          { method: "POST", ca, headers: { "content-type": "application/json", "paygate-signature": signature } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (x: Buffer) => chunks.push(x));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                reason: (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { reason?: string }).reason,
              }),
            );
          },
        );
        req.on("error", reject);
        req.end(b);
      });
    };
    assert.deepEqual(await post(body.replace("ping", "pong"), signatureHeader([secret], body, now)), {
      status: 400,
      reason: "signature_mismatch",
    });
    assert.deepEqual(await post(body, signatureHeader(["whsec_" + "w".repeat(43)], body, now)), {
      status: 400,
      reason: "signature_mismatch",
    });
    assert.deepEqual(await post(body, signatureHeader([secret], body, now - 3600)), {
      status: 400,
      reason: "timestamp_out_of_tolerance",
    });
    assert.deepEqual(await post(body, signatureHeader([secret], body, now)), { status: 200, reason: undefined });
  });

  test("kill -9 before the send and after the checkout's 2xx: delivered after restart, nothing lost, the duplicate deduped by the checkout", async () => {
    // Only the checkout's endpoint hears the shop now, so the fault strikes on its deliveries.
    await c.shopHooks.deleteEndpoint({ endpointId: c.shopEndpointId });
    const order = await payAtCheckout(c, c.card);
    const settled = await fetch(`${c.stack.checkoutUrl}/settle`, {
      method: "POST",
      headers: { ...merchantAuth, accept: "application/json" },
    });
    assert.equal(settled.status, 200);
    await eventually(
      async () =>
        (await checkoutOrders(c)).find((o) => o.attemptKey === order.attemptKey)?.authStatus === "CAPTURED"
          ? true
          : undefined,
      "the checkout heard the capture",
    );
    // Nothing in flight: the fault below strikes on the refund's delivery, not an earlier one.
    await everythingDelivered(c);

    // 1. Killed after claiming, before sending: the restarted gateway sends it.
    await c.stack.gateway.restart({ PAYGATE_FAULTPOINTS: "gateway.webhook_before_send" });
    const refundKey = randomUUID();
    const refund = () => c.shop.refund({ idempotencyKey: refundKey, authCode: order.authCode, amountMinor: 399n });
    await refund().catch(() => undefined); // the answer may be lost to the kill; the key makes the retry safe
    await c.stack.gateway.waitForExit();
    assert.equal(c.stack.gateway.lastExit?.signal, "SIGKILL");
    await c.stack.gateway.start();
    await refund();
    const refunded = await eventually(async () => {
      const o = (await checkoutOrders(c)).find((x) => x.attemptKey === order.attemptKey);
      return o?.refundedMinor === "399" ? o : undefined;
    }, "the checkout heard the refund after the restart");
    assert.equal(refunded.settleState, "captured");

    // 2. Killed after the checkout answered 2xx, before the gateway recorded it: sent again, same event id, applied once.
    await everythingDelivered(c);
    const linesBefore = c.stack.checkout!.lines.length;
    await c.stack.gateway.restart({ PAYGATE_FAULTPOINTS: "gateway.webhook_after_response" });
    const second = randomUUID();
    const refund2 = () => c.shop.refund({ idempotencyKey: second, authCode: order.authCode, amountMinor: 1_000n });
    await refund2().catch(() => undefined);
    await c.stack.gateway.waitForExit();
    assert.equal(c.stack.gateway.lastExit?.signal, "SIGKILL");
    await c.stack.gateway.start();
    await refund2();
    const storedLine = await eventually(
      () =>
        c.stack
          .checkout!.lines.slice(linesBefore)
          .find(
            (l) =>
              l.msg === "webhook" && l.outcome === "stored" && l.eventType === "refund.succeeded" && l.status === 200,
          ),
      "the second refund stored",
    );
    const eventId = String(storedLine.eventId);
    await eventually(
      () => (checkoutLines(c, eventId).some((l) => l.outcome === "duplicate") ? true : undefined),
      "the redelivery reached the checkout as a duplicate",
    );
    const lines = checkoutLines(c, eventId);
    assert.equal(lines.filter((l) => l.outcome === "stored").length, 1, "applied once");
    assert.equal(storedLine.ordersChanged, 1);
    assert.ok(lines.filter((l) => l.outcome === "duplicate").every((l) => l.ordersChanged === undefined));
    const final = (await checkoutOrders(c)).find((x) => x.attemptKey === order.attemptKey)!;
    assert.deepEqual(
      [final.refundedMinor, final.capturedMinor, final.authStatus],
      ["1399", String(CART_MINOR), "CAPTURED"],
    );
    await everythingDelivered(c);
    await c.stack.assertConserved();
  });

  test("a checkout that lost its secret, started while the gateway is down: the shop serves, registration retries, then rolls the secret and events verify again", async () => {
    await c.stack.checkout!.stop();
    const db = new Database(join(c.stack.dir, "checkout", "checkout.db"));
    db.exec("DELETE FROM webhook_secrets");
    db.close();
    await c.stack.gateway.stop();
    const from = c.stack.checkout!.lines.length;
    await c.stack.checkout!.start();
    const since = (msg: string) => c.stack.checkout!.lines.slice(from).filter((l) => l.msg === msg);
    assert.equal(
      (await fetch(`${c.stack.checkoutUrl}/payment.html`)).status,
      200,
      "the shop serves while registration waits",
    );
    await eventually(
      () => (since("webhook endpoint not registered yet; retrying").length > 0 ? true : undefined),
      "registration retrying",
    );
    await c.stack.gateway.start();
    const registered = await eventually(
      () => since("webhook endpoint registered").at(-1),
      "registration after the gateway came back",
    );
    assert.equal(registered.outcome, "rolled");
    assert.equal(checkoutSecrets(c).length, 1);
    const order = await payAtCheckout(c, c.card);
    await c.shop.void({ authCode: order.authCode });
    await eventually(
      async () =>
        (await checkoutOrders(c)).find((o) => o.attemptKey === order.attemptKey)?.authStatus === "VOIDED"
          ? true
          : undefined,
      "the void heard with the rolled secret",
    );
    await c.stack.assertConserved();
  });

  test("an order the checkout did not void itself shows voided once the webhook says so (no polling)", async () => {
    const order = await payAtCheckout(c, c.card);
    await c.shop.void({ authCode: order.authCode });
    const o = await eventually(async () => {
      const x = (await checkoutOrders(c)).find((y) => y.attemptKey === order.attemptKey);
      return x?.authStatus === "VOIDED" ? x : undefined;
    }, "the checkout heard the void");
    assert.deepEqual([o.settleState, o.settleReason], ["failed", "authorization_voided"]);
    // Its settlement job no longer tries to capture it.
    const run = (await (
      await fetch(`${c.stack.checkoutUrl}/settle`, {
        method: "POST",
        headers: { ...merchantAuth, accept: "application/json" },
      })
    ).json()) as { batches: unknown[] };
    assert.equal(run.batches.length, 0);
    await c.stack.assertConserved();
  });
});
