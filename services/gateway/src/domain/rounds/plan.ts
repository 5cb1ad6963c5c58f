// Which bank prepares which legs of a round. Every money movement (a transfer,
// a card hold, capture, release or refund) is a list of legs, each at the bank
// that keeps its account; a bank gets one Prepare with all of its legs, so a
// same-bank movement is one voter (DESIGN.md §3).
import { assert } from "@paygate/money";
import type { Leg } from "../ports.js";

export interface PreparePlan {
  readonly bank: string;
  readonly legs: readonly Leg[];
}

/** A leg and the bank that keeps its account. */
export interface BankLeg {
  readonly bank: string;
  readonly leg: Leg;
}

/** One Prepare per bank, in the order the banks first appear, each with its legs in the order given. */
export function planByBank(legs: readonly BankLeg[]): PreparePlan[] {
  assert(legs.length > 0, "a round moves something");
  const byBank = new Map<string, Leg[]>();
  for (const { bank, leg } of legs) {
    const same = byBank.get(bank);
    if (same) same.push(leg);
    else byBank.set(bank, [leg]);
  }
  return [...byBank].map(([bank, grouped]) => ({ bank, legs: grouped }));
}

/** Where a movement's credit lands: an account and the bank that keeps it. */
export interface CreditTo {
  readonly bank: string;
  readonly accountId: string;
}

/**
 * A movement of `from`'s amount: `from`'s leg takes it (a debit, or a hold's
 * capture), the `to` account is credited with it in the same currency. A
 * credit needs no owner check: anyone may be paid.
 */
export function movePlan(from: BankLeg, to: CreditTo): PreparePlan[] {
  const credit: Leg = {
    accountId: to.accountId,
    direction: "CREDIT",
    amountMinor: from.leg.amountMinor,
    currency: from.leg.currency,
    ownerUserId: "",
  };
  return planByBank([from, { bank: to.bank, leg: credit }]);
}

/** The participants of a plan: every bank that must vote and hear the decision. */
export const banksOfPlan = (plan: readonly PreparePlan[]): string[] => plan.map((p) => p.bank);
