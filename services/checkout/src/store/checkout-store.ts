// The merchant's records in one SQLite file (<data dir>/checkout.db): every
// checkout attempt and its authorization, and every settlement batch with its
// per-item results. WAL with synchronous=FULL: an attempt is on disk before
// Authorize is sent, and a batch before SettleBatch is sent, so a crash can
// only leave work that is resent with the same idempotency key.
//
// No card data is stored: the last 4 digits, the holder's name and an HMAC
// fingerprint (keyed by a secret kept here) to recognise a resubmission.
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { assert } from "@paygate/money";
import { applyMigrations } from "@paygate/sqlite";
import type {
  AuthStatus,
  CheckoutStore,
  ItemSettlement,
  OrderChange,
  ReceivedEvent,
  NewOrder,
  Order,
  OrderState,
  SettleState,
  Settlement,
  SettlementItem,
  SettlementState,
} from "../domain/ports.js";

const SCHEMA_V1 = `
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE settlements (
  settlement_id    TEXT PRIMARY KEY,
  idempotency_key  TEXT NOT NULL UNIQUE,
  state            TEXT NOT NULL CHECK (state IN ('open', 'done', 'rejected')),
  currency         TEXT NOT NULL,
  attempts         INTEGER NOT NULL DEFAULT 0,
  last_error       TEXT,
  gateway_batch_id TEXT,
  created_at_ms    INTEGER NOT NULL,
  finished_at_ms   INTEGER
) STRICT;
CREATE INDEX settlements_open ON settlements(created_at_ms) WHERE state = 'open';

CREATE TABLE orders (
  attempt_key     TEXT PRIMARY KEY,
  order_id        TEXT NOT NULL,
  gateway_key     TEXT NOT NULL,
  fingerprint     TEXT NOT NULL,
  retries         INTEGER NOT NULL DEFAULT 0,
  state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'declined', 'unknown')),
  amount_minor    INTEGER NOT NULL CHECK (amount_minor > 0),
  currency        TEXT NOT NULL,
  card_last4      TEXT NOT NULL,
  cardholder_name TEXT NOT NULL,
  auth_code       TEXT UNIQUE,
  reason          TEXT,
  created_at_ms   INTEGER NOT NULL,
  updated_at_ms   INTEGER NOT NULL,
  settle_state    TEXT NOT NULL DEFAULT 'unsettled' CHECK (settle_state IN ('unsettled', 'in_batch', 'captured', 'failed')),
  settlement_id   TEXT REFERENCES settlements(settlement_id),
  captured_minor  INTEGER NOT NULL DEFAULT 0,
  settle_reason   TEXT,
  settle_attempts INTEGER NOT NULL DEFAULT 0,
  CHECK (state = 'approved' OR settle_state = 'unsettled'),
  CHECK ((settle_state = 'in_batch') = (settlement_id IS NOT NULL) OR settle_state IN ('captured', 'failed'))
) STRICT;
CREATE INDEX orders_to_settle ON orders(created_at_ms) WHERE state = 'approved' AND settle_state = 'unsettled';
CREATE INDEX orders_recent ON orders(created_at_ms);

CREATE TABLE settlement_items (
  settlement_id  TEXT NOT NULL REFERENCES settlements(settlement_id),
  attempt_key    TEXT NOT NULL REFERENCES orders(attempt_key),
  auth_code      TEXT NOT NULL,
  amount_minor   INTEGER NOT NULL CHECK (amount_minor > 0),
  status         TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'captured', 'failed')),
  reason         TEXT,
  captured_minor INTEGER NOT NULL DEFAULT 0,
  transaction_id TEXT,
  PRIMARY KEY (settlement_id, attempt_key)
) STRICT;
`;

// v2: an order whose capture failed for a transient reason counts it in
// capture_retries (apart from settle_attempts, the whole-batch refusals) and
// waits until settle_not_before_ms before a batch takes it again (backoff).
const SCHEMA_V2 = `
ALTER TABLE orders ADD COLUMN capture_retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN settle_not_before_ms INTEGER NOT NULL DEFAULT 0;
`;

