// The card payments' invariants (DESIGN.md §6), next to checker.ts's. The
// card store reports every durable change, so most are checked the moment
// the gateway writes; the cross-checks against the banks' holds and journals
// run once the world has healed and settled.
//
// On every change:
//   - captured <= authorized; refunded + reserved <= captured (so refunded <= captured);
//   - an authorization moves PENDING -> DECLINED | APPROVED -> CAPTURED | VOIDED |
//     EXPIRED and stays there: an expired or voided one is never captured;
//   - APPROVED only on a committed hold round, CAPTURED / VOIDED only on the
//     committed capture / release round it locked, and an op lock is only ever
//     dropped on an aborted round;
//   - a transient failure never ends as a final one: no authorization DECLINED,
//     no capture item stored FAILED, no refund FAILED, for a reason the shared
//     vocabulary calls retryable (participant_*, coordinator_restarted,
//     hold_in_use, idempotency_key_in_use, ...); an authorization or refund
//     row is only deleted (its key freed) once its round's Abort reached the bank;
//   - a batch item is stored once; a batch is DONE only when every item is;
//   - what the merchant is told agrees with the store.
// At the end: every authorization in a final state; each agrees with its
// hold at the issuing bank (CAPTURED for the captured amount, RELEASED when
// voided, EXPIRED when expired, none when declined), no hold without its
// authorization; capture and refund journals match the store; the merchant's
// account rose by exactly the captured amounts minus the committed refunds.
import { reasonClass } from "@paygate/vocab";
import type { AuthRecord, AuthStatus, RefundRecord, Refunded, Result, Settlement } from "@paygate/gateway/domain";
import { entriesOf, type RoundRequests } from "./checker.js";
import type { CardChange } from "./sim-card-store.js";
import type { SimStats, World } from "./world.js";

export interface CardChecker extends RoundRequests {
  onChange(change: CardChange): void;
  onAuthorizeAnswer(key: string, result: Result<AuthRecord>): void;
  onSettleAnswer(batchKey: string, result: Result<Settlement>): void;
  onVoidAnswer(authCode: string, result: Result<AuthRecord>): void;
  onRefundAnswer(key: string, result: Result<Refunded>): void;
  quiescent(): boolean;
  describeUnsettled(): string;
  finalCheck(): void;
  /** How the authorizations ended, into the run's stats. */
  count(stats: SimStats): void;
}

const NEXT: Readonly<Record<AuthStatus, readonly AuthStatus[]>> = {
  PENDING: ["PENDING", "DECLINED", "APPROVED"],
  APPROVED: ["APPROVED", "CAPTURED", "VOIDED", "EXPIRED"],
  DECLINED: ["DECLINED"],
  CAPTURED: ["CAPTURED"],
  VOIDED: ["VOIDED"],
  EXPIRED: ["EXPIRED"],
};
const FINAL_STATUSES: ReadonlySet<AuthStatus> = new Set(["DECLINED", "CAPTURED", "VOIDED", "EXPIRED"]);
/** What a bank says of a hold that the authorization itself can contradict. */
const HOLD_VERDICTS: ReadonlySet<string> = new Set(["hold_not_found", "already_captured", "authorization_voided"]);
const HOLD_STATE_OF: Partial<Record<AuthStatus, string>> = {
  CAPTURED: "CAPTURED",
  VOIDED: "RELEASED",
  EXPIRED: "EXPIRED",
};

