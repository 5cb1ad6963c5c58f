// The coordinator log on SQLite: txns (with the idempotency key's owner),
// decisions (insert-if-absent) and per-participant acknowledgements.
import { assert } from "@paygate/money";
import type {
  AckTask,
  Decided,
  Decision,
  DecisionRecord,
  NewTxn,
  RoundRecord,
  TxnRecord,
  TxnStatus,
  UnackedDecision,
} from "../domain/model.js";
import type { Claim, CoordinatorLog, DecideInput, InDoubtSummary, TxnHistory } from "../domain/ports.js";
import { num, type Db } from "./db.js";
import { createGroupCommit, type GroupCommit } from "./group-commit.js";

interface TxnRow {
  txn_id: string;
  sequence: bigint | null;
  caller_user_id: string;
  idempotency_key: string;
  fingerprint: string;
  from_account_id: string;
  to_account_id: string;
  from_bank: string;
  to_bank: string;
  amount_minor: bigint;
  currency: string;
  memo: string;
  status: TxnStatus;
  decline_reason: string;
  created_at: bigint;
  decided_at: bigint;
}

function toTxn(r: TxnRow): TxnRecord {
  return {
    txnId: r.txn_id,
    sequence: r.sequence ?? 0n,
    callerUserId: r.caller_user_id,
    idempotencyKey: r.idempotency_key,
    fingerprint: r.fingerprint,
    fromAccountId: r.from_account_id,
    toAccountId: r.to_account_id,
    fromBank: r.from_bank,
    toBank: r.to_bank,
    amountMinor: r.amount_minor,
    currency: r.currency,
    memo: r.memo,
    status: r.status,
    declineReason: r.decline_reason,
    createdAtMs: num(r.created_at),
    decidedAtMs: num(r.decided_at),
  };
}

interface DecisionRow {
  txn_id: string;
  decision: Decision;
  reason: string;
  decided_at: bigint;
}

const toDecision = (r: DecisionRow): DecisionRecord => ({
  txnId: r.txn_id,
  decision: r.decision,
  reason: r.reason,
  decidedAtMs: num(r.decided_at),
});

export type SqliteCoordinatorLog = CoordinatorLog &
  TxnHistory & {
    /** Writes queued for group commit, now (before closing the database). */
    flush(): void;
  };

interface RoundRow {
  txn_id: string;
  kind: string;
  banks: string;
  created_at: bigint;
}

const toRound = (r: RoundRow): RoundRecord => ({
  txnId: r.txn_id,
  kind: r.kind,
  banks: r.banks.split(","),
  createdAtMs: num(r.created_at),
});

/** `<replica>:` as a LIKE prefix (replica names are [a-z0-9-], no wildcards). */
const prefixOf = (replica: string) => `${replica}:%`;

/** Claims, rounds and decisions: what the 2PC hot path writes. */
function decisionStatements(db: Db) {
  return {
    txn: db.prepare("SELECT * FROM txns WHERE txn_id = ?"),
    keyOwner: db.prepare("SELECT * FROM txns WHERE caller_user_id = ? AND idempotency_key = ? AND owns_key = 1"),
    insertTxn:
      db.prepare(`INSERT INTO txns (txn_id, caller_user_id, idempotency_key, owns_key, fingerprint, from_account_id, to_account_id,
        from_bank, to_bank, amount_minor, currency, memo, status, created_at)
      VALUES (@txnId, @callerUserId, @idempotencyKey, 1, @fingerprint, @fromAccountId, @toAccountId,
        @fromBank, @toBank, @amountMinor, @currency, @memo, 'PENDING', @createdAtMs)`),
    releaseKey: db.prepare("UPDATE txns SET owns_key = 0 WHERE txn_id = ? AND owns_key = 1 AND status = 'ABORTED'"),
    insertRound: db.prepare(
      "INSERT INTO rounds (txn_id, kind, banks, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(txn_id) DO NOTHING",
    ),
    round: db.prepare("SELECT * FROM rounds WHERE txn_id = ?"),
    decision: db.prepare("SELECT * FROM decisions WHERE txn_id = ?"),
    insertDecision: db.prepare(
      "INSERT INTO decisions (txn_id, decision, reason, decided_at) VALUES (?, ?, ?, ?) ON CONFLICT(txn_id) DO NOTHING",
    ),
    insertAck: db.prepare(
      "INSERT INTO decision_acks (txn_id, bank, next_attempt_at) VALUES (?, ?, ?) ON CONFLICT(txn_id, bank) DO NOTHING",
    ),
    nextSequence: db.prepare("SELECT COALESCE(MAX(sequence), 0) + 1 AS next FROM txns"),
    settleTxn: db.prepare(
      "UPDATE txns SET status = ?, decline_reason = ?, decided_at = ?, sequence = ? WHERE txn_id = ? AND status = 'PENDING'",
    ),
  };
}