// v3: the gateway's webhooks (domain/webhooks.ts). An order keeps the
// authorization's status and refunded total as the last event said; each
// applied event's id is kept (dedup: a redelivery changes nothing), written in
// the transaction that applies it; the endpoint's signing secrets, the current
// one (expires_at_ms NULL) and replaced ones until they expire.
const SCHEMA_V3 = `
ALTER TABLE orders ADD COLUMN auth_status TEXT CHECK (auth_status IN ('APPROVED', 'DECLINED', 'CAPTURED', 'VOIDED', 'EXPIRED'));
ALTER TABLE orders ADD COLUMN refunded_minor INTEGER NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0);

CREATE TABLE webhook_events (
  event_id       TEXT PRIMARY KEY,
  type           TEXT NOT NULL,
  object_id      TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  received_at_ms INTEGER NOT NULL,
  orders_changed INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_events_received ON webhook_events(received_at_ms);

CREATE TABLE webhook_secrets (
  secret        TEXT PRIMARY KEY,
  endpoint_id   TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER
) STRICT;
`;

const MIGRATIONS: readonly string[] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3];

/**
 * How long an applied event's id is kept. The gateway gives up on a delivery
 * 3 days after its event; a manual redelivery later than this is applied
 * again, which the changes tolerate (statuses and totals, not increments).
 */
const WEBHOOK_EVENT_RETENTION_MS = 30 * 86_400_000;
/** Old ids dropped per applied event: the table shrinks as fast as it grows, a little at a time. */
const WEBHOOK_EVENT_PRUNE_MAX = 20;

interface OrderRow {
  attempt_key: string;
  order_id: string;
  gateway_key: string;
  fingerprint: string;
  retries: bigint;
  state: string;
  amount_minor: bigint;
  currency: string;
  card_last4: string;
  cardholder_name: string;
  auth_code: string | null;
  reason: string | null;
  created_at_ms: bigint;
  updated_at_ms: bigint;
  settle_state: string;
  settlement_id: string | null;
  captured_minor: bigint;
  settle_reason: string | null;
  settle_attempts: bigint;
  capture_retries: bigint;
  settle_not_before_ms: bigint;
  auth_status: string | null;
  refunded_minor: bigint;
}

interface SettlementRow {
  settlement_id: string;
  idempotency_key: string;
  state: string;
  currency: string;
  attempts: bigint;
  last_error: string | null;
  gateway_batch_id: string | null;
  created_at_ms: bigint;
  finished_at_ms: bigint | null;
  item_count: bigint;
  total_minor: bigint;
  captured_minor: bigint;
}

interface ItemRow {
  settlement_id: string;
  attempt_key: string;
  order_id: string;
  auth_code: string;
  amount_minor: bigint;
  status: string;
  reason: string | null;
  captured_minor: bigint;
  transaction_id: string | null;
}

const toOrder = (r: OrderRow): Order => ({
  attemptKey: r.attempt_key,
  orderId: r.order_id,
  gatewayKey: r.gateway_key,
  fingerprint: r.fingerprint,
  retries: Number(r.retries),
  state: r.state as OrderState,
  amountMinor: r.amount_minor,
  currency: r.currency,
  cardLast4: r.card_last4,
  cardholderName: r.cardholder_name,
  authCode: r.auth_code,
  reason: r.reason,
  createdAtMs: Number(r.created_at_ms),
  updatedAtMs: Number(r.updated_at_ms),
  settleState: r.settle_state as SettleState,
  settlementId: r.settlement_id,
  capturedMinor: r.captured_minor,
  settleReason: r.settle_reason,
  settleAttempts: Number(r.settle_attempts),
  captureRetries: Number(r.capture_retries),
  settleNotBeforeMs: Number(r.settle_not_before_ms),
  authStatus: r.auth_status as AuthStatus | null,
  refundedMinor: r.refunded_minor,
});

const toSettlement = (r: SettlementRow): Settlement => ({
  settlementId: r.settlement_id,
  idempotencyKey: r.idempotency_key,
  state: r.state as SettlementState,
  itemCount: Number(r.item_count),
  totalMinor: r.total_minor,
  capturedMinor: r.captured_minor,
  currency: r.currency,
  attempts: Number(r.attempts),
  lastError: r.last_error,
  gatewayBatchId: r.gateway_batch_id,
  createdAtMs: Number(r.created_at_ms),
  finishedAtMs: r.finished_at_ms === null ? null : Number(r.finished_at_ms),
});

