// The offline queue on disk: one SQLite row per payment, written with
// synchronous=FULL so that "queued" survives a power cut before the first
// byte goes to the gateway. Rows change only by compare-and-set on `version`,
// so two paycli processes (a `sync --watch` and a `pay`) can never both claim
// one entry, nor overwrite each other's outcome.
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { assert } from "@paygate/money";
import { ENTRY_STATES, FINISHED_STATES, PENDING_STATES, type EntryState, type QueueEntry } from "../domain/queue.js";

export interface StoredEntry extends QueueEntry {
  /** Queue order: entries are sent oldest first. */
  readonly seq: number;
  /** Bumped on every write; the compare-and-set token. */
  readonly version: number;
}

export interface QueueStore {
  /** Durable (fsync'd) when it returns. Undefined if the key is already queued. */
  insert(entry: QueueEntry): StoredEntry | undefined;
  get(key: string): StoredEntry | undefined;
  /** Writes `next` only if the row is still `prev`; undefined when another process got there first. */
  replace(prev: StoredEntry, next: QueueEntry): StoredEntry | undefined;
  /** queued and sending entries, in queue order. */
  pending(limit: number): StoredEntry[];
  /** committed, declined and gave_up entries, newest first. */
  recent(limit: number): StoredEntry[];
  counts(): Record<EntryState, number>;
  close(): void;
}

export interface QueueStoreOptions {
  /** How many committed/declined entries to keep for `paycli queue`. */
  readonly keepFinishedMax: number;
  readonly busyTimeoutMs?: number;
}

interface Row {
  seq: bigint;
  key: string;
  user_id: string;
  from_account_id: string;
  to_account_id: string;
  amount_minor: bigint;
  currency: string;
  memo: string;
  state: string;
  attempts: bigint;
  created_at: bigint;
  updated_at: bigint;
  next_attempt_at: bigint | null;
  claim_pid: bigint | null;
  claim_expires_at: bigint | null;
  last_reason: string | null;
  last_error: string | null;
  transaction_id: string | null;
  version: bigint;
}

const SCHEMA_VERSION = 1;
const states = ENTRY_STATES.map((s) => `'${s}'`).join(", ");
const inList = (list: readonly EntryState[]) => list.map((s) => `'${s}'`).join(", ");

const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  user_id TEXT NOT NULL,
  from_account_id TEXT NOT NULL,
  to_account_id TEXT NOT NULL,
  amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
  currency TEXT NOT NULL,
  memo TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN (${states})),
  attempts INTEGER NOT NULL CHECK (attempts >= 0),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  next_attempt_at INTEGER,
  claim_pid INTEGER,
  claim_expires_at INTEGER,
  last_reason TEXT,
  last_error TEXT,
  transaction_id TEXT,
  version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_state ON entries (state, seq);
