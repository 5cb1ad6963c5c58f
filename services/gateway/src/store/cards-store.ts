// Cards, authorizations, settlement batches and refunds in the gateway's
// SQLite file (tables in db.ts's migrations). Unique indexes are the
// exactly-once guards: (merchant, key) per authorization, batch and refund;
// CHECKs repeat the money rules (a refund total never exceeds the captured
// amount, even with reservations). Every write goes through group commit, so
// concurrent authorizations share fsyncs; each write is one atomic step.
//
// The webhook outbox (DESIGN.md §12): a write that changes what a merchant is
// told about (an authorization's status, a failed capture, a finished batch, a
// committed refund) inserts its event in the same transaction (webhooks-store.ts).
//
// An authorization's operation lock and its refund reservations have tables
// of their own (card-auth-parts.ts): each write that changes them writes the
// row and the old columns in one transaction; the single writer makes every
// compare-and-set atomic.
import { assert } from "@paygate/money";
import type {
  AuthChange,
  AuthExpect,
  AuthOperation,
  AuthRecord,
  AuthStatus,
  BatchItemRecord,
  BatchRecord,
  CardRecord,
  CardStore,
  ItemStatus,
  RefundEnd,
  RefundRecord,
  RefundStart,
  RefundStatus,
} from "../domain/cards-ports.js";
import { utcDayStartMs } from "../domain/risk.js";
import { AUTH_SELECT, opColumns, opOfRow, reservedOfRow, type AuthPartsRow } from "./card-auth-parts.js";
import { num, type Db } from "./db.js";
import { createGroupCommit, type GroupCommit } from "./group-commit.js";
import {
  captureFailedEvent,
  eventsForAuthChange,
  eventsForNewAuth,
  refundEvent,
  settlementEvent,
} from "../domain/webhook-events.js";
import { createSqliteOutbox } from "./webhooks-store.js";

interface CardRow {
  card_id: string;
  pan_hmac: string;
  last4: string;
  exp_month: bigint;
  exp_year: bigint;
  cvc_hash: string;
  cardholder_name: string;
  account_id: string;
  bank: string;
  owner_user_id: string;
  currency: string;
  created_at: bigint;
}

const toCard = (r: CardRow): CardRecord => ({
  cardId: r.card_id,
  panHmac: r.pan_hmac,
  last4: r.last4,
  expMonth: num(r.exp_month),
  expYear: num(r.exp_year),
  cvcHash: r.cvc_hash,
  cardholderName: r.cardholder_name,
  accountId: r.account_id,
  bank: r.bank,
  ownerUserId: r.owner_user_id,
  currency: r.currency,
  createdAtMs: num(r.created_at),
});

interface AuthRow extends AuthPartsRow {
  auth_id: string;
  replica: string;
  auth_code: string;
  merchant_user_id: string;
  idempotency_key: string;
  fingerprint: string;
  card_id: string;
  card_last4: string;
  card_account_id: string;
  card_bank: string;
  card_owner_user_id: string;
  merchant_account_id: string;
  merchant_bank: string;
  amount_minor: bigint;
  currency: string;
  merchant_reference: string;
  status: string;
  decline_reason: string;
  risk_score: bigint;
  risk_approved: bigint;
  risk_rule: string;
  hold_txn_id: string;
  captured_minor: bigint;
  capture_txn_id: string;
  capture_batch_id: string;
  capture_item_index: bigint;
  refunded_minor: bigint;
  created_at: bigint;
  expires_at: bigint;
  updated_at: bigint;
}