const toItem = (r: ItemRow): SettlementItem => ({
  settlementId: r.settlement_id,
  attemptKey: r.attempt_key,
  orderId: r.order_id,
  authCode: r.auth_code,
  amountMinor: r.amount_minor,
  status: r.status as SettlementItem["status"],
  reason: r.reason,
  capturedMinor: r.captured_minor,
  transactionId: r.transaction_id,
});

export interface OpenedCheckoutStore extends CheckoutStore {
  readonly path: string;
  /** Keys the card fingerprints; made at first start and kept with the data. */
  fingerprintSecret(): Buffer;
  close(): void;
}

const SETTLEMENT_SELECT = `
  SELECT s.*, COUNT(i.attempt_key) AS item_count, COALESCE(SUM(i.amount_minor), 0) AS total_minor, COALESCE(SUM(i.captured_minor), 0) AS captured_minor
  FROM settlements s LEFT JOIN settlement_items i ON i.settlement_id = s.settlement_id`;

type Statements = ReturnType<typeof prepareStatements>;
type Helpers = ReturnType<typeof createHelpers>;

export function openCheckoutStore(options: { dataDir: string } | { memory: true }): OpenedCheckoutStore {
  const { path, db } = openDatabase(options);
  const q = prepareStatements(db);
  const h = createHelpers(q);
  const secret = db.transaction((): Buffer => {
    const row = q.getMeta.get("fingerprint_secret");
    if (row) return Buffer.from(row.value, "base64");
    const fresh = randomBytes(32);
    q.setMeta.run("fingerprint_secret", fresh.toString("base64"));
    return fresh;
  })();

  return {
    path,
    fingerprintSecret: () => secret,
    close: () => db.close(),
    ...orderMethods(db, q, h),
    ...settlementMethods(db, q, h),
    ...webhookMethods(db, q, h),
  };
}

/** WAL with synchronous=FULL: an attempt is on disk before Authorize is sent. */
function openDatabase(options: { dataDir: string } | { memory: true }): { path: string; db: Database.Database } {
  const path = "memory" in options ? ":memory:" : join(options.dataDir, "checkout.db");
  if (!("memory" in options)) mkdirSync(options.dataDir, { recursive: true });
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  db.defaultSafeIntegers(true);
  migrate(db);
  return { path, db };
}

function prepareStatements(db: Database.Database) {
  return { ...orderStatements(db), ...settlementStatements(db), ...webhookStatements(db) };
}

/** The meta table and the orders (checkout attempts) with their authorization. */
function orderStatements(db: Database.Database) {
  return {
    getMeta: db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?"),
    setMeta: db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)"),
    insertOrder:
      db.prepare(`INSERT INTO orders (attempt_key, order_id, gateway_key, fingerprint, state, amount_minor, currency, card_last4, cardholder_name, created_at_ms, updated_at_ms)
      VALUES (@attemptKey, @orderId, @attemptKey, @fingerprint, 'pending', @amountMinor, @currency, @cardLast4, @cardholderName, @nowMs, @nowMs) ON CONFLICT (attempt_key) DO NOTHING`),
    order: db.prepare<[string], OrderRow>("SELECT * FROM orders WHERE attempt_key = ?"),
    retry:
      db.prepare(`UPDATE orders SET fingerprint = @fingerprint, gateway_key = @gatewayKey, retries = retries + 1, state = 'pending', reason = NULL,
      card_last4 = @cardLast4, cardholder_name = @cardholderName, updated_at_ms = @nowMs WHERE attempt_key = @attemptKey AND state = 'declined'`),
    approve: db.prepare(
      "UPDATE orders SET state = 'approved', auth_code = ?, card_last4 = ?, reason = NULL, updated_at_ms = ? WHERE attempt_key = ? AND state IN ('pending', 'unknown')",
    ),
    decline: db.prepare(
      "UPDATE orders SET state = 'declined', reason = ?, updated_at_ms = ? WHERE attempt_key = ? AND state IN ('pending', 'unknown')",
    ),
    unknown: db.prepare(
      "UPDATE orders SET state = 'unknown', reason = ?, updated_at_ms = ? WHERE attempt_key = ? AND state IN ('pending', 'unknown')",
    ),
    listOrders: db.prepare<[number], OrderRow>("SELECT * FROM orders ORDER BY created_at_ms DESC, attempt_key LIMIT ?"),
  };
}

