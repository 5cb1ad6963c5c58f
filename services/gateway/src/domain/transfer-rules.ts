// Checks a Transfer request before anything is stored, and the request's
// fingerprint (what "the same request" means for an idempotency key).
import { createHash } from "node:crypto";
import { AMOUNT_MINOR_MAX, parseCurrency } from "@paygate/money";
import { ACCOUNT_ID_PATTERN, checkIdempotencyKeyShape, checkMemoShape } from "@paygate/vocab";
import { fail, ok, type DirectoryAccount, type Result } from "./model.js";
import type { Directory } from "./ports.js";

export interface TransferRequest {
  readonly idempotencyKey: string;
  readonly fromAccountId: string;
  readonly toAccountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly memo: string;
}

export interface CheckedTransfer extends TransferRequest {
  readonly from: DirectoryAccount;
  readonly to: DirectoryAccount;
  readonly fingerprint: string;
}

export { ACCOUNT_ID_PATTERN, MEMO_LENGTH_MAX } from "@paygate/vocab";

/** One rule for every money-moving key (transfer, deposit, card authorize/settle/refund), checked here at the edge. */
export function checkIdempotencyKey(key: string): Result<string> {
  const problem = checkIdempotencyKeyShape(key);
  return problem === undefined ? ok(key) : fail("idempotency_key_missing", problem, { field: "idempotency_key" });
}

export function checkAmount(amountMinor: bigint): Result<bigint> {
  // int64 values past the safe range still arrive as bigint: the upper bound catches them.
  if (typeof amountMinor !== "bigint" || amountMinor <= 0n || amountMinor > AMOUNT_MINOR_MAX) {
    return fail("invalid_amount", `amount_minor must be in 1..${AMOUNT_MINOR_MAX}`, { field: "amount_minor" });
  }
  return ok(amountMinor);
}

export async function checkTransfer(
  req: TransferRequest,
  callerUserId: string,
  directory: Directory,
): Promise<Result<CheckedTransfer>> {
  const key = checkIdempotencyKey(req.idempotencyKey);
  if (!key.ok) return key;
  for (const [field, id] of [
    ["from_account_id", req.fromAccountId],
    ["to_account_id", req.toAccountId],
  ] as const) {
    if (!ACCOUNT_ID_PATTERN.test(id))
      return fail("invalid_account_id", `${field} must look like "<bank>/<number>"`, { field });
  }
  if (req.fromAccountId === req.toAccountId) return fail("same_account", "from and to are the same account");
  const amount = checkAmount(req.amountMinor);
  if (!amount.ok) return amount;
  if (!parseCurrency(req.currency))
    return fail("invalid_currency", "currency must be three capital letters (ISO 4217)", { field: "currency" });
  const memo = checkPrintable(req.memo, "memo");
  if (!memo.ok) return memo;

  const [from, to] = await Promise.all([directory.find(req.fromAccountId), directory.find(req.toAccountId)]);
  if (!from)
    return fail("account_not_found", `account ${req.fromAccountId} not found`, { account_id: req.fromAccountId });
  if (!to) return fail("account_not_found", `account ${req.toAccountId} not found`, { account_id: req.toAccountId });
  // Ownership before currency: a stranger's account reveals nothing about itself.
  if (from.ownerUserId !== callerUserId)
    return fail("not_account_owner", `you do not own ${req.fromAccountId}`, { account_id: req.fromAccountId });
  if (from.currency !== req.currency || to.currency !== req.currency) {
    return fail("currency_mismatch", "both accounts must hold the transfer's currency");
  }
  return ok({ ...req, from, to, fingerprint: transferFingerprint(req) });
}

/** Free text another person will read (memo, reference, name): no control characters, at most MEMO_LENGTH_MAX. */
export function checkPrintable(text: string, field: string): Result<string> {
  const problem = checkMemoShape(text, field);
  return problem ? fail(problem.reason, problem.message, { field }) : ok(text);
}

/** Hash of the request's canonical fields (not the key itself: the key is the scope). */
export function transferFingerprint(req: TransferRequest): string {
  const canonical = JSON.stringify([
    "transfer.v1",
    req.fromAccountId,
    req.toAccountId,
    req.amountMinor.toString(),
    req.currency,
    req.memo,
  ]);
  return createHash("sha256").update(canonical).digest("base64url");
}
