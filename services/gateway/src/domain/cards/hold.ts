// The authorization hold's round and its end (DESIGN.md §6.1, §6.2): a
// one-participant round at the issuing bank, whose decision turns the PENDING
// authorization APPROVED or DECLINED, or (a transient abort) frees its key.
import { assert } from "@paygate/money";
import type { Reason } from "@paygate/vocab";
import type { AuthRecord } from "../cards-ports.js";
import { fail, ok, TRANSIENT_ABORT_REASONS, type DecisionRecord, type Result } from "../model.js";
import type { Leg } from "../ports.js";
import { planByBank, type PreparePlan } from "../rounds/plan.js";
import { must, type CardsContext } from "./context.js";

export function holdPlan(ctx: CardsContext, a: AuthRecord): PreparePlan[] {
  // The bank decides the expiry (its clock, from its prepare); ours began
  // before the prepare, so it is never later than the bank's: we stop
  // capturing no later than the bank releases the hold.
  const hold: Leg = {
    accountId: a.cardAccountId,
    direction: "AUTH_HOLD",
    amountMinor: a.amountMinor,
    currency: a.currency,
    ownerUserId: a.cardOwnerUserId,
    holdId: a.authId,
    holdTtlMs: ctx.authHoldTtlMs,
  };
  return planByBank([{ bank: a.cardBank, leg: hold }]);
}

export function declined(a: AuthRecord): Result<AuthRecord> {
  assert(a.status === "DECLINED", "only a declined authorization declines");
  assert(a.declineReason !== "", "a declined authorization has a reason");
  const meta: Record<string, string> = a.riskRule !== "" ? { risk_rule: a.riskRule } : {};
  return fail(a.declineReason as Reason, `card declined: ${a.declineReason}`, meta);
}

/** The authorization as it now stands, after someone else (a retry, a takeover) finished its hold round first. */
function finishedElsewhere(a: AuthRecord | undefined, d: DecisionRecord): Result<AuthRecord> {
  if (!a) {
    // Only a retry after a transient abort deletes a PENDING row.
    assert(d.decision === "ABORT", "an approved authorization is never deleted");
    return fail(
      d.reason as Reason,
      "the issuing bank could not be reached; nothing was held; retry with the same idempotency key",
    );
  }
  if (a.status === "DECLINED") return declined(a);
  return ok(a);
}

/** Applies the hold round's decision to the PENDING authorization (once: a second applier finds it finished). */
export async function finishHold(ctx: CardsContext, authId: string, d: DecisionRecord): Promise<Result<AuthRecord>> {
  const { store, rounds, clock, logger } = ctx;
  const nowMs = clock.nowMs();
  const auth = await store.authById(authId);
  if (!auth || auth.status !== "PENDING") return finishedElsewhere(auth, d);
  assert(auth.holdTxnId === d.txnId, "the hold round belongs to this pending authorization");
  const id = `${d.txnId}/hold`;
  if (d.decision === "COMMIT") {
    if (!(await store.updateAuth(authId, { status: "PENDING" }, { status: "APPROVED" }, nowMs, id)))
      return finishedElsewhere(await store.authById(authId), d);
    logger.info(
      { authCode: auth.authCode, cardLast4: auth.cardLast4, transactionId: d.txnId },
      "authorization approved",
    );
    return ok(must(await store.authById(authId)));
  }
  if (TRANSIENT_ABORT_REASONS.has(d.reason)) {
    // The key may try again, but only once the Abort has released this
    // round's hold (else the retry meets it: insufficient_funds, for good).
    // Until then the row stays PENDING and no longer counts as spend.
    await store.updateAuth(authId, { status: "PENDING" }, { riskApproved: false }, nowMs, id);
    if (await rounds.abortDelivered(d.txnId)) await store.deleteAuth(authId);
    return fail(
      d.reason as Reason,
      "the issuing bank could not be reached; nothing was held; retry with the same idempotency key",
    );
  }
  if (
    !(await store.updateAuth(
      authId,
      { status: "PENDING" },
      { status: "DECLINED", declineReason: d.reason || "internal" },
      nowMs,
      id,
    ))
  ) {
    return finishedElsewhere(await store.authById(authId), d);
  }
  logger.info(
    { authCode: auth.authCode, cardLast4: auth.cardLast4, transactionId: d.txnId, reason: d.reason },
    "authorization declined by the issuing bank",
  );
  return declined(must(await store.authById(authId)));
}
