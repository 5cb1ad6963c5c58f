// The bank's ledger in one SQLite file (<data dir>/ledger.db). WAL with
// synchronous=FULL: when transact() returns, the change is on disk, which is
// what lets the bank vote YES only after PREPARED is durable.
//
// Every statement is prepared once. transact() runs any number of rule calls
// in ONE SQLite transaction (one fsync); transactAll() is the batching entry
// point: N operations, one commit.
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { AccountAudit } from "../domain/reconcile.js";
import type {
  Account,
  AccountStatus,
  Deposit,
  Direction,
  Entry,
  EntryKind,
  Hold,
  Leg,
  LedgerTx,
  Txn,
  TxnState,
} from "../domain/types.js";
import type { LinkTx } from "../domain/links.js";
import { createHoldQueries } from "./holds-store.js";
import { createLinkQueries } from "./links-store.js";
import { MIGRATE_V1_TO_V2, SCHEMA, SCHEMA_VERSION } from "./schema.js";

export interface PreparedRef {
  readonly txnId: string;
  readonly coordinator: string;
  readonly preparedAtMs: number;
}

export interface LedgerStore {
  readonly path: string;
  /** Runs fn in one SQLite transaction; a throw rolls all of it back. */
  transact<T>(fn: (tx: LedgerTx) => T): T;
  /** Many operations, one transaction and one fsync (group commit). */
  transactAll<T>(fns: ReadonlyArray<(tx: LedgerTx) => T>): T[];
  /** Runs a link rule (DESIGN.md §11) in one SQLite transaction. */
  transactLinks<T>(fn: (tx: LinkTx) => T): T;
  /** True once the seed has been loaded (the seed file is never read again). */
  isSeeded(): boolean;
  /** Runs fn and marks the store seeded, atomically. Throws if already seeded. */
  seed<T>(fn: (tx: LedgerTx, links: LinkTx) => T): T;
  account(accountId: string): Account | undefined;
  txn(txnId: string): Txn | undefined;
  hold(holdId: string): Hold | undefined;
  listEntries(accountId: string, afterSequence: bigint, limit: number): Entry[];
  audit(): AccountAudit[];
  accountCount(): number;
  /** PREPARED txns, oldest first. */
  prepared(limit: number): PreparedRef[];
  /** PREPARED txns prepared before cutoffMs, oldest first. */
  preparedBefore(cutoffMs: number, limit: number): PreparedRef[];
  /** Metrics probes, read at every scrape: bytes of the db and its WAL, held per currency (every currency, 0 included), PREPARED count. */
  sizeBytes(): number;
  heldByCurrency(): Array<[currency: string, heldMinor: bigint]>;
  preparedCount(): number;
  close(): void;
}

export class StoreError extends Error {
  override name = "StoreError";
}

interface AccountRow {
  account_id: string;
  owner_user_id: string;
  currency: string;
  balance_minor: bigint;
  held_minor: bigint;
  status: string;
  opened_at_ms: bigint;
}

interface EntryRow {
  seq: bigint;
  account_id: string;
  txn_id: string;
  kind: string;
  amount_minor: bigint;
  balance_after_minor: bigint;
  created_at_ms: bigint;
}

interface TxnRow {
  txn_id: string;
  state: string;
  coordinator: string;
  prepared_at_ms: bigint | null;
  decided_at_ms: bigint | null;
  tombstone: bigint;
  vote_reason: string | null;
}

interface LegRow {
  account_id: string;
  direction: string;
  amount_minor: bigint;
  currency: string;
  hold_id: string;
  hold_expires_at_ms: bigint;
}

interface AuditRow {
  account_id: string;
  currency: string;
  balance_minor: bigint;
  held_minor: bigint;
  entry_sum: bigint;
  deposited: bigint;
  transfer_net: bigint;
  last_after: bigint | null;
  broken: bigint;
  active_hold: bigint;
}

const toAccount = (r: AccountRow): Account => ({
  accountId: r.account_id,
  ownerUserId: r.owner_user_id,
  currency: r.currency,
  balanceMinor: r.balance_minor,
  heldMinor: r.held_minor,
  status: r.status as AccountStatus,
  openedAtMs: Number(r.opened_at_ms),
});

