// The shared store (DESIGN.md §3b): every replica's users, sessions, login
// failures, account directory, coordinator log, card records, leases and the
// history sequence in one PostgreSQL database. A replica keeps only caches of
// rows that never change (directory entries, users' roles for a few seconds).
//
// Writes on the transfer path (claims, decisions, acknowledgements) are group
// committed through paygate_apply() (group-commit.ts); the card writes are
// single statements or short transactions, which PostgreSQL's own WAL group
// commit lets concurrent callers share. Unique indexes are the exactly-once
// guards across replicas; row locks and conditional updates replace the
// "no await in between" reasoning a single process could use.
import { readFileSync } from "node:fs";
import { assert } from "@paygate/money";
import type {
  AuthChange,
  AuthExpect,
  AuthOperation,
  AuthRecord,
  BatchItemRecord,
  BatchRecord,
  CardRecord,
  CardStore,
  RefundRecord,
  RefundStart,
} from "../../domain/cards-ports.js";
import type {
  AckTask,
  Decided,
  Decision,
  DecisionRecord,
  DirectoryAccount,
  RoundRecord,
  TxnRecord,
  TxnStatus,
  UnackedDecision,
} from "../../domain/model.js";
import type {
  Claim,
  CoordinatorLog,
  Directory,
  GatewayStore,
  RateLimits,
  ReplicaLeases,
  SeedData,
  SeedReport,
  SessionRecord,
  Sessions,
  TxnHistory,
  UserRecord,
  Users,
} from "../../domain/ports.js";
import { AUTH_SELECT, opColumns, opOfRow, reservedOfRow } from "../card-auth-parts.js";
import { createDriver, type Row, type SqlDriver, type SqlQuery } from "./driver.js";
import { createPgGroupCommit, type PgGroupCommit } from "./group-commit.js";
import { migrate } from "./schema.js";
import { createPostgresWebhookStore, insertOutboxEvents } from "./webhooks.js";
import {
  captureFailedEvent,
  eventsForAuthChange,
  eventsForNewAuth,
  refundEvent,
  settlementEvent,
} from "../../domain/webhook-events.js";

export interface PostgresStoreOptions {
  readonly url: string;
  readonly passwordFile: string;
  readonly poolMax: number;
  readonly driver: "pg" | "postgres";
  readonly statementTimeoutMs: number;
  readonly replica: string;
  readonly logger: {
    info(f: object, m: string): void;
    warn(f: object, m: string): void;
    error(f: object, m: string): void;
  };
  /** How often healthy() is re-checked while the database is unreachable. */
  readonly probeIntervalMs?: number;
}

export type PostgresStore = GatewayStore & { readonly driver: SqlDriver };

const DECIDED_CHANNEL = "paygate_decided";
/** Carries the account id of a removed (unlinked) directory entry: every replica drops its cached copy. */
const DIRECTORY_CHANNEL = "paygate_directory";
const PROBE_INTERVAL_MS_DEFAULT = 1_000;
const ACCOUNTS_PER_OWNER_MAX = 1000;
const DIRECTORY_CACHE_MAX = 50_000;
const SEED_LOCK_KEY = "7017280452245743465";

// ---- row conversion -------------------------------------------------------
// int8 arrives as a string from both drivers; times and counters fit a number.
const big = (v: unknown): bigint => (typeof v === "bigint" ? v : BigInt(v as string | number));
const num = (v: unknown): number => Number(v);
const str = (v: unknown): string => (v === null || v === undefined ? "" : String(v));

function toTxn(r: Row): TxnRecord {
  return {
    txnId: str(r.txn_id),
    sequence: r.sequence === null || r.sequence === undefined ? 0n : big(r.sequence),
    callerUserId: str(r.caller_user_id),
    idempotencyKey: str(r.idempotency_key),
    fingerprint: str(r.fingerprint),
    fromAccountId: str(r.from_account_id),
    toAccountId: str(r.to_account_id),
    fromBank: str(r.from_bank),
    toBank: str(r.to_bank),
    amountMinor: big(r.amount_minor),
    currency: str(r.currency),
    memo: str(r.memo),
    status: str(r.status) as TxnStatus,
    declineReason: str(r.decline_reason),
    createdAtMs: num(r.created_at),
    decidedAtMs: num(r.decided_at),
  };
}

const toDecision = (r: Row): DecisionRecord => ({
  txnId: str(r.txn_id),
  decision: str(r.decision) as Decision,
  reason: str(r.reason),
  decidedAtMs: num(r.decided_at),
});
const toRound = (r: Row): RoundRecord => ({
  txnId: str(r.txn_id),
  kind: str(r.kind),
  banks: (r.banks as string[]).map(String),
  createdAtMs: num(r.created_at),
});
const toUser = (r: Row): UserRecord => ({
  userId: str(r.user_id),
  username: str(r.username),
  passwordHash: str(r.password_hash),
  roles: str(r.roles).split(",").filter(Boolean),
  displayName: str(r.display_name),
});
const toAccount = (r: Row): DirectoryAccount => ({
  accountId: str(r.account_id),
  bank: str(r.bank),
  ownerUserId: str(r.owner_user_id),
  currency: str(r.currency),
});

function toCard(r: Row): CardRecord {
  return {
    cardId: str(r.card_id),
    panHmac: str(r.pan_hmac),
    last4: str(r.last4),
    expMonth: num(r.exp_month),
    expYear: num(r.exp_year),
    cvcHash: str(r.cvc_hash),
    cardholderName: str(r.cardholder_name),
    accountId: str(r.account_id),
    bank: str(r.bank),
    ownerUserId: str(r.owner_user_id),
    currency: str(r.currency),
    createdAtMs: num(r.created_at),
  };
}

function toAuth(r: Row): AuthRecord {
  return {
    authId: str(r.auth_id),
    replica: str(r.replica),
    authCode: str(r.auth_code),
    merchantUserId: str(r.merchant_user_id),
    idempotencyKey: str(r.idempotency_key),
    fingerprint: str(r.fingerprint),
    cardId: str(r.card_id),
    cardLast4: str(r.card_last4),
    cardAccountId: str(r.card_account_id),
    cardBank: str(r.card_bank),
    cardOwnerUserId: str(r.card_owner_user_id),
    merchantAccountId: str(r.merchant_account_id),
    merchantBank: str(r.merchant_bank),
    amountMinor: big(r.amount_minor),
    currency: str(r.currency),
    merchantReference: str(r.merchant_reference),
    status: str(r.status) as AuthRecord["status"],
    declineReason: str(r.decline_reason),
    riskScore: num(r.risk_score),
    riskApproved: r.risk_approved === true,
    riskRule: str(r.risk_rule),
    holdTxnId: str(r.hold_txn_id),
    op: opOfRow(r),
    capturedMinor: big(r.captured_minor),
    captureTxnId: str(r.capture_txn_id),
    captureBatchId: str(r.capture_batch_id),
    captureItemIndex: num(r.capture_item_index),
    refundedMinor: big(r.refunded_minor),
    refundReservedMinor: reservedOfRow(r),
    createdAtMs: num(r.created_at),
    expiresAtMs: num(r.expires_at),
    updatedAtMs: num(r.updated_at),
  };
}

