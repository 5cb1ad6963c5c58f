// Webhooks on SQLite (DESIGN.md §12): endpoints and their secrets, the outbox
// (webhook_events), deliveries and their attempts. Writes go through group
// commit like every other SQLite write (one fsync for many), reads are direct.
// One process writes the file, so the claims here only keep this replica's
// own dispatcher passes apart; the SQL is the same shape as PostgreSQL's.
import { assert } from "@paygate/money";
import type {
  AttemptOutcome,
  ClaimedDelivery,
  CommittedTransfer,
  DeliveryAttempt,
  DeliveryStatus,
  EndpointStatus,
  OutboxEvent,
  StoredEvent,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookEventType,
  WebhookSecret,
  WebhookStats,
  WebhookStore,
} from "../domain/webhooks-ports.js";
import { num, type Db } from "./db.js";
import { createGroupCommit, type GroupCommit } from "./group-commit.js";

/** How much of an error a delivery and its attempt keep. */
export const WEBHOOK_ERROR_LENGTH_MAX = 500;

/** The outbox insert, shared by the card store (same file, same transaction as the change). */
export interface SqliteOutbox {
  /** Inserts the events (once per event id) whose owner has an enabled endpoint subscribed to their type; returns how many were new. */
  insert(events: readonly OutboxEvent[]): number;
}

/**
 * An event nobody subscribes to when it commits is not kept: fan-out would
 * find no endpoint for it anyway, and the hot paths (authorizations of
 * merchants without endpoints) pay one indexed lookup, not a row.
 */
export function createSqliteOutbox(db: Db): SqliteOutbox {
  const insert = db.prepare(`INSERT INTO webhook_events (event_id, type, object_id, owner_user_id, created_at_ms, body)
    SELECT @eventId, @type, @objectId, @ownerUserId, @createdAtMs, @bodyJson
    WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE owner_user_id = @ownerUserId AND status = 'ENABLED'
                  AND instr(',' || event_types || ',', ',' || @type || ',') > 0)
    ON CONFLICT (event_id) DO NOTHING`);
  return {
    insert(events) {
      let n = 0;
      for (const e of events) n += insert.run({ ...e }).changes;
      return n;
    },
  };
}

interface EndpointRow {
  endpoint_id: string;
  owner_user_id: string;
  url: string;
  event_types: string;
  status: string;
  created_at_ms: bigint;
}

const toEndpoint = (r: EndpointRow): WebhookEndpoint => ({
  endpointId: r.endpoint_id,
  ownerUserId: r.owner_user_id,
  url: r.url,
  eventTypes: r.event_types.split(",").filter(Boolean) as WebhookEventType[],
  status: r.status as EndpointStatus,
  createdAtMs: num(r.created_at_ms),
});

interface SecretRow {
  endpoint_id: string;
  secret: string;
  created_at_ms: bigint;
  expires_at_ms: bigint | null;
}

const toSecret = (r: SecretRow): WebhookSecret => ({
  endpointId: r.endpoint_id,
  secret: r.secret,
  createdAtMs: num(r.created_at_ms),
  expiresAtMs: r.expires_at_ms === null ? undefined : num(r.expires_at_ms),
});

interface EventRow {
  seq: bigint;
  event_id: string;
  type: string;
  object_id: string;
  owner_user_id: string;
  created_at_ms: bigint;
  body: string;
}

const toEvent = (r: EventRow): StoredEvent => ({
  seq: r.seq,
  eventId: r.event_id,
  type: r.type as WebhookEventType,
  objectId: r.object_id,
  ownerUserId: r.owner_user_id,
  createdAtMs: num(r.created_at_ms),
  bodyJson: r.body,
});

interface DeliveryRow {
  delivery_id: string;
  endpoint_id: string;
  event_seq: bigint;
  event_id: string;
  event_type: string;
  object_id: string;
  status: string;
  attempts: bigint;
  next_attempt_at_ms: bigint;
  last_status_code: bigint;
  last_error: string;
  created_at_ms: bigint;
  delivered_at_ms: bigint;
}

const toDelivery = (r: DeliveryRow): WebhookDelivery => ({
  deliveryId: r.delivery_id,
  endpointId: r.endpoint_id,
  eventSeq: r.event_seq,
  eventId: r.event_id,
  eventType: r.event_type as WebhookEventType,
  objectId: r.object_id,
  status: r.status as DeliveryStatus,
  attempts: num(r.attempts),
  nextAttemptAtMs: num(r.next_attempt_at_ms),
  lastStatusCode: num(r.last_status_code),
  lastError: r.last_error,
  createdAtMs: num(r.created_at_ms),
  deliveredAtMs: num(r.delivered_at_ms),
});

