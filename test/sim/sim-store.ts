// The bank's LedgerStore for the simulation: an in-memory LedgerTx with the
// SQLite store's semantics (undo-ledger.ts, or the bank's memory-ledger.ts)
// is the "disk"; whatever a transaction committed survives a
// simulated crash. Reads come from a mirror updated only by committed writes,
// so the checker can look at the ledger after every step without copying it,
// and each committed write reports what it changed (BankCommit).
import { createMemoryLedger, type MemoryLedger } from "@paygate/bank/test-support";
import { createUndoLedger } from "./undo-ledger.js";
import type { Account, Entry, Hold, HoldChange, Leg, LedgerTx, LinkTx, Txn, TxnState } from "@paygate/bank/domain";
import type { LedgerStore, PreparedRef } from "@paygate/bank/use-cases";

/** The simulation never links accounts (DESIGN.md §11): its seeds have owners, and a link rule reaching the store is a bug here. */
const NO_LINKS: LinkTx = {
  account: () => undefined,
  link: () => undefined,
  saveLink: () => {
    throw new Error("the simulation does not link accounts");
  },
  setAccountOwner: () => {
    throw new Error("the simulation does not link accounts");
  },
};

export interface MirrorTxn {
  txn: Txn;
  legs: readonly Leg[];
}

/** What one committed write transaction changed, in order. */
export interface BankCommit {
  readonly entries: readonly Entry[];
  /** Txns it inserted or decided. */
  readonly txns: readonly {
    readonly txnId: string;
    readonly before: TxnState | undefined;
    readonly after: TxnState;
    readonly legs: readonly Leg[];
  }[];
  readonly holds: readonly { readonly before: Hold | undefined; readonly after: Hold }[];
}

export interface SimLedgerStore extends LedgerStore {
  readonly memory: MemoryLedger;
  readonly accounts: ReadonlyMap<string, Account>;
  readonly txns: ReadonlyMap<string, MirrorTxn>;
  readonly holds: ReadonlyMap<string, Hold>;
  readonly entries: readonly Entry[];
  /**
   * Runs just before a write transaction commits; throwing rolls it back
   * (a failed fsync: nothing of it is durable).
   */
  beforeCommit: () => void;
  /** Called after each committed write transaction with what it changed. */
  afterCommit: (commit: BankCommit) => void;
  /** A deliberately broken disk layer (control tests) may rewrite a hold update. */
  rewriteHoldChange: (hold: Hold, change: HoldChange) => HoldChange;
}

interface Mirror {
  accounts: Map<string, Account>;
  txns: Map<string, MirrorTxn>;
  /** The PREPARED ones (the resolver and the checker ask for them all the time). */
  prepared: Set<string>;
  holds: Map<string, Hold>;
  entries: Entry[];
}

/** What the transaction in progress wrote (the mirror takes it over once it is durable). */
interface Changes {
  accounts: Set<string>;
  entries: Entry[];
  txns: BankCommit["txns"][number][];
  holds: BankCommit["holds"][number][];
}

/**
 * `undo` (default): test/sim/undo-ledger.ts; `memory`: the bank's own
 * memory-ledger.ts (same semantics, much slower); a test compares the two.
 */
export type LedgerEngine = "undo" | "memory";

