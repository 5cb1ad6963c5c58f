// The bank's vocabulary: accounts, the immutable journal, participant txns
// and deposits, plus the one port (LedgerTx) through which the rules read and
// change them inside a single atomic transaction.

// auth_hold / capture / release are card-authorization legs on a standing
// hold (see holds.ts); debit / credit are plain transfers.
export type Direction = "debit" | "credit" | "auth_hold" | "capture" | "release";
export type TxnState = "PREPARED" | "COMMITTED" | "ABORTED";
export type AccountStatus = "open" | "closed";
export type EntryKind = "opening" | "deposit" | "transfer_debit" | "transfer_credit" | "capture_debit";

/** Entry kinds that bring money into the system (what balances must sum to). */
export const DEPOSITED_KINDS: readonly EntryKind[] = ["opening", "deposit"];

export interface Account {
  readonly accountId: string;
  readonly ownerUserId: string;
  readonly currency: string;
  readonly balanceMinor: bigint;
  readonly heldMinor: bigint;
  readonly status: AccountStatus;
  readonly openedAtMs: number;
}

export interface Leg {
  readonly accountId: string;
  readonly direction: Direction;
  readonly amountMinor: bigint;
  readonly currency: string;
  /** For debits: the account must belong to this user ("" = not checked). */
  readonly ownerUserId: string;
  /** For auth_hold, capture and release: the standing hold's id. */
  readonly holdId?: string;
  /** For auth_hold: when the bank releases the hold on its own (this bank's clock). */
  readonly holdExpiresAtMs?: number;
  /**
   * For auth_hold, as the gateway sends it: how long to keep the hold, from
   * the moment this bank prepares it (the bank's clock alone decides the expiry).
   */
  readonly holdTtlMs?: number;
}

export type HoldState = "ACTIVE" | "CAPTURED" | "RELEASED" | "EXPIRED";

/**
 * A standing (card authorization) hold: money kept out of `available` after
 * its auth_hold txn committed, until captured, released or expired.
 */
export interface Hold {
  readonly holdId: string;
  readonly accountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly state: HoldState;
  readonly expiresAtMs: number;
  readonly capturedMinor: bigint;
  /** The auth_hold txn that placed it. */
  readonly txnId: string;
  /**
   * A PREPARED capture or release txn that has claimed the hold ("" = none).
   * The expiry sweeper leaves a pinned hold alone: that txn voted YES, so its
   * commit must still find the hold ACTIVE.
   */
  readonly pinnedTxnId: string;
  readonly createdAtMs: number;
  /** When it left ACTIVE (0 while ACTIVE). */
  readonly closedAtMs: number;
}

export interface HoldChange {
  readonly state: HoldState;
  readonly capturedMinor: bigint;
  readonly pinnedTxnId: string;
  readonly closedAtMs: number;
}

export interface Txn {
  readonly txnId: string;
  readonly state: TxnState;
  /** Coordinator replica that decides this txn (the txn id's prefix). */
  readonly coordinator: string;
  /** Undefined for a tombstone: an Abort for a txn never prepared here. */
  readonly preparedAtMs: number | undefined;
  readonly decidedAtMs: number | undefined;
  readonly tombstone: boolean;
  /** Why this bank voted NO, when it did. */
  readonly voteReason: string | undefined;
}

export interface Entry {
  readonly sequence: bigint;
  readonly accountId: string;
  /** The participant txn id, the deposit id, or "opening". */
  readonly txnId: string;
  readonly kind: EntryKind;
  /** Signed: negative for debits. */
  readonly amountMinor: bigint;
  readonly balanceAfterMinor: bigint;
  readonly createdAtMs: number;
}

export interface Deposit {
  readonly depositId: string;
  readonly accountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly createdAtMs: number;
}

/**
 * Everything the rules may read or write, valid only inside one atomic
 * transaction (SQLite in production, a Map in unit tests). Reads see the
 * writes made earlier in the same transaction.
 */
export interface LedgerTx {
  account(accountId: string): Account | undefined;
  insertAccount(account: Account, number: bigint): void;
  /** Highest account number in use at this bank (0n when none). */
  maxAccountNumber(): bigint;
  setAccountAmounts(accountId: string, balanceMinor: bigint, heldMinor: bigint): void;
  appendEntry(entry: Omit<Entry, "sequence">): bigint;
  /** The latest entry of an account, if any (its balance_after must equal the balance). */
  lastEntry(accountId: string): Entry | undefined;

  txn(txnId: string): Txn | undefined;
  txnLegs(txnId: string): Leg[];
  /**
   * Sum of the credit legs of PREPARED txns on this account: money that will
   * arrive if they commit, so the balance maximum must leave room for it.
   * Optional only because the simulator's store (test/sim/undo-ledger.ts) does
   * not implement it yet; both production stores do, and without it prepared
   * credits count as 0.
   */
  preparedCreditMinor?(accountId: string): bigint;
  insertTxn(txn: Txn, legs: readonly Leg[]): void;
  decideTxn(txnId: string, state: "COMMITTED" | "ABORTED", decidedAtMs: number): void;

  deposit(depositId: string): Deposit | undefined;
  insertDeposit(deposit: Deposit): void;

  hold(holdId: string): Hold | undefined;
  insertHold(hold: Hold): void;
  updateHold(holdId: string, change: HoldChange): void;
  /** The PREPARED txn with an auth_hold leg for this hold id, if any. */
  preparedAuthHold(holdId: string): string | undefined;
  /** ACTIVE, unpinned holds whose expiry is at or before nowMs, earliest first. */
  dueHolds(nowMs: number, limit: number): Hold[];
}

/** Failures are values (the vocabulary's one Result shape); `reason` is a key of the shared error table. */
export { fail, ok, type Result } from "@paygate/vocab";