const toAuth = (r: AuthRow): AuthRecord => ({
  authId: r.auth_id,
  replica: r.replica,
  authCode: r.auth_code,
  merchantUserId: r.merchant_user_id,
  idempotencyKey: r.idempotency_key,
  fingerprint: r.fingerprint,
  cardId: r.card_id,
  cardLast4: r.card_last4,
  cardAccountId: r.card_account_id,
  cardBank: r.card_bank,
  cardOwnerUserId: r.card_owner_user_id,
  merchantAccountId: r.merchant_account_id,
  merchantBank: r.merchant_bank,
  amountMinor: r.amount_minor,
  currency: r.currency,
  merchantReference: r.merchant_reference,
  status: r.status as AuthStatus,
  declineReason: r.decline_reason,
  riskScore: num(r.risk_score),
  riskApproved: r.risk_approved === 1n,
  riskRule: r.risk_rule,
  holdTxnId: r.hold_txn_id,
  op: opOfRow(r),
  capturedMinor: r.captured_minor,
  captureTxnId: r.capture_txn_id,
  captureBatchId: r.capture_batch_id,
  captureItemIndex: num(r.capture_item_index),
  refundedMinor: r.refunded_minor,
  refundReservedMinor: reservedOfRow(r),
  createdAtMs: num(r.created_at),
  expiresAtMs: num(r.expires_at),
  updatedAtMs: num(r.updated_at),
});

/** The record as named statement parameters (booleans as 0/1; the operation as the old op_* columns). */
function authParams(a: AuthRecord): Record<string, unknown> {
  return { ...a, ...opColumns(a.op), riskApproved: a.riskApproved ? 1 : 0 };
}

interface BatchRow {
  batch_id: string;
  owner_replica: string;
  merchant_user_id: string;
  idempotency_key: string;
  fingerprint: string;
  status: string;
  created_at: bigint;
}

const toBatch = (r: BatchRow): BatchRecord => ({
  batchId: r.batch_id,
  merchantUserId: r.merchant_user_id,
  idempotencyKey: r.idempotency_key,
  fingerprint: r.fingerprint,
  status: r.status as BatchRecord["status"],
  ownerReplica: r.owner_replica,
  createdAtMs: num(r.created_at),
});

interface ItemRow {
  batch_id: string;
  item_index: bigint;
  auth_code: string;
  amount_minor: bigint;
  status: string;
  reason: string;
  captured_minor: bigint;
  txn_id: string;
}

const toItem = (r: ItemRow): BatchItemRecord => ({
  batchId: r.batch_id,
  index: num(r.item_index),
  authCode: r.auth_code,
  amountMinor: r.amount_minor,
  status: r.status as ItemStatus,
  reason: r.reason,
  capturedMinor: r.captured_minor,
  txnId: r.txn_id,
});

interface RefundRow {
  refund_id: string;
  merchant_user_id: string;
  idempotency_key: string;
  fingerprint: string;
  auth_id: string;
  amount_minor: bigint;
  txn_id: string;
  status: string;
  reason: string;
  created_at: bigint;
}

const toRefund = (r: RefundRow): RefundRecord => ({
  refundId: r.refund_id,
  merchantUserId: r.merchant_user_id,
  idempotencyKey: r.idempotency_key,
  fingerprint: r.fingerprint,
  authId: r.auth_id,
  amountMinor: r.amount_minor,
  txnId: r.txn_id,
  status: r.status as RefundStatus,
  reason: r.reason,
  createdAtMs: num(r.created_at),
});

const AUTH_COLUMNS = `auth_id, replica, auth_code, merchant_user_id, idempotency_key, fingerprint, card_id, card_last4, card_account_id, card_bank,
  card_owner_user_id, merchant_account_id, merchant_bank, amount_minor, currency, merchant_reference, status, decline_reason, risk_score,
  risk_approved, risk_rule, hold_txn_id, op_txn_id, op_kind, op_amount_minor, op_batch_id, op_item_index, captured_minor, capture_txn_id,
  capture_batch_id, capture_item_index, refunded_minor, refund_reserved_minor, created_at, expires_at, updated_at`;
const AUTH_VALUES = `@authId, @replica, @authCode, @merchantUserId, @idempotencyKey, @fingerprint, @cardId, @cardLast4, @cardAccountId, @cardBank,
  @cardOwnerUserId, @merchantAccountId, @merchantBank, @amountMinor, @currency, @merchantReference, @status, @declineReason, @riskScore,
  @riskApproved, @riskRule, @holdTxnId, @opTxnId, @opKind, @opAmountMinor, @opBatchId, @opItemIndex, @capturedMinor, @captureTxnId,
  @captureBatchId, @captureItemIndex, @refundedMinor, @refundReservedMinor, @createdAtMs, @expiresAtMs, @updatedAtMs`;

