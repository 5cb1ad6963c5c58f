// What the domain needs from the outside world, as small interfaces. The
// SQLite store, the Connect bank clients and the test fakes implement them.
import type { Reason } from "@paygate/vocab";
import type { CardStore } from "./cards-ports.js";
import type { WebhookStore } from "./webhooks-ports.js";
import type {
  AckTask,
  Decided,
  Decision,
  DecisionRecord,
  DirectoryAccount,
  NewTxn,
  RoundRecord,
  TxnRecord,
  UnackedDecision,
} from "./model.js";

export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** The subset of pino the domain uses. */
export interface EventLogger {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

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
  /** AUTH_HOLD: how long the bank keeps the hold, on its own clock from its prepare (the bank's clock decides the expiry). */
  readonly holdTtlMs?: number;
}

export type Vote = { readonly vote: "YES" } | { readonly vote: "NO"; readonly reason: Reason };

/**
 * A resend outcome. `transient: false` means the participant answered and
 * said something that must not happen (e.g. Commit -> unknown_txn): an alarm.
 */
export type Delivery =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: string; readonly transient: boolean };

/** The banks' side of two-phase commit. Implementations never throw. */
export interface Participants {
  /** Resolves with the vote; a timeout or transport error is a NO with participant_timeout / participant_unavailable. */
  prepare(bank: string, txnId: string, legs: readonly Leg[], signal: AbortSignal): Promise<Vote>;
  commit(bank: string, txnId: string, timeoutMs: number): Promise<Delivery>;
  abort(bank: string, txnId: string, timeoutMs: number): Promise<Delivery>;
}

export type Claim =
  | { readonly claimed: true; readonly txn: TxnRecord }
  | { readonly claimed: false; readonly owner: TxnRecord };

/**
 * Exactly-once per (caller, idempotency key). The durable log implements it
 * (its unique index is the guard, across every replica sharing the store); a
 * Redis fast path wraps it (answers repeats from Redis, falls through to the
 * log for anything it does not know).
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

export interface InDoubtSummary {
  /** Txns PENDING (no decision yet) plus decided txns some participant has not acknowledged. */
  readonly count: number;
  /** Age of the oldest of them, from its creation; 0 when there is none. */
  readonly oldestAgeSeconds: number;
}

/**
 * The coordinator's durable log. Every write resolves once it is durable
 * (fsync'd SQLite, or COMMIT with synchronous_commit on); concurrent writes
 * share one transaction (group commit). A store that cannot be reached
 * rejects with StoreUnavailableError.
 */
export interface CoordinatorLog extends IdempotencyClaims {
  findTxn(txnId: string): Promise<TxnRecord | undefined>;
  /** Registers a card round's participants before any of its prepares is sent (insert-if-absent). */
  registerRound(round: RoundRecord): Promise<void>;
  findRound(txnId: string): Promise<RoundRecord | undefined>;
  /**
   * Insert-if-absent: the first decision logged for a txn wins forever; the
   * answer is the winner, which may not be `input.decision`. Logging it also
   * settles the txn's status and its place in the history, in the same write.
   */
  decide(input: DecideInput): Promise<Decided>;
  findDecision(txnId: string): Promise<DecisionRecord | undefined>;
  /** Participants that have not acknowledged the txn's decision yet. */
  unackedBanks(txnId: string): Promise<string[]>;
  /** May become durable a little later (a lost ack costs one idempotent resend). Never rejects. */
  ack(txnId: string, bank: string, nowMs: number): void;
  /** Records a failed resend and when to try again. Never rejects. */
  deferAck(txnId: string, bank: string, attempts: number, nextAttemptAtMs: number, error: string): void;
  /**
   * Unacknowledged (txn, bank) pairs due at nowMs, oldest first, claimed for
   * `claimMs`: no other replica gets them until then (shared redrive).
   */
  dueAcks(nowMs: number, limit: number, claimMs: number): Promise<AckTask[]>;
  /** Makes every unacknowledged pair due now (start-up recovery). */
  rescheduleUnacked(nowMs: number): Promise<number>;
  /**
   * PENDING txns that have no decision, oldest first: of one replica (its txn
   * id prefix) when `replica` is given, created before `createdBeforeMs`.
   */
  pendingUndecided(
    limit: number,
    filter?: { readonly replica?: string; readonly createdBeforeMs?: number },
  ): Promise<TxnRecord[]>;
  /** Registered rounds of one replica that have no decision, created before `createdBeforeMs`. */
  undecidedRounds(limit: number, replica: string, createdBeforeMs: number): Promise<RoundRecord[]>;
  unackedDecisions(limit: number): Promise<UnackedDecision[]>;
  inDoubtSummary(nowMs: number): Promise<InDoubtSummary>;
}

