// The bank's use cases: each one runs its rule inside one durable store
// transaction, then (only then) passes the named crash points the tests use
// to kill the process between "logged" and "answered".
import { AssertionError } from "@paygate/money";
import type { Faults } from "@paygate/faults";
import { abort, commit, prepare, type AbortFailure, type CommitFailure, type Decided, type PrepareInput, type PrepareInvalid, type PrepareOutcome } from "./domain/participant.js";
import { checkAccountId, deposit, openAccount, openSeedAccounts, type DepositFailure, type Deposited, type DepositInput, type OpenAccountFailure, type OpenAccountInput, type SeedAccountInput } from "./domain/ledger.js";
import { reconcile, type Reconciliation } from "./domain/reconcile.js";
import { fail, ok, type Account, type Entry, type LedgerTx, type Result } from "./domain/types.js";
import type { LedgerStore, PreparedRef } from "./store/ledger-store.js";

export const ENTRIES_PAGE_MAX = 1000;
/** Totals lists at most this many prepared txns (oldest first). */
export const PREPARED_LIST_MAX = 1000;

export interface Totals extends Reconciliation {
  readonly bank: string;
  readonly prepared: readonly PreparedRef[];
}

export interface Bank {
  readonly name: string;
  /** First start only: opens this bank's seed accounts. Returns how many, or undefined if already seeded. */
  loadSeedOnce(read: () => readonly SeedAccountInput[]): number | undefined;
  prepare(input: PrepareInput): Result<PrepareOutcome, PrepareInvalid>;
  commit(txnId: string): Result<Decided, CommitFailure>;
  abort(txnId: string): Result<Decided, AbortFailure>;
  openAccount(input: OpenAccountInput): Result<Account, OpenAccountFailure>;
  deposit(input: DepositInput): Result<Deposited, DepositFailure>;
  getAccount(accountId: string): Result<Account, "invalid_account_id" | "account_not_found">;
  listEntries(accountId: string, afterSequence: bigint, limit: number): Result<Entry[], "invalid_account_id" | "account_not_found" | "invalid_argument">;
  totals(): Totals;
}

export interface BankOptions {
  readonly name: string;
  readonly store: LedgerStore;
  readonly faults: Faults;
  readonly clock?: () => number;
  /**
   * A broken invariant: the write was rolled back; the process should log
   * and exit so the supervisor restarts it and recovery takes over.
   */
  readonly onInvariantBroken: (err: AssertionError) => void;
}

export function createBank(options: BankOptions): Bank {
  const { name, store, faults, onInvariantBroken } = options;
  const clock = options.clock ?? Date.now;

  function write<T>(fn: (tx: LedgerTx, nowMs: number) => T): T {
    try {
      return store.transact((tx) => fn(tx, clock()));
    } catch (e) {
      if (e instanceof AssertionError) onInvariantBroken(e);
      throw e;
    }
  }

  function getAccount(accountId: string): Result<Account, "invalid_account_id" | "account_not_found"> {
    const id = checkAccountId(name, accountId);
    if (!id.ok) return id;
    const account = store.account(accountId);
    return account ? ok(account) : fail("account_not_found", `no account ${accountId} at ${name}`);
  }

  return {
    name,
    loadSeedOnce(read) {
      if (store.isSeeded()) return undefined;
      const accounts = read();
      return store.seed((tx) => openSeedAccounts(tx, name, accounts, clock()));
    },
    prepare(input) {
      const r = write((tx, now) => prepare(tx, name, input, now));
      if (r.ok && r.value.vote === "yes" && !r.value.redelivered) faults.hit("bank.after_prepare_logged");
      return r;
    },
    commit(txnId) {
      // Only a commit that will change something is a crash point worth testing.
      if (store.txn(txnId)?.state === "PREPARED") faults.hit("bank.before_commit_apply");
      const r = write((tx, now) => commit(tx, txnId, now));
      if (r.ok && r.value.changed) faults.hit("bank.after_commit_applied");
      return r;
    },
    abort: (txnId) => write((tx, now) => abort(tx, txnId, now)),
    openAccount: (input) => write((tx, now) => openAccount(tx, name, input, now)),
    deposit: (input) => write((tx, now) => deposit(tx, name, input, now)),
    getAccount,
    listEntries(accountId, afterSequence, limit) {
      if (afterSequence < 0n) return fail("invalid_argument", "after_sequence must be >= 0");
      if (limit < 0) return fail("invalid_argument", "limit must be >= 0");
      const account = getAccount(accountId);
      if (!account.ok) return account;
      const pageSize = limit === 0 || limit > ENTRIES_PAGE_MAX ? ENTRIES_PAGE_MAX : limit;
      return ok(store.listEntries(accountId, afterSequence, pageSize));
    },
    totals() {
      return { bank: name, ...reconcile(store.audit()), prepared: store.prepared(PREPARED_LIST_MAX) };
    },
  };
}