const toBatch = (r: Row): BatchRecord => ({
  batchId: str(r.batch_id),
  merchantUserId: str(r.merchant_user_id),
  idempotencyKey: str(r.idempotency_key),
  fingerprint: str(r.fingerprint),
  status: str(r.status) as BatchRecord["status"],
  ownerReplica: str(r.owner_replica),
  createdAtMs: num(r.created_at),
});

const toItem = (r: Row): BatchItemRecord => ({
  batchId: str(r.batch_id),
  index: num(r.item_index),
  authCode: str(r.auth_code),
  amountMinor: big(r.amount_minor),
  status: str(r.status) as BatchItemRecord["status"],
  reason: str(r.reason),
  capturedMinor: big(r.captured_minor),
  txnId: str(r.txn_id),
});

const toRefund = (r: Row): RefundRecord => ({
  refundId: str(r.refund_id),
  merchantUserId: str(r.merchant_user_id),
  idempotencyKey: str(r.idempotency_key),
  fingerprint: str(r.fingerprint),
  authId: str(r.auth_id),
  amountMinor: big(r.amount_minor),
  txnId: str(r.txn_id),
  status: str(r.status) as RefundRecord["status"],
  reason: str(r.reason),
  createdAtMs: num(r.created_at),
});

/** `<replica>:` as a LIKE prefix (replica names are [a-z0-9-], no wildcards); every txn id when undefined. */
const prefixOf = (replica: string | undefined) => (replica === undefined ? "%" : `${replica}:%`);

const one = <T>(rows: readonly T[]): T | undefined => rows[0];

/** The AuthChange fields a compare-and-set may write, and their columns (the operation: OP_COLUMNS and its row). */
const AUTH_CHANGE_COLUMNS: Readonly<Record<Exclude<keyof AuthChange, "op">, string>> = {
  status: "status",
  declineReason: "decline_reason",
  riskScore: "risk_score",
  riskApproved: "risk_approved",
  riskRule: "risk_rule",
  holdTxnId: "hold_txn_id",
  capturedMinor: "captured_minor",
  captureTxnId: "capture_txn_id",
  captureBatchId: "capture_batch_id",
  captureItemIndex: "capture_item_index",
};

/** The old columns an operation is kept in, for previous-release readers. */
const OP_COLUMNS: Readonly<Record<keyof ReturnType<typeof opColumns>, string>> = {
  opTxnId: "op_txn_id",
  opKind: "op_kind",
  opAmountMinor: "op_amount_minor",
  opBatchId: "op_batch_id",
  opItemIndex: "op_item_index",
};

/**
 * casAuth's operation row, written in its statement from what its UPDATE
 * (`u`) changed, so it moves only when the compare-and-set won: in step with
 * the op_* columns this adds to that UPDATE through `set`, or gone with them.
 */
function writeOpAfter(op: AuthOperation | null, set: (column: string, v: unknown) => string): string {
  const c = opColumns(op);
  const p = {
    txnId: set(OP_COLUMNS.opTxnId, c.opTxnId),
    kind: set(OP_COLUMNS.opKind, c.opKind),
    amount: set(OP_COLUMNS.opAmountMinor, c.opAmountMinor),
    batchId: set(OP_COLUMNS.opBatchId, c.opBatchId),
    index: set(OP_COLUMNS.opItemIndex, c.opItemIndex),
  };
  if (!op) return ", o AS (DELETE FROM card_auth_ops WHERE auth_id IN (SELECT auth_id FROM u))";
  return `, o AS (INSERT INTO card_auth_ops (auth_id, txn_id, kind, amount_minor, batch_id, item_index, created_at)
       SELECT auth_id, ${p.txnId}::text, ${p.kind}::text, ${p.amount}::bigint, ${p.batchId}::text, ${p.index}::integer, $2::bigint FROM u
       ON CONFLICT (auth_id) DO UPDATE SET txn_id = EXCLUDED.txn_id, kind = EXCLUDED.kind, amount_minor = EXCLUDED.amount_minor,
         batch_id = EXCLUDED.batch_id, item_index = EXCLUDED.item_index, created_at = EXCLUDED.created_at)`;
}

// ---- the store ------------------------------------------------------------

export async function createPostgresStore(o: PostgresStoreOptions): Promise<PostgresStore> {
  const password = o.passwordFile === "" ? "" : readFileSync(o.passwordFile, "utf8").trim();
  let healthy = true;
  let lastUnavailableLogMs = -Infinity;
  const markUnavailable = (e: unknown) => {
    healthy = false;
    const now = performance.now(); // an interval: monotonic
    if (now - lastUnavailableLogMs > 5_000) {
      lastUnavailableLogMs = now;
      o.logger.warn(
        { err: e instanceof Error ? e.message : String(e) },
        "PostgreSQL unreachable; answering unavailable until it returns",
      );
    }
  };
  const driver = createDriver(o.driver, {
    url: o.url,
    password,
    poolMax: o.poolMax,
    statementTimeoutMs: o.statementTimeoutMs,
    applicationName: `paygate-${o.replica}`,
    onError: markUnavailable,
  });
  const migrated = await migrate(driver);
  if (migrated.applied > 0)
    o.logger.info({ applied: migrated.applied, version: migrated.version }, "PostgreSQL schema migrated");

  // Every query goes through here, so readiness follows what the store sees.
  const q: SqlQuery = {
    async query(text, params) {
      try {
        const rows = await driver.query(text, params);
        healthy = true;
        return rows as never;
      } catch (e) {
        if (e instanceof Error && e.name === "StoreUnavailableError") markUnavailable(e);
        throw e;
      }
    },
  };

  const group: PgGroupCommit = createPgGroupCommit(driver, {
    retryDeadlineMs: 3 * o.statementTimeoutMs,
    onUnavailable: markUnavailable,
  });

  // While unreachable, a probe notices when it is back (readiness turns true again by itself).
  const probe = setInterval(() => {
    if (!healthy) q.query("SELECT 1").catch(() => {});
  }, o.probeIntervalMs ?? PROBE_INTERVAL_MS_DEFAULT);
  probe.unref();

  const decided = await listenForDecisions(driver, o.logger);
  const directory = createDirectory(q);
  const unlistenDirectory = await listenForDirectoryChanges(driver, directory, o.logger);

  const log = createLog(q, group);
  return {
    kind: "postgres",
    shared: true,
    driver,
    log,
    directory,
    users: createUsers(q),
    sessions: createSessions(q),
    cards: createCards(q, driver),
    leases: createLeases(q),
    limits: createRateLimits(q),
    webhooks: createPostgresWebhookStore(q, driver),
    seeded: async () => (await q.query("SELECT 1 FROM meta WHERE key = 'seed_loaded_at'")).length > 0,
    seedOnce: (seed, nowMs) => seedOnce(driver, seed, nowMs),
    onDecided: (listener) => void decided.listeners.push(listener),
    healthy: () => healthy,
    async close() {
      clearInterval(probe);
      await group.drain();
      await decided.unlisten?.().catch(() => {});
      await unlistenDirectory?.().catch(() => {});
      await driver.end();
    },
  };
}

