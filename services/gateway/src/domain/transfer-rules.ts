// Checks a Transfer request before anything is stored, and the request's
// fingerprint (what "the same request" means for an idempotency key).
import { createHash } from "node:crypto";
import { AMOUNT_MINOR_MAX, parseCurrency } from "@paygate/money";
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

export const ACCOUNT_ID_PATTERN = /^[a-z][a-z0-9-]{0,30}\/\d{1,12}$/;
export const IDEMPOTENCY_KEY_LENGTH_MAX = 255;
export const MEMO_LENGTH_MAX = 140;
// Printable ASCII: keys end up in logs and Redis keys, so no control characters.
const KEY_PATTERN = /^[\x20-\x7e]+$/;

/** Shape checks shared with Deposit. */
export function checkIdempotencyKey(key: string): Result<string> {
  if (key.trim() === "") return fail("idempotency_key_missing", "idempotency_key is required (reuse it on every retry)");
  if (key.length > IDEMPOTENCY_KEY_LENGTH_MAX || !KEY_PATTERN.test(key)) {
    return fail("idempotency_key_missing", `idempotency_key must be 1-${IDEMPOTENCY_KEY_LENGTH_MAX} printable ASCII characters`);
  }
  return ok(key);
}

export function checkAmount(amountMinor: bigint): Result<bigint> {
  // int64 values past the safe range still arrive as bigint: the upper bound catches them.
  if (typeof amountMinor !== "bigint" || amountMinor <= 0n || amountMinor > AMOUNT_MINOR_MAX) {
    return fail("invalid_amount", `amount_minor must be in 1..${AMOUNT_MINOR_MAX}`, { field: "amount_minor" });
  }
  return ok(amountMinor);
}

export function checkTransfer(req: TransferRequest, callerUserId: string, directory: Directory): Result<CheckedTransfer> {
  const key = checkIdempotencyKey(req.idempotencyKey);
  if (!key.ok) return key;
  for (const [field, id] of [["from_account_id", req.fromAccountId], ["to_account_id", req.toAccountId]] as const) {
    if (!ACCOUNT_ID_PATTERN.test(id)) return fail("invalid_account_id", `${field} must look like "<bank>/<number>"`, { field });
  }
  if (req.fromAccountId === req.toAccountId) return fail("same_account", "from and to are the same account");
  const amount = checkAmount(req.amountMinor);
  if (!amount.ok) return amount;
  if (!parseCurrency(req.currency)) return fail("invalid_currency", "currency must be three capital letters (ISO 4217)", { field: "currency" });
  if ([...req.memo].length > MEMO_LENGTH_MAX) return fail("memo_too_long", `memo must be at most ${MEMO_LENGTH_MAX} characters`, { field: "memo" });

  const from = directory.find(req.fromAccountId);
  if (!from) return fail("account_not_found", `account ${req.fromAccountId} not found`, { account_id: req.fromAccountId });
  const to = directory.find(req.toAccountId);
  if (!to) return fail("account_not_found", `account ${req.toAccountId} not found`, { account_id: req.toAccountId });
  // Ownership before currency: a stranger's account reveals nothing about itself.
  if (from.ownerUserId !== callerUserId) return fail("not_account_owner", `you do not own ${req.fromAccountId}`, { account_id: req.fromAccountId });
  if (from.currency !== req.currency || to.currency !== req.currency) {
    return fail("currency_mismatch", "both accounts must hold the transfer's currency");
  }
  return ok({ ...req, from, to, fingerprint: transferFingerprint(req) });
}

/** Hash of the request's canonical fields (not the key itself: the key is the scope). */
export function transferFingerprint(req: TransferRequest): string {
  const canonical = JSON.stringify(["transfer.v1", req.fromAccountId, req.toAccountId, req.amountMinor.toString(), req.currency, req.memo]);
  return createHash("sha256").update(canonical).digest("base64url");
}
