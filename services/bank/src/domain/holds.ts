// Standing holds: card authorizations (DESIGN.md §6) as two-phase-commit legs.
// Placing, capturing and releasing a hold are each a txn with one leg here, so
// they get the participant's durability, idempotence and presumed abort.
//
//   auth_hold  prepare: like a debit (available >= amount; held += amount)
//              commit:  the reservation becomes an ACTIVE standing hold (held stays)
//              abort:   held -= amount
//   capture    prepare: hold ACTIVE, not expired, not claimed, amount <= hold; claim (pin) it
//              commit:  balance -= amount, held -= hold amount (the rest is released), CAPTURED
//              abort:   unpin
//   release    prepare: hold ACTIVE, not claimed; pin it
//              commit:  held -= hold amount, RELEASED
//              abort:   unpin
//   expiry     an ACTIVE, unpinned hold at or past expires_at: held -= amount, EXPIRED
//
// Invariant kept: an account's held = its ACTIVE holds + its PREPARED debit
// and auth_hold legs (reconcile checks it on every Totals).
import { assert } from "@paygate/money";
import { postEntry } from "./ledger.js";
import type { Direction, Hold, HoldState, Leg, LedgerTx } from "./types.js";

export const HOLD_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
/** Holds expired per sweep; the rest wait for the next tick. */
export const EXPIRE_BATCH_MAX = 500;

/** Why a hold leg votes NO; each is a reason of the shared error table (the gateway maps votes through it). */
export const HOLD_NO_REASONS = [
  "already_exists",
  "hold_not_found",
  "already_captured",
  "authorization_voided",
  "authorization_expired",
  "amount_exceeds_authorization",
  "hold_in_use",
] as const;
export type HoldNoReason = (typeof HOLD_NO_REASONS)[number];

export function isHoldDirection(d: Direction | "unspecified"): d is "auth_hold" | "capture" | "release" {
  return d === "auth_hold" || d === "capture" || d === "release";
}

/** Shape of a leg's hold fields; a message when malformed. */
export function holdShapeProblem(
  leg: {
    readonly direction: Direction | "unspecified";
    readonly holdId?: string;
    readonly holdExpiresAtMs?: number;
    readonly holdTtlMs?: number;
  },
  i: number,
): string | undefined {
  const holdId = leg.holdId ?? "";
  if (!isHoldDirection(leg.direction))
    return holdId === "" ? undefined : `legs[${i}].hold_id is only for AUTH_HOLD, CAPTURE and RELEASE legs`;
  if (!HOLD_ID_PATTERN.test(holdId))
    return `legs[${i}].hold_id must be 1-128 characters of letters, digits and _ . : -`;
  if (
    leg.holdTtlMs !== undefined &&
    (leg.direction !== "auth_hold" || !Number.isSafeInteger(leg.holdTtlMs) || leg.holdTtlMs <= 0)
  ) {
    return `legs[${i}].hold_ttl_ms must be a positive number of milliseconds, for AUTH_HOLD only`;
  }
  if (leg.direction === "auth_hold" && leg.holdTtlMs === undefined && !((leg.holdExpiresAtMs ?? 0) > 0))
    return `legs[${i}].hold_ttl_ms (or hold_expires_at) is required for AUTH_HOLD`;
  return undefined;
}

function stateReason(state: Exclude<HoldState, "ACTIVE">): HoldNoReason {
  return state === "CAPTURED"
    ? "already_captured"
    : state === "RELEASED"
      ? "authorization_voided"
      : "authorization_expired";
}

/** Business checks of one hold leg at prepare; undefined when it may vote YES. */
export function checkHoldLeg(
  tx: LedgerTx,
  leg: Leg,
  i: number,
  nowMs: number,
): { reason: HoldNoReason; message: string } | undefined {
  const holdId = leg.holdId ?? "";
  if (leg.direction === "auth_hold") {
    if (tx.hold(holdId) !== undefined || tx.preparedAuthHold(holdId) !== undefined)
      return { reason: "already_exists", message: `legs[${i}]: hold ${holdId} already exists` };
    return undefined;
  }
  const hold = tx.hold(holdId);
  // The hold's own round is prepared here but its Commit has not arrived yet
  // (the gateway approved it; the Commit was lost or is late): busy, not missing.
  if (!hold && tx.preparedAuthHold(holdId) !== undefined)
    return { reason: "hold_in_use", message: `legs[${i}]: hold ${holdId} is still being placed` };
  if (!hold || hold.accountId !== leg.accountId || hold.currency !== leg.currency) {
    return {
      reason: "hold_not_found",
      message: `legs[${i}]: no hold ${holdId} on ${leg.accountId} in ${leg.currency}`,
    };
  }
  if (hold.state !== "ACTIVE")
    return { reason: stateReason(hold.state), message: `legs[${i}]: hold ${holdId} is ${hold.state}` };
  if (hold.pinnedTxnId !== "")
    return {
      reason: "hold_in_use",
      message: `legs[${i}]: hold ${holdId} is being captured or released by another txn`,
    };
  if (leg.direction === "capture") {
    if (hold.expiresAtMs <= nowMs)
      return { reason: "authorization_expired", message: `legs[${i}]: hold ${holdId} expired` };
    if (leg.amountMinor > hold.amountMinor)
      return {
        reason: "amount_exceeds_authorization",
        message: `legs[${i}]: capture of ${leg.amountMinor} exceeds the hold of ${hold.amountMinor}`,
      };
  }
  return undefined;
}