/** Settlement batches and their per-item results. */
function settlementStatements(db: Database.Database) {
  return {
    openSettlements: db.prepare<[number], SettlementRow>(
      `${SETTLEMENT_SELECT} WHERE s.state = 'open' GROUP BY s.settlement_id ORDER BY s.created_at_ms, s.settlement_id LIMIT ?`,
    ),
    settlement: db.prepare<[string], SettlementRow>(
      `${SETTLEMENT_SELECT} WHERE s.settlement_id = ? GROUP BY s.settlement_id`,
    ),
    listSettlements: db.prepare<[number], SettlementRow>(
      `${SETTLEMENT_SELECT} GROUP BY s.settlement_id ORDER BY s.created_at_ms DESC, s.settlement_id LIMIT ?`,
    ),
    firstUnsettledCurrency: db.prepare<[number], { currency: string }>(
      "SELECT currency FROM orders WHERE state = 'approved' AND settle_state = 'unsettled' AND settle_not_before_ms <= ? ORDER BY created_at_ms LIMIT 1",
    ),
    unsettled: db.prepare<[string, number, number], OrderRow>(
      "SELECT * FROM orders WHERE state = 'approved' AND settle_state = 'unsettled' AND currency = ? AND settle_not_before_ms <= ? ORDER BY created_at_ms, attempt_key LIMIT ?",
    ),
    insertSettlement: db.prepare(
      "INSERT INTO settlements (settlement_id, idempotency_key, state, currency, created_at_ms) VALUES (?, ?, 'open', ?, ?)",
    ),
    insertItem: db.prepare(
      "INSERT INTO settlement_items (settlement_id, attempt_key, auth_code, amount_minor) VALUES (?, ?, ?, ?)",
    ),
    markInBatch: db.prepare(
      "UPDATE orders SET settle_state = 'in_batch', settlement_id = ? WHERE attempt_key = ? AND settle_state = 'unsettled'",
    ),
    items: db.prepare<
      [string],
      ItemRow
    >(`SELECT i.*, o.order_id FROM settlement_items i JOIN orders o ON o.attempt_key = i.attempt_key
      WHERE i.settlement_id = ? ORDER BY o.created_at_ms, i.attempt_key`),
    itemResult: db.prepare(
      "UPDATE settlement_items SET status = ?, reason = ?, captured_minor = ?, transaction_id = ? WHERE settlement_id = ? AND attempt_key = ?",
    ),
    orderSettled: db.prepare(
      "UPDATE orders SET settle_state = ?, captured_minor = ?, settle_reason = ? WHERE attempt_key = ? AND settle_state = 'in_batch'",
    ),
    orderRetry:
      db.prepare(`UPDATE orders SET capture_retries = capture_retries + 1, settle_reason = @reason, settle_state = 'unsettled', settlement_id = NULL,
      settle_not_before_ms = @notBeforeMs WHERE attempt_key = @attemptKey AND settle_state = 'in_batch'`),
    orderReleased: db.prepare(`UPDATE orders SET settle_attempts = settle_attempts + 1, settle_reason = @reason,
      settle_state = CASE WHEN settle_attempts + 1 >= @attemptsMax THEN 'failed' ELSE 'unsettled' END,
      settlement_id = CASE WHEN settle_attempts + 1 >= @attemptsMax THEN settlement_id ELSE NULL END
      WHERE attempt_key = @attemptKey AND settle_state = 'in_batch'`),
    finishSettlement: db.prepare(
      "UPDATE settlements SET state = ?, gateway_batch_id = ?, last_error = ?, attempts = attempts + 1, finished_at_ms = ? WHERE settlement_id = ? AND state = 'open'",
    ),
    noteAttempt: db.prepare(
      "UPDATE settlements SET attempts = attempts + 1, last_error = ? WHERE settlement_id = ? AND state = 'open'",
    ),
  };
}

