// The transfer use case (DESIGN.md §3, §4): check the request, claim its
// idempotency key by inserting the txn PENDING (§3.1), run the round, answer
// from the decision. A repeat is answered from the txn that owns the key; after
// a transient abort the same key tries again as a new txn once the old
// attempt's Abort reached every bank (§3.7).
import { assert } from "@paygate/money";
import type { Reason } from "@paygate/vocab";
import { NO_METRICS, type CoordinatorMetrics } from "../metrics.js";
import { fail, ok, TRANSIENT_ABORT_REASONS, type NewTxn, type Result, type TxnRecord } from "../model.js";
import {
  StoreUnavailableError,
  type Clock,
  type Directory,
  type EventLogger,
  type IdempotencyClaims,
  type Leg,
} from "../ports.js";
import { checkTransfer, type CheckedTransfer, type TransferRequest } from "../transfer-rules.js";
import type { RoundEngine } from "./engine.js";
import { banksOfPlan, movePlan, type PreparePlan } from "./plan.js";

export interface TransferOptions {
  readonly engine: RoundEngine;
  readonly claims: IdempotencyClaims;
  readonly directory: Directory;
  readonly clock: Clock;
  readonly logger: EventLogger;
  readonly metrics?: CoordinatorMetrics;
  /**
   * Wait for every participant's acknowledgement before answering (the
   * simulator and a few tests want it). Default: answer once the decision is
   * durable and let the Commit/Abort go out behind the reply.
   */
  readonly replyAfterDelivery?: boolean;
}

export interface TransferOutcome {
  readonly result: Result<TxnRecord>;
  /** The txn this request ended up with (undefined if rejected before claiming). */
  readonly txnId: string | undefined;
  /** The idempotency key had been seen before. */
  readonly replayed: boolean;
}

export type Transfer = (callerUserId: string, req: TransferRequest) => Promise<TransferOutcome>;

/** A concurrent retry can move the key between our reads; give up (transiently) after this many. */
const CLAIM_ATTEMPTS_MAX = 3;

/** The debit at the payer's bank, the credit at the payee's. */
export function transferPlan(txn: TxnRecord): PreparePlan[] {
  const debit: Leg = {
    accountId: txn.fromAccountId,
    direction: "DEBIT",
    amountMinor: txn.amountMinor,
    currency: txn.currency,
    ownerUserId: txn.callerUserId,
  };
  return movePlan({ bank: txn.fromBank, leg: debit }, { bank: txn.toBank, accountId: txn.toAccountId });
}

/** A transfer's participants: one bank for a same-bank transfer. */
export const banksOf = (txn: TxnRecord): string[] => banksOfPlan(transferPlan(txn));

function declined(txn: TxnRecord): Result<TxnRecord> {
  assert(txn.status === "ABORTED", "only aborted txns decline");
  const reason = (txn.declineReason || "internal") as Reason;
  return fail(reason, `transfer declined: ${reason}`, { transaction_id: txn.txnId });
}

type ClaimStep = { readonly done: TransferOutcome } | { readonly txn: TxnRecord; readonly replayed: boolean };

