// What a customer reads: balances (from the banks), one transaction, and the
// history of txns touching their accounts. Nothing here reveals another
// owner's account or txn, not even whether it exists.
import { ACCOUNT_ID_PATTERN, TXN_ID_PATTERN, type AccountView } from "@paygate/vocab";
import type { DecidedFeed } from "./decided-feed.js";
import { fail, ok, type DirectoryAccount, type Result, type TxnRecord } from "./model.js";
import type { BankAccount, Directory, Ledgers, TxnHistory } from "./ports.js";

export type { AccountView };

export interface PaymentQueriesOptions {
  readonly directory: Directory;
  readonly history: TxnHistory;
  readonly ledgers: Ledgers;
  readonly feed: DecidedFeed;
}

export interface ListOptions {
  readonly afterSequence: bigint;
  readonly limit: number;
  readonly follow: boolean;
  readonly signal: AbortSignal;
}

export interface PaymentQueries {
  getBalance(callerUserId: string, accountId: string): Promise<Result<AccountView[]>>;
  getTransaction(callerUserId: string, txnId: string): Promise<Result<TxnRecord>>;
  /** Checks the options; the stream ends when not following, or when the signal aborts. */
  listTransactions(callerUserId: string, options: ListOptions): Result<AsyncIterable<TxnRecord>>;
}

export const LIST_LIMIT_MAX = 1000;
/** Rows read from the log per query while streaming a backlog. */
const LIST_PAGE_MAX = 500;

export function accountView(dir: DirectoryAccount, bank: BankAccount): AccountView {
  return {
    accountId: dir.accountId,
    bank: dir.bank,
    ownerUserId: dir.ownerUserId,
    currency: bank.currency,
    balanceMinor: bank.balanceMinor,
    heldMinor: bank.heldMinor,
    availableMinor: bank.availableMinor,
  };
}

export function createPaymentQueries(o: PaymentQueriesOptions): PaymentQueries {
  const { directory, history, ledgers, feed } = o;

  async function getBalance(callerUserId: string, accountId: string): Promise<Result<AccountView[]>> {
    let accounts: DirectoryAccount[];
    if (accountId !== "") {
      if (!ACCOUNT_ID_PATTERN.test(accountId))
        return fail("invalid_account_id", 'account_id must look like "<bank>/<number>"', { field: "account_id" });
      const acct = await directory.find(accountId);
      if (!acct) return fail("account_not_found", `account ${accountId} not found`, { account_id: accountId });
      if (acct.ownerUserId !== callerUserId)
        return fail("not_account_owner", `you do not own ${accountId}`, { account_id: accountId });
      accounts = [acct];
    } else {
      accounts = await directory.ownedBy(callerUserId);
    }
    const answers = await Promise.all(accounts.map((a) => ledgers.getAccount(a.bank, a.accountId)));
    const views: AccountView[] = [];
    for (const [i, r] of answers.entries()) {
      const dir = accounts[i];
      if (!dir) continue;
      if (!r.ok) return fail(r.reason, `bank ${dir.bank}: ${r.message}`, { account_id: dir.accountId, bank: dir.bank });
      // The bank is the truth for ownership: a directory entry cached from before an unlink (DESIGN.md §11) shows nothing.
      if (r.value.ownerUserId !== callerUserId) {
        if (accountId !== "")
          return fail("not_account_owner", `you do not own ${accountId}`, { account_id: accountId });
        continue;
      }
      views.push(accountView(dir, r.value));
    }
    return ok(views);
  }

  async function visibleTo(callerUserId: string, txn: TxnRecord): Promise<boolean> {
    if (txn.callerUserId === callerUserId) return true;
    const [from, to] = await Promise.all([directory.find(txn.fromAccountId), directory.find(txn.toAccountId)]);
    return from?.ownerUserId === callerUserId || to?.ownerUserId === callerUserId;
  }

  async function getTransaction(callerUserId: string, txnId: string): Promise<Result<TxnRecord>> {
    if (!TXN_ID_PATTERN.test(txnId))
      return fail("invalid_txn_id", 'transaction_id must look like "<replica>:<uuid>"', { field: "transaction_id" });
    const txn = await history.findTxn(txnId);
    if (!txn || !(await visibleTo(callerUserId, txn)))
      return fail("transaction_not_found", `transaction ${txnId} not found`);
    return ok(txn);
  }

  async function* stream(callerUserId: string, o: ListOptions): AsyncGenerator<TxnRecord> {
    let last = o.afterSequence;
    let sent = 0;
    while (!o.signal.aborted) {
      if (!o.follow && sent >= o.limit) return;
      // Read the version before the log: a decision logged after this line wakes the wait below.
      const seen = feed.version;
      const want = o.follow ? LIST_PAGE_MAX : Math.min(LIST_PAGE_MAX, o.limit - sent);
      const page = await history.listVisible(callerUserId, last, want);
      for (const txn of page) {
        if (o.signal.aborted) return;
        yield txn;
        last = txn.sequence;
        sent++;
      }
      if (page.length === want) continue;
      if (!o.follow) return;
      await feed.next(seen, o.signal);
    }
  }

  function listTransactions(callerUserId: string, o: ListOptions): Result<AsyncIterable<TxnRecord>> {
    if (o.afterSequence < 0n)
      return fail("invalid_argument", "after_sequence must be >= 0", { field: "after_sequence" });
    if (o.limit < 0) return fail("invalid_argument", "limit must be >= 0", { field: "limit" });
    const limit = o.limit === 0 ? LIST_LIMIT_MAX : Math.min(o.limit, LIST_LIMIT_MAX);
    return ok(stream(callerUserId, { ...o, limit }));
  }

  return { getBalance, getTransaction, listTransactions };
}
