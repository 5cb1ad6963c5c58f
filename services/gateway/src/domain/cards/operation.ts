// A capture or a void: one operation at a time on an APPROVED authorization's
// hold (DESIGN.md §6.3, §6.4). The operation is locked on the authorization
// with its round's txn id before the round starts (§6.5), so a replica that
// restarts or takes over settles an interrupted one from the round's decision;
// applying that decision is a compare-and-set a second applier finds done.
import { assert } from "@paygate/money";
import type { AuthChange, AuthOperation, AuthRecord } from "../cards-ports.js";
import type { DecisionRecord } from "../model.js";
import type { Leg } from "../ports.js";
import { movePlan, planByBank, type PreparePlan } from "../rounds/plan.js";
import { must, type CardsContext } from "./context.js";

/** What an operation locks on the authorization besides its txn id. */
export type OperationLock = Omit<AuthOperation, "txnId">;

const CLEAR_OP: AuthChange = { op: null };

/** Capture: the issuing bank turns (part of) the hold into a debit, the merchant's bank credits. */
export function capturePlan(a: AuthRecord, amountMinor: bigint): PreparePlan[] {
  const capture: Leg = {
    accountId: a.cardAccountId,
    direction: "CAPTURE",
    amountMinor,
    currency: a.currency,
    ownerUserId: "",
    holdId: a.authId,
  };
  return movePlan({ bank: a.cardBank, leg: capture }, { bank: a.merchantBank, accountId: a.merchantAccountId });
}

/** Void: the issuing bank releases the hold. */
export function releasePlan(a: AuthRecord): PreparePlan[] {
  const release: Leg = {
    accountId: a.cardAccountId,
    direction: "RELEASE",
    amountMinor: a.amountMinor,
    currency: a.currency,
    ownerUserId: "",
    holdId: a.authId,
  };
  return planByBank([{ bank: a.cardBank, leg: release }]);
}

/** The round of the operation locked on `a` (for recovery, which knows only the record). */
export const lockedPlan = (a: AuthRecord): PreparePlan[] =>
  a.op?.kind === "capture" ? capturePlan(a, a.op.amountMinor) : releasePlan(a);

/**
 * One capture or void at a time per authorization: claims it with the
 * round's txn id. A lock left by a round that is decided and that no one
 * runs (its request lost the store mid-round) is settled first, then taken.
 */
async function lockOp(ctx: CardsContext, a: AuthRecord, lock: OperationLock): Promise<string | undefined> {
  const { store, rounds, clock } = ctx;
  const txnId = rounds.newTxnId();
  const take = () =>
    store.updateAuth(
      a.authId,
      { status: "APPROVED", opTxnId: "" },
      { op: { ...lock, txnId } },
      clock.nowMs(),
      `${txnId}/lock`,
    );
  if (await take()) return txnId;
  const now = await store.authById(a.authId);
  if (!now?.op || rounds.isRunning(now.op.txnId)) return undefined;
  const d = await rounds.decisionOf(now.op.txnId);
  if (!d) return undefined;
  const after = await applyOp(ctx, now.authId, d);
  return after.status === "APPROVED" && (await take()) ? txnId : undefined;
}

/** Applies a capture's or void's decided round to the authorization (once: a second caller finds it applied). */
export async function applyOp(ctx: CardsContext, authId: string, d: DecisionRecord): Promise<AuthRecord> {
  const { store, clock, logger } = ctx;
  const a = must(await store.authById(authId));
  const op = a.op;
  if (op?.txnId !== d.txnId) return a; // settled already (by a takeover, or the request itself)
  assert(a.status === "APPROVED", "an operation runs on an approved authorization");
  let change: AuthChange = CLEAR_OP;
  if (d.decision === "COMMIT") {
    change =
      op.kind === "capture"
        ? {
            ...CLEAR_OP,
            status: "CAPTURED",
            capturedMinor: op.amountMinor,
            captureTxnId: d.txnId,
            captureBatchId: op.batchId,
            captureItemIndex: op.itemIndex,
          }
        : { ...CLEAR_OP, status: "VOIDED" };
  } else if (d.reason === "authorization_expired") {
    change = { ...CLEAR_OP, status: "EXPIRED" }; // the bank's hold expired (its own sweep, its own clock)
  } else if (d.reason === "already_captured" || d.reason === "authorization_voided" || d.reason === "hold_not_found") {
    logger.error(
      { authCode: a.authCode, transactionId: d.txnId, reason: d.reason, alarm: true },
      "ALARM: the issuing bank's hold disagrees with the authorization",
    );
  }
  await store.updateAuth(authId, { opTxnId: d.txnId }, change, clock.nowMs(), `${d.txnId}/apply`);
  return must(await store.authById(authId));
}

export interface OperationRun {
  readonly txnId: string;
  readonly decision: DecisionRecord;
  /** The authorization once the decision is applied. */
  readonly after: AuthRecord;
}

/**
 * Locks the operation, runs its round and applies the decision; undefined
 * while another operation holds the lock. The round's plan is the one
 * recovery derives from the lock (lockedPlan), so both name the same banks.
 */
export async function runOperation(
  ctx: CardsContext,
  a: AuthRecord,
  lock: OperationLock,
): Promise<OperationRun | undefined> {
  const txnId = await lockOp(ctx, a, lock);
  if (!txnId) return undefined;
  const decision = await ctx.rounds.runRound(
    txnId,
    lock.kind === "capture" ? "capture" : "release",
    lockedPlan({ ...a, op: { ...lock, txnId } }),
  );
  return { txnId, decision, after: await applyOp(ctx, a.authId, decision) };
}