/** Read side of the log for customers. */
export interface TxnHistory {
  findTxn(txnId: string): Promise<TxnRecord | undefined>;
  /** Decided txns after `afterSequence` that the user initiated or that touch an account the user owns, by sequence. */
  listVisible(userId: string, afterSequence: bigint, limit: number): Promise<TxnRecord[]>;
}

/**
 * Which bank holds an account, who owns it, its currency. Found entries may
 * be cached: a row changes only by remove() (unlinking, DESIGN.md §11), and
 * then every replica drops its cached entry (PostgreSQL: LISTEN/NOTIFY). A
 * stale entry cannot move money meanwhile: the bank checks the owner of
 * every debit at Prepare, and GetBalance checks the bank's owner too.
 */
export interface Directory {
  find(accountId: string): Promise<DirectoryAccount | undefined>;
  ownedBy(userId: string): Promise<DirectoryAccount[]>;
  /** False if the id is already taken. */
  add(account: DirectoryAccount, nowMs: number): Promise<boolean>;
  /** Removes the entry (unlinking); the removed row, or undefined when there was none. */
  remove(accountId: string): Promise<DirectoryAccount | undefined>;
}

export interface RateCount {
  /** Hits in the current window, this one included. */
  readonly count: number;
  /** When the current window ends (a new one starts at the next hit after it). */
  readonly resetAtMs: number;
}

/**
 * Fixed-window counters per (scope, key): sign-ups per client, link attempts
 * per user. Kept in the store, so every replica's hits add up.
 */
export interface RateLimits {
  /** Counts one hit atomically (concurrent hits on any replica all count). */
  hit(scope: string, key: string, nowMs: number, windowMs: number): Promise<RateCount>;
  /** Deletes counters whose window ended before nowMs, at most `limit`; returns how many. */
  purgeExpired(nowMs: number, limit: number): Promise<number>;
}

export interface UserRecord {
  readonly userId: string;
  readonly username: string;
  readonly passwordHash: string;
  readonly roles: readonly string[];
  readonly displayName: string;
}

/** Failed logins of one username from one client (brute-force protection that costs the attacker, not the customer). */
export interface LoginFailures {
  readonly failures: number;
  readonly lockedUntilMs: number;
}

export interface Users {
  byUsername(username: string): Promise<UserRecord | undefined>;
  byId(userId: string): Promise<UserRecord | undefined>;
  /** False if the user id or username is taken. */
  create(user: UserRecord, nowMs: number): Promise<boolean>;
  loginFailures(userId: string, client: string): Promise<LoginFailures>;
  /**
   * Counts one failure atomically (every replica's failures add up); at
   * `failuresMax` the pair is locked until nowMs + lockMs and the count restarts.
   */
  recordLoginFailure(
    userId: string,
    client: string,
    nowMs: number,
    failuresMax: number,
    lockMs: number,
  ): Promise<LoginFailures>;
  clearLoginFailures(userId: string, client: string): Promise<void>;
}

export interface SessionRecord {
  readonly tokenHash: string;
  readonly userId: string;
  readonly expiresAtMs: number;
}

export interface Sessions {
  create(session: SessionRecord, nowMs: number): Promise<void>;
  find(tokenHash: string): Promise<SessionRecord | undefined>;
  revoke(tokenHash: string): Promise<void>;
  /** Deletes expired sessions, at most `limit`; returns how many. */
  purgeExpired(nowMs: number, limit: number): Promise<number>;
}

