// The standing-hold half of LedgerTx on SQLite (the holds table, plus the
// auth_hold legs of PREPARED txns). Statements are prepared once.
import type Database from "better-sqlite3";
import type { Hold, HoldState, LedgerTx } from "../domain/types.js";

interface HoldRow {
  hold_id: string;
  account_id: string;
  amount_minor: bigint;
  currency: string;
  state: string;
  expires_at_ms: bigint;
  captured_minor: bigint;
  txn_id: string;
  pinned_txn_id: string;
  created_at_ms: bigint;
  closed_at_ms: bigint;
}

const toHold = (r: HoldRow): Hold => ({
  holdId: r.hold_id,
  accountId: r.account_id,
  amountMinor: r.amount_minor,
  currency: r.currency,
  state: r.state as HoldState,
  expiresAtMs: Number(r.expires_at_ms),
  capturedMinor: r.captured_minor,
  txnId: r.txn_id,
  pinnedTxnId: r.pinned_txn_id,
  createdAtMs: Number(r.created_at_ms),
  closedAtMs: Number(r.closed_at_ms),
});

export type HoldQueries = Pick<LedgerTx, "hold" | "insertHold" | "updateHold" | "preparedAuthHold" | "dueHolds">;

export class HoldStoreError extends Error {
  override name = "HoldStoreError";
}

export function createHoldQueries(db: Database.Database): HoldQueries {
  const q = {
    hold: db.prepare<[string], HoldRow>("SELECT * FROM holds WHERE hold_id = ?"),
    insert: db.prepare(
      `INSERT INTO holds (hold_id, account_id, amount_minor, currency, state, expires_at_ms, captured_minor, txn_id, pinned_txn_id, created_at_ms, closed_at_ms)
       VALUES (@holdId, @accountId, @amountMinor, @currency, @state, @expiresAtMs, @capturedMinor, @txnId, @pinnedTxnId, @createdAtMs, @closedAtMs)`,
    ),
    update: db.prepare(
      "UPDATE holds SET state = @state, captured_minor = @capturedMinor, pinned_txn_id = @pinnedTxnId, closed_at_ms = @closedAtMs WHERE hold_id = @holdId",
    ),
    preparedAuthHold: db.prepare<[string], { txn_id: string }>(
      "SELECT t.txn_id FROM txn_legs l JOIN txns t ON t.txn_id = l.txn_id WHERE l.hold_id = ? AND l.direction = 'auth_hold' AND t.state = 'PREPARED' LIMIT 1",
    ),
    due: db.prepare<[number, number], HoldRow>(
      "SELECT * FROM holds WHERE state = 'ACTIVE' AND expires_at_ms <= ? AND pinned_txn_id = '' ORDER BY expires_at_ms LIMIT ?",
    ),
  };
  return {
    hold(holdId) {
      const r = q.hold.get(holdId);
      return r ? toHold(r) : undefined;
    },
    insertHold(h) {
      q.insert.run({ ...h });
    },
    updateHold(holdId, change) {
      const r = q.update.run({ holdId, ...change });
      if (r.changes !== 1) throw new HoldStoreError(`no hold ${holdId} to update`);
    },
    preparedAuthHold: (holdId) => q.preparedAuthHold.get(holdId)?.txn_id,
    dueHolds: (nowMs, limit) => q.due.all(nowMs, limit).map(toHold),
  };
}