function webhookStatements(db: Database.Database) {
  return {
    // Webhooks: an order is found by its auth code; only approved orders have one.
    insertEvent:
      db.prepare(`INSERT INTO webhook_events (event_id, type, object_id, created_at_ms, received_at_ms, orders_changed)
      VALUES (@eventId, @type, @objectId, @createdAtMs, @nowMs, 0) ON CONFLICT (event_id) DO NOTHING`),
    eventChanged: db.prepare("UPDATE webhook_events SET orders_changed = ? WHERE event_id = ?"),
    pruneEvents: db.prepare(`DELETE FROM webhook_events WHERE event_id IN
      (SELECT event_id FROM webhook_events WHERE received_at_ms < ? ORDER BY received_at_ms LIMIT ${WEBHOOK_EVENT_PRUNE_MAX})`),
    authStatus: db.prepare(
      "UPDATE orders SET auth_status = ?, updated_at_ms = ? WHERE auth_code = ? AND state = 'approved' AND auth_status IS NOT ?",
    ),
    closed: db.prepare(
      "UPDATE orders SET settle_state = 'failed', settle_reason = ?, updated_at_ms = ? WHERE auth_code = ? AND state = 'approved' AND settle_state = 'unsettled'",
    ),
    captured:
      db.prepare(`UPDATE orders SET settle_state = 'captured', captured_minor = @capturedMinor, settle_reason = NULL, updated_at_ms = @nowMs
      WHERE auth_code = @authCode AND state = 'approved' AND @capturedMinor <= amount_minor AND NOT (settle_state = 'captured' AND captured_minor = @capturedMinor)`),
    captureFailed:
      db.prepare(`UPDATE orders SET settle_reason = ?, updated_at_ms = ? WHERE auth_code = ? AND state = 'approved' AND settle_state <> 'captured'
      AND settle_reason IS NOT ?`),
    refunded: db.prepare(
      "UPDATE orders SET refunded_minor = ?, updated_at_ms = ? WHERE auth_code = ? AND state = 'approved' AND refunded_minor < ?",
    ),
    secretsAt: db.prepare<[number], { secret: string }>(
      "SELECT secret FROM webhook_secrets WHERE expires_at_ms IS NULL OR expires_at_ms > ? ORDER BY created_at_ms DESC, secret",
    ),
    endpointSecretAt: db.prepare<[string, number], { secret: string }>(
      "SELECT secret FROM webhook_secrets WHERE endpoint_id = ? AND (expires_at_ms IS NULL OR expires_at_ms > ?) LIMIT 1",
    ),
    retireSecrets: db.prepare("UPDATE webhook_secrets SET expires_at_ms = ? WHERE expires_at_ms IS NULL"),
    dropExpiredSecrets: db.prepare(
      "DELETE FROM webhook_secrets WHERE expires_at_ms IS NOT NULL AND expires_at_ms <= ?",
    ),
    insertSecret: db.prepare(
      "INSERT INTO webhook_secrets (secret, endpoint_id, created_at_ms, expires_at_ms) VALUES (?, ?, ?, NULL) ON CONFLICT (secret) DO NOTHING",
    ),
  };
}

/** Reads that must find their row, and the per-event order update, over the prepared statements. */
function createHelpers(q: Statements) {
  /** One order's changes from one event; whether any column changed. */
  const applyChange = (c: OrderChange, nowMs: number): boolean => {
    let changed = 0;
    if (c.authStatus !== undefined) changed += q.authStatus.run(c.authStatus, nowMs, c.authCode, c.authStatus).changes;
    if (c.closed !== undefined) changed += q.closed.run(`authorization_${c.closed}`, nowMs, c.authCode).changes;
    if (c.capturedMinor !== undefined)
      changed += q.captured.run({ capturedMinor: c.capturedMinor, nowMs, authCode: c.authCode }).changes;
    if (c.captureFailedReason !== undefined) {
      const reason = c.captureFailedReason.slice(0, 500);
      changed += q.captureFailed.run(reason, nowMs, c.authCode, reason).changes;
    }
    if (c.refundedMinor !== undefined)
      changed += q.refunded.run(c.refundedMinor, nowMs, c.authCode, c.refundedMinor).changes;
    return changed > 0;
  };

  /** A webhook reported this order captured before its batch was answered: the batch answer must not undo that. */
  const heardCaptured = (attemptKey: string): boolean => mustOrder(attemptKey).settleState === "captured";

  const mustOrder = (attemptKey: string): Order => {
    const row = q.order.get(attemptKey);
    assert(row !== undefined, `order ${attemptKey} exists`);
    return toOrder(row);
  };
  const mustSettlement = (id: string): Settlement => {
    const row = q.settlement.get(id);
    assert(row !== undefined, `settlement ${id} exists`);
    return toSettlement(row);
  };
  const changedOne = (info: Database.RunResult, what: string) => assert(info.changes === 1, what);
  return { applyChange, heardCaptured, mustOrder, mustSettlement, changedOne };
}

