// The bank's use cases: each one runs its rule inside one durable store
// transaction, then (only then) passes the named crash points the tests use
// to kill the process between "logged" and "answered".
import { AssertionError } from "@paygate/money";
import type { Faults } from "@paygate/faults";
import {
  abort,
  commit,
  prepare,
  type AbortFailure,
  type CommitFailure,
  type Decided,
  type PrepareInput,
  type PrepareInvalid,
  type PrepareOutcome,
} from "./domain/participant.js";
import {
  checkAccountId,
  deposit,
  openAccount,
  openSeedAccounts,
  type DepositFailure,
  type Deposited,
  type DepositInput,
  type OpenAccountFailure,
  type OpenAccountInput,
  type SeedAccountInput,
} from "./domain/ledger.js";
import { expireDueHolds, HOLD_ID_PATTERN } from "./domain/holds.js";
import {
  issueLinkCode,
  LINK_ATTEMPTS_MAX_DEFAULT,
  seedHolders,
  unlink,
  verifyLink,
  type IssueLinkCodeFailure,
  type IssueLinkCodeInput,
  type IssuedLinkCode,
  type Unlinked,
  type UnlinkFailure,
  type VerifyLinkFailure,
  type VerifyLinkInput,
} from "./domain/links.js";
import { reconcile, type Reconciliation } from "./domain/reconcile.js";
import { fail, ok, type Account, type Entry, type Hold, type Leg, type LedgerTx, type Result } from "./domain/types.js";
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
  /** Batches: every item in one durable write, each answered as its single call would be. */
  prepareMany(inputs: readonly PrepareInput[]): Result<PrepareOutcome, PrepareInvalid>[];
  commitMany(txnIds: readonly string[]): Result<Decided, CommitFailure>[];
  /**
   * Commits of earlier txns, then Prepares, in ONE durable write (a
   * PrepareBatch carrying Commits): each answered as its single call would be.
   */
  commitThenPrepareMany(
    txnIds: readonly string[],
    inputs: readonly PrepareInput[],
  ): [Result<Decided, CommitFailure>[], Result<PrepareOutcome, PrepareInvalid>[]];
  abortMany(txnIds: readonly string[]): Result<Decided, AbortFailure>[];
  openAccount(input: OpenAccountInput): Result<Account, OpenAccountFailure>;
  deposit(input: DepositInput): Result<Deposited, DepositFailure>;
  getAccount(accountId: string): Result<Account, "invalid_account_id" | "account_not_found">;
  listEntries(
    accountId: string,
    afterSequence: bigint,
    limit: number,
  ): Result<Entry[], "invalid_account_id" | "account_not_found" | "invalid_argument">;
  totals(): Totals;
  getHold(holdId: string): Result<Hold, "invalid_argument" | "hold_not_found">;
  /** One expiry sweep (bounded): releases ACTIVE holds past their expiry. */
  expireHolds(): Hold[];
  /** Linking (DESIGN.md §11): on success the account is durably the user's. */
  verifyLink(input: VerifyLinkInput): Result<Account, VerifyLinkFailure>;
  issueLinkCode(input: IssueLinkCodeInput): Result<IssuedLinkCode, IssueLinkCodeFailure>;
  unlink(accountId: string): Result<Unlinked, UnlinkFailure>;
}

/**
 * What the bank records, one call per fact. @paygate/telemetry's BankMetrics
 * satisfies it; without one nothing is recorded.
 */
export interface BankRecorder {
  readonly prepareVotes: { inc(labels: { vote: "yes" } | { vote: "no"; reason: string }): void };
  readonly decisions: { inc(labels: { decision: "commit" | "abort" }): void };
  readonly ledger: { post(labels: { direction: "debit" | "credit"; currency: string }, amountMinor: bigint): void };
  /** Times each durable write transaction (its COMMIT is the fsync). */
  readonly fsyncDuration: { time<T>(fn: () => T): T };
}

