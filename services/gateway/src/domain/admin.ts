// The admin role's use cases: users, accounts, deposits, and reconciliation
// across every bank.
import { parseCurrency } from "@paygate/money";
import { depositIdOf } from "@paygate/vocab";
import type { CoordinatorMetrics } from "./metrics.js";
import { fail, ok, ROLES, type Result, type Role } from "./model.js";
import { createUserRecord } from "./new-users.js";
import { accountView, type AccountView } from "./payments.js";
import type { Clock, CoordinatorLog, Directory, Ledgers, UserRecord, Users } from "./ports.js";
import { ACCOUNT_ID_PATTERN, checkAmount, checkIdempotencyKey } from "./transfer-rules.js";

export interface AdminOptions {
  readonly users: Users;
  readonly directory: Directory;
  readonly ledgers: Ledgers;
  readonly log: Pick<CoordinatorLog, "unackedDecisions" | "pendingUndecided">;
  /** Configured bank names (BANKS). */
  readonly banks: readonly string[];
  readonly clock: Clock;
  readonly hashPassword: (password: string) => Promise<string>;
  /** Per bank Totals call. */
  readonly reconcileTimeoutMs: number;
  readonly metrics?: Pick<CoordinatorMetrics, "reconcileConserved">;
}

export interface NewUser {
  readonly username: string;
  readonly password: string;
  readonly roles: readonly string[];
  readonly displayName: string;
}

export interface CurrencySummary {
  readonly currency: string;
  readonly balanceMinor: bigint;
  readonly heldMinor: bigint;
  readonly depositedMinor: bigint;
  readonly conserved: boolean;
}

export interface BankSummary {
  readonly bank: string;
  readonly reachable: boolean;
  readonly ledgerConsistent: boolean;
  readonly problems: readonly string[];
  readonly preparedCount: number;
}

export interface InDoubt {
  readonly transactionId: string;
  /** "gateway" or a bank name. */
  readonly where: string;
  readonly state: string;
  readonly ageMs: number;
}

export interface Reconciliation {
  readonly conserved: boolean;
  readonly currencies: readonly CurrencySummary[];
  readonly banks: readonly BankSummary[];
  readonly inDoubt: readonly InDoubt[];
}

export interface Admin {
  createUser(input: NewUser): Promise<Result<UserRecord>>;
  openAccount(ownerUserId: string, bank: string, currency: string): Promise<Result<AccountView>>;
  deposit(
    idempotencyKey: string,
    accountId: string,
    amountMinor: bigint,
    currency: string,
  ): Promise<Result<AccountView>>;
  reconcile(): Promise<Reconciliation>;
}

/** In-doubt rows listed per source, so one reply stays small. */
const IN_DOUBT_MAX = 1000;

