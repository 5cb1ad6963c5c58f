// Ledger rules outside 2PC: opening accounts (from the seed or the admin API)
// and deposits, the only ways money enters the system.
import { AMOUNT_MINOR_MAX, assert, checkPositiveAmount, parseCurrency } from "@paygate/money";
import { USER_ID_PATTERN } from "@paygate/seed";
import { ACCOUNT_ID_PATTERN, DEPOSIT_ID_LENGTH_MAX, DEPOSIT_ID_PATTERN } from "@paygate/vocab";
import { fail, ok, type Account, type EntryKind, type LedgerTx, type Result } from "./types.js";

/** First number handed out at a bank with no accounts yet. */
export const FIRST_ACCOUNT_NUMBER = 1001n;
const ACCOUNT_NUMBER_MAX = 999_999_999_999n; // 12 digits, as ACCOUNT_ID_PATTERN allows
/**
 * No balance may grow past this, so sums over a bank's accounts stay far
 * inside int64 (SQLite INTEGER) even with many accounts. Every way money
 * arrives (deposits, credit legs of transfers and captures) is checked
 * against it, together with the credits already promised to the account.
 */
export const BALANCE_MINOR_MAX = AMOUNT_MINOR_MAX * 1000n;

/**
 * Whether `addMinor` more could take the account past BALANCE_MINOR_MAX once
 * every credit prepared on it so far commits too. Counting prepared credits
 * is what keeps two credits that each fit from overflowing together: a YES
 * vote must be able to commit.
 */
export function exceedsBalanceMax(tx: LedgerTx, account: Account, addMinor: bigint): boolean {
  const pendingMinor = tx.preparedCreditMinor?.(account.accountId) ?? 0n;
  return account.balanceMinor + pendingMinor + addMinor > BALANCE_MINOR_MAX;
}

export interface OpenAccountInput {
  readonly ownerUserId: string;
  readonly currency: string;
  /** "" lets the bank pick the next free number. */
  readonly accountId: string;
}

export type OpenAccountFailure = "invalid_argument" | "invalid_currency" | "invalid_account_id" | "already_exists";

/** One journal line: what it moves, and the account's held amount after it. */
export interface Posting {
  readonly txnId: string;
  readonly kind: EntryKind;
  /** Signed: a debit is negative. */
  readonly amountMinor: bigint;
  readonly heldAfterMinor: bigint;
  readonly nowMs: number;
}

/**
 * Moves an account's balance and journals the move, in one place for every
 * kind of entry. The journal's last line must agree with the balance before
 * (a ledger that disagrees with itself stops here, rolled back). Returns the
 * new balance; each caller checks its own rule on available first.
 */
export function postEntry(tx: LedgerTx, account: Account, p: Posting): bigint {
  const balanceMinor = account.balanceMinor + p.amountMinor;
  const last = tx.lastEntry(account.accountId);
  assert(
    last === undefined || last.balanceAfterMinor === account.balanceMinor,
    `journal of ${account.accountId} matches its balance`,
  );
  tx.setAccountAmounts(account.accountId, balanceMinor, p.heldAfterMinor);
  tx.appendEntry({
    accountId: account.accountId,
    txnId: p.txnId,
    kind: p.kind,
    amountMinor: p.amountMinor,
    balanceAfterMinor: balanceMinor,
    createdAtMs: p.nowMs,
  });
  return balanceMinor;
}

export function checkAccountId(bank: string, accountId: string): Result<string, "invalid_account_id"> {
  const m = ACCOUNT_ID_PATTERN.exec(accountId);
  if (!m)
    return fail(
      "invalid_account_id",
      `account_id must look like "<bank>/<number>", got ${JSON.stringify(accountId.slice(0, 100))}`,
    );
  if (m[1] !== bank) return fail("invalid_account_id", `account ${accountId} is not at ${bank}`);
  return ok(accountId);
}

function insertNewAccount(tx: LedgerTx, account: Account, number: bigint, openingMinor: bigint): void {
  assert(openingMinor >= 0n, `opening balance of ${account.accountId} in range`);
  assert(openingMinor <= BALANCE_MINOR_MAX, `opening balance of ${account.accountId} is at most the maximum balance`);
  tx.insertAccount({ ...account, balanceMinor: openingMinor, heldMinor: 0n }, number);
  // Every account's journal starts with its opening entry (even of 0), so
  // balance = sum(entries) holds from the first moment.
  tx.appendEntry({
    accountId: account.accountId,
    txnId: "opening",
    kind: "opening",
    amountMinor: openingMinor,
    balanceAfterMinor: openingMinor,
    createdAtMs: account.openedAtMs,
  });
}

