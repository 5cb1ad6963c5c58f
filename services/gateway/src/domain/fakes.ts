// In-memory ports for unit tests: the same contracts as the SQLite store and
// the bank clients, small enough to read next to the tests.
import { assert } from "@paygate/money";
import type { AckTask, DecisionRecord, DirectoryAccount, NewTxn, TxnRecord, UnackedDecision } from "./model.js";
import type { Claim, Clock, CoordinatorLog, DecideInput, Delivery, Directory, Leg, Participants, SessionRecord, Sessions, TxnHistory, UserRecord, Users, Vote } from "./ports.js";

export interface ManualClock extends Clock {
  advance(ms: number): void;
}

export function createManualClock(startMs = 1_700_000_000_000): ManualClock {
  let now = startMs;
  return { nowMs: () => now, advance: (ms) => void (now += ms) };
}

interface AckRow {
  acked: boolean;
  attempts: number;
  nextAttemptAtMs: number;
  lastError: string;
}

export type MemoryLog = CoordinatorLog & TxnHistory & {
  readonly txns: Map<string, TxnRecord>;
  readonly decisions: Map<string, DecisionRecord>;
  readonly acks: Map<string, Map<string, AckRow>>;
};

export function createMemoryLog(directory?: Directory): MemoryLog {
  const txns = new Map<string, TxnRecord>();
  const keyOwner = new Map<string, string>(); // caller\0key -> txnId
  const decisions = new Map<string, DecisionRecord>();
  const acks = new Map<string, Map<string, AckRow>>();
  let sequence = 0n;
  const keyOf = (caller: string, key: string) => `${caller}\0${key}`;

  function claimSync(txn: NewTxn): Claim {
    const ownerId = keyOwner.get(keyOf(txn.callerUserId, txn.idempotencyKey));
    const owner = ownerId ? txns.get(ownerId) : undefined;
    if (owner) return { claimed: false, owner };
    const record: TxnRecord = { ...txn, sequence: 0n, status: "PENDING", declineReason: "", decidedAtMs: 0 };
    txns.set(txn.txnId, record);
    keyOwner.set(keyOf(txn.callerUserId, txn.idempotencyKey), txn.txnId);
    return { claimed: true, txn: record };
  }

  const log: MemoryLog = {
    txns,
    decisions,
    acks,
    findTxn: (id) => txns.get(id),
    claim: async (txn) => claimSync(txn),
    async reclaim(previousTxnId, txn) {
      const k = keyOf(txn.callerUserId, txn.idempotencyKey);
      if (keyOwner.get(k) === previousTxnId && txns.get(previousTxnId)?.status === "ABORTED") keyOwner.delete(k);
      return claimSync(txn);
    },
    decide(input: DecideInput) {
      const existing = decisions.get(input.txnId);
      if (existing) return existing;
      const d: DecisionRecord = { txnId: input.txnId, decision: input.decision, reason: input.reason, decidedAtMs: input.nowMs };
      decisions.set(input.txnId, d);
      const txn = txns.get(input.txnId);
      if (txn) {
        assert(txn.status === "PENDING", "decided twice");
        sequence++;
        txns.set(input.txnId, { ...txn, status: d.decision === "COMMIT" ? "COMMITTED" : "ABORTED", declineReason: d.reason, decidedAtMs: d.decidedAtMs, sequence });
      }
      const rows = new Map<string, AckRow>();
      for (const b of input.participants) rows.set(b, { acked: false, attempts: 0, nextAttemptAtMs: input.firstResendAtMs, lastError: "" });
      acks.set(input.txnId, rows);
      return d;
    },
    decideDurably(input: DecideInput) {
      return Promise.resolve(this.decide(input));
    },
    findDecision: (id) => decisions.get(id),
    ack(txnId, bank) {
      const row = acks.get(txnId)?.get(bank);
      if (row) row.acked = true;
    },
    deferAck(txnId, bank, attempts, nextAttemptAtMs, error) {
      const row = acks.get(txnId)?.get(bank);
      if (row && !row.acked) Object.assign(row, { attempts, nextAttemptAtMs, lastError: error });
    },
    dueAcks(nowMs, limit) {
      const out: (AckTask & { at: number })[] = [];
      for (const [txnId, rows] of acks) {
        for (const [bank, row] of rows) {
          const d = decisions.get(txnId);
          if (d && !row.acked && row.nextAttemptAtMs <= nowMs) out.push({ txnId, bank, decision: d.decision, attempts: row.attempts, at: row.nextAttemptAtMs });
        }
      }
      return out.sort((a, b) => a.at - b.at).slice(0, limit).map(({ at: _at, ...t }) => t);
    },
    rescheduleUnacked(nowMs) {
      let n = 0;
      for (const rows of acks.values()) for (const row of rows.values()) if (!row.acked) (row.nextAttemptAtMs = nowMs), n++;
      return n;
    },
    pendingUndecided: (limit) => [...txns.values()].filter((t) => t.status === "PENDING" && !decisions.has(t.txnId)).slice(0, limit),
    unackedDecisions(limit) {
      const out: UnackedDecision[] = [];
      for (const [txnId, rows] of acks) {
        const banks = [...rows].filter(([, r]) => !r.acked).map(([b]) => b);
        const d = decisions.get(txnId);
        if (d && banks.length > 0) out.push({ txnId, decision: d.decision, decidedAtMs: d.decidedAtMs, banks, lastError: [...rows.values()].map((r) => r.lastError).find(Boolean) ?? "" });
      }
      return out.slice(0, limit);
    },
    listVisible(userId, afterSequence, limit) {
      const owns = (id: string) => directory?.find(id)?.ownerUserId === userId;
      return [...txns.values()]
        .filter((t) => t.sequence > afterSequence && (t.callerUserId === userId || owns(t.fromAccountId) || owns(t.toAccountId)))
        .sort((a, b) => (a.sequence < b.sequence ? -1 : 1))
        .slice(0, limit);
    },
  };
  return log;
}