interface AttemptRow {
  delivery_id: string;
  attempt: bigint;
  at_ms: bigint;
  status_code: bigint;
  latency_ms: bigint;
  error: string;
  replica: string;
}

const toAttempt = (r: AttemptRow): DeliveryAttempt => ({
  deliveryId: r.delivery_id,
  attempt: num(r.attempt),
  atMs: num(r.at_ms),
  statusCode: num(r.status_code),
  latencyMs: num(r.latency_ms),
  error: r.error,
  replica: r.replica,
});

interface TransferRow {
  txn_id: string;
  sequence: bigint;
  status: string;
  from_account_id: string;
  to_account_id: string;
  amount_minor: bigint;
  currency: string;
  memo: string;
  decided_at: bigint;
  payee_user_id: string | null;
}

/**
 * What claimDue may claim (PostgreSQL's is the same): a PENDING delivery, due,
 * not under a live claim, of an enabled endpoint, with no earlier PENDING
 * delivery of its object to its endpoint and no earlier event of its object
 * still waiting for fan-out (that one's delivery must go first).
 */
const CLAIMABLE_WHERE = `d.status = 'PENDING' AND d.next_attempt_at_ms <= @now AND d.claim_until_ms <= @now AND e.status = 'ENABLED'
  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.object_id = d.object_id
                  AND p.status = 'PENDING' AND p.event_seq < d.event_seq)
  AND NOT EXISTS (SELECT 1 FROM webhook_events v WHERE v.fanned_out = 0 AND v.owner_user_id = e.owner_user_id
                  AND v.object_id = d.object_id AND v.seq < d.event_seq)`;

/** Endpoints and their signing secrets. */
function endpointStatements(db: Db) {
  return {
    insertEndpoint:
      db.prepare(`INSERT INTO webhook_endpoints (endpoint_id, owner_user_id, url, event_types, status, created_at_ms)
      VALUES (@endpointId, @ownerUserId, @url, @eventTypes, @status, @createdAtMs)`),
    insertSecret: db.prepare(
      "INSERT INTO webhook_secrets (endpoint_id, secret, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?)",
    ),
    endpoint: db.prepare("SELECT * FROM webhook_endpoints WHERE endpoint_id = ?"),
    endpointsOf: db.prepare(
      "SELECT * FROM webhook_endpoints WHERE owner_user_id = ? ORDER BY created_at_ms, endpoint_id",
    ),
    setStatus: db.prepare("UPDATE webhook_endpoints SET status = ? WHERE endpoint_id = ?"),
    deleteEndpoint: db.prepare("DELETE FROM webhook_endpoints WHERE endpoint_id = ?"),
    expireCurrent: db.prepare(
      "UPDATE webhook_secrets SET expires_at_ms = ? WHERE endpoint_id = ? AND expires_at_ms IS NULL",
    ),
    dropExpired: db.prepare(
      "DELETE FROM webhook_secrets WHERE endpoint_id = ? AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?",
    ),
    signing:
      db.prepare(`SELECT * FROM webhook_secrets WHERE endpoint_id = ? AND (expires_at_ms IS NULL OR expires_at_ms > ?)
      ORDER BY expires_at_ms IS NOT NULL, created_at_ms DESC`),
  };
}

/** The transfer cursor, and fan-out of outbox events to subscribed endpoints. */
function outboxStatements(db: Db) {
  return {
    cursor: db.prepare("SELECT last_sequence FROM webhook_transfer_cursor WHERE id = 1"),
    setCursor: db.prepare("UPDATE webhook_transfer_cursor SET last_sequence = ? WHERE id = 1"),
    transfersAfter:
      db.prepare(`SELECT t.txn_id, t.sequence, t.status, t.from_account_id, t.to_account_id, t.amount_minor, t.currency, t.memo,
        t.decided_at,
        -- Only a payee with an endpoint for the event gets one: no body is built for the others (most transfers).
        CASE WHEN EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.owner_user_id = a.owner_user_id AND w.status = 'ENABLED'
                          AND instr(',' || w.event_types || ',', ',transfer.committed,') > 0)
             THEN a.owner_user_id END AS payee_user_id
      FROM txns t LEFT JOIN accounts a ON a.account_id = t.to_account_id
      WHERE t.sequence > ? ORDER BY t.sequence LIMIT ?`),
    unfanned: db.prepare("SELECT * FROM webhook_events WHERE fanned_out = 0 ORDER BY seq LIMIT ?"),
    subscribed: db.prepare(`SELECT endpoint_id FROM webhook_endpoints WHERE owner_user_id = ? AND status = 'ENABLED'
      AND instr(',' || event_types || ',', ',' || ? || ',') > 0 ORDER BY endpoint_id`),
    insertDelivery:
      db.prepare(`INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_seq, event_id, event_type, object_id, status,
        next_attempt_at_ms, created_at_ms)
      VALUES (?, ?, ?, ?, ?, ?, 'PENDING', ?, ?) ON CONFLICT (endpoint_id, event_id) DO NOTHING`),
    markFanned: db.prepare("UPDATE webhook_events SET fanned_out = 1 WHERE seq = ?"),
  };
}

