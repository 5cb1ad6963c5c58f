// The bank as a two-phase-commit participant (DESIGN.md §3, presumed abort).
//
//            Prepare ok                Commit
//   (none) ------------> PREPARED ---------------> COMMITTED
//     |   \                  |
//     |    \ Prepare says NO | Abort / resolver says ABORT
//     |     v                v
//     +---> ABORTED <--------+
//   Abort of an unseen txn leaves an ABORTED tombstone, so a Prepare that
//   arrives late (delayed on the network) votes NO instead of holding money
//   for a txn its coordinator has already given up on.
//
// Every function here runs inside ONE atomic store transaction (LedgerTx) and
// validates everything before its first write, so a failure changes nothing.
import { AMOUNT_MINOR_MAX, assert, checkPositiveAmount, parseCurrency } from "@paygate/money";
import { ACCOUNT_ID_PATTERN, TXN_ID_PATTERN } from "@paygate/vocab";
import {
  abortHoldLeg,
  checkHoldLeg,
  commitHoldLeg,
  holdShapeProblem,
  isHoldDirection,
  pinHoldLeg,
  type HoldNoReason,
} from "./holds.js";
import { BALANCE_MINOR_MAX, exceedsBalanceMax, postEntry } from "./ledger.js";
import { fail, ok, type Account, type Direction, type Leg, type LedgerTx, type Result, type Txn } from "./types.js";
/** Legs in one Prepare: a transfer needs one or two; card captures a few more. */
export const LEGS_MAX = 16;

export interface LegInput extends Omit<Leg, "direction"> {
  readonly direction: Direction | "unspecified";
}

export interface PrepareInput {
  readonly txnId: string;
  readonly legs: readonly LegInput[];
}

/** Reasons that make a Prepare malformed: rejected, nothing recorded. */
export type PrepareInvalid =
  | "invalid_txn_id"
  | "invalid_argument"
  | "invalid_amount"
  | "invalid_currency"
  | "invalid_account_id"
  | "txn_id_reused";

/** Reasons for a NO vote: recorded, so a re-delivered Prepare says NO again. */
export type NoReason =
  | "account_not_found"
  | "account_closed"
  | "currency_mismatch"
  | "not_account_owner"
  | "insufficient_funds"
  | "balance_limit_exceeded"
  | "txn_aborted"
  | HoldNoReason;

export type PrepareOutcome =
  | { readonly vote: "yes"; readonly redelivered: boolean }
  | { readonly vote: "no"; readonly reason: NoReason; readonly message: string; readonly redelivered: boolean };

export type CommitFailure = "invalid_txn_id" | "unknown_txn" | "txn_aborted";
export type AbortFailure = "invalid_txn_id" | "txn_committed";

export interface Decided {
  /** False when the txn was already in the requested state (a re-delivery). */
  readonly changed: boolean;
}

export function coordinatorOf(txnId: string): string {
  return txnId.slice(0, txnId.indexOf(":"));
}

export function checkTxnId(txnId: string): Result<string, "invalid_txn_id"> {
  return TXN_ID_PATTERN.test(txnId)
    ? ok(txnId)
    : fail("invalid_txn_id", `txn_id must look like "<replica>:<uuid>", got ${JSON.stringify(txnId.slice(0, 100))}`);
}

function checkShape(input: PrepareInput): Result<readonly Leg[], PrepareInvalid> {
  const id = checkTxnId(input.txnId);
  if (!id.ok) return id;
  if (input.legs.length === 0 || input.legs.length > LEGS_MAX)
    return fail("invalid_argument", `a txn has 1 to ${LEGS_MAX} legs, got ${input.legs.length}`);
  for (const [i, leg] of input.legs.entries()) {
    if (leg.direction === "unspecified")
      return fail("invalid_argument", `legs[${i}].direction must be DEBIT, CREDIT, AUTH_HOLD, CAPTURE or RELEASE`);
    const holdProblem = holdShapeProblem(leg, i);
    if (holdProblem) return fail("invalid_argument", holdProblem);
    if (!ACCOUNT_ID_PATTERN.test(leg.accountId))
      return fail("invalid_account_id", `legs[${i}].account_id must look like "<bank>/<number>"`);
    if (checkPositiveAmount(leg.amountMinor))
      return fail("invalid_amount", `legs[${i}].amount_minor must be in [1, ${AMOUNT_MINOR_MAX}]`);
    if (!parseCurrency(leg.currency))
      return fail("invalid_currency", `legs[${i}].currency must be three capital letters`);
  }
  const holdIds = input.legs.flatMap((l) => (isHoldDirection(l.direction) ? [l.holdId] : []));
  if (new Set(holdIds).size !== holdIds.length) return fail("invalid_argument", "a txn names each hold at most once");
  return ok(input.legs as readonly Leg[]);
}

