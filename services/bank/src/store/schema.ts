// The ledger's SQLite schema. Amounts are INTEGER minor units (read back as
// bigint); times are INTEGER milliseconds since the epoch. CHECK constraints
// repeat the most important invariants so even a bug in the rules cannot
// write a negative available balance.
export const SCHEMA_VERSION = 1;

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS accounts (
  account_id    TEXT PRIMARY KEY,
  number        INTEGER NOT NULL,
  owner_user_id TEXT NOT NULL,
  currency      TEXT NOT NULL,
  balance_minor INTEGER NOT NULL,
  held_minor    INTEGER NOT NULL CHECK (held_minor >= 0),
  status        TEXT NOT NULL CHECK (status IN ('open', 'closed')),
  opened_at_ms  INTEGER NOT NULL,
  CHECK (balance_minor - held_minor >= 0)
) STRICT;

-- Immutable journal: rows are only ever inserted.
CREATE TABLE IF NOT EXISTS entries (
  seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id          TEXT NOT NULL REFERENCES accounts (account_id),
  txn_id              TEXT NOT NULL,
  kind                TEXT NOT NULL CHECK (kind IN ('opening', 'deposit', 'transfer_debit', 'transfer_credit')),
  amount_minor        INTEGER NOT NULL,
  balance_after_minor INTEGER NOT NULL,
  created_at_ms       INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS entries_by_account ON entries (account_id, seq);

-- Participant log. prepared_at_ms is NULL for a tombstone (an Abort for a
-- txn never prepared here) and for a txn this bank voted NO on.
CREATE TABLE IF NOT EXISTS txns (
  txn_id         TEXT PRIMARY KEY,
  state          TEXT NOT NULL CHECK (state IN ('PREPARED', 'COMMITTED', 'ABORTED')),
  coordinator    TEXT NOT NULL,
  prepared_at_ms INTEGER,
  decided_at_ms  INTEGER,
  tombstone      INTEGER NOT NULL CHECK (tombstone IN (0, 1)),
  vote_reason    TEXT
) STRICT;
-- The resolver and Totals scan only the (few) prepared ones.
CREATE INDEX IF NOT EXISTS txns_prepared ON txns (prepared_at_ms) WHERE state = 'PREPARED';

CREATE TABLE IF NOT EXISTS txn_legs (
  txn_id       TEXT NOT NULL REFERENCES txns (txn_id),
  leg_index    INTEGER NOT NULL,
  account_id   TEXT NOT NULL REFERENCES accounts (account_id),
  direction    TEXT NOT NULL CHECK (direction IN ('debit', 'credit')),
  amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
  currency     TEXT NOT NULL,
  PRIMARY KEY (txn_id, leg_index)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS deposits (
  deposit_id    TEXT PRIMARY KEY,
  account_id    TEXT NOT NULL REFERENCES accounts (account_id),
  amount_minor  INTEGER NOT NULL CHECK (amount_minor > 0),
  currency      TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
) STRICT;
`;