export function createSimLedgerStore(engine: LedgerEngine = "undo"): SimLedgerStore {
  const memory = engine === "memory" ? createMemoryLedger() : createUndoLedger();
  const mirror: Mirror = { accounts: new Map(), txns: new Map(), prepared: new Set(), holds: new Map(), entries: [] };
  let seeded = false;
  let c: Changes = { accounts: new Set(), entries: [], txns: [], holds: [] };
  // Both engines hand every transaction the same LedgerTx object: one recorder serves them all.
  let recorder: { inner: LedgerTx; tx: LedgerTx } | undefined;

  function recording(inner: LedgerTx): LedgerTx {
    if (recorder?.inner === inner) return recorder.tx;
    const tx: LedgerTx = {
      ...inner,
      insertAccount(account, number) {
        inner.insertAccount(account, number);
        c.accounts.add(account.accountId);
      },
      setAccountAmounts(accountId, balanceMinor, heldMinor) {
        inner.setAccountAmounts(accountId, balanceMinor, heldMinor);
        c.accounts.add(accountId);
      },
      appendEntry(entry) {
        const sequence = inner.appendEntry(entry);
        c.entries.push({ ...entry, sequence });
        return sequence;
      },
      insertTxn(txn, legs) {
        inner.insertTxn(txn, legs);
        c.txns.push({ txnId: txn.txnId, before: undefined, after: txn.state, legs: legs.map((l) => ({ ...l })) });
      },
      decideTxn(txnId, state, decidedAtMs) {
        const before = inner.txn(txnId)?.state;
        inner.decideTxn(txnId, state, decidedAtMs);
        c.txns.push({ txnId, before, after: state, legs: mirror.txns.get(txnId)?.legs ?? inner.txnLegs(txnId) });
      },
      insertHold(hold) {
        inner.insertHold(hold);
        c.holds.push({ before: undefined, after: hold });
      },
      updateHold(holdId, change) {
        const before = inner.hold(holdId);
        inner.updateHold(holdId, before ? store.rewriteHoldChange(before, change) : change);
        c.holds.push({ before, after: inner.hold(holdId)! });
      },
    };
    recorder = { inner, tx };
    return tx;
  }

  /** Called once the transaction can no longer roll back: the mirror takes over what it wrote. */
  function mirrorChanges(inner: LedgerTx): void {
    for (const id of c.accounts) mirror.accounts.set(id, inner.account(id)!);
    for (const e of c.entries) mirror.entries.push(e);
    for (const t of c.txns) {
      const legs = t.before === undefined ? t.legs : mirror.txns.get(t.txnId)!.legs;
      mirror.txns.set(t.txnId, { txn: inner.txn(t.txnId)!, legs });
      if (t.after === "PREPARED") mirror.prepared.add(t.txnId);
      else mirror.prepared.delete(t.txnId);
    }
    for (const h of c.holds) mirror.holds.set(h.after.holdId, h.after);
  }

  const store: SimLedgerStore = {
    path: ":sim:",
    memory,
    accounts: mirror.accounts,
    txns: mirror.txns,
    holds: mirror.holds,
    entries: mirror.entries,
    beforeCommit: () => {},
    afterCommit: () => {},
    rewriteHoldChange: (_hold, change) => change,
    transact<T>(fn: (tx: LedgerTx) => T): T {
      return store.transactAll([fn])[0]!;
    },
    transactAll<T>(fns: ReadonlyArray<(tx: LedgerTx) => T>): T[] {
      c = { accounts: new Set(), entries: [], txns: [], holds: [] };
      const out = memory.transact((inner) => {
        const tx = recording(inner);
        const results = fns.map((fn) => fn(tx));
        store.beforeCommit();
        // Past the last point of failure: what it wrote is durable.
        mirrorChanges(inner);
        return results;
      });
      store.afterCommit({ entries: c.entries, txns: c.txns, holds: c.holds });
      return out;
    },
    transactLinks: <T>(fn: (tx: LinkTx) => T): T => fn(NO_LINKS),
    isSeeded: () => seeded,
    seed<T>(fn: (tx: LedgerTx, links: LinkTx) => T): T {
      if (seeded) throw new Error("already seeded");
      const r = store.transact((tx) => fn(tx, NO_LINKS));
      seeded = true;
      return r;
    },
    account: (id) => mirror.accounts.get(id),
    txn: (id) => mirror.txns.get(id)?.txn,
    hold: (id) => mirror.holds.get(id),
    listEntries: (accountId, afterSequence, limit) =>
      mirror.entries.filter((e) => e.accountId === accountId && e.sequence > afterSequence).slice(0, limit),
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
    preparedCount: () => mirror.prepared.size,
    close: () => {},
  };
  return store;
}

function preparedRefs(m: Mirror, cutoffMs: number, limit: number): PreparedRef[] {
  const out: PreparedRef[] = [];
  for (const id of m.prepared) {
    const { txn } = m.txns.get(id)!;
    if (txn.preparedAtMs !== undefined && txn.preparedAtMs < cutoffMs)
      out.push({ txnId: txn.txnId, coordinator: txn.coordinator, preparedAtMs: txn.preparedAtMs });
  }
  return out.sort((a, b) => a.preparedAtMs - b.preparedAtMs).slice(0, limit);
}