const toEntry = (r: EntryRow): Entry => ({
  sequence: r.seq,
  accountId: r.account_id,
  txnId: r.txn_id,
  kind: r.kind as EntryKind,
  amountMinor: r.amount_minor,
  balanceAfterMinor: r.balance_after_minor,
  createdAtMs: Number(r.created_at_ms),
});

const toTxn = (r: TxnRow): Txn => ({
  txnId: r.txn_id,
  state: r.state as TxnState,
  coordinator: r.coordinator,
  preparedAtMs: r.prepared_at_ms === null ? undefined : Number(r.prepared_at_ms),
  decidedAtMs: r.decided_at_ms === null ? undefined : Number(r.decided_at_ms),
  tombstone: r.tombstone === 1n,
  voteReason: r.vote_reason ?? undefined,
});

export interface OpenLedgerStoreOptions {
  readonly dataDir: string;
  /** Recorded at creation; opening another bank's ledger is refused. */
  readonly bank: string;
}

export function openLedgerStore(options: OpenLedgerStoreOptions): LedgerStore {
  mkdirSync(options.dataDir, { recursive: true });
  const path = join(options.dataDir, "ledger.db");
  const db = new Database(path);
  try {
    return initialize(db, path, options.bank);
  } catch (e) {
    db.close();
    throw e;
  }
}

function initialize(db: Database.Database, path: string, bank: string): LedgerStore {
  configure(db, path);
  const meta = claimLedger(db, path, bank);
  const q = prepareStatements(db);
  const tx = createLedgerTx(db, q);

  // Created once: better-sqlite3 wraps the call in BEGIN/COMMIT (or ROLLBACK on throw).
  const links: LinkTx = { account: tx.account, ...createLinkQueries(db) };
  const run = db.transaction((fn: (t: LedgerTx) => unknown) => fn(tx));
  const runLinks = db.transaction((fn: (t: LinkTx) => unknown) => fn(links));
  const runAll = db.transaction((fns: ReadonlyArray<(t: LedgerTx) => unknown>) => fns.map((fn) => fn(tx)));
  const isSeeded = () => meta.get.get("seed_loaded") !== undefined;
  const toRef = (r: { txn_id: string; coordinator: string; prepared_at_ms: bigint }): PreparedRef => ({
    txnId: r.txn_id,
    coordinator: r.coordinator,
    preparedAtMs: Number(r.prepared_at_ms),
  });

  return {
    path,
    transact: <T>(fn: (t: LedgerTx) => T) => run(fn) as T,
    transactAll: <T>(fns: ReadonlyArray<(t: LedgerTx) => T>) => runAll(fns) as T[],
    transactLinks: <T>(fn: (t: LinkTx) => T) => runLinks(fn) as T,
    isSeeded,
    seed(fn) {
      return db
        .transaction(() => {
          if (isSeeded()) throw new StoreError(`${path} is already seeded`);
          const result = fn(tx, links);
          meta.set.run("seed_loaded", new Date().toISOString());
          return result;
        })
        .immediate();
    },
    account: (id) => tx.account(id),
    txn: (id) => tx.txn(id),
    hold: (id) => tx.hold(id),
    listEntries: (accountId, afterSequence, limit) => q.listEntries.all(accountId, afterSequence, limit).map(toEntry),
    audit: () =>
      q.audit.all().map((r) => ({
        accountId: r.account_id,
        currency: r.currency,
        balanceMinor: r.balance_minor,
        heldMinor: r.held_minor,
        entrySumMinor: r.entry_sum,
        activeHoldMinor: r.active_hold,
        lastBalanceAfterMinor: r.last_after ?? undefined,
        brokenChainCount: Number(r.broken),
        depositedMinor: r.deposited,
        transferNetMinor: r.transfer_net,
      })),
    accountCount: () => Number(q.accountCount.get()?.n ?? 0n),
    prepared: (limit) => q.prepared.all(limit).map(toRef),
    preparedBefore: (cutoffMs, limit) => q.preparedBefore.all(cutoffMs, limit).map(toRef),
    sizeBytes: () => fileBytes(path) + fileBytes(`${path}-wal`),
    heldByCurrency: () => q.heldByCurrency.all().map((r) => [r.currency, r.held]),
    preparedCount: () => Number(q.preparedCount.get()?.n ?? 0n),
    close: () => db.close(),
  };
}