/** Decisions logged by any replica (LISTEN); a failed LISTEN leaves only this replica's own decisions to wake followers. */
async function listenForDecisions(
  driver: SqlDriver,
  logger: PostgresStoreOptions["logger"],
): Promise<{ listeners: (() => void)[]; unlisten: (() => Promise<void>) | undefined }> {
  const listeners: (() => void)[] = [];
  const notifyAll = () => {
    for (const l of listeners) l();
  };
  let unlisten: (() => Promise<void>) | undefined;
  try {
    // After a reconnect the followers re-read the log: nothing decided meanwhile is missed.
    unlisten = await driver.listen(DECIDED_CHANNEL, notifyAll, notifyAll);
  } catch (e) {
    logger.warn({ err: String(e) }, "LISTEN failed; ListTransactions followers wake only on this replica's decisions");
  }
  return { listeners, unlisten };
}

/** Unlinked accounts announced by any replica leave this replica's directory cache. */
async function listenForDirectoryChanges(
  driver: SqlDriver,
  directory: { forget(accountId: string | undefined): void },
  logger: PostgresStoreOptions["logger"],
): Promise<(() => Promise<void>) | undefined> {
  try {
    // A reconnect may have missed removals: drop the whole cache then.
    return await driver.listen(
      DIRECTORY_CHANNEL,
      (accountId) => directory.forget(accountId),
      () => directory.forget(undefined),
    );
  } catch (e) {
    logger.warn(
      { err: String(e) },
      "LISTEN failed; an unlinked account stays in this replica's directory cache (the bank still refuses its old owner's debits)",
    );
    return undefined;
  }
}

