// Refund (DESIGN.md §6.4): money goes back from the merchant to the card's
// account in a round of its own. Its amount is reserved on the authorization
// when the refund starts (one store step that checks and reserves), so
// concurrent refunds on any replica never add up to more than captured.
// Exactly once per (merchant, key); a transient abort frees the key once its
// Abort released the round's debit hold (§3.7).
import { randomUUID } from "node:crypto";
import { assert } from "@paygate/money";
import type { Reason } from "@paygate/vocab";
import type { AuthRecord, RefundRecord } from "../cards-ports.js";
import { fail, ok, TRANSIENT_ABORT_REASONS, type DecisionRecord, type Result } from "../model.js";
import type { Leg } from "../ports.js";
import { movePlan, type PreparePlan } from "../rounds/plan.js";
import { checkAmount, checkIdempotencyKey } from "../transfer-rules.js";
import {
  fingerprintOf,
  INSERT_ATTEMPTS_MAX,
  must,
  merchantAuth,
  type CardOutcome,
  type CardsContext,
} from "./context.js";

export interface Refunded {
  readonly refund: RefundRecord;
  readonly authorization: AuthRecord;
}

/** The merchant's account is debited, the card's account credited. */
export function refundPlan(a: AuthRecord, amountMinor: bigint): PreparePlan[] {
  const debit: Leg = {
    accountId: a.merchantAccountId,
    direction: "DEBIT",
    amountMinor,
    currency: a.currency,
    ownerUserId: a.merchantUserId,
  };
  return movePlan({ bank: a.merchantBank, leg: debit }, { bank: a.cardBank, accountId: a.cardAccountId });
}

async function replayRefund(ctx: CardsContext, r: RefundRecord, fingerprint: string): Promise<Result<Refunded>> {
  if (r.fingerprint !== fingerprint)
    return fail("idempotency_key_reused", "this idempotency key was used for a different refund");
  if (r.status === "PENDING")
    return fail("idempotency_key_in_use", "this refund is still in progress; retry with the same key", {
      refund_id: r.refundId,
    });
  if (r.status === "FAILED") return fail(r.reason as Reason, `refund failed: ${r.reason}`, { refund_id: r.refundId });
  return ok({ refund: r, authorization: must(await ctx.store.authById(r.authId)) });
}

/** Applies a refund's decided round: the reservation becomes a refund, or goes. */
export async function finishRefund(ctx: CardsContext, refundId: string, d: DecisionRecord): Promise<Result<Refunded>> {
  const { store, rounds } = ctx;
  const nowMs = ctx.clock.nowMs();
  const r = await store.refundById(refundId);
  // Finished elsewhere meanwhile (a takeover, a retry clearing a transient abort): report what it became.
  if (!r) {
    assert(d.decision === "ABORT", "only a transiently aborted refund is deleted");
    return fail(
      (d.reason || "internal") as Reason,
      "a bank could not be reached; nothing moved; retry with the same idempotency key",
    );
  }
  if (r.status !== "PENDING") return replayRefund(ctx, r, r.fingerprint);
  assert(r.txnId === d.txnId, "the round is this refund's");
  if (d.decision === "COMMIT") {
    await store.finishRefund(refundId, { status: "COMMITTED" }, nowMs);
    return ok({ refund: must(await store.refundById(refundId)), authorization: must(await store.authById(r.authId)) });
  }
  const reason = (d.reason || "internal") as Reason;
  if (TRANSIENT_ABORT_REASONS.has(reason)) {
    // Nothing moved: the key may try again, once the Abort released this round's debit hold.
    if (await rounds.abortDelivered(d.txnId)) await store.finishRefund(refundId, { status: "RETRY" }, nowMs);
    return fail(reason, "a bank could not be reached; nothing moved; retry with the same idempotency key");
  }
  await store.finishRefund(refundId, { status: "FAILED", reason }, nowMs);
  return fail(reason, `refund failed: ${reason}`, { refund_id: refundId });
}

/** A PENDING refund left by a transient abort whose Abort has now been delivered: gone, so the key may try again. */
async function clearAbortedRefund(ctx: CardsContext, r: RefundRecord): Promise<boolean> {
  const { rounds } = ctx;
  if (r.status !== "PENDING" || rounds.isRunning(r.txnId)) return false;
  const d = await rounds.decisionOf(r.txnId);
  if (d?.decision !== "ABORT" || !TRANSIENT_ABORT_REASONS.has(d.reason) || !(await rounds.abortDelivered(r.txnId)))
    return false;
  await ctx.store.finishRefund(r.refundId, { status: "RETRY" }, ctx.clock.nowMs());
  return true;
}

export async function refund(
  ctx: CardsContext,
  merchantUserId: string,
  idempotencyKey: string,
  authCode: string,
  amountMinor: bigint,
): Promise<CardOutcome<Refunded>> {
  const { store, rounds, clock } = ctx;
  const key = checkIdempotencyKey(idempotencyKey);
  if (!key.ok) return { result: key, replayed: false };
  const amount = checkAmount(amountMinor);
  if (!amount.ok) return { result: amount, replayed: false };
  const fingerprint = fingerprintOf(["refund.v1", authCode, amountMinor]);
  for (let attempt = 0; attempt < INSERT_ATTEMPTS_MAX; attempt++) {
    const existing = await store.refundByKey(merchantUserId, idempotencyKey);
    if (existing) {
      if (existing.fingerprint === fingerprint && (await clearAbortedRefund(ctx, existing))) continue;
      return { result: await replayRefund(ctx, existing, fingerprint), replayed: true, authCode };
    }
    const found = await merchantAuth(ctx, merchantUserId, authCode);
    if (!found.ok) return { result: found, replayed: false };
    const a = found.value;
    if (a.status !== "CAPTURED")
      return { result: fail("not_captured", "only a captured authorization can be refunded"), replayed: false };
    const r: RefundRecord = {
      refundId: `refund_${randomUUID()}`,
      merchantUserId,
      idempotencyKey,
      fingerprint,
      authId: a.authId,
      amountMinor,
      txnId: rounds.newTxnId(),
      status: "PENDING",
      reason: "",
      createdAtMs: clock.nowMs(),
    };
    // Check and reserve in one step: concurrent refunds (on any replica) see each other's reservations.
    const started = await store.startRefund(r, clock.nowMs());
    if (!started.started) {
      if ("existing" in started) continue; // a concurrent request with this key got in first
      const refundable = started.refundableMinor;
      return {
        result: fail("refund_exceeds_capture", `at most ${refundable} can be refunded now`, {
          refundable_minor: refundable.toString(),
        }),
        replayed: false,
      };
    }
    const d = await rounds.runRound(r.txnId, "refund", refundPlan(a, amountMinor));
    const result = await finishRefund(ctx, r.refundId, d);
    if (result.ok)
      ctx.logger.info(
        {
          authCode,
          cardLast4: a.cardLast4,
          refundId: r.refundId,
          transactionId: d.txnId,
          amountMinor: amountMinor.toString(),
        },
        "refund committed",
      );
    return { result, replayed: false, authCode, cardLast4: a.cardLast4 };
  }
  return {
    result: fail("idempotency_key_in_use", "this refund is still in progress; retry with the same key"),
    replayed: true,
    authCode,
  };
}