type OrderMethods = Pick<
  CheckoutStore,
  "claimOrder" | "retryOrder" | "recordApproved" | "recordDeclined" | "recordUnknown" | "getOrder" | "listOrders"
>;

function orderMethods(db: Database.Database, q: Statements, h: Helpers): OrderMethods {
  return {
    claimOrder: db.transaction((order: NewOrder) => {
      const created = q.insertOrder.run({ ...order }).changes === 1;
      return { created, order: h.mustOrder(order.attemptKey) };
    }),
    retryOrder: db.transaction(
      (
        attemptKey: string,
        change: { fingerprint: string; gatewayKey: string; cardLast4: string; cardholderName: string; nowMs: number },
      ) => {
        h.changedOne(q.retry.run({ attemptKey, ...change }), `retry of a declined order ${attemptKey}`);
        return h.mustOrder(attemptKey);
      },
    ),
    recordApproved(attemptKey, authCode, cardLast4, nowMs) {
      h.changedOne(q.approve.run(authCode, cardLast4, nowMs, attemptKey), `approval of an open order ${attemptKey}`);
      return h.mustOrder(attemptKey);
    },
    recordDeclined(attemptKey, reason, nowMs) {
      h.changedOne(q.decline.run(reason, nowMs, attemptKey), `decline of an open order ${attemptKey}`);
      return h.mustOrder(attemptKey);
    },
    recordUnknown(attemptKey, reason, nowMs) {
      h.changedOne(q.unknown.run(reason, nowMs, attemptKey), `unknown outcome of an open order ${attemptKey}`);
      return h.mustOrder(attemptKey);
    },
    getOrder(attemptKey) {
      const row = q.order.get(attemptKey);
      return row && toOrder(row);
    },
    listOrders: (limit) => q.listOrders.all(limit).map(toOrder),
  };
}

type SettlementMethods = Pick<
  CheckoutStore,
  | "openSettlements"
  | "createSettlement"
  | "settlementItems"
  | "completeSettlement"
  | "noteSettlementAttempt"
  | "rejectSettlement"
  | "listSettlements"
>;