export function createMemoryDirectory(accounts: readonly DirectoryAccount[] = []): Directory {
  const byId = new Map(accounts.map((a) => [a.accountId, a]));
  return {
    find: (id) => byId.get(id),
    ownedBy: (userId) => [...byId.values()].filter((a) => a.ownerUserId === userId),
    add(a) {
      if (byId.has(a.accountId)) return false;
      byId.set(a.accountId, a);
      return true;
    },
  };
}

export interface PrepareCall {
  readonly bank: string;
  readonly txnId: string;
  readonly legs: readonly Leg[];
}

/** Scripted banks: each call consults a behaviour, and every call is recorded. */
export interface FakeBanks extends Participants {
  readonly prepares: PrepareCall[];
  readonly commits: { bank: string; txnId: string }[];
  readonly aborts: { bank: string; txnId: string }[];
  onPrepare: (call: PrepareCall, signal: AbortSignal) => Promise<Vote>;
  onCommit: (bank: string, txnId: string) => Promise<Delivery>;
  onAbort: (bank: string, txnId: string) => Promise<Delivery>;
}

export function createFakeBanks(): FakeBanks {
  const banks: FakeBanks = {
    prepares: [],
    commits: [],
    aborts: [],
    onPrepare: async () => ({ vote: "YES" }),
    onCommit: async () => ({ ok: true }),
    onAbort: async () => ({ ok: true }),
    prepare(bank, txnId, legs, signal) {
      const call = { bank, txnId, legs };
      banks.prepares.push(call);
      return banks.onPrepare(call, signal);
    },
    commit(bank, txnId) {
      banks.commits.push({ bank, txnId });
      return banks.onCommit(bank, txnId);
    },
    abort(bank, txnId) {
      banks.aborts.push({ bank, txnId });
      return banks.onAbort(bank, txnId);
    },
  };
  return banks;
}

/** A promise that never settles unless the signal aborts (a bank that hangs). */
export function hang(signal: AbortSignal): Promise<Vote> {
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve({ vote: "NO", reason: "participant_timeout" }), { once: true }));
}


export function createMemoryUsers(): Users & { readonly rows: Map<string, UserRecord> } {
  const rows = new Map<string, UserRecord>();
  return {
    rows,
    byUsername: (username) => [...rows.values()].find((u) => u.username === username),
    byId: (id) => rows.get(id),
    create(user) {
      if (rows.has(user.userId) || [...rows.values()].some((u) => u.username === user.username)) return false;
      rows.set(user.userId, { ...user, failedLogins: 0, lockedUntilMs: 0 });
      return true;
    },
    setLoginState(userId, failedLogins, lockedUntilMs) {
      const u = rows.get(userId);
      if (u) rows.set(userId, { ...u, failedLogins, lockedUntilMs });
    },
  };
}

export function createMemorySessions(): Sessions & { readonly rows: Map<string, SessionRecord> } {
  const rows = new Map<string, SessionRecord>();
  return {
    rows,
    create: (s) => void rows.set(s.tokenHash, s),
    find: (h) => rows.get(h),
    revoke: (h) => void rows.delete(h),
    purgeExpired(nowMs, limit) {
      let n = 0;
      for (const [h, s] of rows) if (s.expiresAtMs <= nowMs && n < limit) rows.delete(h), n++;
      return n;
    },
  };
}
