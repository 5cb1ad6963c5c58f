// Every reason a paygate service may give for an expected failure, and what
// the caller may do about it. The wire code of each reason lives in
// @paygate/rpc's error table (which must name every reason here); this file
// stays free of Connect so domains and clients can branch on reasons alone.
//
//   final      the same request gets the same answer: fix it, or accept the no
//   retryable  nothing is decided yet: the same request (same idempotency key)
//              may succeed later, and resending it is safe
//   unknown    the server failed unexpectedly and did not say what happened;
//              a resend under the same key is safe and finds out

export type ReasonClass = "final" | "retryable" | "unknown";

export const reasonClasses = {
  // Malformed input: fix the request.
  invalid_argument: "final",
  invalid_amount: "final",
  invalid_currency: "final",
  invalid_account_id: "final",
  invalid_txn_id: "final",
  memo_too_long: "final",
  // Control characters or terminal escapes in a memo or reference.
  invalid_memo: "final",
  same_account: "final",
  idempotency_key_missing: "final",
  idempotency_key_reused: "final",
  txn_id_reused: "final",
  weak_password: "final",
  // Sign-up (and admin CreateUser): the username's shape, a password on the
  // built-in list of common ones, a display name too long or unprintable.
  invalid_username: "final",
  common_password: "final",
  invalid_display_name: "final",
  // State of the world says no.
  insufficient_funds: "final",
  currency_mismatch: "final",
  account_closed: "final",
  txn_aborted: "final",
  txn_committed: "final",
  unknown_txn: "final",
  account_not_found: "final",
  bank_not_found: "final",
  user_not_found: "final",
  transaction_not_found: "final",
  already_exists: "final",
  username_taken: "final",
  // Linking a bank account (DESIGN.md §11): the bank could not verify the
  // account, the holder's name and the code together. An unknown account
  // answers exactly the same, so a stranger learns nothing from it.
  link_failed: "final",
  // Too many failed attempts on this account (counted durably by the bank):
  // linking waits for a new code from the bank.
  link_locked: "final",
  // The account belongs to another user (only someone holding a valid code learns this).
  already_linked: "final",
  // A credit would take an account past the balance maximum.
  balance_limit_exceeded: "final",
  // Card declines (the decline code is the reason) and card life-cycle refusals.
  invalid_number: "final",
  expired_card: "final",
  incorrect_cvc: "final",
  risk_declined: "final",
  spend_limit_exceeded: "final",
  card_not_found: "final",
  authorization_not_found: "final",
  authorization_expired: "final",
  authorization_voided: "final",
  already_captured: "final",
  not_captured: "final",
  amount_exceeds_authorization: "final",
  refund_exceeds_capture: "final",
  hold_not_found: "final",
  // A capture or void of this hold is already prepared at the bank; retry once it is decided.
  hold_in_use: "retryable",
  bureau_unavailable: "retryable",
  // Webhooks (DESIGN.md §12): an endpoint URL that is not https, carries
  // credentials or a fragment, or is too long; a host the gateway's allow-list
  // does not admit (WEBHOOK_ALLOWED_HOSTS); an event type not in the list; the
  // caller's endpoint limit. Another user's endpoint or delivery answers
  // exactly like an unknown one (endpoint_not_found / delivery_not_found).
  invalid_webhook_url: "final",
  webhook_host_not_allowed: "final",
  invalid_event_type: "final",
  too_many_endpoints: "final",
  endpoint_not_found: "final",
  delivery_not_found: "final",
  // Who you are.
  unauthenticated: "final",
  invalid_credentials: "final",
  session_expired: "final",
  login_locked: "final",
  // Too many requests of this kind from this client (sign-up) or user
  // (linking): like login_locked, waiting is the fix; metadata retry_after_ms says how long.
  rate_limited: "final",
  permission_denied: "final",
  not_account_owner: "final",
  peer_not_allowed: "final",
  // A bank asked about a transaction it takes no part in.
  not_participant: "final",
  // Another request with this idempotency key is still running.
  idempotency_key_in_use: "retryable",
  participant_unavailable: "retryable",
  participant_timeout: "retryable",
  shutting_down: "retryable",
  // The gateway restarted mid-prepare and presumed abort: nothing moved.
  coordinator_restarted: "retryable",
  // The gateway's store (PostgreSQL) cannot be reached; nothing acknowledged is lost.
  store_unavailable: "retryable",
  internal: "unknown",
} as const satisfies Record<string, ReasonClass>;

export type Reason = keyof typeof reasonClasses;

export const REASONS: readonly Reason[] = Object.keys(reasonClasses) as Reason[];

export function isReason(value: string): value is Reason {
  return Object.hasOwn(reasonClasses, value);
}

/** The class of a reason; anything not in the vocabulary (a newer peer's reason) counts as unknown. */
export function reasonClass(reason: string): ReasonClass {
  return isReason(reason) ? reasonClasses[reason] : "unknown";
}

/** Reasons after which the same request may succeed later (transient). */
export const retryableReasons: ReadonlySet<Reason> = new Set(REASONS.filter((r) => reasonClasses[r] === "retryable"));

export function isRetryableReason(reason: string): boolean {
  return reasonClass(reason) === "retryable";
}

/**
 * The card declines: the reason of a DECLINED authorization (risk rule, card
 * checks, the issuing bank's NO). A shopper-facing view exists for each one
 * (the checkout's declines.ts is typed by this list, so a new decline does
 * not compile without its view).
 */
export const CARD_DECLINE_REASONS = [
  "invalid_number",
  "expired_card",
  "incorrect_cvc",
  "insufficient_funds",
  "risk_declined",
  "spend_limit_exceeded",
  "card_not_found",
] as const satisfies readonly Reason[];

export type CardDeclineReason = (typeof CARD_DECLINE_REASONS)[number];