function settlementMethods(db: Database.Database, q: Statements, h: Helpers): SettlementMethods {
  return {
    openSettlements: (limit) => q.openSettlements.all(limit).map(toSettlement),
    createSettlement: db.transaction(
      (settlementId: string, idempotencyKey: string, itemsMax: number, nowMs: number) => {
        assert(itemsMax > 0, "a batch holds at least one item");
        const first = q.firstUnsettledCurrency.get(nowMs);
        if (!first) return undefined;
        const orders = q.unsettled.all(first.currency, nowMs, itemsMax);
        q.insertSettlement.run(settlementId, idempotencyKey, first.currency, nowMs);
        for (const o of orders) {
          assert(o.auth_code !== null, "an approved order has an auth code");
          q.insertItem.run(settlementId, o.attempt_key, o.auth_code, o.amount_minor);
          h.changedOne(q.markInBatch.run(settlementId, o.attempt_key), `order ${o.attempt_key} joins one batch only`);
        }
        return h.mustSettlement(settlementId);
      },
    ),
    settlementItems: (settlementId) => q.items.all(settlementId).map(toItem),
    completeSettlement: db.transaction(
      (settlementId: string, gatewayBatchId: string, results: readonly ItemSettlement[], nowMs: number) => {
        const byCode = new Map(results.map((r) => [r.authCode, r]));
        for (const item of q.items.all(settlementId)) {
          const r = byCode.get(item.auth_code);
          const heard = h.heardCaptured(item.attempt_key);
          if (!r) {
            // The gateway owes an answer per item; without one the order goes to the next batch.
            q.itemResult.run("failed", "missing_from_response", 0n, null, settlementId, item.attempt_key);
            if (!heard)
              h.changedOne(
                q.orderReleased.run({
                  attemptKey: item.attempt_key,
                  reason: "missing_from_response",
                  attemptsMax: Number.MAX_SAFE_INTEGER,
                }),
                "release",
              );
            continue;
          }
          switch (r.kind) {
            case "captured": {
              // Two checks, so a failure says which bound the gateway's answer broke.
              assert(r.capturedMinor >= 0n, "a captured amount is never negative");
              assert(r.capturedMinor <= item.amount_minor, "never capture more than authorized");
              q.itemResult.run(
                "captured",
                r.reason || null,
                r.capturedMinor,
                r.transactionId || null,
                settlementId,
                item.attempt_key,
              );
              if (!heard)
                h.changedOne(
                  q.orderSettled.run("captured", r.capturedMinor, r.reason || null, item.attempt_key),
                  `order ${item.attempt_key} settles once`,
                );
              break;
            }
            case "failed":
              q.itemResult.run("failed", r.reason || null, 0n, r.transactionId || null, settlementId, item.attempt_key);
              if (!heard)
                h.changedOne(
                  q.orderSettled.run("failed", 0n, r.reason || null, item.attempt_key),
                  `order ${item.attempt_key} settles once`,
                );
              break;
            case "retry":
              // This batch's record keeps the failure; the order itself waits for a later batch.
              q.itemResult.run("failed", r.reason, 0n, null, settlementId, item.attempt_key);
              if (!heard)
                h.changedOne(
                  q.orderRetry.run({ attemptKey: item.attempt_key, reason: r.reason, notBeforeMs: r.notBeforeMs }),
                  `order ${item.attempt_key} waits for a retry`,
                );
              break;
          }
        }
        q.finishSettlement.run("done", gatewayBatchId, null, nowMs, settlementId);
        return h.mustSettlement(settlementId);
      },
    ),
    noteSettlementAttempt(settlementId, error) {
      q.noteAttempt.run(error.slice(0, 500), settlementId);
      return h.mustSettlement(settlementId);
    },
    rejectSettlement: db.transaction((settlementId: string, reason: string, attemptsMax: number, nowMs: number) => {
      const short = reason.slice(0, 500);
      for (const item of q.items.all(settlementId)) {
        q.itemResult.run("failed", short, 0n, null, settlementId, item.attempt_key);
        if (!h.heardCaptured(item.attempt_key))
          h.changedOne(q.orderReleased.run({ attemptKey: item.attempt_key, reason: short, attemptsMax }), "release");
      }
      q.finishSettlement.run("rejected", null, short, nowMs, settlementId);
      return h.mustSettlement(settlementId);
    }),
    listSettlements: (limit) => q.listSettlements.all(limit).map(toSettlement),
  };
}

type WebhookMethods = Pick<
  CheckoutStore,
  "webhookSecrets" | "applyWebhookEvent" | "hasWebhookSecret" | "addWebhookSecret"
>;

function webhookMethods(db: Database.Database, q: Statements, h: Helpers): WebhookMethods {
  return {
    webhookSecrets: (nowMs) => q.secretsAt.all(nowMs).map((r) => r.secret),
    applyWebhookEvent: db.transaction((event: ReceivedEvent, changes: readonly OrderChange[], nowMs: number) => {
      if (q.insertEvent.run({ ...event, nowMs }).changes === 0) return { duplicate: true, ordersChanged: 0 };
      const changed = new Set<string>();
      for (const c of changes) if (h.applyChange(c, nowMs)) changed.add(c.authCode);
      q.eventChanged.run(changed.size, event.eventId);
      q.pruneEvents.run(nowMs - WEBHOOK_EVENT_RETENTION_MS);
      return { duplicate: false, ordersChanged: changed.size };
    }),
    hasWebhookSecret: (endpointId, nowMs) => q.endpointSecretAt.get(endpointId, nowMs) !== undefined,
    addWebhookSecret: db.transaction(
      (secret: { endpointId: string; secret: string; createdAtMs: number }, previousExpireAtMs: number) => {
        q.dropExpiredSecrets.run(secret.createdAtMs);
        q.retireSecrets.run(previousExpireAtMs);
        q.insertSecret.run(secret.secret, secret.endpointId, secret.createdAtMs);
      },
    ),
  };
}

function migrate(db: Database.Database): void {
  applyMigrations(db, MIGRATIONS, "checkout.db");
}