/** Claims, attempts and the history of deliveries. */
function deliveryStatements(db: Db) {
  return {
    claimable:
      db.prepare(`SELECT d.delivery_id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id
      WHERE ${CLAIMABLE_WHERE} ORDER BY d.event_seq LIMIT @limit`),
    claim: db.prepare("UPDATE webhook_deliveries SET claimed_by = ?, claim_until_ms = ? WHERE delivery_id = ?"),
    delivery: db.prepare("SELECT * FROM webhook_deliveries WHERE delivery_id = ?"),
    eventBySeq: db.prepare("SELECT * FROM webhook_events WHERE seq = ?"),
    holdsClaim: db.prepare(
      "SELECT attempts FROM webhook_deliveries WHERE delivery_id = ? AND status = 'PENDING' AND claimed_by = ? AND claim_until_ms >= ?",
    ),
    insertAttempt:
      db.prepare(`INSERT INTO webhook_attempts (delivery_id, attempt, at_ms, status_code, latency_ms, error, replica)
      VALUES (?, ?, ?, ?, ?, ?, ?)`),
    moveDelivery:
      db.prepare(`UPDATE webhook_deliveries SET status = @status, attempts = @attempts, next_attempt_at_ms = @next, claimed_by = '',
        claim_until_ms = 0, last_status_code = @code, last_error = @error, delivered_at_ms = @deliveredAt
      WHERE delivery_id = @id`),
    deliveriesOf: db.prepare(
      "SELECT * FROM webhook_deliveries WHERE endpoint_id = ? AND event_seq < ? ORDER BY event_seq DESC LIMIT ?",
    ),
    attemptsOf: db.prepare("SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY attempt"),
    redeliver:
      db.prepare(`UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at_ms = ?, claimed_by = '', claim_until_ms = 0, delivered_at_ms = 0
      WHERE delivery_id = ? AND status IN ('DELIVERED', 'FAILED')`),
    stats: db.prepare(`SELECT count(*) AS n, min(v.created_at_ms) AS oldest
      FROM webhook_deliveries d JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id JOIN webhook_events v ON v.seq = d.event_seq
      WHERE d.status = 'PENDING' AND e.status = 'ENABLED'`),
  };
}