/** Acknowledgements and the scans recovery, redrive, metrics and history read. */
function scanStatements(db: Db) {
  return {
    unackedBanks: db.prepare("SELECT bank FROM decision_acks WHERE txn_id = ? AND acked_at IS NULL ORDER BY bank"),
    ack: db.prepare(
      "UPDATE decision_acks SET acked_at = ?, last_error = '' WHERE txn_id = ? AND bank = ? AND acked_at IS NULL",
    ),
    defer: db.prepare(
      "UPDATE decision_acks SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE txn_id = ? AND bank = ? AND acked_at IS NULL",
    ),
    // Claims what it returns: next_attempt_at moves past the claim, so another redrive pass skips it meanwhile.
    due: db.prepare(`UPDATE decision_acks SET next_attempt_at = @claimedUntil
      WHERE rowid IN (SELECT rowid FROM decision_acks WHERE acked_at IS NULL AND next_attempt_at <= @now ORDER BY next_attempt_at LIMIT @limit)
      RETURNING txn_id, bank, attempts, (SELECT decision FROM decisions d WHERE d.txn_id = decision_acks.txn_id) AS decision`),
    reschedule: db.prepare("UPDATE decision_acks SET next_attempt_at = ? WHERE acked_at IS NULL"),
    pendingUndecided:
      db.prepare(`SELECT t.* FROM txns t WHERE t.status = 'PENDING' AND t.txn_id LIKE @prefix AND t.created_at < @before
      AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.txn_id = t.txn_id) ORDER BY t.created_at LIMIT @limit`),
    undecidedRounds: db.prepare(`SELECT r.* FROM rounds r WHERE r.txn_id LIKE @prefix AND r.created_at < @before
      AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.txn_id = r.txn_id) ORDER BY r.created_at LIMIT @limit`),
    unacked:
      db.prepare(`SELECT d.txn_id, d.decision, d.decided_at, group_concat(a.bank) AS banks, max(a.last_error) AS last_error
      FROM decision_acks a JOIN decisions d ON d.txn_id = a.txn_id WHERE a.acked_at IS NULL
      GROUP BY d.txn_id ORDER BY d.decided_at LIMIT ?`),
    // Both halves read only the partial indexes (txns_pending, decision_acks_due): cheap at every scrape.
    inDoubt: db.prepare(`SELECT
        (SELECT count(*) FROM txns WHERE status = 'PENDING') + (SELECT count(DISTINCT txn_id) FROM decision_acks WHERE acked_at IS NULL) AS n,
        min(
          coalesce((SELECT min(created_at) FROM txns WHERE status = 'PENDING'), 9223372036854775807),
          coalesce((SELECT min(coalesce(t.created_at, d.decided_at)) FROM decision_acks a JOIN decisions d ON d.txn_id = a.txn_id
                    LEFT JOIN txns t ON t.txn_id = a.txn_id WHERE a.acked_at IS NULL), 9223372036854775807)
        ) AS oldest`),
    visible: db.prepare(`SELECT * FROM txns WHERE sequence > @after AND (caller_user_id = @user
        OR from_account_id IN (SELECT account_id FROM accounts WHERE owner_user_id = @user)
        OR to_account_id IN (SELECT account_id FROM accounts WHERE owner_user_id = @user))
      ORDER BY sequence LIMIT @limit`),
  };
}

