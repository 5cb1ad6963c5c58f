// The gateway's SQLite file: users, sessions, the account directory and the
// coordinator log. WAL + synchronous=FULL: a decision is fsync'd before the
// Commit/Abort that depends on it is sent.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { applyMigrations } from "@paygate/sqlite";
import { cardPartsMigration } from "./card-auth-parts.js";

export type Db = Database.Database;

const SCHEMA_V1 = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE users (
  user_id       TEXT PRIMARY KEY,
  username      TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  roles         TEXT NOT NULL,            -- comma separated
  display_name  TEXT NOT NULL,
  failed_logins INTEGER NOT NULL DEFAULT 0,
  locked_until  INTEGER NOT NULL DEFAULT 0, -- epoch ms
  created_at    INTEGER NOT NULL
) STRICT;

-- Only the token's sha256: a stolen database file cannot be replayed as sessions.
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_id    TEXT NOT NULL REFERENCES users(user_id),
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- Who owns which account at which bank. Balances live at the banks.
CREATE TABLE accounts (
  account_id    TEXT PRIMARY KEY,
  bank          TEXT NOT NULL,
  owner_user_id TEXT NOT NULL REFERENCES users(user_id),
  currency      TEXT NOT NULL,
  created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX accounts_owner ON accounts(owner_user_id);

-- The coordinator log. A txn owns its (caller, key) while owns_key = 1; a
-- transiently aborted txn hands the key to its retry and stays in the log.
CREATE TABLE txns (
  txn_id          TEXT PRIMARY KEY,
  sequence        INTEGER UNIQUE,         -- NULL while PENDING; set with the decision
  caller_user_id  TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  owns_key        INTEGER NOT NULL DEFAULT 1 CHECK (owns_key IN (0, 1)),
  fingerprint     TEXT NOT NULL,
  from_account_id TEXT NOT NULL,
  to_account_id   TEXT NOT NULL,
  from_bank       TEXT NOT NULL,
  to_bank         TEXT NOT NULL,
  amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
  currency        TEXT NOT NULL,
  memo            TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('PENDING', 'COMMITTED', 'ABORTED')),
  decline_reason  TEXT NOT NULL DEFAULT '',
  created_at      INTEGER NOT NULL,
  decided_at      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX txns_idempotency ON txns(caller_user_id, idempotency_key) WHERE owns_key = 1;
CREATE INDEX txns_pending ON txns(created_at) WHERE status = 'PENDING';
CREATE INDEX txns_from ON txns(from_account_id, sequence);
CREATE INDEX txns_to ON txns(to_account_id, sequence);
CREATE INDEX txns_caller ON txns(caller_user_id, sequence);

-- Written once per txn (insert-if-absent); never updated.
CREATE TABLE decisions (
  txn_id     TEXT PRIMARY KEY,
  decision   TEXT NOT NULL CHECK (decision IN ('COMMIT', 'ABORT')),
  reason     TEXT NOT NULL DEFAULT '',
  decided_at INTEGER NOT NULL
) STRICT;

-- One row per participant that must acknowledge the decision.
CREATE TABLE decision_acks (
  txn_id          TEXT NOT NULL REFERENCES decisions(txn_id),
  bank            TEXT NOT NULL,
  acked_at        INTEGER,                -- NULL until the bank acknowledged
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error      TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (txn_id, bank)
) STRICT;
CREATE INDEX decision_acks_due ON decision_acks(next_attempt_at) WHERE acked_at IS NULL;
`;

// Card payments: these tables were created by cards-store.ts itself (IF NOT
// EXISTS) before they joined the migrations, so a file made by that version
// already has them; the statements below are no-ops there.
const CARD_TABLES = `
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

// v2: the store port of DESIGN.md §3b (the same tables PostgreSQL has).
const SCHEMA_V2 = `${CARD_TABLES}
-- Card rounds (hold, capture, release, refund) registered before their prepares.
CREATE TABLE rounds (
  txn_id     TEXT PRIMARY KEY,
  kind       TEXT NOT NULL,
  banks      TEXT NOT NULL,               -- comma separated
  created_at INTEGER NOT NULL
) STRICT;

-- Failed logins per (user, client): a stranger locks out only itself.
CREATE TABLE login_failures (
  user_id      TEXT NOT NULL,
  client       TEXT NOT NULL,
  failures     INTEGER NOT NULL,
  locked_until INTEGER NOT NULL,
  PRIMARY KEY (user_id, client)
) STRICT, WITHOUT ROWID;

CREATE TABLE replica_leases (
  replica        TEXT PRIMARY KEY,
  boot_id        TEXT NOT NULL,
  lease_until    INTEGER NOT NULL,
  taken_over_by  TEXT NOT NULL DEFAULT '',
  taken_over_at  INTEGER NOT NULL DEFAULT 0
) STRICT;

ALTER TABLE card_authorizations ADD COLUMN replica TEXT NOT NULL DEFAULT '';
ALTER TABLE card_authorizations ADD COLUMN last_op_id TEXT NOT NULL DEFAULT '';
ALTER TABLE card_settle_batches ADD COLUMN owner_replica TEXT NOT NULL DEFAULT '';
CREATE INDEX txns_pending_replica ON txns(txn_id) WHERE status = 'PENDING';
`;

// v3: sign-up and linking (DESIGN.md §11): fixed-window rate counters (sign-ups
// per client, link attempts per user), as PostgreSQL has them.
const SCHEMA_V3 = `
CREATE TABLE rate_limits (
  scope        TEXT NOT NULL,
  key          TEXT NOT NULL,
  count        INTEGER NOT NULL CHECK (count > 0),
  window_end   INTEGER NOT NULL,          -- epoch ms
  PRIMARY KEY (scope, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX rate_limits_end ON rate_limits(window_end);
`;

// v4: webhooks (DESIGN.md §12), as PostgreSQL has them. webhook_events is the
// outbox: the card store inserts its rows in the transaction of the change they
// report; fan-out turns each into one delivery per subscribed endpoint.
const SCHEMA_V4 = `
CREATE TABLE webhook_endpoints (
  endpoint_id   TEXT PRIMARY KEY,
  owner_user_id TEXT NOT NULL,
  url           TEXT NOT NULL,
  event_types   TEXT NOT NULL,            -- comma separated
  status        TEXT NOT NULL CHECK (status IN ('ENABLED', 'DISABLED')),
  created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_owner ON webhook_endpoints(owner_user_id);

CREATE TABLE webhook_secrets (
  endpoint_id   TEXT NOT NULL REFERENCES webhook_endpoints(endpoint_id) ON DELETE CASCADE,
  secret        TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER,                  -- NULL: the current secret
  PRIMARY KEY (endpoint_id, secret)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX webhook_secrets_current ON webhook_secrets(endpoint_id) WHERE expires_at_ms IS NULL;

CREATE TABLE webhook_events (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id      TEXT NOT NULL UNIQUE,
  type          TEXT NOT NULL,
  object_id     TEXT NOT NULL,
  owner_user_id TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  body          TEXT NOT NULL,
  fanned_out    INTEGER NOT NULL DEFAULT 0 CHECK (fanned_out IN (0, 1))
) STRICT;
CREATE INDEX webhook_events_unfanned ON webhook_events(seq) WHERE fanned_out = 0;
CREATE INDEX webhook_events_unfanned_object ON webhook_events(owner_user_id, object_id, seq) WHERE fanned_out = 0;

CREATE TABLE webhook_deliveries (
  delivery_id        TEXT PRIMARY KEY,
  endpoint_id        TEXT NOT NULL REFERENCES webhook_endpoints(endpoint_id) ON DELETE CASCADE,
  event_seq          INTEGER NOT NULL,
  event_id           TEXT NOT NULL,
  event_type         TEXT NOT NULL,
  object_id          TEXT NOT NULL,
  status             TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
  attempts           INTEGER NOT NULL DEFAULT 0,
  next_attempt_at_ms INTEGER NOT NULL,
  claimed_by         TEXT NOT NULL DEFAULT '',
  claim_until_ms     INTEGER NOT NULL DEFAULT 0,
  last_status_code   INTEGER NOT NULL DEFAULT 0,
  last_error         TEXT NOT NULL DEFAULT '',
  created_at_ms      INTEGER NOT NULL,
  delivered_at_ms    INTEGER NOT NULL DEFAULT 0,
  UNIQUE (endpoint_id, event_id)
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(event_seq) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_object ON webhook_deliveries(endpoint_id, object_id, event_seq) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, event_seq);

CREATE TABLE webhook_attempts (
  delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(delivery_id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  at_ms       INTEGER NOT NULL,
  status_code INTEGER NOT NULL,
  latency_ms  INTEGER NOT NULL,
  error       TEXT NOT NULL,
  replica     TEXT NOT NULL,
  PRIMARY KEY (delivery_id, attempt)
) STRICT, WITHOUT ROWID;

-- How far materializeTransferEvents has read the history (txns.sequence).
-- It starts at today's end: endpoints registered later hear of later transfers only.
CREATE TABLE webhook_transfer_cursor (
  id            INTEGER PRIMARY KEY CHECK (id = 1),
  last_sequence INTEGER NOT NULL
) STRICT;
INSERT INTO webhook_transfer_cursor (id, last_sequence) SELECT 1, coalesce(max(sequence), 0) FROM txns;
`;

// v5: an authorization's operation lock and its refund reservations get
// tables of their own (release 1 of an expand/contract change, DESIGN.md
// §10.3), as PostgreSQL has them (schema.ts v4), backfilled from the columns
// they replace; those columns stay and are still written (card-auth-parts.ts).
const SCHEMA_V5 = cardPartsMigration("sqlite");

/** What one authorization adds to its card's daily spend (the risk rule's spend, DESIGN.md §6.1). */
const spendOf = (row: "NEW" | "OLD") =>
  `(CASE WHEN ${row}.status IN ('APPROVED', 'CAPTURED') OR (${row}.status = 'PENDING' AND ${row}.risk_approved = 1) THEN ${row}.amount_minor ELSE 0 END)`;
const dayOf = (row: "NEW" | "OLD") => `(${row}.created_at - ${row}.created_at % 86400000)`;

// v6: each card's spend per UTC day, kept by triggers on card_authorizations
// from the same predicate the scan used, in the same transaction as the row
// change, whichever code path (or release) makes it. Authorize reads one row
// instead of scanning the card's authorizations of the day (issue 14).
// Every statement may run again (the store contract rewinds the schema to v4 and reopens).
const SCHEMA_V6 = `
CREATE TABLE IF NOT EXISTS card_daily_spend (
  card_id     TEXT NOT NULL,
  day_start   INTEGER NOT NULL,
  spent_minor INTEGER NOT NULL,
  PRIMARY KEY (card_id, day_start)
) STRICT, WITHOUT ROWID;

DELETE FROM card_daily_spend;
INSERT INTO card_daily_spend (card_id, day_start, spent_minor)
  SELECT card_id, created_at - created_at % 86400000,
         sum(CASE WHEN status IN ('APPROVED', 'CAPTURED') OR (status = 'PENDING' AND risk_approved = 1) THEN amount_minor ELSE 0 END)
  FROM card_authorizations GROUP BY card_id, created_at - created_at % 86400000;

CREATE TRIGGER IF NOT EXISTS card_spend_insert AFTER INSERT ON card_authorizations WHEN ${spendOf("NEW")} != 0 BEGIN
  INSERT INTO card_daily_spend (card_id, day_start, spent_minor) VALUES (NEW.card_id, ${dayOf("NEW")}, ${spendOf("NEW")})
    ON CONFLICT (card_id, day_start) DO UPDATE SET spent_minor = spent_minor + excluded.spent_minor;
END;

CREATE TRIGGER IF NOT EXISTS card_spend_update AFTER UPDATE ON card_authorizations
  WHEN ${spendOf("OLD")} != ${spendOf("NEW")} OR OLD.card_id != NEW.card_id OR OLD.created_at != NEW.created_at BEGIN
  UPDATE card_daily_spend SET spent_minor = spent_minor - ${spendOf("OLD")} WHERE card_id = OLD.card_id AND day_start = ${dayOf("OLD")};
  INSERT INTO card_daily_spend (card_id, day_start, spent_minor) VALUES (NEW.card_id, ${dayOf("NEW")}, ${spendOf("NEW")})
    ON CONFLICT (card_id, day_start) DO UPDATE SET spent_minor = spent_minor + excluded.spent_minor;
END;

CREATE TRIGGER IF NOT EXISTS card_spend_delete AFTER DELETE ON card_authorizations WHEN ${spendOf("OLD")} != 0 BEGIN
  UPDATE card_daily_spend SET spent_minor = spent_minor - ${spendOf("OLD")} WHERE card_id = OLD.card_id AND day_start = ${dayOf("OLD")};
END;
`;

const MIGRATIONS: readonly string[] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6];
/** The schema version that has card_auth_ops and card_refund_reservations (the contract's backfill case rewinds to the one before). */
export const CARD_PARTS_SCHEMA_VERSION = MIGRATIONS.indexOf(SCHEMA_V5) + 1;

export function openDb(file: string, options: { readonly maxPageCount?: number } = {}): Db {
  if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  db.defaultSafeIntegers(true);
  migrate(db);
  // Tests fill the "disk" this way (SQLITE_FULL) to check group commit's failure handling.
  if (options.maxPageCount !== undefined) db.pragma(`max_page_count = ${options.maxPageCount}`);
  return db;
}

function migrate(db: Db): void {
  applyMigrations(db, MIGRATIONS, "gateway.db");
}

export function getMeta(db: Db, key: string): string | undefined {
  const row = db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | undefined;
  return row?.value;
}

export function setMeta(db: Db, key: string, value: string): void {
  db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").run(
    key,
    value,
  );
}

/** INTEGER columns come back as bigint (safeIntegers); times and counters fit a number. */
export const num = (v: unknown): number => Number(v as bigint);
