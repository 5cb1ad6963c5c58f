// Paying for the cart: one checkout attempt per page (its hidden key), at most
// one authorization per attempt however often the form arrives — a
// double-click, a reload that re-posts, two tabs.
//
//   validate -> per-attempt lock -> claim the attempt in the store
//     new                          -> Authorize(key = attempt key)
//     approved                     -> the stored approval (no call)
//     declined, same details       -> the stored decline (no call)
//     declined, other details      -> Authorize(key = attempt key + "-r<n>")
//     pending/unknown, same details-> Authorize again with the same key (the gateway answers from its record)
//     pending/unknown, other details -> refuse: the first try may still be approved
import { createHmac } from "node:crypto";
import {
  ATTEMPT_KEY_PATTERN,
  last4,
  validateCard,
  type CardDetails,
  type CardInput,
  type FieldErrors,
} from "./card.js";
import { cartTotalMinor, type Cart } from "./cart.js";
import type { CardGateway, CheckoutStore, Order } from "./ports.js";

export type PayOutcome =
  | { readonly kind: "invalid"; readonly errors: FieldErrors }
  | { readonly kind: "approved"; readonly order: Order; readonly duplicate: boolean }
  | { readonly kind: "declined"; readonly order: Order; readonly reason: string; readonly duplicate: boolean }
  | { readonly kind: "unavailable"; readonly order: Order; readonly reason: string }
  | { readonly kind: "conflict"; readonly order: Order }
  | { readonly kind: "too_many_retries"; readonly order: Order }
  | { readonly kind: "busy" };

export interface PaymentRequest {
  readonly attemptKey: string;
  readonly card: CardInput;
}

export interface CheckoutDeps {
  readonly store: CheckoutStore;
  readonly gateway: CardGateway;
  readonly cart: Cart;
  readonly merchantAccountId: string;
  /** Keys the fingerprint HMAC: the shop stores no card data, not even a plain hash of it. */
  readonly fingerprintSecret: Buffer;
  readonly clock?: () => number;
  /** Attempts being processed at once; more get "busy" (the shop is overloaded). */
  readonly inFlightMax?: number;
  /** Other details after a decline, per attempt; then the shopper reloads the page. */
  readonly retriesMax?: number;
}

export interface Checkout {
  pay(request: PaymentRequest): Promise<PayOutcome>;
  readonly amountMinor: bigint;
  readonly currency: string;
}

export function orderIdFor(attemptKey: string): string {
  return `order-${attemptKey
    .replace(/[^A-Za-z0-9]/g, "")
    .slice(0, 12)
    .toLowerCase()}`;
}

export function createCheckout(deps: CheckoutDeps): Checkout {
  const clock = deps.clock ?? Date.now;
  const inFlightMax = deps.inFlightMax ?? 256;
  const retriesMax = deps.retriesMax ?? 5;
  const amountMinor = cartTotalMinor(deps.cart);
  const currency = deps.cart.currency;
  // Per-attempt lock: the second copy of a double-submit waits for the first
  // and then reads its stored outcome.
  const locks = new Map<string, Promise<unknown>>();

  const fingerprint = (card: CardDetails): string =>
    createHmac("sha256", deps.fingerprintSecret)
      .update(
        JSON.stringify([
          card.cardholderName,
          card.number,
          card.expMonth,
          card.expYear,
          card.cvc,
          amountMinor.toString(),
          currency,
        ]),
      )
      .digest("hex");

  async function authorize(order: Order, card: CardDetails): Promise<PayOutcome> {
    const r = await deps.gateway.authorize({
      idempotencyKey: order.gatewayKey,
      card,
      amountMinor: order.amountMinor,
      currency: order.currency,
      merchantReference: order.orderId,
      merchantAccountId: deps.merchantAccountId,
    });
    const now = clock();
    switch (r.kind) {
      case "approved":
        return {
          kind: "approved",
          order: deps.store.recordApproved(order.attemptKey, r.authCode, r.cardLast4 || order.cardLast4, now),
          duplicate: false,
        };
      case "declined":
        return {
          kind: "declined",
          order: deps.store.recordDeclined(order.attemptKey, r.reason, now),
          reason: r.reason,
          duplicate: false,
        };
      case "unavailable":
        return {
          kind: "unavailable",
          order: deps.store.recordUnknown(order.attemptKey, r.reason, now),
          reason: r.reason,
        };
    }
  }

  async function payLocked(attemptKey: string, card: CardDetails): Promise<PayOutcome> {
    const fp = fingerprint(card);
    const { created, order } = deps.store.claimOrder({
      attemptKey,
      orderId: orderIdFor(attemptKey),
      fingerprint: fp,
      amountMinor,
      currency,
      cardLast4: last4(card.number),
      cardholderName: card.cardholderName,
      nowMs: clock(),
    });
    if (created) return authorize(order, card);
    const same = order.fingerprint === fp;
    switch (order.state) {
      case "approved":
        return { kind: "approved", order, duplicate: true };
      case "declined": {
        if (same) return { kind: "declined", order, reason: order.reason ?? "", duplicate: true };
        if (order.retries >= retriesMax) return { kind: "too_many_retries", order };
        const retried = deps.store.retryOrder(attemptKey, {
          fingerprint: fp,
          gatewayKey: `${attemptKey}-r${order.retries + 1}`,
          cardLast4: last4(card.number),
          cardholderName: card.cardholderName,
          nowMs: clock(),
        });
        return authorize(retried, card);
      }
      case "pending":
      case "unknown":
        // The first try may be approved at the gateway: only the same details,
        // under the same key, may go again.
        if (!same) return { kind: "conflict", order };
        return authorize(order, card);
    }
  }

  return {
    amountMinor,
    currency,
    async pay(request) {
      if (!ATTEMPT_KEY_PATTERN.test(request.attemptKey)) {
        return {
          kind: "invalid",
          errors: { idempotencyKey: "This payment form has expired. Reload the page and try again." },
        };
      }
      const checked = validateCard(request.card, clock());
      if (!checked.ok) return { kind: "invalid", errors: checked.errors };
      const previous = locks.get(request.attemptKey);
      if (!previous && locks.size >= inFlightMax) return { kind: "busy" };
      const run = (previous ?? Promise.resolve()).then(
        () => payLocked(request.attemptKey, checked.card),
        () => payLocked(request.attemptKey, checked.card),
      );
      locks.set(request.attemptKey, run);
      try {
        return await run;
      } finally {
        if (locks.get(request.attemptKey) === run) locks.delete(request.attemptKey);
      }
    },
  };
}