/** Loads the seed once across replicas: the advisory lock makes concurrent first starts take turns. */
function seedOnce(driver: SqlDriver, seed: SeedData, nowMs: number): Promise<SeedReport> {
  return driver.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(${SEED_LOCK_KEY})`);
    if ((await tx.query("SELECT 1 FROM meta WHERE key = 'seed_loaded_at'")).length > 0)
      return { loaded: false, users: 0, accounts: 0 };
    let users = 0;
    let accounts = 0;
    for (const u of seed.users) {
      const r = await tx.query(
        "INSERT INTO users (user_id, username, password_hash, roles, display_name, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
        [u.userId, u.username, u.passwordHash, u.roles.join(","), u.displayName, nowMs],
      );
      users += r.length;
    }
    for (const a of seed.accounts) {
      const r = await tx.query(
        "INSERT INTO accounts (account_id, bank, owner_user_id, currency, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
        [a.accountId, a.bank, a.ownerUserId, a.currency, nowMs],
      );
      accounts += r.length;
    }
    await tx.query("INSERT INTO meta (key, value) VALUES ('seed_loaded_at', $1)", [String(nowMs)]);
    return { loaded: true, users, accounts };
  });
}

// ---- coordinator log --------------------------------------------------------

function createLog(q: SqlQuery, group: PgGroupCommit): CoordinatorLog & TxnHistory {
  const txnOf = (j: unknown): TxnRecord => toTxn(j as Row);
  const claimOf = (r: unknown): Claim => {
    const c = r as { claimed: boolean; txn: Row };
    return c.claimed ? { claimed: true, txn: txnOf(c.txn) } : { claimed: false, owner: txnOf(c.txn) };
  };
  const background = (p: Promise<unknown>) => {
    // A lost acknowledgement only costs one idempotent resend.
    p.catch(() => {});
  };
  return {
    claim: async (txn) => claimOf(await group.apply({ op: "claim", txn })),
    reclaim: async (previousTxnId, txn) => claimOf(await group.apply({ op: "reclaim", previousTxnId, txn })),
    async registerRound(round) {
      await group.apply({
        op: "round",
        txnId: round.txnId,
        kind: round.kind,
        banks: round.banks,
        createdAtMs: round.createdAtMs,
      });
    },
    async decide(input): Promise<Decided> {
      const r = (await group.apply({ op: "decide", ...input })) as Row & { txn: Row | null };
      return { decision: toDecision(r), txn: r.txn ? txnOf(r.txn) : undefined };
    },
    ack: (txnId, bank, nowMs) => background(group.applyLazy({ op: "ack", txnId, bank, nowMs })),
    deferAck: (txnId, bank, attempts, nextAttemptAtMs, error) =>
      background(group.applyLazy({ op: "defer", txnId, bank, attempts, nextAttemptAtMs, error: error.slice(0, 500) })),
    findTxn: async (txnId) => {
      const r = one(await q.query("SELECT * FROM txns WHERE txn_id = $1", [txnId]));
      return r ? toTxn(r) : undefined;
    },
    findRound: async (txnId) => {
      const r = one(await q.query("SELECT * FROM rounds WHERE txn_id = $1", [txnId]));
      return r ? toRound(r) : undefined;
    },
    findDecision: async (txnId) => {
      const r = one(await q.query("SELECT * FROM decisions WHERE txn_id = $1", [txnId]));
      return r ? toDecision(r) : undefined;
    },
    unackedBanks: async (txnId) =>
      (
        await q.query("SELECT bank FROM decision_acks WHERE txn_id = $1 AND acked_at IS NULL ORDER BY bank", [txnId])
      ).map((r) => str(r.bank)),
    // Shared redrive: each replica claims the rows it resends (SKIP LOCKED), past the claim's end another may.
    async dueAcks(nowMs, limit, claimMs): Promise<AckTask[]> {
      const rows = await q.query(
        `UPDATE decision_acks a SET next_attempt_at = $3
         FROM (SELECT txn_id, bank FROM decision_acks WHERE acked_at IS NULL AND next_attempt_at <= $1
               ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) due, decisions d
         WHERE a.txn_id = due.txn_id AND a.bank = due.bank AND d.txn_id = a.txn_id
         RETURNING a.txn_id, a.bank, a.attempts, d.decision`,
        [nowMs, limit, nowMs + claimMs],
      );
      return rows
        .map((r) => ({
          txnId: str(r.txn_id),
          bank: str(r.bank),
          decision: str(r.decision) as Decision,
          attempts: num(r.attempts),
        }))
        .sort((a, b) => (a.txnId < b.txnId ? -1 : a.txnId > b.txnId ? 1 : a.bank < b.bank ? -1 : 1));
    },
    rescheduleUnacked: async (nowMs) =>
      (await q.query("UPDATE decision_acks SET next_attempt_at = $1 WHERE acked_at IS NULL RETURNING 1", [nowMs]))
        .length,
    pendingUndecided: async (limit, filter = {}) =>
      (
        await q.query(
          `SELECT t.* FROM txns t WHERE t.status = 'PENDING' AND t.txn_id LIKE $2 AND t.created_at < $3
           AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.txn_id = t.txn_id) ORDER BY t.created_at LIMIT $1`,
          [limit, prefixOf(filter.replica), filter.createdBeforeMs ?? Number.MAX_SAFE_INTEGER],
        )
      ).map(toTxn),
    undecidedRounds: async (limit, replica, createdBeforeMs) =>
      (
        await q.query(
          `SELECT r.* FROM rounds r WHERE r.txn_id LIKE $2 AND r.created_at < $3
           AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.txn_id = r.txn_id) ORDER BY r.created_at LIMIT $1`,
          [limit, prefixOf(replica), createdBeforeMs],
        )
      ).map(toRound),
    async unackedDecisions(limit): Promise<UnackedDecision[]> {
      const rows = await q.query(
        `SELECT d.txn_id, d.decision, d.decided_at, string_agg(a.bank, ',' ORDER BY a.bank) AS banks, max(a.last_error) AS last_error
         FROM decision_acks a JOIN decisions d ON d.txn_id = a.txn_id WHERE a.acked_at IS NULL
         GROUP BY d.txn_id ORDER BY d.decided_at LIMIT $1`,
        [limit],
      );
      return rows.map((r) => ({
        txnId: str(r.txn_id),
        decision: str(r.decision) as Decision,
        decidedAtMs: num(r.decided_at),
        banks: str(r.banks).split(","),
        lastError: str(r.last_error),
      }));
    },
    async inDoubtSummary(nowMs) {
      const r = one(
        await q.query(
          `SELECT (SELECT count(*) FROM txns WHERE status = 'PENDING') + (SELECT count(DISTINCT txn_id) FROM decision_acks WHERE acked_at IS NULL) AS n,
                  least((SELECT min(created_at) FROM txns WHERE status = 'PENDING'),
                        (SELECT min(coalesce(t.created_at, d.decided_at)) FROM decision_acks a JOIN decisions d ON d.txn_id = a.txn_id
                         LEFT JOIN txns t ON t.txn_id = a.txn_id WHERE a.acked_at IS NULL)) AS oldest`,
        ),
      );
      const count = num(r?.n ?? 0);
      if (count === 0 || r?.oldest === null || r?.oldest === undefined) return { count, oldestAgeSeconds: 0 };
      return { count, oldestAgeSeconds: Math.max(0, nowMs - num(r.oldest)) / 1000 };
    },
    listVisible: async (userId, afterSequence, limit) =>
      (
        await q.query(
          `SELECT * FROM txns WHERE sequence > $2 AND (caller_user_id = $1
             OR from_account_id IN (SELECT account_id FROM accounts WHERE owner_user_id = $1)
             OR to_account_id IN (SELECT account_id FROM accounts WHERE owner_user_id = $1))
           ORDER BY sequence LIMIT $3`,
          [userId, afterSequence.toString(), limit],
        )
      ).map(toTxn),
  };
}

// ---- directory, users, sessions, leases -------------------------------------

function createDirectory(q: SqlQuery): Directory & { forget(accountId: string | undefined): void } {
  // A found row is kept (bounded): only unlinking removes one, and then every
  // replica is told to forget it (DIRECTORY_CHANNEL).
  const found = new Map<string, DirectoryAccount>();
  // Bumped by every forget: a read that began before a removal was announced must not cache what it read.
  let generation = 0;
  return {
    forget(accountId) {
      generation++;
      if (accountId === undefined) found.clear();
      else found.delete(accountId);
    },
    async find(accountId) {
      const cached = found.get(accountId);
      if (cached) return cached;
      const seen = generation;
      const r = one(await q.query("SELECT * FROM accounts WHERE account_id = $1", [accountId]));
      if (!r) return undefined;
      const a = toAccount(r);
      if (seen !== generation) return a;
      if (found.size >= DIRECTORY_CACHE_MAX) found.clear();
      found.set(accountId, a);
      return a;
    },
    ownedBy: async (userId) =>
      (
        await q.query("SELECT * FROM accounts WHERE owner_user_id = $1 ORDER BY account_id LIMIT $2", [
          userId,
          ACCOUNTS_PER_OWNER_MAX,
        ])
      ).map(toAccount),
    async add(a, nowMs) {
      const added =
        (
          await q.query(
            "INSERT INTO accounts (account_id, bank, owner_user_id, currency, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
            [a.accountId, a.bank, a.ownerUserId, a.currency, nowMs],
          )
        ).length === 1;
      // A copy cached before an unlink this replica has not heard of yet is stale now.
      if (added) {
        generation++;
        found.delete(a.accountId);
      }
      return added;
    },
    // The notification is sent at COMMIT, with the delete: every replica (this one too) forgets the entry.
    async remove(accountId) {
      const r = one(
        await q.query(
          `WITH gone AS (DELETE FROM accounts WHERE account_id = $1 RETURNING account_id, bank, owner_user_id, currency)
           SELECT gone.*, pg_notify('${DIRECTORY_CHANNEL}', gone.account_id) AS notified FROM gone`,
          [accountId],
        ),
      );
      generation++;
      found.delete(accountId);
      return r ? toAccount(r) : undefined;
    },
  };
}

function createRateLimits(q: SqlQuery): RateLimits {
  return {
    // One statement: hits from every replica count; a hit after the window ended starts a new one.
    async hit(scope, key, nowMs, windowMs) {
      const r = one(
        await q.query(
          `INSERT INTO rate_limits AS l (scope, key, count, window_end) VALUES ($1, $2, 1, $3::bigint + $4::bigint)
           ON CONFLICT (scope, key) DO UPDATE SET
             count = CASE WHEN l.window_end <= $3::bigint THEN 1 ELSE l.count + 1 END,
             window_end = CASE WHEN l.window_end <= $3::bigint THEN $3::bigint + $4::bigint ELSE l.window_end END
           RETURNING count, window_end`,
          [scope, key, nowMs, windowMs],
        ),
      );
      return { count: num(r?.count), resetAtMs: num(r?.window_end) };
    },
    purgeExpired: async (nowMs, limit) =>
      (
        await q.query(
          "DELETE FROM rate_limits WHERE (scope, key) IN (SELECT scope, key FROM rate_limits WHERE window_end <= $1 LIMIT $2) RETURNING 1",
          [nowMs, limit],
        )
      ).length,
  };
}

/** Users are never changed once created: every authenticated call reads one by id, so found ones are kept a while (bounded). */
const USER_CACHE_MAX = 10_000;
const USER_CACHE_TTL_MS = 60_000;

function createUsers(q: SqlQuery): Users {
  const failuresOf = (r: Row | undefined) =>
    r ? { failures: num(r.failures), lockedUntilMs: num(r.locked_until) } : { failures: 0, lockedUntilMs: 0 };
  const byIdCache = new Map<string, { user: UserRecord; atMs: number }>();
  return {
    byUsername: async (username) => {
      const r = one(await q.query("SELECT * FROM users WHERE username = $1", [username]));
      return r ? toUser(r) : undefined;
    },
    byId: async (userId) => {
      const hit = byIdCache.get(userId);
      if (hit && performance.now() - hit.atMs < USER_CACHE_TTL_MS) return hit.user;
      const r = one(await q.query("SELECT * FROM users WHERE user_id = $1", [userId]));
      if (!r) return undefined;
      const user = toUser(r);
      if (byIdCache.size >= USER_CACHE_MAX) byIdCache.clear();
      byIdCache.set(userId, { user, atMs: performance.now() });
      return user;
    },
    async create(user, nowMs) {
      const inserted = await q.query(
        "INSERT INTO users (user_id, username, password_hash, roles, display_name, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
        [user.userId, user.username, user.passwordHash, user.roles.join(","), user.displayName, nowMs],
      );
      return inserted.length === 1;
    },
    loginFailures: async (userId, client) =>
      failuresOf(
        one(
          await q.query("SELECT failures, locked_until FROM login_failures WHERE user_id = $1 AND client = $2", [
            userId,
            client,
          ]),
        ),
      ),
    // One statement: failures from every replica count, and the one that reaches the maximum locks.
    recordLoginFailure: async (userId, client, nowMs, failuresMax, lockMs) =>
      failuresOf(
        one(
          await q.query(
            `INSERT INTO login_failures AS f (user_id, client, failures, locked_until)
             VALUES ($1, $2, CASE WHEN 1 >= $4::int THEN 0 ELSE 1 END, CASE WHEN 1 >= $4::int THEN $3::bigint + $5::bigint ELSE 0 END)
             ON CONFLICT (user_id, client) DO UPDATE SET
               failures = CASE WHEN f.failures + 1 >= $4::int THEN 0 ELSE f.failures + 1 END,
               locked_until = CASE WHEN f.failures + 1 >= $4::int THEN $3::bigint + $5::bigint ELSE f.locked_until END
             RETURNING failures, locked_until`,
            [userId, client, nowMs, failuresMax, lockMs],
          ),
        ),
      ),
    async clearLoginFailures(userId, client) {
      await q.query("DELETE FROM login_failures WHERE user_id = $1 AND client = $2", [userId, client]);
    },
  };
}

function createSessions(q: SqlQuery): Sessions {
  return {
    async create(s, nowMs) {
      await q.query(
        "INSERT INTO sessions (token_hash, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        [s.tokenHash, s.userId, s.expiresAtMs, nowMs],
      );
    },
    async find(tokenHash): Promise<SessionRecord | undefined> {
      const r = one(
        await q.query("SELECT token_hash, user_id, expires_at FROM sessions WHERE token_hash = $1", [tokenHash]),
      );
      return r ? { tokenHash: str(r.token_hash), userId: str(r.user_id), expiresAtMs: num(r.expires_at) } : undefined;
    },
    async revoke(tokenHash) {
      await q.query("DELETE FROM sessions WHERE token_hash = $1", [tokenHash]);
    },
    purgeExpired: async (nowMs, limit) =>
      (
        await q.query(
          "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at <= $1 LIMIT $2) RETURNING 1",
          [nowMs, limit],
        )
      ).length,
  };
}

/** Leases on the database's clock: replicas' clocks may disagree, the server's is one. */
function createLeases(q: SqlQuery): ReplicaLeases {
  return {
    async heartbeat(replica, bootId, leaseMs) {
      await q.query(
        `INSERT INTO replica_leases (replica, boot_id, lease_until) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
         ON CONFLICT (replica) DO UPDATE SET boot_id = excluded.boot_id, lease_until = excluded.lease_until, taken_over_by = '', taken_over_at = '-infinity'`,
        [replica, bootId, leaseMs],
      );
    },
    isAlive: async (replica) =>
      (await q.query("SELECT 1 FROM replica_leases WHERE replica = $1 AND lease_until >= clock_timestamp()", [replica]))
        .length > 0,
    // A takeover that another replica claimed but did not finish within the grace is claimable again.
    claimExpired: async (self, graceMs, limit) =>
      (
        await q.query(
          `UPDATE replica_leases l SET taken_over_by = $1, taken_over_at = clock_timestamp()
           FROM (SELECT replica FROM replica_leases
                 WHERE replica != $1 AND lease_until < clock_timestamp() - $2 * interval '1 millisecond'
                   AND (taken_over_by = '' OR (taken_over_by != $1 AND taken_over_at < clock_timestamp() - $2 * interval '1 millisecond'))
                 ORDER BY replica LIMIT $3 FOR UPDATE SKIP LOCKED) x
           WHERE l.replica = x.replica RETURNING l.replica`,
          [self, graceMs, limit],
        )
      ).map((r) => str(r.replica)),
    async takenOver(replica, by) {
      await q.query("UPDATE replica_leases SET taken_over_by = $2, taken_over_at = 'infinity' WHERE replica = $1", [
        replica,
        by,
      ]);
    },
  };
}

// ---- cards ----------------------------------------------------------------
// The webhook outbox (DESIGN.md §12): a write that changes what a merchant is
// told about (an authorization's status, a failed capture, a finished batch, a
// committed refund) inserts its event in the same transaction (webhooks.ts).
// Each such write holds the authorization's row lock when it inserts, so one
// authorization's events get their seq in the order they commit.
//
// An authorization's operation lock and its refund reservations have tables
// of their own (card-auth-parts.ts); each write that changes them writes the
// row and the old columns in the same statement or transaction. The
// conditional UPDATE of the authorization's row stays the compare-and-set
// (its row lock serializes replicas); the operation's row is written only
// from what that UPDATE returned, in the same statement.

/** `clockMs`: the time of events whose store call carries none (a failed batch item). */
/** One authorization with its operation and reservations (AUTH_SELECT). */
const authByIdIn = async (tx: SqlQuery, authId: string): Promise<AuthRecord | undefined> => {
  const r = one(await tx.query(`${AUTH_SELECT} WHERE a.auth_id = $1`, [authId]));
  return r ? toAuth(r) : undefined;
};

/**
 * Compare-and-set in one statement; the opId makes a re-run (after an
 * unknown outcome) report the update it already made.
 */
async function casAuth(
  tx: SqlQuery,
  authId: string,
  expect: AuthExpect,
  change: AuthChange,
  nowMs: number,
  opId: string,
): Promise<boolean> {
  const params: unknown[] = [authId, nowMs, opId];
  const sets = ["updated_at = $2", "last_op_id = $3"];
  const set = (column: string, v: unknown) => {
    params.push(typeof v === "bigint" ? v.toString() : v);
    sets.push(`${column} = $${params.length}`);
    return `$${params.length}`;
  };
  for (const [k, v] of Object.entries(change) as [keyof AuthChange, unknown][]) {
    if (k === "op") continue;
    const column = AUTH_CHANGE_COLUMNS[k];
    assert(column !== undefined, `authorization field ${k} may change`);
    set(column, v);
  }
  const opWrite = change.op === undefined ? "" : writeOpAfter(change.op, set);
  const where = ["auth_id = $1"];
  if (expect.status !== undefined) {
    params.push(expect.status);
    where.push(`status = $${params.length}`);
  }
  // The lock is compared on the column, which replicas of either release write.
  if (expect.opTxnId !== undefined) {
    params.push(expect.opTxnId);
    where.push(`op_txn_id = $${params.length}`);
  }
  const rows = await tx.query(
    `WITH u AS (UPDATE card_authorizations SET ${sets.join(", ")} WHERE ${where.join(" AND ")} RETURNING auth_id)${opWrite}
     SELECT (SELECT count(*) FROM u) > 0 OR EXISTS (SELECT 1 FROM card_authorizations WHERE auth_id = $1 AND last_op_id = $3) AS ok`,
    params,
  );
  return rows[0]?.ok === true;
}

/**
 * A status change, with its events, inside `tx`: the row is locked and read
 * first (the events need it as it was). A change that leaves the status
 * alone reports nothing, so it stays one statement.
 */
async function updateAuthIn(
  tx: SqlQuery,
  authId: string,
  expect: AuthExpect,
  change: AuthChange,
  nowMs: number,
  opId: string,
): Promise<boolean> {
  if (change.status === undefined) return casAuth(tx, authId, expect, change, nowMs, opId);
  const row = one(await tx.query(`${AUTH_SELECT} WHERE a.auth_id = $1 FOR UPDATE OF a`, [authId]));
  if (!row) return false;
  if (str(row.last_op_id) === opId) return true; // this very update, re-run after an unknown outcome
  const before = toAuth(row);
  if (expect.status !== undefined && before.status !== expect.status) return false;
  if (expect.opTxnId !== undefined && (before.op?.txnId ?? "") !== expect.opTxnId) return false;
  assert(await casAuth(tx, authId, expect, change, nowMs, opId), "a locked, matching authorization updates");
  await insertOutboxEvents(tx, eventsForAuthChange(before, { ...before, ...change, updatedAtMs: nowMs }, nowMs));
  return true;
}

const authColumns = [
  "auth_id",
  "replica",
  "auth_code",
  "merchant_user_id",
  "idempotency_key",
  "fingerprint",
  "card_id",
  "card_last4",
  "card_account_id",
  "card_bank",
  "card_owner_user_id",
  "merchant_account_id",
  "merchant_bank",
  "amount_minor",
  "currency",
  "merchant_reference",
  "status",
  "decline_reason",
  "risk_score",
  "risk_approved",
  "risk_rule",
  "hold_txn_id",
  "op_txn_id",
  "op_kind",
  "op_amount_minor",
  "op_batch_id",
  "op_item_index",
  "captured_minor",
  "capture_txn_id",
  "capture_batch_id",
  "capture_item_index",
  "refunded_minor",
  "refund_reserved_minor",
  "created_at",
  "expires_at",
  "updated_at",
];
const authValues = (a: AuthRecord): unknown[] => [
  a.authId,
  a.replica,
  a.authCode,
  a.merchantUserId,
  a.idempotencyKey,
  a.fingerprint,
  a.cardId,
  a.cardLast4,
  a.cardAccountId,
  a.cardBank,
  a.cardOwnerUserId,
  a.merchantAccountId,
  a.merchantBank,
  a.amountMinor.toString(),
  a.currency,
  a.merchantReference,
  a.status,
  a.declineReason,
  a.riskScore,
  a.riskApproved,
  a.riskRule,
  a.holdTxnId,
  // op_txn_id, op_kind, op_amount_minor, op_batch_id, op_item_index, as authColumns has them.
  ...Object.values(opColumns(a.op)).map((v) => (typeof v === "bigint" ? v.toString() : v)),
  a.capturedMinor.toString(),
  a.captureTxnId,
  a.captureBatchId,
  a.captureItemIndex,
  a.refundedMinor.toString(),
  a.refundReservedMinor.toString(),
  a.createdAtMs,
  a.expiresAtMs,
  a.updatedAtMs,
];
const insertAuthSql = `INSERT INTO card_authorizations (${authColumns.join(", ")}) VALUES (${authColumns.map((_, i) => `$${i + 1}`).join(", ")}) ON CONFLICT DO NOTHING RETURNING 1`;

const spentSince = async (tx: SqlQuery, cardId: string, sinceMs: number, excludeAuthId: string): Promise<bigint> =>
  big(
    one(
      await tx.query(
        `SELECT coalesce(sum(amount_minor), 0) AS total FROM card_authorizations
         WHERE card_id = $1 AND created_at >= $2 AND auth_id != $3 AND (status IN ('APPROVED', 'CAPTURED') OR (status = 'PENDING' AND risk_approved))`,
        [cardId, sinceMs, excludeAuthId],
      ),
    )?.total ?? 0,
  );

/** A new card, or true again for the same card (a re-run); false if another card has the number. */
async function insertCardIn(q: SqlQuery, card: CardRecord): Promise<boolean> {
  const r = await q.query(
    `INSERT INTO cards (card_id, pan_hmac, last4, exp_month, exp_year, cvc_hash, cardholder_name, account_id, bank, owner_user_id, currency, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (pan_hmac) DO NOTHING RETURNING 1`,
    [
      card.cardId,
      card.panHmac,
      card.last4,
      card.expMonth,
      card.expYear,
      card.cvcHash,
      card.cardholderName,
      card.accountId,
      card.bank,
      card.ownerUserId,
      card.currency,
      card.createdAtMs,
    ],
  );
  if (r.length === 1) return true;
  return (
    str(one(await q.query("SELECT card_id FROM cards WHERE pan_hmac = $1", [card.panHmac]))?.card_id) === card.cardId
  );
}

type SettleMethods = Pick<
  CardStore,
  "insertBatch" | "batchByKey" | "batchItems" | "takeBatch" | "releaseBatches" | "setBatchItem" | "finishBatch"
>;
type RefundMethods = Pick<CardStore, "startRefund" | "finishRefund" | "refundByKey" | "refundById" | "pendingRefunds">;

/** Cards and authorizations on PostgreSQL. */
function pgAuthMethods(q: SqlQuery, driver: SqlDriver): Omit<CardStore, keyof SettleMethods | keyof RefundMethods> {
  return {
    insertCard: (card) => insertCardIn(q, card),
    cardByPanHmac: async (panHmac) => {
      const r = one(await q.query("SELECT * FROM cards WHERE pan_hmac = $1", [panHmac]));
      return r ? toCard(r) : undefined;
    },
    authById: (authId) => authByIdIn(q, authId),
    authByCode: async (code) => {
      const r = one(await q.query(`${AUTH_SELECT} WHERE a.auth_code = $1`, [code]));
      return r ? toAuth(r) : undefined;
    },
    authByKey: async (merchantUserId, key) => {
      const r = one(
        await q.query(`${AUTH_SELECT} WHERE a.merchant_user_id = $1 AND a.idempotency_key = $2`, [merchantUserId, key]),
      );
      return r ? toAuth(r) : undefined;
    },
    async insertAuth(auth) {
      const events = eventsForNewAuth(auth, auth.updatedAtMs);
      const op = auth.op;
      const inserted =
        events.length === 0 && !op
          ? (await q.query(insertAuthSql, authValues(auth))).length === 1
          : await driver.transaction(async (tx) => {
              if ((await tx.query(insertAuthSql, authValues(auth))).length !== 1) return false;
              if (op)
                await tx.query(
                  `INSERT INTO card_auth_ops (auth_id, txn_id, kind, amount_minor, batch_id, item_index, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)`,
                  [
                    auth.authId,
                    op.txnId,
                    op.kind,
                    op.amountMinor.toString(),
                    op.batchId,
                    op.itemIndex,
                    auth.updatedAtMs,
                  ],
                );
              await insertOutboxEvents(tx, events);
              return true;
            });
      if (inserted) return true;
      return (await authByIdIn(q, auth.authId)) !== undefined;
    },
    updateAuth: (authId, expect, change, nowMs, opId) =>
      change.status === undefined
        ? casAuth(q, authId, expect, change, nowMs, opId)
        : driver.transaction((tx) => updateAuthIn(tx, authId, expect, change, nowMs, opId)),
    async deleteAuth(authId) {
      await q.query("DELETE FROM card_authorizations WHERE auth_id = $1 AND status = 'PENDING'", [authId]);
    },
    // The card's row lock serializes the spend check of every authorization of that card, on every replica.
    recordRisk: (authId, cardId, sinceMs, spentMinor, change, nowMs) =>
      driver.transaction(async (tx) => {
        await tx.query("SELECT 1 FROM cards WHERE card_id = $1 FOR UPDATE", [cardId]);
        if ((await spentSince(tx, cardId, sinceMs, authId)) !== spentMinor) return false;
        return updateAuthIn(tx, authId, { status: "PENDING" }, change, nowMs, `risk/${authId}`);
      }),
    spentSince: (cardId, sinceMs, excludeAuthId) => spentSince(q, cardId, sinceMs, excludeAuthId),
    pendingAuths: async (limit, replica) =>
      (
        await q.query(
          `${AUTH_SELECT} WHERE a.status = 'PENDING' AND ($2::text IS NULL OR a.replica = $2) ORDER BY a.created_at LIMIT $1`,
          [limit, replica ?? null],
        )
      ).map(toAuth),
    // The column names every lock, whichever release took it.
    authsWithOp: async (limit, replica) =>
      (
        await q.query(`${AUTH_SELECT} WHERE a.op_txn_id != '' AND a.op_txn_id LIKE $2 ORDER BY a.updated_at LIMIT $1`, [
          limit,
          prefixOf(replica),
        ])
      ).map(toAuth),
    // SKIP LOCKED: replicas sweeping at once each expire different rows.
    expireDue: (nowMs, limit) =>
      driver.transaction(async (tx) => {
        const ids = (
          await tx.query(
            `UPDATE card_authorizations SET status = 'EXPIRED', updated_at = $1
             WHERE auth_id IN (SELECT auth_id FROM card_authorizations WHERE status = 'APPROVED' AND expires_at <= $1 AND op_txn_id = ''
                               ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               AND status = 'APPROVED' AND op_txn_id = '' RETURNING auth_id`,
            [nowMs, limit],
          )
        ).map((r) => str(r.auth_id));
        // Read back whole (its parts come from their own tables), still under this transaction's row locks.
        const expired =
          ids.length === 0
            ? []
            : (await tx.query(`${AUTH_SELECT} WHERE a.auth_id = ANY($1::text[])`, [ids])).map(toAuth);
        await insertOutboxEvents(
          tx,
          expired.flatMap((a) => eventsForAuthChange({ ...a, status: "APPROVED" }, a, nowMs)),
        );
        return expired;
      }),
  };
}

/** Settlement batches and their items on PostgreSQL. */
function pgSettleMethods(q: SqlQuery, driver: SqlDriver, clockMs: () => number): SettleMethods {
  return {
    insertBatch: (batch, items) =>
      driver.transaction(async (tx) => {
        const r = await tx.query(
          `INSERT INTO card_settle_batches (batch_id, merchant_user_id, idempotency_key, fingerprint, status, owner_replica, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING 1`,
          [
            batch.batchId,
            batch.merchantUserId,
            batch.idempotencyKey,
            batch.fingerprint,
            batch.status,
            batch.ownerReplica,
            batch.createdAtMs,
          ],
        );
        if (r.length === 0)
          return (
            (await tx.query("SELECT 1 FROM card_settle_batches WHERE batch_id = $1", [batch.batchId])).length === 1
          );
        await tx.query(
          `INSERT INTO card_settle_items (batch_id, item_index, auth_code, amount_minor)
           SELECT $1, i, c, a FROM unnest($2::int[], $3::text[], $4::bigint[]) AS x(i, c, a)`,
          [
            batch.batchId,
            items.map((i) => i.index),
            items.map((i) => i.authCode),
            items.map((i) => i.amountMinor.toString()),
          ],
        );
        return true;
      }),
    batchByKey: async (merchantUserId, key) => {
      const r = one(
        await q.query("SELECT * FROM card_settle_batches WHERE merchant_user_id = $1 AND idempotency_key = $2", [
          merchantUserId,
          key,
        ]),
      );
      return r ? toBatch(r) : undefined;
    },
    batchItems: async (batchId) =>
      (await q.query("SELECT * FROM card_settle_items WHERE batch_id = $1 ORDER BY item_index", [batchId])).map(toItem),
    async takeBatch(batchId, fromReplica, replica) {
      const r = await q.query(
        "UPDATE card_settle_batches SET owner_replica = $3 WHERE batch_id = $1 AND status = 'PENDING' AND owner_replica = $2 RETURNING 1",
        [batchId, fromReplica, replica],
      );
      if (r.length === 1) return true;
      return (
        str(
          one(await q.query("SELECT owner_replica FROM card_settle_batches WHERE batch_id = $1", [batchId]))
            ?.owner_replica,
        ) === replica
      );
    },
    releaseBatches: async (replica, keep) =>
      (
        await q.query(
          "UPDATE card_settle_batches SET owner_replica = '' WHERE status = 'PENDING' AND owner_replica = $1 AND NOT (batch_id = ANY($2::text[])) RETURNING 1",
          [replica, [...keep]],
        )
      ).length,
    async setBatchItem(batchId, index, result) {
      const setItem = async (tx: SqlQuery) => {
        const r = await tx.query(
          "UPDATE card_settle_items SET status = $3, reason = $4, captured_minor = $5, txn_id = $6 WHERE batch_id = $1 AND item_index = $2 RETURNING *",
          [batchId, index, result.status, result.reason, result.capturedMinor.toString(), result.txnId],
        );
        assert(r.length === 1, `batch item ${batchId}#${index} exists`);
        return toItem(r[0]!);
      };
      // A capture's event comes with the authorization's change; a failure's is written here.
      if (result.status !== "FAILED") return void (await setItem(q));
      await driver.transaction(async (tx) => {
        const item = await setItem(tx);
        const batch = toBatch(one(await tx.query("SELECT * FROM card_settle_batches WHERE batch_id = $1", [batchId]))!);
        // The authorization's row lock: its events stay in commit order.
        const a = one(await tx.query(`${AUTH_SELECT} WHERE a.auth_code = $1 FOR UPDATE OF a`, [item.authCode]));
        const event = a && captureFailedEvent(batch, item, toAuth(a), clockMs());
        if (event) await insertOutboxEvents(tx, [event]);
      });
    },
    finishBatch: (batchId, nowMs) =>
      driver.transaction(async (tx) => {
        const done = one(
          await tx.query(
            "UPDATE card_settle_batches SET status = 'DONE', finished_at = $2 WHERE batch_id = $1 AND status = 'PENDING' RETURNING *",
            [batchId, nowMs],
          ),
        );
        if (!done) return; // done already
        const items = (
          await tx.query("SELECT * FROM card_settle_items WHERE batch_id = $1 ORDER BY item_index", [batchId])
        ).map(toItem);
        await insertOutboxEvents(tx, [settlementEvent(toBatch(done), items, nowMs)]);
      }),
    // The refund row first: a concurrent request with the same key waits on its unique index and then finds it.
  };
}