/** After a YES vote: a capture or release claims its hold so nothing else (the sweeper included) touches it. */
export function pinHoldLeg(tx: LedgerTx, txnId: string, leg: Leg): void {
  if (leg.direction !== "capture" && leg.direction !== "release") return;
  const hold = tx.hold(leg.holdId ?? "");
  assert(hold !== undefined, `hold of ${txnId} is ACTIVE and free at prepare`);
  assert(hold.state === "ACTIVE", `hold ${hold.holdId} of ${txnId} is ACTIVE at prepare`);
  assert(hold.pinnedTxnId === "", `hold ${hold.holdId} of ${txnId} is free at prepare`);
  tx.updateHold(hold.holdId, { state: "ACTIVE", capturedMinor: 0n, pinnedTxnId: txnId, closedAtMs: 0 });
}

function pinnedHold(tx: LedgerTx, txnId: string, leg: Leg): Hold {
  const hold = tx.hold(leg.holdId ?? "");
  assert(hold !== undefined, `hold of prepared txn ${txnId} exists`);
  assert(hold.state === "ACTIVE", `hold ${hold.holdId} is ACTIVE and pinned by ${txnId}`);
  assert(hold.pinnedTxnId === txnId, `hold ${hold.holdId} is pinned by ${txnId}`);
  return hold;
}

/** Applies a hold leg of a committing txn (the account is re-read: earlier legs may have changed it). */
export function commitHoldLeg(tx: LedgerTx, txnId: string, leg: Leg, nowMs: number): void {
  const account = tx.account(leg.accountId);
  assert(account !== undefined, `account ${leg.accountId} of prepared txn ${txnId} exists`);
  if (leg.direction === "auth_hold") {
    // The reservation made at prepare simply stays in held, now under the hold's name.
    assert(tx.hold(leg.holdId ?? "") === undefined, `hold ${leg.holdId} placed once`);
    tx.insertHold({
      holdId: leg.holdId ?? "",
      accountId: leg.accountId,
      amountMinor: leg.amountMinor,
      currency: leg.currency,
      state: "ACTIVE",
      expiresAtMs: leg.holdExpiresAtMs ?? 0,
      capturedMinor: 0n,
      txnId,
      pinnedTxnId: "",
      createdAtMs: nowMs,
      closedAtMs: 0,
    });
    return;
  }
  const hold = pinnedHold(tx, txnId, leg);
  const heldMinor = account.heldMinor - hold.amountMinor;
  assert(heldMinor >= 0n, `held of ${leg.accountId} negative after ${leg.direction} of ${txnId}`);
  if (leg.direction === "release") {
    tx.setAccountAmounts(leg.accountId, account.balanceMinor, heldMinor);
    tx.updateHold(hold.holdId, { state: "RELEASED", capturedMinor: 0n, pinnedTxnId: "", closedAtMs: nowMs });
    return;
  }
  assert(leg.direction === "capture", `unknown hold leg ${leg.direction}`);
  assert(leg.amountMinor > 0n, `capture of ${txnId} within its hold`);
  assert(leg.amountMinor <= hold.amountMinor, `capture of ${txnId} is no more than its hold`);
  const balanceMinor = account.balanceMinor - leg.amountMinor;
  assert(balanceMinor - heldMinor >= 0n, `available of ${leg.accountId} negative after capture of ${txnId}`);
  postEntry(tx, account, {
    txnId,
    kind: "capture_debit",
    amountMinor: -leg.amountMinor,
    heldAfterMinor: heldMinor,
    nowMs,
  });
  tx.updateHold(hold.holdId, { state: "CAPTURED", capturedMinor: leg.amountMinor, pinnedTxnId: "", closedAtMs: nowMs });
}

/** Undoes a hold leg's prepare: an auth_hold's reservation goes, a capture's or release's claim is dropped. */
export function abortHoldLeg(tx: LedgerTx, txnId: string, leg: Leg): void {
  if (leg.direction === "auth_hold") {
    const account = tx.account(leg.accountId);
    assert(account !== undefined, `account ${leg.accountId} of prepared txn ${txnId} exists`);
    const heldMinor = account.heldMinor - leg.amountMinor;
    assert(heldMinor >= 0n, `held of ${leg.accountId} negative after abort of ${txnId}`);
    tx.setAccountAmounts(leg.accountId, account.balanceMinor, heldMinor);
    return;
  }
  const hold = pinnedHold(tx, txnId, leg);
  tx.updateHold(hold.holdId, { state: "ACTIVE", capturedMinor: 0n, pinnedTxnId: "", closedAtMs: 0 });
}

/** The expiry sweep: releases ACTIVE, unclaimed holds whose time is up. Returns the holds it expired. */
export function expireDueHolds(tx: LedgerTx, nowMs: number, limit = EXPIRE_BATCH_MAX): Hold[] {
  const due = tx.dueHolds(nowMs, limit);
  for (const hold of due) {
    assert(hold.state === "ACTIVE", `hold ${hold.holdId} is due`);
    assert(hold.pinnedTxnId === "", `due hold ${hold.holdId} is not pinned`);
    assert(hold.expiresAtMs <= nowMs, `due hold ${hold.holdId} has expired`);
    const account = tx.account(hold.accountId);
    assert(account !== undefined, `account ${hold.accountId} of hold ${hold.holdId} exists`);
    const heldMinor = account.heldMinor - hold.amountMinor;
    assert(heldMinor >= 0n, `held of ${hold.accountId} negative after expiring ${hold.holdId}`);
    tx.setAccountAmounts(hold.accountId, account.balanceMinor, heldMinor);
    tx.updateHold(hold.holdId, { state: "EXPIRED", capturedMinor: 0n, pinnedTxnId: "", closedAtMs: nowMs });
  }
  return due;
}
