// Reconciliation: the bank proves its ledger from its own records. The store
// gathers the raw per-account facts; the rules for "consistent" live here.

/** What the store knows about one account, each figure computed independently. */
export interface AccountAudit {
  readonly accountId: string;
  readonly currency: string;
  readonly balanceMinor: bigint;
  readonly heldMinor: bigint;
  /** sum(entries.amount_minor) */
  readonly entrySumMinor: bigint;
  /** This account's ACTIVE standing holds plus the debit and auth_hold legs of its PREPARED txns. */
  readonly activeHoldMinor: bigint;
  /** balance_after of the latest entry (undefined: no entries). */
  readonly lastBalanceAfterMinor: bigint | undefined;
  /** Entries whose balance_after differs from the previous one plus their amount. */
  readonly brokenChainCount: number;
  /** Opening and deposit entries. */
  readonly depositedMinor: bigint;
  /** Committed transfer and capture entries: credits - debits. */
  readonly transferNetMinor: bigint;
}

export interface CurrencyTotal {
  readonly currency: string;
  readonly balanceMinor: bigint;
  readonly heldMinor: bigint;
  readonly depositedMinor: bigint;
  readonly transferNetMinor: bigint;
}

export interface Reconciliation {
  readonly currencies: readonly CurrencyTotal[];
  readonly consistent: boolean;
  readonly problems: readonly string[];
  readonly accountCount: number;
}

/** A broken ledger may be broken everywhere; the reply stays small. */
export const PROBLEMS_MAX = 100;

export function reconcile(audits: Iterable<AccountAudit>): Reconciliation {
  const totals = new Map<
    string,
    { balanceMinor: bigint; heldMinor: bigint; depositedMinor: bigint; transferNetMinor: bigint }
  >();
  const problems: string[] = [];
  let problemCount = 0;
  let accountCount = 0;
  const problem = (text: string) => {
    problemCount++;
    if (problems.length < PROBLEMS_MAX) problems.push(text);
  };
  for (const a of audits) {
    accountCount++;
    const t = totals.get(a.currency) ?? { balanceMinor: 0n, heldMinor: 0n, depositedMinor: 0n, transferNetMinor: 0n };
    t.balanceMinor += a.balanceMinor;
    t.heldMinor += a.heldMinor;
    t.depositedMinor += a.depositedMinor;
    t.transferNetMinor += a.transferNetMinor;
    totals.set(a.currency, t);
    if (a.balanceMinor !== a.entrySumMinor)
      problem(`${a.accountId}: balance ${a.balanceMinor} != sum of entries ${a.entrySumMinor}`);
    if (a.lastBalanceAfterMinor !== undefined && a.lastBalanceAfterMinor !== a.balanceMinor)
      problem(`${a.accountId}: balance ${a.balanceMinor} != last balance_after ${a.lastBalanceAfterMinor}`);
    if (a.brokenChainCount > 0)
      problem(
        `${a.accountId}: ${a.brokenChainCount} entries whose balance_after is not the previous one plus the amount`,
      );
    if (a.heldMinor !== a.activeHoldMinor)
      problem(`${a.accountId}: held ${a.heldMinor} != active holds ${a.activeHoldMinor}`);
    if (a.heldMinor < 0n) problem(`${a.accountId}: held ${a.heldMinor} is negative`);
    if (a.balanceMinor - a.heldMinor < 0n)
      problem(`${a.accountId}: available ${a.balanceMinor - a.heldMinor} is negative`);
  }
  if (problemCount > problems.length) problems.push(`... and ${problemCount - problems.length} more`);
  const currencies = [...totals.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([currency, t]) => ({ currency, ...t }));
  return { currencies, consistent: problemCount === 0, problems, accountCount };
}