export function openAccount(
  tx: LedgerTx,
  bank: string,
  input: OpenAccountInput,
  nowMs: number,
): Result<Account, OpenAccountFailure> {
  if (!USER_ID_PATTERN.test(input.ownerUserId))
    return fail("invalid_argument", "owner_user_id must be a user id (lowercase letters, digits, _ and -)");
  if (!parseCurrency(input.currency)) return fail("invalid_currency", "currency must be three capital letters");
  let accountId: string;
  let number: bigint;
  if (input.accountId !== "") {
    const id = checkAccountId(bank, input.accountId);
    if (!id.ok) return id;
    accountId = id.value;
    number = BigInt(accountId.slice(bank.length + 1));
    const existing = tx.account(accountId);
    if (existing) {
      // The same request again (a retry after a lost reply) gets the same account.
      if (existing.ownerUserId === input.ownerUserId && existing.currency === input.currency) return ok(existing);
      return fail("already_exists", `account ${accountId} already exists`);
    }
  } else {
    const max = tx.maxAccountNumber();
    number = max < FIRST_ACCOUNT_NUMBER ? FIRST_ACCOUNT_NUMBER : max + 1n;
    if (number > ACCOUNT_NUMBER_MAX) return fail("invalid_account_id", `${bank} has no account numbers left`);
    accountId = `${bank}/${number}`;
    assert(tx.account(accountId) === undefined, `next account number ${accountId} is free`);
  }
  const account: Account = {
    accountId,
    ownerUserId: input.ownerUserId,
    currency: input.currency,
    balanceMinor: 0n,
    heldMinor: 0n,
    status: "open",
    openedAtMs: nowMs,
  };
  insertNewAccount(tx, account, number, 0n);
  return ok(account);
}

export interface SeedAccountInput {
  readonly id: string;
  /** "" = the account belongs to no gateway user yet (its holder may link it, DESIGN.md §11). */
  readonly owner: string;
  readonly currency: string;
  readonly openingMinor: bigint;
  /** The holder's name ("" or absent = not recorded). */
  readonly holder?: string;
  /** The code given to the holder for linking. */
  readonly linkCode?: string;
}

/** First start only: this bank's accounts from the seed, each with an opening entry. */
export function openSeedAccounts(
  tx: LedgerTx,
  bank: string,
  accounts: readonly SeedAccountInput[],
  nowMs: number,
): number {
  let opened = 0;
  for (const a of accounts) {
    const id = checkAccountId(bank, a.id);
    if (!id.ok) continue; // another bank's account
    assert(tx.account(a.id) === undefined, `seed account ${a.id} appears once`);
    const number = BigInt(a.id.slice(bank.length + 1));
    insertNewAccount(
      tx,
      {
        accountId: a.id,
        ownerUserId: a.owner,
        currency: a.currency,
        balanceMinor: 0n,
        heldMinor: 0n,
        status: "open",
        openedAtMs: nowMs,
      },
      number,
      a.openingMinor,
    );
    opened++;
  }
  return opened;
}

export interface DepositInput {
  readonly depositId: string;
  readonly accountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
}

export type DepositFailure =
  | "invalid_argument"
  | "invalid_amount"
  | "invalid_currency"
  | "invalid_account_id"
  | "idempotency_key_reused"
  | "account_not_found"
  | "account_closed"
  | "currency_mismatch"
  | "balance_limit_exceeded";

export interface Deposited {
  readonly account: Account;
  /** False when this deposit id was already applied (a retry). */
  readonly changed: boolean;
}

export function deposit(
  tx: LedgerTx,
  bank: string,
  input: DepositInput,
  nowMs: number,
): Result<Deposited, DepositFailure> {
  if (!DEPOSIT_ID_PATTERN.test(input.depositId))
    return fail(
      "invalid_argument",
      `deposit_id must be 1-${DEPOSIT_ID_LENGTH_MAX} characters of letters, digits and _ . : -`,
    );
  const id = checkAccountId(bank, input.accountId);
  if (!id.ok) return id;
  if (checkPositiveAmount(input.amountMinor))
    return fail("invalid_amount", `amount_minor must be in [1, ${AMOUNT_MINOR_MAX}]`);
  if (!parseCurrency(input.currency)) return fail("invalid_currency", "currency must be three capital letters");

  const previous = tx.deposit(input.depositId);
  if (previous) {
    if (
      previous.accountId !== input.accountId ||
      previous.amountMinor !== input.amountMinor ||
      previous.currency !== input.currency
    ) {
      return fail("idempotency_key_reused", `deposit ${input.depositId} was made with other parameters`);
    }
    const account = tx.account(previous.accountId);
    assert(account !== undefined, `account of deposit ${input.depositId} exists`);
    return ok({ account, changed: false });
  }

  const account = tx.account(input.accountId);
  if (!account) return fail("account_not_found", `no account ${input.accountId} at ${bank}`);
  if (account.status !== "open") return fail("account_closed", `account ${input.accountId} is closed`);
  if (account.currency !== input.currency)
    return fail("currency_mismatch", `account ${input.accountId} holds ${account.currency}, not ${input.currency}`);
  if (exceedsBalanceMax(tx, account, input.amountMinor)) {
    return fail(
      "balance_limit_exceeded",
      `the balance of ${input.accountId} would exceed ${BALANCE_MINOR_MAX} minor units`,
    );
  }
  const balanceMinor = account.balanceMinor + input.amountMinor;
  assert(balanceMinor - account.heldMinor >= 0n, `available of ${input.accountId} negative after deposit`);
  postEntry(tx, account, {
    txnId: input.depositId,
    kind: "deposit",
    amountMinor: input.amountMinor,
    heldAfterMinor: account.heldMinor,
    nowMs,
  });
  tx.insertDeposit({
    depositId: input.depositId,
    accountId: input.accountId,
    amountMinor: input.amountMinor,
    currency: input.currency,
    createdAtMs: nowMs,
  });
  return ok({ account: { ...account, balanceMinor }, changed: true });
}