const NO_RECORDER: BankRecorder = {
  prepareVotes: { inc: () => {} },
  decisions: { inc: () => {} },
  ledger: { post: () => {} },
  fsyncDuration: { time: (fn) => fn() },
};

export interface BankOptions {
  readonly name: string;
  readonly store: LedgerStore;
  readonly faults: Faults;
  readonly metrics?: BankRecorder;
  readonly clock?: () => number;
  /** Failed link attempts on one account before its linking locks. */
  readonly linkAttemptsMax?: number;
  /**
   * A broken invariant: the write was rolled back; the process should log
   * and exit so the supervisor restarts it and recovery takes over.
   */
  readonly onInvariantBroken: (err: AssertionError) => void;
}

export function createBank(options: BankOptions): Bank {
  const { name, store, faults, onInvariantBroken } = options;
  const clock = options.clock ?? Date.now;
  const metrics = options.metrics ?? NO_RECORDER;
  const linkAttemptsMax = options.linkAttemptsMax ?? LINK_ATTEMPTS_MAX_DEFAULT;

  function write<T>(fn: (tx: LedgerTx, nowMs: number) => T): T {
    return writeAll([fn])[0]!;
  }

  function getAccount(accountId: string): Result<Account, "invalid_account_id" | "account_not_found"> {
    const id = checkAccountId(name, accountId);
    if (!id.ok) return id;
    const account = store.account(accountId);
    return account ? ok(account) : fail("account_not_found", `no account ${accountId} at ${name}`);
  }

  /** Many rule calls, one store transaction: one fsync for the lot (group commit). */
  function writeAll<T>(fns: ReadonlyArray<(tx: LedgerTx, nowMs: number) => T>): T[] {
    try {
      const now = clock();
      return metrics.fsyncDuration.time(() => store.transactAll(fns.map((fn) => (tx: LedgerTx) => fn(tx, now))));
    } catch (e) {
      if (e instanceof AssertionError) onInvariantBroken(e);
      throw e;
    }
  }

  type Write<T> = (tx: LedgerTx, now: number) => T;

  /** A batch of one kind of write: the rule calls, and what to record once they are durable. */
  interface Part<T> {
    readonly writes: Write<T>[];
    readonly before: () => void;
    readonly after: (results: T[]) => void;
  }

  function prepares(inputs: readonly PrepareInput[]): Part<Result<PrepareOutcome, PrepareInvalid>> {
    return {
      writes: inputs.map((input) => (tx, now) => prepare(tx, name, input, now)),
      before: () => {},
      after(results) {
        for (const r of results) {
          // A re-delivered Prepare repeats a vote already counted.
          if (r.ok && !r.value.redelivered)
            metrics.prepareVotes.inc(r.value.vote === "yes" ? { vote: "yes" } : { vote: "no", reason: r.value.reason });
        }
        // Logged (all of them, durably) but not yet answered.
        if (results.some((r) => r.ok && r.value.vote === "yes" && !r.value.redelivered))
          faults.hit("bank.after_prepare_logged");
      },
    };
  }

  /** Journal entries only: holds and releases move no balance; a capture posts a debit. */
  function postedDirection(l: Leg): "credit" | "debit" | undefined {
    if (l.direction === "credit") return "credit";
    return l.direction === "debit" || l.direction === "capture" ? "debit" : undefined;
  }

  function commits(txnIds: readonly string[]): Part<Result<Decided, CommitFailure>> {
    const posted: Leg[][] = txnIds.map(() => []);
    return {
      writes: txnIds.map((txnId, i) => (tx, now) => {
        const c = commit(tx, txnId, now);
        if (c.ok && c.value.changed) posted[i] = tx.txnLegs(txnId);
        return c;
      }),
      // Only a commit that will change something is a crash point worth testing.
      before: () => {
        if (txnIds.some((id) => store.txn(id)?.state === "PREPARED")) faults.hit("bank.before_commit_apply");
      },
      after(results) {
        let applied = false;
        for (const [i, r] of results.entries()) {
          if (!r.ok || !r.value.changed) continue;
          applied = true;
          metrics.decisions.inc({ decision: "commit" });
          for (const l of posted[i]!) {
            const direction = postedDirection(l);
            if (direction) metrics.ledger.post({ direction, currency: l.currency }, l.amountMinor);
          }
        }
        if (applied) faults.hit("bank.after_commit_applied");
      },
    };
  }

  function writeParts<A, B>(first: Part<A>, second: Part<B>): [A[], B[]] {
    first.before();
    second.before();
    const results = writeAll<A | B>([...first.writes, ...second.writes]);
    const a = results.slice(0, first.writes.length) as A[];
    const b = results.slice(first.writes.length) as B[];
    first.after(a);
    second.after(b);
    return [a, b];
  }

  const prepareMany = (inputs: readonly PrepareInput[]) => writeParts(prepares(inputs), commits([]))[0];
  const commitMany = (txnIds: readonly string[]) => writeParts(commits(txnIds), prepares([]))[0];
  /** Commits of earlier txns first, then new Prepares: one durable write for both. */
  const commitThenPrepareMany = (txnIds: readonly string[], inputs: readonly PrepareInput[]) =>
    writeParts(commits(txnIds), prepares(inputs));

  function abortMany(txnIds: readonly string[]): Result<Decided, AbortFailure>[] {
    const wasPrepared = txnIds.map(() => false);
    const results = writeAll(
      txnIds.map((txnId, i) => (tx: LedgerTx, now: number) => {
        wasPrepared[i] = tx.txn(txnId)?.state === "PREPARED";
        return abort(tx, txnId, now);
      }),
    );
    // Tombstones for unseen txns and repeats are not decisions applied to a prepared txn.
    for (const [i, r] of results.entries())
      if (r.ok && r.value.changed && wasPrepared[i]) metrics.decisions.inc({ decision: "abort" });
    return results;
  }

  return {
    name,
    loadSeedOnce(read) {
      if (store.isSeeded()) return undefined;
      const accounts = read();
      return store.seed((tx, links) => {
        const opened = openSeedAccounts(tx, name, accounts, clock());
        seedHolders(
          links,
          name,
          accounts.map((a) => ({
            id: a.id,
            holder: a.holder ?? "",
            ...(a.linkCode !== undefined ? { linkCode: a.linkCode } : {}),
          })),
          clock(),
        );
        return opened;
      });
    },
    prepare: (input) => prepareMany([input])[0]!,
    commit: (txnId) => commitMany([txnId])[0]!,
    abort: (txnId) => abortMany([txnId])[0]!,
    prepareMany,
    commitMany,
    commitThenPrepareMany,
    abortMany,
    openAccount: (input) => write((tx, now) => openAccount(tx, name, input, now)),
    deposit(input) {
      const r = write((tx, now) => deposit(tx, name, input, now));
      if (r.ok && r.value.changed)
        metrics.ledger.post({ direction: "credit", currency: input.currency }, input.amountMinor);
      return r;
    },
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
    getHold(holdId) {
      if (!HOLD_ID_PATTERN.test(holdId))
        return fail("invalid_argument", "hold_id must be 1-128 characters of letters, digits and _ . : -");
      const hold = store.hold(holdId);
      return hold ? ok(hold) : fail("hold_not_found", `no hold ${holdId} at ${name}`);
    },
    expireHolds: () => write((tx, now) => expireDueHolds(tx, now)),
    verifyLink(input) {
      const r = store.transactLinks((tx) => verifyLink(tx, name, input, clock(), linkAttemptsMax));
      if (!r.ok) return r;
      // Durably the user's, not yet answered.
      if (r.value.changed) faults.hit("bank.after_link_verified");
      return ok(r.value.account);
    },
    issueLinkCode: (input) => store.transactLinks((tx) => issueLinkCode(tx, name, input, clock())),
    unlink: (accountId) => store.transactLinks((tx) => unlink(tx, name, accountId, clock())),
  };
}