export function createSqliteWebhookStore(db: Db, group: GroupCommit = createGroupCommit(db)): WebhookStore {
  const outbox = createSqliteOutbox(db);
  const q = { ...endpointStatements(db), ...outboxStatements(db), ...deliveryStatements(db) };
  const write = <T>(fn: () => T): Promise<T> => group.enqueue(fn);

  const endpointNow = (endpointId: string): WebhookEndpoint | undefined => {
    const r = q.endpoint.get(endpointId) as EndpointRow | undefined;
    return r ? toEndpoint(r) : undefined;
  };

  function materializeNow(limit: number, build: (t: CommittedTransfer) => OutboxEvent): number {
    // Sequences are handed out inside the write that decides a transfer, in
    // increasing order, by the one process that writes this file; this runs
    // as a write of the same group commit. So every transfer with a sequence
    // at or below the cursor was decided before: none can appear behind it later.
    const after = (q.cursor.get() as { last_sequence: bigint }).last_sequence;
    const rows = q.transfersAfter.all(after, limit) as TransferRow[];
    let n = 0;
    for (const r of rows) {
      if (r.status !== "COMMITTED" || r.payee_user_id === null) continue;
      n += outbox.insert([
        build({
          txnId: r.txn_id,
          fromAccountId: r.from_account_id,
          toAccountId: r.to_account_id,
          amountMinor: r.amount_minor,
          currency: r.currency,
          memo: r.memo,
          decidedAtMs: num(r.decided_at),
          payeeUserId: r.payee_user_id,
        }),
      ]);
    }
    const last = rows.at(-1);
    if (last) q.setCursor.run(last.sequence);
    return n;
  }

  function fanOutNow(limit: number, nowMs: number, newDeliveryId: () => string): number {
    const events = (q.unfanned.all(limit) as EventRow[]).map(toEvent);
    for (const e of events) {
      for (const { endpoint_id } of q.subscribed.all(e.ownerUserId, e.type) as { endpoint_id: string }[]) {
        q.insertDelivery.run(newDeliveryId(), endpoint_id, e.seq, e.eventId, e.type, e.objectId, nowMs, nowMs);
      }
      q.markFanned.run(e.seq);
    }
    return events.length;
  }

  function claimNow(replica: string, nowMs: number, claimUntilMs: number, limit: number): ClaimedDelivery[] {
    const ids = (q.claimable.all({ now: nowMs, limit }) as { delivery_id: string }[]).map((r) => r.delivery_id);
    const claimed: ClaimedDelivery[] = [];
    for (const id of ids) {
      q.claim.run(replica, claimUntilMs, id);
      const delivery = toDelivery(q.delivery.get(id) as DeliveryRow);
      const event = toEvent(q.eventBySeq.get(delivery.eventSeq) as EventRow);
      const endpoint = endpointNow(delivery.endpointId);
      assert(endpoint !== undefined, "a delivery's endpoint exists");
      claimed.push({ delivery, event, endpoint });
    }
    return claimed;
  }

  function recordNow(a: DeliveryAttempt, outcome: AttemptOutcome): boolean {
    const endMs = a.atMs + a.latencyMs;
    const held = q.holdsClaim.get(a.deliveryId, a.replica, endMs) as { attempts: bigint } | undefined;
    if (!held) return false; // the claim ran out (another replica may have it now) or the delivery moved on
    const attempt = num(held.attempts) + 1;
    const error = a.error.slice(0, WEBHOOK_ERROR_LENGTH_MAX);
    q.insertAttempt.run(a.deliveryId, attempt, a.atMs, a.statusCode, a.latencyMs, error, a.replica);
    const current = toDelivery(q.delivery.get(a.deliveryId) as DeliveryRow);
    q.moveDelivery.run({
      id: a.deliveryId,
      status: outcome.status,
      attempts: attempt,
      next: outcome.status === "PENDING" ? outcome.nextAttemptAtMs : current.nextAttemptAtMs,
      code: a.statusCode,
      error,
      deliveredAt: outcome.status === "DELIVERED" ? endMs : 0,
    });
    return true;
  }

  return {
    createEndpoint: (endpoint, secret) =>
      write(() => {
        q.insertEndpoint.run({ ...endpoint, eventTypes: endpoint.eventTypes.join(",") });
        q.insertSecret.run(endpoint.endpointId, secret.secret, secret.createdAtMs, secret.expiresAtMs ?? null);
      }),
    endpointById: async (endpointId) => endpointNow(endpointId),
    endpointsOf: async (ownerUserId) => (q.endpointsOf.all(ownerUserId) as EndpointRow[]).map(toEndpoint),
    setEndpointStatus: (endpointId, status) => write(() => q.setStatus.run(status, endpointId).changes === 1),
    deleteEndpoint: (endpointId) => write(() => q.deleteEndpoint.run(endpointId).changes === 1),
    rollSecret: (endpointId, next, previousExpiresAtMs, nowMs) =>
      write(() => {
        assert(endpointNow(endpointId) !== undefined, `endpoint ${endpointId} exists`);
        q.expireCurrent.run(previousExpiresAtMs, endpointId);
        q.dropExpired.run(endpointId, nowMs);
        q.insertSecret.run(endpointId, next.secret, next.createdAtMs, null);
      }),
    signingSecrets: async (endpointId, nowMs) => (q.signing.all(endpointId, nowMs) as SecretRow[]).map(toSecret),
    materializeTransferEvents: (limit, build) => write(() => materializeNow(limit, build)),
    fanOut: (limit, nowMs, newDeliveryId) => write(() => fanOutNow(limit, nowMs, newDeliveryId)),
    claimDue: (replica, nowMs, claimUntilMs, limit) => write(() => claimNow(replica, nowMs, claimUntilMs, limit)),
    recordAttempt: (attempt, outcome) => write(() => recordNow(attempt, outcome)),
    async deliveryById(deliveryId) {
      const r = q.delivery.get(deliveryId) as DeliveryRow | undefined;
      return r ? toDelivery(r) : undefined;
    },
    deliveriesOf: async (endpointId, limit, beforeSeq) =>
      (q.deliveriesOf.all(endpointId, beforeSeq ?? 9223372036854775807n, limit) as DeliveryRow[]).map(toDelivery),
    attemptsOf: async (deliveryId) => (q.attemptsOf.all(deliveryId) as AttemptRow[]).map(toAttempt),
    redeliver: (deliveryId, nowMs) => write(() => q.redeliver.run(nowMs, deliveryId).changes === 1),
    async stats(nowMs): Promise<WebhookStats> {
      const r = q.stats.get() as { n: bigint; oldest: bigint | null };
      const backlog = num(r.n);
      return {
        backlog,
        oldestPendingAgeMs: backlog === 0 || r.oldest === null ? 0 : Math.max(0, nowMs - num(r.oldest)),
      };
    },
  };
}
