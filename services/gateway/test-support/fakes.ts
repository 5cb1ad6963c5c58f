// In-memory ports for unit tests: the same contracts as the SQLite store and
// the bank clients, small enough to read next to the tests.
import { assert } from "@paygate/money";
import type {
  AckTask,
  Decided,
  DecisionRecord,
  DirectoryAccount,
  NewTxn,
  RoundRecord,
  TxnRecord,
  UnackedDecision,
} from "../src/domain/model.js";
import type {
  Claim,
  Clock,
  CoordinatorLog,
  DecideInput,
  Delivery,
  Directory,
  Leg,
  LoginFailures,
  Participants,
  RateCount,
  RateLimits,
  SessionRecord,
  Sessions,
  TxnHistory,
  UserRecord,
  Users,
  Vote,
} from "../src/domain/ports.js";

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

export type MemoryLog = CoordinatorLog &
  TxnHistory & {
    readonly txns: Map<string, TxnRecord>;
    readonly rounds: Map<string, RoundRecord>;
    readonly decisions: Map<string, DecisionRecord>;
    readonly acks: Map<string, Map<string, AckRow>>;
    /** The same log's state, synchronously (the simulator's checker). */
    decideNow(input: DecideInput): Decided;
  };

const replicaOf = (txnId: string) => txnId.slice(0, Math.max(0, txnId.indexOf(":")));

export function createMemoryLog(
  directory?: Directory & { findNow?(id: string): DirectoryAccount | undefined },
): MemoryLog {
  const txns = new Map<string, TxnRecord>();
  const rounds = new Map<string, RoundRecord>();
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

  function decideNow(input: DecideInput): Decided {
    const existing = decisions.get(input.txnId);
    if (existing) return { decision: existing, txn: txns.get(input.txnId) };
    const d: DecisionRecord = {
      txnId: input.txnId,
      decision: input.decision,
      reason: input.reason,
      decidedAtMs: input.nowMs,
    };
    decisions.set(input.txnId, d);
    const txn = txns.get(input.txnId);
    if (txn) {
      assert(txn.status === "PENDING", "decided twice");
      sequence++;
      txns.set(input.txnId, {
        ...txn,
        status: d.decision === "COMMIT" ? "COMMITTED" : "ABORTED",
        declineReason: d.reason,
        decidedAtMs: d.decidedAtMs,
        sequence,
      });
    }
    const rows = new Map<string, AckRow>();
    for (const b of input.participants)
      rows.set(b, { acked: false, attempts: 0, nextAttemptAtMs: input.firstResendAtMs, lastError: "" });
    acks.set(input.txnId, rows);
    return { decision: d, txn: txns.get(input.txnId) };
  }

  const owns = (id: string, userId: string) => (directory?.findNow?.(id) ?? undefined)?.ownerUserId === userId;

  const log: MemoryLog = {
    txns,
    rounds,
    decisions,
    acks,
    decideNow,
    findTxn: async (id) => txns.get(id),
    claim: async (txn) => claimSync(txn),
    async reclaim(previousTxnId, txn) {
      const k = keyOf(txn.callerUserId, txn.idempotencyKey);
      if (keyOwner.get(k) === previousTxnId && txns.get(previousTxnId)?.status === "ABORTED") keyOwner.delete(k);
      return claimSync(txn);
    },
    async registerRound(round) {
      if (!rounds.has(round.txnId)) rounds.set(round.txnId, round);
    },
    findRound: async (id) => rounds.get(id),
    decide: async (input) => decideNow(input),
    findDecision: async (id) => decisions.get(id),
    async unackedBanks(txnId) {
      return [...(acks.get(txnId) ?? new Map<string, AckRow>())].filter(([, r]) => !r.acked).map(([b]) => b);
    },
    ack(txnId, bank) {
      const row = acks.get(txnId)?.get(bank);
      if (row) row.acked = true;
    },
    deferAck(txnId, bank, attempts, nextAttemptAtMs, error) {
      const row = acks.get(txnId)?.get(bank);
      if (row && !row.acked) Object.assign(row, { attempts, nextAttemptAtMs, lastError: error });
    },
    async dueAcks(nowMs, limit, claimMs) {
      const out: (AckTask & { at: number; row: AckRow })[] = [];
      for (const [txnId, rows] of acks) {
        for (const [bank, row] of rows) {
          const d = decisions.get(txnId);
          if (d && !row.acked && row.nextAttemptAtMs <= nowMs)
            out.push({ txnId, bank, decision: d.decision, attempts: row.attempts, at: row.nextAttemptAtMs, row });
        }
      }
      const due = out.sort((a, b) => a.at - b.at).slice(0, limit);
      for (const t of due) t.row.nextAttemptAtMs = nowMs + claimMs;
      return due.map(({ at: _at, row: _row, ...t }) => t);
    },
    async rescheduleUnacked(nowMs) {
      let n = 0;
      for (const rows of acks.values())
        for (const row of rows.values()) if (!row.acked) (row.nextAttemptAtMs = nowMs), n++;
      return n;
    },
    async pendingUndecided(limit, filter = {}) {
      return [...txns.values()]
        .filter((t) => t.status === "PENDING" && !decisions.has(t.txnId))
        .filter(
          (t) =>
            (filter.replica === undefined || replicaOf(t.txnId) === filter.replica) &&
            (filter.createdBeforeMs === undefined || t.createdAtMs < filter.createdBeforeMs),
        )
        .slice(0, limit);
    },
    async undecidedRounds(limit, replica, createdBeforeMs) {
      return [...rounds.values()]
        .filter((r) => !decisions.has(r.txnId) && replicaOf(r.txnId) === replica && r.createdAtMs < createdBeforeMs)
        .slice(0, limit);
    },
    async unackedDecisions(limit) {
      const out: UnackedDecision[] = [];
      for (const [txnId, rows] of acks) {
        const banks = [...rows].filter(([, r]) => !r.acked).map(([b]) => b);
        const d = decisions.get(txnId);
        if (d && banks.length > 0)
          out.push({
            txnId,
            decision: d.decision,
            decidedAtMs: d.decidedAtMs,
            banks,
            lastError: [...rows.values()].map((r) => r.lastError).find(Boolean) ?? "",
          });
      }
      return out.slice(0, limit);
    },
    async inDoubtSummary(nowMs) {
      const pending = [...txns.values()].filter((t) => t.status === "PENDING").map((t) => t.createdAtMs);
      const unacked = (await log.unackedDecisions(Number.MAX_SAFE_INTEGER)).map(
        (d) => txns.get(d.txnId)?.createdAtMs ?? d.decidedAtMs,
      );
      const all = [...pending, ...unacked];
      if (all.length === 0) return { count: 0, oldestAgeSeconds: 0 };
      return { count: all.length, oldestAgeSeconds: Math.max(0, nowMs - Math.min(...all)) / 1000 };
    },
    async listVisible(userId, afterSequence, limit) {
      return [...txns.values()]
        .filter(
          (t) =>
            t.sequence > afterSequence &&
            (t.callerUserId === userId || owns(t.fromAccountId, userId) || owns(t.toAccountId, userId)),
        )
        .sort((a, b) => (a.sequence < b.sequence ? -1 : 1))
        .slice(0, limit);
    },
  };
  return log;
}

