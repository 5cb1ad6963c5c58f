// Cards, authorizations, settlement batches and refunds in the gateway's
// SQLite file. The tables are created here (IF NOT EXISTS) rather than in
// db.ts's numbered migrations, so card payments stay one self-contained
// module. Unique indexes are the exactly-once guards: (merchant, key) per
// authorization, batch and refund; CHECKs repeat the money rules (a refund
// total never exceeds the captured amount, even with reservations).
import { assert } from "@paygate/money";
import type { AuthChange, AuthRecord, AuthStatus, BatchItemRecord, BatchRecord, CardRecord, CardStore, ItemStatus, RefundRecord, RefundStatus, AuthOp } from "../domain/cards-ports.js";
import { num, type Db } from "./db.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS cards (
  card_id         TEXT PRIMARY KEY,
  pan_hmac        TEXT NOT NULL UNIQUE,
  last4           TEXT NOT NULL,
  exp_month       INTEGER NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
  exp_year        INTEGER NOT NULL,
  cvc_hash        TEXT NOT NULL,
  cardholder_name TEXT NOT NULL,
  account_id      TEXT NOT NULL,
  bank            TEXT NOT NULL,
  owner_user_id   TEXT NOT NULL,
  currency        TEXT NOT NULL,
  created_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS card_authorizations (
  auth_id               TEXT PRIMARY KEY,
  auth_code             TEXT NOT NULL UNIQUE,
  merchant_user_id      TEXT NOT NULL,
  idempotency_key       TEXT NOT NULL,
  fingerprint           TEXT NOT NULL,
  card_id               TEXT NOT NULL REFERENCES cards (card_id),
  card_last4            TEXT NOT NULL,
  card_account_id       TEXT NOT NULL,
  card_bank             TEXT NOT NULL,
  card_owner_user_id    TEXT NOT NULL,
  merchant_account_id   TEXT NOT NULL,
  merchant_bank         TEXT NOT NULL,
  amount_minor          INTEGER NOT NULL CHECK (amount_minor > 0),
  currency              TEXT NOT NULL,
  merchant_reference    TEXT NOT NULL,
  status                TEXT NOT NULL CHECK (status IN ('PENDING', 'DECLINED', 'APPROVED', 'CAPTURED', 'VOIDED', 'EXPIRED')),
  decline_reason        TEXT NOT NULL DEFAULT '',
  risk_score            INTEGER NOT NULL DEFAULT 0,
  risk_approved         INTEGER NOT NULL DEFAULT 0 CHECK (risk_approved IN (0, 1)),
  risk_rule             TEXT NOT NULL DEFAULT '',
  hold_txn_id           TEXT NOT NULL DEFAULT '',
  op_txn_id             TEXT NOT NULL DEFAULT '',
  op_kind               TEXT NOT NULL DEFAULT '' CHECK (op_kind IN ('', 'capture', 'void')),
  op_amount_minor       INTEGER NOT NULL DEFAULT 0,
  op_batch_id           TEXT NOT NULL DEFAULT '',
  op_item_index         INTEGER NOT NULL DEFAULT -1,
  captured_minor        INTEGER NOT NULL DEFAULT 0 CHECK (captured_minor >= 0 AND captured_minor <= amount_minor),
  capture_txn_id        TEXT NOT NULL DEFAULT '',
  capture_batch_id      TEXT NOT NULL DEFAULT '',
  capture_item_index    INTEGER NOT NULL DEFAULT -1,
  refunded_minor        INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
  refund_reserved_minor INTEGER NOT NULL DEFAULT 0 CHECK (refund_reserved_minor >= 0),
  created_at            INTEGER NOT NULL,
  expires_at            INTEGER NOT NULL,
  updated_at            INTEGER NOT NULL,
  CHECK (refunded_minor + refund_reserved_minor <= captured_minor),
  CHECK ((op_kind = '') = (op_txn_id = ''))
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS card_auth_key ON card_authorizations (merchant_user_id, idempotency_key);
CREATE INDEX IF NOT EXISTS card_auth_spend ON card_authorizations (card_id, created_at);
CREATE INDEX IF NOT EXISTS card_auth_pending ON card_authorizations (created_at) WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS card_auth_ops ON card_authorizations (op_txn_id) WHERE op_txn_id != '';
CREATE INDEX IF NOT EXISTS card_auth_expiry ON card_authorizations (expires_at) WHERE status = 'APPROVED';

CREATE TABLE IF NOT EXISTS card_settle_batches (
  batch_id         TEXT PRIMARY KEY,
  merchant_user_id TEXT NOT NULL,
  idempotency_key  TEXT NOT NULL,
  fingerprint      TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('PENDING', 'DONE')),
  created_at       INTEGER NOT NULL,
  finished_at      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS card_batch_key ON card_settle_batches (merchant_user_id, idempotency_key);

CREATE TABLE IF NOT EXISTS card_settle_items (
  batch_id       TEXT NOT NULL REFERENCES card_settle_batches (batch_id),
  item_index     INTEGER NOT NULL,
  auth_code      TEXT NOT NULL,
  amount_minor   INTEGER NOT NULL,
  status         TEXT NOT NULL DEFAULT '' CHECK (status IN ('', 'CAPTURED', 'FAILED')),
  reason         TEXT NOT NULL DEFAULT '',
  captured_minor INTEGER NOT NULL DEFAULT 0,
  txn_id         TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (batch_id, item_index)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS card_refunds (
  refund_id        TEXT PRIMARY KEY,
  merchant_user_id TEXT NOT NULL,
  idempotency_key  TEXT NOT NULL,
  fingerprint      TEXT NOT NULL,
  auth_id          TEXT NOT NULL REFERENCES card_authorizations (auth_id),
  amount_minor     INTEGER NOT NULL CHECK (amount_minor > 0),
  txn_id           TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('PENDING', 'COMMITTED', 'FAILED')),
  reason           TEXT NOT NULL DEFAULT '',
  created_at       INTEGER NOT NULL,
  decided_at       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS card_refund_key ON card_refunds (merchant_user_id, idempotency_key);
CREATE INDEX IF NOT EXISTS card_refund_pending ON card_refunds (created_at) WHERE status = 'PENDING';
`;

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

interface AuthRow {
  auth_id: string;
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
  op_txn_id: string;
  op_kind: string;
  op_amount_minor: bigint;
  op_batch_id: string;
  op_item_index: bigint;
  captured_minor: bigint;
  capture_txn_id: string;
  capture_batch_id: string;
  capture_item_index: bigint;
  refunded_minor: bigint;
  refund_reserved_minor: bigint;
  created_at: bigint;
  expires_at: bigint;
  updated_at: bigint;
}

const toAuth = (r: AuthRow): AuthRecord => ({
  authId: r.auth_id,
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
  opTxnId: r.op_txn_id,
  opKind: r.op_kind as AuthOp,
  opAmountMinor: r.op_amount_minor,
  opBatchId: r.op_batch_id,
  opItemIndex: num(r.op_item_index),
  capturedMinor: r.captured_minor,
  captureTxnId: r.capture_txn_id,
  captureBatchId: r.capture_batch_id,
  captureItemIndex: num(r.capture_item_index),
  refundedMinor: r.refunded_minor,
  refundReservedMinor: r.refund_reserved_minor,
  createdAtMs: num(r.created_at),
  expiresAtMs: num(r.expires_at),
  updatedAtMs: num(r.updated_at),
});

/** The record as named statement parameters (booleans as 0/1). */
function authParams(a: AuthRecord): Record<string, unknown> {
  return { ...a, riskApproved: a.riskApproved ? 1 : 0 };
}

interface BatchRow {
  batch_id: string;
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

const AUTH_COLUMNS = `auth_id, auth_code, merchant_user_id, idempotency_key, fingerprint, card_id, card_last4, card_account_id, card_bank,
  card_owner_user_id, merchant_account_id, merchant_bank, amount_minor, currency, merchant_reference, status, decline_reason, risk_score,
  risk_approved, risk_rule, hold_txn_id, op_txn_id, op_kind, op_amount_minor, op_batch_id, op_item_index, captured_minor, capture_txn_id,
  capture_batch_id, capture_item_index, refunded_minor, refund_reserved_minor, created_at, expires_at, updated_at`;
const AUTH_VALUES = `@authId, @authCode, @merchantUserId, @idempotencyKey, @fingerprint, @cardId, @cardLast4, @cardAccountId, @cardBank,
  @cardOwnerUserId, @merchantAccountId, @merchantBank, @amountMinor, @currency, @merchantReference, @status, @declineReason, @riskScore,
  @riskApproved, @riskRule, @holdTxnId, @opTxnId, @opKind, @opAmountMinor, @opBatchId, @opItemIndex, @capturedMinor, @captureTxnId,
  @captureBatchId, @captureItemIndex, @refundedMinor, @refundReservedMinor, @createdAtMs, @expiresAtMs, @updatedAtMs`;

export function createSqliteCardStore(db: Db): CardStore {
  db.exec(SCHEMA);
  const q = {
    insertCard: db.prepare(`INSERT INTO cards (card_id, pan_hmac, last4, exp_month, exp_year, cvc_hash, cardholder_name, account_id, bank, owner_user_id, currency, created_at)
      VALUES (@cardId, @panHmac, @last4, @expMonth, @expYear, @cvcHash, @cardholderName, @accountId, @bank, @ownerUserId, @currency, @createdAtMs)
      ON CONFLICT (pan_hmac) DO NOTHING`),
    cardByPan: db.prepare("SELECT * FROM cards WHERE pan_hmac = ?"),
    authById: db.prepare("SELECT * FROM card_authorizations WHERE auth_id = ?"),
    authByCode: db.prepare("SELECT * FROM card_authorizations WHERE auth_code = ?"),
    authByKey: db.prepare("SELECT * FROM card_authorizations WHERE merchant_user_id = ? AND idempotency_key = ?"),
    insertAuth: db.prepare(`INSERT INTO card_authorizations (${AUTH_COLUMNS}) VALUES (${AUTH_VALUES}) ON CONFLICT DO NOTHING`),
    // Every mutable column at once: updateAuth reads, merges and writes inside one transaction.
    writeAuth: db.prepare(`UPDATE card_authorizations SET status = @status, decline_reason = @declineReason, risk_score = @riskScore,
      risk_approved = @riskApproved, risk_rule = @riskRule, hold_txn_id = @holdTxnId, op_txn_id = @opTxnId, op_kind = @opKind,
      op_amount_minor = @opAmountMinor, op_batch_id = @opBatchId, op_item_index = @opItemIndex, captured_minor = @capturedMinor,
      capture_txn_id = @captureTxnId, capture_batch_id = @captureBatchId, capture_item_index = @captureItemIndex, updated_at = @updatedAtMs
      WHERE auth_id = @authId`),
    deleteAuth: db.prepare("DELETE FROM card_authorizations WHERE auth_id = ? AND status = 'PENDING'"),
    adjustRefunds: db.prepare(`UPDATE card_authorizations SET refunded_minor = refunded_minor + ?, refund_reserved_minor = refund_reserved_minor + ?, updated_at = ?
      WHERE auth_id = ?`),
    spent: db.prepare(`SELECT coalesce(sum(amount_minor), 0) AS total FROM card_authorizations
      WHERE card_id = ? AND created_at >= ? AND auth_id != ?
        AND (status IN ('APPROVED', 'CAPTURED') OR (status = 'PENDING' AND risk_approved = 1))`),
    pending: db.prepare("SELECT * FROM card_authorizations WHERE status = 'PENDING' ORDER BY created_at LIMIT ?"),
    withOp: db.prepare("SELECT * FROM card_authorizations WHERE op_txn_id != '' ORDER BY updated_at LIMIT ?"),
    due: db.prepare("SELECT * FROM card_authorizations WHERE status = 'APPROVED' AND expires_at <= ? AND op_txn_id = '' ORDER BY expires_at LIMIT ?"),
    expire: db.prepare("UPDATE card_authorizations SET status = 'EXPIRED', updated_at = ? WHERE auth_id = ? AND status = 'APPROVED' AND op_txn_id = ''"),
    insertBatch: db.prepare(`INSERT INTO card_settle_batches (batch_id, merchant_user_id, idempotency_key, fingerprint, status, created_at)
      VALUES (@batchId, @merchantUserId, @idempotencyKey, @fingerprint, @status, @createdAtMs)`),
    insertItem: db.prepare("INSERT INTO card_settle_items (batch_id, item_index, auth_code, amount_minor) VALUES (?, ?, ?, ?)"),
    batchByKey: db.prepare("SELECT * FROM card_settle_batches WHERE merchant_user_id = ? AND idempotency_key = ?"),
    items: db.prepare("SELECT * FROM card_settle_items WHERE batch_id = ? ORDER BY item_index"),
    setItem: db.prepare("UPDATE card_settle_items SET status = ?, reason = ?, captured_minor = ?, txn_id = ? WHERE batch_id = ? AND item_index = ?"),
    finishBatch: db.prepare("UPDATE card_settle_batches SET status = 'DONE', finished_at = ? WHERE batch_id = ? AND status = 'PENDING'"),
    insertRefund: db.prepare(`INSERT INTO card_refunds (refund_id, merchant_user_id, idempotency_key, fingerprint, auth_id, amount_minor, txn_id, status, reason, created_at)
      VALUES (@refundId, @merchantUserId, @idempotencyKey, @fingerprint, @authId, @amountMinor, @txnId, @status, @reason, @createdAtMs)`),
    refundByKey: db.prepare("SELECT * FROM card_refunds WHERE merchant_user_id = ? AND idempotency_key = ?"),
    refundById: db.prepare("SELECT * FROM card_refunds WHERE refund_id = ?"),
    decideRefund: db.prepare("UPDATE card_refunds SET status = ?, reason = ?, decided_at = ? WHERE refund_id = ? AND status = 'PENDING'"),
    deleteRefund: db.prepare("DELETE FROM card_refunds WHERE refund_id = ? AND status = 'PENDING'"),
    pendingRefunds: db.prepare("SELECT * FROM card_refunds WHERE status = 'PENDING' ORDER BY created_at LIMIT ?"),
  };

  const authById = (authId: string): AuthRecord | undefined => {
    const r = q.authById.get(authId) as AuthRow | undefined;
    return r ? toAuth(r) : undefined;
  };

  const updateAuthTx = db.transaction((authId: string, expect: { status?: AuthStatus; opTxnId?: string }, change: AuthChange, nowMs: number): boolean => {
    const current = authById(authId);
    if (!current) return false;
    if (expect.status !== undefined && current.status !== expect.status) return false;
    if (expect.opTxnId !== undefined && current.opTxnId !== expect.opTxnId) return false;
    const next: AuthRecord = { ...current, ...change, updatedAtMs: nowMs };
    q.writeAuth.run(authParams(next));
    return true;
  });

  const expireTx = db.transaction((nowMs: number, limit: number): AuthRecord[] => {
    const due = (q.due.all(nowMs, limit) as AuthRow[]).map(toAuth);
    for (const a of due) assert(q.expire.run(nowMs, a.authId).changes === 1, `authorization ${a.authId} expires once`);
    return due.map((a) => ({ ...a, status: "EXPIRED" as const, updatedAtMs: nowMs }));
  });

  const insertBatchTx = db.transaction((batch: BatchRecord, items: readonly BatchItemRecord[]) => {
    q.insertBatch.run({ ...batch });
    for (const it of items) q.insertItem.run(batch.batchId, it.index, it.authCode, it.amountMinor);
  });

  return {
    atomically: <T>(fn: () => T): T => db.transaction(fn)(),
    insertCard: (card) => q.insertCard.run({ ...card }).changes === 1,
    cardByPanHmac(panHmac) {
      const r = q.cardByPan.get(panHmac) as CardRow | undefined;
      return r ? toCard(r) : undefined;
    },
    authById,
    authByCode(code) {
      const r = q.authByCode.get(code) as AuthRow | undefined;
      return r ? toAuth(r) : undefined;
    },
    authByKey(merchantUserId, key) {
      const r = q.authByKey.get(merchantUserId, key) as AuthRow | undefined;
      return r ? toAuth(r) : undefined;
    },
    insertAuth: (auth) => q.insertAuth.run(authParams(auth)).changes === 1,
    updateAuth: (authId, expect, change, nowMs) => updateAuthTx(authId, expect, change, nowMs),
    deleteAuth(authId) {
      q.deleteAuth.run(authId);
    },
    adjustRefunds(authId, refundedDeltaMinor, reservedDeltaMinor, nowMs) {
      const r = q.adjustRefunds.run(refundedDeltaMinor, reservedDeltaMinor, nowMs, authId);
      assert(r.changes === 1, `authorization ${authId} exists`);
    },
    spentSince: (cardId, sinceMs, excludeAuthId) => (q.spent.get(cardId, sinceMs, excludeAuthId) as { total: bigint }).total,
    pendingAuths: (limit) => (q.pending.all(limit) as AuthRow[]).map(toAuth),
    authsWithOp: (limit) => (q.withOp.all(limit) as AuthRow[]).map(toAuth),
    expireDue: (nowMs, limit) => expireTx(nowMs, limit),
    insertBatch: (batch, items) => insertBatchTx(batch, items),
    batchByKey(merchantUserId, key) {
      const r = q.batchByKey.get(merchantUserId, key) as BatchRow | undefined;
      return r ? toBatch(r) : undefined;
    },
    batchItems: (batchId) => (q.items.all(batchId) as ItemRow[]).map(toItem),
    setBatchItem(batchId, index, result) {
      const r = q.setItem.run(result.status, result.reason, result.capturedMinor, result.txnId, batchId, index);
      assert(r.changes === 1, `batch item ${batchId}#${index} exists`);
    },
    finishBatch(batchId, nowMs) {
      q.finishBatch.run(nowMs, batchId);
    },
    insertRefund(refund) {
      q.insertRefund.run({ ...refund });
    },
    refundByKey(merchantUserId, key) {
      const r = q.refundByKey.get(merchantUserId, key) as RefundRow | undefined;
      return r ? toRefund(r) : undefined;
    },
    refundById(refundId) {
      const r = q.refundById.get(refundId) as RefundRow | undefined;
      return r ? toRefund(r) : undefined;
    },
    decideRefund(refundId, status, reason, nowMs) {
      q.decideRefund.run(status, reason, nowMs, refundId);
    },
    deleteRefund(refundId) {
      q.deleteRefund.run(refundId);
    },
    pendingRefunds: (limit) => (q.pendingRefunds.all(limit) as RefundRow[]).map(toRefund),
  };
}
