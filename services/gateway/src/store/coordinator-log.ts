// The coordinator log on SQLite: txns (with the idempotency key's owner),
// decisions (insert-if-absent) and per-participant acknowledgements.
import { assert } from "@paygate/money";
import type { AckTask, Decision, DecisionRecord, NewTxn, TxnRecord, TxnStatus, UnackedDecision } from "../domain/model.js";
import type { Claim, CoordinatorLog, DecideInput, TxnHistory } from "../domain/ports.js";
import { num, type Db } from "./db.js";
import { createGroupCommit } from "./group-commit.js";

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

const toDecision = (r: DecisionRow): DecisionRecord => ({ txnId: r.txn_id, decision: r.decision, reason: r.reason, decidedAtMs: num(r.decided_at) });

export interface InDoubtSummary {
  /** Txns PENDING (no decision yet) plus decided txns some participant has not acknowledged. */
  readonly count: number;
  /** Age of the oldest of them, from its creation; 0 when there is none. */
  readonly oldestAgeSeconds: number;
}

export type SqliteCoordinatorLog = CoordinatorLog &
  TxnHistory & {
    inDoubtSummary(nowMs: number): InDoubtSummary;
    /** Writes queued for group commit, now (before closing the database). */
    flush(): void;
  };

export function createSqliteCoordinatorLog(db: Db): SqliteCoordinatorLog {
  const q = {
    txn: db.prepare("SELECT * FROM txns WHERE txn_id = ?"),
    keyOwner: db.prepare("SELECT * FROM txns WHERE caller_user_id = ? AND idempotency_key = ? AND owns_key = 1"),
    insertTxn: db.prepare(`INSERT INTO txns (txn_id, caller_user_id, idempotency_key, owns_key, fingerprint, from_account_id, to_account_id,
        from_bank, to_bank, amount_minor, currency, memo, status, created_at)
      VALUES (@txnId, @callerUserId, @idempotencyKey, 1, @fingerprint, @fromAccountId, @toAccountId,
        @fromBank, @toBank, @amountMinor, @currency, @memo, 'PENDING', @createdAtMs)`),
    releaseKey: db.prepare("UPDATE txns SET owns_key = 0 WHERE txn_id = ? AND owns_key = 1 AND status = 'ABORTED'"),
    decision: db.prepare("SELECT * FROM decisions WHERE txn_id = ?"),
    insertDecision: db.prepare("INSERT INTO decisions (txn_id, decision, reason, decided_at) VALUES (?, ?, ?, ?) ON CONFLICT(txn_id) DO NOTHING"),
    insertAck: db.prepare("INSERT INTO decision_acks (txn_id, bank, next_attempt_at) VALUES (?, ?, ?) ON CONFLICT(txn_id, bank) DO NOTHING"),
    nextSequence: db.prepare("SELECT COALESCE(MAX(sequence), 0) + 1 AS next FROM txns"),
    settleTxn: db.prepare("UPDATE txns SET status = ?, decline_reason = ?, decided_at = ?, sequence = ? WHERE txn_id = ? AND status = 'PENDING'"),
    ack: db.prepare("UPDATE decision_acks SET acked_at = ?, last_error = '' WHERE txn_id = ? AND bank = ? AND acked_at IS NULL"),
    defer: db.prepare("UPDATE decision_acks SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE txn_id = ? AND bank = ? AND acked_at IS NULL"),
    due: db.prepare(`SELECT a.txn_id, a.bank, a.attempts, d.decision FROM decision_acks a JOIN decisions d ON d.txn_id = a.txn_id
      WHERE a.acked_at IS NULL AND a.next_attempt_at <= ? ORDER BY a.next_attempt_at LIMIT ?`),
    reschedule: db.prepare("UPDATE decision_acks SET next_attempt_at = ? WHERE acked_at IS NULL"),
    pendingUndecided: db.prepare(`SELECT t.* FROM txns t WHERE t.status = 'PENDING'
      AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.txn_id = t.txn_id) ORDER BY t.created_at LIMIT ?`),
    unacked: db.prepare(`SELECT d.txn_id, d.decision, d.decided_at, group_concat(a.bank) AS banks, max(a.last_error) AS last_error
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

  const findTxn = (txnId: string): TxnRecord | undefined => {
    const r = q.txn.get(txnId) as TxnRow | undefined;
    return r ? toTxn(r) : undefined;
  };
  const findDecision = (txnId: string): DecisionRecord | undefined => {
    const r = q.decision.get(txnId) as DecisionRow | undefined;
    return r ? toDecision(r) : undefined;
  };

  // Plain functions: group commit runs each in its own savepoint, decide() in its own transaction.
  const claimTx = (txn: NewTxn): Claim => {
    const owner = q.keyOwner.get(txn.callerUserId, txn.idempotencyKey) as TxnRow | undefined;
    if (owner) return { claimed: false, owner: toTxn(owner) };
    q.insertTxn.run(txn);
    const inserted = findTxn(txn.txnId);
    assert(inserted !== undefined, "claimed txn is readable");
    return { claimed: true, txn: inserted };
  };

  const reclaimTx = (previousTxnId: string, txn: NewTxn): Claim => {
    // Only an ABORTED owner lets go (the old txn keeps its row and decision);
    // if another retry already took the key, claimTx reports that owner.
    q.releaseKey.run(previousTxnId);
    return claimTx(txn);
  };

  const decideTx = (input: DecideInput): DecisionRecord => {
    const wrote = q.insertDecision.run(input.txnId, input.decision, input.reason, input.nowMs).changes === 1;
    const winner = findDecision(input.txnId);
    assert(winner !== undefined, "decision is readable after insert");
    assert(!wrote || winner.decision === input.decision, "the decision we wrote is the one logged");
    const txn = q.txn.get(input.txnId) as TxnRow | undefined;
    if (wrote) {
      // We wrote it: settle the txn's status and its place in the history in the same fsync.
      if (txn) {
        assert(txn.status === "PENDING", `txn ${input.txnId} decided twice`);
        const next = (q.nextSequence.get() as { next: bigint }).next;
        const status: TxnStatus = winner.decision === "COMMIT" ? "COMMITTED" : "ABORTED";
        q.settleTxn.run(status, winner.reason, input.nowMs, next, input.txnId);
      }
      for (const bank of input.participants) q.insertAck.run(input.txnId, bank, input.firstResendAtMs);
    } else if (txn) {
      assert(txn.status === (winner.decision === "COMMIT" ? "COMMITTED" : "ABORTED"), "a decided txn's status follows its decision");
    }
    return winner;
  };
  const decideNow = db.transaction(decideTx);

  // Claims, decisions and acks of concurrent transfers share fsyncs. Claims
  // and decisions resolve only once durable. An ack that a crash loses only
  // costs a resend the bank answers idempotently; readers of ack state flush first.
  const group = createGroupCommit(db);
  const background = (write: () => unknown) => {
    group.enqueue(write).catch(() => {
      // The pair stays unacknowledged and is resent: at worst one extra Commit/Abort.
    });
  };

  return {
    findTxn,
    findDecision,
    claim: (txn) => group.enqueue(() => claimTx(txn)),
    reclaim: (previousTxnId, txn) => group.enqueue(() => reclaimTx(previousTxnId, txn)),
    decide: (input) => decideNow(input),
    decideDurably: (input) => group.enqueue(() => decideTx(input)),
    ack(txnId, bank, nowMs) {
      background(() => q.ack.run(nowMs, txnId, bank));
    },
    deferAck(txnId, bank, attempts, nextAttemptAtMs, error) {
      background(() => q.defer.run(attempts, nextAttemptAtMs, error.slice(0, 500), txnId, bank));
    },
    flush: () => group.flush(),
    dueAcks(nowMs, limit): AckTask[] {
      group.flush();
      return (q.due.all(nowMs, limit) as { txn_id: string; bank: string; attempts: bigint; decision: Decision }[]).map((r) => ({
        txnId: r.txn_id,
        bank: r.bank,
        decision: r.decision,
        attempts: num(r.attempts),
      }));
    },
    rescheduleUnacked(nowMs) {
      group.flush();
      return q.reschedule.run(nowMs).changes;
    },
    pendingUndecided(limit) {
      group.flush();
      return (q.pendingUndecided.all(limit) as TxnRow[]).map(toTxn);
    },
    unackedDecisions(limit): UnackedDecision[] {
      group.flush();
      return (q.unacked.all(limit) as { txn_id: string; decision: Decision; decided_at: bigint; banks: string; last_error: string }[]).map((r) => ({
        txnId: r.txn_id,
        decision: r.decision,
        decidedAtMs: num(r.decided_at),
        banks: r.banks.split(","),
        lastError: r.last_error,
      }));
    },
    inDoubtSummary(nowMs) {
      group.flush();
      const r = q.inDoubt.get() as { n: bigint; oldest: bigint };
      const count = num(r.n);
      if (count === 0) return { count: 0, oldestAgeSeconds: 0 };
      return { count, oldestAgeSeconds: Math.max(0, nowMs - num(r.oldest)) / 1000 };
    },
    listVisible: (userId, afterSequence, limit) => (q.visible.all({ user: userId, after: afterSequence, limit }) as TxnRow[]).map(toTxn),
  };
}