`;

export function openQueueStore(file: string, options: QueueStoreOptions): QueueStore {
  assert(options.keepFinishedMax >= 0, "keepFinishedMax must be non-negative");
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  db.defaultSafeIntegers(true);
  const version = Number(db.pragma("user_version", { simple: true }) as bigint);
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new Error(`${file} was written by a newer paycli (schema ${version}, this one knows ${SCHEMA_VERSION})`);
  }
  db.exec(SCHEMA);
  db.pragma(`user_version = ${SCHEMA_VERSION}`);

  const columns =
    "key, user_id, from_account_id, to_account_id, amount_minor, currency, memo, state, attempts, created_at, updated_at, next_attempt_at, claim_pid, claim_expires_at, last_reason, last_error, transaction_id";
  const insertStmt = db.prepare(
    `INSERT INTO entries (${columns}, version) VALUES (@key, @user_id, @from_account_id, @to_account_id, @amount_minor, @currency, @memo, @state, @attempts, @created_at, @updated_at, @next_attempt_at, @claim_pid, @claim_expires_at, @last_reason, @last_error, @transaction_id, 1)
     ON CONFLICT (key) DO NOTHING`,
  );
  const getStmt = db.prepare("SELECT * FROM entries WHERE key = ?");
  const replaceStmt = db.prepare(
    `UPDATE entries SET state = @state, attempts = @attempts, updated_at = @updated_at, next_attempt_at = @next_attempt_at,
       claim_pid = @claim_pid, claim_expires_at = @claim_expires_at, last_reason = @last_reason, last_error = @last_error,
       transaction_id = @transaction_id, version = version + 1
     WHERE key = @key AND version = @expected_version`,
  );
  const pendingStmt = db.prepare(
    `SELECT * FROM entries WHERE state IN (${inList(PENDING_STATES)}) ORDER BY seq LIMIT ?`,
  );
  const recentStmt = db.prepare(
    `SELECT * FROM entries WHERE state NOT IN (${inList(PENDING_STATES)}) ORDER BY updated_at DESC, seq DESC LIMIT ?`,
  );
  const countsStmt = db.prepare("SELECT state, count(*) AS n FROM entries GROUP BY state");
  // gave_up entries are not pruned: their outcome is unknown and the user still has to act.
  const pruneStmt = db.prepare(
    `DELETE FROM entries WHERE state IN (${inList(FINISHED_STATES)}) AND seq NOT IN (
       SELECT seq FROM entries WHERE state IN (${inList(FINISHED_STATES)}) ORDER BY updated_at DESC, seq DESC LIMIT ?)`,
  );

  const get = (key: string): StoredEntry | undefined => {
    const row = getStmt.get(key) as Row | undefined;
    return row === undefined ? undefined : fromRow(row);
  };

  const replace = db.transaction((prev: StoredEntry, next: QueueEntry): StoredEntry | undefined => {
    assert(prev.key === next.key, "replace must not change the key");
    const changed = replaceStmt.run({ ...toParams(next), expected_version: BigInt(prev.version) }).changes;
    if (changed === 0) return undefined;
    if (FINISHED_STATES.includes(next.state)) pruneStmt.run(BigInt(options.keepFinishedMax));
    return get(next.key);
  });

  return {
    insert(entry) {
      const changed = insertStmt.run(toParams(entry)).changes;
      return changed === 0 ? undefined : get(entry.key);
    },
    get,
    replace: (prev, next) => replace.immediate(prev, next),
    pending: (limit) => (pendingStmt.all(BigInt(limit)) as Row[]).map(fromRow),
    recent: (limit) => (recentStmt.all(BigInt(limit)) as Row[]).map(fromRow),
    counts() {
      const out = Object.fromEntries(ENTRY_STATES.map((s) => [s, 0])) as Record<EntryState, number>;
      for (const r of countsStmt.all() as { state: EntryState; n: bigint }[]) out[r.state] = Number(r.n);
      return out;
    },
    close: () => db.close(),
  };
}

function toParams(e: QueueEntry) {
  const big = (n: number | null | undefined) => (n === null || n === undefined ? null : BigInt(n));
  return {
    key: e.key,
    user_id: e.userId,
    from_account_id: e.fromAccountId,
    to_account_id: e.toAccountId,
    amount_minor: e.amountMinor,
    currency: e.currency,
    memo: e.memo,
    state: e.state,
    attempts: BigInt(e.attempts),
    created_at: BigInt(e.createdAt),
    updated_at: BigInt(e.updatedAt),
    next_attempt_at: big(e.nextAttemptAt),
    claim_pid: big(e.claim?.pid),
    claim_expires_at: big(e.claim?.expiresAt),
    last_reason: e.lastReason,
    last_error: e.lastError,
    transaction_id: e.transactionId,
  };
}

function fromRow(r: Row): StoredEntry {
  assert((ENTRY_STATES as readonly string[]).includes(r.state), `unknown queue state ${r.state}`);
  const num = (n: bigint | null) => (n === null ? null : Number(n));
  return {
    seq: Number(r.seq),
    version: Number(r.version),
    key: r.key,
    userId: r.user_id,
    fromAccountId: r.from_account_id,
    toAccountId: r.to_account_id,
    amountMinor: r.amount_minor,
    currency: r.currency,
    memo: r.memo,
    state: r.state as EntryState,
    attempts: Number(r.attempts),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
    nextAttemptAt: num(r.next_attempt_at),
    claim:
      r.claim_pid === null || r.claim_expires_at === null
        ? null
        : { pid: Number(r.claim_pid), expiresAt: Number(r.claim_expires_at) },
    lastReason: r.last_reason,
    lastError: r.last_error,
    transactionId: r.transaction_id,
  };
}
