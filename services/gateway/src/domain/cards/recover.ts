// Recovery of card records (DESIGN.md §6.5): a replica that restarts, or takes
// over a dead one (§3b.2), settles every authorization, capture or void and
// refund left mid-round from the round's logged decision, or presumes its
// abort (§3.4). Each record names its round's txn id before the round starts,
// so nothing can be mid-round without being found here.
import type { AuthRecord, RefundRecord } from "../cards-ports.js";
import { banksOfPlan } from "../rounds/plan.js";
import { must, type CardsContext } from "./context.js";
import { finishHold, holdPlan } from "./hold.js";
import { applyOp, lockedPlan } from "./operation.js";
import { finishRefund, refundPlan } from "./refund.js";

export interface CardsRecovery {
  readonly authorizations: number;
  readonly operations: number;
  readonly refunds: number;
}

const RECOVERY_BATCH_MAX = 256;
const RECOVERY_PAGES_MAX = 10_000;

/**
 * Pages through `page()` until it yields nothing new (rows left as they were,
 * e.g. an Abort not yet delivered, are not revisited). Returns how many rows
 * fn acted on (it returns false for a row it leaves alone).
 */
async function forEachPage<T>(
  page: () => Promise<T[]>,
  id: (row: T) => string,
  fn: (row: T) => Promise<boolean>,
): Promise<number> {
  const seen = new Set<string>();
  let acted = 0;
  for (let i = 0; i < RECOVERY_PAGES_MAX; i++) {
    const fresh = (await page()).filter((row) => !seen.has(id(row)));
    if (fresh.length === 0) break;
    for (const row of fresh) {
      seen.add(id(row));
      if (await fn(row)) acted++;
    }
  }
  return acted;
}

/** A PENDING authorization: its hold round's decision, or (no round yet) nothing reached a bank. */
async function settleAuthorization(ctx: CardsContext, a: AuthRecord): Promise<boolean> {
  const { store, rounds } = ctx;
  if (ctx.authorizing.has(a.authId) || (a.holdTxnId !== "" && rounds.isRunning(a.holdTxnId))) return false;
  // Its request is gone before the hold round started: nothing reached a bank.
  if (a.holdTxnId === "") await store.deleteAuth(a.authId);
  else await finishHold(ctx, a.authId, await rounds.settleRound(a.holdTxnId, banksOfPlan(holdPlan(ctx, a))));
  return true;
}

async function settleOperation(ctx: CardsContext, a: AuthRecord): Promise<boolean> {
  // authsWithOp lists only authorizations with an operation: `!op` just narrows the type.
  const op = a.op;
  if (!op || ctx.rounds.isRunning(op.txnId)) return false;
  await applyOp(ctx, a.authId, await ctx.rounds.settleRound(op.txnId, banksOfPlan(lockedPlan(a))));
  return true;
}

async function settleRefund(ctx: CardsContext, r: RefundRecord): Promise<boolean> {
  if (ctx.rounds.isRunning(r.txnId)) return false;
  const a = must(await ctx.store.authById(r.authId));
  await finishRefund(ctx, r.refundId, await ctx.rounds.settleRound(r.txnId, banksOfPlan(refundPlan(a, r.amountMinor))));
  return true;
}

/**
 * Settles every round `replica` (this one at start-up, a dead one at
 * takeover, or this one's orphans: records whose request lost the store)
 * was interrupted in: holds, captures and voids, refunds.
 */
export async function recover(ctx: CardsContext, replica: string): Promise<CardsRecovery> {
  const { store } = ctx;
  const authorizations = await forEachPage(
    () => store.pendingAuths(RECOVERY_BATCH_MAX, replica),
    (a) => a.authId,
    (a) => settleAuthorization(ctx, a),
  );
  const operations = await forEachPage(
    () => store.authsWithOp(RECOVERY_BATCH_MAX, replica),
    (a) => a.authId,
    (a) => settleOperation(ctx, a),
  );
  const refunds = await forEachPage(
    () => store.pendingRefunds(RECOVERY_BATCH_MAX, replica),
    (r) => r.refundId,
    (r) => settleRefund(ctx, r),
  );
  // Batches it owns but is not settling (a run that ended while the store was unreachable, or a restart).
  const batches = await store.releaseBatches(replica, replica === ctx.replica ? [...ctx.runningBatches] : []);
  if (authorizations + operations + refunds + batches > 0)
    ctx.logger.info({ replica, authorizations, operations, refunds, batches }, "card recovery");
  return { authorizations, operations, refunds };
}