/** WAL with full fsync (a vote is durable before it is sent), foreign keys, and the schema at SCHEMA_VERSION. */
function configure(db: Database.Database, path: string): void {
  db.defaultSafeIntegers(true);
  const mode = db.pragma("journal_mode = WAL", { simple: true });
  if (String(mode).toLowerCase() !== "wal")
    throw new StoreError(`${path}: journal_mode is ${String(mode)}, WAL needed`);
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db);
  db.exec(SCHEMA);
}

/** Records which bank owns the file at first open; refuses another bank's ledger or an unknown schema version. */
function claimLedger(db: Database.Database, path: string, bank: string) {
  const get = db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?");
  const set = db.prepare<[string, string]>(
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  );
  db.transaction(() => {
    const owner = get.get("bank_name")?.value;
    if (owner !== undefined && owner !== bank) throw new StoreError(`${path} belongs to ${owner}, not ${bank}`);
    const version = get.get("schema_version")?.value;
    if (version !== undefined && version !== String(SCHEMA_VERSION))
      throw new StoreError(`${path} has schema version ${version}; this build knows ${SCHEMA_VERSION}`);
    if (owner === undefined) set.run("bank_name", bank);
    if (version === undefined) set.run("schema_version", String(SCHEMA_VERSION));
  }).immediate();
  return { get, set };
}

type Statements = ReturnType<typeof prepareStatements>;

function prepareStatements(db: Database.Database) {
  return { ...prepareAccountStatements(db), ...prepareTxnStatements(db), audit: prepareAudit(db) };
}

