// A payment as the customer asked for it. Checked here, before it is queued,
// so nothing that the gateway would refuse as malformed ever sits in the queue.
import { checkPositiveAmount, parseCurrency } from "@paygate/money";
import { checkIdempotencyKeyShape, checkMemoShape, isAccountId } from "@paygate/vocab";

export interface PaymentRequest {
  /** The user whose session queued it: the gateway scopes keys by caller, so only they may send it. */
  readonly userId: string;
  readonly fromAccountId: string;
  readonly toAccountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly memo: string;
}

export interface PaymentProblem {
  readonly reason:
    | "invalid_amount"
    | "invalid_currency"
    | "invalid_account_id"
    | "same_account"
    | "memo_too_long"
    | "invalid_memo"
    | "idempotency_key_missing";
  readonly message: string;
}

// The rules are the gateway's own (@paygate/vocab), so a payment that passes here is never refused as malformed.

export function checkPayment(p: PaymentRequest, key: string): PaymentProblem[] {
  const problems: PaymentProblem[] = [];
  if (checkPositiveAmount(p.amountMinor) !== undefined)
    problems.push({ reason: "invalid_amount", message: "amount must be positive and at most 1,000,000,000,000.00" });
  if (parseCurrency(p.currency) === undefined)
    problems.push({
      reason: "invalid_currency",
      message: `currency must be a 3-letter ISO code like USD, got ${JSON.stringify(p.currency)}`,
    });
  for (const [name, id] of [
    ["from", p.fromAccountId],
    ["to", p.toAccountId],
  ] as const) {
    if (!isAccountId(id))
      problems.push({
        reason: "invalid_account_id",
        message: `${name} account ${JSON.stringify(id)} is not an account id like bank-a/1001 (lowercase bank name, "/", up to 12 digits)`,
      });
  }
  if (p.fromAccountId === p.toAccountId)
    problems.push({ reason: "same_account", message: "cannot pay an account from itself" });
  const memo = checkMemoShape(p.memo);
  if (memo) problems.push(memo);
  const keyProblem = checkIdempotencyKeyShape(key);
  if (keyProblem) problems.push({ reason: "idempotency_key_missing", message: keyProblem });
  return problems;
}

/** Same key, same request: a replay. Same key, different request: a mistake the gateway would refuse. */
export function samePayment(a: PaymentRequest, b: PaymentRequest): boolean {
  return (
    a.userId === b.userId &&
    a.fromAccountId === b.fromAccountId &&
    a.toAccountId === b.toAccountId &&
    a.amountMinor === b.amountMinor &&
    a.currency === b.currency &&
    a.memo === b.memo
  );
}
