// A payment as the customer asked for it. Checked here, before it is queued,
// so nothing that the gateway would refuse as malformed ever sits in the queue.
import { checkPositiveAmount, parseCurrency } from "@paygate/money";

export const MEMO_LENGTH_MAX = 140;
export const IDEMPOTENCY_KEY_LENGTH_MAX = 255;

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
  readonly reason: "invalid_amount" | "invalid_currency" | "invalid_account_id" | "same_account" | "memo_too_long" | "idempotency_key_missing";
  readonly message: string;
}

const ACCOUNT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/;

export function checkPayment(p: PaymentRequest, key: string): PaymentProblem[] {
  const problems: PaymentProblem[] = [];
  if (checkPositiveAmount(p.amountMinor) !== undefined) problems.push({ reason: "invalid_amount", message: "amount must be positive and at most 1,000,000,000,000.00" });
  if (parseCurrency(p.currency) === undefined) problems.push({ reason: "invalid_currency", message: `currency must be a 3-letter ISO code like USD, got ${JSON.stringify(p.currency)}` });
  for (const [name, id] of [["from", p.fromAccountId], ["to", p.toAccountId]] as const) {
    if (!ACCOUNT_ID_PATTERN.test(id)) problems.push({ reason: "invalid_account_id", message: `${name} account ${JSON.stringify(id)} is not an account id like bank-a/1001` });
  }
  if (p.fromAccountId === p.toAccountId) problems.push({ reason: "same_account", message: "cannot pay an account from itself" });
  if ([...p.memo].length > MEMO_LENGTH_MAX) problems.push({ reason: "memo_too_long", message: `memo is at most ${MEMO_LENGTH_MAX} characters` });
  if (key.length === 0 || key.length > IDEMPOTENCY_KEY_LENGTH_MAX) problems.push({ reason: "idempotency_key_missing", message: `idempotency key must be 1-${IDEMPOTENCY_KEY_LENGTH_MAX} characters` });
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