export type MemoryDirectory = Directory & { findNow(accountId: string): DirectoryAccount | undefined };

export function createMemoryDirectory(accounts: readonly DirectoryAccount[] = []): MemoryDirectory {
  const byId = new Map(accounts.map((a) => [a.accountId, a]));
  return {
    findNow: (id) => byId.get(id),
    find: async (id) => byId.get(id),
    ownedBy: async (userId) => [...byId.values()].filter((a) => a.ownerUserId === userId),
    async add(a) {
      if (byId.has(a.accountId)) return false;
      byId.set(a.accountId, a);
      return true;
    },
    async remove(id) {
      const a = byId.get(id);
      byId.delete(id);
      return a;
    },
  };
}

export function createMemoryRateLimits(): RateLimits {
  const rows = new Map<string, RateCount>();
  const k = (scope: string, key: string) => `${scope}\0${key}`;
  return {
    async hit(scope, key, nowMs, windowMs) {
      const before = rows.get(k(scope, key));
      const after =
        before && before.resetAtMs > nowMs
          ? { count: before.count + 1, resetAtMs: before.resetAtMs }
          : { count: 1, resetAtMs: nowMs + windowMs };
      rows.set(k(scope, key), after);
      return after;
    },
    async purgeExpired(nowMs, limit) {
      let n = 0;
      for (const [key, r] of rows) if (r.resetAtMs <= nowMs && n < limit) rows.delete(key), n++;
      return n;
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
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve({ vote: "NO", reason: "participant_timeout" }), { once: true }),
  );
}

export function createMemoryUsers(): Users & {
  readonly rows: Map<string, UserRecord>;
  readonly failures: Map<string, LoginFailures>;
} {
  const rows = new Map<string, UserRecord>();
  const failures = new Map<string, LoginFailures>();
  const k = (userId: string, client: string) => `${userId}\0${client}`;
  return {
    rows,
    failures,
    byUsername: async (username) => [...rows.values()].find((u) => u.username === username),
    byId: async (id) => rows.get(id),
    async create(user) {
      if (rows.has(user.userId) || [...rows.values()].some((u) => u.username === user.username)) return false;
      rows.set(user.userId, { ...user });
      return true;
    },
    loginFailures: async (userId, client) => failures.get(k(userId, client)) ?? { failures: 0, lockedUntilMs: 0 },
    async recordLoginFailure(userId, client, nowMs, failuresMax, lockMs) {
      const before = failures.get(k(userId, client)) ?? { failures: 0, lockedUntilMs: 0 };
      const n = before.failures + 1;
      const after =
        n >= failuresMax
          ? { failures: 0, lockedUntilMs: nowMs + lockMs }
          : { failures: n, lockedUntilMs: before.lockedUntilMs };
      failures.set(k(userId, client), after);
      return after;
    },
    async clearLoginFailures(userId, client) {
      failures.delete(k(userId, client));
    },
  };
}

export function createMemorySessions(): Sessions & { readonly rows: Map<string, SessionRecord> } {
  const rows = new Map<string, SessionRecord>();
  return {
    rows,
    create: async (s) => void rows.set(s.tokenHash, s),
    find: async (h) => rows.get(h),
    revoke: async (h) => void rows.delete(h),
    async purgeExpired(nowMs, limit) {
      let n = 0;
      for (const [h, s] of rows) if (s.expiresAtMs <= nowMs && n < limit) rows.delete(h), n++;
      return n;
    },
  };
}
