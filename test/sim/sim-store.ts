// The bank's LedgerStore for the simulation: an in-memory LedgerTx with the
// SQLite store's semantics (undo-ledger.ts, or the bank's memory-ledger.ts)
// is the "disk"; whatever a transaction committed survives a
// simulated crash. Reads come from a mirror updated only by committed writes,
// so the checker can look at the ledger after every step without copying it.
import { createMemoryLedger, type MemoryLedger } from "../../services/bank/src/domain/memory-ledger.js";
import { createUndoLedger } from "./undo-ledger.js";
import type { Account, Entry, Leg, LedgerTx, Txn } from "../../services/bank/src/domain/types.js";
import type { LedgerStore, PreparedRef } from "../../services/bank/src/store/ledger-store.js";

export interface MirrorTxn {
  txn: Txn;
  legs: readonly Leg[];
}

export interface SimLedgerStore extends LedgerStore {
  readonly memory: MemoryLedger;
  readonly accounts: ReadonlyMap<string, Account>;
  readonly txns: ReadonlyMap<string, MirrorTxn>;
  readonly entries: readonly Entry[];
  /**
   * Runs just before a write transaction commits; throwing rolls it back
   * (a failed fsync: nothing of it is durable).
   */
  beforeCommit: () => void;
  /** Called after each committed write transaction with the txn ids it touched. */
  afterCommit: (touchedTxnIds: readonly string[], newEntries: readonly Entry[]) => void;
}

type Op = (m: Mirror) => void;

interface Mirror {
  accounts: Map<string, Account>;
  txns: Map<string, MirrorTxn>;
  entries: Entry[];
}

/**
 * `undo` (default): test/sim/undo-ledger.ts; `memory`: the bank's own
 * memory-ledger.ts (same semantics, much slower); a test compares the two.
 */
export type LedgerEngine = "undo" | "memory";

export function createSimLedgerStore(engine: LedgerEngine = "undo"): SimLedgerStore {
  const memory = engine === "memory" ? createMemoryLedger() : createUndoLedger();
  const mirror: Mirror = { accounts: new Map(), txns: new Map(), entries: [] };
  let seeded = false;

  function recording(inner: LedgerTx, ops: Op[], touched: Set<string>, newEntries: Entry[]): LedgerTx {
    return {
      ...inner,
      insertAccount(account, number) {
        inner.insertAccount(account, number);
        ops.push((m) => void m.accounts.set(account.accountId, account));
      },
      setAccountAmounts(accountId, balanceMinor, heldMinor) {
        inner.setAccountAmounts(accountId, balanceMinor, heldMinor);
        const a = inner.account(accountId)!;
        ops.push((m) => void m.accounts.set(accountId, a));
      },
      appendEntry(entry) {
        const sequence = inner.appendEntry(entry);
        const e: Entry = { ...entry, sequence };
        newEntries.push(e);
        ops.push((m) => void m.entries.push(e));
        return sequence;
      },
      insertTxn(txn, legs) {
        inner.insertTxn(txn, legs);
        touched.add(txn.txnId);
        const copy = legs.map((l) => ({ ...l }));
        ops.push((m) => void m.txns.set(txn.txnId, { txn, legs: copy }));
      },
      decideTxn(txnId, state, decidedAtMs) {
        inner.decideTxn(txnId, state, decidedAtMs);
        touched.add(txnId);
        const t = inner.txn(txnId)!;
        ops.push((m) => {
          const row = m.txns.get(txnId)!;
          m.txns.set(txnId, { txn: t, legs: row.legs });
        });
      },
    };
  }

  const store: SimLedgerStore = {
    path: ":sim:",
    memory,
    accounts: mirror.accounts,
    txns: mirror.txns,
    entries: mirror.entries,
    beforeCommit: () => {},
    afterCommit: () => {},
    transact<T>(fn: (tx: LedgerTx) => T): T {
      return store.transactAll([fn])[0]!;
    },
    transactAll<T>(fns: ReadonlyArray<(tx: LedgerTx) => T>): T[] {
      const ops: Op[] = [];
      const touched = new Set<string>();
      const newEntries: Entry[] = [];
      const out = memory.transact((inner) => {
        const tx = recording(inner, ops, touched, newEntries);
        const results = fns.map((fn) => fn(tx));
        store.beforeCommit();
        return results;
      });
      for (const op of ops) op(mirror);
      store.afterCommit([...touched], newEntries);
      return out;
    },
    isSeeded: () => seeded,
    seed<T>(fn: (tx: LedgerTx) => T): T {
      if (seeded) throw new Error("already seeded");
      const r = store.transact(fn);
      seeded = true;
      return r;
    },
    account: (id) => mirror.accounts.get(id),
    txn: (id) => mirror.txns.get(id)?.txn,
    hold: (id) => memory.hold(id),
    listEntries: (accountId, afterSequence, limit) => mirror.entries.filter((e) => e.accountId === accountId && e.sequence > afterSequence).slice(0, limit),
    audit: () => memory.audit(),
    accountCount: () => mirror.accounts.size,
    prepared: (limit) => preparedRefs(mirror, Number.POSITIVE_INFINITY, limit),
    preparedBefore: (cutoffMs, limit) => preparedRefs(mirror, cutoffMs, limit),
    sizeBytes: () => 0,
    heldByCurrency() {
      const by = new Map<string, bigint>();
      for (const a of mirror.accounts.values()) by.set(a.currency, (by.get(a.currency) ?? 0n) + a.heldMinor);
      return [...by];
    },
    preparedCount: () => [...mirror.txns.values()].filter((t) => t.txn.state === "PREPARED").length,
    close: () => {},
  };
  return store;
}

function preparedRefs(m: Mirror, cutoffMs: number, limit: number): PreparedRef[] {
  const out: PreparedRef[] = [];
  for (const { txn } of m.txns.values()) {
    if (txn.state === "PREPARED" && txn.preparedAtMs !== undefined && txn.preparedAtMs < cutoffMs) out.push({ txnId: txn.txnId, coordinator: txn.coordinator, preparedAtMs: txn.preparedAtMs });
  }
  return out.sort((a, b) => a.preparedAtMs - b.preparedAtMs).slice(0, limit);
}