/** An authorization that counts toward its card's spend (the risk rule's, DESIGN.md §6.1). */
const COUNTS_AS_SPEND = "(status IN ('APPROVED', 'CAPTURED') OR (status = 'PENDING' AND risk_approved = 1))";

/** `<replica>:` as a LIKE prefix (replica names are [a-z0-9-], no wildcards). */
const prefixOf = (replica: string | undefined) => (replica === undefined ? "%" : `${replica}:%`);

/** Cards and authorizations: the statements of the card store, prepared once. */
const authStatements = (db: Db) => ({
  insertCard:
    db.prepare(`INSERT INTO cards (card_id, pan_hmac, last4, exp_month, exp_year, cvc_hash, cardholder_name, account_id, bank, owner_user_id, currency, created_at)
      VALUES (@cardId, @panHmac, @last4, @expMonth, @expYear, @cvcHash, @cardholderName, @accountId, @bank, @ownerUserId, @currency, @createdAtMs)
      ON CONFLICT (pan_hmac) DO NOTHING`),
  cardByPan: db.prepare("SELECT * FROM cards WHERE pan_hmac = ?"),
  authById: db.prepare(`${AUTH_SELECT} WHERE a.auth_id = ?`),
  authByCode: db.prepare(`${AUTH_SELECT} WHERE a.auth_code = ?`),
  authByKey: db.prepare(`${AUTH_SELECT} WHERE a.merchant_user_id = ? AND a.idempotency_key = ?`),
  insertAuth: db.prepare(
    `INSERT INTO card_authorizations (${AUTH_COLUMNS}) VALUES (${AUTH_VALUES}) ON CONFLICT DO NOTHING`,
  ),
  // Every mutable column at once: updateAuth reads, merges and writes inside one transaction.
  writeAuth:
    db.prepare(`UPDATE card_authorizations SET status = @status, decline_reason = @declineReason, risk_score = @riskScore,
      risk_approved = @riskApproved, risk_rule = @riskRule, hold_txn_id = @holdTxnId, op_txn_id = @opTxnId, op_kind = @opKind,
      op_amount_minor = @opAmountMinor, op_batch_id = @opBatchId, op_item_index = @opItemIndex, captured_minor = @capturedMinor,
      capture_txn_id = @captureTxnId, capture_batch_id = @captureBatchId, capture_item_index = @captureItemIndex, updated_at = @updatedAtMs,
      last_op_id = @lastOpId
      WHERE auth_id = @authId`),
  lastOp: db.prepare("SELECT last_op_id FROM card_authorizations WHERE auth_id = ?"),
  putOp: db.prepare(`INSERT INTO card_auth_ops (auth_id, txn_id, kind, amount_minor, batch_id, item_index, created_at)
      VALUES (@authId, @txnId, @kind, @amountMinor, @batchId, @itemIndex, @nowMs)
      ON CONFLICT (auth_id) DO UPDATE SET txn_id = excluded.txn_id, kind = excluded.kind, amount_minor = excluded.amount_minor,
        batch_id = excluded.batch_id, item_index = excluded.item_index, created_at = excluded.created_at`),
  clearOp: db.prepare("DELETE FROM card_auth_ops WHERE auth_id = ?"),
  deleteAuth: db.prepare("DELETE FROM card_authorizations WHERE auth_id = ? AND status = 'PENDING'"),
  spent: db.prepare(`SELECT coalesce(sum(amount_minor), 0) AS total FROM card_authorizations
      WHERE card_id = ? AND created_at >= ? AND auth_id != ? AND ${COUNTS_AS_SPEND}`),
  // The same sum from the per-day totals (db.ts v6) when the window starts on a UTC day: one
  // row per day instead of every authorization of it; the excluded one's own share comes off.
  spentByDay: db.prepare(`SELECT
      (SELECT coalesce(sum(spent_minor), 0) FROM card_daily_spend WHERE card_id = @cardId AND day_start >= @sinceMs)
      - coalesce((SELECT CASE WHEN ${COUNTS_AS_SPEND} THEN amount_minor ELSE 0 END FROM card_authorizations
                  WHERE auth_id = @excludeAuthId AND card_id = @cardId AND created_at >= @sinceMs), 0)
      AS total`),
  pending: db.prepare(
    `${AUTH_SELECT} WHERE a.status = 'PENDING' AND (@replica IS NULL OR a.replica = @replica) ORDER BY a.created_at LIMIT @limit`,
  ),
  // The column names every lock, whichever release took it.
  withOp: db.prepare(
    `${AUTH_SELECT} WHERE a.op_txn_id != '' AND a.op_txn_id LIKE @prefix ORDER BY a.updated_at LIMIT @limit`,
  ),
  due: db.prepare(
    `${AUTH_SELECT} WHERE a.status = 'APPROVED' AND a.expires_at <= ? AND a.op_txn_id = '' ORDER BY a.expires_at LIMIT ?`,
  ),
  expire: db.prepare(
    "UPDATE card_authorizations SET status = 'EXPIRED', updated_at = ? WHERE auth_id = ? AND status = 'APPROVED' AND op_txn_id = ''",
  ),
});