/** Refunds and their reservations on PostgreSQL. */
function pgRefundMethods(q: SqlQuery, driver: SqlDriver): RefundMethods {
  return {
    startRefund: (r, nowMs) =>
      driver.transaction(async (tx): Promise<RefundStart> => {
        const inserted = await tx.query(
          `INSERT INTO card_refunds (refund_id, merchant_user_id, idempotency_key, fingerprint, auth_id, amount_minor, txn_id, status, reason, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', '', $8) ON CONFLICT DO NOTHING RETURNING 1`,
          [
            r.refundId,
            r.merchantUserId,
            r.idempotencyKey,
            r.fingerprint,
            r.authId,
            r.amountMinor.toString(),
            r.txnId,
            r.createdAtMs,
          ],
        );
        if (inserted.length === 0) {
          const existing = one(
            await tx.query("SELECT * FROM card_refunds WHERE merchant_user_id = $1 AND idempotency_key = $2", [
              r.merchantUserId,
              r.idempotencyKey,
            ]),
          );
          if (existing && str(existing.refund_id) === r.refundId) return { started: true };
          assert(existing !== undefined, "a refund that could not be inserted has a key owner");
          return { started: false, existing: toRefund(existing) };
        }
        const reserved = await tx.query(
          `UPDATE card_authorizations SET refund_reserved_minor = refund_reserved_minor + $2, updated_at = $3
           WHERE auth_id = $1 AND status = 'CAPTURED' AND refunded_minor + refund_reserved_minor + $2 <= captured_minor RETURNING 1`,
          [r.authId, r.amountMinor.toString(), nowMs],
        );
        if (reserved.length === 1) {
          await tx.query(
            "INSERT INTO card_refund_reservations (refund_txn_id, auth_id, amount_minor, created_at) VALUES ($1, $2, $3, $4)",
            [r.txnId, r.authId, r.amountMinor.toString(), nowMs],
          );
          return { started: true };
        }
        const a = await authByIdIn(tx, r.authId);
        // Undo the row inserted above (this transaction rolls back only on an error).
        await tx.query("DELETE FROM card_refunds WHERE refund_id = $1", [r.refundId]);
        return { started: false, refundableMinor: a ? a.capturedMinor - a.refundedMinor - a.refundReservedMinor : 0n };
      }),
    finishRefund: (refundId, end, nowMs) =>
      driver.transaction(async (tx) => {
        const row = one(await tx.query("SELECT * FROM card_refunds WHERE refund_id = $1 FOR UPDATE", [refundId]));
        if (!row || str(row.status) !== "PENDING") return; // finished already (a re-run, or another replica's recovery)
        const r = toRefund(row);
        const amount = r.amountMinor.toString();
        await tx.query("DELETE FROM card_refund_reservations WHERE refund_txn_id = $1", [r.txnId]);
        if (end.status === "COMMITTED") {
          await tx.query(
            "UPDATE card_authorizations SET refunded_minor = refunded_minor + $2, refund_reserved_minor = refund_reserved_minor - $2, updated_at = $3 WHERE auth_id = $1",
            [r.authId, amount, nowMs],
          );
          await tx.query("UPDATE card_refunds SET status = 'COMMITTED', decided_at = $2 WHERE refund_id = $1", [
            refundId,
            nowMs,
          ]);
          const after = await authByIdIn(tx, r.authId);
          assert(after !== undefined, "a refund's authorization exists");
          await insertOutboxEvents(tx, [refundEvent({ ...r, status: "COMMITTED" }, after, nowMs)]);
          return;
        }
        await tx.query(
          "UPDATE card_authorizations SET refund_reserved_minor = refund_reserved_minor - $2, updated_at = $3 WHERE auth_id = $1",
          [r.authId, amount, nowMs],
        );
        if (end.status === "RETRY") await tx.query("DELETE FROM card_refunds WHERE refund_id = $1", [refundId]);
        else
          await tx.query(
            "UPDATE card_refunds SET status = 'FAILED', reason = $2, decided_at = $3 WHERE refund_id = $1",
            [refundId, end.reason, nowMs],
          );
      }),
    refundByKey: async (merchantUserId, key) => {
      const r = one(
        await q.query("SELECT * FROM card_refunds WHERE merchant_user_id = $1 AND idempotency_key = $2", [
          merchantUserId,
          key,
        ]),
      );
      return r ? toRefund(r) : undefined;
    },
    refundById: async (refundId) => {
      const r = one(await q.query("SELECT * FROM card_refunds WHERE refund_id = $1", [refundId]));
      return r ? toRefund(r) : undefined;
    },
    pendingRefunds: async (limit, replica) =>
      (
        await q.query(
          "SELECT * FROM card_refunds WHERE status = 'PENDING' AND txn_id LIKE $2 ORDER BY created_at LIMIT $1",
          [limit, prefixOf(replica)],
        )
      ).map(toRefund),
  };
}

function createCards(q: SqlQuery, driver: SqlDriver, clockMs: () => number = Date.now): CardStore {
  return { ...pgAuthMethods(q, driver), ...pgSettleMethods(q, driver, clockMs), ...pgRefundMethods(q, driver) };
}
