// The card half of the chaos checker (see checker.ts for the rest).
//
// Always, over every snapshot: a committed capture round's entries are its
// authorization's capture (capture_debit at the card's account, credit at the
// merchant's, the captured amount) and the authorization records that round,
// so a second capture of one authorization has nobody to belong to; a
// refund round's entries are its refund's; holds and releases post nothing;
// per authorization captured <= authorized and refunded <= captured.
//
// After healing and the checkout's settlement has drained:
//   - every authorization is in one final state (CAPTURED, VOIDED, DECLINED,
//     EXPIRED; none APPROVED or PENDING, no capture or void in flight), and
//     the issuing bank's hold agrees (CAPTURED for the captured amount,
//     RELEASED when voided, never ACTIVE);
//   - no authorization, order or settlement ended in a final state for a
//     transient reason, nor declined insufficient_funds (the card accounts
//     hold far more than a run spends: only a leftover hold could say so);
//     the only declines are the ones the workload asked for (a wrong CVC,
//     dave's score);
//   - every order the checkout approved is captured in full, or failed
//     authorization_voided because the back office voided it; what each
//     shopper was shown matches the checkout's order and the gateway's
//     authorization; every authorization that held money is an order;
//   - refunds: none pending, each committed one in both ledgers, the
//     authorization's refunded amount is the sum of its committed refunds,
//     and what the merchant was told matches the store;
//   - the merchant's account rose by exactly the captured minus the refunded
//     amounts (the gateway's records, the journals and the checkout's orders
//     agree); conservation is checker.ts's.
import { LedgerService, HoldState } from "@paygate/proto/bank";
import { errorInfo } from "@paygate/rpc";
import type { Cluster } from "./cluster.js";
import type { Bad, EntryRow } from "./checker.js";
import { readCheckout, type CardWorkload } from "./cards.js";
import type { LogAuth, LogRefund, LogSnapshot } from "./store-reader.js";
// Reasons that say "not decided yet", never a final state: the checkout's own
// list (the vocabulary's retryable reasons plus its client-side outcomes), so
// the check judges by the same words the shop shows.
import { TRANSIENT_REASONS } from "../../services/checkout/src/domain/declines.js";

const CALL_TIMEOUT_MS = 5_000;

const baseKey = (key: string) => key.replace(/-r\d+$/, "");