/** Settlement batches and their items. */
const settleStatements = (db: Db) => ({
  insertBatch:
    db.prepare(`INSERT INTO card_settle_batches (batch_id, merchant_user_id, idempotency_key, fingerprint, status, owner_replica, created_at)
      VALUES (@batchId, @merchantUserId, @idempotencyKey, @fingerprint, @status, @ownerReplica, @createdAtMs) ON CONFLICT DO NOTHING`),
  insertItem: db.prepare(
    "INSERT INTO card_settle_items (batch_id, item_index, auth_code, amount_minor) VALUES (?, ?, ?, ?)",
  ),
  batchByKey: db.prepare("SELECT * FROM card_settle_batches WHERE merchant_user_id = ? AND idempotency_key = ?"),
  batchById: db.prepare("SELECT * FROM card_settle_batches WHERE batch_id = ?"),
  takeBatch: db.prepare(
    "UPDATE card_settle_batches SET owner_replica = @to WHERE batch_id = @batchId AND status = 'PENDING' AND owner_replica = @from",
  ),
  owned: db.prepare("SELECT batch_id FROM card_settle_batches WHERE status = 'PENDING' AND owner_replica = ?"),
  release: db.prepare(
    "UPDATE card_settle_batches SET owner_replica = '' WHERE batch_id = ? AND status = 'PENDING' AND owner_replica = ?",
  ),
  items: db.prepare("SELECT * FROM card_settle_items WHERE batch_id = ? ORDER BY item_index"),
  item: db.prepare("SELECT * FROM card_settle_items WHERE batch_id = ? AND item_index = ?"),
  setItem: db.prepare(
    "UPDATE card_settle_items SET status = ?, reason = ?, captured_minor = ?, txn_id = ? WHERE batch_id = ? AND item_index = ?",
  ),
  finishBatch: db.prepare(
    "UPDATE card_settle_batches SET status = 'DONE', finished_at = ? WHERE batch_id = ? AND status = 'PENDING'",
  ),
});