/** Accounts, their entries and deposits. */
function prepareAccountStatements(db: Database.Database) {
  return {
    account: db.prepare<[string], AccountRow>(
      "SELECT account_id, owner_user_id, currency, balance_minor, held_minor, status, opened_at_ms FROM accounts WHERE account_id = ?",
    ),
    insertAccount: db.prepare(
      "INSERT INTO accounts (account_id, number, owner_user_id, currency, balance_minor, held_minor, status, opened_at_ms) VALUES (@accountId, @number, @ownerUserId, @currency, @balanceMinor, @heldMinor, @status, @openedAtMs)",
    ),
    maxNumber: db.prepare<[], { n: bigint | null }>("SELECT max(number) AS n FROM accounts"),
    setAmounts: db.prepare<[bigint, bigint, string]>(
      "UPDATE accounts SET balance_minor = ?, held_minor = ? WHERE account_id = ?",
    ),
    appendEntry: db.prepare(
      "INSERT INTO entries (account_id, txn_id, kind, amount_minor, balance_after_minor, created_at_ms) VALUES (@accountId, @txnId, @kind, @amountMinor, @balanceAfterMinor, @createdAtMs)",
    ),
    lastEntry: db.prepare<[string], EntryRow>("SELECT * FROM entries WHERE account_id = ? ORDER BY seq DESC LIMIT 1"),
    deposit: db.prepare<
      [string],
      { deposit_id: string; account_id: string; amount_minor: bigint; currency: string; created_at_ms: bigint }
    >("SELECT * FROM deposits WHERE deposit_id = ?"),
    insertDeposit: db.prepare(
      "INSERT INTO deposits (deposit_id, account_id, amount_minor, currency, created_at_ms) VALUES (@depositId, @accountId, @amountMinor, @currency, @createdAtMs)",
    ),
    listEntries: db.prepare<[string, bigint, number], EntryRow>(
      "SELECT * FROM entries WHERE account_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    ),
    accountCount: db.prepare<[], { n: bigint }>("SELECT count(*) AS n FROM accounts"),
    heldByCurrency: db.prepare<[], { currency: string; held: bigint }>(
      "SELECT currency, coalesce(sum(held_minor), 0) AS held FROM accounts GROUP BY currency ORDER BY currency",
    ),
  };
}

/** Transactions and their legs, and the PREPARED ones the resolver settles. */
function prepareTxnStatements(db: Database.Database) {
  return {
    txn: db.prepare<[string], TxnRow>("SELECT * FROM txns WHERE txn_id = ?"),
    txnLegs: db.prepare<[string], LegRow>(
      "SELECT account_id, direction, amount_minor, currency, hold_id, hold_expires_at_ms FROM txn_legs WHERE txn_id = ? ORDER BY leg_index",
    ),
    // Driven by txns_prepared (the few PREPARED txns), then each one's legs by primary key.
    preparedCredit: db.prepare<[string], { n: bigint }>(
      "SELECT coalesce(sum(l.amount_minor), 0) AS n FROM txns t JOIN txn_legs l ON l.txn_id = t.txn_id WHERE t.state = 'PREPARED' AND l.account_id = ? AND l.direction = 'credit'",
    ),
    insertTxn: db.prepare(
      "INSERT INTO txns (txn_id, state, coordinator, prepared_at_ms, decided_at_ms, tombstone, vote_reason) VALUES (@txnId, @state, @coordinator, @preparedAtMs, @decidedAtMs, @tombstone, @voteReason)",
    ),
    insertLeg: db.prepare(
      "INSERT INTO txn_legs (txn_id, leg_index, account_id, direction, amount_minor, currency, hold_id, hold_expires_at_ms) VALUES (@txnId, @legIndex, @accountId, @direction, @amountMinor, @currency, @holdId, @holdExpiresAtMs)",
    ),
    decideTxn: db.prepare<[string, number, string]>(
      "UPDATE txns SET state = ?, decided_at_ms = ? WHERE txn_id = ? AND state = 'PREPARED'",
    ),
    preparedCount: db.prepare<[], { n: bigint }>("SELECT count(*) AS n FROM txns WHERE state = 'PREPARED'"),
    prepared: db.prepare<[number], { txn_id: string; coordinator: string; prepared_at_ms: bigint }>(
      "SELECT txn_id, coordinator, prepared_at_ms FROM txns WHERE state = 'PREPARED' ORDER BY prepared_at_ms LIMIT ?",
    ),
    preparedBefore: db.prepare<[number, number], { txn_id: string; coordinator: string; prepared_at_ms: bigint }>(
      "SELECT txn_id, coordinator, prepared_at_ms FROM txns WHERE state = 'PREPARED' AND prepared_at_ms < ? ORDER BY prepared_at_ms LIMIT ?",
    ),
  };
}

/** Each figure from its own source, so they can disagree when something is wrong. */
function prepareAudit(db: Database.Database) {
  return db.prepare<[], AuditRow>(`
      WITH sums AS (
        SELECT account_id,
               sum(amount_minor) AS entry_sum,
               sum(CASE WHEN kind IN ('opening', 'deposit') THEN amount_minor ELSE 0 END) AS deposited,
               sum(CASE WHEN kind IN ('transfer_debit', 'transfer_credit', 'capture_debit') THEN amount_minor ELSE 0 END) AS transfer_net,
               max(seq) AS last_seq
        FROM entries GROUP BY account_id
      ),
      chain AS (
        SELECT account_id, count(*) AS broken FROM (
          SELECT account_id, amount_minor, balance_after_minor,
                 lag(balance_after_minor, 1, 0) OVER (PARTITION BY account_id ORDER BY seq) AS prev_after
          FROM entries
        ) WHERE balance_after_minor != prev_after + amount_minor GROUP BY account_id
      ),
      reserved AS (
        SELECT account_id, sum(amount_minor) AS active_hold FROM (
          SELECT l.account_id, l.amount_minor
          FROM txns t JOIN txn_legs l ON l.txn_id = t.txn_id
          WHERE t.state = 'PREPARED' AND l.direction IN ('debit', 'auth_hold')
          UNION ALL
          SELECT account_id, amount_minor FROM holds WHERE state = 'ACTIVE'
        ) GROUP BY account_id
      )
      SELECT a.account_id, a.currency, a.balance_minor, a.held_minor,
             coalesce(s.entry_sum, 0) AS entry_sum,
             coalesce(s.deposited, 0) AS deposited,
             coalesce(s.transfer_net, 0) AS transfer_net,
             (SELECT e.balance_after_minor FROM entries e WHERE e.seq = s.last_seq) AS last_after,
             coalesce(c.broken, 0) AS broken,
             coalesce(h.active_hold, 0) AS active_hold
      FROM accounts a
      LEFT JOIN sums s ON s.account_id = a.account_id
      LEFT JOIN chain c ON c.account_id = a.account_id
      LEFT JOIN reserved h ON h.account_id = a.account_id
      ORDER BY a.account_id`);
}

/** The ledger's reads and writes inside one SQLite transaction (callers run it through transact). */
function createLedgerTx(db: Database.Database, q: Statements): LedgerTx {
  return {
    account(accountId) {
      const r = q.account.get(accountId);
      return r ? toAccount(r) : undefined;
    },
    insertAccount(a, number) {
      q.insertAccount.run({
        accountId: a.accountId,
        number,
        ownerUserId: a.ownerUserId,
        currency: a.currency,
        balanceMinor: a.balanceMinor,
        heldMinor: a.heldMinor,
        status: a.status,
        openedAtMs: a.openedAtMs,
      });
    },
    maxAccountNumber: () => q.maxNumber.get()?.n ?? 0n,
    setAccountAmounts(accountId, balanceMinor, heldMinor) {
      const r = q.setAmounts.run(balanceMinor, heldMinor, accountId);
      if (r.changes !== 1) throw new StoreError(`no account ${accountId} to update`);
    },
    appendEntry(e) {
      return BigInt(q.appendEntry.run({ ...e }).lastInsertRowid);
    },
    lastEntry(accountId) {
      const r = q.lastEntry.get(accountId);
      return r ? toEntry(r) : undefined;
    },
    txn(txnId) {
      const r = q.txn.get(txnId);
      return r ? toTxn(r) : undefined;
    },
    txnLegs(txnId): Leg[] {
      // Owner checks happen at prepare; a stored leg no longer needs them.
      return q.txnLegs.all(txnId).map((r) => ({
        accountId: r.account_id,
        direction: r.direction as Direction,
        amountMinor: r.amount_minor,
        currency: r.currency,
        ownerUserId: "",
        ...(r.hold_id !== "" ? { holdId: r.hold_id } : {}),
        ...(r.hold_expires_at_ms !== 0n ? { holdExpiresAtMs: Number(r.hold_expires_at_ms) } : {}),
      }));
    },
    preparedCreditMinor: (accountId) => q.preparedCredit.get(accountId)?.n ?? 0n,
    insertTxn(t, legs) {
      q.insertTxn.run({
        txnId: t.txnId,
        state: t.state,
        coordinator: t.coordinator,
        preparedAtMs: t.preparedAtMs ?? null,
        decidedAtMs: t.decidedAtMs ?? null,
        tombstone: t.tombstone ? 1 : 0,
        voteReason: t.voteReason ?? null,
      });
      for (const [legIndex, l] of legs.entries()) {
        q.insertLeg.run({
          txnId: t.txnId,
          legIndex,
          accountId: l.accountId,
          direction: l.direction,
          amountMinor: l.amountMinor,
          currency: l.currency,
          holdId: l.holdId ?? "",
          holdExpiresAtMs: l.holdExpiresAtMs ?? 0,
        });
      }
    },
    decideTxn(txnId, state, decidedAtMs) {
      const r = q.decideTxn.run(state, decidedAtMs, txnId);
      if (r.changes !== 1) throw new StoreError(`txn ${txnId} is not PREPARED`);
    },
    deposit(depositId): Deposit | undefined {
      const r = q.deposit.get(depositId);
      return r
        ? {
            depositId: r.deposit_id,
            accountId: r.account_id,
            amountMinor: r.amount_minor,
            currency: r.currency,
            createdAtMs: Number(r.created_at_ms),
          }
        : undefined;
    },
    insertDeposit(d) {
      q.insertDeposit.run({ ...d });
    },
    ...createHoldQueries(db),
  };
}

function fileBytes(path: string): number {
  // The WAL is absent right after a checkpoint-on-close; that is 0 bytes, not an error.
  return statSync(path, { throwIfNoEntry: false })?.size ?? 0;
}

/** Brings an older ledger file up to SCHEMA_VERSION before SCHEMA (which assumes the new columns) runs. */
function migrate(db: Database.Database): void {
  const hasMeta = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").get() !== undefined;
  if (!hasMeta) return; // a new file: SCHEMA creates the current version
  const version = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'schema_version'").get()?.value;
  if (version !== "1") return;
  db.transaction(() => {
    db.exec(MIGRATE_V1_TO_V2);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION));
  }).immediate();
}
