// What the shopper reads when a payment does not go through. Keyed by the
// gateway's decline code (the ErrorDetail reason), never by message text.
import { CARD_DECLINE_REASONS, retryableReasons, type CardDeclineReason, type Reason } from "@paygate/vocab";

export interface DeclineView {
  readonly title: string;
  readonly message: string;
  /** What helps: fix the details, use another card, or just try again later. */
  readonly next: "fix_details" | "other_card" | "try_later";
}

/** Every card decline the gateway can give (the vocabulary's list). */
export const DECLINE_CODES: readonly CardDeclineReason[] = CARD_DECLINE_REASONS;

/** Answers a shopper can act on: every decline, and two refusals of the details themselves. */
type ShopperAnswer = CardDeclineReason | Extract<Reason, "invalid_argument" | "currency_mismatch">;

const VIEWS: { readonly [R in ShopperAnswer]: DeclineView } = {
  invalid_number: {
    title: "Card number not valid",
    message: "Your card number is not valid. Check the number and try again.",
    next: "fix_details",
  },
  expired_card: {
    title: "Card expired",
    message: "Your card has expired, or the expiry date does not match the card. Check the date or use another card.",
    next: "other_card",
  },
  incorrect_cvc: {
    title: "Security code incorrect",
    message:
      "The security code (CVC) does not match your card. Check the 3 digits on the back of the card and try again.",
    next: "fix_details",
  },
  insufficient_funds: {
    title: "Insufficient funds",
    message: "Your card was declined because there is not enough money available on the account. Use another card.",
    next: "other_card",
  },
  risk_declined: {
    title: "Payment declined by the card issuer",
    message: "Your card issuer declined this payment. Contact your bank or use another card.",
    next: "other_card",
  },
  spend_limit_exceeded: {
    title: "Spending limit reached",
    message: "This payment would go over your card's daily spending limit. Try again tomorrow or use another card.",
    next: "other_card",
  },
  card_not_found: {
    title: "Card not recognised",
    message: "We could not find a card with these details. Check the card number or use another card.",
    next: "fix_details",
  },
  // Not decline codes, but answers a shopper can act on (e.g. an expiry date that is not the card's).
  invalid_argument: {
    title: "Card details not accepted",
    message:
      "Some of the card details were not accepted. Check the card number, expiry date and security code, and try again.",
    next: "fix_details",
  },
  currency_mismatch: {
    title: "Card cannot pay in this currency",
    message: "This card cannot pay in the shop's currency. Use another card.",
    next: "other_card",
  },
};

// Answers that say "no verdict yet": the same details may go through later,
// and the idempotency key makes sending them again safe.
const TRANSIENT: DeclineView = {
  title: "Payment not completed",
  message:
    "We could not reach the payment network just now. You have not been charged twice: submit the same details again in a moment.",
  next: "try_later",
};

const UNKNOWN: DeclineView = {
  title: "Payment not completed",
  message: "The payment could not be completed. You have not been charged. Try again or use another card.",
  next: "other_card",
};

export function describeDecline(reason: string): DeclineView {
  if (Object.hasOwn(VIEWS, reason)) return VIEWS[reason as ShopperAnswer];
  if (reason === "idempotency_key_in_use")
    return {
      ...TRANSIENT,
      message:
        "Your payment is still being processed. Wait a moment, then submit the same details again: you will not be charged twice.",
    };
  if (TRANSIENT_REASONS.has(reason)) return TRANSIENT;
  return UNKNOWN;
}

/** Reasons (the vocabulary's retryable ones, or client-side network outcomes) after which the outcome is not known yet. */
export const TRANSIENT_REASONS: ReadonlySet<string> = new Set([
  ...retryableReasons,
  "gateway_unreachable",
  "timeout",
  "internal",
  "merchant_login_failed",
]);