/** Refunds and the reservations they hold while their round is in flight. */
const refundStatements = (db: Db) => ({
  reserve: db.prepare(
    "INSERT INTO card_refund_reservations (refund_txn_id, auth_id, amount_minor, created_at) VALUES (?, ?, ?, ?)",
  ),
  unreserve: db.prepare("DELETE FROM card_refund_reservations WHERE refund_txn_id = ?"),
  adjustRefunds:
    db.prepare(`UPDATE card_authorizations SET refunded_minor = refunded_minor + ?, refund_reserved_minor = refund_reserved_minor + ?, updated_at = ?
      WHERE auth_id = ?`),
  reserveRefund:
    db.prepare(`UPDATE card_authorizations SET refund_reserved_minor = refund_reserved_minor + @amount, updated_at = @now
      WHERE auth_id = @authId AND status = 'CAPTURED' AND refunded_minor + refund_reserved_minor + @amount <= captured_minor`),
  insertRefund:
    db.prepare(`INSERT INTO card_refunds (refund_id, merchant_user_id, idempotency_key, fingerprint, auth_id, amount_minor, txn_id, status, reason, created_at)
      VALUES (@refundId, @merchantUserId, @idempotencyKey, @fingerprint, @authId, @amountMinor, @txnId, @status, @reason, @createdAtMs) ON CONFLICT DO NOTHING`),
  refundByKey: db.prepare("SELECT * FROM card_refunds WHERE merchant_user_id = ? AND idempotency_key = ?"),
  refundById: db.prepare("SELECT * FROM card_refunds WHERE refund_id = ?"),
  decideRefund: db.prepare(
    "UPDATE card_refunds SET status = ?, reason = ?, decided_at = ? WHERE refund_id = ? AND status = 'PENDING'",
  ),
  deleteRefund: db.prepare("DELETE FROM card_refunds WHERE refund_id = ? AND status = 'PENDING'"),
  pendingRefunds: db.prepare(
    "SELECT * FROM card_refunds WHERE status = 'PENDING' AND txn_id LIKE @prefix ORDER BY created_at LIMIT @limit",
  ),
});

type CardStatements = ReturnType<typeof authStatements> &
  ReturnType<typeof settleStatements> &
  ReturnType<typeof refundStatements>;

/** `clockMs`: the time of events whose store call carries none (a failed batch item). */
/** The card's spend since `sinceMs`, but for `excludeAuthId`'s own. */
function spentOf(q: CardStatements, cardId: string, sinceMs: number, excludeAuthId: string): bigint {
  const row =
    sinceMs === utcDayStartMs(sinceMs)
      ? q.spentByDay.get({ cardId, sinceMs, excludeAuthId })
      : q.spent.get(cardId, sinceMs, excludeAuthId);
  return (row as { total: bigint }).total;
}