export function createCardChecker(world: World): CardChecker {
  const store = world.coord.cardStore;
  const log = world.coord.log;
  const merchant = world.merchantAccount;
  /** Round txn id -> the request it belongs to (kept after the row is gone). */
  const requests = new Map<string, string>();
  /** merchant key -> the auth code every approval under it named. */
  const approvedCode = new Map<string, string>();

  const bad = (text: string) => world.violation(text);
  const short = (id: string) => id.slice(0, 11);
  const decision = (txnId: string) => log.decisions.get(txnId);
  const transient = (reason: string) => reasonClass(reason) !== "final";
  const authByCode = (code: string): AuthRecord | undefined => {
    for (const a of store.auths.values()) if (a.authCode === code) return a;
    return undefined;
  };
  const authByKey = (key: string): AuthRecord | undefined => {
    for (const a of store.auths.values())
      if (a.idempotencyKey === key && a.merchantUserId === merchant.ownerUserId) return a;
    return undefined;
  };
  const refundByKey = (key: string): RefundRecord | undefined => {
    for (const r of store.refunds.values()) if (r.idempotencyKey === key) return r;
    return undefined;
  };

  /** No bank may still hold or have applied a round whose row the gateway dropped as "nothing happened". */
  function checkGone(txnId: string, what: string): void {
    for (const b of world.banks.values()) {
      const state = b.store.txns.get(txnId)?.txn.state;
      if (state === "PREPARED" || state === "COMMITTED")
        bad(`${what} was dropped while its round ${short(txnId)} is ${state} at ${b.name}`);
    }
  }

  function checkAuthDeleted(a: AuthRecord): void {
    const what = `authorization ${a.authCode} (key ${a.idempotencyKey})`;
    if (a.status !== "PENDING") bad(`${what} was deleted ${a.status}`);
    if (a.holdTxnId !== "") {
      const d = decision(a.holdTxnId);
      if (d?.decision !== "ABORT")
        bad(`${what} was deleted with its hold round ${short(a.holdTxnId)} ${d?.decision ?? "undecided"}`);
      checkGone(a.holdTxnId, what);
    }
  }

  /** A status change of `a` against the operation `was` in flight before it. */
  function checkAuthStatusChange(what: string, a: AuthRecord, was: AuthRecord["op"]): void {
    switch (a.status) {
      case "DECLINED":
        if (transient(a.declineReason))
          bad(`${what} was DECLINED ${a.declineReason}: a transient failure stored as final`);
        break;
      case "APPROVED":
        if (decision(a.holdTxnId)?.decision !== "COMMIT")
          bad(
            `${what} APPROVED but its hold round ${short(a.holdTxnId)} is ${decision(a.holdTxnId)?.decision ?? "undecided"}`,
          );
        break;
      case "CAPTURED":
        if (was?.kind !== "capture" || a.captureTxnId !== was.txnId || decision(a.captureTxnId)?.decision !== "COMMIT")
          bad(`${what} CAPTURED without its committed capture round`);
        if (a.capturedMinor !== (was?.amountMinor ?? 0n) || a.capturedMinor <= 0n)
          bad(`${what} CAPTURED ${a.capturedMinor}, its capture asked ${was?.amountMinor ?? 0n}`);
        break;
      case "VOIDED":
        if (was?.kind !== "void" || decision(was.txnId)?.decision !== "COMMIT")
          bad(`${what} VOIDED without its committed release round`);
        break;
      case "EXPIRED":
        if (was && decision(was.txnId)?.decision !== "ABORT")
          bad(
            `${what} EXPIRED while its ${was.kind} ${short(was.txnId)} is ${decision(was.txnId)?.decision ?? "undecided"}`,
          );
        break;
      default:
        break;
    }
  }

  function checkAuth(before: AuthRecord | undefined, after: AuthRecord | undefined): void {
    if (!after) return checkAuthDeleted(before!);
    const a = after;
    const what = `authorization ${a.authCode} (key ${a.idempotencyKey})`;
    if (a.holdTxnId !== "") requests.set(a.holdTxnId, `${a.merchantUserId}\0auth:${a.idempotencyKey}`);
    if (a.capturedMinor > a.amountMinor) bad(`${what} captured ${a.capturedMinor} of ${a.amountMinor} authorized`);
    if (a.refundedMinor < 0n || a.refundReservedMinor < 0n)
      bad(`${what} refunded ${a.refundedMinor}, reserved ${a.refundReservedMinor}`);
    if (a.refundedMinor + a.refundReservedMinor > a.capturedMinor)
      bad(`${what} refunded ${a.refundedMinor} + reserved ${a.refundReservedMinor} of ${a.capturedMinor} captured`);
    if (a.op && a.status !== "APPROVED") bad(`${what} is ${a.status} with a ${a.op.kind} in flight`);
    if (!before) {
      if (a.status !== "PENDING") bad(`${what} was created ${a.status}`);
      return;
    }
    if (!NEXT[before.status].includes(a.status)) bad(`${what} went from ${before.status} to ${a.status}`);
    if (
      before.status === "CAPTURED" &&
      (a.capturedMinor !== before.capturedMinor || a.captureTxnId !== before.captureTxnId)
    )
      bad(`${what} was captured again`);
    const was = before.op;
    if (was && a.op && was.txnId !== a.op.txnId)
      bad(`${what}: the ${was.kind} ${short(was.txnId)} in flight was overwritten`);
    if (was && !a.op && a.status === "APPROVED" && decision(was.txnId)?.decision !== "ABORT") {
      bad(
        `${what}: its ${was.kind} ${short(was.txnId)} was dropped while ${decision(was.txnId)?.decision ?? "undecided"}`,
      );
    }
    if (a.status === before.status) return;
    checkAuthStatusChange(what, a, was);
  }

  function checkRefund(before: RefundRecord | undefined, after: RefundRecord | undefined): void {
    const r = (after ?? before)!;
    const what = `refund ${r.idempotencyKey} of ${r.amountMinor}`;
    requests.set(r.txnId, `${r.merchantUserId}\0refund:${r.idempotencyKey}`);
    const d = decision(r.txnId);
    // A refund in flight holds exactly one reservation of its amount; a decided (or deleted) one none.
    const reserved = store.reservations.get(r.txnId);
    if ((after?.status === "PENDING") !== (reserved?.amountMinor === r.amountMinor))
      bad(`${what} is ${after?.status ?? "deleted"} with a reservation of ${reserved?.amountMinor ?? "nothing"}`);
    if (!after) {
      if (r.status !== "PENDING") bad(`${what} was deleted ${r.status}`);
      if (d?.decision !== "ABORT" || !transient(d.reason))
        bad(`${what} was deleted (retry) after ${d?.decision ?? "no decision"} ${d?.reason ?? ""}`);
      checkGone(r.txnId, what);
      return;
    }
    if (!before) {
      if (r.status !== "PENDING") bad(`${what} was created ${r.status}`);
      return;
    }
    if (before.status !== "PENDING" && after.status !== before.status)
      bad(`${what} went from ${before.status} to ${after.status}`);
    if (before.status === after.status) return;
    if (after.status === "COMMITTED" && d?.decision !== "COMMIT")
      bad(`${what} COMMITTED but its round is ${d?.decision ?? "undecided"}`);
    if (after.status === "FAILED") {
      if (d?.decision !== "ABORT") bad(`${what} FAILED but its round is ${d?.decision ?? "undecided"}`);
      if (transient(after.reason)) bad(`${what} FAILED ${after.reason}: a transient failure stored as final`);
    }
  }

  function finalCheckAuth(a: AuthRecord): { capturedMinor: bigint } {
    const what = `authorization ${a.authCode} (key ${a.idempotencyKey}, ${a.status})`;
    if (!FINAL_STATUSES.has(a.status)) bad(`${what} never reached a final state`);
    const bank = world.banks.get(a.cardBank)!;
    const hold = bank.store.holds.get(a.authId);
    const want = HOLD_STATE_OF[a.status];
    if (a.status === "DECLINED" || a.status === "PENDING") {
      if (hold) bad(`${what} but ${a.cardBank} has its hold (${hold.state})`);
    } else if (!hold) bad(`${what} but ${a.cardBank} has no hold for it`);
    else if (want && hold.state !== want) bad(`${what} but its hold at ${a.cardBank} is ${hold.state}`);
    if (hold && hold.txnId !== a.holdTxnId)
      bad(
        `${what}: the hold at ${a.cardBank} was placed by ${short(hold.txnId)}, not its hold round ${short(a.holdTxnId)}`,
      );
    if (a.status !== "CAPTURED") return { capturedMinor: 0n };
    if (hold && hold.capturedMinor !== a.capturedMinor)
      bad(`${what}: captured ${a.capturedMinor} at the gateway, ${hold.capturedMinor} at ${a.cardBank}`);
    const entries = entriesOf(world, a.captureTxnId);
    const debit = entries.filter(
      (e) => e.kind === "capture_debit" && e.accountId === a.cardAccountId && e.amountMinor === -a.capturedMinor,
    );
    const credit = entries.filter(
      (e) => e.kind === "transfer_credit" && e.accountId === a.merchantAccountId && e.amountMinor === a.capturedMinor,
    );
    if (debit.length !== 1 || credit.length !== 1 || entries.length !== 2)
      bad(
        `${what}: its capture's journal entries are ${JSON.stringify(entries.map((e) => [e.accountId, e.kind, String(e.amountMinor)]))}`,
      );
    return { capturedMinor: a.capturedMinor };
  }

  function finalCheckRefund(r: RefundRecord, a: AuthRecord | undefined): bigint {
    const what = `refund ${r.idempotencyKey} (${r.status})`;
    if (r.status === "PENDING") bad(`${what} never finished`);
    const entries = entriesOf(world, r.txnId);
    if (r.status !== "COMMITTED") {
      if (entries.length > 0) bad(`${what} moved money`);
      return 0n;
    }
    const debit = entries.filter(
      (e) => e.kind === "transfer_debit" && e.accountId === merchant.accountId && e.amountMinor === -r.amountMinor,
    );
    const credit = entries.filter(
      (e) => e.kind === "transfer_credit" && e.accountId === a?.cardAccountId && e.amountMinor === r.amountMinor,
    );
    if (debit.length !== 1 || credit.length !== 1 || entries.length !== 2)
      bad(
        `${what}: its journal entries are ${JSON.stringify(entries.map((e) => [e.accountId, e.kind, String(e.amountMinor)]))}`,
      );
    return r.amountMinor;
  }

  return {
    requestOf: (txnId) => requests.get(txnId),
    endedFinal(txnId) {
      for (const a of store.auths.values()) if (a.holdTxnId === txnId) return a.status === "DECLINED";
      for (const r of store.refunds.values()) if (r.txnId === txnId) return r.status === "FAILED";
      return false;
    },
    onChange(change) {
      switch (change.kind) {
        case "auth":
          return checkAuth(change.before, change.after);
        case "refund":
          return checkRefund(change.before, change.after);
        case "item": {
          const { before, after } = change;
          const what = `batch item #${after.index} (${after.authCode} for ${after.amountMinor})`;
          if (before.status !== "")
            bad(`${what} was stored twice: ${before.status} ${before.reason}, then ${after.status} ${after.reason}`);
          if (after.status === "FAILED" && transient(after.reason))
            bad(`${what} stored FAILED ${after.reason}: a transient failure stored as final`);
          // The bank said the hold is gone or used, yet the authorization stands: the bank had not caught up (transient), not a verdict.
          if (
            after.status === "FAILED" &&
            HOLD_VERDICTS.has(after.reason) &&
            authByCode(after.authCode)?.status === "APPROVED"
          ) {
            bad(
              `${what} stored FAILED ${after.reason} for good while the authorization is APPROVED (its hold round ${short(authByCode(after.authCode)!.holdTxnId)} committed)`,
            );
          }
          if (after.status === "CAPTURED") {
            const a = authByCode(after.authCode);
            if (
              !a ||
              a.status !== "CAPTURED" ||
              a.captureBatchId !== after.batchId ||
              a.captureItemIndex !== after.index ||
              a.capturedMinor !== after.capturedMinor ||
              a.captureTxnId !== after.txnId
            ) {
              bad(
                `${what} stored CAPTURED, but the authorization is ${a?.status ?? "missing"} (captured ${a?.capturedMinor} by item #${a?.captureItemIndex})`,
              );
            }
          }
          return;
        }
        case "batch":
          if (
            change.after.status === "DONE" &&
            (store.items.get(change.after.batchId) ?? []).some((it) => it.status === "")
          )
            bad(`batch ${change.after.idempotencyKey} is DONE with items never settled`);
          return;
      }
    },
    onAuthorizeAnswer(key, result) {
      const stored = authByKey(key);
      if (result.ok) {
        const a = result.value;
        if (!stored || stored.authId !== a.authId || stored.status === "PENDING" || stored.status === "DECLINED")
          bad(`merchant told ${key} approved as ${a.authCode}; the store has ${stored?.status ?? "nothing"}`);
        const first = approvedCode.get(key);
        if (first !== undefined && first !== a.authCode) bad(`key ${key} approved twice: ${first} and ${a.authCode}`);
        approvedCode.set(key, a.authCode);
        return;
      }
      if (!transient(result.reason) && approvedCode.has(key))
        bad(`key ${key} was approved as ${approvedCode.get(key)}, then declined ${result.reason}`);
      if (stored?.status === "DECLINED" && !transient(result.reason) && stored.declineReason !== result.reason)
        bad(`key ${key} declined ${result.reason}; the store says ${stored.declineReason}`);
    },
    onSettleAnswer(batchKey, result) {
      if (!result.ok) return;
      const rows = store.items.get(result.value.batchId) ?? [];
      for (const [i, r] of result.value.results.entries()) {
        const what = `batch ${batchKey} item #${i} (${r.authCode})`;
        if (r.status === "CAPTURED") {
          const a = authByCode(r.authCode);
          if (!a || a.status !== "CAPTURED" || a.captureTxnId !== r.txnId || a.capturedMinor !== r.capturedMinor)
            bad(
              `${what}: merchant told CAPTURED ${r.capturedMinor}; the store has ${a?.status ?? "nothing"} ${a?.capturedMinor}`,
            );
        }
        if (r.status === "FAILED" && r.final && transient(r.reason))
          bad(`${what}: merchant told FAILED ${r.reason} for good, a transient failure`);
        if (r.final && rows[i]?.status !== r.status)
          bad(`${what}: merchant told ${r.status} for good; stored ${rows[i]?.status || "nothing"}`);
      }
    },
    onVoidAnswer(authCode, result) {
      const a = authByCode(authCode);
      if (result.ok && a?.status !== "VOIDED") bad(`merchant told ${authCode} VOIDED; the store has ${a?.status}`);
      if (!result.ok && HOLD_VERDICTS.has(result.reason) && a?.status === "APPROVED")
        bad(
          `merchant told the void of ${authCode} failed ${result.reason} for good while the authorization is APPROVED`,
        );
    },
    onRefundAnswer(key, result) {
      if (result.ok && refundByKey(key)?.status !== "COMMITTED")
        bad(`merchant told refund ${key} COMMITTED; the store has ${refundByKey(key)?.status ?? "nothing"}`);
    },
    quiescent() {
      for (const a of store.auths.values()) if (a.status === "APPROVED" || a.status === "PENDING" || a.op) return false;
      for (const r of store.refunds.values()) if (r.status === "PENDING") return false;
      for (const b of world.banks.values())
        for (const h of b.store.holds.values()) if (h.state === "ACTIVE") return false;
      return true;
    },
    describeUnsettled() {
      const round = (txnId: string) =>
        txnId === ""
          ? "none"
          : `${short(txnId)} ${decision(txnId)?.decision ?? (log.rounds.has(txnId) ? "undecided" : "never registered")}`;
      const open = [...store.auths.values()]
        .filter((a) => a.status === "APPROVED" || a.status === "PENDING" || a.op)
        .map(
          (a) =>
            `${a.authCode}:${a.status}${a.status === "PENDING" ? ` (hold round ${round(a.holdTxnId)})` : ""}${a.op ? ` (${a.op.kind} ${round(a.op.txnId)})` : ""}`,
        );
      const refunds = [...store.refunds.values()]
        .filter((r) => r.status === "PENDING")
        .map((r) => `${r.idempotencyKey} (round ${round(r.txnId)})`);
      const holds = [...world.banks.values()].flatMap((b) =>
        [...b.store.holds.values()]
          .filter((h) => h.state === "ACTIVE")
          .map((h) => `${b.name}:${store.auths.get(h.holdId)?.authCode ?? "?"}`),
      );
      return `authorizations open: ${open.join(" ") || "none"}; refunds pending: ${refunds.join(" ") || "none"}; active holds: ${holds.join(" ") || "none"}`;
    },
    finalCheck() {
      let capturedMinor = 0n;
      let refundedMinor = 0n;
      for (const a of store.auths.values()) capturedMinor += finalCheckAuth(a).capturedMinor;
      for (const r of store.refunds.values()) refundedMinor += finalCheckRefund(r, store.auths.get(r.authId));
      for (const b of world.banks.values()) {
        for (const h of b.store.holds.values()) {
          const a = store.auths.get(h.holdId);
          if (!a || a.holdTxnId !== h.txnId)
            bad(
              `${b.name} has a ${h.state} hold of ${h.amountMinor} that no authorization placed (round ${short(h.txnId)})`,
            );
        }
      }
      for (const [txnId, round] of log.rounds) {
        if (
          decision(txnId)?.decision === "COMMIT" &&
          round.kind === "capture" &&
          ![...store.auths.values()].some((a) => a.captureTxnId === txnId)
        )
          bad(`capture ${short(txnId)} committed at the banks but no authorization records it`);
        if (decision(txnId)?.decision !== "COMMIT" && entriesOf(world, txnId).length > 0)
          bad(`${round.kind} ${short(txnId)} is not committed but moved money`);
      }
      const balance = world.banks.get(merchant.bank)!.store.accounts.get(merchant.accountId)!.balanceMinor;
      const expected = merchant.openingMinor + capturedMinor - refundedMinor;
      if (balance !== expected)
        bad(
          `the merchant's account holds ${balance}; opening ${merchant.openingMinor} + captured ${capturedMinor} - refunded ${refundedMinor} = ${expected}`,
        );
    },
    count(stats) {
      for (const a of store.auths.values()) {
        if (a.status === "DECLINED") stats.declined++;
        else if (a.status !== "PENDING") stats.approved++;
        if (a.status === "CAPTURED") stats.captured++;
        if (a.status === "CAPTURED" && a.capturedMinor < a.amountMinor) stats.partialCaptures++;
        if (a.status === "VOIDED") stats.voided++;
        if (a.status === "EXPIRED") stats.expired++;
      }
      for (const r of store.refunds.values()) if (r.status === "COMMITTED") stats.refunds++;
    },
  };
}
