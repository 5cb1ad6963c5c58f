// Capture one settlement item (DESIGN.md §6.3): a two-participant round (the
// issuing bank turns the hold into a debit, the merchant's bank credits). Only
// a business reason is the item's last word; a transient failure is answered
// but retried when the batch is sent again.
import { AMOUNT_MINOR_MAX } from "@paygate/money";
import type { Reason } from "@paygate/vocab";
import type { BatchItemRecord } from "../cards-ports.js";
import { visibleAuth, type CardsContext } from "./context.js";
import { expireIfDue } from "./expire.js";
import { runOperation } from "./operation.js";

export interface SettleItemResult {
  readonly authCode: string;
  readonly status: "CAPTURED" | "FAILED";
  readonly reason: string;
  readonly capturedMinor: bigint;
  readonly txnId: string;
  /**
   * False for a failure that may pass later (a bank unreachable, the hold
   * busy): not stored as the item's result, so sending the batch again retries it.
   */
  readonly final: boolean;
}

/**
 * A capture that failed for one of these is the item's last word: the
 * authorization itself says no. Anything else (a bank unreachable, the hold
 * busy with another round, a restart) may pass later and is retried.
 */
export const CAPTURE_FINAL_REASONS: ReadonlySet<string> = new Set([
  "invalid_amount",
  "authorization_not_found",
  "already_captured",
  "authorization_voided",
  "authorization_expired",
  "amount_exceeds_authorization",
  "hold_not_found",
  "currency_mismatch",
  "account_not_found",
  "account_closed",
  "balance_limit_exceeded",
]);

function failedItem(ctx: CardsContext, authCode: string, reason: Reason): SettleItemResult {
  const finalReasons = ctx.captureFinalReasons ?? CAPTURE_FINAL_REASONS;
  return { authCode, status: "FAILED", reason, capturedMinor: 0n, txnId: "", final: finalReasons.has(reason) };
}

export async function captureItem(
  ctx: CardsContext,
  merchantUserId: string,
  batchId: string,
  item: BatchItemRecord,
): Promise<SettleItemResult> {
  if (item.amountMinor <= 0n || item.amountMinor > AMOUNT_MINOR_MAX)
    return failedItem(ctx, item.authCode, "invalid_amount");
  const a = await visibleAuth(ctx, merchantUserId, item.authCode);
  if (!a) return failedItem(ctx, item.authCode, "authorization_not_found");
  if (a.status === "CAPTURED") {
    // Captured by this very item before a crash cut the batch short: report it as captured.
    if (a.captureBatchId === batchId && a.captureItemIndex === item.index)
      return {
        authCode: a.authCode,
        status: "CAPTURED",
        reason: "",
        capturedMinor: a.capturedMinor,
        txnId: a.captureTxnId,
        final: true,
      };
    return failedItem(ctx, a.authCode, "already_captured");
  }
  if (a.status === "VOIDED") return failedItem(ctx, a.authCode, "authorization_voided");
  if (a.status === "EXPIRED" || (await expireIfDue(ctx, a)))
    return failedItem(ctx, a.authCode, "authorization_expired");
  if (item.amountMinor > a.amountMinor) return failedItem(ctx, a.authCode, "amount_exceeds_authorization");
  const run = await runOperation(ctx, a, {
    kind: "capture",
    amountMinor: item.amountMinor,
    batchId,
    itemIndex: item.index,
  });
  // Another capture or void of it is in flight (e.g. a second batch naming the same code): retry later.
  if (!run) return failedItem(ctx, a.authCode, "idempotency_key_in_use");
  const { txnId, decision: d, after } = run;
  if (d.decision === "COMMIT") {
    ctx.logger.info(
      {
        authCode: a.authCode,
        cardLast4: a.cardLast4,
        batchId,
        transactionId: txnId,
        capturedMinor: item.amountMinor.toString(),
      },
      "authorization captured",
    );
    return {
      authCode: a.authCode,
      status: "CAPTURED",
      reason: "",
      capturedMinor: after.capturedMinor,
      txnId,
      final: true,
    };
  }
  return { ...failedItem(ctx, a.authCode, (d.reason || "internal") as Reason), txnId };
}
