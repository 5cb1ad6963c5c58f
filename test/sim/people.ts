// Who lives in a simulated world: customers with accounts at the banks, the
// merchant that takes their cards, and what the credit bureau knows of them.
import type { DirectoryAccount } from "@paygate/gateway/domain";

export const USERS = ["alice", "bob", "carol", "dave"] as const;
export const MERCHANT = "shop";

export type SimAccount = DirectoryAccount & { readonly openingMinor: bigint };

export function customerAccountsFor(banks: readonly string[]): SimAccount[] {
  const all = [
    { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD", openingMinor: 400n }, // the hot account
    { accountId: "bank-a/1002", bank: "bank-a", ownerUserId: "bob", currency: "USD", openingMinor: 150n },
    { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "carol", currency: "USD", openingMinor: 250n },
    { accountId: "bank-b/2002", bank: "bank-b", ownerUserId: "alice", currency: "USD", openingMinor: 60n },
    { accountId: "bank-b/2003", bank: "bank-b", ownerUserId: "dave", currency: "USD", openingMinor: 0n },
    { accountId: "bank-c/3001", bank: "bank-c", ownerUserId: "bob", currency: "USD", openingMinor: 120n },
    { accountId: "bank-c/3002", bank: "bank-c", ownerUserId: "dave", currency: "USD", openingMinor: 90n },
  ];
  return all.filter((a) => banks.includes(a.bank));
}

/** The merchant's settlement account: only captures credit it and only refunds debit it. */
export function merchantAccountAt(bank: string): SimAccount {
  const digit = { "bank-a": "1", "bank-b": "2", "bank-c": "3" }[bank] ?? "9";
  return { accountId: `${bank}/${digit}900`, bank, ownerUserId: MERCHANT, currency: "USD", openingMinor: 50n };
}

/** The bureau's file; dave has none (the risk rule then declines: no_credit_report). */
export const CREDIT_FILE: Readonly<Record<string, { readonly score: number; readonly delinquencies: number }>> = {
  alice: { score: 760, delinquencies: 0 },
  bob: { score: 650, delinquencies: 1 },
  carol: { score: 540, delinquencies: 3 },
};

/** Low enough for the simulated amounts: carol is always declined, bob above 150, every card past 400 a day. */
export const RISK = { scoreMin: 600, reviewAmountMinor: 150n, reviewScoreMin: 700, dailySpendMaxMinor: 400n } as const;
