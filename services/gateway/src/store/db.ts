// The gateway's SQLite file: users, sessions, the account directory and the
// coordinator log. WAL + synchronous=FULL: a decision is fsync'd before the
// Commit/Abort that depends on it is sent.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

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

const MIGRATIONS: readonly string[] = [SCHEMA_V1];

export function openDb(file: string): Db {
  if (file !== ":memory:") mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  db.defaultSafeIntegers(true);
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const version = Number(db.pragma("user_version", { simple: true }));
  if (version > MIGRATIONS.length) throw new Error(`gateway.db schema v${version} is newer than this build (v${MIGRATIONS.length})`);
  db.transaction(() => {
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.exec(MIGRATIONS[v] ?? "");
      db.pragma(`user_version = ${v + 1}`);
    }
  })();
}

export function getMeta(db: Db, key: string): string | undefined {
  const row = db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | undefined;
  return row?.value;
}

export function setMeta(db: Db, key: string, value: string): void {
  db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").run(key, value);
}

/** INTEGER columns come back as bigint (safeIntegers); times and counters fit a number. */
export const num = (v: unknown): number => Number(v as bigint);