export function createCardChecks(cluster: Cluster, work: CardWorkload) {
  const merchantId = cluster.merchantAccount.id;

  /**
   * The old columns, still written for previous-release replicas, agree with
   * the operation and reservation rows in every snapshot: one transaction
   * writes both, so a difference is a write that kept only one of them.
   */
  function judgeColumns(log: LogSnapshot, bad: Bad): void {
    for (const a of log.auths.values()) {
      const opTxnId = a.op?.txnId ?? "";
      if (a.columns.opTxnId !== opTxnId)
        bad(
          `${a.authCode}: its operation row names ${opTxnId || "none"}, its op_txn_id column ${a.columns.opTxnId || "none"}`,
          [opTxnId, a.columns.opTxnId].filter((t) => t !== ""),
          [a.authCode],
        );
      if (a.columns.refundReservedMinor !== a.refundReservedMinor)
        bad(
          `${a.authCode}: its reservation rows add up to ${a.refundReservedMinor}, its refund_reserved_minor column says ${a.columns.refundReservedMinor}`,
          [],
          [a.authCode],
        );
    }
  }

  /** A committed capture round's entries against the authorization that records it. */
  function judgeCaptureEntries(
    txnId: string,
    rows: readonly EntryRow[],
    c: { auth: LogAuth; amountMinor: bigint } | undefined,
    show: string,
    final: boolean,
    bad: Bad,
  ): void {
    if (!c) {
      bad(
        `capture round ${txnId} moved money (${show}) but no authorization records it as its capture (a second capture of one authorization?)`,
        [txnId],
      );
      return;
    }
    for (const r of rows) {
      const ok =
        (r.kind === "capture_debit" && r.accountId === c.auth.cardAccountId && r.amountMinor === -c.amountMinor) ||
        (r.kind === "transfer_credit" && r.accountId === c.auth.merchantAccountId && r.amountMinor === c.amountMinor);
      if (!ok)
        bad(
          `capture ${txnId} of ${c.auth.authCode}: entry ${r.kind} ${r.amountMinor} at ${r.accountId} is not its capture of ${c.amountMinor} (${c.auth.cardAccountId} -> ${c.auth.merchantAccountId})`,
          [txnId],
          [c.auth.authCode],
        );
    }
    if (rows.length > 2) bad(`capture ${txnId} has ${rows.length} entries`, [txnId], [c.auth.authCode]);
    if (final && rows.length !== 2)
      bad(
        `capture ${txnId} of ${c.auth.authCode} is COMMITTED but applied at only one bank after healing: ${show}`,
        [txnId],
        [c.auth.authCode],
      );
  }

  /** A committed refund round's entries against the refund that records it. */
  function judgeRefundEntries(
    log: LogSnapshot,
    txnId: string,
    rows: readonly EntryRow[],
    f: LogRefund | undefined,
    show: string,
    final: boolean,
    bad: Bad,
  ): void {
    const a = f ? log.auths.get(f.authId) : undefined;
    if (!f || !a) {
      bad(`refund round ${txnId} moved money (${show}) but no refund records it`, [txnId]);
      return;
    }
    for (const r of rows) {
      const ok =
        (r.kind === "transfer_debit" && r.accountId === a.merchantAccountId && r.amountMinor === -f.amountMinor) ||
        (r.kind === "transfer_credit" && r.accountId === a.cardAccountId && r.amountMinor === f.amountMinor);
      if (!ok)
        bad(
          `refund ${f.refundId} (${txnId}) of ${a.authCode}: entry ${r.kind} ${r.amountMinor} at ${r.accountId} is not its refund of ${f.amountMinor}`,
          [txnId],
          [a.authCode],
        );
    }
    if (final && rows.length !== 2)
      bad(
        `refund ${f.refundId} (${txnId}) is COMMITTED but applied at only one bank after healing: ${show}`,
        [txnId],
        [a.authCode],
      );
  }

  function judge(log: LogSnapshot, entries: ReadonlyMap<string, readonly EntryRow[]>, final: boolean, bad: Bad): void {
    judgeColumns(log, bad);
    const byCapture = new Map<string, { auth: LogAuth; amountMinor: bigint }>();
    for (const a of log.auths.values()) {
      if (a.captureTxnId !== "") byCapture.set(a.captureTxnId, { auth: a, amountMinor: a.capturedMinor });
      if (a.op?.kind === "capture") byCapture.set(a.op.txnId, { auth: a, amountMinor: a.op.amountMinor });
    }
    const refundByTxn = new Map([...log.refunds.values()].map((r) => [r.txnId, r]));
    // By decision, not by entries: a refund may be applied at both banks before the capture it refunds is
    // applied at either (the capture's Commit still being redriven), so only decided amounts compare.
    const capturedByAuth = new Map<string, bigint>();
    const refundedByAuth = new Map<string, bigint>();
    const add = (m: Map<string, bigint>, k: string, v: bigint) => m.set(k, (m.get(k) ?? 0n) + v);
    for (const r of log.rounds.values()) {
      if (log.decided.get(r.txnId)?.decision !== "COMMIT") continue;
      if (r.kind === "capture") {
        const c = byCapture.get(r.txnId);
        if (c) add(capturedByAuth, c.auth.authId, c.amountMinor);
      } else if (r.kind === "refund") {
        const f = refundByTxn.get(r.txnId);
        if (f) add(refundedByAuth, f.authId, f.amountMinor);
      }
    }

    for (const [txnId, rows] of entries) {
      const round = log.rounds.get(txnId);
      if (!round || log.decided.get(txnId)?.decision !== "COMMIT") continue; // transfers and undecided money: checker.ts
      const show = rows.map((r) => `${r.kind} ${r.amountMinor} at ${r.accountId}`).join(", ");
      if (round.kind === "capture") judgeCaptureEntries(txnId, rows, byCapture.get(txnId), show, final, bad);
      else if (round.kind === "refund") judgeRefundEntries(log, txnId, rows, refundByTxn.get(txnId), show, final, bad);
      else {
        bad(`${round.kind} round ${txnId} posted journal entries (${show}); holds and releases move no money`, [txnId]);
      }
    }
    for (const a of log.auths.values()) {
      const captured = capturedByAuth.get(a.authId) ?? 0n;
      const refunded = refundedByAuth.get(a.authId) ?? 0n;
      if (captured > a.amountMinor)
        bad(
          `${a.authCode}: committed captures total ${captured}, more than the ${a.amountMinor} authorized`,
          [a.captureTxnId],
          [a.authCode],
        );
      if (refunded > captured)
        bad(`${a.authCode}: committed refunds total ${refunded}, more than the ${captured} captured`, [], [a.authCode]);
    }
  }

  async function finalChecks(
    log: LogSnapshot,
    entries: ReadonlyMap<string, readonly EntryRow[]>,
    balances: ReadonlyMap<string, bigint>,
    bad: Bad,
  ): Promise<void> {
    const view = readCheckout(cluster.checkoutDbFile);
    const auths = [...log.auths.values()];
    const authByCode = new Map(auths.map((a) => [a.authCode, a]));
    const voidedByUs = new Set([...work.voids.values()].map((v) => v.authCode));

    // Each round's decision against the record it belongs to.
    for (const r of log.rounds.values()) {
      const d = log.decided.get(r.txnId);
      if (!d) {
        bad(`${r.kind} round ${r.txnId} has no decision after healing`, [r.txnId]);
        continue;
      }
      if (d.decision !== "COMMIT") {
        if ((entries.get(r.txnId)?.length ?? 0) > 0)
          bad(`${r.kind} round ${r.txnId} is ABORTED but posted entries`, [r.txnId]);
        continue;
      }
      if (r.kind === "capture" && !auths.some((a) => a.captureTxnId === r.txnId))
        bad(`capture round ${r.txnId} COMMITTED but no authorization records it as its capture`, [r.txnId]);
      if (
        r.kind === "refund" &&
        ![...log.refunds.values()].some((f) => f.txnId === r.txnId && f.status === "COMMITTED")
      )
        bad(`refund round ${r.txnId} COMMITTED but its refund is not COMMITTED`, [r.txnId]);
      if (r.kind === "release" && !auths.some((a) => a.status === "VOIDED" || a.status === "EXPIRED"))
        bad(`release round ${r.txnId} COMMITTED but no authorization is voided`, [r.txnId]);
    }

    // Every authorization in one final state, the bank's hold agreeing.
    for (const a of auths) {
      const attempt = work.attempts.get(baseKey(a.key));
      const hold = log.decided.get(a.holdTxnId);
      const where = `authorization ${a.authCode} (${a.authId} by ${a.replica}, key ${a.key}, ${a.cardAccountId}; hold round ${a.holdTxnId || "none"} ${log.rounds.has(a.holdTxnId) ? "registered" : "not registered"}, decided ${hold ? `${hold.decision}${hold.reason ? ` ${hold.reason}` : ""}` : "nothing"})`;
      if (a.status === "APPROVED")
        bad(
          `${where} is still APPROVED after healing: its hold is outstanding and nothing captured or voided it`,
          [a.holdTxnId],
          [a.authCode, baseKey(a.key)],
        );
      else if (a.status === "PENDING")
        bad(`${where} is still PENDING after healing`, [a.holdTxnId], [a.authCode, baseKey(a.key)]);
      if (a.op)
        bad(`${where}: a ${a.op.kind} (${a.op.txnId}) is still in flight after healing`, [a.op.txnId], [a.authCode]);
      if (a.status === "DECLINED") {
        const expected =
          attempt?.card.expectedDecline ||
          (attempt?.wrongCvcFirst && a.key === attempt.attemptKey ? "incorrect_cvc" : "");
        if (TRANSIENT_REASONS.has(a.reason))
          bad(
            `${where} ended DECLINED for a transient reason (${a.reason}): a transient failure became a final one`,
            [a.holdTxnId],
            [baseKey(a.key)],
          );
        else if (a.reason === "insufficient_funds")
          bad(
            `${where} ended DECLINED insufficient_funds though the card account holds far more than the run spends (a leftover hold of an aborted attempt?)`,
            [a.holdTxnId],
            [baseKey(a.key)],
          );
        else if (a.reason !== expected)
          bad(
            `${where} ended DECLINED ${a.reason}; the workload expected ${expected || "an approval"}`,
            [a.holdTxnId],
            [baseKey(a.key)],
          );
      }
      if (a.status === "VOIDED" && !voidedByUs.has(a.authCode))
        bad(`${where} is VOIDED but the back office never voided it`, [], [a.authCode]);
      if (a.refundReservedMinor !== 0n)
        bad(`${where} still reserves ${a.refundReservedMinor} for refunds after healing`, [], [a.authCode]);
      const committedRefunds = [...log.refunds.values()]
        .filter((f) => f.authId === a.authId && f.status === "COMMITTED")
        .reduce((s, f) => s + f.amountMinor, 0n);
      if (committedRefunds !== a.refundedMinor)
        bad(
          `${where}: refunded ${a.refundedMinor}, its committed refunds sum to ${committedRefunds}`,
          [],
          [a.authCode],
        );
      if (a.refundedMinor > a.capturedMinor)
        bad(`${where}: refunded ${a.refundedMinor} > captured ${a.capturedMinor}`, [], [a.authCode]);
      if (a.capturedMinor > a.amountMinor)
        bad(`${where}: captured ${a.capturedMinor} > authorized ${a.amountMinor}`, [], [a.authCode]);
      if (a.status === "CAPTURED" && (entries.get(a.captureTxnId)?.length ?? 0) !== 2)
        bad(
          `${where} is CAPTURED but its capture ${a.captureTxnId} is not in both ledgers`,
          [a.captureTxnId],
          [a.authCode],
        );
      if (a.status === "DECLINED" && a.holdTxnId === "") continue; // declined before any hold (risk, CVC)
      let bankHold: { state: HoldState; capturedMinor: bigint } | undefined;
      try {
        bankHold = (await cluster.bankClient(LedgerService, a.cardBank, CALL_TIMEOUT_MS).getHold({ holdId: a.authId }))
          .hold!;
      } catch (e) {
        if (errorInfo(e).reason !== "hold_not_found") {
          bad(`${where}: the issuing bank did not answer GetHold after healing: ${errorInfo(e).reason}`);
          continue;
        }
      }
      const state = bankHold ? HoldState[bankHold.state] : "none";
      const want: Record<string, string[]> = {
        CAPTURED: ["CAPTURED"],
        VOIDED: ["RELEASED"],
        EXPIRED: ["EXPIRED", "RELEASED"],
        DECLINED: ["none", "RELEASED", "EXPIRED"],
      };
      if (want[a.status] && !want[a.status]!.includes(state))
        bad(
          `${where} is ${a.status} but the hold at ${a.cardBank} is ${state}`,
          [a.holdTxnId, a.captureTxnId],
          [a.authCode],
        );
      if (a.status === "CAPTURED" && bankHold && bankHold.capturedMinor !== a.capturedMinor)
        bad(
          `${where} captured ${a.capturedMinor}, the hold at ${a.cardBank} says ${bankHold.capturedMinor}`,
          [a.captureTxnId],
          [a.authCode],
        );
    }

    // Refunds against what the merchant was told.
    for (const f of log.refunds.values()) {
      if (f.status === "PENDING")
        bad(`refund ${f.refundId} (key ${f.key}) is still PENDING after healing`, [f.txnId], [f.key]);
      if (f.status === "COMMITTED" && (entries.get(f.txnId)?.length ?? 0) !== 2)
        bad(`refund ${f.refundId} is COMMITTED but not in both ledgers`, [f.txnId], [f.key]);
    }
    for (const r of work.refunds.values()) {
      if (r.committed.size > 1)
        bad(
          `refund key ${r.key} was acknowledged with ${r.committed.size} refund ids: ${[...r.committed].join(", ")}`,
          [],
          [r.authCode],
        );
      if (r.committed.size > 0 && r.declined.length > 0)
        bad(
          `refund key ${r.key} was declined for good (${r.declined.join(", ")}) and acknowledged (${[...r.committed].join(", ")})`,
          [],
          [r.authCode],
        );
      for (const id of r.committed) {
        const f = log.refunds.get(id);
        if (!f || f.status !== "COMMITTED" || f.key !== r.key || f.amountMinor !== r.amountMinor)
          bad(
            `the merchant was told refund ${id} (key ${r.key}, ${r.amountMinor}) committed; the store says ${f ? `${f.status} ${f.key} ${f.amountMinor}` : "nothing"}`,
            f ? [f.txnId] : [],
            [r.authCode],
          );
      }
      if (r.declined.length > 0) {
        const f = [...log.refunds.values()].find((x) => x.key === r.key);
        if (f?.status === "COMMITTED")
          bad(
            `the merchant was told refund key ${r.key} was declined (${r.declined.join(", ")}); the store says COMMITTED`,
            [f.txnId],
            [r.authCode],
          );
      }
    }

    // The checkout's orders against what shoppers were shown and the gateway's authorizations.
    const orderCodes = new Set<string>();
    for (const r of work.attempts.values()) {
      const o = view.orders.get(r.attemptKey);
      const where = `order ${r.attemptKey}`;
      for (const u of r.unexpected) bad(`${where}: the checkout answered ${u}`, [], [r.attemptKey]);
      if (r.approved.size > 1)
        bad(
          `${where} was shown ${r.approved.size} different approvals: ${[...r.approved].join(", ")}`,
          [],
          [r.attemptKey],
        );
      const wrongDeclines = r.declines.filter(
        (d) => !(r.wrongCvcFirst && d === "incorrect_cvc") && d !== r.card.expectedDecline,
      );
      for (const d of wrongDeclines)
        bad(
          `${where} was shown a decline (${d}) ${TRANSIENT_REASONS.has(d) ? "for a transient reason" : "it did not ask for"}`,
          [],
          [r.attemptKey],
        );
      if (r.approved.size > 0 && r.card.expectedDecline !== "")
        bad(
          `${where} was approved though ${r.card.holder}'s card must be declined ${r.card.expectedDecline}`,
          [],
          [r.attemptKey],
        );
      if (!o) {
        if (r.approved.size > 0 || r.declines.length > 0)
          bad(`${where} was answered but the checkout has no such order`, [], [r.attemptKey]);
        continue;
      }
      if (o.state === "pending" || o.state === "unknown") {
        bad(
          `${where} is still ${o.state} (${o.reason}) after healing and ${r.attempts} submissions`,
          [],
          [r.attemptKey],
        );
        continue;
      }
      if (o.state === "declined") {
        if (TRANSIENT_REASONS.has(o.reason))
          bad(`${where} is marked declined for a transient reason (${o.reason})`, [], [r.attemptKey]);
        if (r.approved.size > 0)
          bad(
            `${where} was shown approved (${[...r.approved].join(", ")}) but is declined (${o.reason})`,
            [],
            [r.attemptKey],
          );
        continue;
      }
      orderCodes.add(o.authCode);
      for (const code of r.approved)
        if (code !== o.authCode)
          bad(`${where} was shown approval ${code}; the order holds ${o.authCode}`, [], [r.attemptKey]);
      const a = authByCode.get(o.authCode);
      if (!a) {
        bad(`${where} is approved as ${o.authCode}, which the gateway does not know`, [], [r.attemptKey]);
        continue;
      }
      if (a.merchantReference !== o.orderId || a.amountMinor !== o.amountMinor)
        bad(
          `${where} (${o.orderId}, ${o.amountMinor}) has authorization ${a.authCode} for ${a.merchantReference}, ${a.amountMinor}`,
          [],
          [r.attemptKey],
        );
      if (o.settleState === "captured") {
        if (o.capturedMinor !== o.amountMinor)
          bad(`${where} captured ${o.capturedMinor} of ${o.amountMinor}`, [], [r.attemptKey, o.authCode]);
        if (a.status !== "CAPTURED" || a.capturedMinor !== o.capturedMinor)
          bad(
            `${where} is captured for ${o.capturedMinor} at the checkout; the gateway's ${a.authCode} is ${a.status} for ${a.capturedMinor}`,
            [a.captureTxnId],
            [r.attemptKey, o.authCode],
          );
      } else if (o.settleState === "failed") {
        const voided = a.status === "VOIDED" && voidedByUs.has(a.authCode) && o.settleReason === "authorization_voided";
        if (!voided) {
          bad(
            `${where} is marked failed (${o.settleReason})${TRANSIENT_REASONS.has(o.settleReason) ? ": a transient failure ended as a final one, the merchant is never paid" : ""}; the gateway's ${a.authCode} is ${a.status}`,
            [a.op?.txnId ?? "", a.captureTxnId],
            [r.attemptKey, o.authCode],
          );
        }
      } else {
        bad(
          `${where} is approved but still ${o.settleState} after the settlement drained (${o.settleReason})`,
          [],
          [r.attemptKey, o.authCode],
        );
      }
    }
    for (const a of auths) {
      if (["APPROVED", "CAPTURED", "VOIDED", "EXPIRED"].includes(a.status) && !orderCodes.has(a.authCode)) {
        bad(
          `authorization ${a.authCode} (key ${a.key}) is ${a.status} but no approved order of the checkout holds it: the merchant never learned of it`,
          [a.holdTxnId],
          [a.authCode, baseKey(a.key)],
        );
      }
    }

    // Settlement batches: none left half done.
    for (const b of log.batches.values()) {
      if (b.status !== "DONE")
        bad(
          `settlement batch ${b.batchId} (key ${b.key}) is still ${b.status} after healing with ${b.itemsOpen} items open${b.ownerReplica ? `, owned by ${b.ownerReplica}` : ""}`,
          [],
          [b.key],
        );
    }

    // The merchant's account: exactly captured minus refunded, three ways.
    const merchant = cluster.merchantAccount;
    const balance = balances.get(merchantId);
    const rose = balance === undefined ? undefined : balance - merchant.openingMinor;
    const byGateway = auths.reduce((s, a) => s + a.capturedMinor - a.refundedMinor, 0n);
    let byJournal = 0n;
    for (const rows of entries.values())
      for (const r of rows) if (r.accountId === merchantId) byJournal += r.amountMinor;
    const toldRefunded = [...work.refunds.values()]
      .filter((r) => r.committed.size > 0)
      .reduce((s, r) => s + r.amountMinor, 0n);
    const byCheckout =
      [...view.orders.values()].reduce((s, o) => s + (o.settleState === "captured" ? o.capturedMinor : 0n), 0n) -
      toldRefunded;
    if (rose !== undefined && (rose !== byGateway || rose !== byJournal || rose !== byCheckout)) {
      bad(
        `the merchant's account ${merchantId} rose by ${rose}; captured minus refunded is ${byGateway} by the gateway's authorizations, ${byJournal} by the journals, ${byCheckout} by the checkout's orders and the refunds acknowledged`,
      );
    }
  }

  return { judge, finalChecks };
}
