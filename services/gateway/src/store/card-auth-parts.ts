// An authorization's operation lock and refund reservations, kept in tables
// of their own (card_auth_ops, card_refund_reservations; DESIGN.md §10.3).
// Release 1 of an expand/contract change: every write also keeps the old
// op_* and refund_reserved_minor columns in step, in the same transaction,
// because a replica of the previous release reads only those. Reads take the
// new rows and fall back to the columns where only a previous-release replica
// wrote. Both adapters read through the statement below (its SQL is the same
// in SQLite and PostgreSQL), and both migrations come from one function.
import type { AuthOperation } from "../domain/cards-ports.js";

/**
 * Every authorization read: the row, its operation row and the sum of its
 * live reservations. The operation row is joined only while the column still
 * names its txn, and a reservation counts only while its refund is PENDING: a
 * previous-release replica that clears an operation or finishes a refund
 * changes the columns and card_refunds alone, and leaves the new row behind.
 * Filter and order with `a.` (both tables have auth_id and amount_minor).
 */
export const AUTH_SELECT = `SELECT a.*, o.txn_id AS op_row_txn_id, o.kind AS op_row_kind, o.amount_minor AS op_row_amount_minor,
  o.batch_id AS op_row_batch_id, o.item_index AS op_row_item_index,
  (SELECT sum(v.amount_minor) FROM card_refund_reservations v WHERE v.auth_id = a.auth_id
     AND EXISTS (SELECT 1 FROM card_refunds f WHERE f.txn_id = v.refund_txn_id AND f.status = 'PENDING')) AS reserved_rows_minor
  FROM card_authorizations a LEFT JOIN card_auth_ops o ON o.auth_id = a.auth_id AND o.txn_id = a.op_txn_id`;

/** The columns of AUTH_SELECT these parts are read from (int8 as bigint from SQLite, as text from PostgreSQL). */
export interface AuthPartsRow {
  op_txn_id?: unknown;
  op_kind?: unknown;
  op_amount_minor?: unknown;
  op_batch_id?: unknown;
  op_item_index?: unknown;
  refund_reserved_minor?: unknown;
  op_row_txn_id?: unknown;
  op_row_kind?: unknown;
  op_row_amount_minor?: unknown;
  op_row_batch_id?: unknown;
  op_row_item_index?: unknown;
  reserved_rows_minor?: unknown;
}

const absent = (v: unknown) => v === null || v === undefined;
const big = (v: unknown): bigint => BigInt(v as string | number | bigint);

function operation(txnId: unknown, kind: unknown, amount: unknown, batchId: unknown, index: unknown): AuthOperation {
  return {
    txnId: String(txnId),
    kind: String(kind) as AuthOperation["kind"],
    amountMinor: big(amount),
    batchId: String(batchId),
    itemIndex: Number(index),
  };
}

/** The operation in flight: its own row, or the columns for a lock a previous-release replica took. */
export function opOfRow(r: AuthPartsRow): AuthOperation | null {
  if (!absent(r.op_row_txn_id))
    return operation(r.op_row_txn_id, r.op_row_kind, r.op_row_amount_minor, r.op_row_batch_id, r.op_row_item_index);
  if (absent(r.op_txn_id) || r.op_txn_id === "") return null;
  return operation(r.op_txn_id, r.op_kind, r.op_amount_minor, r.op_batch_id, r.op_item_index);
}

/** The reserved total: its live reservation rows, or the column when it has none (refunds a previous release started). */
export const reservedOfRow = (r: AuthPartsRow): bigint =>
  absent(r.reserved_rows_minor) ? big(r.refund_reserved_minor ?? 0) : big(r.reserved_rows_minor);

/** The old op_* columns for `op` (cleared for null), kept in step for previous-release readers. */
export function opColumns(op: AuthOperation | null) {
  return {
    opTxnId: op?.txnId ?? "",
    opKind: op?.kind ?? "",
    opAmountMinor: op?.amountMinor ?? 0n,
    opBatchId: op?.batchId ?? "",
    opItemIndex: op?.itemIndex ?? -1,
  };
}

/**
 * The migration that adds both tables (SQLite v5, PostgreSQL v4), written once
 * in each dialect's types so the two stay alike, and backfills them: a row for
 * every lock the columns hold, and a reservation for every refund in flight
 * (the column keeps only their total; each PENDING refund reserved its amount).
 * The index that had the new table's name moves aside: tables and indexes share
 * one namespace, and no code names an index, so the previous release does not notice.
 * Released migrations never change: a later change is a migration of its own.
 */
export function cardPartsMigration(dialect: "sqlite" | "postgres"): string {
  const sqlite = dialect === "sqlite";
  const [text, int8, int4, strict] = sqlite
    ? ["TEXT", "INTEGER", "INTEGER", " STRICT"]
    : ["text", "bigint", "integer", ""];
  const moveIndex = sqlite
    ? "DROP INDEX card_auth_ops;\nCREATE INDEX card_auth_op_txn ON card_authorizations (op_txn_id) WHERE op_txn_id != '';"
    : "ALTER INDEX card_auth_ops RENAME TO card_auth_op_txn;";
  return `
${moveIndex}

-- One row per authorization with a capture or void in flight: its lock.
CREATE TABLE card_auth_ops (
  auth_id      ${text} PRIMARY KEY REFERENCES card_authorizations (auth_id),
  txn_id       ${text} NOT NULL UNIQUE,
  kind         ${text} NOT NULL CHECK (kind IN ('capture', 'void')),
  amount_minor ${int8} NOT NULL CHECK (amount_minor >= 0),
  batch_id     ${text} NOT NULL DEFAULT '',
  item_index   ${int4} NOT NULL DEFAULT -1,
  created_at   ${int8} NOT NULL
)${strict};

-- One row per refund whose round is in flight: its amount, reserved on the authorization.
CREATE TABLE card_refund_reservations (
  refund_txn_id ${text} PRIMARY KEY,
  auth_id       ${text} NOT NULL REFERENCES card_authorizations (auth_id),
  amount_minor  ${int8} NOT NULL CHECK (amount_minor > 0),
  created_at    ${int8} NOT NULL
)${strict};
CREATE INDEX card_refund_reservations_auth ON card_refund_reservations (auth_id);
CREATE INDEX card_refund_txn ON card_refunds (txn_id);

INSERT INTO card_auth_ops (auth_id, txn_id, kind, amount_minor, batch_id, item_index, created_at)
  SELECT auth_id, op_txn_id, op_kind, op_amount_minor, op_batch_id, op_item_index, updated_at
  FROM card_authorizations WHERE op_txn_id != '';
INSERT INTO card_refund_reservations (refund_txn_id, auth_id, amount_minor, created_at)
  SELECT txn_id, auth_id, amount_minor, created_at FROM card_refunds WHERE status = 'PENDING';
`;
}
