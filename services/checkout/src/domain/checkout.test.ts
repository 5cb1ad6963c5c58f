// The pay use case against the real SQLite store (in memory) and a scripted
// gateway: at most one authorization per attempt, whatever arrives.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { openCheckoutStore } from "../store/checkout-store.js";
import { createCheckout } from "./checkout.js";
import { DEMO_CART, cartTotalMinor } from "./cart.js";
import type { AuthorizeCommand, AuthorizeResult, CardGateway } from "./ports.js";

const NOW = Date.UTC(2026, 0, 15, 12);
const KEY = "attempt-0000000000000001";
const card = (number = "4242 4242 4242 4242", cvc = "123") => ({
  cardholderName: "Alice Customer",
  cardNumber: number,
  expiry: "04/29",
  cvc,
});

function scriptedGateway(answer: (c: AuthorizeCommand, n: number) => AuthorizeResult | Promise<AuthorizeResult>) {
  const calls: AuthorizeCommand[] = [];
  const gateway: CardGateway = {
    async authorize(c) {
      calls.push(c);
      return answer(c, calls.length);
    },
    async settleBatch() {
      throw new Error("not used");
    },
  };
  return { gateway, calls };
}

function setup(answer: Parameters<typeof scriptedGateway>[0]) {
  const store = openCheckoutStore({ memory: true });
  const { gateway, calls } = scriptedGateway(answer);
  const checkout = createCheckout({
    store,
    gateway,
    cart: DEMO_CART,
    merchantAccountId: "bank-b/2002",
    fingerprintSecret: store.fingerprintSecret(),
    clock: () => NOW,
    retriesMax: 2,
  });
  return { store, checkout, calls };
}

const approved = (): AuthorizeResult => ({
  kind: "approved",
  authCode: "A1B2C3",
  cardLast4: "4242",
  expiresAtMs: null,
});

describe("pay", () => {
  test("approve: the cart's amount, the merchant account, the attempt key and an order reference go to the gateway", async () => {
    const { checkout, calls, store } = setup(approved);
    const r = await checkout.pay({ attemptKey: KEY, card: card() });
    assert.equal(r.kind, "approved");
    assert.equal(calls.length, 1);
    const c = calls[0]!;
    assert.deepEqual(
      {
        key: c.idempotencyKey,
        amount: c.amountMinor,
        currency: c.currency,
        account: c.merchantAccountId,
        ref: c.merchantReference,
        number: c.card.number,
      },
      {
        key: KEY,
        amount: cartTotalMinor(DEMO_CART),
        currency: "USD",
        account: "bank-b/2002",
        ref: "order-attempt00000",
        number: "4242424242424242",
      },
    );
    const o = store.getOrder(KEY)!;
    assert.deepEqual([o.state, o.authCode, o.cardLast4, o.settleState], ["approved", "A1B2C3", "4242", "unsettled"]);
  });

  test("invalid details or a missing key never reach the gateway and do not use up the attempt", async () => {
    const { checkout, calls, store } = setup(approved);
    const r = await checkout.pay({ attemptKey: KEY, card: card("4242 4242 4242 4241") });
    assert.equal(r.kind, "invalid");
    const k = await checkout.pay({ attemptKey: "short", card: card() });
    assert.deepEqual(k.kind === "invalid" && Object.keys(k.errors), ["idempotencyKey"]);
    assert.equal(calls.length, 0);
    assert.equal(store.getOrder(KEY), undefined);
    assert.equal((await checkout.pay({ attemptKey: KEY, card: card() })).kind, "approved");
  });

  test("double submit: two overlapping posts of one attempt authorize once and both see the approval", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { checkout, calls } = setup(async () => {
      await gate;
      return approved();
    });
    const first = checkout.pay({ attemptKey: KEY, card: card() });
    const second = checkout.pay({ attemptKey: KEY, card: card() });
    release();
    const [a, b] = await Promise.all([first, second]);
    assert.equal(calls.length, 1);
    assert.deepEqual([a.kind, b.kind], ["approved", "approved"]);
    assert.deepEqual([a.kind === "approved" && a.duplicate, b.kind === "approved" && b.duplicate], [false, true]);
    // A reload that re-posts later, even with other details, gets the same approval.
    const again = await checkout.pay({ attemptKey: KEY, card: card("5555 5555 5555 4444") });
    assert.equal(again.kind === "approved" && again.order.authCode, "A1B2C3");
    assert.equal(calls.length, 1);
  });

  test("a decline is remembered; other details after it retry under a fresh gateway key, up to retriesMax", async () => {
    const { checkout, calls } = setup((c) =>
      c.card.number === "4242424242424242"
        ? approved()
        : { kind: "declined", reason: "insufficient_funds", message: "no" },
    );
    const d = await checkout.pay({ attemptKey: KEY, card: card("5555 5555 5555 4444") });
    assert.equal(d.kind === "declined" && d.reason, "insufficient_funds");
    const same = await checkout.pay({ attemptKey: KEY, card: card("5555 5555 5555 4444") });
    assert.equal(same.kind === "declined" && same.duplicate, true);
    assert.equal(calls.length, 1);
    const other = await checkout.pay({ attemptKey: KEY, card: card() });
    assert.equal(other.kind, "approved");
    assert.deepEqual(
      calls.map((c) => c.idempotencyKey),
      [KEY, `${KEY}-r1`],
    );
  });

  test("retries after declines are bounded", async () => {
    const { checkout, calls } = setup(() => ({ kind: "declined", reason: "incorrect_cvc", message: "no" }));
    for (const cvc of ["111", "222", "333"]) await checkout.pay({ attemptKey: KEY, card: card(undefined, cvc) });
    const r = await checkout.pay({ attemptKey: KEY, card: card(undefined, "444") });
    assert.equal(r.kind, "too_many_retries");
    assert.equal(calls.length, 3);
  });

  test("no verdict: the same details resend the same key; other details are refused until it resolves", async () => {
    const { checkout, calls, store } = setup((_c, n) =>
      n === 1 ? { kind: "unavailable", reason: "gateway_unreachable", message: "down" } : approved(),
    );
    const u = await checkout.pay({ attemptKey: KEY, card: card() });
    assert.equal(u.kind, "unavailable");
    assert.equal(store.getOrder(KEY)?.state, "unknown");
    const conflict = await checkout.pay({ attemptKey: KEY, card: card("5555 5555 5555 4444") });
    assert.equal(conflict.kind, "conflict");
    assert.equal(calls.length, 1);
    const ok = await checkout.pay({ attemptKey: KEY, card: card() });
    assert.equal(ok.kind, "approved");
    assert.deepEqual(
      calls.map((c) => c.idempotencyKey),
      [KEY, KEY],
    );
  });

  test("too many attempts in flight at once: busy, nothing stored", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const store = openCheckoutStore({ memory: true });
    const { gateway } = scriptedGateway(async () => {
      await gate;
      return approved();
    });
    const checkout = createCheckout({
      store,
      gateway,
      cart: DEMO_CART,
      merchantAccountId: "bank-b/2002",
      fingerprintSecret: Buffer.alloc(32),
      clock: () => NOW,
      inFlightMax: 1,
    });
    const first = checkout.pay({ attemptKey: KEY, card: card() });
    const other = await checkout.pay({ attemptKey: "attempt-0000000000000002", card: card() });
    assert.equal(other.kind, "busy");
    release();
    assert.equal((await first).kind, "approved");
    assert.equal(store.getOrder("attempt-0000000000000002"), undefined);
  });
});