export function createAdmin(o: AdminOptions): Admin {
  const { users, directory, ledgers, clock } = o;

  async function createUser(input: NewUser): Promise<Result<UserRecord>> {
    if (input.roles.length === 0 || input.roles.some((r) => !ROLES.includes(r as Role))) {
      return fail("invalid_argument", `roles must be one or more of ${ROLES.join(", ")}`, { field: "roles" });
    }
    // The same rules as a customer's sign-up (new-users.ts).
    return createUserRecord({ users, clock, hashPassword: o.hashPassword }, input, input.roles);
  }

  async function openAccount(ownerUserId: string, bank: string, currency: string): Promise<Result<AccountView>> {
    if (!o.banks.includes(bank))
      return fail("bank_not_found", `bank ${JSON.stringify(bank)} is not configured`, { field: "bank" });
    if (!parseCurrency(currency))
      return fail("invalid_currency", "currency must be three capital letters (ISO 4217)", { field: "currency" });
    if (!(await users.byId(ownerUserId)))
      return fail("user_not_found", `user ${JSON.stringify(ownerUserId)} not found`, { field: "owner_user_id" });
    // The bank first: an account the directory knows must exist at its bank.
    // A crash in between leaves an empty account at the bank nobody can reach: harmless.
    const opened = await ledgers.openAccount(bank, ownerUserId, currency);
    if (!opened.ok) return fail(opened.reason, `bank ${bank}: ${opened.message}`, { bank });
    const acct = opened.value;
    const m = ACCOUNT_ID_PATTERN.exec(acct.accountId);
    if (
      !m ||
      !acct.accountId.startsWith(`${bank}/`) ||
      acct.ownerUserId !== ownerUserId ||
      acct.currency !== currency
    ) {
      return fail("internal", `bank ${bank} answered with an unexpected account ${JSON.stringify(acct.accountId)}`);
    }
    const dir = { accountId: acct.accountId, bank, ownerUserId, currency };
    if (!(await directory.add(dir, clock.nowMs()))) {
      const known = await directory.find(acct.accountId);
      if (known?.ownerUserId !== ownerUserId || known.bank !== bank || known.currency !== currency) {
        return fail("internal", `account ${acct.accountId} is already in the directory with other details`);
      }
    }
    return ok(accountView(dir, acct));
  }

  async function deposit(
    idempotencyKey: string,
    accountId: string,
    amountMinor: bigint,
    currency: string,
  ): Promise<Result<AccountView>> {
    const key = checkIdempotencyKey(idempotencyKey);
    if (!key.ok) return key;
    if (!ACCOUNT_ID_PATTERN.test(accountId))
      return fail("invalid_account_id", 'account_id must look like "<bank>/<number>"', { field: "account_id" });
    const amount = checkAmount(amountMinor);
    if (!amount.ok) return amount;
    if (!parseCurrency(currency))
      return fail("invalid_currency", "currency must be three capital letters (ISO 4217)", { field: "currency" });
    const dir = await directory.find(accountId);
    if (!dir) return fail("account_not_found", `account ${accountId} not found`, { account_id: accountId });
    if (dir.currency !== currency)
      return fail("currency_mismatch", `account ${accountId} holds ${dir.currency}`, { account_id: accountId });
    // The bank is idempotent on deposit_id: a retried deposit credits once.
    const r = await ledgers.deposit(dir.bank, depositIdOf("admin", idempotencyKey), accountId, amountMinor, currency);
    if (!r.ok) return fail(r.reason, `bank ${dir.bank}: ${r.message}`, { account_id: accountId, bank: dir.bank });
    return ok(accountView(dir, r.value));
  }

  async function reconcile(): Promise<Reconciliation> {
    const answers = await Promise.all(o.banks.map((b) => ledgers.totals(b, o.reconcileTimeoutMs)));
    const nowMs = clock.nowMs();
    const sums = new Map<string, { balance: bigint; held: bigint; deposited: bigint }>();
    const banks: BankSummary[] = [];
    const inDoubt: InDoubt[] = [];
    for (const [i, r] of answers.entries()) {
      const bank = o.banks[i] ?? "";
      if (!r.ok) {
        banks.push({
          bank,
          reachable: false,
          ledgerConsistent: false,
          problems: [`${r.reason}: ${r.message}`],
          preparedCount: 0,
        });
        continue;
      }
      const t = r.value;
      banks.push({
        bank,
        reachable: true,
        ledgerConsistent: t.ledgerConsistent,
        problems: t.problems,
        preparedCount: t.prepared.length,
      });
      for (const c of t.currencies) {
        const s = sums.get(c.currency) ?? { balance: 0n, held: 0n, deposited: 0n };
        sums.set(c.currency, {
          balance: s.balance + c.balanceMinor,
          held: s.held + c.heldMinor,
          deposited: s.deposited + c.depositedMinor,
        });
      }
      for (const p of t.prepared.slice(0, IN_DOUBT_MAX))
        inDoubt.push({
          transactionId: p.txnId,
          where: bank,
          state: "PREPARED",
          ageMs: Math.max(0, nowMs - p.preparedAtMs),
        });
    }
    const [unacked, pending] = await Promise.all([
      o.log.unackedDecisions(IN_DOUBT_MAX),
      o.log.pendingUndecided(IN_DOUBT_MAX),
    ]);
    for (const d of unacked) {
      const state = `${d.decision} unacknowledged by ${d.banks.join(",")}${d.lastError ? ` (last error: ${d.lastError})` : ""}`;
      inDoubt.push({ transactionId: d.txnId, where: "gateway", state, ageMs: Math.max(0, nowMs - d.decidedAtMs) });
    }
    for (const t of pending)
      inDoubt.push({
        transactionId: t.txnId,
        where: "gateway",
        state: "PENDING",
        ageMs: Math.max(0, nowMs - t.createdAtMs),
      });
    const currencies = [...sums.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([currency, s]) => ({
        currency,
        balanceMinor: s.balance,
        heldMinor: s.held,
        depositedMinor: s.deposited,
        conserved: s.balance === s.deposited,
      }));
    const conserved = banks.every((b) => b.reachable && b.ledgerConsistent) && currencies.every((c) => c.conserved);
    // An unreachable bank proves nothing either way (BankDown says so); the
    // gauge, which pages when 0, only records reconciles that saw every bank.
    if (banks.every((b) => b.reachable)) o.metrics?.reconcileConserved.set(conserved);
    return { conserved, currencies, banks, inDoubt };
  }

  return { createUser, openAccount, deposit, reconcile };
}
