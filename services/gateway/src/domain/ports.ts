// What the domain needs from the outside world, as small interfaces. The
// SQLite store, the Connect bank clients and the test fakes implement them.
import type { Reason } from "@paygate/rpc";
import type { AckTask, Decision, DecisionRecord, DirectoryAccount, NewTxn, TxnRecord, UnackedDecision } from "./model.js";

export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** AUTH_HOLD / CAPTURE / RELEASE act on a card authorization's standing hold at the issuing bank. */
export type LegDirection = "DEBIT" | "CREDIT" | "AUTH_HOLD" | "CAPTURE" | "RELEASE";

export interface Leg {
  readonly accountId: string;
  readonly direction: LegDirection;
  readonly amountMinor: bigint;
  readonly currency: string;
  /** Debits: the bank checks the account belongs to this user. */
  readonly ownerUserId: string;
  /** AUTH_HOLD, CAPTURE, RELEASE: the standing hold's id. */
  readonly holdId?: string;
  /** AUTH_HOLD: when the bank releases the hold on its own. */
  readonly holdExpiresAtMs?: number;
}

export type Vote = { readonly vote: "YES" } | { readonly vote: "NO"; readonly reason: Reason };

/**
 * A resend outcome. `transient: false` means the participant answered and
 * said something that must not happen (e.g. Commit -> unknown_txn): an alarm.
 */
export type Delivery = { readonly ok: true } | { readonly ok: false; readonly reason: string; readonly transient: boolean };

/** The banks' side of two-phase commit. Implementations never throw. */
export interface Participants {
  /** Resolves with the vote; a timeout or transport error is a NO with participant_timeout / participant_unavailable. */
  prepare(bank: string, txnId: string, legs: readonly Leg[], signal: AbortSignal): Promise<Vote>;
  commit(bank: string, txnId: string, timeoutMs: number): Promise<Delivery>;
  abort(bank: string, txnId: string, timeoutMs: number): Promise<Delivery>;
}

export type Claim = { readonly claimed: true; readonly txn: TxnRecord } | { readonly claimed: false; readonly owner: TxnRecord };

/**
 * Exactly-once per (caller, idempotency key). The durable log implements it;
 * a Redis fast path can wrap it later (answer repeats from Redis, fall through
 * to the log for anything it does not know), because the log's unique index
 * stays the guard that money never moves twice.
 */
export interface IdempotencyClaims {
  /** Inserts txn PENDING as the key's owner, or returns the txn that owns the key. */
  claim(txn: NewTxn): Promise<Claim>;
  /**
   * Moves the key from `previousTxnId` (ABORTED, stays in the log) to a new
   * txn in one atomic step. If the previous txn no longer owns the key (a
   * concurrent retry won), returns the current owner unclaimed.
   */
  reclaim(previousTxnId: string, txn: NewTxn): Promise<Claim>;
}

export interface DecideInput {
  readonly txnId: string;
  readonly decision: Decision;
  /** Abort reason, "" for COMMIT. */
  readonly reason: string;
  /** Banks that must acknowledge the decision. */
  readonly participants: readonly string[];
  readonly nowMs: number;
  /** When the redrive loop may first resend (the caller sends the first attempt itself). */
  readonly firstResendAtMs: number;
}

/** The coordinator's durable log. Synchronous: it is a local fsync'd SQLite file. */
export interface CoordinatorLog extends IdempotencyClaims {
  findTxn(txnId: string): TxnRecord | undefined;
  /**
   * Insert-if-absent: the first decision logged for a txn wins forever; the
   * return value is the winner, which may not be `input.decision`. Logging it
   * also settles the txn's status and its place in the history.
   */
  decide(input: DecideInput): DecisionRecord;
  /** decide(), resolved once durable; concurrent callers may share one fsync (group commit). */
  decideDurably(input: DecideInput): Promise<DecisionRecord>;
  findDecision(txnId: string): DecisionRecord | undefined;
  /** May become durable a little later (a lost ack costs one idempotent resend); readers below see it. */
  ack(txnId: string, bank: string, nowMs: number): void;
  /** Records a failed resend and when to try again. */
  deferAck(txnId: string, bank: string, attempts: number, nextAttemptAtMs: number, error: string): void;
  /** Unacknowledged (txn, bank) pairs due at nowMs, oldest first. */
  dueAcks(nowMs: number, limit: number): AckTask[];
  /** Makes every unacknowledged pair due now (start-up recovery). */
  rescheduleUnacked(nowMs: number): number;
  /** PENDING txns that have no decision (the process died mid-prepare). */
  pendingUndecided(limit: number): TxnRecord[];
  unackedDecisions(limit: number): UnackedDecision[];
}

