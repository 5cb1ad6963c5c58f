// The ledger's SQLite schema. Amounts are INTEGER minor units (read back as
// bigint); times are INTEGER milliseconds since the epoch. CHECK constraints
// repeat the most important invariants so even a bug in the rules cannot
// write a negative available balance.
export const SCHEMA_VERSION = 2;

// Tables whose CHECK constraints changed in v2 (card legs and capture entries);
// the migration rebuilds them under a temporary name.
const entriesTable = (name: string) => `
CREATE TABLE IF NOT EXISTS ${name} (
  seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id          TEXT NOT NULL REFERENCES accounts (account_id),
  txn_id              TEXT NOT NULL,
  kind                TEXT NOT NULL CHECK (kind IN ('opening', 'deposit', 'transfer_debit', 'transfer_credit', 'capture_debit')),
  amount_minor        INTEGER NOT NULL,
  balance_after_minor INTEGER NOT NULL,
  created_at_ms       INTEGER NOT NULL
) STRICT;`;

// hold_id / hold_expires_at_ms are '' / 0 for plain debit and credit legs.
const txnLegsTable = (name: string) => `
CREATE TABLE IF NOT EXISTS ${name} (
  txn_id             TEXT NOT NULL REFERENCES txns (txn_id),
  leg_index          INTEGER NOT NULL,
  account_id         TEXT NOT NULL REFERENCES accounts (account_id),
  direction          TEXT NOT NULL CHECK (direction IN ('debit', 'credit', 'auth_hold', 'capture', 'release')),
  amount_minor       INTEGER NOT NULL CHECK (amount_minor > 0),
  currency           TEXT NOT NULL,
  hold_id            TEXT NOT NULL DEFAULT '',
  hold_expires_at_ms INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (txn_id, leg_index)
) STRICT, WITHOUT ROWID;`;

const INDEXES_V2 = `
CREATE INDEX IF NOT EXISTS entries_by_account ON entries (account_id, seq);
CREATE INDEX IF NOT EXISTS txn_legs_by_hold ON txn_legs (hold_id) WHERE hold_id != '';
`;

// Standing holds (card authorizations). Rows exist from the auth_hold txn's
// commit on; pinned_txn_id names a PREPARED capture/release that claimed it.
const HOLDS_TABLE = `
CREATE TABLE IF NOT EXISTS holds (
  hold_id        TEXT PRIMARY KEY,
  account_id     TEXT NOT NULL REFERENCES accounts (account_id),
  amount_minor   INTEGER NOT NULL CHECK (amount_minor > 0),
  currency       TEXT NOT NULL,
  state          TEXT NOT NULL CHECK (state IN ('ACTIVE', 'CAPTURED', 'RELEASED', 'EXPIRED')),
  expires_at_ms  INTEGER NOT NULL,
  captured_minor INTEGER NOT NULL DEFAULT 0 CHECK (captured_minor >= 0 AND captured_minor <= amount_minor),
  txn_id         TEXT NOT NULL,
  pinned_txn_id  TEXT NOT NULL DEFAULT '',
  created_at_ms  INTEGER NOT NULL,
  closed_at_ms   INTEGER NOT NULL DEFAULT 0,
  CHECK (state = 'ACTIVE' OR pinned_txn_id = ''),
  CHECK (state = 'CAPTURED' OR captured_minor = 0)
) STRICT;
-- The expiry sweeper scans only ACTIVE holds, by expiry.
CREATE INDEX IF NOT EXISTS holds_active_expiry ON holds (expires_at_ms) WHERE state = 'ACTIVE';
`;

/** v1 -> v2: wider CHECKs on entries and txn_legs, hold columns, the holds table. */
export const MIGRATE_V1_TO_V2 = `
${entriesTable("entries_v2")}
INSERT INTO entries_v2 (seq, account_id, txn_id, kind, amount_minor, balance_after_minor, created_at_ms)
  SELECT seq, account_id, txn_id, kind, amount_minor, balance_after_minor, created_at_ms FROM entries;
DROP TABLE entries;
ALTER TABLE entries_v2 RENAME TO entries;
${txnLegsTable("txn_legs_v2")}
INSERT INTO txn_legs_v2 (txn_id, leg_index, account_id, direction, amount_minor, currency)
  SELECT txn_id, leg_index, account_id, direction, amount_minor, currency FROM txn_legs;
DROP TABLE txn_legs;
ALTER TABLE txn_legs_v2 RENAME TO txn_legs;
${HOLDS_TABLE}
${INDEXES_V2}
`;

// Linking (DESIGN.md §11): what the bank knows of each account's holder, the
// hash of the code it gave them, and failed attempts. Keyed by account id but
// not a foreign key: attempts on ids the bank does not know are counted too,
// so they answer (and lock) like a wrong code. A new table, created IF NOT
// EXISTS on every start: files of schema v2 get it without a version bump,
// and a previous build simply does not read it.
const ACCOUNT_LINKS_TABLE = `
CREATE TABLE IF NOT EXISTS account_links (
  account_id    TEXT PRIMARY KEY,
  holder_name   TEXT NOT NULL DEFAULT '',
  code_hash     TEXT NOT NULL DEFAULT '',
  code_used_by  TEXT NOT NULL DEFAULT '',
  failures      INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
  locked        INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
  updated_at_ms INTEGER NOT NULL
) STRICT;
`;

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
${entriesTable("entries")}

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

${txnLegsTable("txn_legs")}

CREATE TABLE IF NOT EXISTS deposits (
  deposit_id    TEXT PRIMARY KEY,
  account_id    TEXT NOT NULL REFERENCES accounts (account_id),
  amount_minor  INTEGER NOT NULL CHECK (amount_minor > 0),
  currency      TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
) STRICT;
${HOLDS_TABLE}
${INDEXES_V2}
${ACCOUNT_LINKS_TABLE}
`;
