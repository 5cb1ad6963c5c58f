// The one error table: every expected failure has a reason, and each reason
// maps to exactly one Connect code. Services raise `rejection(reason, ...)`;
// clients read `errorReason(err)`. Unexpected failures become Internal with
// the cause logged, never sent.
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ErrorDetailSchema } from "@paygate/proto/common";

export const errorTable = {
  // Malformed input: fix the request.
  invalid_argument: Code.InvalidArgument,
  invalid_amount: Code.InvalidArgument,
  invalid_currency: Code.InvalidArgument,
  invalid_account_id: Code.InvalidArgument,
  invalid_txn_id: Code.InvalidArgument,
  memo_too_long: Code.InvalidArgument,
  same_account: Code.InvalidArgument,
  idempotency_key_missing: Code.InvalidArgument,
  idempotency_key_reused: Code.InvalidArgument,
  txn_id_reused: Code.InvalidArgument,
  weak_password: Code.InvalidArgument,
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
  // Who you are.
  unauthenticated: Code.Unauthenticated,
  invalid_credentials: Code.Unauthenticated,
  session_expired: Code.Unauthenticated,
  login_locked: Code.ResourceExhausted,
  permission_denied: Code.PermissionDenied,
  not_account_owner: Code.PermissionDenied,
  peer_not_allowed: Code.PermissionDenied,
  // Retry later with the same idempotency key.
  idempotency_key_in_use: Code.Aborted,
  participant_unavailable: Code.Unavailable,
  participant_timeout: Code.Unavailable,
  shutting_down: Code.Unavailable,
  // The gateway restarted mid-prepare and presumed abort: nothing moved.
  coordinator_restarted: Code.Unavailable,
  internal: Code.Internal,
} as const satisfies Record<string, Code>;

export type Reason = keyof typeof errorTable;

export function isReason(value: string): value is Reason {
  return Object.hasOwn(errorTable, value);
}

/** Reasons after which the same request may succeed later (transient). */
export const retryableReasons: ReadonlySet<Reason> = new Set<Reason>([
  "idempotency_key_in_use",
  "participant_unavailable",
  "participant_timeout",
  "shutting_down",
  "coordinator_restarted",
]);

/** An expected failure as a Connect error carrying a typed ErrorDetail. */
export function rejection(reason: Reason, message: string, metadata: Record<string, string> = {}): ConnectError {
  const detail = create(ErrorDetailSchema, { reason, message, metadata });
  return new ConnectError(message, errorTable[reason], undefined, [{ desc: ErrorDetailSchema, value: detail }]);
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
    return { code: Code.Internal, reason: "internal", message: err instanceof Error ? err.message : String(err), metadata: {} };
  }
  const ce = err;
  const detail = ce.findDetails(ErrorDetailSchema)[0];
  return {
    code: ce.code,
    reason: detail?.reason ?? (ce.code === Code.Internal ? "internal" : Code[ce.code].replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase())),
    message: detail?.message ?? ce.rawMessage,
    metadata: detail?.metadata ?? {},
  };
}

export function errorReason(err: unknown): string {
  return errorInfo(err).reason;
}