function sameLegs(a: readonly Leg[], b: readonly Leg[]): boolean {
  return (
    a.length === b.length &&
    a.every((x, i) => {
      const y = b[i]!;
      return (
        x.accountId === y.accountId &&
        x.direction === y.direction &&
        x.amountMinor === y.amountMinor &&
        x.currency === y.currency &&
        (x.holdId ?? "") === (y.holdId ?? "") &&
        // A hold asked for by duration got its expiry from this bank's clock at the first Prepare: a resend asks for the same duration.
        (y.holdTtlMs !== undefined || (x.holdExpiresAtMs ?? 0) === (y.holdExpiresAtMs ?? 0))
      );
    })
  );
}

function bankOfAccount(accountId: string): string {
  return accountId.slice(0, accountId.indexOf("/"));
}

interface Touched {
  readonly account: Account;
  debitMinor: bigint;
  creditMinor: bigint;
}

/** Business checks; the first failing one is the vote's reason. */
function checkLegs(
  tx: LedgerTx,
  bank: string,
  legs: readonly Leg[],
  nowMs: number,
): { reason: NoReason; message: string } | Map<string, Touched> {
  const touched = new Map<string, Touched>();
  for (const [i, leg] of legs.entries()) {
    const account = bankOfAccount(leg.accountId) === bank ? tx.account(leg.accountId) : undefined;
    if (!account) return { reason: "account_not_found", message: `legs[${i}]: no account ${leg.accountId} at ${bank}` };
    if (account.status !== "open")
      return { reason: "account_closed", message: `legs[${i}]: account ${leg.accountId} is closed` };
    if (account.currency !== leg.currency)
      return {
        reason: "currency_mismatch",
        message: `legs[${i}]: account ${leg.accountId} holds ${account.currency}, not ${leg.currency}`,
      };
    // An authorization hold takes money out of `available` exactly like a debit.
    const reserves = leg.direction === "debit" || leg.direction === "auth_hold";
    if (reserves && leg.ownerUserId !== "" && leg.ownerUserId !== account.ownerUserId) {
      return {
        reason: "not_account_owner",
        message: `legs[${i}]: account ${leg.accountId} does not belong to ${leg.ownerUserId}`,
      };
    }
    if (isHoldDirection(leg.direction)) {
      const no = checkHoldLeg(tx, leg, i, nowMs);
      if (no) return no;
    }
    const t = touched.get(leg.accountId) ?? { account, debitMinor: 0n, creditMinor: 0n };
    if (reserves) t.debitMinor += leg.amountMinor;
    if (leg.direction === "credit") t.creditMinor += leg.amountMinor;
    touched.set(leg.accountId, t);
  }
  for (const [accountId, { account, debitMinor, creditMinor }] of touched) {
    // Existing holds (other prepared txns, card authorizations) count: money
    // promised to one txn cannot be promised again.
    if (account.balanceMinor - account.heldMinor < debitMinor)
      return { reason: "insufficient_funds", message: `account ${accountId} has too little available` };
    // Conservative: a debit of the same account in this txn makes no room.
    if (creditMinor > 0n && exceedsBalanceMax(tx, account, creditMinor)) {
      return {
        reason: "balance_limit_exceeded",
        message: `account ${accountId} would exceed the balance maximum of ${BALANCE_MINOR_MAX} minor units`,
      };
    }
  }
  return touched;
}