export function createTransfer(o: TransferOptions): Transfer {
  const { engine, claims, directory, clock, logger } = o;
  const metrics = o.metrics ?? NO_METRICS;

  function newTxn(t: CheckedTransfer, callerUserId: string): NewTxn {
    return {
      txnId: engine.newTxnId(),
      callerUserId,
      idempotencyKey: t.idempotencyKey,
      fingerprint: t.fingerprint,
      fromAccountId: t.fromAccountId,
      toAccountId: t.toAccountId,
      fromBank: t.from.bank,
      toBank: t.to.bank,
      amountMinor: t.amountMinor,
      currency: t.currency,
      memo: t.memo,
      createdAtMs: clock.nowMs(),
    };
  }

  /** A key someone already claimed: its stored outcome, or (after a transient abort) leave to try again. */
  async function answerOwner(
    owner: TxnRecord,
    checked: CheckedTransfer,
    attempt: number,
  ): Promise<Result<TxnRecord> | "retry"> {
    const meta = { transaction_id: owner.txnId };
    if (owner.fingerprint !== checked.fingerprint) {
      metrics.idempotency.inc({ result: "conflict" });
      return fail("idempotency_key_reused", "this idempotency key was used for a different request", meta);
    }
    if (owner.status === "COMMITTED") {
      metrics.idempotency.inc({ result: "hit" });
      return ok(owner);
    }
    if (owner.status === "PENDING") {
      metrics.idempotency.inc({ result: "in_flight" });
      return fail("idempotency_key_in_use", "this request is still in progress; retry with the same key", meta);
    }
    // ABORTED. Nothing moved and ABORT is durably decided, so a transient
    // cause lets the same key try again as a new txn; a business reason is final.
    if (!TRANSIENT_ABORT_REASONS.has(owner.declineReason) || attempt >= CLAIM_ATTEMPTS_MAX) {
      metrics.idempotency.inc({ result: "hit" });
      return declined(owner);
    }
    // The retry must not meet the first attempt's own hold (a NO for
    // insufficient_funds would be final for this key): its Abort first.
    if (!(await engine.abortDelivered(owner.txnId))) {
      metrics.idempotency.inc({ result: "in_flight" });
      return fail(
        "participant_unavailable",
        "the previous attempt is still being released at a bank; retry with the same key",
        meta,
      );
    }
    return "retry";
  }

  /** Claims the key, or answers from the txn that owns it. */
  async function claimKey(callerUserId: string, checked: CheckedTransfer): Promise<ClaimStep> {
    let claim = await claims.claim(newTxn(checked, callerUserId));
    let replayed = false;
    for (let attempt = 1; !claim.claimed; attempt++) {
      replayed = true;
      const owner = claim.owner;
      const answer = await answerOwner(owner, checked, attempt);
      if (answer !== "retry") return { done: { result: answer, txnId: owner.txnId, replayed } };
      claim = await claims.reclaim(owner.txnId, newTxn(checked, callerUserId));
    }
    return { txn: claim.txn, replayed };
  }

  async function run(txn: TxnRecord): Promise<Result<TxnRecord>> {
    const { decided, delivering } = await engine.decideAndDeliver(txn.txnId, transferPlan(txn));
    const d = decided.decision;
    // The decision is durable: the answer no longer depends on the banks
    // hearing it now. Commit/Abort go out after the reply (the redrive loop
    // and recovery resend whatever is not acknowledged), so the caller waits
    // for one prepare round and two fsyncs, not a second round trip.
    const delivered = metrics.phaseDuration.startTimer({ phase: "commit" });
    void delivering.then(delivered);
    if (o.replyAfterDelivery) await delivering;
    // The decision's write settled the txn (status, sequence) and hands it back.
    const final = decided.txn;
    assert(final !== undefined, "deciding a transfer returns it");
    assert(final.txnId === txn.txnId, "deciding a transfer returns that same transfer");
    assert(
      final.status === (d.decision === "COMMIT" ? "COMMITTED" : "ABORTED"),
      "txn status follows its logged decision",
    );
    metrics.transfers.inc(
      final.status === "COMMITTED"
        ? { outcome: "committed" }
        : { outcome: "aborted", reason: final.declineReason || "internal" },
    );
    return d.decision === "COMMIT" ? ok(final) : declined(final);
  }

  return async function transfer(callerUserId: string, req: TransferRequest): Promise<TransferOutcome> {
    const checked = await checkTransfer(req, callerUserId, directory);
    if (!checked.ok) return { result: checked, txnId: undefined, replayed: false };
    let step: ClaimStep;
    const claimed = metrics.phaseDuration.startTimer({ phase: "claim" });
    try {
      step = await claimKey(callerUserId, checked.value);
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      // Whether the claim landed is unknown: a repeat finds out (and the orphan sweep aborts a claim nobody runs).
      return {
        result: fail(
          "store_unavailable",
          "the gateway's store is unavailable; nothing was sent to a bank; retry with the same key",
        ),
        txnId: undefined,
        replayed: false,
      };
    }
    if ("done" in step) return step.done;
    claimed(); // timed for the transfers that run, like the other phases
    // A fresh txn runs (also after a transient abort released the key): nothing was replayed.
    metrics.idempotency.inc({ result: "miss" });
    const txn = step.txn;
    assert(txn.status === "PENDING", "a fresh claim is PENDING");
    try {
      return {
        result: await engine.whileRunning(txn.txnId, () => run(txn)),
        txnId: txn.txnId,
        replayed: step.replayed,
      };
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      // The decision may or may not be durable: nothing is sent until it is
      // known. The banks ask GetDecision after their prepare timeout.
      logger.warn(
        { transactionId: txn.txnId, err: e.message },
        "store unavailable while deciding; the banks will ask for the decision",
      );
      return {
        result: fail("store_unavailable", "the gateway's store is unavailable; retry with the same key", {
          transaction_id: txn.txnId,
        }),
        txnId: txn.txnId,
        replayed: step.replayed,
      };
    }
  };
}