export function createSqliteCardStore(
  db: Db,
  group: GroupCommit = createGroupCommit(db),
  clockMs: () => number = Date.now,
): CardStore {
  const outbox = createSqliteOutbox(db);
  const q: CardStatements = { ...authStatements(db), ...settleStatements(db), ...refundStatements(db) };

  const authNow = (authId: string): AuthRecord | undefined => {
    const r = q.authById.get(authId) as AuthRow | undefined;
    return r ? toAuth(r) : undefined;
  };
  const refundNow = (refundId: string): RefundRecord | undefined => {
    const r = q.refundById.get(refundId) as RefundRow | undefined;
    return r ? toRefund(r) : undefined;
  };

  function updateAuthNow(authId: string, expect: AuthExpect, change: AuthChange, nowMs: number, opId: string): boolean {
    const current = authNow(authId);
    if (!current) return false;
    const lastOp = (q.lastOp.get(authId) as { last_op_id: string }).last_op_id;
    if (lastOp === opId) return true; // this very update, re-run after an unknown outcome
    if (expect.status !== undefined && current.status !== expect.status) return false;
    if (expect.opTxnId !== undefined && (current.op?.txnId ?? "") !== expect.opTxnId) return false;
    const next: AuthRecord = { ...current, ...change, updatedAtMs: nowMs };
    q.writeAuth.run({ ...authParams(next), lastOpId: opId });
    if (change.op !== undefined) writeOpNow(authId, change.op, nowMs);
    outbox.insert(eventsForAuthChange(current, next, nowMs));
    return true;
  }

  /** The operation's row, in step with the op_* columns written next to it. */
  function writeOpNow(authId: string, op: AuthOperation | null, nowMs: number): void {
    if (op) q.putOp.run({ ...op, authId, nowMs });
    else q.clearOp.run(authId);
  }

  function finishRefundNow(refundId: string, end: RefundEnd, nowMs: number): void {
    const r = refundNow(refundId);
    if (!r || r.status !== "PENDING") return; // finished already (a re-run, or another replica's recovery)
    q.unreserve.run(r.txnId);
    if (end.status === "COMMITTED") {
      q.adjustRefunds.run(r.amountMinor, -r.amountMinor, nowMs, r.authId);
      q.decideRefund.run("COMMITTED", "", nowMs, refundId);
      const after = authNow(r.authId);
      assert(after !== undefined, "a refund's authorization exists");
      outbox.insert([refundEvent({ ...r, status: "COMMITTED" }, after, nowMs)]);
      return;
    }
    q.adjustRefunds.run(0n, -r.amountMinor, nowMs, r.authId);
    if (end.status === "RETRY") q.deleteRefund.run(refundId);
    else q.decideRefund.run("FAILED", end.reason, nowMs, refundId);
  }

  function startRefundNow(r: RefundRecord, nowMs: number): RefundStart {
    const existing = q.refundByKey.get(r.merchantUserId, r.idempotencyKey) as RefundRow | undefined;
    if (existing)
      return existing.refund_id === r.refundId ? { started: true } : { started: false, existing: toRefund(existing) };
    if (q.reserveRefund.run({ authId: r.authId, amount: r.amountMinor, now: nowMs }).changes !== 1) {
      const a = authNow(r.authId);
      return { started: false, refundableMinor: a ? a.capturedMinor - a.refundedMinor - a.refundReservedMinor : 0n };
    }
    q.insertRefund.run({ ...r });
    q.reserve.run(r.txnId, r.authId, r.amountMinor, nowMs);
    return { started: true };
  }

  function recordRiskNow(
    authId: string,
    cardId: string,
    sinceMs: number,
    spentMinor: bigint,
    change: AuthChange,
    nowMs: number,
  ): boolean {
    // One writer at a time (SQLite): the spend read here is the spend at commit.
    const now = spentOf(q, cardId, sinceMs, authId);
    if (now !== spentMinor) return false;
    return updateAuthNow(authId, { status: "PENDING" }, change, nowMs, `risk/${authId}`);
  }

  const expireNow = (nowMs: number, limit: number): AuthRecord[] => {
    const due = (q.due.all(nowMs, limit) as AuthRow[]).map(toAuth);
    for (const a of due) assert(q.expire.run(nowMs, a.authId).changes === 1, `authorization ${a.authId} expires once`);
    const expired = due.map((a) => ({ ...a, status: "EXPIRED" as const, updatedAtMs: nowMs }));
    due.forEach((a, i) => outbox.insert(eventsForAuthChange(a, expired[i]!, nowMs)));
    return expired;
  };

  const write = <T>(fn: () => T): Promise<T> => group.enqueue(fn);

  return {
    insertCard: (card) =>
      write(
        () =>
          q.insertCard.run({ ...card }).changes === 1 ||
          (q.cardByPan.get(card.panHmac) as CardRow | undefined)?.card_id === card.cardId,
      ),
    async cardByPanHmac(panHmac) {
      const r = q.cardByPan.get(panHmac) as CardRow | undefined;
      return r ? toCard(r) : undefined;
    },
    authById: async (authId) => authNow(authId),
    async authByCode(code) {
      const r = q.authByCode.get(code) as AuthRow | undefined;
      return r ? toAuth(r) : undefined;
    },
    async authByKey(merchantUserId, key) {
      const r = q.authByKey.get(merchantUserId, key) as AuthRow | undefined;
      return r ? toAuth(r) : undefined;
    },
    insertAuth: (auth) =>
      write(() => {
        if (q.insertAuth.run(authParams(auth)).changes !== 1) return authNow(auth.authId) !== undefined;
        if (auth.op) writeOpNow(auth.authId, auth.op, auth.updatedAtMs);
        outbox.insert(eventsForNewAuth(auth, auth.updatedAtMs));
        return true;
      }),
    updateAuth: (authId, expect, change, nowMs, opId) =>
      write(() => updateAuthNow(authId, expect, change, nowMs, opId)),
    deleteAuth: (authId) => write(() => void q.deleteAuth.run(authId)),
    recordRisk: (authId, cardId, sinceMs, spentMinor, change, nowMs) =>
      write(() => recordRiskNow(authId, cardId, sinceMs, spentMinor, change, nowMs)),
    spentSince: async (cardId, sinceMs, excludeAuthId) => spentOf(q, cardId, sinceMs, excludeAuthId),
    pendingAuths: async (limit, replica) =>
      (q.pending.all({ limit, replica: replica ?? null }) as AuthRow[]).map(toAuth),
    authsWithOp: async (limit, replica) =>
      (q.withOp.all({ limit, prefix: prefixOf(replica) }) as AuthRow[]).map(toAuth),
    expireDue: (nowMs, limit) => write(() => expireNow(nowMs, limit)),
    ...settleMethods(q, write, outbox, clockMs),
    startRefund: (refund, nowMs) => write(() => startRefundNow(refund, nowMs)),
    finishRefund: (refundId, end, nowMs) => write(() => finishRefundNow(refundId, end, nowMs)),
    async refundByKey(merchantUserId, key) {
      const r = q.refundByKey.get(merchantUserId, key) as RefundRow | undefined;
      return r ? toRefund(r) : undefined;
    },
    refundById: async (refundId) => refundNow(refundId),
    pendingRefunds: async (limit, replica) =>
      (q.pendingRefunds.all({ limit, prefix: prefixOf(replica) }) as RefundRow[]).map(toRefund),
  };
}