export function prepare(
  tx: LedgerTx,
  bank: string,
  input: PrepareInput,
  nowMs: number,
): Result<PrepareOutcome, PrepareInvalid> {
  const shape = checkShape(input);
  if (!shape.ok) return shape;
  // The expiry of a hold asked for by duration is decided here, on this bank's clock.
  const legs = shape.value.map((l) => (l.holdTtlMs !== undefined ? { ...l, holdExpiresAtMs: nowMs + l.holdTtlMs } : l));

  const existing = tx.txn(input.txnId);
  if (existing) {
    if (existing.state === "ABORTED") {
      const reason = (existing.voteReason as NoReason | undefined) ?? "txn_aborted";
      return ok({ vote: "no", reason, message: `txn ${input.txnId} is aborted at ${bank}`, redelivered: true });
    }
    // PREPARED or COMMITTED: the vote was YES and stays YES; no second hold.
    if (!sameLegs(tx.txnLegs(input.txnId), legs))
      return fail("txn_id_reused", `txn ${input.txnId} was prepared with other legs`);
    return ok({ vote: "yes", redelivered: true });
  }

  const checked = checkLegs(tx, bank, legs, nowMs);
  if (!(checked instanceof Map)) {
    const txn: Txn = {
      txnId: input.txnId,
      state: "ABORTED",
      coordinator: coordinatorOf(input.txnId),
      preparedAtMs: undefined,
      decidedAtMs: nowMs,
      tombstone: false,
      voteReason: checked.reason,
    };
    tx.insertTxn(txn, []);
    return ok({ vote: "no", reason: checked.reason, message: checked.message, redelivered: false });
  }

  tx.insertTxn(
    {
      txnId: input.txnId,
      state: "PREPARED",
      coordinator: coordinatorOf(input.txnId),
      preparedAtMs: nowMs,
      decidedAtMs: undefined,
      tombstone: false,
      voteReason: undefined,
    },
    legs,
  );
  for (const [accountId, { account, debitMinor }] of checked) {
    if (debitMinor === 0n) continue;
    const heldMinor = account.heldMinor + debitMinor;
    assert(heldMinor >= 0n, `held of ${accountId} negative`);
    assert(account.balanceMinor - heldMinor >= 0n, `available of ${accountId} negative after prepare`);
    tx.setAccountAmounts(accountId, account.balanceMinor, heldMinor);
  }
  for (const leg of legs) pinHoldLeg(tx, input.txnId, leg);
  return ok({ vote: "yes", redelivered: false });
}

export function commit(tx: LedgerTx, txnId: string, nowMs: number): Result<Decided, CommitFailure> {
  const id = checkTxnId(txnId);
  if (!id.ok) return id;
  const txn = tx.txn(txnId);
  if (!txn) return fail("unknown_txn", `txn ${txnId} was never prepared here`);
  if (txn.state === "COMMITTED") return ok({ changed: false });
  if (txn.state === "ABORTED") return fail("txn_aborted", `txn ${txnId} is aborted; it cannot commit`);

  const legs = tx.txnLegs(txnId);
  assert(legs.length > 0, `prepared txn ${txnId} has legs`);
  for (const leg of legs) {
    assert(leg.amountMinor > 0n, `leg amount of ${txnId} positive`);
    if (isHoldDirection(leg.direction)) {
      commitHoldLeg(tx, txnId, leg, nowMs);
      continue;
    }
    const account = tx.account(leg.accountId);
    assert(account !== undefined, `account ${leg.accountId} of prepared txn ${txnId} exists`);
    const signedMinor = leg.direction === "debit" ? -leg.amountMinor : leg.amountMinor;
    const balanceMinor = account.balanceMinor + signedMinor;
    const heldMinor = leg.direction === "debit" ? account.heldMinor - leg.amountMinor : account.heldMinor;
    assert(heldMinor >= 0n, `held of ${leg.accountId} negative after commit of ${txnId}`);
    assert(balanceMinor - heldMinor >= 0n, `available of ${leg.accountId} negative after commit of ${txnId}`);
    postEntry(tx, account, {
      txnId,
      kind: leg.direction === "debit" ? "transfer_debit" : "transfer_credit",
      amountMinor: signedMinor,
      heldAfterMinor: heldMinor,
      nowMs,
    });
  }
  tx.decideTxn(txnId, "COMMITTED", nowMs);
  return ok({ changed: true });
}

export function abort(tx: LedgerTx, txnId: string, nowMs: number): Result<Decided, AbortFailure> {
  const id = checkTxnId(txnId);
  if (!id.ok) return id;
  const txn = tx.txn(txnId);
  if (!txn) {
    tx.insertTxn(
      {
        txnId,
        state: "ABORTED",
        coordinator: coordinatorOf(txnId),
        preparedAtMs: undefined,
        decidedAtMs: nowMs,
        tombstone: true,
        voteReason: undefined,
      },
      [],
    );
    return ok({ changed: true });
  }
  if (txn.state === "ABORTED") return ok({ changed: false });
  if (txn.state === "COMMITTED") return fail("txn_committed", `txn ${txnId} is committed; it cannot abort`);

  for (const leg of tx.txnLegs(txnId)) {
    if (isHoldDirection(leg.direction)) {
      abortHoldLeg(tx, txnId, leg);
      continue;
    }
    if (leg.direction !== "debit") continue;
    const account = tx.account(leg.accountId);
    assert(account !== undefined, `account ${leg.accountId} of prepared txn ${txnId} exists`);
    const heldMinor = account.heldMinor - leg.amountMinor;
    assert(heldMinor >= 0n, `held of ${leg.accountId} negative after abort of ${txnId}`);
    tx.setAccountAmounts(leg.accountId, account.balanceMinor, heldMinor);
  }
  tx.decideTxn(txnId, "ABORTED", nowMs);
  return ok({ changed: true });
}