export function createSqliteCoordinatorLog(db: Db, group: GroupCommit = createGroupCommit(db)): SqliteCoordinatorLog {
  const q = { ...decisionStatements(db), ...scanStatements(db) };

  const findTxnNow = (txnId: string): TxnRecord | undefined => {
    const r = q.txn.get(txnId) as TxnRow | undefined;
    return r ? toTxn(r) : undefined;
  };
  const findDecisionNow = (txnId: string): DecisionRecord | undefined => {
    const r = q.decision.get(txnId) as DecisionRow | undefined;
    return r ? toDecision(r) : undefined;
  };

  // Plain functions: group commit runs each in its own savepoint. Each is
  // idempotent, so a re-run after a lost batch reports what the first run did.
  const claimTx = (txn: NewTxn): Claim => {
    const owner = q.keyOwner.get(txn.callerUserId, txn.idempotencyKey) as TxnRow | undefined;
    if (owner)
      return owner.txn_id === txn.txnId
        ? { claimed: true, txn: toTxn(owner) }
        : { claimed: false, owner: toTxn(owner) };
    assert(q.insertTxn.run(txn).changes === 1, "a free key is claimed");
    // What was just written, without reading it back (the hot path: one write per transfer).
    return { claimed: true, txn: { ...txn, sequence: 0n, status: "PENDING", declineReason: "", decidedAtMs: 0 } };
  };

  const reclaimTx = (previousTxnId: string, txn: NewTxn): Claim => {
    // Only an ABORTED owner lets go (the old txn keeps its row and decision);
    // if another retry already took the key, claimTx reports that owner.
    q.releaseKey.run(previousTxnId);
    return claimTx(txn);
  };

  // The last sequence handed out. One process writes this file (SQLite), so it
  // can count in memory; read once from the table, then every decision that
  // settles a transfer takes the next (inside its write transaction).
  let lastSequence: bigint | undefined;
  const nextSequence = (): bigint => {
    lastSequence = (lastSequence ?? (q.nextSequence.get() as { next: bigint }).next - 1n) + 1n;
    return lastSequence;
  };

  const decideTx = (input: DecideInput): Decided => {
    const wrote = q.insertDecision.run(input.txnId, input.decision, input.reason, input.nowMs).changes === 1;
    const winner: DecisionRecord | undefined = wrote
      ? { txnId: input.txnId, decision: input.decision, reason: input.reason, decidedAtMs: input.nowMs }
      : findDecisionNow(input.txnId);
    assert(winner !== undefined, "a decision is logged for the txn");
    const row = q.txn.get(input.txnId) as TxnRow | undefined;
    if (!row) {
      if (wrote) for (const bank of input.participants) q.insertAck.run(input.txnId, bank, input.firstResendAtMs);
      return { decision: winner, txn: undefined };
    }
    const txn = toTxn(row);
    if (!wrote) {
      assert(
        txn.status === (winner.decision === "COMMIT" ? "COMMITTED" : "ABORTED"),
        "a decided txn's status follows its logged decision",
      );
      return { decision: winner, txn };
    }
    // We wrote it: settle the txn's status and its place in the history in the same fsync.
    assert(txn.status === "PENDING", `txn ${input.txnId} decided twice`);
    const sequence = nextSequence();
    const status: TxnStatus = winner.decision === "COMMIT" ? "COMMITTED" : "ABORTED";
    assert(
      q.settleTxn.run(status, winner.reason, input.nowMs, sequence, input.txnId).changes === 1,
      "the pending txn settles",
    );
    for (const bank of input.participants) q.insertAck.run(input.txnId, bank, input.firstResendAtMs);
    return {
      decision: winner,
      txn: { ...txn, status, declineReason: winner.reason, decidedAtMs: input.nowMs, sequence },
    };
  };

  // Acks share the fsyncs too. One that a crash loses only costs a resend
  // the bank answers idempotently; readers of ack state flush first.
  const background = (write: () => unknown) => {
    group.enqueueLazy(write).catch(() => {
      // The pair stays unacknowledged and is resent: at worst one extra Commit/Abort.
    });
  };

  const dueNow = db.transaction((nowMs: number, limit: number, claimMs: number): AckTask[] =>
    (
      q.due.all({ now: nowMs, limit, claimedUntil: nowMs + claimMs }) as {
        txn_id: string;
        bank: string;
        attempts: bigint;
        decision: Decision;
      }[]
    )
      .map((r) => ({ txnId: r.txn_id, bank: r.bank, decision: r.decision, attempts: num(r.attempts) }))
      .sort((a, b) => (a.txnId < b.txnId ? -1 : a.txnId > b.txnId ? 1 : a.bank < b.bank ? -1 : 1)),
  );

  return {
    findTxn: async (txnId) => findTxnNow(txnId),
    findDecision: async (txnId) => findDecisionNow(txnId),
    claim: (txn) => group.enqueue(() => claimTx(txn)),
    reclaim: (previousTxnId, txn) => group.enqueue(() => reclaimTx(previousTxnId, txn)),
    registerRound: (round) =>
      group.enqueue(() => void q.insertRound.run(round.txnId, round.kind, round.banks.join(","), round.createdAtMs)),
    async findRound(txnId) {
      const r = q.round.get(txnId) as RoundRow | undefined;
      return r ? toRound(r) : undefined;
    },
    decide: (input) => group.enqueue(() => decideTx(input)),
    async unackedBanks(txnId) {
      group.flush();
      return (q.unackedBanks.all(txnId) as { bank: string }[]).map((r) => r.bank);
    },
    ack(txnId, bank, nowMs) {
      background(() => q.ack.run(nowMs, txnId, bank));
    },
    deferAck(txnId, bank, attempts, nextAttemptAtMs, error) {
      background(() => q.defer.run(attempts, nextAttemptAtMs, error.slice(0, 500), txnId, bank));
    },
    flush: () => group.flush(),
    async dueAcks(nowMs, limit, claimMs) {
      group.flush();
      return dueNow(nowMs, limit, claimMs);
    },
    async rescheduleUnacked(nowMs) {
      group.flush();
      return q.reschedule.run(nowMs).changes;
    },
    async pendingUndecided(limit, filter = {}) {
      group.flush();
      const prefix = filter.replica === undefined ? "%" : prefixOf(filter.replica);
      return (
        q.pendingUndecided.all({ limit, prefix, before: filter.createdBeforeMs ?? Number.MAX_SAFE_INTEGER }) as TxnRow[]
      ).map(toTxn);
    },
    async undecidedRounds(limit, replica, createdBeforeMs) {
      group.flush();
      return (q.undecidedRounds.all({ limit, prefix: prefixOf(replica), before: createdBeforeMs }) as RoundRow[]).map(
        toRound,
      );
    },
    async unackedDecisions(limit): Promise<UnackedDecision[]> {
      group.flush();
      return (
        q.unacked.all(limit) as {
          txn_id: string;
          decision: Decision;
          decided_at: bigint;
          banks: string;
          last_error: string;
        }[]
      ).map((r) => ({
        txnId: r.txn_id,
        decision: r.decision,
        decidedAtMs: num(r.decided_at),
        banks: r.banks.split(","),
        lastError: r.last_error,
      }));
    },
    async inDoubtSummary(nowMs): Promise<InDoubtSummary> {
      group.flush();
      const r = q.inDoubt.get() as { n: bigint; oldest: bigint };
      const count = num(r.n);
      if (count === 0) return { count: 0, oldestAgeSeconds: 0 };
      return { count, oldestAgeSeconds: Math.max(0, nowMs - num(r.oldest)) / 1000 };
    },
    listVisible: async (userId, afterSequence, limit) =>
      (q.visible.all({ user: userId, after: afterSequence, limit }) as TxnRow[]).map(toTxn),
  };
}
