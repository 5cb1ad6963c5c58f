// An in-memory LedgerTx for unit tests of the rules: same semantics as the
// SQLite store (reads see earlier writes; a throw rolls everything back).
import type { Account, Deposit, Entry, Hold, Leg, LedgerTx, Txn } from "../src/domain/types.js";
import type { AccountLink, LinkTx } from "../src/domain/links.js";
import type { AccountAudit } from "../src/domain/reconcile.js";

interface State {
  accounts: Map<string, { account: Account; number: bigint }>;
  entries: Entry[];
  txns: Map<string, { txn: Txn; legs: Leg[] }>;
  deposits: Map<string, Deposit>;
  holds: Map<string, Hold>;
  links: Map<string, AccountLink>;
}

export interface MemoryLedger {
  transact<T>(fn: (tx: LedgerTx) => T): T;
  /** The link rules' port on the same state (DESIGN.md §11). */
  transactLinks<T>(fn: (tx: LinkTx) => T): T;
  entries(accountId: string): Entry[];
  hold(holdId: string): Hold | undefined;
  audit(): AccountAudit[];
}

export function createMemoryLedger(): MemoryLedger {
  let s: State = {
    accounts: new Map(),
    entries: [],
    txns: new Map(),
    deposits: new Map(),
    holds: new Map(),
    links: new Map(),
  };
  const tx: LedgerTx = {
    account: (id) => s.accounts.get(id)?.account,
    insertAccount(account, number) {
      if (s.accounts.has(account.accountId)) throw new Error(`UNIQUE constraint: account ${account.accountId}`);
      s.accounts.set(account.accountId, { account, number });
    },
    maxAccountNumber: () => [...s.accounts.values()].reduce((m, a) => (a.number > m ? a.number : m), 0n),
    setAccountAmounts(id, balanceMinor, heldMinor) {
      const a = s.accounts.get(id);
      if (!a) throw new Error(`no account ${id}`);
      if (heldMinor < 0n || balanceMinor - heldMinor < 0n) throw new Error(`CHECK constraint failed for ${id}`);
      a.account = { ...a.account, balanceMinor, heldMinor };
    },
    appendEntry(entry) {
      const sequence = BigInt(s.entries.length + 1);
      s.entries.push({ ...entry, sequence });
      return sequence;
    },
    lastEntry: (id) => s.entries.findLast((e) => e.accountId === id),
    txn: (id) => s.txns.get(id)?.txn,
    txnLegs: (id) => [...(s.txns.get(id)?.legs ?? [])],
    preparedCreditMinor(accountId) {
      let sum = 0n;
      for (const { txn, legs } of s.txns.values()) {
        if (txn.state === "PREPARED")
          for (const l of legs) if (l.accountId === accountId && l.direction === "credit") sum += l.amountMinor;
      }
      return sum;
    },
    insertTxn(txn, legs) {
      if (s.txns.has(txn.txnId)) throw new Error(`UNIQUE constraint: txn ${txn.txnId}`);
      s.txns.set(txn.txnId, { txn, legs: legs.map((l) => ({ ...l })) });
    },
    decideTxn(id, state, decidedAtMs) {
      const t = s.txns.get(id);
      if (!t) throw new Error(`no txn ${id}`);
      t.txn = { ...t.txn, state, decidedAtMs };
    },
    deposit: (id) => s.deposits.get(id),
    insertDeposit(d) {
      if (s.deposits.has(d.depositId)) throw new Error(`UNIQUE constraint: deposit ${d.depositId}`);
      s.deposits.set(d.depositId, d);
    },
    hold: (id) => s.holds.get(id),
    insertHold(h) {
      if (s.holds.has(h.holdId)) throw new Error(`UNIQUE constraint: hold ${h.holdId}`);
      s.holds.set(h.holdId, h);
    },
    updateHold(id, change) {
      const h = s.holds.get(id);
      if (!h) throw new Error(`no hold ${id}`);
      s.holds.set(id, { ...h, ...change });
    },
    preparedAuthHold(holdId) {
      for (const { txn, legs } of s.txns.values()) {
        if (txn.state === "PREPARED" && legs.some((l) => l.direction === "auth_hold" && l.holdId === holdId))
          return txn.txnId;
      }
      return undefined;
    },
    dueHolds: (nowMs, limit) =>
      [...s.holds.values()]
        .filter((h) => h.state === "ACTIVE" && h.pinnedTxnId === "" && h.expiresAtMs <= nowMs)
        .sort((a, b) => a.expiresAtMs - b.expiresAtMs)
        .slice(0, limit),
  };
  const links: LinkTx = {
    account: tx.account,
    setAccountOwner(id, ownerUserId) {
      const a = s.accounts.get(id);
      if (!a) throw new Error(`no account ${id}`);
      a.account = { ...a.account, ownerUserId };
    },
    link: (id) => s.links.get(id),
    saveLink: (l) => void s.links.set(l.accountId, l),
  };
  function atomically<T>(fn: () => T): T {
    const before = structuredClone(s);
    try {
      return fn();
    } catch (e) {
      s = before;
      throw e;
    }
  }
  return {
    transact: (fn) => atomically(() => fn(tx)),
    transactLinks: (fn) => atomically(() => fn(links)),
    entries: (id) => s.entries.filter((e) => e.accountId === id),
    hold: (id) => s.holds.get(id),
    audit: () => auditAccounts(s.accounts.values(), s.entries, s.txns.values(), s.holds.values()),
  };
}

/**
 * What reconcile.ts checks, computed from plain collections: shared with the
 * simulator's undo ledger (test/sim/undo-ledger.ts), which keeps the same
 * state in another shape, so both ledgers are audited by one definition.
 */
export function auditAccounts(
  accounts: Iterable<{ readonly account: Account }>,
  entries: readonly Entry[],
  txns: Iterable<{ readonly txn: Txn; readonly legs: readonly Leg[] }>,
  holds: Iterable<Hold>,
): AccountAudit[] {
  const txnList = [...txns];
  const holdList = [...holds];
  return [...accounts].map(({ account: a }) => {
    const es = entries.filter((e) => e.accountId === a.accountId);
    let prev = 0n;
    let broken = 0;
    for (const e of es) {
      if (e.balanceAfterMinor !== prev + e.amountMinor) broken++;
      prev = e.balanceAfterMinor;
    }
    let activeHoldMinor = 0n;
    for (const { txn, legs } of txnList) {
      if (txn.state !== "PREPARED") continue;
      for (const l of legs)
        if (l.accountId === a.accountId && (l.direction === "debit" || l.direction === "auth_hold"))
          activeHoldMinor += l.amountMinor;
    }
    for (const h of holdList) if (h.accountId === a.accountId && h.state === "ACTIVE") activeHoldMinor += h.amountMinor;
    const sum = (pred: (e: Entry) => boolean) => es.filter(pred).reduce((t, e) => t + e.amountMinor, 0n);
    return {
      accountId: a.accountId,
      currency: a.currency,
      balanceMinor: a.balanceMinor,
      heldMinor: a.heldMinor,
      entrySumMinor: sum(() => true),
      activeHoldMinor,
      lastBalanceAfterMinor: es.at(-1)?.balanceAfterMinor,
      brokenChainCount: broken,
      depositedMinor: sum((e) => e.kind === "opening" || e.kind === "deposit"),
      transferNetMinor: sum(
        (e) => e.kind === "transfer_debit" || e.kind === "transfer_credit" || e.kind === "capture_debit",
      ),
    };
  });
}