/** Read side of the log for customers. */
export interface TxnHistory {
  findTxn(txnId: string): TxnRecord | undefined;
  /** Decided txns after `afterSequence` that the user initiated or that touch an account the user owns, by sequence. */
  listVisible(userId: string, afterSequence: bigint, limit: number): TxnRecord[];
}

export interface Directory {
  find(accountId: string): DirectoryAccount | undefined;
  ownedBy(userId: string): DirectoryAccount[];
  /** False if the id is already taken. */
  add(account: DirectoryAccount, nowMs: number): boolean;
}

export interface UserRecord {
  readonly userId: string;
  readonly username: string;
  readonly passwordHash: string;
  readonly roles: readonly string[];
  readonly displayName: string;
  readonly failedLogins: number;
  readonly lockedUntilMs: number;
}

export interface Users {
  byUsername(username: string): UserRecord | undefined;
  byId(userId: string): UserRecord | undefined;
  /** False if the user id or username is taken. */
  create(user: Omit<UserRecord, "failedLogins" | "lockedUntilMs">, nowMs: number): boolean;
  /** Sets the failure count and lock of one user. */
  setLoginState(userId: string, failedLogins: number, lockedUntilMs: number): void;
}

export interface SessionRecord {
  readonly tokenHash: string;
  readonly userId: string;
  readonly expiresAtMs: number;
}

export interface Sessions {
  create(session: SessionRecord, nowMs: number): void;
  find(tokenHash: string): SessionRecord | undefined;
  revoke(tokenHash: string): void;
  /** Deletes expired sessions, at most `limit`; returns how many. */
  purgeExpired(nowMs: number, limit: number): number;
}

/** A bank's view of one account. */
export interface BankAccount {
  readonly accountId: string;
  readonly ownerUserId: string;
  readonly currency: string;
  readonly balanceMinor: bigint;
  readonly heldMinor: bigint;
  readonly availableMinor: bigint;
}

export interface BankCurrencyTotal {
  readonly currency: string;
  readonly balanceMinor: bigint;
  readonly heldMinor: bigint;
  readonly depositedMinor: bigint;
  readonly transferNetMinor: bigint;
}

export interface BankTotals {
  readonly bank: string;
  readonly currencies: readonly BankCurrencyTotal[];
  readonly prepared: readonly { readonly txnId: string; readonly preparedAtMs: number }[];
  readonly ledgerConsistent: boolean;
  readonly problems: readonly string[];
}

/** A bank call that failed: the bank's reason, or participant_unavailable / participant_timeout. */
export interface BankFailure {
  readonly ok: false;
  readonly reason: Reason;
  readonly message: string;
}

export type BankResult<T> = { readonly ok: true; readonly value: T } | BankFailure;

/** The banks' ledgers (reads and admin writes). Implementations never throw. */
export interface Ledgers {
  getAccount(bank: string, accountId: string): Promise<BankResult<BankAccount>>;
  openAccount(bank: string, ownerUserId: string, currency: string): Promise<BankResult<BankAccount>>;
  deposit(bank: string, depositId: string, accountId: string, amountMinor: bigint, currency: string): Promise<BankResult<BankAccount>>;
  totals(bank: string, timeoutMs: number): Promise<BankResult<BankTotals>>;
}
