// The same contract as services/bank/test-support/memory-ledger.ts (reads see
// earlier writes; a throw rolls the whole transaction back; the CHECK and
// UNIQUE constraints of the SQLite schema), with an undo log instead of a
// structuredClone of the whole state per transaction: the clone costs about
// 0.1-0.8 ms once a run has a few hundred rows, too slow for thousands of
// seeds. seeds.test.ts replays seeds on both and requires identical histories.
import type { Account, AccountAudit, Deposit, Entry, Hold, Leg, LedgerTx, Txn } from "@paygate/bank/domain";
import { auditAccounts, type MemoryLedger } from "@paygate/bank/test-support";

export function createUndoLedger(): MemoryLedger {
  const accounts = new Map<string, { account: Account; number: bigint }>();
  const entries: Entry[] = [];
  const txns = new Map<string, { txn: Txn; legs: Leg[] }>();
  const deposits = new Map<string, Deposit>();
  const holds = new Map<string, Hold>();
  let undo: (() => void)[] | undefined;

  function record(fn: () => void): void {
    if (!undo) throw new Error("write outside a transaction");
    undo.push(fn);
  }

  function restore<K, V>(map: Map<K, V>, key: K): void {
    const had = map.has(key);
    const old = map.get(key);
    record(() => (had ? map.set(key, old as V) : map.delete(key)));
  }

  const tx: LedgerTx = {
    account: (id) => accounts.get(id)?.account,
    insertAccount(account, number) {
      if (accounts.has(account.accountId)) throw new Error(`UNIQUE constraint: account ${account.accountId}`);
      restore(accounts, account.accountId);
      accounts.set(account.accountId, { account, number });
    },
    maxAccountNumber: () => [...accounts.values()].reduce((m, a) => (a.number > m ? a.number : m), 0n),
    setAccountAmounts(id, balanceMinor, heldMinor) {
      const a = accounts.get(id);
      if (!a) throw new Error(`no account ${id}`);
      if (heldMinor < 0n || balanceMinor - heldMinor < 0n) throw new Error(`CHECK constraint failed for ${id}`);
      restore(accounts, id);
      accounts.set(id, { account: { ...a.account, balanceMinor, heldMinor }, number: a.number });
    },
    appendEntry(entry) {
      const sequence = BigInt(entries.length + 1);
      entries.push({ ...entry, sequence });
      record(() => void entries.pop());
      return sequence;
    },
    lastEntry: (id) => entries.findLast((e) => e.accountId === id),
    txn: (id) => txns.get(id)?.txn,
    txnLegs: (id) => [...(txns.get(id)?.legs ?? [])],
    preparedCreditMinor(accountId) {
      let sum = 0n;
      for (const { txn, legs } of txns.values()) {
        if (txn.state === "PREPARED")
          for (const l of legs) if (l.accountId === accountId && l.direction === "credit") sum += l.amountMinor;
      }
      return sum;
    },
    insertTxn(txn, legs) {
      if (txns.has(txn.txnId)) throw new Error(`UNIQUE constraint: txn ${txn.txnId}`);
      restore(txns, txn.txnId);
      txns.set(txn.txnId, { txn, legs: legs.map((l) => ({ ...l })) });
    },
    decideTxn(id, state, decidedAtMs) {
      const t = txns.get(id);
      if (!t) throw new Error(`no txn ${id}`);
      restore(txns, id);
      txns.set(id, { txn: { ...t.txn, state, decidedAtMs }, legs: t.legs });
    },
    deposit: (id) => deposits.get(id),
    insertDeposit(d) {
      if (deposits.has(d.depositId)) throw new Error(`UNIQUE constraint: deposit ${d.depositId}`);
      restore(deposits, d.depositId);
      deposits.set(d.depositId, d);
    },
    hold: (id) => holds.get(id),
    insertHold(h) {
      if (holds.has(h.holdId)) throw new Error(`UNIQUE constraint: hold ${h.holdId}`);
      restore(holds, h.holdId);
      holds.set(h.holdId, h);
    },
    updateHold(id, change) {
      const h = holds.get(id);
      if (!h) throw new Error(`no hold ${id}`);
      restore(holds, id);
      holds.set(id, { ...h, ...change });
    },
    preparedAuthHold(holdId) {
      for (const { txn, legs } of txns.values()) {
        if (txn.state === "PREPARED" && legs.some((l) => l.direction === "auth_hold" && l.holdId === holdId))
          return txn.txnId;
      }
      return undefined;
    },
    dueHolds: (nowMs, limit) =>
      [...holds.values()]
        .filter((h) => h.state === "ACTIVE" && h.pinnedTxnId === "" && h.expiresAtMs <= nowMs)
        .sort((a, b) => a.expiresAtMs - b.expiresAtMs)
        .slice(0, limit),
  };

  return {
    transact(fn) {
      if (undo) throw new Error("nested transaction");
      const log: (() => void)[] = [];
      undo = log;
      try {
        const r = fn(tx);
        undo = undefined;
        return r;
      } catch (e) {
        undo = undefined;
        for (let i = log.length - 1; i >= 0; i--) log[i]!();
        throw e;
      }
    },
    // The simulation never links accounts (its seeds have owners): a link rule reaching this ledger is a bug.
    transactLinks() {
      throw new Error("the simulation does not link accounts");
    },
    entries: (id) => entries.filter((e) => e.accountId === id),
    hold: (id) => holds.get(id),
    audit: (): AccountAudit[] => auditAccounts(accounts.values(), entries, txns.values(), holds.values()),
  };
}