type SettleMethods = Pick<
  CardStore,
  "insertBatch" | "batchByKey" | "batchItems" | "takeBatch" | "releaseBatches" | "setBatchItem" | "finishBatch"
>;

/** The settlement batches' part of the store: each write one group-committed transaction. */
function settleMethods(
  q: CardStatements,
  write: <T>(fn: () => T) => Promise<T>,
  outbox: ReturnType<typeof createSqliteOutbox>,
  clockMs: () => number,
): SettleMethods {
  const insertBatchNow = (batch: BatchRecord, items: readonly BatchItemRecord[]): boolean => {
    if (q.insertBatch.run({ ...batch }).changes !== 1) {
      // A re-run after a lost batch finds its own row.
      return (q.batchById.get(batch.batchId) as BatchRow | undefined) !== undefined;
    }
    for (const it of items) q.insertItem.run(batch.batchId, it.index, it.authCode, it.amountMinor);
    return true;
  };

  return {
    insertBatch: (batch, items) => write(() => insertBatchNow(batch, items)),
    async batchByKey(merchantUserId, key) {
      const r = q.batchByKey.get(merchantUserId, key) as BatchRow | undefined;
      return r ? toBatch(r) : undefined;
    },
    batchItems: async (batchId) => (q.items.all(batchId) as ItemRow[]).map(toItem),
    takeBatch: (batchId, fromReplica, replica) =>
      write(() => {
        if (q.takeBatch.run({ batchId, from: fromReplica, to: replica }).changes === 1) return true;
        return (q.batchById.get(batchId) as BatchRow | undefined)?.owner_replica === replica;
      }),
    releaseBatches: (replica, keep) =>
      write(() => {
        let n = 0;
        for (const r of q.owned.all(replica) as { batch_id: string }[])
          if (!keep.includes(r.batch_id)) n += q.release.run(r.batch_id, replica).changes;
        return n;
      }),
    setBatchItem: (batchId, index, result) =>
      write(() => {
        const r = q.setItem.run(result.status, result.reason, result.capturedMinor, result.txnId, batchId, index);
        assert(r.changes === 1, `batch item ${batchId}#${index} exists`);
        if (result.status !== "FAILED") return; // a capture's event comes with the authorization's change
        const batch = q.batchById.get(batchId) as BatchRow;
        const item = toItem(q.item.get(batchId, index) as ItemRow);
        const a = q.authByCode.get(item.authCode) as AuthRow | undefined;
        const event = a && captureFailedEvent(toBatch(batch), item, toAuth(a), clockMs());
        if (event) outbox.insert([event]);
      }),
    finishBatch: (batchId, nowMs) =>
      write(() => {
        if (q.finishBatch.run(nowMs, batchId).changes !== 1) return; // done already
        const batch = toBatch(q.batchById.get(batchId) as BatchRow);
        outbox.insert([settlementEvent(batch, (q.items.all(batchId) as ItemRow[]).map(toItem), nowMs)]);
      }),
  };
}