/** Liveness of the replicas sharing a store (DESIGN.md §3b): a heartbeat renews a lease. */
export interface ReplicaLeases {
  /** Renews this replica's lease for leaseMs (measured on the store's clock). */
  heartbeat(replica: string, bootId: string, leaseMs: number): Promise<void>;
  /** True while the replica's lease has not run out. */
  isAlive(replica: string): Promise<boolean>;
  /**
   * Replicas (other than `self`) whose lease ran out more than graceMs ago
   * and that nobody has taken over since: each is claimed for `self` while
   * its takeover runs, so two live replicas do not do the same work.
   */
  claimExpired(self: string, graceMs: number, limit: number): Promise<string[]>;
  /** The takeover of `replica` is done (until it heartbeats again). */
  takenOver(replica: string, by: string): Promise<void>;
}

/** What the seed file puts in a new store (password hashes already computed). */
export interface SeedData {
  readonly users: readonly UserRecord[];
  readonly accounts: readonly DirectoryAccount[];
}

export interface SeedReport {
  readonly loaded: boolean;
  readonly users: number;
  readonly accounts: number;
}

/**
 * Everything a gateway replica keeps (DESIGN.md §3b), behind one port:
 * SQLite for one replica (the laptop default), PostgreSQL shared by any
 * number. A replica keeps only caches; the contract tests in
 * store/contract.ts hold both adapters to the same behaviour.
 */
export interface GatewayStore {
  readonly kind: "sqlite" | "postgres";
  /** Several replicas may share it: any replica answers for any txn. */
  readonly shared: boolean;
  readonly log: CoordinatorLog & TxnHistory;
  readonly directory: Directory;
  readonly users: Users;
  readonly sessions: Sessions;
  readonly cards: CardStore;
  readonly leases: ReplicaLeases;
  readonly limits: RateLimits;
  /** Webhook endpoints, the event outbox and deliveries (DESIGN.md §12). */
  readonly webhooks: WebhookStore;
  /** True once a seed has been loaded (by any replica). */
  seeded(): Promise<boolean>;
  /** Loads the seed's users and accounts once, into an empty store (the first replica to get there). */
  seedOnce(seed: SeedData, nowMs: number): Promise<SeedReport>;
  /** Called when any replica logs a decision (PostgreSQL: LISTEN/NOTIFY), so ListTransactions followers wake. */
  onDecided(listener: () => void): void;
  /** False while the database cannot be reached (readiness). */
  healthy(): boolean;
  /** Waits for queued writes, then closes. */
  close(): Promise<void>;
}

/** Thrown by a store that cannot reach its database; routes answer `unavailable` / store_unavailable. */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
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

export interface VerifyLinkInput {
  readonly accountId: string;
  readonly holderName: string;
  readonly linkCode: string;
  /** The user the account is to belong to. */
  readonly userId: string;
}

/** The banks' side of linking (DESIGN.md §11). Implementations never throw. */
export interface BankLinks {
  /** On success the bank has made the account the user's (durably); link_failed / link_locked otherwise. */
  verify(bank: string, input: VerifyLinkInput): Promise<BankResult<BankAccount>>;
  issueCode(
    bank: string,
    accountId: string,
    holderName: string,
  ): Promise<BankResult<{ readonly linkCode: string; readonly holderName: string }>>;
  unlink(
    bank: string,
    accountId: string,
  ): Promise<BankResult<{ readonly account: BankAccount; readonly previousOwnerUserId: string }>>;
}

/** The banks' ledgers (reads and admin writes). Implementations never throw. */
export interface Ledgers {
  getAccount(bank: string, accountId: string): Promise<BankResult<BankAccount>>;
  openAccount(bank: string, ownerUserId: string, currency: string): Promise<BankResult<BankAccount>>;
  deposit(
    bank: string,
    depositId: string,
    accountId: string,
    amountMinor: bigint,
    currency: string,
  ): Promise<BankResult<BankAccount>>;
  totals(bank: string, timeoutMs: number): Promise<BankResult<BankTotals>>;
}
