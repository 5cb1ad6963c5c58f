// The one error table: every reason of the shared vocabulary (@paygate/vocab)
// maps to exactly one Connect code. Services raise `rejection(reason, ...)`;
// clients read `errorReason(err)`. Unexpected failures become Internal with
// the cause logged, never sent (see internalError).
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ErrorDetailSchema } from "@paygate/proto/common";
import type { Reason } from "@paygate/vocab";

// Re-exported so `import { type Reason, retryableReasons } from "@paygate/rpc"` keeps working.
export { isReason, retryableReasons, type Reason } from "@paygate/vocab";

// `satisfies Record<Reason, Code>`: a reason added to the vocabulary does not
// compile until it has a code here, and a code for an unknown reason does not either.
export const errorTable = {
  // Malformed input: fix the request.
  invalid_argument: Code.InvalidArgument,
  invalid_amount: Code.InvalidArgument,
  invalid_currency: Code.InvalidArgument,
  invalid_account_id: Code.InvalidArgument,
  invalid_txn_id: Code.InvalidArgument,
  memo_too_long: Code.InvalidArgument,
  // Control characters or terminal escapes in a memo or reference.
  invalid_memo: Code.InvalidArgument,
  same_account: Code.InvalidArgument,
  idempotency_key_missing: Code.InvalidArgument,
  idempotency_key_reused: Code.InvalidArgument,
  txn_id_reused: Code.InvalidArgument,
  weak_password: Code.InvalidArgument,
  // Sign-up (and admin CreateUser).
  invalid_username: Code.InvalidArgument,
  common_password: Code.InvalidArgument,
  invalid_display_name: Code.InvalidArgument,
  // State of the world says no.
  insufficient_funds: Code.FailedPrecondition,
  currency_mismatch: Code.FailedPrecondition,
  account_closed: Code.FailedPrecondition,
  txn_aborted: Code.FailedPrecondition,
  txn_committed: Code.FailedPrecondition,
  unknown_txn: Code.FailedPrecondition,
  account_not_found: Code.NotFound,
  bank_not_found: Code.NotFound,
  user_not_found: Code.NotFound,
  transaction_not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  username_taken: Code.AlreadyExists,
  // Linking: an unknown account answers as a wrong code does.
  link_failed: Code.FailedPrecondition,
  link_locked: Code.ResourceExhausted,
  already_linked: Code.AlreadyExists,
  // Card declines (the decline code is the reason) and card life-cycle refusals.
  invalid_number: Code.InvalidArgument,
  expired_card: Code.FailedPrecondition,
  incorrect_cvc: Code.FailedPrecondition,
  risk_declined: Code.FailedPrecondition,
  spend_limit_exceeded: Code.FailedPrecondition,
  card_not_found: Code.NotFound,
  authorization_not_found: Code.NotFound,
  authorization_expired: Code.FailedPrecondition,
  authorization_voided: Code.FailedPrecondition,
  already_captured: Code.FailedPrecondition,
  not_captured: Code.FailedPrecondition,
  amount_exceeds_authorization: Code.FailedPrecondition,
  refund_exceeds_capture: Code.FailedPrecondition,
  hold_not_found: Code.NotFound,
  // A capture or void of this hold is already prepared at the bank; retry once it is decided.
  hold_in_use: Code.Aborted,
  bureau_unavailable: Code.Unavailable,
  // Webhook endpoints and their delivery log.
  invalid_webhook_url: Code.InvalidArgument,
  webhook_host_not_allowed: Code.PermissionDenied,
  invalid_event_type: Code.InvalidArgument,
  too_many_endpoints: Code.ResourceExhausted,
  endpoint_not_found: Code.NotFound,
  delivery_not_found: Code.NotFound,
  // Who you are.
  unauthenticated: Code.Unauthenticated,
  invalid_credentials: Code.Unauthenticated,
  session_expired: Code.Unauthenticated,
  login_locked: Code.ResourceExhausted,
  rate_limited: Code.ResourceExhausted,
  permission_denied: Code.PermissionDenied,
  not_account_owner: Code.PermissionDenied,
  peer_not_allowed: Code.PermissionDenied,
  // A bank asked about a transaction it takes no part in.
  not_participant: Code.PermissionDenied,
  // Retry later with the same idempotency key.
  idempotency_key_in_use: Code.Aborted,
  participant_unavailable: Code.Unavailable,
  participant_timeout: Code.Unavailable,
  shutting_down: Code.Unavailable,
  // The gateway restarted mid-prepare and presumed abort: nothing moved.
  coordinator_restarted: Code.Unavailable,
  // The gateway's store (PostgreSQL) cannot be reached; nothing acknowledged is lost.
  store_unavailable: Code.Unavailable,
  // A credit would take an account past the balance maximum.
  balance_limit_exceeded: Code.FailedPrecondition,
  internal: Code.Internal,
} as const satisfies Record<Reason, Code>;

/** An expected failure as a Connect error carrying a typed ErrorDetail. */
export function rejection(reason: Reason, message: string, metadata: Record<string, string> = {}): ConnectError {
  const detail = create(ErrorDetailSchema, { reason, message, metadata });
  return new ConnectError(message, errorTable[reason], undefined, [{ desc: ErrorDetailSchema, value: detail }]);
}

/**
 * What a caller sees of an unexpected failure: Internal, a generic message,
 * and the id under which the server logged the cause (so a report can be
 * matched to the log line without the cause ever leaving the server).
 */
export function internalError(correlationId: string): ConnectError {
  return rejection("internal", `internal error (correlation id ${correlationId})`, { correlation_id: correlationId });
}

// Without a detail, only these are answers in their own right: the call's own
// deadline or cancellation, and a method this server does not implement.
// connect-es gives them fixed messages that reveal nothing.
const DETAILLESS_ANSWER_CODES: ReadonlySet<Code> = new Set([Code.Canceled, Code.DeadlineExceeded, Code.Unimplemented]);

/**
 * Whether an error thrown by a handler may go to the caller as it is: one we
 * raised (it carries an ErrorDetail, rejection()) or one of the detail-less
 * answers above. Anything else (a TypeError, a SQLite error, another
 * service's unhandled ConnectError with its host names) is unexpected.
 */
export function isExpectedError(err: unknown): err is ConnectError {
  if (!(err instanceof ConnectError)) return false;
  return err.findDetails(ErrorDetailSchema).length > 0 || DETAILLESS_ANSWER_CODES.has(err.code);
}

export interface ErrorInfo {
  readonly code: Code;
  readonly reason: string;
  readonly message: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Reads the typed detail off any error; non-Connect errors count as "internal". */
export function errorInfo(err: unknown): ErrorInfo {
  if (!(err instanceof ConnectError)) {
    return {
      code: Code.Internal,
      reason: "internal",
      message: err instanceof Error ? err.message : String(err),
      metadata: {},
    };
  }
  const ce = err;
  const detail = ce.findDetails(ErrorDetailSchema)[0];
  return {
    code: ce.code,
    reason:
      detail?.reason ??
      (ce.code === Code.Internal
        ? "internal"
        : Code[ce.code].replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase())),
    message: detail?.message ?? ce.rawMessage,
    metadata: detail?.metadata ?? {},
  };
}

export function errorReason(err: unknown): string {
  return errorInfo(err).reason;
}
